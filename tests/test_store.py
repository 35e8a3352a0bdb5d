"""The Redis table store's own contract, against the real Redis (no worker, no broker traffic)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import faust
import pytest
import redis
from faust.types import TP

from stream.adapters.redis.keys import table_partition_prefix, table_pattern
from stream.runtime.faust.table_writes import write_under_event
from stream.runtime.store import RedisStore
from stream.settings import Settings


@dataclass
class _Message:
    key: bytes
    value: bytes | None
    partition: int
    offset: int


@dataclass
class _Event:
    message: _Message


def make_store(settings: Settings, app_id: str) -> tuple[RedisStore, Any]:
    app = faust.App(app_id, broker="kafka://localhost:1", store=settings.redis_dsn(), autodiscover=False)
    table = app.Table("things", key_type=bytes, value_type=bytes, partitions=2)
    store = table.data
    assert isinstance(store, RedisStore), (
        "the redis:// scheme must resolve to stream.runtime.store.RedisStore (entry point)"
    )
    return store, table


def changelog(table: Any, partition: int) -> TP:
    return TP(table.changelog_topic.get_topic_name(), partition)


async def unreachable(*args: Any, **kwargs: Any) -> Any:
    """Stands in for the flush script while Redis is away."""
    raise redis.ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")


def test_store_contract(services: Settings) -> None:
    app_id = f"store-{uuid.uuid4().hex[:6]}"
    plain = redis.Redis.from_url(services.redis_dsn())

    async def scenario() -> None:
        store, table = make_store(services, app_id)
        tp0, tp1 = changelog(table, 0), changelog(table, 1)
        await store.on_rebalance({tp0, tp1}, set(), {tp0, tp1})
        assert store.persisted_offset(tp0) is None  # nothing in Redis yet: full replay

        # the changelog path (recovery) and plain get/set/del/iterate/size
        store.apply_changelog_batch(
            [
                _Event(_Message(b"a", b"1", 0, 10)),
                _Event(_Message(b"b", b"2", 1, 5)),
                _Event(_Message(b"c", b"3", 0, 11)),
            ],
            to_key=lambda k: k,
            to_value=lambda v: v,
        )
        store.apply_changelog_batch(
            [_Event(_Message(b"c", None, 0, 12))], to_key=lambda k: k, to_value=lambda v: v
        )
        assert store[b"a"] == b"1" and store[b"b"] == b"2"
        assert b"c" not in store and len(store) == 2
        assert sorted(store.keys()) == [b"a", b"b"] and sorted(store.items()) == [(b"a", b"1"), (b"b", b"2")]
        store.set_persisted_offset(tp1, 6)
        # a replay into partitions Redis had nothing for: their offsets wait for the standings
        store.standings_restored(store.standings_owed())
        await store.flush()

        # what another program sees: one hash and one offset per partition, documented layout
        p0, p1 = table_partition_prefix(app_id, "things", 0), table_partition_prefix(app_id, "things", 1)
        assert p0 == "soiree:{" + app_id + ":things:0}"
        assert plain.hgetall(p0 + ":data") == {b"a": b"1"}
        assert plain.get(p0 + ":offset") == b"12"
        assert plain.hgetall(p1 + ":data") == {b"b": b"2"} and plain.get(p1 + ":offset") == b"6"

        # a second worker taking partition 0 over starts from Redis, offset read with the data
        other, other_table = make_store(services, app_id)
        await other.on_rebalance({changelog(other_table, 0)}, set(), {changelog(other_table, 0)})
        assert dict(other.items()) == {b"a": b"1"}
        assert other.persisted_offset(changelog(other_table, 0)) == 12
        await store.on_rebalance({tp0, tp1}, set(), {tp0})  # and gives it back (a new owner epoch)

        # giving a partition up forgets it locally
        await store.on_rebalance({tp0}, {tp1}, set())
        assert dict(store.items()) == {b"a": b"1"}

        # Redis restarted empty: the next flush notices the missing offset and rewrites the
        # partition, its offset withheld until the standings derived from it are back
        plain.delete(p0 + ":data", p0 + ":offset")
        store.apply_changelog_batch(
            [_Event(_Message(b"d", b"4", 0, 13))], to_key=lambda k: k, to_value=lambda v: v
        )
        await store.flush()
        assert plain.hgetall(p0 + ":data") == {b"a": b"1", b"d": b"4"}
        assert plain.get(p0 + ":offset") is None
        store.standings_restored(store.standings_owed())
        await store.flush()
        assert plain.get(p0 + ":offset") == b"13"

        # Redis away: writes wait in memory, nothing is lost, the flush goes through later
        working = store._flush_script
        store._flush_script = unreachable
        store._set(b"e", b"5", partition=0)  # the tally's write, then its changelog record's offset
        store.set_persisted_offset(tp0, 14)
        try:
            await store.flush()
            raise AssertionError("the flush should have failed")
        except (redis.RedisError, OSError):
            pass
        assert store[b"e"] == b"5"
        store._flush_script = working
        await store.flush()
        assert plain.hget(p0 + ":data", b"e") == b"5" and plain.get(p0 + ":offset") == b"14"

        # a password in the URL never shows in the store's label or repr
        secret_app = faust.App(
            f"{app_id}-s",
            broker="kafka://localhost:1",
            store="redis://:hunter2@localhost:1/0",
            autodiscover=False,
        )
        secret = secret_app.Table("x", key_type=bytes, value_type=bytes).data
        assert "hunter2" not in secret.label and "hunter2" not in repr(secret)

    asyncio.run(scenario())


def test_values_are_kept_at_their_own_size(services: Settings) -> None:
    """orjson's bytes carry their growth buffer (~10x a 3 kB value); the store must not keep it."""
    import tracemalloc

    import orjson

    store, _ = make_store(services, f"store-{uuid.uuid4().hex[:6]}")
    tracemalloc.start()
    values = [orjson.dumps({"state": "x" * 3000, "n": n}) for n in range(200)]
    for n, value in enumerate(values):
        store._set(f"k{n}".encode(), value, partition=0)
    del values
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held < 200 * 3000 * 1.5, f"{held / 200:.0f} bytes held per 3 kB value"
    assert orjson.loads(store[b"k7"])["n"] == 7


