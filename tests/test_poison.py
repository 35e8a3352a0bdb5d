"""A message that meets a bug goes to the dead letters with the error; the rest of its batch counts.

An error raised out of an agent would lose the batch (Faust acknowledges the messages a crashed
agent held), and retrying it whole would fail forever. In-process, on the stand-ins of ``fakes``,
with a bug planted for one bureau; expected totals are sums of the reports' own counts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from stream.domain.aggregation import Tally
from stream.domain.messages import Rejection, parse_result
from stream.runtime import tally as tally_module
from stream.settings import Settings
from stream.testing import FakeEvent

from .test_held_states import ELECTION, Night, report

POISON = "42218-0002"
REPORTS = [("42218-0001", 60, 40), (POISON, 10, 90), ("42001-0001", 50, 49), ("75056-0001", 1, 2)]


def plant_bug(monkeypatch: pytest.MonkeyPatch, where: Any, name: str) -> None:
    """``where.name`` raises for the poison bureau's report (its first argument after self)."""
    original = getattr(where, name)

    def buggy(*args: Any, **kwargs: Any) -> Any:
        if any(POISON in str(arg) for arg in args[:4]):
            raise ZeroDivisionError("planted bug")
        return original(*args, **kwargs)

    monkeypatch.setattr(where, name, buggy)


def rejections(night: Night) -> list[Rejection]:
    return [
        Rejection.model_validate_json(value) for _, _, value in night.producer.take(Settings().rejected_topic)
    ]


def stored_votes(night: Night, level: str, area: str) -> dict[str, int]:
    return night.stored(f"{ELECTION}|{level}|{area}".encode())["t"][5]


def test_a_report_that_meets_a_bug_in_routing_is_dead_lettered_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    plant_bug(monkeypatch, tally_module.Tally, "of_result")

    async def scenario() -> None:
        night = Night()
        sent = [report(bureau, 1, a, b) for bureau, a, b in REPORTS]
        contributions = await night.route(*sent)
        routed = sorted(row[0] for event in contributions for row in orjson.loads(event.message.value)["c"])
        assert routed == sorted(bureau for bureau, _, _ in REPORTS if bureau != POISON)
        [rejected] = rejections(night)
        assert rejected.key == POISON and rejected.payload.encode() == dict(sent)[POISON.encode()]
        assert "internal error" in rejected.reason and "ZeroDivisionError: planted bug" in rejected.reason

    asyncio.run(scenario())


def test_a_contribution_that_meets_a_bug_is_dead_lettered_and_recounts_once_published_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All four reports in one chunk of three contributions (departments 42, 42, 75): the tally
    fails on the poison, then takes the messages one by one. The poison's contribution (both
    bureaux of department 42 routed together) goes to the dead letters as its reports, which,
    published again once the bug is gone, make the totals exact."""

    async def scenario() -> None:
        night = Night()
        first = await night.route(report("42218-0001", 1, 60, 40), report(POISON, 1, 10, 90))
        others = await night.route(*[report(bureau, 1, a, b) for bureau, a, b in REPORTS[2:]])
        with monkeypatch.context() as patch:
            plant_bug(patch, tally_module.Tallier, "_announce_bureau")
            await night.tally(first + others)  # one chunk: raises nothing
        dead = rejections(night)
        assert sorted(r.key for r in dead) == ["42218-0001", POISON]  # the poison's whole contribution
        assert all("not tallied" in r.reason and "ZeroDivisionError: planted bug" in r.reason for r in dead)
        assert stored_votes(night, "department", "42") == {"A": 50, "B": 49}  # 42001-0001 alone
        assert stored_votes(night, "department", "75") == {"A": 1, "B": 2}

        republished = [(r.key.encode(), r.payload.encode()) for r in dead]  # type: ignore[union-attr]
        for _, payload in republished:
            parse_result(payload)  # a valid BureauResult
        await night.tally(await night.route(*republished))
        expected = Tally()
        for bureau, a, b in REPORTS:
            if bureau.startswith("42"):
                expected.add(Tally(votes={"A": a, "B": b}))
        assert stored_votes(night, "department", "42") == expected.votes

    asyncio.run(scenario())


def test_a_message_that_is_no_contribution_is_dead_lettered_as_it_is() -> None:
    async def scenario() -> None:
        night = Night()
        good = await night.route(report("75056-0001", 1, 1, 2))
        garbage = FakeEvent("contributions", 5, 99, b"x", b"\x00not json")
        foreign = FakeEvent(
            "contributions", 5, 100, b"y", orjson.dumps({"e": ELECTION, "l": "department", "c": 3})
        )
        await night.tally([garbage, foreign] + good)
        dead = rejections(night)
        assert [(r.payload_bytes, r.offset) for r in dead] == [
            (len(garbage.message.value), 99),
            (len(foreign.message.value), 100),
        ]
        assert all(r.reason.startswith("contribution not tallied: an internal error") for r in dead)
        assert stored_votes(night, "department", "75") == {"A": 1, "B": 2}

    asyncio.run(scenario())
