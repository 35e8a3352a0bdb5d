"""``GET /api/elections/{id}/events``: the night as Server-Sent Events, resumable exactly.

One ``Hub`` per process reads the updates topic (every partition, from the end, no consumer
group) and keeps the last ``settings.sse_buffer`` events in a ring with their partition and
offset; each client's task reads the ring at its own pace, so a slow client never holds the
others back (one that falls off the ring is disconnected, and resumes).

An event's ``id`` is the vector of next offsets of every partition after it, ``0-123.1-456.2-7``:
a client resuming from it (``Last-Event-ID`` header, or ``?last_event_id=``) gets exactly the
events of every partition at or after those offsets. When the ring still covers them, from the
ring; otherwise (older, ``from=beginning``, or another ``serve`` process's id after a restart) a
catch-up reader of its own reads Kafka from them until the ring covers where it got to, and the
client joins the ring there: nothing lost, nothing repeated. Ids of another process are as good
as this one's: they name Kafka offsets, not anything of the process.

A stream opened without an id starts with one ``snapshot`` event per area asked (the Standings
from Redis), all with the hub's current vector as id, then the live ``update`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from aiohttp import web

from stream.adapters.kafka.positions import Record, TopicReader
from stream.http.api import READER, SETTINGS, Definition, definition_or_404
from stream.http.embargo import check_access
from stream.http.errors import STREAMING, json_error
from stream.http.metrics import METRICS, ServeMetrics
from stream.settings import LEVELS, Settings

__all__ = ["setup", "Hub", "HUB", "encode_position", "decode_position", "HEARTBEAT"]

log = logging.getLogger("stream.http")

#: Seconds between comments on a quiet stream (proxies close idle connections; dead clients show).
HEARTBEAT = 15.0
#: Seconds a write to a client may take before the client counts as gone.
WRITE_TIMEOUT = 10.0

Position = dict[int, int]


def encode_position(position: Position) -> str:
    return ".".join(f"{partition}-{offset}" for partition, offset in sorted(position.items()))


def decode_position(text: str) -> Position:
    """``0-123.1-456`` -> {0: 123, 1: 456}; ValueError when it is not one."""
    position: Position = {}
    for part in text.strip().split("."):
        partition, _, offset = part.partition("-")
        if not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"not an event id: {text[:80]!r}")
        position[int(partition)] = int(offset)
    return position


@dataclass(slots=True, frozen=True)
class Entry:
    partition: int
    offset: int
    election: str
    level: str
    area: str
    raw: bytes


def _entry(record: Record) -> Entry | None:
    try:
        event = orjson.loads(record.value)
        return Entry(
            record.partition,
            record.offset,
            str(event["election"]),
            str(event["level"]),
            str(event["area"]),
            record.value,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None  # not an UpdateEvent: never sent, by the hub or by a catch-up


class FellBehind(Exception):
    """A client's next event left the ring before it was sent."""


