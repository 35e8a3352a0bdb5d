"""Election definitions, kept in Redis so that workers, ``ingest`` and ``results`` share one roll.

Layout: ``soiree:election:<id>`` holds the definition's JSON (the PRODUCT.md shape);
the set ``soiree:elections`` lists the ids.
"""

from __future__ import annotations

import gc
import time

import redis

from .models import Election

__all__ = ["save_election", "load_election", "list_elections", "ElectionCache", "ElectionsUnavailable"]


class ElectionsUnavailable(RuntimeError):
    """Redis cannot be asked for a definition right now (the caller should wait, not reject)."""


def _key(election_id: str) -> str:
    return f"soiree:election:{election_id}"


def save_election(client: redis.Redis, election: Election) -> None:
    with client.pipeline(transaction=True) as pipe:
        pipe.set(_key(election.election), election.model_dump_json())
        pipe.sadd("soiree:elections", election.election)
        pipe.execute()


def load_election(client: redis.Redis, election_id: str) -> Election | None:
    raw = client.get(_key(election_id))
    return None if raw is None else Election.model_validate_json(raw)


def list_elections(client: redis.Redis) -> list[str]:
    return sorted(member.decode() for member in client.smembers("soiree:elections"))


class ElectionCache:
    """Definitions by id, fetched once; an unknown id is asked again at most once a second,
    so an election registered after the worker started is picked up."""

    def __init__(self, client: redis.Redis, retry_after: float = 1.0) -> None:
        self._client = client
        self._known: dict[str, Election] = {}
        self._missing_since: dict[str, float] = {}
        self._retry_after = retry_after

    def get(self, election_id: str) -> Election | None:
        election = self._known.get(election_id)
        if election is not None:
            return election
        asked = self._missing_since.get(election_id)
        if asked is not None and time.monotonic() - asked < self._retry_after:
            return None
        try:
            election = load_election(self._client, election_id)
        except redis.RedisError as exc:
            raise ElectionsUnavailable(f"cannot read election {election_id!r} from Redis: {exc}") from exc
        if election is None:
            self._missing_since[election_id] = time.monotonic()
            return None
        election.areas, election.roll_by_commune, election.candidate_list  # noqa: B018 - build the indexes now
        self._known[election_id] = election
        # A national roll is a million long-lived objects: keep them out of the garbage
        # collector's full passes, which otherwise pause the worker for hundreds of ms.
        gc.freeze()
        return election

    def preload(self, election_ids: list[str]) -> None:
        """Fetch and index definitions before the first report: a national roll takes a second."""
        for election_id in election_ids:
            self.get(election_id)

    def known(self) -> list[Election]:
        """Every definition fetched so far (re-registered if Redis loses them)."""
        return list(self._known.values())
