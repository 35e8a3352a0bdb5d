"""A worker's metrics (Prometheus, names ``soiree_worker_*``) and the small HTTP server showing them.

The metrics are module-level, in a registry of their own (``REGISTRY``): one per worker process,
registered once however many pipelines a process builds (tests, benchmarks), which then add up.
The code counts with one call per batch or chunk, never per report: the tally is CPU-bound.

Counted as the work happens, so a batch tried again after an outage counts again, as Kafka may
receive its outputs again (at least once): rejections and update events. Reports routed and
chunks timed count once the batch's outputs are acknowledged.

``serve_metrics`` starts prometheus-client's server in a thread of its own (Faust's web server
stays off) on ``worker_metrics_port``, or the next free port: several workers share a machine.
``refresh_consumer`` runs on the worker's loop every ``CONSUMER_INTERVAL`` seconds (``app.py``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka.errors import KafkaError
from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.exposition import start_http_server
from redis.exceptions import RedisError

from stream.domain import messages
from stream.errors import ElectionsUnavailable

__all__ = [
    "REGISTRY",
    "CONSUMER_INTERVAL",
    "PORT_ATTEMPTS",
    "serve_metrics",
    "reason_kind",
    "count_rejection",
    "count_events",
    "count_outage",
    "refresh_consumer",
]

log = logging.getLogger(__name__)

#: The worker's metrics (and the process's CPU, memory and garbage collections).
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
REGISTRY.register(GC_COLLECTOR)

#: Seconds between two readings of the consumer's positions (``refresh_consumer``).
CONSUMER_INTERVAL = 2.0
#: Ports tried: ``worker_metrics_port`` and the next 20.
PORT_ATTEMPTS = 21
#: Distinct ``reason`` labels at most; the next kinds count as ``other`` (the input decides them).
MAX_REASONS = 64

REPORTS_ROUTED = Counter(
    "soiree_worker_reports_routed",
    "Valid reports (results and turnout) routed to the tally, once Kafka acknowledged them",
    registry=REGISTRY,
)
STALE_CONTRIBUTIONS = Counter(
    "soiree_worker_stale_contributions",
    "Contributions of a replaced definition's revision, skipped: the election is recounted under the new one",
    registry=REGISTRY,
)
REPORTS_REJECTED = Counter(
    "soiree_worker_reports_rejected",
    "Reports (or contributions) sent to the dead-letter topic, by kind of reason",
    ["reason"],
    registry=REGISTRY,
)
BATCH_REPORTS = Histogram(
    "soiree_worker_batch_reports",
    "Reports per routed batch",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
    registry=REGISTRY,
)
TALLY_CHUNK_SECONDS = Histogram(
    "soiree_worker_tally_chunk_seconds",
    "Seconds to tally a chunk and commit it (outputs acknowledged, state written)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
EVENTS = Counter(
    "soiree_worker_events",
    "Update events produced to the updates topic, by kind and level",
    ["kind", "level"],
    registry=REGISTRY,
)
STORE_FLUSH_SECONDS = Histogram(
    "soiree_worker_store_flush_seconds",
    "Seconds a flush of the table store's dirty keys to Redis took (flushes with something to write)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
OUTAGES = Counter(
    "soiree_worker_outages",
    "Outages waited out: batches (or store flushes) that met Kafka or Redis away, by service",
    ["service"],
    registry=REGISTRY,
)
FENCED_WRITES = Counter(
    "soiree_worker_fenced_writes",
    "Writes refused because another worker took the partition since (this one was paused past its "
    "session timeout): store flushes, and tally chunks whose standings and state were dropped",
    ["what"],
    registry=REGISTRY,
)
PARTITIONS_ASSIGNED = Gauge(
    "soiree_worker_partitions_assigned",
    "Partitions of the results topic this worker holds (their turnout, contributions and nation "
    "partitions go with them)",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "soiree_worker_consumer_lag",
    "Records not yet fetched by this worker (highwater - position), per partition it holds",
    ["topic", "partition"],
    registry=REGISTRY,
)


# -- the server ------------------------------------------------------------------------
def serve_metrics(
    port: int, host: str = "127.0.0.1", attempts: int = PORT_ATTEMPTS
) -> tuple[int, Any] | None:
    """Serve ``/metrics`` on ``port``, or the first free one of the next ``attempts - 1``.

    Returns the port and the server (``server.shutdown()`` stops it), or None: ``port`` is 0
    (no metrics), or every port tried was taken (logged; the worker runs on without them).
    """
    if port == 0:
        return None
    last = min(port + attempts - 1, 65535)
    for candidate in range(port, last + 1):
        try:
            server, _thread = start_http_server(candidate, addr=host, registry=REGISTRY)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        if candidate != port:
            log.warning("Metrics port %d is taken; serving metrics on port %d", port, candidate)
        log.info("Serving metrics at http://%s:%d/metrics", host, candidate)
        return candidate, server
    log.error("Ports %d-%d are all taken: this worker serves no metrics", port, last)
    return None


# -- counting ----------------------------------------------------------------------------
_reasons: set[str] = set()


def reason_kind(reason: str) -> str:
    """``messages.reason_kind``, and after ``MAX_REASONS`` kinds, ``other``."""
    text = messages.reason_kind(reason)
    if text not in _reasons:
        if len(_reasons) >= MAX_REASONS:
            return "other"
        _reasons.add(text)
    return text


def count_rejection(reason: str) -> None:
    REPORTS_REJECTED.labels(reason_kind(reason)).inc()


def count_events(counts: dict[tuple[str, str], int]) -> None:
    """Add the events counted by (kind, level) since the last call, and empty ``counts``."""
    for (kind, level), number in counts.items():
        EVENTS.labels(kind, level).inc(number)
    counts.clear()


def count_outage(exc: BaseException) -> None:
    """One wait for a service away (``runtime.outages``), labelled by the service."""
    if isinstance(exc, KafkaError):
        service = "kafka"
    elif isinstance(exc, RedisError | ElectionsUnavailable):
        service = "redis"
    else:  # a bare OSError: a socket that neither client wrapped
        service = "network"
    OUTAGES.labels(service).inc()


# -- the consumer --------------------------------------------------------------------------
#: Seconds one partition's position may take to read (none while the group rebalances).
POSITION_TIMEOUT = 1.0
_lag_shown: set[tuple[str, str]] = set()


async def refresh_consumer(consumer: Any, topics: Iterable[str], results_topic: str) -> None:
    """Partitions held and the lag of each (``topics``: results, turnout, contributions, nation),
    from Faust's consumer: the highwater of the last fetch, the position of the next record.
    Partitions given up, or whose lag cannot be read yet, lose their gauge."""
    wanted = set(topics)
    try:
        held = sorted(tp for tp in consumer.assignment() if tp.topic in wanted)
    except Exception:  # not started yet
        return
    PARTITIONS_ASSIGNED.set(sum(1 for tp in held if tp.topic == results_topic))
    shown: set[tuple[str, str]] = set()
    for tp in held:
        lag = await _lag(consumer, tp)
        if lag is not None:
            labels = (tp.topic, str(tp.partition))
            CONSUMER_LAG.labels(*labels).set(lag)
            shown.add(labels)
    for labels in _lag_shown - shown:
        CONSUMER_LAG.remove(*labels)
    _lag_shown.clear()
    _lag_shown.update(shown)


async def _lag(consumer: Any, tp: Any) -> int | None:
    try:
        highwater = consumer.highwater(tp)  # None until a fetch of the partition came back
        if highwater is None:
            return None
        position = await asyncio.wait_for(consumer.position(tp), POSITION_TIMEOUT)
    except Exception:  # a partition being given up, a rebalance: read it next time
        return None
    return max(highwater - position, 0) if position is not None else None
