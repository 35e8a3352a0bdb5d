"""Issue 4, item 2: generated nights of messy but valid traffic through a running worker.

What is injected: two generated elections (seeded; about 230 bureaux each, in 8 departments and
some 40 communes, one of the nights with 3 bureaux that never report), whose reports reach
``bureau-results`` with about 10 % duplicates (a version sent again, later), 10 % out-of-order
versions (a lower ``seq`` arriving after a higher one: a preliminary count that must never be
applied) and 5 % corrections (a higher ``seq`` replacing what was counted), interleaved across
the two nights. Then, once that has settled, three more corrections: one that changes a
commune's leader, one that changes a department's leader, one that takes a bureau back to zero
(each with a stale version and duplicates behind it).

Five of the departments have circonscriptions (a commune of each split between two), the
others none; Corse-du-Sud, the Loire and the Rhône, Paris, Bouches-du-Rhône and Gironde are in
regions (the Loire and the Rhône in the same one), Guadeloupe (971, not the ministry's ZA) and the
French abroad (ZZ) in none.

What is checked: after each phase, the standings of every bureau, commune, circonscription,
department, region and the nation equal the truth computed here (plain sums over the latest
``seq`` of each bureau), to the vote, with their shares and whether they are decided; areas
without a report have no standings and no events; and the update events tell a consistent story
(see ``check_story`` for exactly what is guaranteed and asserted) with figures that were true
(``check_figures_were_true``).
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from random import Random
from typing import Any

import orjson

from stream.domain.messages import Election

from .harness import Stack
from .traffic import (
    AREA_KINDS,
    Total,
    areas_of,
    as_of_problems,
    bureau_story_problems,
    bureaux_total,
    decision_problems,
    enumerable_areas,
    event_figure_problems,
    event_raw,
    figures,
    fresh_versions,
    latest_versions,
    make_election,
    members_of,
    mismatches,
    per_area,
    random_counts,
    reachable,
    read_records,
    registered_total,
    result,
    truth,
    version_problems,
)

CANDIDATES = ["HAMON", "VALLS", "MONTEBOURG", "PEILLON"]
DEPARTMENTS = [
    ("42", "Loire", 7, (1, 12)),
    ("69", "Rhône", 7, (1, 12)),
    ("13", "Bouches-du-Rhône", 5, (2, 12)),
    ("75", "Paris", 4, (4, 12)),
    ("33", "Gironde", 6, (1, 10)),
    ("2A", "Corse-du-Sud", 4, (1, 5)),
    ("971", "Guadeloupe", 4, (2, 8)),
    ("ZZ", "Français établis hors de France", 2, (1, 2)),
]
#: Circonscriptions of some departments (the others have none: a roll may give none)
CIRCONSCRIPTIONS = {"42": 3, "69": 2, "75": 2, "2A": 2, "ZZ": 1}
NIGHTS = [(2017, 0), (2022, 3)]  # (seed, bureaux that never report)
DUPLICATES, OUT_OF_ORDER, CORRECTIONS = 0.10, 0.10, 0.05
STEP = 0.1  # SOIREE_TURNOUT_STEP, default


@dataclass
class Night:
    """One generated night: its roll, the messages of each phase, and the special corrections."""

    election: Election
    phase1: list[dict[str, Any]]
    phase2: list[dict[str, Any]] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)  # bureaux that never report
    # (level, area) -> (bureau, seq, leader before, leader after) of the phase-2 corrections
    flips: dict[tuple[str, str], tuple[str, int, str | None, str | None]] = field(default_factory=dict)
    zeroed: tuple[str, int] | None = None

    @property
    def e(self) -> str:
        return self.election.election


def interleave(rng: Random, sequences: list[list[Any]]) -> list[Any]:
    """A random merge that keeps the order within each sequence."""
    tokens = [i for i, sequence in enumerate(sequences) for _ in sequence]
    rng.shuffle(tokens)
    positions = [0] * len(sequences)
    merged = []
    for i in tokens:
        merged.append(sequences[i][positions[i]])
        positions[i] += 1
    return merged


def generate_night(seed: int, silent: int) -> Night:
    rng = Random(seed)
    election = make_election(
        rng,
        f"messy-{seed}-{uuid.uuid4().hex[:6]}",
        CANDIDATES,
        DEPARTMENTS,
        circonscriptions=CIRCONSCRIPTIONS,
    )
    e = election.election
    leaning = {code: [rng.random() + 0.05 for _ in CANDIDATES] for code, *_ in DEPARTMENTS}

    def version(bureau: str, seq: int) -> dict[str, Any]:
        entry = election.roll[bureau]
        return result(
            e, bureau, seq, random_counts(rng, entry.registered, CANDIDATES, leaning[entry.department])
        )

    bureaux = [entry.bureau for entry in election.bureaux]
    silent_ones = sorted(rng.sample([b for b in bureaux if not b.startswith("ZZ")], silent))
    reporting = [b for b in bureaux if b not in silent_ones]
    total = round(len(reporting) / (1 - DUPLICATES - OUT_OF_ORDER - CORRECTIONS))
    corrected = set(rng.sample(reporting, round(CORRECTIONS * total)))
    stale = set(rng.sample(reporting, round(OUT_OF_ORDER * total)))
    plans: dict[str, list[dict[str, Any]]] = {}
    for bureau in reporting:
        if bureau in corrected and bureau in stale:  # 1, then 4; 2 arrives last (stale)
            plans[bureau] = [version(bureau, 1), version(bureau, 4), version(bureau, 2)]
        elif bureau in corrected:  # 1, then a correction
            plans[bureau] = [version(bureau, 1), version(bureau, rng.randint(2, 4))]
        elif bureau in stale:  # the final count overtakes a preliminary one
            high = rng.randint(2, 5)
            plans[bureau] = [version(bureau, high), version(bureau, rng.randint(1, high - 1))]
        else:
            plans[bureau] = [version(bureau, rng.randint(1, 3))]
    for _ in range(round(DUPLICATES * total)):  # a version sent again, later
        plan = plans[rng.choice(reporting)]
        original = rng.randrange(len(plan))
        plan.insert(rng.randint(original + 1, len(plan)), dict(plan[original]))
    phase1 = interleave(rng, [plans[b] for b in reporting])
    night = Night(election, phase1, silent=silent_ones)
    add_special_corrections(night, rng, version)
    return night


def add_special_corrections(night: Night, rng: Random, version: Any) -> None:
    """Phase 2: a correction that changes a commune's leader, one that changes a department's
    leader (chosen here from the phase-1 truth), and one that takes a bureau back to zero."""
    election, e = night.election, night.e
    before = truth(election, night.phase1)
    latest = latest_versions(night.phase1)
    members: dict[tuple[str, str], list[str]] = defaultdict(list)
    for entry in election.bureaux:
        members[("commune", entry.commune)].append(entry.bureau)
        members[("department", entry.department)].append(entry.bureau)

    def flip(level: str, area: str) -> tuple[str, dict[str, Any]] | None:
        """A bureau of the area whose expressed votes, all given to the runner-up, change the leader."""
        now = figures(before[(level, area)], CANDIDATES)
        if now.leader is None or any(b not in latest for b in members[(level, area)]):
            return None
        votes = before[(level, area)].votes
        runner_up = sorted((c for c in CANDIDATES if c != now.leader), key=lambda c: (-votes.get(c, 0), c))[0]
        for bureau in sorted(members[(level, area)]):
            old = latest[bureau]
            expressed = sum(old["votes"].values())
            new_votes = {c: votes.get(c, 0) - old["votes"].get(c, 0) for c in CANDIDATES}
            new_votes[runner_up] += expressed
            after = Total(votes=new_votes)
            if figures(after, CANDIDATES).leader == runner_up:
                counts = {k: old[k] for k in ("voters", "blank", "invalid")} | {
                    "votes": {runner_up: expressed}
                }
                return bureau, counts
        return None

    communes = sorted(
        a for a in members if a[0] == "commune" and len(members[a]) >= 2 and not a[1].startswith("ZZ")
    )
    commune_flip = next((c, f) for c in communes if (f := flip(*c)) is not None)
    departments = sorted((a for a in members if a[0] == "department"), key=lambda a: (len(members[a]), a))
    department_flip = next(
        (d, f)
        for d in departments
        if d[1] != election.roll[commune_flip[1][0]].department and (f := flip(*d)) is not None
    )
    used_communes = {election.roll[f[0]].commune for _, f in (commune_flip, department_flip)}
    used_departments = {election.roll[f[0]].department for _, f in (commune_flip, department_flip)}
    zero = next(
        b
        for b in sorted(latest)
        if latest[b]["voters"] > 0
        and election.roll[b].commune not in used_communes
        and election.roll[b].department not in used_departments
    )
    specials = [
        (*commune_flip[1], commune_flip[0]),
        (*department_flip[1], department_flip[0]),
        (zero, {"voters": 0, "blank": 0, "invalid": 0, "votes": {}}, None),
    ]
    sequences = []
    for bureau, counts, area in specials:
        top = max(r["seq"] for r in night.phase1 if r["bureau"] == bureau)
        correction = result(e, bureau, top + 2, counts)
        # the correction, a stale version overtaken by it, a duplicate, and the phase-1 version again
        sequences.append([correction, version(bureau, top + 1), dict(correction), dict(latest[bureau])])
        if area is not None:
            after = truth(election, [*night.phase1, correction])
            night.flips[area] = (
                bureau,
                top + 2,
                figures(before[area], CANDIDATES).leader,
                figures(after[area], CANDIDATES).leader,
            )
        else:
            night.zeroed = (bureau, top + 2)
    night.phase2 = interleave(rng, sequences)


def traffic_mix(messages: list[dict[str, Any]]) -> dict[str, int]:
    """Each message as it arrives: first report, duplicate, out-of-order (stale) or correction."""
    seen: dict[str, set[int]] = defaultdict(set)
    mix: dict[str, int] = defaultdict(int)
    for m in messages:
        versions = seen[m["bureau"]]
        if m["seq"] in versions:
            mix["duplicate"] += 1
        elif versions and m["seq"] < max(versions):
            mix["out_of_order"] += 1
        elif versions:
            mix["correction"] += 1
        else:
            mix["first"] += 1
        versions.add(m["seq"])
    return dict(mix)


# -- the test ----------------------------------------------------------------------------------------


def test_messy_nights_count_exactly_and_tell_a_consistent_story(stack: Any) -> None:
    started = time.monotonic()
    nights = [generate_night(seed, silent) for seed, silent in NIGHTS]
    for night in nights:
        mix = traffic_mix(night.phase1 + night.phase2)
        total = sum(mix.values())
        print(f"\n{night.e}: {len(night.election.bureaux)} bureaux, {total} messages {mix}")
        assert mix["duplicate"] >= 0.095 * total and mix["out_of_order"] >= 0.095 * total, mix
        assert mix["correction"] >= 0.048 * total, mix
        assert len(night.flips) == 2 and night.zeroed is not None
        for (level, _area), (_, _, was, now) in night.flips.items():
            assert level in ("commune", "department") and was is not None and now is not None and was != now

    s: Stack = stack("messy")
    for night in nights:
        s.register(night.election)
    s.start_worker()

    # phase 1: the messy bulk of both nights, interleaved
    s.publish(interleave(Random(1), [night.phase1 for night in nights]))
    truths1 = {night.e: truth(night.election, night.phase1) for night in nights}
    settle(s, nights, truths1, "phase 1")
    events1 = events_by_election(s)
    for night in nights:
        check_story(s, night, events1[night.e], truths1[night.e], night.phase1)

    # phase 2: the corrections that change leaders, and the one back to zero
    s.publish(interleave(Random(2), [night.phase2 for night in nights]))
    truths2 = {night.e: truth(night.election, night.phase1 + night.phase2) for night in nights}
    settle(s, nights, truths2, "phase 2")
    events2 = events_by_election(s)
    records = read_records(s, s.settings.results_topic)
    for night in nights:
        story = events2[night.e]
        levels = {"bureau", "commune", "circonscription", "department", "region", "nation"}
        assert {event["level"] for event in story} == levels == {level for level, _ in truths2[night.e]}
        check_story(s, night, story, truths2[night.e], night.phase1 + night.phase2)
        check_figures_were_true(night, story, records)
        check_special_corrections(s, night, events1[night.e], story)
    s.assert_workers_alive()
    print(f"test took {time.monotonic() - started:.1f} s")


def settle(s: Stack, nights: list[Night], truths: dict[str, dict[tuple[str, str], Total]], what: str) -> None:
    s.wait_until(
        lambda: all(not mismatches(s, n.election, truths[n.e]) for n in nights), 60, f"the totals of {what}"
    )
    time.sleep(1)  # events are sent before the standings are written; let the last ones land
    for night in nights:
        assert mismatches(s, night.election, truths[night.e]) == [], what


def events_by_election(s: Stack) -> dict[str, list[dict[str, Any]]]:
    """Every update event so far, per election, in each area's order (one key, one partition)."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in read_records(s, s.settings.updates_topic):
        event = orjson.loads(record.value)
        assert record.key == event["area"].encode(), (record.key, event)
        found[event["election"]].append(event)
    return found


