"""The tally keeps area states as objects between chunks (``Pipeline.held``, ``departments``):
they must always be what the store holds, or be dropped.

In-process, on the stand-ins of ``fakes`` (no services): a chunk is one ``on_contributions`` call.
Expected leaders are written out from the reports' own counts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from stream.domain.roll import ElectionIndex
from stream.runtime import outages
from stream.runtime.pipeline import Pipeline
from stream.settings import Settings
from stream.testing import FakeProducer, as_events, offline_pipeline

ELECTION = "held-test"
ROLL = [
    ("42218-0001", "42218", "42"),
    ("42218-0002", "42218", "42"),
    ("42001-0001", "42001", "42"),
    ("75056-0001", "75056", "75"),
]


def election() -> ElectionIndex:
    definition = {
        "election": ELECTION,
        "name": "Held",
        "candidates": [{"id": "A", "name": "a"}, {"id": "B", "name": "b"}],
        "bureaux": [dict(bureau=b, commune=c, department=d, registered=1000) for b, c, d in ROLL],
    }
    return ElectionIndex.from_json(orjson.dumps(definition))


def report(bureau: str, seq: int, a: int, b: int) -> tuple[bytes, bytes]:
    value = {
        "election": ELECTION,
        "bureau": bureau,
        "seq": seq,
        "voters": a + b,
        "blank": 0,
        "invalid": 0,
        "votes": {"A": a, "B": b},
    }
    return bureau.encode(), orjson.dumps(value)


class Night:
    """Reports through routing, then their contributions as one chunk each, as the agents would."""

    def __init__(self) -> None:
        self.producer = FakeProducer()
        self.pipeline: Pipeline = offline_pipeline(Settings(), election(), self.producer)
        self.offsets: dict[int, int] = {}

    async def route(self, *reports: tuple[bytes, bytes]) -> list[Any]:
        records = [
            as_events([(0, key, value)], "bureau-results", {0: n})[0].message
            for n, (key, value) in enumerate(reports)
        ]
        await self.pipeline.on_results(records)
        return as_events(self.producer.take("contributions"), "contributions", self.offsets)

    async def tally(self, contributions: list[Any]) -> None:
        await self.pipeline.on_contributions(contributions)
        self.producer.take("nation")

    def leaders(self) -> list[tuple[str, str, Any]]:
        """(level, area, leader) of every leader_changed event so far, in order, and of every
        bureau's report (a bureau's one event per report carries its leader)."""
        events = [orjson.loads(value) for _, _, value in self.producer.take(Settings().updates_topic)]
        kinds = {"leader_changed", "reported", "corrected"}
        return [(e["level"], e["area"], e["leader"]) for e in events if e["kind"] in kinds]

    def stored(self, key: bytes) -> dict[str, Any]:
        return orjson.loads(self.pipeline.areas.data[key])


def test_held_states_are_the_stored_ones() -> None:
    async def scenario() -> None:
        night = Night()
        await night.tally(await night.route(report("42218-0001", 1, 60, 40), report("75056-0001", 1, 10, 90)))
        await night.tally(await night.route(report("42218-0002", 1, 10, 90), report("42001-0001", 1, 50, 49)))
        await night.tally(await night.route(report("42218-0001", 2, 20, 80)))  # a correction
        held = night.pipeline.held
        assert {key.decode() for key in held} == {
            f"{ELECTION}|commune|42218",
            f"{ELECTION}|commune|42001",
            f"{ELECTION}|commune|75056",
        }
        for key, state in held.items():
            assert state.to_json() == night.stored(key)
        commune = held[f"{ELECTION}|commune|42218".encode()]
        assert (commune.total.votes, commune.total.bureaux) == ({"A": 30, "B": 170}, 2)

    asyncio.run(scenario())


def test_a_chunk_kafka_refuses_is_tried_again_from_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its sending fails after it changed its states in memory: the agent must neither crash
    (Faust would acknowledge the chunk's messages, never tallied) nor keep those states. Tried
    again from the store, it announces everything. A department kept in memory across the
    failure had already recorded the new leader as announced, and stayed silent."""
    monkeypatch.setattr(outages, "OUTAGE_RETRY_DELAY", 0.01)

    async def scenario() -> None:
        night = Night()
        await night.tally(await night.route(report("42218-0001", 1, 60, 40)))
        assert ("department", "42", "A") in night.leaders()
        correction = await night.route(report("42218-0001", 2, 10, 90))
        night.producer.fail_next = KafkaConnectionError()
        await night.tally(correction)
        assert night.leaders() == [
            ("bureau", "42218-0001", "B"),
            ("commune", "42218", "B"),
            ("department", "42", "B"),
        ]
        commune = night.stored(f"{ELECTION}|commune|42218".encode())
        assert commune["t"][5] == {"A": 10, "B": 90}

    asyncio.run(scenario())


def test_changelog_records_kafka_refuses_are_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused after the store took the chunk's states, only the records are sent again: the
    chunk tried again whole would find nothing new in the store, and the changelog (what a new
    owner or a rebuilt Redis reads) would never get them."""
    monkeypatch.setattr(outages, "OUTAGE_RETRY_DELAY", 0.01)

    async def scenario() -> None:
        night = Night()
        night.producer.fail_topic, night.producer.fail_next = "areas-changelog", KafkaConnectionError()
        await night.tally(await night.route(report("42218-0001", 1, 60, 40)))
        records = {key: value for _, key, value in night.producer.take("areas-changelog")}
        for key in (f"{ELECTION}|commune|42218", f"{ELECTION}|department|42"):
            assert records[key.encode()] == night.pipeline.areas.data[key.encode()], key
        assert ("department", "42", "A") in night.leaders()

    asyncio.run(scenario())


def test_reports_kafka_refuses_are_routed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outages, "OUTAGE_RETRY_DELAY", 0.01)

    async def scenario() -> None:
        night = Night()
        night.producer.fail_next = KafkaConnectionError()
        contributions = await night.route(report("42218-0001", 1, 60, 40), report("75056-0001", 1, 1, 2))
        routed = sorted(row[0] for event in contributions for row in orjson.loads(event.message.value)["c"])
        assert routed == ["42218-0001", "75056-0001"]

    asyncio.run(scenario())


def test_states_dropped_while_a_chunk_runs_are_not_held_by_it() -> None:
    """A rebalance during a chunk (here: while its standings are written) drops the held states;
    the chunk, which loaded its own before, must not put them back: the partitions may be
    another worker's by then, and when they come back their state is the store's."""

    async def scenario() -> None:
        night = Night()
        contributions = await night.route(report("42218-0001", 1, 60, 40))
        mset = night.pipeline.redis.mset

        async def rebalancing_mset(values: dict[str, bytes]) -> None:
            night.pipeline.forget_states()
            await mset(values)

        night.pipeline.redis.mset = rebalancing_mset  # type: ignore[method-assign]
        await night.tally(contributions)
        assert night.pipeline.held == {}
        night.pipeline.redis.mset = mset  # type: ignore[method-assign]
        await night.tally(await night.route(report("42001-0001", 1, 5, 4)))
        assert set(night.pipeline.held) == {f"{ELECTION}|commune|42001".encode()}

    asyncio.run(scenario())
