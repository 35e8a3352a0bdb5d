"""The v2 levels through the engine's own steps (routing, tally, nation), in-process on the
stand-ins of ``stream.testing``: circonscriptions and regions, a comparison with a reference
election, turnout reports before the count, and bureau events one per report.

Expected figures are written out from the test's reports, by hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from stream.adapters.redis.keys import results_key
from stream.domain.contributions import reports_of
from stream.domain.messages import BureauResult, Standings, TurnoutReport, UpdateEvent
from stream.domain.roll import ElectionIndex
from stream.runtime.pipeline import Pipeline
from stream.settings import Settings
from stream.testing import FakeProducer, as_events, offline_pipeline

#: bureau, commune, department, circonscription, registered
ROLL = [
    ("42218-0001", "42218", "42", "42-01", 1000),
    ("42218-0002", "42218", "42", "42-02", 800),  # Saint-Étienne is split between two
    ("42001-0001", "42001", "42", "42-01", 500),
    ("75056-0001", "75056", "75", "75-01", 900),
    ("ZZ001-0001", "ZZ001", "ZZ", "ZZ-01", 300),  # the French abroad: in no region
]


def definition(election: str, **extra: Any) -> dict[str, Any]:
    return {
        "election": election,
        "name": election,
        "candidates": [{"id": "A", "name": "a"}, {"id": "B", "name": "b"}],
        "bureaux": [
            dict(bureau=b, commune=c, department=d, circonscription=circ, registered=r)
            for b, c, d, circ, r in ROLL
        ],
        **extra,
    }


class Night:
    """Several elections in one pipeline, as one worker holds them; one chunk per call."""

    def __init__(self, *definitions: dict[str, Any]) -> None:
        indexes = {d["election"]: ElectionIndex.from_json(orjson.dumps(d)) for d in definitions}
        self.loop = asyncio.new_event_loop()  # the pipeline's clients want a running loop

        async def build() -> tuple[FakeProducer, Pipeline]:
            producer = FakeProducer()
            return producer, offline_pipeline(Settings(), next(iter(indexes.values())), producer)

        self.producer, self.pipeline = self.loop.run_until_complete(build())
        self.pipeline.router.elections.get = indexes.get  # type: ignore[method-assign]
        self.pipeline.tallier.elections.get = indexes.get  # type: ignore[method-assign]
        self.offsets: dict[str, dict[int, int]] = {"c": {}, "n": {}, "in": {}}
        self.events: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.contributions: list[dict[str, Any]] = []

    def run(self, topic: str, *reports: dict[str, Any]) -> None:
        async def go() -> None:
            payloads = [(0, (r.get("bureau") or r["commune"]).encode(), orjson.dumps(r)) for r in reports]
            records = [event.message for event in as_events(payloads, topic, self.offsets["in"])]
            await self.pipeline.on_results(records)
            contributions = as_events(self.producer.take("contributions"), "contributions", self.offsets["c"])
            self.contributions += [orjson.loads(event.message.value) for event in contributions]
            await self.pipeline.on_contributions(contributions)
            nation = as_events(self.producer.take("nation"), "nation", self.offsets["n"])
            await self.pipeline.on_contributions(nation)
            settings = Settings()
            self.events += [orjson.loads(v) for _, _, v in self.producer.take(settings.updates_topic)]
            self.rejected += [orjson.loads(v) for _, _, v in self.producer.take(settings.rejected_topic)]

        self.loop.run_until_complete(go())

    def one_chunk_forgetting_states_midway(self, first: dict[str, Any], second: dict[str, Any]) -> None:
        """Two reports tallied in one chunk, the tally's states forgotten between its two messages
        (as a rebalance does while a chunk waits), then the nation's messages."""
        tallier = self.pipeline.tallier
        lookups = 0
        get = tallier.elections.get

        def get_and_forget_once(election_id: str) -> Any:
            nonlocal lookups
            lookups += 1
            if lookups == 2:  # between the chunk's two messages
                tallier.forget_states()
            return get(election_id)

        async def one_chunk_of_two_messages() -> None:
            contributions = []
            for report in (first, second):
                key = report["bureau"].encode()
                records = [
                    e.message
                    for e in as_events([(0, key, orjson.dumps(report))], "bureau-results", self.offsets["in"])
                ]
                await self.pipeline.on_results(records)
                contributions += as_events(
                    self.producer.take("contributions"), "contributions", self.offsets["c"]
                )
            tallier.elections.get = get_and_forget_once  # type: ignore[method-assign]
            await self.pipeline.on_contributions(contributions)
            tallier.elections.get = get  # type: ignore[method-assign]
            await self.pipeline.on_contributions(
                as_events(self.producer.take("nation"), "nation", self.offsets["n"])
            )

        self.loop.run_until_complete(one_chunk_of_two_messages())

    def standings(self, election: str, level: str, area: str) -> Standings:
        redis: Any = self.pipeline.standings.redis
        raw = redis.data.get(results_key(election, level, area))
        assert raw is not None, (election, level, area)
        return Standings.model_validate_json(raw)


