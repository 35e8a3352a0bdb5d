"""Shared generators and independent checks for the traffic tests (bad input, messy nights,
faults, pipeline).

Nothing here uses ``stream``'s arithmetic: elections are generated with a seeded RNG, truths are
plain sums over the latest ``seq`` of each bureau, and figures (leader, tie, margin, turnout,
shares, decided) are recomputed from the contract's definitions. Only the message *shapes* come
from ``stream.domain.messages``, and the region of a department from ``stream.domain.regions``
(a table, checked against the official ones in ``test_regions``).
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import product
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from stream.domain.messages import Election, Standings, UpdateEvent
from stream.domain.regions import region_of

from .harness import Stack

NATION = "FR"


# -- elections ---------------------------------------------------------------------------------


def make_election(
    rng: random.Random,
    election_id: str,
    candidates: list[str],
    departments: list[tuple[str, str, int, tuple[int, int]]],
    registered: tuple[int, int] = (150, 1400),
    circonscriptions: dict[str, int] | None = None,
) -> Election:
    """A generated roll: per department (code, name, communes, (min, max) bureaux per commune).

    ``circonscriptions`` gives some departments that many circonscriptions (``<code>-01``...):
    their communes in turn, and the department's first commune of two bureaux or more split
    between two of them, bureau by bureau (as a big city is). It draws nothing from ``rng``: the
    same seed makes the same night with or without them."""
    bureaux: list[dict[str, Any]] = []
    for code, name, communes, (low, high) in departments:
        commune_codes = rng.sample(range(1, 999), communes)
        count = (circonscriptions or {}).get(code, 0)
        split = False
        for index, number in enumerate(sorted(commune_codes)):
            commune = f"{code}{number:03d}"
            sizes = rng.randint(low, high)
            split_here = count >= 2 and not split and sizes >= 2
            split = split or split_here
            for k in range(1, sizes + 1):
                entry = dict(
                    bureau=f"{commune}-{k:04d}",
                    commune=commune,
                    commune_name=f"Commune {commune}",
                    department=code,
                    department_name=name,
                    registered=rng.randint(*registered),
                )
                if count:
                    circonscription = (index + (k % 2 if split_here else 0)) % count + 1
                    entry["circonscription"] = f"{code}-{circonscription:02d}"
                    entry["circonscription_name"] = f"{name}, circonscription {circonscription}"
                bureaux.append(entry)
    return Election.model_validate(
        {
            "election": election_id,
            "name": f"Generated night {election_id}",
            "candidates": [{"id": c, "name": c.title()} for c in candidates],
            "bureaux": bureaux,
        }
    )


def areas_of(election: Election, bureau: str) -> list[tuple[str, str]]:
    """Every (level, area) the bureau counts in, from the bottom up: its circonscription when the
    roll gives one, its region when its department is in one (the INSEE table of
    ``stream.domain.regions``, checked against the official tables in ``test_regions``)."""
    entry = election.roll[bureau]
    areas = [("bureau", bureau), ("commune", entry.commune)]
    if entry.circonscription is not None:
        areas.append(("circonscription", entry.circonscription))
    areas.append(("department", entry.department))
    region = region_of(entry.department)
    if region is not None:
        areas.append(("region", region))
    areas.append(("nation", NATION))
    return areas


def bureaux_total(election: Election) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for entry in election.bureaux:
        for area in areas_of(election, entry.bureau):
            totals[area] += 1
    return dict(totals)


def registered_total(election: Election) -> dict[tuple[str, str], int]:
    """Per (level, area): the registered voters of all its bureaux, from the roll."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for entry in election.bureaux:
        for area in areas_of(election, entry.bureau):
            totals[area] += entry.registered
    return dict(totals)


def members_of(election: Election) -> dict[tuple[str, str], set[str]]:
    """Per (level, area): its bureaux."""
    members: dict[tuple[str, str], set[str]] = defaultdict(set)
    for entry in election.bureaux:
        for area in areas_of(election, entry.bureau):
            members[area].add(entry.bureau)
    return dict(members)