def test_a_partition_given_up_while_redis_is_away_is_not_written_later(services: Settings) -> None:
    """Redis away while a worker gives a partition up: its waiting writes must not reach Redis
    once it is back (the next owner has written newer state there by then); the next owner
    replays them from the changelog instead, Redis's offset still being before them."""
    app_id = f"store-{uuid.uuid4().hex[:6]}"
    plain = redis.Redis.from_url(services.redis_dsn())

    async def scenario() -> None:
        store, table = make_store(services, app_id)
        tp0, tp1 = changelog(table, 0), changelog(table, 1)
        await store.on_rebalance({tp0, tp1}, set(), {tp0, tp1})
        working = store._flush_script
        store._flush_script = unreachable
        store._set(b"area", b"old", partition=1)
        store._set(b"mine", b"kept", partition=0)
        store.set_persisted_offset(tp1, 7)
        await store.on_rebalance({tp0}, {tp1}, set())  # the flush before giving it up fails
        prefix1 = table_partition_prefix(app_id, "things", 1)
        plain.hset(prefix1 + ":data", b"area", b"newer, by the next owner")
        store._flush_script = working
        await store.flush()
        assert plain.hgetall(prefix1 + ":data") == {b"area": b"newer, by the next owner"}
        assert plain.get(prefix1 + ":offset") is None
        assert plain.hgetall(table_partition_prefix(app_id, "things", 0) + ":data") == {b"mine": b"kept"}

    asyncio.run(scenario())


