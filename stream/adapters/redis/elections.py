"""Election definitions, kept in Redis so that workers, ``ingest`` and ``results`` share one roll.

Layout: ``soiree:election:<id>`` holds the definition's JSON (the PRODUCT.md shape);
the set ``soiree:elections`` lists the ids. The durable copy is a Kafka topic
(``adapters.kafka.definitions``): Redis may lose its data, the topic does not.
"""

from __future__ import annotations

import gc
import time
from collections import OrderedDict

import orjson
import redis
import redis.asyncio as aioredis

from stream.adapters.redis.keys import ELECTIONS, election_key, results_key, revision_key
from stream.domain.messages import NATION, Election
from stream.domain.roll import ElectionIndex, definition_stamp, split_tally_id
from stream.errors import ElectionsUnavailable

__all__ = [
    "save_election",
    "restore_definitions",
    "load_election",
    "list_elections",
    "has_results",
    "ElectionCache",
]


def save_election(client: redis.Redis, election: Election) -> None:
    raw = election.model_dump_json().encode()
    with client.pipeline(transaction=True) as pipe:
        pipe.set(election_key(election.election), raw)
        pipe.set(revision_key(election.election), definition_stamp(election.revision, raw))
        pipe.sadd(ELECTIONS, election.election)
        pipe.execute()


def has_results(client: redis.Redis, election_id: str) -> bool:
    """Whether a worker counted anything of the election (its nation has standings)."""
    return bool(client.exists(results_key(election_id, "nation", NATION)))


async def restore_definitions(client: aioredis.Redis, definitions: dict[str, bytes]) -> list[str]:
    """Put back the definitions Redis lacks; returns their ids.

    SET NX: a definition registered meanwhile went to the durable log first, so it is the newer."""
    ids = list(definitions)
    if not ids:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for election_id in ids:
            pipe.exists(election_key(election_id))
        missing = [election_id for election_id, found in zip(ids, await pipe.execute()) if not found]
    if not missing:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for election_id in missing:
            pipe.set(election_key(election_id), definitions[election_id], nx=True)
            raw = definitions[election_id]
            stamp = definition_stamp(orjson.loads(raw).get("revision", 1), raw)
            pipe.set(revision_key(election_id), stamp, nx=True)
            pipe.sadd(ELECTIONS, election_id)
        answers = await pipe.execute()
    return [election_id for election_id, written in zip(missing, answers[::3]) if written]


def load_election(client: redis.Redis, election_id: str) -> Election | None:
    raw = client.get(election_key(election_id))
    return None if raw is None else Election.model_validate_json(raw)


def list_elections(client: redis.Redis) -> list[str]:
    members: set[bytes] = client.smembers(ELECTIONS)  # type: ignore[assignment]  # bytes: no decode_responses
    return sorted(member.decode() for member in members)


#: Unknown election ids remembered (each asked again at most once per ``retry_after``), at most.
MISSING_IDS = 10_000
#: Seconds a revision check may take; after a failed one, seconds before the next.
QUICK_TIMEOUT = 0.2
QUIET_AFTER_FAILURE = 5.0


class ElectionCache:
    """Definitions by id, fetched once; an unknown id is asked again at most once a second,
    so an election registered after the worker started is picked up, and so is a replaced
    definition: a known one's revision is checked at most once a second too.

    ``get`` takes an election id or a ``roll.tally_id``; a tally id of a later revision than the
    one held fetches it at once (a contribution routed by a worker that saw it first).

    ``alive_marker`` is a key the worker keeps in Redis: when it is gone, Redis lost its data,
    and an id missing from it may well be registered (in the durable log, being restored):
    the caller is told to wait rather than to reject the report as unknown."""

    def __init__(
        self, client: redis.Redis, retry_after: float = 1.0, alive_marker: str | None = None
    ) -> None:
        self._client = client
        # The revision check runs in the event loop once a second: a Redis that hangs must cost it
        # a fraction of a second, not the client's default 5 s (then it is left alone a while).
        pool = client.connection_pool
        quick = {
            **pool.connection_kwargs,
            "socket_timeout": QUICK_TIMEOUT,
            "socket_connect_timeout": QUICK_TIMEOUT,
            "retry": None,  # redis-py retries a timeout 3 times by default
        }
        self._quick = redis.Redis(
            connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **quick)
        )
        self._known: dict[str, ElectionIndex] = {}
        self._missing_since: OrderedDict[str, float] = OrderedDict()
        self._checked_at: dict[str, float] = {}
        self._retry_after = retry_after
        self._alive_marker = alive_marker

    def get(self, election_id: str) -> ElectionIndex | None:
        election_id, revision = split_tally_id(election_id)
        election = self._known.get(election_id)
        if election is not None:
            now = time.monotonic()
            if revision <= election.revision and now - self._checked_at[election_id] < self._retry_after:
                return election
            self._checked_at[election_id] = now
            try:
                stamp = self._quick.get(revision_key(election_id))
            except redis.RedisError:
                self._checked_at[election_id] = now + QUIET_AFTER_FAILURE  # the reports go on meanwhile
                return election
            current = stamp.decode() if isinstance(stamp, bytes) else stamp
            if current is not None and ":" not in current:  # written before stamps had a digest
                current = election.stamp if current == str(election.revision) else current
            if revision <= election.revision and current in (None, election.stamp):
                return election  # (no stamp: Redis lost its data, and the restore puts it back)
        return self._fetch(election_id)

    def _fetch(self, election_id: str) -> ElectionIndex | None:
        asked = self._missing_since.get(election_id)
        if asked is not None and time.monotonic() - asked < self._retry_after:
            return None
        try:  # one quick round trip first: a flood of made-up ids costs no more than that
            with self._quick.pipeline(transaction=False) as pipe:
                pipe.exists(election_key(election_id))
                pipe.exists(self._alive_marker or election_key(election_id))
                registered, alive = pipe.execute()
            raw = self._client.get(election_key(election_id)) if registered else None
        except redis.RedisError as exc:
            raise ElectionsUnavailable(f"cannot read election {election_id!r} from Redis: {exc}") from exc
        if raw is None and self._alive_marker is not None and not alive:
            raise ElectionsUnavailable(
                f"election {election_id!r} is not in Redis, which lost its data: waiting for the restore"
            )
        if raw is None:
            self._missing_since[election_id] = time.monotonic()
            while len(self._missing_since) > MISSING_IDS:  # made-up ids do not pile up
                self._missing_since.popitem(last=False)
            return self._known.get(election_id)
        self._missing_since.pop(election_id, None)
        election = self._known[election_id] = ElectionIndex.from_json(bytes(raw))  # type: ignore[arg-type]
        self._checked_at[election_id] = time.monotonic()
        # A national roll is a million long-lived objects: keep them out of the garbage
        # collector's full passes, which otherwise pause the worker for hundreds of ms.
        gc.freeze()
        return election

    def preload(self, election_ids: list[str]) -> None:
        """Fetch and index definitions before the first report: a national roll takes a second."""
        for election_id in election_ids:
            self.get(election_id)

    def known(self) -> list[ElectionIndex]:
        """Every definition fetched so far (re-registered if Redis loses them)."""
        return list(self._known.values())