def result(
    election: str, bureau: str, seq: int, a: int, b: int, at: str = "2017-05-07T20:00:00+02:00"
) -> dict[str, Any]:
    return {
        "election": election,
        "bureau": bureau,
        "seq": seq,
        "reported_at": at,
        "voters": a + b,
        "blank": 0,
        "invalid": 0,
        "votes": {"A": a, "B": b},
    }


def test_every_bureau_counts_once_at_each_of_six_levels() -> None:
    night = Night(definition("e"))
    night.run("bureau-results", *(result("e", b, 1, 10 * i, 5) for i, (b, *_) in enumerate(ROLL, 1)))
    votes_a = {b: 10 * i for i, (b, *_) in enumerate(ROLL, 1)}
    expected = {
        ("commune", "42218"): ["42218-0001", "42218-0002"],
        ("circonscription", "42-01"): ["42218-0001", "42001-0001"],
        ("circonscription", "42-02"): ["42218-0002"],
        ("department", "42"): ["42218-0001", "42218-0002", "42001-0001"],
        ("region", "84"): ["42218-0001", "42218-0002", "42001-0001"],
        ("region", "11"): ["75056-0001"],
        ("nation", "FR"): [b for b, *_ in ROLL],
    }
    registered = {b: r for b, *_, r in ROLL}
    for (level, area), bureaux in expected.items():
        got = night.standings("e", level, area)
        assert got.votes == {"A": sum(votes_a[b] for b in bureaux), "B": 5 * len(bureaux)}, (level, area)
        assert got.registered == sum(registered[b] for b in bureaux)
        assert (got.bureaux_reported, got.bureaux_total) == (len(bureaux), len(bureaux))
        assert got.as_of is not None and got.as_of.isoformat() == "2017-05-07T18:00:00+00:00"
    # ZZ is in the nation and in no region
    assert {e["area"] for e in night.events if e["level"] == "region"} == {"84", "11"}
    bureau_events = [e for e in night.events if e["level"] == "bureau"]
    assert sorted(e["area"] for e in bureau_events) == sorted(b for b, *_ in ROLL)
    assert {e["kind"] for e in bureau_events} == {"reported"}
    for event in night.events:
        UpdateEvent.model_validate(event)


def test_a_correction_is_one_corrected_event_and_moves_every_level() -> None:
    night = Night(definition("e"))
    night.run("bureau-results", result("e", "42218-0002", 1, 100, 50))
    night.run("bureau-results", result("e", "42218-0002", 1, 100, 50))  # a duplicate: nothing
    night.run("bureau-results", result("e", "42218-0002", 2, 10, 140))
    mine = [(e["kind"], e["votes"]) for e in night.events if e["level"] == "bureau"]
    assert mine == [("reported", {"A": 100, "B": 50}), ("corrected", {"A": 10, "B": 140})]
    for level, area in (
        ("circonscription", "42-02"),
        ("department", "42"),
        ("region", "84"),
        ("nation", "FR"),
    ):
        got = night.standings("e", level, area)
        assert got.votes == {"A": 10, "B": 140} and got.leader == "B", (level, area)


def test_decided_when_the_registered_still_out_cannot_change_the_leader() -> None:
    night = Night(definition("e"))
    # 42-01: 1000 + 500 registered; with 42218-0001 in by a margin of 600 > 500 still out
    night.run("bureau-results", result("e", "42218-0001", 1, 700, 100))
    circ = night.standings("e", "circonscription", "42-01")
    assert circ.decided and circ.leader == "A"
    department = night.standings("e", "department", "42")
    assert not department.decided  # 1300 registered still out in the Loire, margin 600
    decided = [(e["level"], e["area"]) for e in night.events if e["kind"] == "decided"]
    assert ("circonscription", "42-01") in decided and ("department", "42") not in decided


