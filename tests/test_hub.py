"""The event hub and the live path of ``soiree serve``'s event streams, without services: records
are fed to the Hub directly. Every stream is checked against the contract, computed from the
records alone: it carries exactly the matching events at or after where it started, in order,
and resuming from any event's id gives exactly the events that follow it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson

from stream.adapters.kafka.positions import Record
from stream.http.events import Stream
from stream.http.hub import Filter, Hub, decode_position
from stream.settings import Settings

SETTINGS = Settings(sse_buffer=100)
PARTITIONS = 3
LEVELS = ("bureau", "bureau", "commune", "region", "nation")


class Metrics:
    def __init__(self) -> None:
        self.events = 0

    def event(self, kind: str, level: str) -> None:
        self.events += 1

    def rejection(self, reason: str) -> None:
        pass


class Sink:
    """Stands for the client's response: keeps what is written."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def updates(self) -> list[tuple[str, bytes]]:
        """(id, data) of each update event written."""
        found = []
        for frame in b"".join(self.chunks).split(b"\n\n"):
            fields = dict(line.split(b": ", 1) for line in frame.split(b"\n") if b": " in line)
            if fields.get(b"event") == b"update":
                found.append((fields[b"id"].decode(), fields[b"data"]))
        return found


def night(count: int, start: int = 0) -> Iterator[Record]:
    """``count`` records over the partitions: events of two elections at every level, and now and
    then a record that is no event (it takes an offset, it is never sent)."""
    for n in range(start, start + count):
        partition, offset = n % PARTITIONS, n // PARTITIONS
        if n % 17 == 5:
            yield Record(SETTINGS.updates_topic, partition, offset, b"not an event")
            continue
        event = {
            "election": "other" if n % 7 == 3 else "e",
            "level": LEVELS[n % len(LEVELS)],
            "area": "75" if n % 4 == 0 else "42",
            "kind": "reported",
            "n": n,
        }
        yield Record(SETTINGS.updates_topic, partition, offset, orjson.dumps(event))


def expected(records: list[Record], wanted: Filter, position: dict[int, int]) -> list[bytes]:
    """The events ``wanted`` matches at or after ``position``, in the order the hub read them."""
    out = []
    for record in records:
        if record.offset < position.get(record.partition, 0) or record.value == b"not an event":
            continue
        event = orjson.loads(record.value)
        if (
            event["election"] == wanted.election
            and (wanted.levels is None or event["level"] in wanted.levels)
            and (wanted.area is None or event["area"] == wanted.area)
        ):
            out.append(record.value)
    return out


def assert_contract(sink: Sink, records: list[Record], wanted: Filter, start: dict[int, int]) -> None:
    got = sink.updates()
    assert [data for _, data in got] == expected(records, wanted, start)
    for index, (ident, _) in enumerate(got):  # a resume from any id: exactly the rest
        assert expected(records, wanted, decode_position(ident)) == [data for _, data in got[index + 1 :]]


def new_hub() -> Hub:
    hub = Hub(SETTINGS, Metrics())  # type: ignore[arg-type]
    hub.position = dict.fromkeys(range(PARTITIONS), 0)  # as read from an empty topic at start
    hub.base = dict(hub.position)
    return hub


def follow(hub: Hub, wanted: Filter, position: dict[int, int], seq: int) -> tuple[Stream, Sink, Any]:
    sink = Sink()
    stream = Stream(None, sink, wanted)  # type: ignore[arg-type]
    return stream, sink, asyncio.create_task(stream.live(hub, position, seq))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def feed(hub: Hub, records: list[Record], batch: int = 25) -> None:
    """As the hub reads them: a batch at a time, the clients running in between."""
    for start in range(0, len(records), batch):
        hub.add(records[start : start + batch])
        await settle()


NATION_REGION = Filter("e", frozenset({"nation", "region"}), None)


def test_a_resumed_client_gets_exactly_the_rest_then_shares_the_hubs_bytes() -> None:
    async def run() -> None:
        hub = new_hub()
        records = list(night(260))
        first, second = records[:150], records[150:]
        # two clients after their snapshot, one more with another filter: in step from the start
        a, sink_a, task_a = follow(hub, NATION_REGION, dict(hub.position), hub.next_seq)
        b, sink_b, task_b = follow(hub, NATION_REGION, dict(hub.position), hub.next_seq)
        paris = Filter("e", None, "75")
        _, sink_p, task_p = follow(hub, paris, dict(hub.position), hub.next_seq)
        await settle()
        assert a.in_step and b.in_step
        await feed(hub, first)  # more than the ring holds: it wraps, and its index is pruned
        assert hub.first_seq > 0

        # a client resumes from the id of an event still in the ring: entry by entry, then in step
        updates = sink_a.updates()
        resume = decode_position(updates[len(updates) - 8][0])
        assert hub.covers(resume) and resume != hub.position
        r, sink_r, task_r = follow(hub, NATION_REGION, dict(resume), hub.first_seq)
        await settle()
        assert r.in_step
        written = len(sink_r.chunks)
        assert written == 1 and len(sink_r.updates()) == 7  # its own ids, not the hub's

        await feed(hub, second)
        assert_contract(sink_a, records, NATION_REGION, {})
        assert_contract(sink_p, records, paris, {})
        assert_contract(sink_r, records, NATION_REGION, resume)
        # in step, the same filter: the very same bytes, built once
        assert b"".join(sink_a.chunks) == b"".join(sink_b.chunks)
        shared = sink_r.chunks[written:]
        assert len(shared) > 1 and shared == sink_a.chunks[-len(shared) :]
        for mine, a_s, b_s in zip(shared, sink_a.chunks[-len(shared) :], sink_b.chunks[-len(shared) :]):
            assert mine is a_s is b_s

        await hub.stop()
        await asyncio.gather(task_a, task_b, task_p, task_r)

    asyncio.run(run())


def test_a_resume_ahead_of_the_hub_waits_in_its_own_step() -> None:
    """An id from another ``serve`` process that has read further than this one: the events
    before it reach this hub later, and must not be sent again."""

    async def run() -> None:
        hub = new_hub()
        records = list(night(120))
        hub.add(records[:40])
        ahead: dict[int, int] = {}
        for record in records[:70]:
            ahead[record.partition] = record.offset + 1
        r, sink, task = follow(hub, NATION_REGION, dict(ahead), hub.first_seq)
        await settle()
        assert not r.in_step and sink.updates() == []
        hub.add(records[40:60])
        await settle()
        assert not r.in_step and sink.updates() == []
        hub.add(records[60:])
        await settle()
        assert r.in_step
        assert_contract(sink, records, NATION_REGION, ahead)
        await hub.stop()
        await task

    asyncio.run(run())


def test_a_client_left_behind_by_the_ring_is_disconnected() -> None:
    async def run() -> None:
        hub = new_hub()
        _, sink, task = follow(hub, NATION_REGION, dict(hub.position), hub.next_seq)
        await settle()
        hub.add(night(100))
        hub.add(night(100, start=100))  # before the client could read: it lost events
        await asyncio.wait_for(task, 1)  # it ends: the client reconnects with its last id
        assert sink.updates() == []
        await hub.stop()

    asyncio.run(run())