class Hub:
    """The process's one reader of the updates topic (and of the rejected one, for the metrics)."""

    def __init__(self, settings: Settings, metrics: ServeMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.capacity = settings.sse_buffer
        self._ring: list[Entry | None] = [None] * self.capacity
        self.next_seq = 0  # ring sequence of the next entry
        self.position: Position = {}  # next offset by partition after everything read
        self.base: Position = {}  # the ring holds every event at or after these offsets
        self._wake = asyncio.Event()
        self.closed = False
        self._reader: TopicReader | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        reader = TopicReader(self.settings)
        await reader.start({self.settings.updates_topic: None, self.settings.rejected_topic: None})
        self._reader = reader
        self.position = await reader.positions(self.settings.updates_topic)
        self.base = dict(self.position)
        self._task = asyncio.create_task(self._run(), name="soiree-sse-hub")

    async def stop(self) -> None:
        self.closed = True
        self._notify()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._reader is not None:
            await self._reader.stop()

    async def _run(self) -> None:
        reader = self._reader
        if reader is None:
            raise RuntimeError("the hub reads only once started")
        while True:
            try:
                records = await reader.read(1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001  # aiokafka reconnects; keep reading
                log.exception("the event hub could not read Kafka; retrying")
                await asyncio.sleep(1.0)
                continue
            if records:
                self.add(records)

    def add(self, records: Iterable[Record]) -> None:
        added = False
        for record in records:
            if record.topic == self.settings.rejected_topic:
                self._count_rejection(record.value)
                continue
            self.position[record.partition] = record.offset + 1
            entry = _entry(record)
            if entry is None:
                continue
            self._count_event(record.value)
            slot = self.next_seq % self.capacity
            old = self._ring[slot]
            if old is not None:
                self.base[old.partition] = old.offset + 1
            self._ring[slot] = entry
            self.next_seq += 1
            added = True
        if added:
            self._notify()

    def _count_event(self, raw: bytes) -> None:
        event = orjson.loads(raw)
        self.metrics.event(str(event.get("kind")), str(event.get("level")))

    def _count_rejection(self, raw: bytes) -> None:
        try:
            reason = str(orjson.loads(raw).get("reason", ""))
        except (orjson.JSONDecodeError, AttributeError):
            reason = "unreadable dead letter"
        self.metrics.rejection(reason)

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    @property
    def first_seq(self) -> int:
        return max(0, self.next_seq - self.capacity)

    def covers(self, position: Position) -> bool:
        """Whether every event at or after ``position`` that Kafka has is in the ring (or to come)."""
        return all(position.get(partition, 0) >= offset for partition, offset in self.base.items())

    def since(self, seq: int) -> list[Entry]:
        if seq < self.first_seq:
            raise FellBehind
        return [self._ring[s % self.capacity] for s in range(seq, self.next_seq)]  # type: ignore[misc]

    async def wait(self, seq: int, timeout: float) -> None:
        """Until an entry at or after ``seq`` exists, the hub closes, or ``timeout`` passes."""
        if self.next_seq > seq or self.closed:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)


HUB = web.AppKey("sse_hub", Hub)


@dataclass(slots=True)
class Filter:
    election: str
    levels: frozenset[str] | None
    area: str | None

    def matches(self, entry: Entry) -> bool:
        return (
            entry.election == self.election
            and (self.levels is None or entry.level in self.levels)
            and (self.area is None or entry.area == self.area)
        )


def _update(entry: Entry, position: Position) -> bytes:
    return b"id: " + encode_position(position).encode() + b"\nevent: update\ndata: " + entry.raw + b"\n\n"


class Stream:
    def __init__(self, request: web.Request, response: web.StreamResponse, wanted: Filter) -> None:
        self.request = request
        self.response = response
        self.wanted = wanted

    async def write(self, chunk: bytes) -> None:
        await asyncio.wait_for(self.response.write(chunk), WRITE_TIMEOUT)

    def take(self, entries: Iterable[Entry], position: Position) -> bytes:
        """The SSE text of the entries not yet sent (``position`` advances past each)."""
        out: list[bytes] = []
        for entry in entries:
            if entry.offset < position.get(entry.partition, 0):
                continue  # sent already (before a resume, or by the catch-up)
            position[entry.partition] = entry.offset + 1
            if self.wanted.matches(entry):
                out.append(_update(entry, position))
        return b"".join(out)

    async def catch_up(self, hub: Hub, position: Position) -> None:
        """From Kafka, until the hub's ring covers ``position``."""
        settings = self.request.app[SETTINGS]
        reader = TopicReader(settings)
        await reader.start({settings.updates_topic: position})
        try:
            for partition, first in (await reader.beginnings(settings.updates_topic)).items():
                position[partition] = max(position.get(partition, 0), first)  # older ones are gone
            while not hub.covers(position) and not hub.closed:
                records = await reader.read(0.5)
                entries = [entry for entry in map(_entry, records) if entry is not None]
                for record in records:  # an unreadable record is skipped, not waited for
                    if record.offset >= position.get(record.partition, 0) and _entry(record) is None:
                        position[record.partition] = record.offset + 1
                chunk = self.take(entries, position)
                if chunk:
                    await self.write(chunk)
                elif not records:
                    await self.write(b": catching up\n\n")
        finally:
            await reader.stop()

    async def live(self, hub: Hub, position: Position, seq: int) -> None:
        while not hub.closed:
            try:
                entries = hub.since(seq)
            except FellBehind:
                log.info("an event-stream client fell %d events behind: disconnected", hub.next_seq - seq)
                return
            if entries:
                seq += len(entries)
                chunk = self.take(entries, position)
                if chunk:
                    await self.write(chunk)
                continue
            await hub.wait(seq, HEARTBEAT)
            if hub.next_seq == seq and not hub.closed:
                await self.write(b": heartbeat\n\n")


async def _snapshot(request: web.Request, found: Definition, wanted: Filter, position: Position) -> bytes:
    levels = sorted(wanted.levels or (LEVELS if wanted.area else ("nation",)), key=LEVELS.index)
    ident = b"id: " + encode_position(position).encode() + b"\nevent: snapshot\ndata: "
    out: list[bytes] = []
    for level in levels:
        if wanted.area is not None:
            areas = [wanted.area] if (level, wanted.area) in found.index.areas else []
        else:
            areas = found.index.areas.of_level(level)
        for raw in await request.app[READER].many_standings(found.index.election, level, areas):
            if raw is None:
                continue
            if b"\n" in raw:
                raw = orjson.dumps(orjson.loads(raw))
            out.append(ident + raw + b"\n\n")
    return b"".join(out)


async def events(request: web.Request) -> web.StreamResponse:
    found = await definition_or_404(request)
    if isinstance(found, web.Response):
        return found
    levels = None
    if request.query.get("level"):
        levels = frozenset(level.strip() for level in request.query["level"].split(",") if level.strip())
        unknown = sorted(levels - set(LEVELS))
        if unknown:
            return json_error(
                404, "unknown_level", f"unknown level {unknown[0]!r}; levels: {', '.join(LEVELS)}"
            )
    wanted = Filter(found.index.election, levels, request.query.get("area") or None)
    resume = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    start: Position | None = None
    if resume:
        try:
            start = decode_position(resume)
        except ValueError as exc:
            return json_error(400, "bad_event_id", str(exc))
    elif request.query.get("from") == "beginning":
        start = {}
    elif request.query.get("from"):
        return json_error(400, "bad_request", "from: only 'beginning' is known")
    if (refused := check_access(request, found.index.publish_after)) is not None:
        return refused
    hub = request.app[HUB]
    request[STREAMING] = True
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    metrics = request.app[METRICS]
    metrics.sse_clients.inc()
    try:
        await response.prepare(request)
        stream = Stream(request, response, wanted)
        await stream.write(b"retry: 2000\n\n")
        if start is None:
            position, seq = dict(hub.position), hub.next_seq  # before Redis: no event falls between
            await stream.write(await _snapshot(request, found, wanted, position))
        else:
            position = start
            if not hub.covers(position):
                await stream.catch_up(hub, position)
            seq = hub.first_seq
        await stream.live(hub, position, seq)
    except (ConnectionError, TimeoutError):
        pass  # the client went away
    finally:
        metrics.sse_clients.dec()
    return response


def setup(app: web.Application) -> None:
    """Add this part's routes to the service."""
    app.router.add_get("/api/elections/{election}/events", events)
