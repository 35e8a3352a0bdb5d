"""The whole pipeline on the real broker and Redis: versions, rejections and change events.

Expected totals are computed here, by plain sums over the latest ``seq`` of each bureau, at every
level: bureau, commune, circonscription (three of the four bureaux have one, commune 42218 is
split between two), department, region (Loire in 84, Paris in 11) and nation.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream.adapters.kafka.topics import contributions_topic
from stream.domain.messages import Election

from .harness import Stack
from .traffic import (
    AREA_KINDS,
    areas_of,
    as_of_problems,
    bureau_story_problems,
    bureaux_total,
    decision_problems,
    enumerable_areas,
    event_figure_problems,
    event_raw,
    fresh_versions,
    members_of,
    per_area,
    reachable,
    read_records,
    registered_total,
    version_problems,
)

CANDIDATES = ["A", "B", "C"]
ROLL = [
    # bureau, commune, commune name, department, department name, registered
    ("42218-0001", "42218", "Saint-Étienne", "42", "Loire", 100),
    ("42218-0002", "42218", "Saint-Étienne", "42", "Loire", 120),
    ("42001-0001", "42001", "Andrézieux", "42", "Loire", 80),
    ("75056-0001", "75056", "Paris", "75", "Paris", 90),
]
#: bureau -> circonscription (Paris's bureau has none: a roll may give none)
CIRCONSCRIPTIONS = {"42218-0001": "42-01", "42218-0002": "42-02", "42001-0001": "42-01"}


def mini_election() -> Election:
    return Election.model_validate(
        {
            "election": f"mini-{uuid.uuid4().hex[:6]}",
            "name": "Mini",
            "candidates": [{"id": c, "name": c.lower()} for c in CANDIDATES],
            "bureaux": [
                dict(
                    bureau=b,
                    commune=c,
                    commune_name=cn,
                    department=d,
                    department_name=dn,
                    registered=r,
                    circonscription=CIRCONSCRIPTIONS.get(b),
                )
                for b, c, cn, d, dn, r in ROLL
            ],
        }
    )


def result(
    election: str,
    bureau: str,
    seq: int,
    votes: dict[str, int],
    blank: int = 0,
    invalid: int = 0,
    reported_at: str | None = None,
) -> dict[str, Any]:
    report = {
        "election": election,
        "bureau": bureau,
        "seq": seq,
        "voters": blank + invalid + sum(votes.values()),
        "blank": blank,
        "invalid": invalid,
        "votes": votes,
    }
    if reported_at is not None:
        report["reported_at"] = reported_at
    return report


def expected_by_area(
    election: Election, results: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Independent truth: latest seq per bureau (first one wins on equal seq), summed per area."""
    latest: dict[str, dict[str, Any]] = {}
    for r in results:
        if r["bureau"] not in latest or r["seq"] > latest[r["bureau"]]["seq"]:
            latest[r["bureau"]] = r
    totals: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {
            "voters": 0,
            "blank": 0,
            "invalid": 0,
            "registered": 0,
            "bureaux": 0,
            "votes": defaultdict(int),
        }
    )
    for r in latest.values():
        registered = election.roll[r["bureau"]].registered
        for area in areas_of(election, r["bureau"]):  # its circonscription and region too
            total = totals[area]
            total["voters"] += r["voters"]
            total["blank"] += r["blank"]
            total["invalid"] += r["invalid"]
            total["registered"] += registered
            total["bureaux"] += 1
            for c, v in r["votes"].items():
                total["votes"][c] += v
    return totals


