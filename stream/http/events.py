"""``GET /api/elections/{id}/events``: the night as Server-Sent Events, resumable exactly.

The process's ``Hub`` (``stream.http.hub``) reads the updates topic and keeps the last
``settings.sse_buffer`` events in a ring; each client's task reads the ring at its own pace, so a
slow client never holds the others back (one that falls off the ring is disconnected, and
resumes).

An event's ``id`` is the vector of next offsets of every partition after it, ``0-123.1-456.2-7``:
a client resuming from it (``Last-Event-ID`` header, or ``?last_event_id=``) gets exactly the
events of every partition at or after those offsets. When the ring still covers them, from the
ring; otherwise (older, ``from=beginning``, or another ``serve`` process's id after a restart) a
catch-up reader of its own reads Kafka from them until the ring covers where it got to, and the
client joins the ring there: nothing lost, nothing repeated. Ids of another process are as good
as this one's: they name Kafka offsets, not anything of the process.

Live, a client is *in step* with the hub once nothing lies between its position and the hub's
but records that are no events: then each of its events' ids is the hub's own, computed once
with the event's frame, and it shares with every client of the same filter the bytes the hub
builds once per wake-up (O(events + clients), not O(events × clients)). A client starts in step
(after its snapshot) or gets there by reading the ring entry by entry with a position of its own
(after a resume or a catch-up), which takes it one pass over the ring.

A stream opened without an id starts with one ``snapshot`` event per area asked (the Standings
from Redis), all with the hub's current vector as id, then the live ``update`` events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import orjson
from aiohttp import web

from stream.adapters.kafka.positions import TopicReader
from stream.http.api import READER, SETTINGS, Definition, definition_or_404
from stream.http.embargo import check_access
from stream.http.errors import STREAMING, json_error
from stream.http.hub import (
    HUB,
    Entry,
    FellBehind,
    Filter,
    Hub,
    Position,
    decode_position,
    encode_position,
    entry_of,
    update_frame,
)
from stream.http.metrics import METRICS
from stream.settings import LEVELS

__all__ = ["setup", "Hub", "HUB", "Stream", "encode_position", "decode_position", "HEARTBEAT"]

log = logging.getLogger("stream.http")

#: Seconds between comments on a quiet stream (proxies close idle connections; dead clients show).
HEARTBEAT = 15.0
#: Seconds a write to a client may take before the client counts as gone.
WRITE_TIMEOUT = 10.0


class Stream:
    """One client's event stream: ``catch_up`` from Kafka when the ring does not cover where it
    resumes, then ``live`` from the ring."""

    def __init__(self, request: web.Request, response: web.StreamResponse, wanted: Filter) -> None:
        self.request = request
        self.response = response
        self.wanted = wanted
        self.in_step = False  # reading the hub's shared chunks (see ``live``)

    async def write(self, chunk: bytes) -> None:
        async with asyncio.timeout(WRITE_TIMEOUT):  # a timer, not a task per write as wait_for
            await self.response.write(chunk)

    def take(self, entries: Iterable[Entry], position: Position) -> bytes:
        """The SSE text of the entries not yet sent (``position`` advances past each)."""
        out: list[bytes] = []
        for entry in entries:
            if entry.offset < position.get(entry.partition, 0):
                continue  # sent already (before a resume, or by the catch-up)
            position[entry.partition] = entry.offset + 1
            if self.wanted.matches(entry):
                out.append(update_frame(encode_position(position), entry.raw))
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
                entries = []
                for record in records:
                    entry = entry_of(record)
                    if entry is not None:
                        entries.append(entry)
                    elif record.offset >= position.get(record.partition, 0):
                        position[record.partition] = record.offset + 1  # skipped, not waited for
                chunk = self.take(entries, position)
                if chunk:
                    await self.write(chunk)
                elif not records:
                    await self.write(b": catching up\n\n")
        finally:
            await reader.stop()

    async def live(self, hub: Hub, position: Position, seq: int) -> None:
        """The ring from sequence ``seq`` on, for a client that has every event before ``position``
        (and the ring covers ``position``).

        Until it is in step, the client reads each entry with ``take`` and ids of its own. Having
        read the ring up to its end, every event before the hub's position is either sent or
        before its own position; so when its position is at or before the hub's on every
        partition, what lies between is no event, the next events' ids can be the hub's (a resume
        from them loses and repeats nothing), and it skips none of them: it is in step, and takes
        the hub's shared chunks from then on. A stream after its snapshot starts in step; a resumed
        one after one pass over the ring, unless its id is ahead of this hub (another process's),
        until the hub has read that far.
        """
        while not hub.closed:
            try:
                if self.in_step:
                    chunk = hub.chunk(self.wanted, seq)
                else:
                    chunk = self.take(hub.since(seq), position)
                    self.in_step = hub.not_after(position)
            except FellBehind:
                log.info("an event-stream client fell %d events behind: disconnected", hub.next_seq - seq)
                return
            seq = hub.next_seq
            if chunk:
                await self.write(chunk)
            elif not await hub.wait(seq, HEARTBEAT, self.wanted if self.in_step else None):
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
