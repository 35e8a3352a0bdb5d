"""Sending a batch's messages as a few Kafka record batches instead of one future per message.

A night makes hundreds of thousands of update events; aiokafka's per-message ``send`` costs
a future, a partitioner call and an accumulator append each. Here a batch's messages are
grouped per topic-partition and appended to aiokafka ``BatchBuilder`` s (``send_batch``).
Faust flushes the same producer before it commits offsets, so at-least-once still holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2
from faust.types import ProducerT

__all__ = ["Outbox", "partition_of"]


@lru_cache(maxsize=1 << 18)
def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as Java clients, aiokafka and Faust compute it).

    Cached: murmur2 is pure Python in aiokafka, and an area's key is used by every message
    about it (a bureau's three first events, a commune's total in every batch).
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


#: Called with (topic-partition, offset of its last record) once a record batch is acknowledged.
OnDelivered = Callable[[TopicPartition, int], None]


class Outbox:
    """Messages gathered during one batch; ``send`` hands them to Kafka in order per partition.

    A message goes into its partition's record batch as it is added (aiokafka copies it in), so
    the caller need not hold it: ``orjson.dumps`` output can be passed as it is (see ``dumps``).
    Only while a topic's partition count is not yet known (the first batch) are its messages
    held, until ``send`` has fetched the metadata.
    """

    def __init__(self, producer: ProducerT) -> None:
        self._aio = producer._ensure_producer()  # type: ignore[attr-defined]  # the aiokafka producer
        self._open: dict[tuple[str, int], list[Any]] = {}  # (topic, partition) -> [batch, records]
        self._full: list[tuple[str, int, Any, int]] = []  # closed batches, in order
        self._held: dict[str, list[tuple[bytes | None, bytes, int | None]]] = {}
        self._partitions: dict[str, int] = {}

    def add(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Queue a message; its partition is the key's (Kafka's default partitioner) unless given."""
        held = self._held.get(topic)
        if held is None:
            count = self._partitions.get(topic)
            if count is None:
                known = self._aio.client.cluster.partitions_for_topic(topic)
                if known:
                    count = self._partitions[topic] = len(known)
                else:
                    held = self._held[topic] = []
        if held is not None:
            held.append((key, value, partition))
            return
        if partition is None:
            partition = partition_of(key, count) if key is not None else 0
        self._append(topic, partition, key, value)

    def _append(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        slot = self._open.get((topic, partition))
        if slot is None:
            slot = self._open[(topic, partition)] = [self._aio.create_batch(), 0]
        if slot[0].append(key=key, value=value, timestamp=None) is None:  # full: start another
            self._full.append((topic, partition, slot[0], slot[1]))
            slot[0], slot[1] = self._aio.create_batch(), 0
            slot[0].append(key=key, value=value, timestamp=None)
        slot[1] += 1

    async def send(self, on_delivered: OnDelivered | None = None) -> list[asyncio.Future[Any]]:
        """Queue everything; returns the delivery futures (Faust's commit waits for them anyway)."""
        for topic, messages in self._held.items():
            await self._aio.client._wait_on_metadata(topic)
            count = len(self._aio.client.cluster.partitions_for_topic(topic))
            for key, value, partition in messages:
                if partition is None:
                    partition = partition_of(key, count) if key is not None else 0
                self._append(topic, partition, key, value)
        self._held.clear()
        batches = self._full + [
            (topic, partition, batch, records) for (topic, partition), (batch, records) in self._open.items()
        ]
        self._full, self._open = [], {}
        return [
            await self._send_batch(self._aio, batch, topic, partition, records, on_delivered)
            for topic, partition, batch, records in batches
        ]

    async def deliver(self) -> None:
        """``send``, then wait until Kafka acknowledged every batch (raises what it refused)."""
        delivered = await self.send()
        if delivered:
            await asyncio.gather(*delivered)

    @staticmethod
    async def _send_batch(
        aio: Any, batch: Any, topic: str, partition: int, records: int, on_delivered: OnDelivered | None
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await aio.send_batch(batch, topic, partition=partition)
        if on_delivered is not None:

            def delivered(done: asyncio.Future[Any]) -> None:
                if not done.cancelled() and done.exception() is None and done.result() is not None:
                    first = done.result().offset  # a record batch's metadata is its first record's
                    on_delivered(TopicPartition(topic, partition), first + records - 1)

            future.add_done_callback(delivered)
        return future