def test_a_replay_into_a_partition_redis_lost_is_reported(services: Settings) -> None:
    """A worker starting after Redis lost everything cannot tell from its own marker (it is new);
    the store can: its changelog brings keys back to a partition Redis had no data for."""
    app_id = f"store-{uuid.uuid4().hex[:6]}"

    async def scenario() -> None:
        store, table = make_store(services, app_id)
        tp1 = changelog(table, 1)
        await store.on_rebalance({tp1}, set(), {tp1})
        store._set(b"kept", b"1", partition=1)
        store.set_persisted_offset(tp1, 3)
        await store.flush()  # partition 1 in Redis with its offset; partition 0 never written

        restarted, restarted_table = make_store(services, app_id)
        both = {changelog(restarted_table, 0), changelog(restarted_table, 1)}
        await restarted.on_rebalance(both, set(), both)
        restarted.apply_changelog_batch(
            [_Event(_Message(b"tail", b"2", 1, 4))], to_key=lambda k: k, to_value=lambda v: v
        )
        assert restarted.standings_owed() == {}  # Redis had partition 1: only its tail came back
        restarted.apply_changelog_batch(
            [_Event(_Message(b"lost", b"3", 0, 0))], to_key=lambda k: k, to_value=lambda v: v
        )
        assert list(restarted.standings_owed()) == [0]

    asyncio.run(scenario())


def replay(store: RedisStore, *records: tuple[bytes, bytes | None, int, int]) -> None:
    store.apply_changelog_batch(
        [_Event(_Message(*record)) for record in records], to_key=lambda k: k, to_value=lambda v: v
    )


def test_standings_owed_keep_the_offset_out_of_redis_until_they_are_restored(services: Settings) -> None:
    """A replay into a partition Redis had lost: what was derived from it (the standings) is lost
    too. Until the worker says it wrote them again, Redis gets the data but not the offset, so a
    worker killed meanwhile (CI: kill -9 one second after such a replay) leaves the next owner a
    full replay, which makes it owe them in turn. With the offset written, that owner replayed
    only a tail and nothing ever restored the standings."""
    app_id = f"store-{uuid.uuid4().hex[:6]}"
    plain = redis.Redis.from_url(services.redis_dsn())
    prefix = table_partition_prefix(app_id, "things", 0)

    async def scenario() -> None:
        store, table = make_store(services, app_id)
        tp0 = changelog(table, 0)
        await store.on_rebalance({tp0}, set(), {tp0})
        assert store.persisted_offset(tp0) is None
        replay(store, (b"a", b"1", 0, 10), (b"b", b"2", 0, 11))
        await store.flush()
        store._set(b"c", b"3", partition=0)  # the tally goes on meanwhile
        store.set_persisted_offset(tp0, 12)
        await store.flush()
        assert plain.hgetall(prefix + ":data") == {b"a": b"1", b"b": b"2", b"c": b"3"}
        assert plain.get(prefix + ":offset") is None
        assert store.persisted_offset(tp0) == 12  # the local copy has it all (a rebalance keeping it)

        # killed now: the next owner finds no offset, replays everything, and owes the standings
        after_kill, after_kill_table = make_store(services, app_id)
        tp0_next = changelog(after_kill_table, 0)
        await after_kill.on_rebalance({tp0_next}, set(), {tp0_next})
        assert after_kill.persisted_offset(tp0_next) is None
        replay(after_kill, (b"a", b"1", 0, 10), (b"b", b"2", 0, 11), (b"c", b"3", 0, 12))
        assert list(after_kill.standings_owed()) == [0]

        # this one lives on instead (the killed branch never happened: its owner epoch is undone,
        # else this store would be fenced as a zombie)
        plain.set(prefix + ":owner", store._epochs[0])
        # its standings written again, the offset goes in at the next flush
        owed = store.standings_owed()
        assert list(owed) == [0]
        store.standings_restored(owed)
        assert store.standings_owed() == {}
        await store.flush()
        assert plain.get(prefix + ":offset") == b"12"
        assert plain.hgetall(prefix + ":data") == {b"a": b"1", b"b": b"2", b"c": b"3"}
        replay(store, (b"d", b"4", 0, 13))  # a partition whose offset Redis has is not owed again...
        assert list(store.standings_owed()) == [0]  # ...unless Redis had lost it when it was loaded

    asyncio.run(scenario())


