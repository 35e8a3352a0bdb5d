"""``stream.runtime.faust.outbox``: messages reach their partitions whole, in order, in as many record batches
as they need, whether the topic's metadata was known when they were added or not.

A real aiokafka producer builds the record batches (``fakes.FakeProducer``: never started, it keeps
what would be sent and decodes it with aiokafka's own reader). Partitions are checked against aiokafka's
``DefaultPartitioner``, not against ``outbox.partition_of``.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from stream.runtime.faust.outbox import Outbox
from stream.testing import PARTITIONS, FakeProducer


def _run(
    metadata_known: bool, max_batch_size: int
) -> tuple[FakeProducer, list[tuple[str, int, bytes | None, bytes]], dict[TopicPartition, int]]:
    async def scenario() -> tuple[
        FakeProducer, list[tuple[str, int, bytes | None, bytes]], dict[TopicPartition, int]
    ]:
        producer = FakeProducer(max_batch_size, metadata_known)
        outbox = Outbox(producer)  # type: ignore[arg-type]
        partitioner = DefaultPartitioner()
        expected: list[tuple[str, int, bytes | None, bytes]] = []
        for n in range(600):
            key = f"area-{n % 37}".encode()
            value = f"message {n} ".encode() * 20
            topic = "events" if n % 3 else "states"
            if topic == "states":  # placed by the caller, as the changelog is
                partition = n % PARTITIONS
                outbox.add(topic, key, value, partition=partition)
            else:
                partition = partitioner(key, list(range(PARTITIONS)), list(range(PARTITIONS)))
                outbox.add(topic, key, value)
            expected.append((topic, partition, key, value))
        delivered: dict[TopicPartition, int] = {}
        futures = await outbox.send(on_delivered=lambda tp, offset: delivered.__setitem__(tp, offset))
        await asyncio.gather(*futures)
        return producer, expected, delivered

    return asyncio.run(scenario())


def _check(
    producer: FakeProducer,
    expected: list[tuple[str, int, bytes | None, bytes]],
    delivered: dict[TopicPartition, int],
) -> None:
    got = [
        (topic, partition, key, value)
        for topic, partition, records in producer.sent
        for key, value in records
    ]
    for place in {(topic, partition) for topic, partition, _, _ in expected}:
        assert [m for m in got if m[:2] == place] == [m for m in expected if m[:2] == place], place
    assert len(got) == len(expected)
    # the callback hears of each partition's last record
    assert delivered == {TopicPartition(t, p): count - 1 for (t, p), count in producer.offsets.items()}


def test_messages_reach_their_partitions_in_order() -> None:
    producer, expected, delivered = _run(metadata_known=True, max_batch_size=512 * 1024)
    _check(producer, expected, delivered)
    assert len(producer.sent) == len({(t, p) for t, p, _, _ in expected})  # one record batch per partition


def test_full_record_batches_are_sent_in_order_before_the_next() -> None:
    producer, expected, delivered = _run(metadata_known=True, max_batch_size=2048)
    _check(producer, expected, delivered)
    assert len(producer.sent) > 3 * len({(t, p) for t, p, _, _ in expected})


def test_messages_added_before_the_topic_metadata_is_known_are_held_then_sent() -> None:
    producer, expected, delivered = _run(metadata_known=False, max_batch_size=2048)
    _check(producer, expected, delivered)
    assert producer.known == {"events", "states"}
