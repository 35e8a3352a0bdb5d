"""``POST /api/elections/{id}/reports``: reports from authenticated sources, over HTTPS.

A request is all or nothing. In order: a bearer token (``401`` without a valid one), the
source's rate (``429``, counted per source before the token is checked, so that guessing costs
nothing but time), the election (``404``) and the source's right to report it (``403``), the body
(a JSON object, an array, or JSON Lines; at most ``MAX_REPORTS`` reports and ``MAX_BODY_BYTES``,
read within ``BODY_TIMEOUT`` seconds: ``413``, ``408``), every report in the source's scope
(``403`` listing those outside), every report valid (``422`` with each invalid one's reason, the
dead letters' reasons), then all are published, keyed by place, with the source in a
``soiree-source`` header, and the answer is ``202`` with the counts. Every refused request is
written to the audit topic (source, status, reason, counts, time; never the token).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream.adapters.kafka.client import client_options
from stream.adapters.kafka.topics import SOURCE_HEADER
from stream.auth.registry import Source, Sources
from stream.auth.tokens import source_of_token
from stream.auth.verification import in_scope, signature_problem
from stream.domain.messages import InvalidResult, validate_result, validate_turnout
from stream.domain.roll import ElectionIndex
from stream.http.api import SETTINGS, definition_or_404
from stream.http.errors import json_error
from stream.settings import Settings

__all__ = ["Ingest", "INGEST", "setup", "MAX_REPORTS", "MAX_BODY_BYTES", "BODY_TIMEOUT"]

log = logging.getLogger("stream.http")

MAX_REPORTS = 10_000
MAX_BODY_BYTES = 10 * 2**20
#: seconds a request's body may take to arrive (a slow upload holds a connection, not the service)
BODY_TIMEOUT = 30.0
#: refusals listed in a 403 or 422 answer at most
LISTED = 100


class RateLimiter:
    """A token bucket per source: ``rate`` requests per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, sources: int = 10_000) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._sources = sources

    def allow(self, source: str) -> float:
        """0 if a request may go now, else the seconds until one may."""
        now = time.monotonic()
        level, then = self._buckets.pop(source, (float(self.burst), now))
        level = min(float(self.burst), level + (now - then) * self.rate)
        wait = 0.0 if level >= 1 else (1 - level) / self.rate
        self._buckets[source] = (level - 1 if wait == 0 else level, now)
        while len(self._buckets) > self._sources:  # ids made up by guessers do not pile up
            self._buckets.popitem(last=False)
        return wait


class Ingest:
    """What the endpoint shares: the sources, the limiter and a producer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sources = Sources(settings.sources_file)
        self.limiter = RateLimiter(settings.ingest_rate, settings.ingest_burst)
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            **client_options(self.settings),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=2 * 2**20,
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def audit(
        self, request: web.Request, source: str | None, status: int, reason: str, **counts: Any
    ) -> None:
        """A refused request, to the audit topic (a failure to write it is logged, not raised)."""
        record = {
            "at": datetime.now(UTC).isoformat(),
            "source": source,
            "election": request.match_info.get("election"),
            "status": status,
            "reason": reason,
            "remote": request.remote,
            **counts,
        }
        log.warning("ingest refused (%s) from source %s: %s", status, source, reason)
        if self.producer is None:
            return
        try:
            await self.producer.send_and_wait(self.settings.audit_topic, orjson.dumps(record))
        except Exception as exc:  # noqa: BLE001 - the audit must not turn a refusal into a 500
            log.error("cannot write to the audit topic %s: %s", self.settings.audit_topic, exc)


INGEST = web.AppKey("ingest", Ingest)


def _bearer(request: web.Request) -> str | None:
    """The bearer token (printable ASCII: anything else is no token of ours)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.isascii() or not token.isprintable():
        return None
    return token


