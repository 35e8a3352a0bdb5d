"""The event hub of ``soiree serve``: the process's one reader of the updates topic.

It reads every partition from the end (no consumer group) and keeps the last
``settings.sse_buffer`` events in a ring, each with its partition and offset and, computed once
as it arrives, its complete SSE frame: ``id:`` the hub's vector of next offsets after it (see
``stream.http.events``), ``event: update``, ``data:`` the event. The ring is indexed by
(election, level), so a filter reads only the entries of its levels.

A client that is *in step* with the hub (its next entry's id is the hub's, see
``Stream.live``) needs no position of its own: ``chunk`` gives it the frames of a filter from a
ring sequence number, built once per (filter, sequence) and shared by every client in step with
the same filter until the ring advances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from aiohttp import web

from stream.adapters.kafka.positions import Record, TopicReader
from stream.http.metrics import ServeMetrics
from stream.settings import Settings

__all__ = [
    "Hub",
    "HUB",
    "Entry",
    "Filter",
    "FellBehind",
    "Position",
    "entry_of",
    "update_frame",
    "encode_position",
    "decode_position",
]

log = logging.getLogger("stream.http")

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
    kind: str
    raw: bytes
    #: The SSE frame with the hub's id after this entry (hub entries only; b"" from a catch-up).
    frame: bytes = b""


def entry_of(record: Record, ident: str | None = None) -> Entry | None:
    """The record as an entry (its frame with ``ident`` as id when given); None when it is not an
    UpdateEvent: never sent, by the hub or by a catch-up."""
    try:
        event = orjson.loads(record.value)
        election, level, area = str(event["election"]), str(event["level"]), str(event["area"])
        kind = str(event.get("kind"))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    frame = b"" if ident is None else update_frame(ident, record.value)
    return Entry(record.partition, record.offset, election, level, area, kind, record.value, frame)


def update_frame(ident: str, raw: bytes) -> bytes:
    return b"id: " + ident.encode() + b"\nevent: update\ndata: " + raw + b"\n\n"


@dataclass(slots=True, frozen=True)
class Filter:
    """What a stream asked for (hashable: clients with equal filters share their chunks)."""

    election: str
    levels: frozenset[str] | None
    area: str | None

    def matches(self, entry: Entry) -> bool:
        return (
            entry.election == self.election
            and (self.levels is None or entry.level in self.levels)
            and (self.area is None or entry.area == self.area)
        )


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
        # ring sequences by election, then level, ascending (older than the ring pruned now and then)
        self._index: dict[str, dict[str, list[int]]] = {}
        self._pruned_at = 0
        # (filter, from seq) -> frames up to next_seq; emptied whenever the ring advances
        self._chunks: dict[tuple[Filter, int], bytes] = {}
        # clients in step wait by filter: (woken when, since seq); see ``wait``
        self._waiting: dict[Filter, tuple[asyncio.Event, int]] = {}
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
        for woken, _ in self._waiting.values():
            woken.set()
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
        start = self.next_seq
        for record in records:
            if record.topic == self.settings.rejected_topic:
                self._count_rejection(record.value)
                continue
            self.position[record.partition] = record.offset + 1
            entry = entry_of(record, encode_position(self.position))
            if entry is None:
                continue
            self.metrics.event(entry.kind, entry.level)
            slot = self.next_seq % self.capacity
            old = self._ring[slot]
            if old is not None:
                self.base[old.partition] = old.offset + 1
            self._ring[slot] = entry
            self._index.setdefault(entry.election, {}).setdefault(entry.level, []).append(self.next_seq)
            self.next_seq += 1
            added = True
        if added:
            self._chunks.clear()
            if self.next_seq - self._pruned_at >= self.capacity:
                self._prune()
            self._notify()
            self._wake_filters(start)

    def _wake_filters(self, start: int) -> None:
        """Wake the clients whose filter matches an entry from ``start`` on, and those the ring is
        about to pass (so that they move on before their place leaves it)."""
        for wanted, (woken, since) in list(self._waiting.items()):
            if self.next_seq - since >= self.capacity // 2 or self._select(wanted, start):
                woken.set()
                del self._waiting[wanted]

    def _prune(self) -> None:
        """Forget the index's sequences that left the ring (once per ``capacity`` entries)."""
        first = self.first_seq
        for election, levels in list(self._index.items()):
            for level, seqs in list(levels.items()):
                del seqs[: bisect_left(seqs, first)]
                if not seqs:
                    del levels[level]
            if not levels:
                del self._index[election]
        self._pruned_at = self.next_seq

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

    def not_after(self, position: Position) -> bool:
        """Whether ``position`` is at or before the hub's on every partition."""
        here = self.position
        return all(offset <= here.get(partition, 0) for partition, offset in position.items())

    def since(self, seq: int) -> list[Entry]:
        """Every entry from ``seq`` on; FellBehind when some of them left the ring."""
        if seq < self.first_seq:
            raise FellBehind
        return [self._ring[s % self.capacity] for s in range(seq, self.next_seq)]  # type: ignore[misc]

    def chunk(self, wanted: Filter, seq: int) -> bytes:
        """The frames of the entries from ``seq`` on that ``wanted`` matches, with the hub's ids;
        built once per (filter, seq) while the ring does not advance. FellBehind as ``since``."""
        if seq < self.first_seq:
            raise FellBehind
        key = (wanted, seq)
        found = self._chunks.get(key)
        if found is None:
            found = self._chunks[key] = b"".join(entry.frame for entry in self._select(wanted, seq))
        return found

    def _select(self, wanted: Filter, seq: int) -> list[Entry]:
        levels = self._index.get(wanted.election, {})
        lists = [levels[level] for level in levels if wanted.levels is None or level in wanted.levels]
        seqs = [s for found in lists for s in found[bisect_left(found, seq) :]]
        if len(lists) > 1:
            seqs.sort()  # ring order: the last id a client received covers everything before it
        ring, capacity, area = self._ring, self.capacity, wanted.area
        entries: list[Entry] = [ring[s % capacity] for s in seqs]  # type: ignore[misc]
        return entries if area is None else [entry for entry in entries if entry.area == area]

    async def wait(self, seq: int, timeout: float, wanted: Filter | None = None) -> bool:
        """Until an entry at or after ``seq`` exists (one that ``wanted`` matches, when given: a
        client in step, with nothing to send from ``seq`` to the end of the ring), the hub closes
        or ``timeout`` passes (False). Clients in step sleep through the events of other filters
        (most of a night's are bureaux'): O(clients) work only for the events they get."""
        if self.closed or (wanted is None and self.next_seq > seq):
            return True
        if wanted is None:
            woken = self._wake
        else:
            woken, since = self._waiting.get(wanted) or (asyncio.Event(), seq)
            self._waiting[wanted] = (woken, min(since, seq))
        try:
            async with asyncio.timeout(timeout):
                await woken.wait()
        except TimeoutError:
            return False
        return True


HUB = web.AppKey("sse_hub", Hub)
