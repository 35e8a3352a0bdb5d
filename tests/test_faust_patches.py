"""The Faust patches of ``stream/runtime/faust/``: installed by the app, and the aiokafka behaviour
they rely on, checked against the real broker (the end-to-end check is the two-worker takeover
test in test_faults.py; the upstream code they copy is checked by test_faust_drift.py)."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from stream.runtime.app import create_app
from stream.runtime.faust.bundle import Bundle
from stream.runtime.faust.consumer import (
    FETCH_MAX_WAIT_MS,
    _Consumer,
    _ConsumerThread,
    _DeliveryCheck,
    _LivePartitions,
)
from stream.runtime.faust.monitor import QuietMonitor
from stream.runtime.faust.recovery import SeekFirstRecovery
from stream.settings import Settings


def test_the_app_runs_with_the_fixes_and_the_quiet_monitor(services: Settings) -> None:
    app = create_app(services.model_copy(update={"app_id": f"t-takeover-{uuid.uuid4().hex[:6]}"}))
    assert isinstance(app.tables.recovery, SeekFirstRecovery)
    assert isinstance(app.consumer, _Consumer)
    assert isinstance(app.consumer._thread, _ConsumerThread)  # type: ignore[attr-defined]
    assert isinstance(app.monitor, QuietMonitor)
    assert app.bundled_topics == {services.results_topic, services.turnout_topic}  # type: ignore[attr-defined]


def _record(tp: TP, offset: int) -> ConsumerMessage:
    return ConsumerMessage(
        tp.topic, tp.partition, offset, 0.0, 0, None, b"key", b"value", None, tp=tp, generation_id=1
    )


def test_a_bundle_commits_exactly_what_its_records_would(services: Settings) -> None:
    """Faust commits up to the first offset not acknowledged: a bundle must acknowledge each of
    its records, and nothing before it is acknowledged itself."""
    app = create_app(services.model_copy(update={"app_id": f"t-bundle-{uuid.uuid4().hex[:6]}"}))
    consumer = app.consumer
    tp = TP(services.results_topic, 0)
    app.topics._acking_topics.add(tp.topic)  # as the conductor does once it subscribed
    consumer._committed_offset[tp] = 10
    first = Bundle.of(tp, [_record(tp, offset) for offset in range(10, 15)])
    second = Bundle.of(tp, [_record(tp, offset) for offset in range(15, 17)])
    assert first.offset == 14 and [record.offset for record in first.value] == list(range(10, 15))
    for bundle in (first, second):
        bundle.incref()  # as the conductor does, once per stream
        consumer._unacked_messages.add(bundle)  # as the stream does when it takes it

    second.ack(consumer)
    assert consumer._new_offset(tp) is None, "offsets 10-14 are not acknowledged yet"
    first.ack(consumer)
    assert all(record.acked for record in first.value + second.value)
    assert consumer._new_offset(tp) == 17
    assert not consumer._unacked_messages, "a shutdown would wait for the bundles forever"


class _Flag:
    def __init__(self, value: bool = False) -> None:
        self.value = value

    def __call__(self) -> bool:
        return self.value


def _consumer(tp: str, queue_full: bool) -> tuple[Any, dict[str, _Flag], Any]:
    """A consumer as ``_DeliveryCheck`` sees it: the four things that can make a delivery wait."""
    flags = {name: _Flag() for name in ("suspended", "flow_control_suspended", "lock_held")}
    buffer = SimpleNamespace(pending=asyncio.Queue(), max_messages=100)
    queue = SimpleNamespace(full=_Flag(queue_full))
    app = SimpleNamespace(
        flow_control=SimpleNamespace(_suspend=SimpleNamespace(is_set=flags["flow_control_suspended"])),
        producer=SimpleNamespace(buffer=buffer),
        conf=SimpleNamespace(producer_threaded=False),
        topics=SimpleNamespace(
            _tp_index={tp: [SimpleNamespace(queue=queue)]},
            _tp_to_callback_lock=SimpleNamespace(locked=flags["lock_held"]),
        ),
    )
    consumer = SimpleNamespace(app=app, suspend_flow=SimpleNamespace(is_set=flags["suspended"]))
    return consumer, flags, SimpleNamespace(buffer=buffer, queue=queue)


def test_direct_delivery_only_when_nothing_can_wait() -> None:
    consumer, flags, parts = _consumer("results-0", queue_full=False)
    check = _DeliveryCheck(consumer)
    assert check("results-0")
    assert not check("unknown-0"), "a partition with no stream: Faust's path"
    for name, flag in flags.items():
        flag.value = True
        assert not check("results-0"), name
        flag.value = False
    for _ in range(101):
        parts.buffer.pending.put_nowait(object())
    assert not check("results-0"), "producer buffer over its limit"
    while not parts.buffer.pending.empty():
        parts.buffer.pending.get_nowait()
    assert check("results-0")
    parts.queue.full.value = True
    assert not check("results-0"), "a full stream buffer"


def test_paused_partitions_stay_paused_when_none_is_active(services: Settings) -> None:
    """aiokafka reads an empty set of partitions as "every partition": Faust's consumer, whose
    active set is empty while all partitions are paused, was handed the paused ones' records."""
    topic = f"test-takeover-{uuid.uuid4().hex[:12]}"
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async def run() -> tuple[set[int], set[int], set[int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for n in range(10):
                await producer.send_and_wait(topic, b"%d" % n, partition=n % 2)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=services.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([first, second])

            async def fetched(partitions: object, timeout: float = 5) -> set[int]:
                await consumer.seek_to_beginning(first, second)
                records = await consumer._fetcher.fetched_records(
                    partitions, timeout=timeout
                )  # what Faust calls
                return {tp.partition for tp, batch in records.items() if batch}

            empty_set = await fetched(set())
            none_active = await fetched(_LivePartitions(set()), timeout=1)
            first_active = await fetched(_LivePartitions({first}))
            return empty_set, none_active, first_active
        finally:
            await consumer.stop()

    empty_set, none_active, first_active = asyncio.run(run())
    assert empty_set, "aiokafka no longer reads an empty set as every partition: the wrapper may go"
    assert none_active == set()
    assert first_active == {0}


def test_changelog_partitions_faust_does_not_read_are_not_fetched(services: Settings) -> None:
    """aiokafka sends no fetch to a broker while records it fetched are unread and younger than
    0.1 s: the first record of each changelog partition an active worker never reads held every
    fetch back (the latency bench's p99). Paused in aiokafka, they are not fetched; read again
    (a recovery), they are."""
    changelog, results = f"t-x-areas-changelog-{uuid.uuid4().hex[:8]}", f"test-results-{uuid.uuid4().hex[:8]}"
    log0, results0 = TopicPartition(changelog, 0), TopicPartition(results, 0)
    thread = object.__new__(_ConsumerThread)  # only what _pause_unread_changelogs uses
    thread.app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={changelog}))

    async def run() -> tuple[bool, bool, set[TopicPartition]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(topic, num_partitions=1, replication_factor=1) for topic in (changelog, results)]
            )
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(changelog, b"state", partition=0)
            await producer.send_and_wait(results, b"report", partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=services.kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            consumer.assign([log0, results0])
            thread._pause_unread_changelogs(consumer, {results0})  # Faust reads the results only
            fetched = await consumer._fetcher.fetched_records({results0}, timeout=5)
            changelog_held = log0 in consumer._fetcher._records  # fetched in the same request, unread
            thread._pause_unread_changelogs(consumer, {results0, log0})  # a recovery reads it
            recovered = await consumer._fetcher.fetched_records({log0}, timeout=5)
            thread._pause_unread_changelogs(consumer, {results0})  # recovered: unread again
            consumer.assign([log0, results0])  # a rebalance: aiokafka forgets what was paused
            thread._pause_unread_changelogs(consumer, {results0})
            assert consumer.paused() == {log0}, "not paused again after a new assignment"
            return (
                bool(fetched.get(results0)),
                changelog_held,
                {tp for tp, batch in recovered.items() if batch},
            )
        finally:
            await consumer.stop()

    got_results, changelog_held, recovered = asyncio.run(run())
    assert got_results
    assert not changelog_held, "the unread changelog partition was fetched"
    assert recovered == {log0}


def test_idle_fetches_are_held_briefly(services: Settings) -> None:
    """A takeover's changelog partitions wait for the fetch in flight: Faust's 1.5 s made a table
    recovery after a kill -9 take 3.2 s instead of 0.6 s (bench/replay_2017.py)."""
    app = create_app(services.model_copy(update={"app_id": f"t-fetch-{uuid.uuid4().hex[:6]}"}))
    thread = app.consumer._thread  # type: ignore[attr-defined]

    async def created() -> Any:  # aiokafka wants a running loop
        return thread._create_worker_consumer(thread.transport)

    assert asyncio.run(created())._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500
