"""Election definitions, kept in Redis so that workers, ``ingest`` and ``results`` share one roll.

Layout: ``soiree:election:<id>`` holds the definition's JSON (the PRODUCT.md shape);
the set ``soiree:elections`` lists the ids. The durable copy is a Kafka topic
(``adapters.kafka.definitions``): Redis may lose its data, the topic does not.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import OrderedDict
from collections.abc import Iterable

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
    "ElectionNeeded",
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


class ElectionNeeded(Exception):
    """``ElectionCache.strict``: the id is not held, and Redis may have it (ask ``prepare``)."""

    def __init__(self, election_id: str) -> None:
        super().__init__(f"election {election_id!r} is not fetched yet")
        self.election_id = election_id


class ElectionCache:
    """Definitions by id, for the agents: ``get`` answers from memory only (it runs for every
    report, in the event loop), and the agents ``prepare`` what their batch names beforehand,
    with the async client, in one round trip however many ids it names.

    An unknown id is asked again at most once a second (``retry_after``, at most ``MISSING_IDS``
    of them remembered), so an election registered after the worker started is picked up; a
    known one's revision is checked at most once a second too (``check_revisions``, with a quick
    timeout), so a replaced definition is; a tally id (``roll.tally_id``) of a later revision
    than the one held is fetched at once (a contribution routed by a worker that saw it first).

    ``alive_marker`` is a key the worker keeps in Redis: when it is gone, Redis lost its data,
    and an id missing from it may well be registered (in the durable log, being restored):
    ``prepare`` raises ``ElectionsUnavailable`` rather than let the report be rejected."""

    def __init__(
        self, client: aioredis.Redis, retry_after: float = 1.0, alive_marker: str | None = None
    ) -> None:
        self._client = client
        self._known: dict[str, ElectionIndex] = {}
        self._missing_since: OrderedDict[str, float] = OrderedDict()
        self._checked_at: dict[str, float] = {}
        self._retry_after = retry_after
        self._alive_marker = alive_marker
        self.strict = _Strict(self)

    def get(self, election_id: str) -> ElectionIndex | None:
        """The definition held for an election id or a tally id, or None; never waits."""
        election_id, revision = split_tally_id(election_id)
        election = self._known.get(election_id)
        return election if election is not None and revision <= election.revision else None

    def needs_fetch(self, election_id: str) -> bool:
        """Whether ``prepare`` would ask Redis for it: not held (or an older revision), and not
        found missing within the last ``retry_after``."""
        if self.get(election_id) is not None:
            return False
        asked = self._missing_since.get(split_tally_id(election_id)[0])
        return asked is None or time.monotonic() - asked >= self._retry_after

    async def prepare(self, election_ids: Iterable[str]) -> None:
        """Fetch the definitions these ids name that ``get`` would not answer, and the
        references they compare to; ``ElectionsUnavailable`` if Redis cannot tell."""
        wanted = {split_tally_id(i)[0] for i in election_ids if self.needs_fetch(i)}
        if wanted:
            await self._fetch(sorted(wanted))
        references = {
            e.compare_to
            for i in election_ids
            if (e := self.get(i)) is not None and e.compare_to and self.needs_fetch(e.compare_to)
        }
        if references:
            await self._fetch(sorted(references))

    async def check_revisions(self) -> None:
        """Fetch again the definitions whose revision changed (``election create --replace``);
        each checked at most once per ``retry_after``. A Redis that does not answer within
        ``QUICK_TIMEOUT`` is left alone a while: the held definitions serve meanwhile."""
        now = time.monotonic()
        due = [i for i, at in self._checked_at.items() if now - at >= self._retry_after]
        if not due:
            return
        for election_id in due:
            self._checked_at[election_id] = now
        try:
            stamps = await asyncio.wait_for(self._client.mget([revision_key(i) for i in due]), QUICK_TIMEOUT)
        except (TimeoutError, redis.RedisError, OSError):
            for election_id in due:  # the reports go on meanwhile
                self._checked_at[election_id] = now + QUIET_AFTER_FAILURE
            return
        changed = []
        for election_id, stamp in zip(due, stamps, strict=True):
            election = self._known[election_id]
            current = stamp.decode() if isinstance(stamp, bytes) else stamp
            if current is not None and ":" not in current:  # written before stamps had a digest
                current = election.stamp if current == str(election.revision) else current
            if current not in (None, election.stamp):  # (none: Redis lost it, the restore puts it back)
                changed.append(election_id)
        if changed:
            try:
                await self._fetch(changed)
            except ElectionsUnavailable:
                pass  # asked again at the next check

    async def fetch(self, election_ids: Iterable[str]) -> None:
        """Fetch the definitions of these ids that are not held, whatever the alive marker says:
        for a restore, which has just put the definitions back (``ElectionsUnavailable`` if
        Redis does not answer)."""
        wanted = sorted({split_tally_id(i)[0] for i in election_ids if self.get(i) is None})
        if wanted:
            await self._fetch(wanted, wait_for_restore=False)

    async def _fetch(self, election_ids: list[str], wait_for_restore: bool = True) -> None:
        """One round trip for them all: a flood of made-up ids costs no more than that."""
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for election_id in election_ids:
                    pipe.get(election_key(election_id))
                pipe.exists(self._alive_marker or ELECTIONS)
                *raws, alive = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise ElectionsUnavailable(f"cannot read election {election_ids[0]!r} from Redis: {exc}") from exc
        for election_id, raw in zip(election_ids, raws, strict=True):
            if raw is not None:
                self.remember(election_id, raw)
                continue
            if wait_for_restore and self._alive_marker is not None and not alive:
                raise ElectionsUnavailable(
                    f"election {election_id!r} is not in Redis, which lost its data: waiting for the restore"
                )
            self._missing_since[election_id] = time.monotonic()
            self._missing_since.move_to_end(election_id)
            while len(self._missing_since) > MISSING_IDS:  # made-up ids do not pile up
                self._missing_since.popitem(last=False)

    def remember(self, election_id: str, raw: bytes) -> ElectionIndex:
        """Index a definition read from Redis and hold it."""
        self._missing_since.pop(election_id, None)
        election = self._known[election_id] = ElectionIndex.from_json(bytes(raw))
        self._checked_at[election_id] = time.monotonic()
        # A national roll is a million long-lived objects: keep them out of the garbage
        # collector's full passes, which otherwise pause the worker for hundreds of ms.
        gc.freeze()
        return election

    def preload(self, client: redis.Redis, election_ids: list[str]) -> None:
        """Fetch and index definitions before the worker's event loop runs (a national roll
        takes a second), with a synchronous client: there is no loop to block yet."""
        for election_id in election_ids:
            raw = client.get(election_key(election_id))
            if raw is not None:
                self.remember(election_id, raw)  # type: ignore[arg-type]  # bytes: no decode_responses

    def known(self) -> list[ElectionIndex]:
        """Every definition fetched so far (re-registered if Redis loses them)."""
        return list(self._known.values())


class _Strict:
    """``ElectionCache`` as an ``ElectionLookup`` that raises ``ElectionNeeded`` instead of
    answering None for an id Redis may have: a first pass over a batch finds what to ``prepare``."""

    def __init__(self, cache: ElectionCache) -> None:
        self._cache = cache

    def get(self, election_id: str) -> ElectionIndex | None:
        election = self._cache.get(election_id)
        if election is None and self._cache.needs_fetch(election_id):
            raise ElectionNeeded(election_id)
        return election
