"""Reading topics by position, for ``soiree serve``'s event hub and its catch-up readers.

No consumer group: each reader is assigned every partition itself and seeks where it is told
(the end, the beginning, or given next offsets), so any number of them never disturb the workers
or each other, and nothing is committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream.adapters.kafka.client import client_options
from stream.settings import Settings

__all__ = ["Record", "TopicReader", "consumer_group_members"]

#: Seconds to wait for a topic to appear in the metadata.
TOPIC_WAIT = 10.0
#: Where a topic is read from: next offset by partition (a missing partition reads from its beginning).
Offsets = Mapping[int, int]


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    value: bytes


async def partitions_of(settings: Settings, topics: list[str]) -> dict[str, list[int]]:
    """The partitions of each topic; LookupError when one does not exist (after ``TOPIC_WAIT``:
    a topic just created takes a moment to show in the metadata)."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=5000)
    await admin.start()
    try:
        deadline = time.monotonic() + TOPIC_WAIT
        while True:
            found = {
                described["topic"]: sorted(p["partition"] for p in described["partitions"])
                for described in await admin.describe_topics(topics)
                if described["error_code"] == 0 and described["partitions"]
            }
            missing = [topic for topic in topics if topic not in found]
            if not missing:
                return found
            if time.monotonic() > deadline:
                raise LookupError(f"topic {missing[0]} does not exist (run `soiree up`)")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


class TopicReader:
    """A consumer of whole topics: every partition, from the end unless offsets are given."""

    def __init__(self, settings: Settings, max_records: int = 2000) -> None:
        self._settings = settings
        self._consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # an offset deleted by retention: its partition's first kept
            max_poll_records=max_records,
        )
        self._partitions: dict[str, list[TopicPartition]] = {}

    async def start(self, topics: Mapping[str, Offsets | None]) -> None:
        """Assign every partition of ``topics``; each from its offsets, or from the end for None."""
        consumer = self._consumer
        await consumer.start()
        try:
            for topic, partitions in (await partitions_of(self._settings, list(topics))).items():
                self._partitions[topic] = [TopicPartition(topic, p) for p in partitions]
            consumer.assign([tp for tps in self._partitions.values() for tp in tps])
            for topic, offsets in topics.items():
                tps = self._partitions[topic]
                if offsets is None:
                    await consumer.seek_to_end(*tps)
                    continue
                for tp in tps:
                    if tp.partition in offsets:
                        consumer.seek(tp, offsets[tp.partition])
                    else:
                        await consumer.seek_to_beginning(tp)
        except BaseException:
            await consumer.stop()
            raise

    async def stop(self) -> None:
        await self._consumer.stop()

    async def positions(self, topic: str) -> dict[int, int]:
        """The next offset this reader will read, by partition of ``topic``."""
        return {tp.partition: await self._consumer.position(tp) for tp in self._partitions[topic]}

    async def beginnings(self, topic: str) -> dict[int, int]:
        """The first offset Kafka still keeps, by partition of ``topic``."""
        found = await self._consumer.beginning_offsets(self._partitions[topic])
        return {tp.partition: offset for tp, offset in found.items()}

    async def read(self, timeout: float = 1.0) -> list[Record]:
        """What arrived, partition by partition in offset order (empty after ``timeout`` seconds)."""
        batch = await self._consumer.getmany(timeout_ms=int(timeout * 1000))
        return [
            Record(tp.topic, tp.partition, message.offset, message.value or b"")
            for tp, messages in batch.items()
            for message in messages
        ]


async def consumer_group_members(settings: Settings, group: str) -> int:
    """How many members the consumer group has now (0 when it is empty or unknown)."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=5000)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members = 0
    for response in responses:
        for described in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members[, authorized_operations])
            members += len(described[5])
    return members