def test_comparison_with_the_reference_over_the_bureaux_in_both() -> None:
    night = Night(definition("t1"), definition("t2", compare_to="t1", round=2))
    night.run(
        "bureau-results", result("t1", "42218-0001", 1, 300, 300), result("t1", "42001-0001", 1, 100, 100)
    )
    night.run(
        "bureau-results", result("t2", "42218-0001", 1, 450, 300), result("t2", "42218-0002", 1, 50, 50)
    )
    loire = night.standings("t2", "department", "42")
    assert loire.reference is not None and loire.change is not None
    # in both: only 42218-0001 (42001-0001 not yet in round 2, 42218-0002 not in round 1)
    assert (loire.reference.bureaux, loire.reference.voters, loire.reference.votes) == (
        1,
        600,
        {"A": 300, "B": 300},
    )
    assert loire.change.voters_pct == 25.0  # 750 against 600
    assert loire.change.shares_points == {"A": 10.0, "B": -10.0}  # 60 % against 50 %
    assert loire.change.turnout_points == 15.0  # 75 % against 60 % of 1000
    assert loire.voters == 850  # the standings count every bureau of round 2
    assert night.standings("t1", "department", "42").reference is None


def test_turnout_reports_before_the_count() -> None:
    night = Night(definition("e"))
    night.run(
        "turnout-reports",
        {"election": "e", "bureau": "42218-0001", "at_hour": "12:00", "voters": 250, "seq": 1},
        {"election": "e", "commune": "42001", "at_hour": "12:00", "voters": 100, "seq": 1},
        {"election": "e", "bureau": "42218-0001", "at_hour": "17:00", "voters": 600, "seq": 1},
    )
    assert night.rejected == []
    loire = night.standings("e", "department", "42")
    assert loire.turnout_at == {"12:00": 23.33, "17:00": 60.0}  # 350 of 1500; 600 of 1000
    assert loire.bureaux_reported == 0 and loire.voters == 0  # no result yet
    assert night.standings("e", "circonscription", "42-01").turnout_at == {"12:00": 23.33, "17:00": 60.0}
    assert night.standings("e", "nation", "FR").turnout_at == {"12:00": 23.33, "17:00": 60.0}
    hours = sorted(
        e["hour"] for e in night.events if e["kind"] == "turnout_reported" and e["level"] == "department"
    )
    assert hours == ["12:00", "17:00"]
    night.run(
        "turnout-reports",
        {"election": "e", "bureau": "42218-0001", "at_hour": "12:00", "voters": 400, "seq": 2},
    )
    assert night.standings("e", "department", "42").turnout_at == {
        "12:00": 33.33,
        "17:00": 60.0,
    }  # 500 of 1500
    night.run("bureau-results", result("e", "42218-0001", 1, 700, 100))
    bureau = night.standings("e", "bureau", "42218-0001")
    assert bureau.turnout_at == {"12:00": 40.0, "17:00": 60.0} and bureau.voters == 800
    assert bureau.version == 1 + 2 + 1  # the seqs of its result and its two hours' latest reports


def test_bad_turnout_reports_are_dead_lettered_with_a_reason() -> None:
    night = Night(definition("e"))
    night.run(
        "turnout-reports",
        {"election": "e", "commune": "99999", "at_hour": "12:00", "voters": 1, "seq": 1},
        {"election": "e", "bureau": "42218-0001", "at_hour": "12:00", "voters": 1001, "seq": 1},
        {"election": "e", "bureau": "42218-0001", "at_hour": "13:00", "voters": 1, "seq": 1},
        {
            "election": "e",
            "bureau": "42218-0001",
            "commune": "42218",
            "at_hour": "12:00",
            "voters": 1,
            "seq": 1,
        },
    )
    reasons = [r["reason"] for r in night.rejected]
    assert len(reasons) == 4, reasons
    assert "commune 99999: not in the roll of election e" in reasons[0]
    assert "voters = 1001 at 12:00 exceeds the roll's registered = 1000" in reasons[1]
    assert "at_hour" in reasons[2]
    assert "exactly one" in reasons[3]


def test_a_failed_contribution_lists_its_reports_results_and_turnout_alike() -> None:
    """What the dead letters carry when a contribution meets a bug: reports to publish again."""
    night = Night(definition("e"))
    night.run("bureau-results", result("e", "42218-0001", 3, 7, 2))
    night.run(
        "turnout-reports", {"election": "e", "commune": "42001", "at_hour": "17:00", "voters": 9, "seq": 2}
    )
    rows = [row for contribution in night.contributions for row in contribution["c"]]
    message = {"e": "e", "l": "department", "a": "42", "c": rows}
    reports = dict(reports_of(message) or [])
    assert set(reports) == {"42218-0001", "42001"}
    BureauResult.model_validate(reports["42218-0001"])
    assert reports["42218-0001"]["votes"] == {"A": 7, "B": 2} and reports["42218-0001"]["seq"] == 3
    turnout = TurnoutReport.model_validate(reports["42001"])
    assert (turnout.commune, turnout.at_hour, turnout.voters, turnout.seq) == ("42001", "17:00", 9, 2)


