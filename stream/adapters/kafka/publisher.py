"""Feeding ``bureau-results`` and ``turnout-reports``: validate locally first, publish the valid,
record the invalid.

``ingest``, ``replay``, the demo and the benchmark all publish through ``Publisher`` so that a
report is always keyed by its bureau id (the worker rejects any other key) and invalid input
goes to ``bureau-results-rejected`` with its reason instead of vanishing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream.adapters.kafka.client import client_options
from stream.domain.messages import (
    Election,
    InvalidResult,
    check_against_election,
    make_rejection,
    parse_result,
    validate_turnout,
)
from stream.settings import Settings

__all__ = ["Publisher", "IngestReport", "check_line", "check_turnout_line"]


@dataclass
class IngestReport:
    """What an ingest did: counts, and the first reasons (with how often each occurred)."""

    accepted: int = 0
    rejected: int = 0
    #: reports already applied with the same seq and counts: skipped
    repeats: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    _last: str = ""

    @property
    def last_reason(self) -> str:
        return self._last

    def reject(self, where: str, reason: str) -> None:
        self._last = reason
        self.rejected += 1
        self.reasons[_reason_kind(reason)] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{where}: {reason}")


def _reason_kind(reason: str) -> str:
    """'bureau 42218-0001: voters = 5 exceeds ...' -> 'voters = … exceeds ...' for grouping."""
    text = reason.split(": ", 1)[1] if reason.startswith("bureau ") and ": " in reason else reason
    return "".join("#" if ch.isdigit() else ch for ch in text)[:80]


def check_line(raw: bytes, election: Election, max_bytes: int) -> dict[str, Any]:
    """One input line as a result dict for ``election`` (the election id may be omitted)."""
    result = parse_result(_with_election(raw, election.election), max_bytes)
    if result.election != election.election:
        raise InvalidResult(
            f"bureau {result.bureau}: election {result.election!r} "
            f"in a file ingested as {election.election!r}"
        )
    check_against_election(result, election)
    return result.model_dump(mode="json", exclude_none=True)


def check_turnout_line(raw: bytes, election: Election, max_bytes: int) -> dict[str, Any]:
    """One input line as a turnout report dict for ``election`` (the election id may be omitted)."""
    report = validate_turnout(
        _with_election(raw, election.election), {election.election: election}, max_bytes
    )
    return report.model_dump(mode="json", exclude_none=True)


def _with_election(raw: bytes, election_id: str) -> bytes:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if isinstance(data, dict) and "election" not in data:
        data["election"] = election_id
        return orjson.dumps(data)
    return raw


class Publisher:
    """An aiokafka producer for results and rejections, optionally paced to ``rate`` per second."""

    def __init__(self, settings: Settings, rate: float | None = None) -> None:
        self._producer = AIOKafkaProducer(
            **client_options(settings),
            linger_ms=5,
            max_batch_size=256 * 1024,
            acks="all",
            enable_idempotence=True,
        )
        self._rate = rate
        self._results = settings.results_topic
        self._turnout = settings.turnout_topic
        self._rejected = settings.rejected_topic
        self._started_at = 0.0
        self._sent = 0
        self._pending: list[asyncio.Future[Any]] = []

    async def __aenter__(self) -> Publisher:
        await self._producer.start()
        self._started_at = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.flush()
        finally:
            await self._producer.stop()

    async def result(self, result: dict[str, Any]) -> None:
        """Publish one valid result (a dict in the BureauResult shape), keyed by its bureau."""
        await self._pace()
        future = await self._producer.send(
            self._results, key=result["bureau"].encode(), value=orjson.dumps(result)
        )
        self._track(future)

    async def turnout(self, report: dict[str, Any]) -> None:
        """Publish one valid turnout report, keyed by its bureau or commune."""
        await self._pace()
        place = report.get("bureau") or report["commune"]
        future = await self._producer.send(self._turnout, key=place.encode(), value=orjson.dumps(report))
        self._track(future)

    async def republish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """A report read back from its topic, published again as it was (``recount``)."""
        await self._pace()
        self._track(await self._producer.send(topic, key=key, value=value))

    async def rejection(
        self, raw: bytes, reason: str, key: str | None = None, source: str = "ingest"
    ) -> None:
        rejection = make_rejection(raw, reason, key=key, topic=source)
        future = await self._producer.send(
            self._rejected, key=key.encode() if key else None, value=rejection.model_dump_json().encode()
        )
        self._track(future)

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._pending.append(future)
        if len(self._pending) >= 10_000:
            self._pending = [f for f in self._pending if not f.done()]

    async def flush(self) -> None:
        """Wait until every message is acknowledged by the broker (raises on failure)."""
        await self._producer.flush()
        if self._pending:
            await asyncio.gather(*self._pending)
            self._pending.clear()

    async def _pace(self) -> None:
        self._sent += 1
        if not self._rate:
            return
        due = self._started_at + self._sent / self._rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
