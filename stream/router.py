"""Hop 1, ``route_results``: ``bureau-results`` read in record batches, below Faust's per-event
machinery.

Why not a Faust agent: Faust builds an event, a future and an acknowledgement per message and
hands each across its consumer thread; on the 2-core development VM an agent that does nothing
at all needs 12 s to read the 69,242 reports of a national night, while aiokafka's ``getmany``
reads them in a fraction of a second (bench/replay_2017.py, docs/performance.md). Routing keeps
no state, so it needs none of Faust's table machinery: it is a plain consumer group
(``<app_id>-router``) running inside the worker, next to the Faust agent that keeps the tables.

At least once: a batch's offsets are committed only after Kafka acknowledged everything the
batch produced (contributions and rejections). A crash or a rebalance in between re-delivers
the batch; the tally ignores what it has already counted (``aggregation``).

The router starts routing once the worker's tables are recovered, as it did when it was an
agent: routed earlier, while the new worker's Faust consumer was still being positioned, a
contribution was never tallied (twice in fault tests: the reports of one message lost).
"""

from __future__ import annotations

import asyncio
import logging

from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from .kafka_config import client_options
from .pipeline import Pipeline
from .settings import Settings

__all__ = ["ResultRouter", "router_group"]

log = logging.getLogger(__name__)


def router_group(settings: Settings) -> str:
    """The consumer group of the routing hop (the Faust app's own group is ``app_id``)."""
    return f"{settings.app_id}-router"


class ResultRouter(Service):
    """Reads ``bureau-results`` batch by batch and hands each batch to ``Pipeline.on_results``.

    A ``mode`` service added to the Faust app: it starts and stops with the worker.
    """

    def __init__(self, settings: Settings, pipeline: Pipeline, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.pipeline = pipeline
        #: set by an app task, which Faust starts once the tables are recovered
        self.tables_ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    async def on_start(self) -> None:
        settings = self.settings
        self._consumer = AIOKafkaConsumer(
            settings.results_topic,
            group_id=router_group(settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # the same failure detection as the Faust consumer (SOIREE_SESSION_TIMEOUT)
            session_timeout_ms=int(settings.session_timeout * 1000),
            heartbeat_interval_ms=int(settings.session_timeout * 250),
            **client_options(settings),
        )
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _route_batches(self) -> None:
        assert self._consumer is not None
        window_ms = max(1, int(self.settings.batch_window * 1000))
        await self.tables_ready.wait()
        while not self.should_stop:
            batch = await self._consumer.getmany(timeout_ms=window_ms, max_records=self.settings.batch_size)
            if batch:
                await self._route(self._consumer, batch)

    async def _route(self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        records = [record for records in batch.values() for record in records]
        try:
            await self.pipeline.on_results(records)
        except KafkaError as exc:
            # Outputs not acknowledged (the broker is away): read the batch again, later.
            log.warning("Routing %d reports failed, retrying in 1 s: %r", len(records), exc)
            for partition, routed in batch.items():
                try:
                    consumer.seek(partition, routed[0].offset)
                except IllegalStateError:
                    pass  # no longer ours: the new owner reads it from the last commit
            await asyncio.sleep(1.0)
            return
        offsets = {partition: OffsetAndMetadata(routed[-1].offset + 1, "") for partition, routed in batch.items()}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced meanwhile: the partition's new owner reads these reports again,
            # which the tally ignores as already counted.
            log.info("Offsets of a routed batch not committed (%r); they will be routed again", exc)