def random_counts(
    rng: random.Random,
    registered: int,
    candidates: list[str],
    weights: list[float] | None = None,
    keep_zero: bool = False,
) -> dict[str, Any]:
    """voters/blank/invalid/votes of a plausible bureau (every rule holds)."""
    voters = rng.randint(registered // 3, registered)
    blank = rng.randint(0, voters // 30)
    invalid = rng.randint(0, voters // 50)
    expressed = voters - blank - invalid
    weights = weights or [rng.random() + 0.05 for _ in candidates]
    cuts = sorted(rng.choices(range(expressed + 1), k=len(candidates) - 1))
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, expressed])]
    # bias the random split towards the weights: sort the shares along the weights' order
    order = sorted(range(len(candidates)), key=lambda i: -weights[i] * rng.uniform(0.6, 1.4))
    ranked = sorted(shares, reverse=True)
    votes = {candidates[i]: ranked[rank] for rank, i in enumerate(order)}
    if not keep_zero:
        votes = {c: v for c, v in votes.items() if v or rng.random() < 0.5}  # a missing candidate has 0
    return {"voters": voters, "blank": blank, "invalid": invalid, "votes": votes}


def result(
    election: str, bureau: str, seq: int, counts: dict[str, Any], registered: int | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"election": election, "bureau": bureau, "seq": seq, **counts}
    if registered is not None:
        data["registered"] = registered
    return data


# -- truth ---------------------------------------------------------------------------------------


@dataclass
class Total:
    bureaux: int = 0
    registered: int = 0
    voters: int = 0
    blank: int = 0
    invalid: int = 0
    votes: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, registered: int, report: dict[str, Any]) -> None:
        self.bureaux += 1
        self.registered += registered
        self.voters += report["voters"]
        self.blank += report["blank"]
        self.invalid += report["invalid"]
        for candidate, count in report["votes"].items():
            self.votes[candidate] += count


class Figures(NamedTuple):
    """What an event says about an area, as the contract defines it."""

    leader: str | None
    tied: tuple[str, ...] | None
    margin: int
    turnout: float | None
    bureaux_reported: int


def figures(total: Total, candidates: list[str]) -> Figures:
    votes = {c: total.votes.get(c, 0) for c in candidates}
    top = max(votes.values(), default=0)
    leaders = sorted(c for c, v in votes.items() if v == top)
    if top == 0:
        leader, tied, margin = None, None, 0
    elif len(leaders) > 1:
        leader, tied, margin = None, tuple(leaders), 0
    else:
        runner_up = max((v for c, v in votes.items() if c != leaders[0]), default=0)
        leader, tied, margin = leaders[0], None, top - runner_up
    turnout = round(100.0 * total.voters / total.registered, 2) if total.registered else None
    return Figures(leader, tied, margin, turnout, total.bureaux)


def shares_of(votes: dict[str, int]) -> dict[str, float]:
    """Each candidate's share of the expressed votes, in %, to 2 places (0.0 when none)."""
    expressed = sum(votes.values())
    return {c: round(100.0 * v / expressed, 2) if expressed else 0.0 for c, v in votes.items()}


def is_decided(figured: Figures, unreported: int) -> bool:
    """The contract's ``decided`` (no ``qualify``): the leader's margin exceeds the registered
    voters of the area's unreported bureaux, who could all still vote for the runner-up."""
    return figured.leader is not None and figured.margin > unreported