def event_shape_problems(
    where: str, event: dict[str, Any], election: Election, level: str, area: str, fresh: Any
) -> list[str]:
    """What every event must satisfy on its own: turnout in range, margin and tie consistent with
    the leader, a cause that is a bureau of the area at a version that was fresh when sent.
    (``traffic.event_figure_problems`` holds all its figures to their definitions.)"""
    problems: list[str] = []
    if event["turnout"] is not None and not 0 <= event["turnout"] <= 100:
        problems.append(f"{where}: turnout {event['turnout']}")
    if event["margin"] < 0 or (event["margin"] == 0) != (event["leader"] is None):
        problems.append(f"{where}: margin {event['margin']} with leader {event['leader']!r}")
    if event["tied"] is not None and (len(event["tied"]) < 2 or event["leader"] is not None):
        problems.append(f"{where}: tied {event['tied']} with leader {event['leader']!r}")
    cause = event["cause"] or {}
    bureau, seq = cause.get("bureau"), cause.get("seq")
    if bureau not in election.roll or (level, area) not in areas_of(election, bureau):
        problems.append(f"{where}: cause {cause} is not a bureau of the area")
    elif seq not in fresh[bureau]:
        problems.append(f"{where}: cause {cause} is a version that was never sent or was stale")
    return problems


