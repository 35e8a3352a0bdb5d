"""A worker that lost its partitions without knowing it (paused past its session timeout, a
frozen VM) writes nothing over the next owner's state when it wakes up: the store's flush, the
standings and the tally's chunks are fenced by the partition's owner epoch (``runtime.store``).

Two stores on the same Redis stand for the two workers: the zombie loaded partition 0 first,
the new owner loaded it since.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict

import redis

from stream.adapters.redis.clients import async_client
from stream.adapters.redis.keys import table_partition_prefix
from stream.domain.aggregation import AreaState
from stream.runtime import metrics
from stream.runtime.standings import StandingsWriter
from stream.runtime.transaction import AreaTransaction, ChunkFenced, TouchedArea
from stream.settings import Settings
from stream.testing import FakeProducer

from .test_changelog_ack import _Event, _Message
from .test_store import changelog, make_store


def _fenced(what: str) -> float:
    return metrics.REGISTRY.get_sample_value("soiree_worker_fenced_writes_total", {"what": what}) or 0.0


def test_a_paused_worker_writes_nothing_over_the_next_owner(services: Settings) -> None:
    app_id = f"fence-{uuid.uuid4().hex[:6]}"
    plain = redis.Redis.from_url(services.redis_dsn())
    data_key = table_partition_prefix(app_id, "things", 0) + ":data"
    standings_key = f"soiree:results:{app_id}:commune:42218"

    async def scenario() -> None:
        zombie, zombie_table = make_store(services, app_id)
        await zombie.on_rebalance({changelog(zombie_table, 0)}, set(), {changelog(zombie_table, 0)})
        zombie._set(b"area", b"the zombie's older state", partition=0)  # then it is paused

        owner, owner_table = make_store(services, app_id)
        await owner.on_rebalance({changelog(owner_table, 0)}, set(), {changelog(owner_table, 0)})
        owner._set(b"area", b"the new owner's state", partition=0)
        await owner.flush()
        owner_standings = StandingsWriter(async_client(services.redis_dsn()))
        assert await owner_standings.write({standings_key: b"new"}, owner.owner_epochs({0}))

        # the zombie wakes up in the middle of a chunk: nothing of it reaches Redis or the changelog
        flushes, chunks = _fenced("store"), _fenced("chunk")
        zombie_standings = StandingsWriter(async_client(services.redis_dsn()))
        producer = FakeProducer()
        area = TouchedArea(None, "commune", "42218", b"area", AreaState(), _Event(_Message(0)))  # type: ignore[arg-type]
        area.written = True
        tx = AreaTransaction(zombie_table, OrderedDict(), producer)  # type: ignore[arg-type]
        tx.add(area)
        tx.views[standings_key] = b"old"
        tx.outbox.add("updates", b"commune 42218", b"an event of the zombie's")
        tx.outbox.add("nation", b"e", b"its departments' totals, older than the new owner's")
        try:
            await tx.commit(zombie_standings)
            raise AssertionError("the zombie's chunk went through")
        except ChunkFenced:
            pass
        assert producer.take(zombie_table.changelog_topic.get_topic_name()) == []
        assert producer.take("updates") == [] and producer.take("nation") == []
        assert b"area" not in zombie  # dropped: someone else's
        assert plain.get(standings_key) == b"new" and zombie_standings.pending == {}
        assert _fenced("chunk") == chunks  # counted by the tally (``Tallier._tally``), not here

        # then its flush timer fires
        await zombie.flush()
        assert plain.hgetall(data_key) == {b"area": b"the new owner's state"}
        assert _fenced("store") == flushes + 1
        assert b"area" not in zombie, "a fenced partition is dropped: it is someone else's"

        # it tallies on (the group has not told it yet): a chunk of that dropped partition is
        # fenced too, though the store no longer has an epoch to check for it
        later = TouchedArea(None, "commune", "42218", b"area", AreaState(), _Event(_Message(0)))  # type: ignore[arg-type]
        later.written = True
        tx = AreaTransaction(zombie_table, OrderedDict(), producer)  # type: ignore[arg-type]
        tx.add(later)
        tx.views[standings_key] = b"older still"
        try:
            await tx.commit(zombie_standings)
            raise AssertionError("a chunk of a partition the zombie dropped went through")
        except ChunkFenced:
            pass
        assert (
            plain.get(standings_key) == b"new"
            and producer.take(zombie_table.changelog_topic.get_topic_name()) == []
        )

        # the group rebalances and gives the zombie its partition back: Faust sees nothing newly
        # assigned, yet the store must load it again (else it would tally on nothing, fenced)
        await zombie.on_rebalance({changelog(zombie_table, 0)}, set(), set())
        assert zombie[b"area"] == b"the new owner's state"
        zombie._set(b"area", b"the zombie's newer state, owner again", partition=0)
        await zombie.flush()
        assert plain.hgetall(data_key) == {b"area": b"the zombie's newer state, owner again"}
        owner._set(b"area", b"now the other one is the zombie", partition=0)
        await owner.flush()
        assert plain.hgetall(data_key) == {b"area": b"the zombie's newer state, owner again"}

        # a partition whose owner key Redis lost is taken back by the one who holds it
        plain.delete(table_partition_prefix(app_id, "things", 0) + ":owner")
        zombie._set(b"area", b"newer", partition=0)
        await zombie.flush()
        assert plain.hget(data_key, b"area") == b"newer"
        await owner_standings.redis.aclose()
        await zombie_standings.redis.aclose()

    asyncio.run(scenario())
