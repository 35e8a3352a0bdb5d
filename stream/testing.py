"""What tests and benchmarks share: stand-ins for Kafka, the table and Redis, to run ``Pipeline``
in-process without services, and ``forget_run`` to delete what a run left on the real ones.

Used by the unit tests of ``runtime.faust.outbox`` and of the tally's in-memory states, and by
``bench/tally_cpu.py``. Record batches are still built by a real aiokafka producer (never
started) and read back with aiokafka's own decoder, so what a test sees is what Kafka would get.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
from types import SimpleNamespace
from typing import Any

import redis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.record.default_records import DefaultRecordBatch

from stream.adapters.redis import keys as redis_keys
from stream.domain.roll import ElectionIndex, split_tally_id
from stream.runtime.pipeline import Pipeline
from stream.settings import Settings

PARTITIONS = 6


class FakeProducer:
    """What ``Outbox`` uses of Faust's producer. Metadata arrives once it is waited for (or at
    once with ``metadata_known``); ``decoded`` topics keep their records, the others a count."""

    def __init__(
        self, max_batch_size: int = 512 * 1024, metadata_known: bool = True, decoded: set[str] | None = None
    ) -> None:
        self.aio = AIOKafkaProducer(bootstrap_servers="unused:9092", max_batch_size=max_batch_size)
        self.aio._closed = True  # never started: nothing to close
        self.known: set[str] = set()
        self.metadata_known = metadata_known
        self.aio.client = SimpleNamespace(
            _wait_on_metadata=self._wait_on_metadata,
            cluster=SimpleNamespace(partitions_for_topic=self._partitions_for_topic),
        )
        self.aio.send_batch = self._send_batch
        self.decoded = decoded
        #: record batches in the order they were sent: (topic, partition, [(key, value), ...])
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []
        self.counts: dict[str, int] = {}
        self.offsets: dict[tuple[str, int], int] = {}
        #: raised by the next send_batch (to ``fail_topic`` if set), once
        self.fail_next: Exception | None = None
        self.fail_topic: str | None = None
        #: topics whose record batches Kafka has not acknowledged yet, until ``acknowledge``
        self.unacknowledged: set[str] = set()
        self._held: list[tuple[asyncio.Future[Any], int]] = []

    def _ensure_producer(self) -> Any:
        return self.aio

    def _partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(PARTITIONS)) if self.metadata_known or topic in self.known else None

    async def _wait_on_metadata(self, topic: str) -> None:
        self.known.add(topic)

    async def _send_batch(self, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        if self.fail_next is not None and self.fail_topic in (None, topic):
            failure, self.fail_next = self.fail_next, None
            raise failure
        records = batch._relative_offset
        self.counts[topic] = self.counts.get(topic, 0) + records
        if self.decoded is None or topic in self.decoded:
            self.sent.append(
                (topic, partition, [(r.key, r.value) for r in DefaultRecordBatch(bytes(batch._build()))])
            )
        first = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = first + records
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if topic in self.unacknowledged:
            self._held.append((future, first))
        else:
            future.set_result(SimpleNamespace(offset=first))
        return future

    def acknowledge(self) -> None:
        """Kafka acknowledges the record batches held back; later ones are acknowledged at once."""
        self.unacknowledged.clear()
        held, self._held = self._held, []
        for future, first in held:
            future.set_result(SimpleNamespace(offset=first))

    def take(self, topic: str) -> list[tuple[int, bytes | None, bytes]]:
        """(partition, key, value) of everything sent to ``topic`` so far, forgotten once taken."""
        taken = [
            (partition, key, value)
            for t, partition, records in self.sent
            if t == topic
            for key, value in records
        ]
        self.sent = [batch for batch in self.sent if batch[0] != topic]
        return taken


class FakeStore(dict[bytes, bytes]):
    """The table's store: keys to bytes, as ``RedisStore`` serves them."""

    def set_persisted_offset(self, partition: Any, offset: int) -> None:
        pass


class FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def mset(self, values: dict[str, bytes]) -> None:
        self.data.update(values)


