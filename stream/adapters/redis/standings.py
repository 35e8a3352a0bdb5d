"""Reading current standings straight from Redis, without asking a worker.

The worker writes each area's ``Standings`` JSON to ``soiree:results:<election>:<level>:<area>``
whenever its totals change (see ``adapters.redis.keys``).
"""

from __future__ import annotations

import redis

from stream.adapters.redis.keys import results_key, results_pattern
from stream.domain.messages import Standings

__all__ = ["read_standings", "list_standings"]


def read_standings(client: redis.Redis, election: str, level: str, area: str) -> Standings | None:
    raw = client.get(results_key(election, level, area))
    return None if raw is None else Standings.model_validate_json(raw)


def list_standings(client: redis.Redis, election: str, level: str) -> list[Standings]:
    """Every reported area of ``level``, sorted by area id."""
    keys = sorted(client.scan_iter(match=results_pattern(election, level), count=1000))
    found: list[Standings] = []
    for start in range(0, len(keys), 1000):
        for raw in client.mget(keys[start : start + 1000]):
            if raw is not None:
                found.append(Standings.model_validate_json(raw))
    return sorted(found, key=lambda s: s.area)
