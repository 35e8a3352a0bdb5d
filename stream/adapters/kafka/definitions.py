"""The durable copy of election definitions: a compacted Kafka topic, one message per election.

Workers and the CLI read definitions from Redis, but a Redis restarted without persistence
forgets them, and a worker that never looked an election up has nothing to put back: every
report of that election would then go to the dead letters as "unknown election". The topic
(``SOIREE_ELECTIONS_TOPIC``, key = election id, value = the definition's JSON, gzipped) survives that:
``register_election`` writes it before Redis, and workers copy it back into Redis when they
start and when they find Redis wiped.
"""

from __future__ import annotations

import asyncio
import gzip

import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.adapters.kafka.client import client_options
from stream.adapters.kafka.topics import ELECTIONS_MAX_MESSAGE_BYTES, ensure_topics
from stream.adapters.redis.clients import async_client
from stream.adapters.redis.elections import restore_definitions, save_election
from stream.domain.messages import Election
from stream.errors import DefinitionTooLarge
from stream.settings import Settings

__all__ = [
    "register_election",
    "publish_definition",
    "read_definitions",
    "restore_from_log",
]


def register_election(settings: Settings, client: redis.Redis, election: Election) -> None:
    """Register a definition: Kafka first (the durable copy), then Redis (what everyone reads).

    In that order, a definition that Redis has is always one the topic has too."""
    raw = election.model_dump_json().encode()
    asyncio.run(_publish_with_topics(settings, election.election, raw))
    save_election(client, election)


async def _publish_with_topics(settings: Settings, election_id: str, definition: bytes) -> None:
    await ensure_topics(settings)
    await publish_definition(settings, election_id, definition)


async def publish_definition(settings: Settings, election_id: str, definition: bytes) -> None:
    """One message, the JSON gzipped by us (header ``content-encoding: gzip``): aiokafka checks
    a message's size before its own compression, and a million-bureau roll is 120 MB of JSON
    (the 2017 roll: 9.5 MB of JSON, 0.9 MB gzipped)."""
    value = gzip.compress(definition, compresslevel=6)
    if len(value) > ELECTIONS_MAX_MESSAGE_BYTES - 1024:
        raise DefinitionTooLarge(
            f"election {election_id}: the definition ({len(definition) / 1e6:.0f} MB of JSON) is "
            f"{len(value) / 1e6:.0f} MB gzipped, over the {ELECTIONS_MAX_MESSAGE_BYTES // 2**20} MiB "
            "a message may hold"
        )
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        max_request_size=ELECTIONS_MAX_MESSAGE_BYTES,
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.elections_topic,
            key=election_id.encode(),
            value=value,
            headers=[("content-encoding", b"gzip")],
        )
    finally:
        await producer.stop()


async def read_definitions(settings: Settings) -> dict[str, bytes]:
    """The latest definition of every election in the topic, read from the start to its end."""
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        max_partition_fetch_bytes=ELECTIONS_MAX_MESSAGE_BYTES,
        fetch_max_bytes=ELECTIONS_MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    try:
        partition = TopicPartition(settings.elections_topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        definitions: dict[str, bytes] = {}
        while await consumer.position(partition) < end:
            batches = await consumer.getmany(partition, timeout_ms=1000)
            for record in batches.get(partition, []):
                election_id = record.key.decode() if record.key else ""
                if record.value is None:  # a tombstone: the election was withdrawn
                    definitions.pop(election_id, None)
                elif election_id:
                    gzipped = ("content-encoding", b"gzip") in (record.headers or ())
                    definitions[election_id] = gzip.decompress(record.value) if gzipped else record.value
        return definitions
    finally:
        await consumer.stop()


async def restore_from_log(settings: Settings, client: aioredis.Redis | None = None) -> list[str]:
    """Copy into Redis the definitions it lacks; returns their ids."""
    target = client or async_client(settings.redis_dsn())
    try:
        return await restore_definitions(target, await read_definitions(settings))
    finally:
        if client is None:
            await target.aclose()
