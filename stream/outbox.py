"""Sending a batch's messages as a few Kafka record batches instead of one future per message.

A night makes hundreds of thousands of update events; aiokafka's per-message ``send`` costs
a future, a partitioner call and an accumulator append each. Here a batch's messages are
grouped per topic-partition and appended to aiokafka ``BatchBuilder`` s (``send_batch``).
Faust flushes the same producer before it commits offsets, so at-least-once still holds.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any, Callable

import orjson
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2
from faust.types import ProducerT

__all__ = ["Outbox", "dumps", "partition_of"]


def dumps(value: Any) -> bytes:
    """JSON bytes at their own size, for messages held until a batch is sent.

    orjson returns bytes that keep its whole growth buffer (at least 4 kB, 32 kB behind a 3 kB
    document). A batch holds thousands of events and standings: held as orjson returns them,
    each costs fresh memory pages, and keeping 6,000 events took 15-60 µs each instead of 1.5 µs.
    """
    return bytes(memoryview(orjson.dumps(value)))


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
    """Messages gathered during one batch; ``send`` hands them to Kafka in order per partition."""

    def __init__(self, producer: ProducerT) -> None:
        self._producer = producer
        self._messages: dict[str, list[tuple[bytes | None, bytes, int | None]]] = {}

    def add(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Queue a message; its partition is the key's (Kafka's default partitioner) unless given."""
        self._messages.setdefault(topic, []).append((key, value, partition))

    async def send(self, on_delivered: OnDelivered | None = None) -> list[asyncio.Future[Any]]:
        """Queue everything; returns the delivery futures (Faust's commit waits for them anyway)."""
        aio = self._producer._ensure_producer()  # type: ignore[attr-defined]  # the aiokafka producer
        futures: list[asyncio.Future[Any]] = []
        for topic, messages in self._messages.items():
            await aio.client._wait_on_metadata(topic)
            by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
            count = len(aio.client.cluster.partitions_for_topic(topic))
            for key, value, partition in messages:
                if partition is None:
                    partition = partition_of(key, count) if key is not None else 0
                by_partition.setdefault(partition, []).append((key, value))
            for partition, items in by_partition.items():
                batch, records = aio.create_batch(), 0
                for key, value in items:
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        futures.append(await self._send_batch(aio, batch, topic, partition, records, on_delivered))
                        batch, records = aio.create_batch(), 0
                        batch.append(key=key, value=value, timestamp=None)
                    records += 1
                futures.append(await self._send_batch(aio, batch, topic, partition, records, on_delivered))
        self._messages.clear()
        return futures

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