def latest_versions(results: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The report that counts for each bureau: the highest seq (the first one on equal seq)."""
    latest: dict[str, dict[str, Any]] = {}
    for r in results:
        if r["bureau"] not in latest or r["seq"] > latest[r["bureau"]]["seq"]:
            latest[r["bureau"]] = r
    return latest


def truth(election: Election, results: Iterable[dict[str, Any]]) -> dict[tuple[str, str], Total]:
    """Per (level, area): plain sums of the latest version of every bureau that reported."""
    totals: dict[tuple[str, str], Total] = defaultdict(Total)
    for bureau, report in latest_versions(results).items():
        registered = election.roll[bureau].registered
        for area in areas_of(election, bureau):
            totals[area].add(registered, report)
    return dict(totals)


def mismatches(stack: Stack, election: Election, expected: dict[tuple[str, str], Total]) -> list[str]:
    """Every difference between Redis standings and the truth (empty when they agree to the vote)."""
    candidates = election.candidate_list
    sizes = bureaux_total(election)
    rolls = registered_total(election)
    problems: list[str] = []
    for (level, area), total in expected.items():
        got = stack.standings(election.election, level, area)
        if got is None:
            problems.append(f"{level} {area}: no standings")
            continue
        want_votes = {c: total.votes.get(c, 0) for c in candidates}
        want = figures(total, candidates)
        pairs = {
            "shares": (got.shares, shares_of(want_votes)),
            "decided": (got.decided, is_decided(want, rolls[(level, area)] - total.registered)),
            "qualified": (got.qualified, None),
            "registered": (got.registered, total.registered),
            "voters": (got.voters, total.voters),
            "blank": (got.blank, total.blank),
            "invalid": (got.invalid, total.invalid),
            "expressed": (got.expressed, sum(want_votes.values())),
            "votes": (got.votes, want_votes),
            "bureaux_reported": (got.bureaux_reported, total.bureaux),
            "bureaux_total": (got.bureaux_total, sizes[(level, area)]),
            "leader": (got.leader, want.leader),
            "tied": (tuple(sorted(got.tied)) if got.tied else None, want.tied),
            "margin": (got.margin, want.margin),
            "turnout": (got.turnout, want.turnout),
        }
        for name, (have, should) in pairs.items():
            if have != should:
                problems.append(f"{level} {area} {name}: got {have!r}, expected {should!r}")
    return problems


# -- events ------------------------------------------------------------------------------------

#: The kinds of event at bureau level (one per counted report) and above it (no turnout reports,
#: no races, no ``qualify`` in these tests, so no ``turnout_reported``, ``elected``, ``qualified``).
BUREAU_KINDS = ("reported", "corrected")
AREA_KINDS = ("leader_changed", "turnout_changed", "complete", "decided", "undecided")


class Raw(NamedTuple):
    """The counts an event or a standings is made of (votes in the election's candidate order)."""

    bureaux: int
    registered: int
    voters: int
    blank: int
    invalid: int
    votes: tuple[int, ...]


def raw_of_report(election: Election, report: dict[str, Any]) -> Raw:
    """One bureau's report, as its bureau's figures (registered from the roll)."""
    votes = report["votes"]
    return Raw(
        1,
        election.roll[report["bureau"]].registered,
        report["voters"],
        report["blank"],
        report["invalid"],
        tuple(votes.get(c, 0) for c in election.candidate_list),
    )


def event_raw(event: dict[str, Any], candidates: list[str]) -> Raw:
    votes = event["votes"]
    return Raw(
        event["bureaux_reported"],
        event["registered"],
        event["voters"],
        event["blank"],
        event["invalid"],
        tuple(votes.get(c, 0) for c in candidates),
    )


def total_of(raw: Raw, candidates: list[str]) -> Total:
    return Total(
        raw.bureaux, raw.registered, raw.voters, raw.blank, raw.invalid, dict(zip(candidates, raw.votes))
    )


def event_figures(event: dict[str, Any]) -> Figures:
    tied = tuple(sorted(event["tied"])) if event["tied"] else None
    return Figures(event["leader"], tied, event["margin"], event["turnout"], event["bureaux_reported"])


def moment(text: str | None) -> datetime | None:
    """An ISO-8601 time (``as_of``, ``reported_at``) as an aware datetime (naive = UTC)."""
    if text is None:
        return None
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def per_area(events: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        grouped[(event["level"], event["area"])].append(event)
    return grouped


def fresh_versions(messages: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    """Per bureau, in order, the seqs that were the newest yet when they arrived (the ones that count)."""
    fresh: dict[str, list[int]] = defaultdict(list)
    newest: dict[str, int] = {}
    for m in messages:
        if m["seq"] > newest.get(m["bureau"], 0):
            newest[m["bureau"]] = m["seq"]
            fresh[m["bureau"]].append(m["seq"])
    return fresh


def event_figure_problems(
    where: str, event: dict[str, Any], election: Election, rolls: dict[tuple[str, str], int]
) -> list[str]:
    """What every event's figures must satisfy on their own, at any level: it is a valid
    ``UpdateEvent``; its votes name exactly the election's candidates; expressed, shares, turnout,
    leader, tied and margin are those of its own counts (the contract's definitions), with
    blank + invalid + expressed = voters <= registered <= the roll's registered of the area;
    ``decided`` says exactly whether the margin exceeds the registered voters of the area's
    unreported bureaux (the roll's registered of the area less the event's); and no
    ``qualified``, ``reference``, ``change`` or ``turnout_at`` (no ``qualify``, ``compare_to`` or
    turnout report here). Whether the counts themselves were ever true is checked elsewhere."""
    try:
        UpdateEvent.model_validate(event)
    except ValidationError as exc:
        return [f"{where}: not a valid UpdateEvent: {exc.errors(include_url=False)[:3]}"]
    area = (event["level"], event["area"])
    if area not in rolls:
        return [f"{where}: {area} is no area of the roll"]
    candidates = election.candidate_list
    problems: list[str] = []
    if set(event["votes"]) != set(candidates):
        problems.append(
            f"{where}: votes for {sorted(event['votes'])}, the candidates are {sorted(candidates)}"
        )
    raw = event_raw(event, candidates)
    expressed = sum(raw.votes)
    if event["expressed"] != expressed:
        problems.append(f"{where}: expressed {event['expressed']}, votes add up to {expressed}")
    if raw.voters != raw.blank + raw.invalid + expressed or not raw.voters <= raw.registered <= rolls[area]:
        problems.append(
            f"{where}: voters {raw.voters}, blank {raw.blank}, invalid {raw.invalid}, expressed {expressed}, "
            f"registered {raw.registered} of the roll's {rolls[area]}"
        )
    want_shares = shares_of(dict(zip(candidates, raw.votes)))
    if event["shares"] != want_shares:
        problems.append(f"{where}: shares {event['shares']}, the votes make {want_shares}")
    want = figures(total_of(raw, candidates), candidates)
    if event_figures(event) != want:
        problems.append(f"{where}: {event['kind']} says {event_figures(event)}, its own counts make {want}")
    unreported = rolls[area] - raw.registered
    if event["decided"] != is_decided(want, unreported):
        problems.append(
            f"{where}: {event['kind']} decided={event['decided']} with leader {want.leader!r} by "
            f"{want.margin} and {unreported} registered in unreported bureaux"
        )
    for name in ("qualified", "reference", "change", "turnout_at"):
        if event.get(name) is not None:
            problems.append(f"{where}: {name} = {event[name]!r}, nothing here sets it")
    return problems


def bureau_story_problems(
    election: Election,
    bureau: str,
    story: list[dict[str, Any]],
    fresh: list[int],
    versions: dict[tuple[str, int], dict[str, Any]],
    final: Standings | None,
    repeats: bool = False,
) -> list[str]:
    """A bureau's events: exactly one per counted report, with that report's figures.

    * only ``reported`` and ``corrected``: the first version counted is ``reported``, every later
      one (a higher ``seq`` replacing it) ``corrected``;
    * one event per fresh version (``fresh``: the seqs that were the newest yet when they came),
      in their order, caused by that version: none for a duplicate or a stale one, none missing.
      With ``repeats`` (crashes), a stretch may come again: each event is then the next version or
      one announced before, never one skipped, and the last is the newest version;
    * each event shows exactly the version its cause names: its counts, registered from the
      roll, 1/1 bureau, ``version`` its seq, ``as_of`` its ``reported_at``;
    * the last one equals the final standings, field by field.
    """
    where = f"bureau {bureau}"
    candidates = election.candidate_list
    problems: list[str] = []
    position = -1
    for event in story:
        kind, cause = event["kind"], event["cause"] or {}
        seq = cause.get("seq")
        if kind not in BUREAU_KINDS:
            problems.append(f"{where}: a {kind} event at bureau level")
            continue
        if cause.get("bureau") != bureau or seq not in fresh:
            problems.append(f"{where}: {kind} caused by {cause}, none of its counted versions {fresh}")
            continue
        index = fresh.index(seq)
        if kind != ("reported" if index == 0 else "corrected"):
            problems.append(f"{where}: {kind} for seq {seq}, version {index + 1} of {fresh}")
        if index > position + 1 or (not repeats and index != position + 1):
            before = fresh[position] if position >= 0 else None
            problems.append(f"{where}: {kind} of seq {seq} after one of seq {before}; counted: {fresh}")
        position = index
        report = versions[(bureau, seq)]
        if event_raw(event, candidates) != raw_of_report(election, report) or event["bureaux_total"] != 1:
            problems.append(
                f"{where}: {kind} shows {event_raw(event, candidates)} of {event['bureaux_total']}, "
                f"seq {seq} is {raw_of_report(election, report)}"
            )
        if event["version"] != seq:
            problems.append(f"{where}: {kind} of seq {seq} has version {event['version']}")
        if moment(event["as_of"]) != moment(report.get("reported_at")):
            problems.append(
                f"{where}: {kind} as_of {event['as_of']}, seq {seq} reported at {report.get('reported_at')}"
            )
    if story and position != len(fresh) - 1:
        problems.append(
            f"{where}: the last event is of seq {fresh[position]}, the newest counted is {fresh[-1]}"
        )
    if story and final is not None:
        last = UpdateEvent.model_validate(story[-1])
        for name in Standings.model_fields:
            said, stands = getattr(last, name), getattr(final, name)
            if said != stands:
                problems.append(f"{where}: last event's {name} {said!r}, the standings' {stands!r}")
    return problems


def _call(qualified: list[str] | None, leader: str | None, decided: bool) -> Any:
    """What a decision names: the qualified set, else the leader; None while undecided."""
    if not decided:
        return None
    return tuple(qualified) if qualified else leader


def _announcement(event: dict[str, Any]) -> bytes:
    """What the events of one change share: everything but the kind and its own fields."""
    shared = {
        k: v for k, v in event.items() if k not in ("kind", "previous_leader", "previous_turnout", "hour")
    }
    return orjson.dumps(shared, option=orjson.OPT_SORT_KEYS)


def decision_problems(
    where: str, story: list[dict[str, Any]], final: Standings, repeats: bool = False
) -> list[str]:
    """The calls of an area above bureau level (``decided``, ``undecided``):

    * a ``decided`` event is decided and names a leader; an ``undecided`` comes after a ``decided``;
    * a ``decided`` naming (as leader, or qualified set) what is not the final call (the final
      standings' leader when they are decided, else nothing) is followed by an ``undecided``;
    * the last call event says what the final standings do: ``decided`` naming their leader when
      they are decided, ``undecided`` or none at all when they are not;
    * without ``repeats`` (no crash), calls alternate (``decided``, ``undecided``, ``decided``...)
      and after each announcement (the events of one change, which share their figures) the call
      stands as its figures say: their leader when decided, nothing otherwise. Announced calls
      thus follow the figures exactly, and ``event_figure_problems`` holds the figures to the rule.
    """
    final_call = _call(final.qualified, final.leader, final.decided)
    problems: list[str] = []
    called: Any = None
    ever = False
    undecided_after: list[bool] = []
    seen_undecided = False
    for event in reversed(story):
        undecided_after.append(seen_undecided)
        seen_undecided = seen_undecided or event["kind"] == "undecided"
    undecided_after.reverse()
    last_call: dict[str, Any] | None = None
    for i, event in enumerate(story):
        kind = event["kind"]
        if kind == "decided":
            call = _call(event["qualified"], event["leader"], event["decided"])
            if call is None:
                problems.append(
                    f"{where}: decided, yet decided={event['decided']} leader {event['leader']!r}"
                )
            if not repeats and called is not None:
                problems.append(f"{where}: decided {call!r} while {called!r} was still called")
            if call != final_call and not undecided_after[i]:
                problems.append(
                    f"{where}: decided {call!r} at {event['bureaux_reported']}/{event['bureaux_total']}, "
                    f"never undone, the final call is {final_call!r}"
                )
            called, ever, last_call = call, True, event
        elif kind == "undecided":
            if not ever or (not repeats and called is None):
                problems.append(f"{where}: undecided with nothing called")
            called, last_call = None, event
        if not repeats and (i + 1 == len(story) or _announcement(story[i + 1]) != _announcement(event)):
            stands = _call(event["qualified"], event["leader"], event["decided"])
            if called != stands:
                problems.append(
                    f"{where}: after the {kind} at {event['bureaux_reported']}/{event['bureaux_total']} "
                    f"the call is {called!r}, the figures say {stands!r}"
                )
    said = None
    if last_call is not None and last_call["kind"] == "decided":
        said = _call(last_call["qualified"], last_call["leader"], last_call["decided"])
    if said != final_call:
        problems.append(f"{where}: the last call event says {said!r}, the final standings {final_call!r}")
    return problems


def as_of_problems(
    where: str,
    story: list[dict[str, Any]],
    final: Standings,
    counted: Iterable[str | None],
    repeats: bool = False,
) -> list[str]:
    """``as_of`` of an area above bureau level: the ``reported_at`` of one of the versions counted
    in it (``counted``: its bureaux' fresh versions), or None while none of those gave one; never
    going back (but for ``repeats``); the final standings' is the latest of them."""
    times = {moment(text) for text in counted} - {None}
    latest = max(times, default=None)
    problems: list[str] = []
    before: datetime | None = None
    for event in story:
        now = moment(event["as_of"])
        if now is not None and now not in times:
            problems.append(
                f"{where}: {event['kind']} as_of {event['as_of']}, no report counted here says so"
            )
        elif not repeats and before is not None and (now is None or now < before):
            problems.append(f"{where}: {event['kind']} as_of {event['as_of']} after {before.isoformat()}")
        before = now
    if final.as_of != latest:
        problems.append(f"{where}: final as_of {final.as_of}, the latest report counted is of {latest}")
    return problems


def version_problems(
    where: str, story: list[dict[str, Any]], final: Standings, repeats: bool = False
) -> list[str]:
    """``version`` (grows with every change): never going back along an area's events (but for
    ``repeats``), and never beyond the final standings'."""
    problems: list[str] = []
    before = 0
    for event in story:
        if event["version"] > final.version or (not repeats and event["version"] < before):
            problems.append(
                f"{where}: {event['kind']} version {event['version']} after {before}, final {final.version}"
            )
        before = event["version"]
    return problems


def reachable(
    election: Election, bureaux: set[str], per_partition: dict[int, list[dict[str, Any]]]
) -> tuple[set[Raw], int]:
    """The counts of every combination of per-partition prefixes of ``bureau-results`` (each
    bureau at the newest version it had sent), for the area made of ``bureaux``."""
    candidates = election.candidate_list
    options: list[list[tuple[int, ...]]] = []
    for messages in per_partition.values():
        newest: dict[str, dict[str, Any]] = {}
        states = [(0,) * (5 + len(candidates))]
        for m in messages:
            bureau = m["bureau"]
            if bureau in bureaux and m["seq"] > newest.get(bureau, {"seq": 0})["seq"]:
                newest[bureau] = m
                states.append(tuple(map(sum, zip(*(_vector(election, r) for r in newest.values())))))
        options.append(list(dict.fromkeys(states)))
    found: set[Raw] = set()
    count = 0
    for combination in product(*options):
        bureaux_count, registered, voters, blank, invalid, *votes = map(sum, zip(*combination))
        found.add(Raw(bureaux_count, registered, voters, blank, invalid, tuple(votes)))
        count += 1
    return found, count


def _vector(election: Election, report: dict[str, Any]) -> tuple[int, ...]:
    *counts, votes = raw_of_report(election, report)
    return (*counts, *votes)


def enumerable_areas(election: Election) -> dict[tuple[str, str], set[str]]:
    """The areas whose every state is a combination of per-partition prefixes (``reachable``),
    with their bureaux: communes, circonscriptions and departments (tallied per contribution,
    and contributions follow each partition's order), and a region of a single department (it
    gets that department's totals). The nation and other regions add departments each at its
    own cut: not enumerated."""
    members = members_of(election)
    department_of = {entry.bureau: entry.department for entry in election.bureaux}
    return {
        (level, area): bureaux
        for (level, area), bureaux in members.items()
        if level in ("commune", "circonscription", "department")
        or (level == "region" and len({department_of[b] for b in bureaux}) == 1)
    }


# -- reading topics ----------------------------------------------------------------------------


class Record(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def topic_size(stack: Stack, topic: str) -> int:
    """How many messages the topic holds (sum of its partitions' end offsets; never compacted here)."""

    async def run() -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                partitions = consumer.partitions_for_topic(topic) or set()
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            return sum(ends.values())
        finally:
            await consumer.stop()

    return asyncio.run(run())


def read_records(stack: Stack, topic: str, idle: float = 2.0) -> list[Record]:
    """Every message of ``topic`` so far with its partition and offset, in each partition's order."""

    async def run() -> list[Record]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        found: list[Record] = []
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=int(idle * 1000), max_records=5000)
                if not batch:
                    break
                for messages in batch.values():
                    found.extend(Record(m.partition, m.offset, m.key, m.value) for m in messages)
        finally:
            await consumer.stop()
        found.sort(key=lambda r: (r.partition, r.offset))
        return found

    return asyncio.run(run())
