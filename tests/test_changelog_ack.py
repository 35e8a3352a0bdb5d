"""A chunk's states reach the table store, and so Redis, only once Kafka acknowledged their
changelog records (``AreaTransaction.commit``, step 4 then 5).

Flushed before, a state could be in Redis while its record was still unacknowledged: a crash then
re-delivers the chunk, which finds nothing new in the store and sends no record, and a Redis that
later loses its data is rebuilt from a changelog without that report.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import orjson
import redis

from stream.adapters.redis.clients import async_client
from stream.adapters.redis.keys import table_partition_prefix
from stream.domain.aggregation import AreaState
from stream.runtime.standings import StandingsWriter
from stream.runtime.transaction import AreaTransaction, TouchedArea
from stream.settings import Settings
from stream.testing import FakeProducer

from .test_store import changelog, make_store


@dataclass
class _Message:
    """What the transaction reads of a Faust event's message: its table partition."""

    partition: int


@dataclass
class _Event:
    message: _Message


def test_a_state_reaches_redis_only_after_its_changelog_record_is_acknowledged(services: Settings) -> None:
    app_id = f"ack-{uuid.uuid4().hex[:6]}"
    plain = redis.Redis.from_url(services.redis_dsn())
    data_key = table_partition_prefix(app_id, "things", 1) + ":data"

    async def scenario() -> None:
        store, table = make_store(services, app_id)
        tp1 = changelog(table, 1)
        await store.on_rebalance({tp1}, set(), {tp1})
        producer = FakeProducer()
        topic = table.changelog_topic.get_topic_name()
        producer.unacknowledged.add(topic)
        state = AreaState()
        state.version = 7
        area = TouchedArea(None, "commune", "42218", b"commune-42218", state, _Event(_Message(1)))  # type: ignore[arg-type]
        area.written = True
        tx = AreaTransaction(table, OrderedDict(), producer)  # type: ignore[arg-type]
        tx.add(area)
        standings = StandingsWriter(async_client(services.redis_dsn()))
        commit = asyncio.ensure_future(tx.commit(standings))
        for _ in range(20):  # the commit runs up to the wait for Kafka's acknowledgement
            await asyncio.sleep(0.01)
        assert [key for _, key, _ in producer.take(topic)] == [b"commune-42218"]
        await store.flush()  # the store's timer fires meanwhile
        assert plain.hgetall(data_key) == {}, "a state reached Redis before Kafka acknowledged its record"
        assert not commit.done()

        producer.acknowledge()
        await asyncio.wait_for(commit, 5)
        await store.flush()
        stored = plain.hgetall(data_key)
        assert list(stored) == [b"commune-42218"]
        assert orjson.loads(stored[b"commune-42218"])["v"] == 7
        assert plain.get(table_partition_prefix(app_id, "things", 1) + ":offset") == b"0"
        await standings.redis.aclose()

    asyncio.run(scenario())
