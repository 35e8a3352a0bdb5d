"""Areas' standings (the ``soiree results --json`` objects): computed from a total, and written
to Redis, where readers find them; while Redis is away they wait in memory, newest per area."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stream.adapters.redis.keys import results_key
from stream.domain.aggregation import AreaState, turnout_child
from stream.domain.changes import make_standings
from stream.domain.messages import TURNOUT_HOURS
from stream.domain.roll import ElectionIndex

__all__ = ["area_standings", "bureau_standings", "standings_of", "StandingsWriter"]

log = logging.getLogger(__name__)

#: (Redis key, standings)
Keyed = tuple[str, dict[str, Any]]


def area_standings(election: ElectionIndex, level: str, area: str, state: AreaState) -> Keyed:
    name, bureaux_total, registered_total = election.areas[(level, area)]
    keys, party_of, race = election.view_of(level, area)
    standings = make_standings(
        election.election,
        level,
        area,
        name,
        bureaux_total,
        state.total,
        keys,
        version=state.version,
        registered_total=registered_total,
        qualify=election.qualify,
        compare_to=election.compare_to,
        party_of=party_of,
        race=race,
        comparison_party_of=election.comparison_party_of,
    )
    return results_key(election.election, level, area), standings


def bureau_standings(election: ElectionIndex, bureau: str, commune: AreaState) -> Keyed:
    """A bureau's standings from its commune's state: its report and the turnout it reported
    before the count (version: the sum of their ``seq``, which grows with any of them)."""
    name, _, registered = election.areas[("bureau", bureau)]
    children = commune.children
    seq, tally = children[bureau]
    version = seq
    if commune.total.turnout_at:  # reports before the count, perhaps from this bureau
        turnout_children = [children.get(turnout_child(bureau, hour)) for hour in TURNOUT_HOURS]
        if any(turnout_children):
            tally = tally.copy()
            for child in turnout_children:
                if child is not None:
                    tally.add(child[1])
                    version += child[0]  # the sum of its reports' seqs grows with each of them
    standings = make_standings(
        election.election,
        "bureau",
        bureau,
        name,
        1,
        tally,
        election.view_of("bureau", bureau)[0],
        version=version,
        registered_total=registered,
        qualify=election.qualify,
        compare_to=election.compare_to,
    )
    standings["seq"] = seq
    return results_key(election.election, "bureau", bureau), standings


def standings_of(election: ElectionIndex, level: str, area: str, state: AreaState) -> Iterator[Keyed]:
    """The standings of an area, and of its bureaux for a commune."""
    yield area_standings(election, level, area, state)
    if level == "commune":
        for child in state.children:
            if "|" not in child:  # not a turnout report (``turnout_child``)
                yield bureau_standings(election, child, state)


# KEYS: n owner keys, then standings keys. ARGV: n, the n owner epochs, then the standings.
# Writes nothing and returns 0 when an owner key holds another epoch (a missing one, Redis having
# lost its data, holds none).
_FENCED_MSET = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[1 + i] then return 0 end
end
for i = n + 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 1]) end
return 1
"""


class StandingsWriter:
    """Writes standings with MSET; what Redis refused waits (latest per key) for the next write.

    A write may be fenced (``write(views, fence)``): it goes in only while each of the table
    partitions it comes from still has the writer's owner epoch (``RedisStore.owner_epochs``),
    so that a worker paused past its session timeout cannot put older standings over the next
    owner's. Standings that waited for Redis are written unfenced: that takes a Redis outage
    and a paused worker at once."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._fenced_mset: Any = None  # registered at the first fenced write
        #: standings not yet written because Redis was unreachable (newest per key)
        self.pending: dict[str, bytes] = {}
        self.failing = False
        #: one MSET at a time: Redis may run a later, smaller one (another connection) before it
        self.lock = asyncio.Lock()

    async def write(self, views: dict[str, bytes], fence: dict[str, int] | None = None) -> bool:
        """Write standings; while Redis is away they wait here (latest per area) and go later.
        False when ``fence`` (``{owner key: epoch}``) no longer holds: ``views`` are dropped."""
        self.pending.update(views)
        # The two agents and the Redis check write in turn. Overlapping, the 30,000 standings
        # waiting after an outage (a 15 MB MSET) could land after a newer standing sent meanwhile
        # on another connection, and put an older one back for good.
        async with self.lock:
            if not self.pending:
                return True
            writing = dict(self.pending)
            try:
                if fence:
                    if self._fenced_mset is None:
                        self._fenced_mset = self.redis.register_script(_FENCED_MSET)
                    owners = list(fence)
                    args: list[Any] = [len(owners), *fence.values(), *writing.values()]
                    if not await self._fenced_mset(keys=[*owners, *writing], args=args):
                        for key, value in views.items():  # what waited before is not this writer's
                            if self.pending.get(key) is value:
                                del self.pending[key]
                        return False
                else:
                    await self.redis.mset(writing)
            except (RedisError, OSError) as exc:
                if not self.failing:
                    log.warning("Redis unreachable, standings wait in memory until it is back: %s", exc)
                self.failing = True
            else:
                if self.failing:
                    log.warning("Redis is back: %d waiting standings written", len(writing))
                self.failing = False
                for key, value in writing.items():  # keep what was added meanwhile
                    if self.pending.get(key) is value:
                        del self.pending[key]
            return True