def test_a_partition_given_up_with_standings_owed_leaves_them_to_the_next_owner(services: Settings) -> None:
    """A rebalance before the standings were restored: the partition is flushed without its
    offset, forgotten here, and owed by whoever loads it next."""
    app_id = f"store-{uuid.uuid4().hex[:6]}"
    plain = redis.Redis.from_url(services.redis_dsn())
    prefix = table_partition_prefix(app_id, "things", 1)

    async def scenario() -> None:
        store, table = make_store(services, app_id)
        tp0, tp1 = changelog(table, 0), changelog(table, 1)
        await store.on_rebalance({tp0, tp1}, set(), {tp0, tp1})
        replay(store, (b"x", b"1", 1, 7))
        await store.on_rebalance({tp0}, {tp1}, set())
        assert plain.hgetall(prefix + ":data") == {b"x": b"1"}
        assert plain.get(prefix + ":offset") is None
        assert store.standings_owed() == {}

        other, other_table = make_store(services, app_id)
        tp1_next = changelog(other_table, 1)
        await other.on_rebalance({tp1_next}, set(), {tp1_next})
        assert other.persisted_offset(tp1_next) is None
        replay(other, (b"x", b"1", 1, 7))
        assert list(other.standings_owed()) == [1]

    asyncio.run(scenario())


def test_redis_wiped_while_running_withholds_the_offset_until_standings_are_restored(
    services: Settings,
) -> None:
    """The flush finds the partition gone (Redis restarted empty) and writes it again from
    memory, without its offset: the worker may be killed before its Redis watch restores the
    standings, and the next owner must then replay in full and owe them. Once restored, the
    offset goes in with the whole partition (Redis may have lost it once more meanwhile)."""
    app_id = f"store-{uuid.uuid4().hex[:6]}"
    plain = redis.Redis.from_url(services.redis_dsn())
    prefix = table_partition_prefix(app_id, "things", 0)

    def wipe() -> None:
        plain.delete(prefix + ":data", prefix + ":offset")

    async def scenario() -> None:
        store, table = make_store(services, app_id)
        tp0 = changelog(table, 0)
        await store.on_rebalance({tp0}, set(), {tp0})
        store._set(b"x", b"1", partition=0)
        store.set_persisted_offset(tp0, 5)
        await store.flush()
        assert plain.get(prefix + ":offset") == b"5"

        wipe()
        store._set(b"y", b"2", partition=0)
        store.set_persisted_offset(tp0, 6)
        await store.flush()
        assert plain.hgetall(prefix + ":data") == {b"x": b"1", b"y": b"2"}  # rewritten whole
        assert plain.get(prefix + ":offset") is None
        owed = store.standings_owed()
        assert list(owed) == [0]

        store._set(b"z", b"3", partition=0)  # later flushes write the data, still no offset
        store.set_persisted_offset(tp0, 7)
        await store.flush()
        assert plain.hget(prefix + ":data", b"z") == b"3" and plain.get(prefix + ":offset") is None
        assert store.persisted_offset(tp0) == 7

        wipe()  # lost again before the standings were back: nothing can tell without the offset...
        store.standings_restored(owed)
        await store.flush()  # ...so the offset goes in with the whole partition
        assert plain.hgetall(prefix + ":data") == {b"x": b"1", b"y": b"2", b"z": b"3"}
        assert plain.get(prefix + ":offset") == b"7"
        assert store.standings_owed() == {}

    asyncio.run(scenario())