def check_story(
    s: Stack,
    night: Night,
    events: list[dict[str, Any]],
    expected: dict[tuple[str, str], Total],
    messages: list[dict[str, Any]],
) -> None:
    """What the events of an area are guaranteed to say, whatever the batching, and is asserted
    (``messages``: every report published so far, in order):

    * at bureau level, one event per counted report and nothing else (``bureau_story_problems``):
      ``reported`` for the first version counted, ``corrected`` for each later one, in order, each
      with exactly the figures of the version its cause names, the last one equal to the final
      standings; none for a duplicate or a stale version;
    * above it, only ``leader_changed``, ``turnout_changed``, ``complete``, ``decided`` and
      ``undecided``;
    * leaders form a chain: each ``leader_changed`` has as ``previous_leader`` the ``leader`` of the
      area's ``leader_changed`` before it (None for the first, and after a tie), and says something
      new (its (leader, tied) differs from the one before); the last one is the final standings'
      (leader, tied), and an area without one never had a leader or a tie;
    * turnouts form a chain too: each ``turnout_changed`` has as ``previous_turnout`` the ``turnout``
      of the one before (None for the first) and moved by at least the step (less 0.01 for the
      rounding of both), and the last one is within a step of the final turnout;
    * ``complete`` at most once, present iff every bureau of the area's roll has reported, and then
      it says so (bureaux_reported == bureaux_total);
    * calls (``decision_problems``): ``decided`` and ``undecided`` alternate; after every
      announcement the call stands as its figures say; a ``decided`` naming a leader who is not
      the final one is followed by an ``undecided``; the last call is the final standings';
    * every event: a valid ``UpdateEvent`` whose figures (expressed, shares, turnout, leader,
      tied, margin, decided against the registered of the unreported bureaux, computed here from
      the roll) are those of its own counts (``event_figure_problems``); bureaux_total is the
      roll's; 1 <= bureaux_reported <= bureaux_total and it never goes down (a bureau once
      counted stays counted, even corrected to zero); ``version`` never goes down and never
      beyond the final standings'; ``as_of`` None (no report here gives a ``reported_at``);
    * every event's cause is a bureau of the area, at a ``seq`` it did send and that was not stale
      when it arrived (higher than every earlier version of that bureau).

    What is *not* asserted here: that an area's figures went through every intermediate state (a
    batch moves straight from one to another; events compare with what was last announced).
    ``check_figures_were_true`` checks that what was announced was true at some point.
    """
    election = night.election
    sizes = bureaux_total(election)
    rolls = registered_total(election)
    members = members_of(election)
    fresh = fresh_versions(messages)
    versions = {(m["bureau"], m["seq"]): m for m in messages}
    problems: list[str] = []
    grouped = per_area(events)
    for area in expected:
        if area not in grouped:
            problems.append(f"{area}: no events at all")
    for (level, area), story in grouped.items():
        where = f"{level} {area}"
        final = s.standings(night.e, level, area)
        if final is None or (level, area) not in expected:
            problems.append(f"{where}: events for an area with no report")
            continue
        reported = 0
        for event in story:
            problems += event_figure_problems(where, event, election, rolls)
            problems += event_shape_problems(where, event, election, level, area, fresh)
            if event["bureaux_total"] != sizes[(level, area)]:
                problems.append(
                    f"{where}: bureaux_total {event['bureaux_total']}, the roll has {sizes[(level, area)]}"
                )
            if (
                not reported <= event["bureaux_reported"] <= event["bureaux_total"]
                or event["bureaux_reported"] < 1
            ):
                problems.append(
                    f"{where}: bureaux_reported {reported} -> "
                    f"{event['bureaux_reported']}/{event['bureaux_total']}"
                )
            reported = max(reported, event["bureaux_reported"])
        if level == "bureau":
            problems += bureau_story_problems(election, area, story, fresh[area], versions, final)
            continue
        leader: str | None = None
        lead: tuple[Any, Any] = (None, None)  # (leader, tied) as last announced: nothing yet
        turnout: float | None = None
        completes = 0
        for event in story:
            kind = event["kind"]
            if kind not in AREA_KINDS:
                problems.append(f"{where}: a {kind} event above bureau level")
            if kind == "leader_changed":
                if event["previous_leader"] != leader:
                    problems.append(
                        f"{where}: previous_leader {event['previous_leader']!r} after leader {leader!r}"
                    )
                if (event["leader"], event["tied"]) == lead:
                    problems.append(f"{where}: leader_changed to the same {lead}")
                leader, lead = event["leader"], (event["leader"], event["tied"])
            elif kind == "turnout_changed":
                if event["previous_turnout"] != turnout:
                    problems.append(
                        f"{where}: previous_turnout {event['previous_turnout']} after turnout {turnout}"
                    )
                if turnout is not None and abs(event["turnout"] - turnout) < STEP - 0.01 - 1e-9:
                    problems.append(
                        f"{where}: turnout moved {turnout} -> {event['turnout']}, less than a step"
                    )
                turnout = event["turnout"]
            elif kind == "complete":
                completes += 1
                if event["bureaux_reported"] != event["bureaux_total"]:
                    problems.append(
                        f"{where}: complete at {event['bureaux_reported']}/{event['bureaux_total']}"
                    )
        if lead != (final.leader, final.tied):
            problems.append(
                f"{where}: last leader_changed says {lead}, the standings {(final.leader, final.tied)}"
            )
        if completes > 1 or (completes == 1) != (final.bureaux_reported == final.bureaux_total):
            problems.append(
                f"{where}: {completes} complete events at {final.bureaux_reported}/{final.bureaux_total}"
            )
        if final.turnout is not None and (turnout is None or abs(turnout - final.turnout) >= STEP + 0.01):
            problems.append(f"{where}: last turnout event {turnout}, final turnout {final.turnout}")
        problems += decision_problems(where, story, final)
        problems += version_problems(where, story, final)
        counted = [versions[(b, seq)].get("reported_at") for b in members[(level, area)] for seq in fresh[b]]
        problems += as_of_problems(where, story, final, counted)
    for bureau in night.silent:
        for area in areas_of(election, bureau)[:1]:
            if area in grouped or s.standings(night.e, *area) is not None:
                problems.append(f"{area}: never reported, yet has events or standings")
    assert not problems, f"{len(problems)} problems in the story of {night.e}, e.g.:\n" + "\n".join(
        problems[:25]
    )