def test_versions_duplicates_corrections_and_rejections(stack: Any) -> None:
    s: Stack = stack("versions")
    election = mini_election()
    e = election.election
    s.register(election)
    at = "2017-04-23T20:{:02d}:00+02:00".format  # as_of: the latest reported_at counted, in UTC
    valid = [
        result(e, "42218-0001", 1, {"A": 40, "B": 10}, blank=1, invalid=1, reported_at=at(1)),
        result(e, "42218-0001", 1, {"A": 40, "B": 10}, blank=1, invalid=1, reported_at=at(1)),  # duplicate
        result(e, "42218-0002", 2, {"A": 10, "B": 30}, reported_at=at(3)),
        result(e, "42218-0002", 1, {"A": 50}, reported_at=at(4)),  # stale: lower seq arrives later
        result(e, "42001-0001", 1, {"A": 5, "B": 5}),  # a tie; no reported_at
        result(e, "75056-0001", 1, {"C": 70}, reported_at=at(6)),
        result(e, "42218-0001", 3, {"A": 0, "B": 0}, reported_at=at(7)),  # correction back to zero
        result(e, "42218-0001", 2, {"A": 99}, reported_at=at(8)),  # stale again
    ]
    bad = [
        (
            b"42218-0002",
            orjson.dumps({**result(e, "42218-0002", 5, {"A": 10}), "voters": 11}),
            "blank + invalid + votes = 10, voters = 11",
        ),
        (b"42218-0002", orjson.dumps(result(e, "42218-0002", 6, {"Z": 1})), "unknown candidate Z"),
        (b"99999-0001", orjson.dumps(result(e, "99999-0001", 1, {"A": 1})), "not in the roll"),
        (
            b"42218-0002",
            orjson.dumps({**result(e, "42218-0002", 7, {"A": 1}), "registered": 121}),
            "registered = 121, the roll says 120",
        ),
        (b"42218-0002", orjson.dumps(result(e, "42218-0002", 0, {"A": 1})), "field 'seq'"),
        (b"42218-0002", b'{"election": "' + e.encode() + b'", "bureau": ', "not valid JSON"),
        (
            b"42001-0001",
            orjson.dumps(result(e, "42218-0002", 8, {"A": 1})),
            "message key '42001-0001' must be the bureau id",
        ),
        (b"42218-0002", orjson.dumps(result("nope", "42218-0002", 9, {"A": 1})), "unknown election 'nope'"),
        (
            b"42218-0002",
            orjson.dumps(result(e, "42218-0002", 10, {"A": 121})),
            "voters = 121 exceeds the roll's registered = 120",
        ),
        (b"42218-0002", b"\xff\xfe not utf-8", "not valid UTF-8"),
        (
            b"42218-0002",
            orjson.dumps({**result(e, "42218-0002", 11, {"A": 1}), "voters": "1"}),
            "field 'voters'",
        ),
        (
            b"42218-0002",
            orjson.dumps({**result(e, "42218-0002", 12, {"A": -1}), "voters": -1}),
            "greater than or equal to 0",
        ),
        (b"42218-0002", b"x" * 70_000, "exceeds the limit"),
    ]
    s.start_worker()
    s.publish(valid, raw=[(key, payload) for key, payload, _ in bad])

    truth = expected_by_area(election, valid)

    def settled() -> bool:
        for (level, area), total in truth.items():
            got = s.standings(e, level, area)
            if got is None or got.voters != total["voters"] or got.bureaux_reported != total["bureaux"]:
                return False
        return True

    s.wait_until(settled, 90, "the totals of every area")
    for (level, area), total in truth.items():
        got = s.standings(e, level, area)
        assert got is not None
        assert (got.registered, got.voters, got.blank, got.invalid) == (
            total["registered"],
            total["voters"],
            total["blank"],
            total["invalid"],
        ), (level, area)
        assert got.votes == {c: total["votes"].get(c, 0) for c in CANDIDATES}, (level, area)
        assert got.bureaux_total == bureaux_total(election)[(level, area)], (level, area)
    assert {level for level, _ in truth} == {
        "bureau",
        "commune",
        "circonscription",
        "department",
        "region",
        "nation",
    }
    assert s.standings(e, "commune", "42001").tied == ["A", "B"]
    assert s.standings(e, "commune", "42218").leader == "B"  # 42218-0001 corrected to zero
    circonscription = s.standings(e, "circonscription", "42-01")  # 42218-0001 (zero) and 42001-0001
    assert circonscription is not None and (circonscription.tied, circonscription.decided) == (
        ["A", "B"],
        False,
    )

    rejected = s.read_topic(s.settings.rejected_topic)
    assert len(rejected) == len(bad), [r["reason"] for _, r in rejected]
    reasons = sorted(r["reason"] for _, r in rejected)
    for _, _payload, expected_reason in bad:
        assert any(expected_reason in reason for reason in reasons), (expected_reason, reasons)
    for _key, rejection in rejected:
        assert rejection["topic"] == s.settings.results_topic and rejection["offset"] is not None
    payloads = {r["payload"] for _, r in rejected}
    assert '{"election": "' + e + '", "bureau": ' in payloads  # the original payload travels with its reason

    events = [v for _, v in s.read_topic(s.settings.updates_topic) if v["election"] == e]
    payloads = {orjson.dumps(r) for r in valid}  # Publisher.result sends orjson.dumps(result)
    per_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in read_records(s, s.settings.results_topic):
        if record.value in payloads:
            per_partition[record.partition].append(orjson.loads(record.value))
    assert sum(map(len, per_partition.values())) == len(valid)
    check_event_story(events, s, election, valid, per_partition)
    kinds = {(ev["level"], ev["area"], ev["kind"]) for ev in events}
    for area in (
        ("nation", "FR"),
        ("region", "84"),
        ("region", "11"),
        ("department", "42"),
        ("circonscription", "42-02"),
        ("commune", "42218"),
        ("commune", "75056"),
    ):
        for kind in ("leader_changed", "turnout_changed", "complete", "decided"):
            assert (*area, kind) in kinds, (area, kind)
    for area in (("circonscription", "42-01"), ("commune", "42001")):  # tied at the end: no call stands
        for kind in ("leader_changed", "turnout_changed", "complete"):
            assert (*area, kind) in kinds, (area, kind)
    by_bureau = {
        bureau: [ev["kind"] for ev in events if ev["level"] == "bureau" and ev["area"] == bureau]
        for bureau, *_ in ROLL
    }
    assert by_bureau == {  # one per counted report: none for the duplicate and the stale ones
        "42218-0001": ["reported", "corrected"],
        "42218-0002": ["reported"],
        "42001-0001": ["reported"],
        "75056-0001": ["reported"],
    }
    tie = [ev for ev in events if ev["area"] == "42001" and ev["kind"] == "leader_changed"]
    assert tie[-1]["tied"] == ["A", "B"] and tie[-1]["leader"] is None


