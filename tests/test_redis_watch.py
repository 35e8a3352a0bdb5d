"""The Redis watch settles the standings the table store owes, and only once they are written
(real Redis, real store; the restore itself is replaced: ``test_recovery.py`` runs the real one)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
import redis
import redis.asyncio as aioredis

from stream.adapters.redis.elections import ElectionCache
from stream.adapters.redis.keys import alive_marker, table_partition_prefix, table_pattern
from stream.runtime.redis_watch import MARKER_TTL, RedisWatch
from stream.runtime.standings import StandingsWriter
from stream.settings import Settings

from .test_store import changelog, make_store, replay


class Restores:
    """Stands in for ``RedisWatch.restore``: counts its runs, fails while ``failing``."""

    def __init__(self) -> None:
        self.runs = 0
        self.failing = False

    async def __call__(self, why: str = "Redis had lost its data") -> None:
        self.runs += 1
        self.why = why
        if self.failing:
            raise redis.ConnectionError("Redis went away during the restore")


@dataclass
class Setup:
    watch: RedisWatch
    store: Any  # a RedisStore
    table: Any
    restores: Restores
    plain: redis.Redis
    marker: str
    prefix: str  # partition 0's keys


def with_watch(services: Settings, test: Callable[[Setup], Awaitable[None]]) -> None:
    """Runs ``test`` on a fresh app with partition 0 assigned and its worker marker in Redis;
    removes its keys afterwards."""
    app_id = f"watch-{uuid.uuid4().hex[:6]}"
    plain = redis.Redis.from_url(services.redis_dsn())
    marker = alive_marker()

    async def scenario() -> None:
        store, table = make_store(services, app_id)
        client = aioredis.Redis.from_url(services.redis_dsn())
        elections = ElectionCache(client, alive_marker=marker)
        watch = RedisWatch(services, client, marker, elections, table, dict, StandingsWriter(client))
        plain.set(marker, "1", ex=MARKER_TTL)
        watch.marker_set = True
        restores = Restores()
        watch.restore = restores  # type: ignore[method-assign]
        tp0 = changelog(table, 0)
        await store.on_rebalance({tp0}, set(), {tp0})
        try:
            prefix = table_partition_prefix(app_id, "things", 0)
            await test(Setup(watch, store, table, restores, plain, marker, prefix))
        finally:
            await client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        keys = list(plain.scan_iter(match=table_pattern(app_id)))
        plain.delete(marker, *keys)


def test_owed_standings_are_settled_only_by_a_restore_that_went_through(services: Settings) -> None:
    """CI lost standings for good: the watch cleared the store's "rebuilt" flag before restoring,
    and the store had written the offset that tells the next owner nothing is missing. A failed
    restore (or a kill -9 before it) now leaves the partition owed, its offset out of Redis."""

    async def test(s: Setup) -> None:
        watch, store, restores, plain, prefix = s.watch, s.store, s.restores, s.plain, s.prefix
        replay(store, (b"a", b"1", 0, 3))
        restores.failing = True
        await watch.check()
        assert restores.runs == 1
        await store.flush()
        assert plain.get(prefix + ":offset") is None

        restores.failing = False
        await watch.check()
        assert restores.runs == 2
        assert store.standings_owed() == {}
        await store.flush()
        assert plain.get(prefix + ":offset") == b"3"
        await watch.check()
        assert restores.runs == 2  # nothing owed, the marker there: nothing to do

    with_watch(services, test)


def test_no_restore_from_a_half_replayed_table(services: Settings) -> None:
    """Standings written from a table still being replayed are old ones, and SET NX keeps them
    for good: the watch waits for the replay to end."""

    async def test(s: Setup) -> None:
        watch, store, table, restores = s.watch, s.store, s.table, s.restores
        table.app.in_recovery = True
        replay(store, (b"a", b"1", 0, 3))
        await watch.check()
        assert restores.runs == 0
        table.app.in_recovery = False
        await watch.check()
        assert restores.runs == 1

    with_watch(services, test)


def test_redis_wiped_while_running_is_settled_by_one_restore(services: Settings) -> None:
    """The marker gone and the store's flush finding its partition gone: the marker's restore
    settles what the store owes too (its snapshot taken before)."""

    async def test(s: Setup) -> None:
        watch, store, table, restores, plain, marker, prefix = (
            s.watch,
            s.store,
            s.table,
            s.restores,
            s.plain,
            s.marker,
            s.prefix,
        )
        store._set(b"a", b"1", partition=0)
        store.set_persisted_offset(changelog(table, 0), 4)
        await store.flush()
        assert plain.get(prefix + ":offset") == b"4"

        plain.delete(marker, prefix + ":offset", prefix + ":data")
        store._set(b"b", b"2", partition=0)
        await store.flush()
        assert plain.get(prefix + ":offset") is None
        await watch.check()
        assert restores.runs == 1 and plain.get(marker) == b"1"
        await store.flush()
        assert plain.hgetall(prefix + ":data") == {b"a": b"1", b"b": b"2"}
        assert plain.get(prefix + ":offset") == b"4"
        await watch.check()
        assert restores.runs == 1

    with_watch(services, test)


def test_a_silent_redis_never_blocks_the_event_loop() -> None:
    """Definitions and the store's offsets are read inside the worker's event loop: against a Redis
    that accepts connections and never answers, the loop must go on (a timer keeps ticking)
    while an unknown election is asked for, a known one's revision is checked (given up after
    ``QUICK_TIMEOUT``, then left alone a while) and Faust asks a partition's offset. A
    synchronous client there held the whole worker for its socket timeout."""
    import socket
    import time

    import orjson
    import pytest

    from stream.adapters.redis import clients
    from stream.adapters.redis import elections as cached
    from stream.domain.roll import ElectionIndex
    from stream.errors import ElectionsUnavailable
    from stream.runtime.store import RedisStore

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts, never answers
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"

    async def scenario() -> None:
        longest_gap = 0.0
        ticking = True

        async def ticker() -> None:
            nonlocal longest_gap
            last = time.monotonic()
            while ticking:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                longest_gap, last = max(longest_gap, now - last), now

        ticks = asyncio.ensure_future(ticker())
        cache = cached.ElectionCache(clients.async_client(url))
        definition = {
            "election": "e",
            "name": "e",
            "candidates": [{"id": "A", "name": "a"}],
            "bureaux": [{"bureau": "1-1", "commune": "1", "department": "1", "registered": 1}],
        }
        index = cache.remember("e", orjson.dumps(definition))
        cache._checked_at["e"] = 0.0  # its revision check is due
        began = time.monotonic()
        await cache.check_revisions()
        assert time.monotonic() - began < 4 * cached.QUICK_TIMEOUT
        assert cache.get("e") is index  # the held definition serves meanwhile
        began = time.monotonic()
        await cache.check_revisions()
        assert time.monotonic() - began < 0.05  # not asked again yet
        with pytest.raises(ElectionsUnavailable):
            await cache.prepare(["unknown"])  # within the client's timeouts, the loop going on
        assert cache.get("unknown") is None and isinstance(cache.get("e"), ElectionIndex)

        app = faust.App(f"silent-{uuid.uuid4().hex[:6]}", broker="kafka://localhost:1", store=url)
        store = app.Table("things", key_type=bytes, value_type=bytes, partitions=2).data
        assert isinstance(store, RedisStore)
        began = time.monotonic()
        assert store.persisted_offset(changelog(app.tables["things"], 1)) is None  # not loaded: replay all
        assert time.monotonic() - began < 0.05
        ticking = False
        await ticks
        assert longest_gap < 0.15, f"the event loop stood still for {longest_gap:.2f} s"

    try:
        asyncio.run(scenario())
    finally:
        silent.close()


def test_every_redis_client_gives_up_on_a_silent_redis(monkeypatch: Any) -> None:
    """The clients of ``adapters.redis.clients`` against a Redis that accepts connections and never
    answers: an error within the timeouts (with redis-py's retries), not a call held forever.
    (The timeouts are shortened here; redis-py's own defaults have none.)"""
    import asyncio
    import socket
    import time

    import pytest
    import redis

    from stream.adapters.redis import clients

    monkeypatch.setattr(clients, "SOCKET_TIMEOUT", 0.3)
    monkeypatch.setattr(clients, "CONNECT_TIMEOUT", 0.3)

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    bound = 4 * (clients.CONNECT_TIMEOUT + clients.SOCKET_TIMEOUT)  # redis-py retries 3 times
    try:
        began = time.monotonic()
        with pytest.raises(redis.RedisError):
            clients.sync_client(url).get("x")
        assert time.monotonic() - began < bound

        async def ask() -> None:
            client = clients.async_client(url)
            try:
                await client.get("x")
            finally:
                await client.aclose()

        began = time.monotonic()
        with pytest.raises(redis.RedisError):
            asyncio.run(ask())
        assert time.monotonic() - began < bound
    finally:
        silent.close()


def test_a_flood_of_made_up_election_ids_is_remembered_within_a_bound(services: Settings) -> None:
    """Each unknown id is remembered (so that it is asked again at most once a second), but at
    most ``MISSING_IDS`` of them: random ids cannot grow a worker's memory without end."""
    from stream.adapters.redis import elections as cached

    async def flood() -> None:
        cache = cached.ElectionCache(aioredis.Redis.from_url(services.redis_dsn()))
        made_up = [f"made-up-{uuid.uuid4().hex}" for _ in range(cached.MISSING_IDS + 500)]
        for start in range(0, len(made_up), 1000):  # a batch's worth at a time, one round trip each
            await cache.prepare(made_up[start : start + 1000])
        assert all(cache.get(i) is None for i in made_up)
        assert len(cache._missing_since) == cached.MISSING_IDS
        assert not cache.needs_fetch(made_up[-1])  # asked again only after ``retry_after``
        await cache._client.aclose()

    asyncio.run(flood())