def check_figures_were_true(night: Night, events: list[dict[str, Any]], records: list[Any]) -> None:
    """No event of a commune, circonscription or department reports counts that were never true.

    (A bureau's events must show exactly the version their cause names: ``check_story``.) A
    commune's, circonscription's or department's state after any batch is the sum, over its
    bureaux, of the newest version each had sent up to some point of *each partition* of
    ``bureau-results`` (a bureau's versions share a partition and keep their order; batches take
    a prefix of every partition). So each of their events must carry the counts (bureaux,
    registered, voters, blank, invalid, votes) of one such combination of per-partition
    prefixes, enumerated here from the topic itself; ``check_story`` holds the rest of its
    figures to those counts. A region of one department gets that department's states. (The
    nation and the other regions get each department at its own cut, so are not enumerated.)
    """
    election = night.election
    candidates = election.candidate_list
    per_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        message = orjson.loads(record.value)
        if message["election"] == night.e:
            per_partition[record.partition].append(message)
    problems: list[str] = []
    grouped = per_area(events)
    enumerable = enumerable_areas(election)
    combinations = 0
    for (level, area), story in sorted(grouped.items()):
        if (level, area) not in enumerable:
            continue
        states, count = reachable(election, enumerable[(level, area)], per_partition)
        combinations += count
        for event in story:
            if event_raw(event, candidates) not in states:
                problems.append(
                    f"{level} {area}: {event['kind']} {event_raw(event, candidates)} was never true"
                )
    print(f"{night.e}: {combinations} reachable commune/circonscription/department/region states enumerated")
    assert not problems, f"{len(problems)} events with figures never true, e.g.:\n" + "\n".join(problems[:25])