class FakeEvent:
    """What the pipeline reads of a Faust event (weak-referenceable, as Faust's are)."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> None:
        self.message = SimpleNamespace(topic=topic, partition=partition, offset=offset, key=key, value=value)


def as_events(
    records: list[tuple[int, bytes | None, bytes]], topic: str, offsets: dict[int, int]
) -> list[FakeEvent]:
    """Records as a consumer would see them, numbered on from ``offsets`` (updated)."""
    events = []
    for partition, key, value in records:
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        events.append(FakeEvent(topic, partition, offset, key, value))
    return events


def free_port_range(count: int, low: int = 20000, high: int = 30000) -> int:
    """The first of ``count`` consecutive free loopback ports (an even one between ``low`` and
    ``high``), for the private brokers and Redis of fault tests and benches."""

    def free(port: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high, 2)
        if all(free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free range of ports found")


class FixedElections:
    """What the agents use of ``ElectionCache``, holding the definitions it is given (no Redis)."""

    def __init__(self, *elections: ElectionIndex) -> None:
        self.by_id = {election.election: election for election in elections}
        self.strict = self  # nothing is ever to fetch

    def get(self, election_id: str) -> ElectionIndex | None:
        """As ``ElectionCache.get``: an election id, or a tally id of a revision held."""
        election_id, revision = split_tally_id(election_id)
        election = self.by_id.get(election_id)
        return election if election is not None and revision <= election.revision else None

    async def prepare(self, election_ids: Any) -> None:
        """Nothing to fetch."""

    async def check_revisions(self) -> None:
        """Definitions never change here."""

    def known(self) -> list[ElectionIndex]:
        return list(self.by_id.values())


def offline_pipeline(settings: Settings, election: ElectionIndex, producer: FakeProducer) -> Pipeline:
    """A ``Pipeline`` as ``app.create_app`` builds it, on the stand-ins, for one election."""
    table = SimpleNamespace(
        data=FakeStore(), changelog_topic=SimpleNamespace(get_topic_name=lambda: "areas-changelog")
    )
    return Pipeline(
        settings=settings,
        elections=FixedElections(election),  # type: ignore[arg-type]
        areas=table,  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
        contributions="contributions",
        nation="nation",
        redis=FakeRedis(),  # type: ignore[arg-type]
        marker="unused",
    )


def private_settings(base: Settings, app_id: str, **overrides: Any) -> Settings:
    """``base`` with its own app id and topics (all named ``<app_id>-…``, so ``forget_run``
    deletes them): a test's stack or a benchmark run shares nothing with any other."""
    return base.model_copy(
        update=dict(
            app_id=app_id,
            results_topic=f"{app_id}-results",
            turnout_topic=f"{app_id}-turnout",
            rejected_topic=f"{app_id}-rejected",
            audit_topic=f"{app_id}-audit",
            updates_topic=f"{app_id}-updates",
            elections_topic=f"{app_id}-elections",
            **overrides,
        )
    )


def forget_run(settings: Settings, *elections: str) -> None:
    """Delete what a test's stack or a benchmark run left in Kafka (topics named after its app
    id), Redis (its table and its election's standings) and the Faust data dir: a broker keeping
    every run's topics slows down (23 GB of old topics tripled the latency bench's p99)."""

    async def delete_topics() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            mine = [topic for topic in await admin.list_topics() if topic.startswith(f"{settings.app_id}-")]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()

    asyncio.run(delete_topics())
    client = redis.Redis.from_url(settings.redis_dsn())
    patterns = [redis_keys.table_pattern(settings.app_id)] + [
        redis_keys.results_pattern(e) for e in elections
    ]
    for pattern in patterns:
        keys = list(client.scan_iter(match=pattern, count=10_000))
        for start in range(0, len(keys), 10_000):
            client.unlink(*keys[start : start + 10_000])
    for election in elections:
        client.delete(redis_keys.election_key(election))
        client.srem(redis_keys.ELECTIONS, election)
    shutil.rmtree(settings.home / "faust" / settings.app_id, ignore_errors=True)
