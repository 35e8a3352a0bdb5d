"""The Faust fixes of ``stream/takeover.py``: installed by the app, and the aiokafka behaviour
they rely on, checked against the real broker (the end-to-end check is the two-worker takeover
test in test_faults.py)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.app import create_app
from stream.settings import Settings
from stream.takeover import SeekFirstRecovery, _ConsumerThread, _LivePartitions


def test_the_app_runs_with_both_fixes(services: Settings) -> None:
    app = create_app(services.model_copy(update={"app_id": f"t-takeover-{uuid.uuid4().hex[:6]}"}))
    assert isinstance(app.tables.recovery, SeekFirstRecovery)
    assert isinstance(app.consumer._thread, _ConsumerThread)  # type: ignore[attr-defined]


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
                records = await consumer._fetcher.fetched_records(partitions, timeout=timeout)  # what Faust calls
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
