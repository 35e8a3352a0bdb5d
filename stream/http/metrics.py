"""Prometheus metrics of ``soiree serve``, in a registry of its own (names start with ``soiree_``).

Requests and latency by route (the route's pattern, never the raw path: bounded labels), SSE
clients, and what the hub sees go by on the topics: events by kind and level, reports accepted
(bureau ``reported`` and ``corrected`` events) and rejected by reason (normalized, capped).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from stream.domain.messages import reason_kind

__all__ = ["ServeMetrics", "METRICS", "reason_kind", "CONTENT_TYPE_LATEST"]

#: Distinct rejection reasons kept as labels; later new ones count as "other".
MAX_REASONS = 50


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "soiree_http_requests", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "soiree_http_request_seconds",
            "time to answer an HTTP request (not the life of an event stream)",
            ["route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.sse_clients = Gauge("soiree_sse_clients", "open Server-Sent Events streams", registry=r)
        self.events = Counter(
            "soiree_events", "update events seen on the updates topic", ["kind", "level"], registry=r
        )
        self.accepted = Counter(
            "soiree_reports_accepted",
            "bureau reports counted (bureau reported and corrected events)",
            registry=r,
        )
        self.rejected = Counter(
            "soiree_reports_rejected",
            "reports on the rejected topic, by normalized reason",
            ["reason"],
            registry=r,
        )
        self._reasons: set[str] = set()

    def event(self, kind: str, level: str) -> None:
        self.events.labels(kind=kind, level=level).inc()
        if level == "bureau" and kind in ("reported", "corrected"):
            self.accepted.inc()

    def rejection(self, reason: str) -> None:
        kind = reason_kind(reason) or "unknown"  # the workers' labels, the same normalization
        if kind not in self._reasons:
            if len(self._reasons) >= MAX_REASONS:
                kind = "other"
            else:
                self._reasons.add(kind)
        self.rejected.labels(reason=kind).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", ServeMetrics)