async def _read_body(request: web.Request) -> bytes | None:
    """The body, or None if it is larger than ``MAX_BODY_BYTES``; TimeoutError if too slow."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(BODY_TIMEOUT):
        while chunk := await request.content.read(2**16):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


def _items(body: bytes) -> list[Any]:
    """The reports of a body: a JSON object, an array of them, or JSON Lines (one per line)."""
    stripped = body.strip()
    if not stripped:
        return []
    try:
        data = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return [orjson.loads(line) for line in stripped.splitlines() if line.strip()]
    return data if isinstance(data, list) else [data]


def _place(item: dict[str, Any]) -> tuple[str | None, str | None]:
    bureau, commune = item.get("bureau"), item.get("commune")
    return (bureau if isinstance(bureau, str) else None), (commune if isinstance(commune, str) else None)


def _check(item: Any, election: ElectionIndex, settings: Settings, source: Source) -> tuple[bytes, str]:
    """(the report's JSON, the topic it goes to), or InvalidResult with the dead letters' reason."""
    if not isinstance(item, dict):
        raise InvalidResult(f"payload must be a JSON object, got {type(item).__name__}")
    if election.require_signature and "election" not in item:  # what was signed must be sent as is
        bureau, commune = _place(item)
        where = f"bureau {bureau}: " if bureau else f"commune {commune}: " if commune else ""
        raise InvalidResult(f"{where}a signed report carries its election (it is part of what is signed)")
    item.setdefault("election", election.election)
    raw = orjson.dumps(item)
    lookup = {election.election: election}
    if "at_hour" in item:
        report = validate_turnout(raw, lookup, settings.max_message_bytes)
        where, topic = f"{'bureau' if report.bureau else 'commune'} {report.place}", settings.turnout_topic
    else:
        result = validate_result(raw, lookup, settings.max_message_bytes)
        where, topic = f"bureau {result.bureau}", settings.results_topic
    if election.require_signature:
        problem = signature_problem(item, source if item.get("source") == source.id else None, election)
        if problem is not None:
            raise InvalidResult(f"{where}: {problem}")
    return raw, topic


def _check_all(
    items: list[Any], election: ElectionIndex, settings: Settings, source: Source
) -> tuple[list[tuple[bytes, str, bytes]], list[dict[str, Any]]]:
    """(the reports to publish as (JSON, topic, key), the invalid ones as {index, reason})."""
    checked: list[tuple[bytes, str, bytes]] = []
    invalid = []
    for index, item in enumerate(items):
        try:
            raw, topic = _check(item, election, settings, source)
        except InvalidResult as exc:
            invalid.append({"index": index, "reason": str(exc)})
            continue
        bureau, commune = _place(item)
        checked.append((raw, topic, (bureau or commune or "").encode()))
    return checked, invalid


async def post_reports(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    settings = request.app[SETTINGS]
    token = _bearer(request)
    claimed = source_of_token(token) if token else None
    known = ingest.sources.cached(token) if token else None
    # a source's own requests (a token already checked) have their bucket; anything else is counted
    # by what it claims and where it comes from, so forged tokens cannot lock a source out
    bucket = f"source {known.id}" if known is not None else f"claimed {claimed} from {request.remote}"
    wait = ingest.limiter.allow(bucket)
    if wait:
        await ingest.audit(request, claimed, 429, "rate limit")
        seconds = str(max(1, round(wait + 0.5)))
        return json_error(
            429, "rate_limited", f"too many requests; retry in {seconds} s", {"Retry-After": seconds}
        )
    source = known or (await asyncio.to_thread(ingest.sources.authenticate, token) if token else None)
    if source is None:
        reason = "no bearer token" if token is None else "invalid token"
        await ingest.audit(request, None, 401, reason)
        return json_error(401, "unauthorized", f"{reason}: send Authorization: Bearer <a source's token>")
    found = await definition_or_404(request)
    if isinstance(found, web.Response):
        await ingest.audit(request, source.id, 404, "unknown election")
        return found
    election = found.index
    if not source.for_election(election.election):
        reason = f"source {source.id} may not report election {election.election}"
        await ingest.audit(request, source.id, 403, reason)
        return json_error(403, "forbidden", reason)
    try:
        body = await _read_body(request)
    except TimeoutError:
        await ingest.audit(request, source.id, 408, "body too slow")
        return json_error(408, "request_timeout", f"the body did not arrive within {BODY_TIMEOUT:.0f} s")
    if body is None:
        await ingest.audit(request, source.id, 413, "body too large")
        return json_error(413, "too_large", f"a request holds at most {MAX_BODY_BYTES // 2**20} MB")
    try:
        items = await asyncio.to_thread(_items, body)
    except orjson.JSONDecodeError as exc:
        await ingest.audit(request, source.id, 422, "not JSON")
        return json_error(422, "invalid", f"the body is neither JSON nor JSON Lines: {exc}")
    if not items or len(items) > MAX_REPORTS:
        status = 413 if items else 422
        detail = f"{len(items):,} reports; at most {MAX_REPORTS:,} per request" if items else "no report"
        await ingest.audit(request, source.id, status, detail, reports=len(items))
        return json_error(status, "too_large" if items else "invalid", detail)

    outside = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue  # refused as invalid below
        other = item.get("election", election.election)
        bureau, commune = _place(item)
        if other != election.election or not in_scope(source, election, bureau, commune):
            where = f"bureau {bureau}" if bureau else f"commune {commune}" if commune else "no place"
            why = f"election {other!r}" if other != election.election else f"{where} of {election.election}"
            outside.append({"index": index, "reason": f"{why} is not in the scope of source {source.id}"})
    if outside:
        await ingest.audit(request, source.id, 403, "out of scope", reports=len(items), refused=len(outside))
        return json_error(
            403,
            "out_of_scope",
            f"{len(outside)} of {len(items)} reports are outside the source's scope; none was published",
            reports=outside[:LISTED],
        )

    checked, invalid = await asyncio.to_thread(_check_all, items, election, settings, source)
    if invalid:
        await ingest.audit(
            request, source.id, 422, "invalid reports", reports=len(items), refused=len(invalid)
        )
        return json_error(
            422,
            "invalid",
            f"{len(invalid)} of {len(items)} reports are invalid; none was published",
            reports=invalid[:LISTED],
        )

    producer = ingest.producer
    if producer is None:  # not started: the service is shutting down
        return json_error(503, "unavailable", "the service is not ready to publish")
    headers = [(SOURCE_HEADER, source.id.encode())]
    try:
        sent = [await producer.send(topic, raw, key=key, headers=headers) for raw, topic, key in checked]
        await asyncio.gather(*sent)
    except KafkaError as exc:  # some may have gone: sending the request again is safe (repeats count once)
        await ingest.audit(request, source.id, 503, f"Kafka: {type(exc).__name__}", reports=len(checked))
        return json_error(
            503,
            "unavailable",
            "Kafka did not take every report; send the request again (repeats count once)",
            {"Retry-After": "5"},
        )
    turnout = sum(1 for _, topic, _ in checked if topic == settings.turnout_topic)
    return web.json_response(
        {
            "accepted": len(checked),
            "results": len(checked) - turnout,
            "turnout": turnout,
            "source": source.id,
        },
        status=202,
    )


def setup(app: web.Application) -> None:
    ingest = app[INGEST] = Ingest(app[SETTINGS])

    async def start(app: web.Application) -> None:
        await ingest.start()

    async def stop(app: web.Application) -> None:
        await ingest.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/api/elections/{election}/reports", post_reports)