def test_a_commune_reports_its_turnout_for_itself_or_through_its_bureaux_not_both() -> None:
    night = Night(definition("e"))
    night.run(
        "turnout-reports",
        {"election": "e", "bureau": "42218-0001", "at_hour": "12:00", "voters": 200, "seq": 1},
    )
    night.run(
        "turnout-reports", {"election": "e", "commune": "42218", "at_hour": "12:00", "voters": 300, "seq": 1}
    )
    night.run(
        "turnout-reports", {"election": "e", "commune": "42001", "at_hour": "12:00", "voters": 50, "seq": 1}
    )
    night.run(
        "turnout-reports",
        {"election": "e", "bureau": "42001-0001", "at_hour": "12:00", "voters": 60, "seq": 1},
    )
    reasons = [r["reason"] for r in night.rejected]
    assert reasons == [
        "commune 42218: its 12:00 turnout is already reported bureau by bureau",
        "bureau 42001-0001: commune 42001 already reports its 12:00 turnout as a whole",
    ]
    TurnoutReport.model_validate_json(night.rejected[0]["payload"])
    assert night.standings("e", "department", "42").turnout_at == {"12:00": 16.67}  # 250 of 1500, once each


def test_states_forgotten_in_the_middle_of_a_chunk_are_not_kept_short() -> None:
    """A rebalance (or another agent's failure) clears the derived states while a chunk waits;
    the chunk then rebuilds its department from the store, which lacks the chunk's own reports.
    Those rebuilt states must not outlive the chunk: the next one must count everything."""
    night = Night(definition("e"))
    night.one_chunk_forgetting_states_midway(
        result("e", "42218-0001", 1, 60, 40), result("e", "42218-0002", 1, 30, 70)
    )
    night.run("bureau-results", result("e", "42001-0001", 1, 5, 5))  # the next chunk
    assert night.standings("e", "department", "42").votes == {"A": 95, "B": 115}
    assert night.standings("e", "circonscription", "42-01").votes == {"A": 65, "B": 45}
    assert night.standings("e", "nation", "FR").votes == {"A": 95, "B": 115}


def test_events_of_an_embargoed_election_carry_its_publish_after() -> None:
    """The engine counts during the embargo; the topic is for trusted consumers, and says until when."""
    night = Night(definition("e", publish_after="2017-05-07T20:00:00+02:00"), definition("open"))
    night.run("bureau-results", result("e", "42218-0001", 1, 7, 3), result("open", "42218-0001", 1, 7, 3))
    embargoed = [e for e in night.events if e["election"] == "e"]
    assert embargoed and {e["publish_after"] for e in embargoed} == {"2017-05-07T20:00:00+02:00"}
    assert all("publish_after" not in e for e in night.events if e["election"] == "open")
    assert UpdateEvent.model_validate(embargoed[0]).publish_after is not None
    assert night.standings("e", "nation", "FR").votes == {"A": 7, "B": 3}  # counted all the same


def test_a_batch_kafka_refuses_for_good_is_dead_lettered_with_the_error_not_retried_forever() -> None:
    """MessageSizeTooLargeError (not retriable) on the contributions: the batch's reports go to the
    dead letters with the error, instead of the partition retrying it forever; a retriable error
    is still waited out and the reports counted."""
    from aiokafka.errors import MessageSizeTooLargeError, NotLeaderForPartitionError

    night = Night(definition("e"))
    night.producer.fail_next, night.producer.fail_topic = MessageSizeTooLargeError("too big"), "contributions"

    async def route(*reports: dict[str, Any]) -> None:
        payloads = [(0, r["bureau"].encode(), orjson.dumps(r)) for r in reports]
        records = [e.message for e in as_events(payloads, "bureau-results", night.offsets["in"])]
        await asyncio.wait_for(night.pipeline.on_results(records), 10)

    night.loop.run_until_complete(
        route(result("e", "42218-0001", 1, 10, 5), result("e", "42001-0001", 1, 1, 1))
    )
    rejected = [orjson.loads(v) for _, _, v in night.producer.take(Settings().rejected_topic)]
    assert sorted(orjson.loads(r["payload"])["bureau"] for r in rejected) == ["42001-0001", "42218-0001"]
    assert {r["reason"] for r in rejected} == {
        "not routed: Kafka refused it: MessageSizeTooLargeError: [Error 10] MessageSizeTooLargeError: too big"
    }
    night.producer.fail_next = NotLeaderForPartitionError()  # retriable: waited out
    night.run("bureau-results", result("e", "75056-0001", 1, 7, 3))
    assert night.standings("e", "nation", "FR").votes == {"A": 7, "B": 3}