def test_areas_touched_by_many_small_chunks(stack: Any) -> None:
    """Batches of three reports: every commune and department is updated again and again across
    chunks, with corrections, and must still add up. (Keeping area states as objects between
    chunks once made a department subtract a commune's new total instead of its old one.)"""
    s: Stack = stack("chunks", batch_size=3)
    election = mini_election()
    e = election.election
    s.register(election)
    rng = random.Random(7)
    reports = []
    for seq in range(1, 13):
        for bureau in [b[0] for b in ROLL]:
            reports.append(result(e, bureau, seq, {c: rng.randint(0, 20) for c in CANDIDATES}))
    s.start_worker()
    s.publish(reports)
    truth = expected_by_area(election, reports)

    def settled() -> bool:
        return all(
            (got := s.standings(e, level, area)) is not None
            and got.votes == {c: total["votes"].get(c, 0) for c in CANDIDATES}
            and got.voters == total["voters"]
            for (level, area), total in truth.items()
        )

    s.wait_until(settled, 90, "every area equal to the sums of the last reports")


def check_event_story(
    events: list[dict[str, Any]],
    s: Stack,
    election: Election,
    results: list[dict[str, Any]],
    per_partition: dict[int, list[dict[str, Any]]],
) -> None:
    """Per area, the story its events tell (``results``: the valid reports, in publishing order;
    ``per_partition``: the same as ``bureau-results`` holds them). The checks of
    ``test_messy_nights.check_story`` and ``check_figures_were_true``, on a small night:

    * every event is a valid ``UpdateEvent`` whose figures are those of its own counts (shares,
      turnout, leader, tie, margin, decided against the registered of the unreported bureaux,
      computed here from the roll), bureaux_total the roll's;
    * a bureau's events: one per counted report, ``reported`` then ``corrected``, each with that
      report's figures (``as_of`` its ``reported_at``), the last one equal to the final standings;
    * above it, only leader_changed, turnout_changed, complete, decided and undecided: each
      previous_leader is the leader of the leader_changed before, and the last one the final
      standings' (leader, tied); complete at most once, iff every bureau reported; the last
      turnout within a step of the final one; calls as ``traffic.decision_problems`` says;
      version and as_of never going back (as_of the latest reported_at counted at the end);
      counts that were true at some point for every area whose states can be enumerated.
    """
    e = election.election
    candidates = election.candidate_list
    sizes = bureaux_total(election)
    rolls = registered_total(election)
    members = members_of(election)
    enumerable = enumerable_areas(election)
    fresh = fresh_versions(results)
    versions = {(r["bureau"], r["seq"]): r for r in results}
    step = s.settings.turnout_step
    problems: list[str] = []
    for (level, area), story in per_area(events).items():
        where = f"{level} {area}"
        final = s.standings(e, level, area)
        assert final is not None, where
        for event in story:
            problems += event_figure_problems(where, event, election, rolls)
            if event["bureaux_total"] != sizes[(level, area)]:
                problems.append(f"{where}: bureaux_total {event['bureaux_total']}")
        if level == "bureau":
            problems += bureau_story_problems(election, area, story, fresh[area], versions, final)
            continue
        problems += [f"{where}: a {ev['kind']} event" for ev in story if ev["kind"] not in AREA_KINDS]
        leader: Any = None
        leaders = [ev for ev in story if ev["kind"] == "leader_changed"]
        for ev in leaders:
            if ev["previous_leader"] != leader:
                problems.append(f"{where}: previous_leader {ev['previous_leader']!r} after {leader!r}")
            leader = ev["leader"]
        last = (leaders[-1]["leader"], leaders[-1]["tied"]) if leaders else (None, None)  # nobody ever led
        if last != (final.leader, final.tied):
            problems.append(f"{where}: last leader_changed {last}, standings {(final.leader, final.tied)}")
        completes = [ev for ev in story if ev["kind"] == "complete"]
        if len(completes) > 1 or bool(completes) != (final.bureaux_reported == final.bureaux_total):
            problems.append(
                f"{where}: {len(completes)} complete at {final.bureaux_reported}/{final.bureaux_total}"
            )
        if any(ev["bureaux_reported"] != ev["bureaux_total"] for ev in completes):
            problems.append(f"{where}: complete before every bureau reported")
        turnouts = [ev for ev in story if ev["kind"] == "turnout_changed"]
        if final.turnout is not None and (
            not turnouts or abs(turnouts[-1]["turnout"] - final.turnout) >= step + 0.01
        ):
            problems.append(f"{where}: last turnout_changed {turnouts[-1:]}, final turnout {final.turnout}")
        problems += decision_problems(where, story, final)
        problems += version_problems(where, story, final)
        counted = [versions[(b, seq)].get("reported_at") for b in members[(level, area)] for seq in fresh[b]]
        problems += as_of_problems(where, story, final, counted)
        if (level, area) in enumerable:
            states, _ = reachable(election, enumerable[(level, area)], per_partition)
            for event in story:
                if event_raw(event, candidates) not in states:
                    problems.append(f"{where}: {event['kind']} {event_raw(event, candidates)} was never true")
    assert not problems, f"{len(problems)} problems in the events:\n" + "\n".join(problems)