def test_a_batch_replayed_after_the_snapshot_keeps_the_partition_owed(services: Settings) -> None:
    """The standings restored from a snapshot do not include what was replayed after it."""
    app_id = f"store-{uuid.uuid4().hex[:6]}"
    plain = redis.Redis.from_url(services.redis_dsn())
    prefix = table_partition_prefix(app_id, "things", 0)

    async def scenario() -> None:
        store, table = make_store(services, app_id)
        tp0 = changelog(table, 0)
        await store.on_rebalance({tp0}, set(), {tp0})
        replay(store, (b"a", b"1", 0, 0))
        snapshot = store.standings_owed()
        replay(store, (b"b", b"2", 0, 1))  # while the standings were being restored
        store.standings_restored(snapshot)
        await store.flush()
        assert list(store.standings_owed()) == [0]
        assert plain.get(prefix + ":offset") is None

        store.standings_restored(store.standings_owed())
        await store.flush()
        assert plain.get(prefix + ":offset") == b"1"
        assert plain.hgetall(prefix + ":data") == {b"a": b"1", b"b": b"2"}

    asyncio.run(scenario())


@dataclass
class _ChangelogEvent:
    """A changelog record as both stores read it (the memory store reads ``key``/``value``)."""

    message: _Message

    @property
    def key(self) -> bytes:
        return self.message.key

    @property
    def value(self) -> bytes | None:
        return self.message.value


STORES = {"redis": lambda settings: settings.redis_dsn(), "memory": lambda settings: "memory://"}


@pytest.mark.parametrize("backend", sorted(STORES))
def test_the_table_contract_holds_on_every_store(services: Settings, backend: str) -> None:
    """What the tally relies on, on the Redis store and on Faust's memory store (the benchmarks'):
    a changelog replay (puts, then a delete), reads, writes under an event (the partition comes
    from it, as ``AreaTransaction`` writes), iteration, size, and offsets that may be recorded."""
    app_id = f"contract-{backend}-{uuid.uuid4().hex[:6]}"

    async def scenario() -> None:
        app = faust.App(
            app_id, broker="kafka://localhost:1", store=STORES[backend](services), autodiscover=False
        )
        table = app.Table("things", key_type=bytes, value_type=bytes, partitions=2)
        store = table.data
        tp0, tp1 = changelog(table, 0), changelog(table, 1)
        await store.on_rebalance({tp0, tp1}, set(), {tp0, tp1})
        replay = [(b"a", b"1", 0, 10), (b"b", b"2", 1, 5), (b"c", b"3", 0, 11)]
        store.apply_changelog_batch(
            [_ChangelogEvent(_Message(*record)) for record in replay],
            to_key=lambda k: k,
            to_value=lambda v: v,
        )
        deleted = [_ChangelogEvent(_Message(b"c", None, 0, 12))]
        store.apply_changelog_batch(deleted, to_key=lambda k: k, to_value=lambda v: v)
        assert store.get(b"a") == b"1" and store.get(b"b") == b"2" and store.get(b"c") is None
        assert b"c" not in store and len(store) == 2

        write_under_event(store, b"d", b"4", _ChangelogEvent(_Message(b"d", b"4", 1, 0)))
        write_under_event(store, b"a", b"5", _ChangelogEvent(_Message(b"a", b"5", 0, 0)))
        assert dict(store.items()) == {b"a": b"5", b"b": b"2", b"d": b"4"}
        del store[b"b"]
        assert sorted(store.keys()) == [b"a", b"d"]
        store.set_persisted_offset(tp1, 6)  # the tally records each acknowledged changelog record
        assert store.persisted_offset(tp1) in (6, None)  # None: the memory store keeps no offsets
        if hasattr(store, "flush"):
            await store.flush()
        await store.on_rebalance(set(), {tp0, tp1}, set())

    try:
        asyncio.run(scenario())
    finally:
        client = redis.Redis.from_url(services.redis_dsn())
        keys = list(client.scan_iter(match=table_pattern(app_id)))
        if keys:
            client.delete(*keys)