def check_special_corrections(
    s: Stack, night: Night, before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> None:
    """The phase-2 corrections: one leader change each, caused by them; the zeroed bureau at zero."""
    new_events = per_area(after)
    old_events = per_area(before)
    for (level, area), (bureau, seq, was, now) in night.flips.items():
        changes = [
            ev
            for ev in new_events[(level, area)][len(old_events[(level, area)]) :]
            if ev["kind"] == "leader_changed"
        ]
        assert len(changes) == 1, (level, area, changes)
        change = changes[0]
        assert (change["previous_leader"], change["leader"]) == (was, now), (level, area, change)
        assert change["cause"] == {"bureau": bureau, "seq": seq}, (level, area, change)
        assert s.standings(night.e, level, area).leader == now
        # complete since phase 1, so decided for ``was``: the correction reopens the call and
        # decides it for ``now``, in the same announcement
        calls = [
            (ev["kind"], ev["leader"], ev["cause"])
            for ev in new_events[(level, area)][len(old_events[(level, area)]) :]
            if ev["kind"] in ("decided", "undecided")
        ]
        cause = {"bureau": bureau, "seq": seq}
        assert calls == [("undecided", now, cause), ("decided", now, cause)], (level, area, calls)
    assert night.zeroed is not None
    bureau, seq = night.zeroed
    final = s.standings(night.e, "bureau", bureau)
    assert final is not None
    assert (
        final.voters,
        final.expressed,
        final.turnout,
        final.leader,
        final.tied,
        final.bureaux_reported,
    ) == (0, 0, 0.0, None, None, 1)
    [zero] = new_events[("bureau", bureau)][len(old_events[("bureau", bureau)]) :]  # its one event
    assert (zero["kind"], zero["cause"]) == ("corrected", {"bureau": bureau, "seq": seq}), zero
    assert (
        zero["voters"],
        zero["expressed"],
        zero["turnout"],
        zero["leader"],
        zero["tied"],
        zero["margin"],
        zero["decided"],
        zero["bureaux_reported"],
    ) == (0, 0, 0.0, None, None, 0, False, 1), zero