def publish_contributions(s: Stack, messages: list[dict[str, Any]]) -> None:
    """Contributions as routing writes them (``Pipeline.on_results``), straight into the internal
    topic: both workers of the test below must tally the very same log."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=s.settings.kafka_bootstrap)
        await producer.start()
        try:
            for message in messages:
                key = f"{message['e']}|department|{message['a']}".encode()
                await producer.send_and_wait(
                    contributions_topic(s.settings), key=key, value=orjson.dumps(message)
                )
        finally:
            await producer.stop()

    asyncio.run(run())


def test_events_do_not_depend_on_how_contributions_are_chunked(stack: Any) -> None:
    """What makes events safe under crashes: a worker that resumes from an earlier state re-reads
    the same contributions, in other chunks, and must announce the same changes again. One worker
    tallies this log one message per chunk, another one all at once (it starts after the log is
    written); their bureau, commune and department events must be the same, in the same order.
    (Changes were once detected per chunk: a lead lost and regained inside a chunk went unannounced,
    and after a kill -9 the last leader_changed of two communes named a leader they no longer had.)
    """
    registered = {b[0]: b[5] for b in ROLL}
    department_of = {b[0]: b[3] for b in ROLL}
    stories: list[dict[tuple[str, str], list[dict[str, Any]]]] = []
    for batch_size in (1, 2000):
        s: Stack = stack(f"chunks{batch_size}", batch_size=batch_size)
        election = mini_election()  # one each: the standings of both live in the same Redis
        e = election.election
        reports = [  # commune 42218 and department 42: A leads, then B, then A again
            [result(e, "42218-0001", 1, {"A": 50, "B": 10})],
            [result(e, "42218-0002", 1, {"A": 5, "B": 80})],  # 42218: A 55, B 90
            [
                result(e, "42218-0001", 2, {"A": 90}),
                result(e, "42218-0001", 1, {"A": 50, "B": 10}),
            ],  # A 95, B 80; stale
            [result(e, "42001-0001", 1, {"B": 70})],  # 42: A 95, B 150
            [
                result(e, "42218-0002", 2, {"A": 5, "B": 5}),
                result(e, "42218-0002", 2, {"A": 5, "B": 5}),
            ],  # 42: A 100, B 75
            [result(e, "75056-0001", 1, {"C": 60})],
        ]
        messages = [
            {
                "e": e,
                "l": "department",
                "a": department_of[batch[0]["bureau"]],
                "c": [
                    [
                        r["bureau"],
                        r["seq"],
                        [1, registered[r["bureau"]], r["voters"], r["blank"], r["invalid"], r["votes"]],
                    ]
                    for r in batch
                ],
            }
            for batch in reports
        ]
        truth = expected_by_area(election, [r for batch in reports for r in batch])
        s.register(election)
        publish_contributions(s, messages)
        s.start_worker()
        s.wait_until(
            lambda s=s, e=e, truth=truth: all(
                (got := s.standings(e, level, area)) is not None and got.voters == total["voters"]
                for (level, area), total in truth.items()
                if level not in ("region", "nation")
            ),
            90,
            "the totals of every bureau, commune, circonscription and department",
        )
        story: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for _, event in s.read_topic(s.settings.updates_topic):
            # region and nation: their input (the nation topic) is not the same log; version is an
            # offset of the contributions topic: the election id (in the key) puts a department's
            # messages in another partition, at other offsets, in each run
            if event["level"] not in ("region", "nation"):
                event = {k: v for k, v in event.items() if k not in ("at", "election", "version")}
                story[(event["level"], event["area"])].append(event)
        stories.append(story)
        s.stop()
    one_by_one, all_at_once = stories
    for area, expected in (
        (("commune", "42218"), ["A", "B", "A"]),
        (("department", "42"), ["A", "B", "A", "B", "A"]),
    ):
        leaders = [ev["leader"] for ev in one_by_one[area] if ev["kind"] == "leader_changed"]
        assert leaders == expected, (area, leaders)
    assert set(one_by_one) == set(all_at_once)
    for area, events in one_by_one.items():
        assert all_at_once[area] == events, area


class _RedisRunningLaterCommandsFirst:
    """MSET as Redis may run it across connections: the first one sent finishes last."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.down = False
        self.calls = 0

    async def mset(self, mapping: dict[str, bytes]) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(0.05)  # a big MSET still being read by Redis
        self.data.update(mapping)


def test_standings_waiting_for_redis_never_overwrite_newer_ones() -> None:
    """After an outage the waiting standings go in one big MSET; a newer standing written while
    it is on its way must stay (a department once kept an older standing for good)."""
    from stream.runtime.pipeline import Pipeline
    from stream.settings import Settings

    async def scenario() -> None:
        redis_ = _RedisRunningLaterCommandsFirst()
        pipeline = Pipeline(Settings(), None, None, None, "", "", redis_, "marker")  # type: ignore[arg-type]
        redis_.down = True
        await pipeline.write_views({"department 42": b"old"})  # waits in memory
        redis_.down = False
        back = asyncio.ensure_future(pipeline.write_views({}))  # the Redis check sends what waited
        await asyncio.sleep(0)
        await pipeline.write_views({"department 42": b"new"})  # an agent, meanwhile
        await back
        assert redis_.data == {"department 42": b"new"}
        assert pipeline.pending_views == {}

    asyncio.run(scenario())
