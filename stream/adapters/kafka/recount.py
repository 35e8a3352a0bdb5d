"""Counting an election again after its definition was replaced (``election create --replace``).

The workers tally a new revision under a new id (``roll.tally_id``), from nothing, and skip what
was routed under the old one. What they count comes from the input topics themselves: every
report of the election ever published to ``bureau-results`` and ``turnout-reports`` is read
back and published again, in its partition's order, so the new revision sees the whole night
(a report is idempotent by its ``seq``: one counted twice changes nothing). Reports the new roll
refuses (a bureau taken out of it) go to the dead letters with the reason, if the old one took
them: nothing disappears silently. The election's standings are deleted first, so that no area
keeps figures of the old roll (a bureau's old commune); they come back as the recount goes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from stream.adapters.kafka.client import client_options
from stream.adapters.kafka.positions import partitions_of
from stream.adapters.kafka.publisher import Publisher, check_line, check_turnout_line
from stream.adapters.redis.clients import async_client
from stream.adapters.redis.keys import results_key, results_pattern
from stream.domain.messages import Election, InvalidResult
from stream.settings import Settings

__all__ = ["RECOUNT_GRACE", "Recount", "recount"]

#: Seconds between registering the revision and reading the topics: workers check an election's
#: revision at most a second old (``ElectionCache``), so by then every one routes under the new one.
RECOUNT_GRACE = 2.5


@dataclass
class Recount:
    republished: int = 0
    #: refused by the new roll after the old one took them (dead-lettered), by reason
    refused: Counter[str] = field(default_factory=Counter)
    standings_deleted: int = 0


async def recount(
    settings: Settings,
    old: Election,
    new: Election,
    on_progress: Callable[[int, int], None] | None = None,
    grace: float = RECOUNT_GRACE,
    resume: bool = False,
) -> Recount:
    """Publish every report of the election again, for its new revision to count. ``resume``: a
    recount that was interrupted; its standings are not deleted again (the new revision wrote
    them as it counted, and reports it has already counted change nothing to rewrite them)."""
    await asyncio.sleep(grace)
    done = Recount()
    if not resume:
        done.standings_deleted = await _delete_standings(settings, new.election)
    topics = {settings.results_topic: check_line, settings.turnout_topic: check_turnout_line}
    records = await _read_reports(settings, new.election, list(topics))
    async with Publisher(settings) as publisher:
        for index, record in enumerate(records, 1):
            check = topics[record.topic]
            raw = record.value or b""
            try:
                check(raw, new, settings.max_message_bytes)
            except InvalidResult as exc:
                try:
                    check(raw, old, settings.max_message_bytes)
                except InvalidResult:
                    continue  # refused then too: in the dead letters already
                reason = f"{exc} (revision {new.revision} of {new.election})"
                done.refused[reason] += 1
                await publisher.rejection(raw, reason, key=(record.key or b"").decode(errors="replace"))
                continue
            await publisher.republish(record.topic, record.key, raw)
            done.republished += 1
            if on_progress is not None:
                on_progress(index, len(records))
    return done


async def _delete_standings(settings: Settings, election: str) -> int:
    client = async_client(settings.redis_dsn())
    deleted = 0
    try:
        batch: list[bytes] = []
        mine = results_key(election, "", "").removesuffix("::")
        async for key in client.scan_iter(match=results_pattern(election), count=1000):
            if key.decode(errors="replace").rsplit(":", 2)[0] != mine:
                continue  # another election's whose id starts with this one's and a ':'
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.unlink(*batch)
                batch = []
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


async def _read_reports(
    settings: Settings, election: str, topics: list[str]
) -> list[ConsumerRecord[bytes, bytes]]:
    """The election's reports in the topics, from their beginning to their current end."""
    partitions = [
        TopicPartition(topic, partition)
        for topic, numbers in (await partitions_of(settings, topics)).items()
        for partition in numbers
    ]
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[ConsumerRecord[bytes, bytes]] = []
        seen: set[tuple[str, bytes | None, bytes]] = set()  # copies published by an earlier recount
        waiting = {tp for tp in partitions if ends[tp] > 0}
        marker = b'"' + orjson.dumps(election)[1:-1] + b'"'
        while waiting:
            batches = await consumer.getmany(*waiting, timeout_ms=1000)
            for tp, batch in batches.items():
                for record in batch:
                    if record.value is not None and marker in record.value and _of(record.value, election):
                        copy = (record.topic, record.key, record.value)
                        if copy not in seen:
                            seen.add(copy)
                            found.append(record)
                if await consumer.position(tp) >= ends[tp]:
                    waiting.discard(tp)
        return found
    finally:
        await consumer.stop()


def _of(value: bytes, election: str) -> bool:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("election") == election
