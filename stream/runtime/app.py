"""The Faust app: topics, the ``areas`` table and the three agents, wired to ``Pipeline``.

::

    bureau-results  ──► route_results ──(invalid)──► bureau-results-rejected
    turnout-reports ──┘
                           │ valid reports, one message per department per batch
                           ▼
                 <app>-contributions ──► tally_areas ──┬──► table areas (communes, departments, nation)
                                              │        ├──► election-updates (events, keyed by area)
                                              ▼        └──► standings in Redis (soiree:results:...)
                 <app>-nation-contributions ──► tally_nation (the same, for the nation's key)
                  departments' totals
"""

from __future__ import annotations

from typing import Any

import faust

from stream.adapters.kafka.client import faust_credentials
from stream.adapters.kafka.topics import contributions_topic, nation_topic, resolve_replication
from stream.adapters.redis.clients import async_client, sync_client
from stream.adapters.redis.elections import ElectionCache
from stream.adapters.redis.keys import alive_marker
from stream.runtime import metrics
from stream.runtime.faust import QuietMonitor, RawSchema, SeekFirstTableManager, SoireeApp
from stream.runtime.pipeline import Pipeline
from stream.runtime.redis_watch import MARKER_TTL
from stream.settings import Settings, get_settings

__all__ = ["create_app", "GC_THRESHOLDS"]

#: Bundles the results stream holds (Faust pauses fetching its partitions at 80 %). A bundle is
#: what one fetch returned for a partition: small at a steady pace, up to ~3,400 records in a replay.
RESULTS_STREAM_BUNDLES = 16
#: Garbage collector thresholds for a worker (``gc.set_threshold``). A night keeps thousands of
#: area states alive: with Python's (700, 10, 10) the tally of the 2017 night ran 13 full
#: collections of ~70 ms each and spent 1.4 s of CPU collecting; with older generations
#: collected 5x less often, 0.25 s and no full collection (``bench/tally_cpu.py``).
GC_THRESHOLDS = (700, 50, 50)
#: Bundles routing takes at once; it works through their reports in chunks of ``batch_size``.
BUNDLES_PER_TAKE = 4
#: Seconds the nation's agent waits to fill a batch, instead of ``batch_window``: its messages
#: are one per tally batch, so waiting gathers little and every wait is in the latency of every
#: nation event (p50 at 200 reports/s: 46-57 ms against 65-66 ms with 20 ms; the night unchanged).
NATION_WINDOW = 0.002


def _broker_url(settings: Settings) -> str:
    return ";".join(f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(","))


def create_app(settings: Settings | None = None) -> faust.App:
    """A ready-to-run app for these settings (tests build several with different ids)."""
    settings = settings or get_settings()
    datadir = settings.home / "faust" / settings.app_id  # Faust's own files; not ./<app id>-data
    datadir.mkdir(parents=True, exist_ok=True)
    # the topics Faust creates (the table's changelog, its leader topic) replicated like ours
    replicas, insync = resolve_replication(settings)
    app = SoireeApp(
        settings.app_id,
        broker=_broker_url(settings),
        broker_credentials=faust_credentials(settings),
        store=settings.store_url(),
        topic_partitions=settings.partitions,
        table_standby_replicas=0,  # Redis is shared: a new owner reads it, no standby needed
        web_enabled=False,
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        producer_linger=0.0,
        producer_acks=-1,  # all in-sync replicas; and idempotent (runtime.faust.app._Producer)
        topic_replication_factor=replicas,
        producer_max_batch_size=512 * 1024,
        # A killed worker's partitions move once the broker stops hearing from it.
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.session_timeout / 4,
        TableManager=SeekFirstTableManager,  # Faust 0.15.3 skips records at a takeover otherwise
        Monitor=QuietMonitor,
    )
    partitions = settings.partitions
    marker = alive_marker()  # gone from Redis = Redis lost its data
    pipeline = Pipeline(
        settings=settings,
        elections=ElectionCache(async_client(settings.redis_dsn()), alive_marker=marker),
        marker=marker,
        areas=app.Table(
            "areas",
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            extra_topic_configs={"min.insync.replicas": str(insync)},
        ),
        producer=app.producer,
        contributions=contributions_topic(settings),
        nation=nation_topic(settings),
        redis=async_client(settings.redis_dsn()),
    )
    contributions = app.topic(
        contributions_topic(settings), partitions=partitions, internal=True, schema=RawSchema()
    )
    nation = app.topic(nation_topic(settings), partitions=partitions, internal=True, schema=RawSchema())

    # Reports arrive as bundles (one per partition per fetch, ``runtime.faust.Bundle``): Faust's
    # per-record delivery cost more CPU than routing them.
    app.bundled_topics = frozenset({settings.results_topic, settings.turnout_topic})
    results = app.topic(
        settings.results_topic,
        settings.turnout_topic,
        partitions=partitions,
        schema=RawSchema(),
        maxsize=RESULTS_STREAM_BUNDLES,
    )

    # Routing as a Faust agent: a plain consumer group reading record batches was 12 s faster
    # on the 2017 night, but it kept producing while the tally's consumer was being positioned
    # (a worker starting, a rebalance), and contributions produced then were lost: most likely
    # Faust's own takeover window, which agents are not safe from either (docs/reliability.md).
    @app.agent(results, name="route_results")
    async def route_results(stream: Any) -> None:  # a faust.Stream (StreamT lacks take_events)
        async for bundles in stream.take_events(BUNDLES_PER_TAKE, within=settings.batch_window):
            records = [record for bundle in bundles for record in bundle.value]
            for start in range(0, len(records), settings.batch_size):
                await pipeline.on_results(records[start : start + settings.batch_size])

    @app.agent(contributions, name="tally_areas")
    async def tally_areas(stream: Any) -> None:  # a faust.Stream (StreamT lacks take_events)
        async for events in stream.take_events(settings.batch_size, within=settings.batch_window):
            await pipeline.on_contributions(list(events))

    # The same work for the nation's messages, as an agent of its own: with its own stream
    # buffer the nation never waits behind reports that pile up (a catch-up, a burst).
    @app.agent(nation, name="tally_nation")
    async def tally_nation(stream: Any) -> None:  # a faust.Stream (StreamT lacks take_events)
        async for events in stream.take_events(settings.batch_size, within=NATION_WINDOW):
            await pipeline.on_contributions(list(events))

    app.on_partitions_revoked.connect(pipeline.forget_states)
    # The marker goes in before anything is consumed: a Redis wiped at any later moment shows.
    sync_client(settings.redis_dsn()).set(marker, "1", ex=MARKER_TTL)
    pipeline.redis_watch.marker_set = True

    @app.timer(1.0)
    async def check_redis() -> None:
        await pipeline.check_redis()

    # The worker's metrics (``runtime.metrics``; ``soiree worker`` serves them): partitions held
    # and the consumer's lag on the topics the agents read.
    read_topics = (
        settings.results_topic,
        settings.turnout_topic,
        contributions.get_topic_name(),
        nation.get_topic_name(),
    )

    @app.timer(metrics.CONSUMER_INTERVAL)
    async def refresh_metrics() -> None:
        await metrics.refresh_consumer(app.consumer, read_topics, settings.results_topic)

    app.pipeline = pipeline  # type: ignore[attr-defined]
    return app
