"""When each area of the 2017 nights is called: both rounds replayed offline through the engine.

An area is *decided* when its leader's margin exceeds the registered voters of its bureaux not yet
reported (round 1 has ``qualify: 2``: the pair of the first two is decided when the second's lead
over the third exceeds that bound). This replays both rounds of the 2017 presidential election
through the very ``Pipeline`` the worker runs (routing, tally, nation), with the stand-ins of
``stream.testing`` for Kafka, the table and Redis, as ``bench/tally_cpu.py`` does; but the reports
come in the order and at the times of a realistic evening (``scenario_from_ministry``: every bureau
once, at a time drawn from the reporting curve of ``scenario.report_delay``), in one batch per
simulated minute. It keeps the ``decided`` and ``undecided`` events the engine sends to the updates
topic and prints, per round, when each department, region and the nation was first called, with
how many of its bureaux had reported by then.

Then it checks every call without engine code, on plain sums over the CSV file: the called leader
(round 2) or pair (round 1) is the final one, the bound held at the minute of the call (on the
bureaux reported by then) and not a minute earlier. It also checks its sums against the ministry's
official department and region tables. Any call that fails a check is listed and the exit status
is 1. ``--doc docs/calls.md`` writes the document with every table. Usage::

    python bench/calls_2017.py [--data ../shared/data/pres2017] [--seed 0] [--doc docs/calls.md]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]

from stream.domain.messages import NATION
from stream.domain.regions import REGION_NAMES, REGION_OF_DEPARTMENT
from stream.domain.roll import ElectionIndex
from stream.settings import Settings
from stream.sources.scenario import KNOWN_POLLS_CLOSE, Scenario, TimedResult, scenario_from_ministry
from stream.testing import FakeEvent, FakeProducer, as_events, offline_pipeline

#: (election id, file, what the definition gets on top of ``election_from_ministry``'s)
ROUNDS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("pres2017-t1", "2017-presidentielle-1_par_bureau_large.csv.gz", {"round": 1, "qualify": 2}),
    ("pres2017-t2", "2017-presidentielle-2_par_bureau_large.csv.gz", {"round": 2}),
)
LOCAL = timezone(timedelta(hours=2))  # CEST, the time of the 2017 nights in mainland France
MARKS = ("20:00", "20:30", "21:00", "21:30", "22:00", "22:30", "23:00", "23:30")
CALLED_LEVELS = ("department", "region", "nation")
DEFAULT_DATA = ROOT.parent / "shared/data/pres2017"

Area = tuple[str, str]  # (level, area id)


@dataclass
class Call:
    """The first ``decided`` event of an area, as the engine sent it."""

    level: str
    area: str
    name: str
    at: datetime  # the event's as_of (the latest reported_at it includes), local time
    reported: int
    total: int
    called: tuple[str, ...]  # the leader, or the qualified pair
    batch: int  # the simulated minute (batch) whose messages made it


@dataclass
class Night:
    """What the engine said over one round."""

    calls: dict[Area, Call] = field(default_factory=dict)
    decided: Counter[str] = field(default_factory=Counter)  # per level
    undecided: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    rejected: int = 0
    cpu: float = 0.0


@dataclass
class Truth:
    """One round from the file alone: plain sums, no engine code."""

    candidates: list[str]
    #: bureau id -> (department, registered, votes in ``candidates`` order)
    bureaux: dict[str, tuple[str, int, tuple[int, ...]]]
    departments: list[str]  # in file order
    names: dict[str, str] = field(default_factory=dict)  # department code -> official name


def local(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(LOCAL)


def clock(moment: datetime | None) -> str:
    return moment.astimezone(LOCAL).strftime("%H:%M:%S") if moment else "never"


def batches_of(scenario: Scenario, size: int) -> list[list[TimedResult]]:
    """The reports (already in time order) in one batch per simulated minute, at most ``size`` each."""
    batches: list[list[TimedResult]] = []
    minute = None
    for report in scenario.reports:
        at = report.at.replace(second=0, microsecond=0)
        if not batches or at != minute or len(batches[-1]) >= size:
            batches.append([])
            minute = at
        batches[-1].append(report)
    return batches


# --------------------------------------------------------------------------------------------
# the engine


async def replay(settings: Settings, election: ElectionIndex, batches: list[list[TimedResult]]) -> Night:
    """The night through ``Pipeline``, batch by batch as the agents would; the calls it announced."""
    updates = settings.updates_topic
    producer = FakeProducer(decoded={"contributions", "nation", updates})
    pipeline = offline_pipeline(settings, election, producer)
    night = Night()
    offsets: dict[str, dict[int, int]] = {"c": {}, "n": {}}
    offset = 0
    began = time.process_time()
    for number, batch in enumerate(batches):
        records = []
        for report in batch:
            value = orjson.dumps(report.result.model_dump(mode="json", exclude_none=True))
            records.append(FakeEvent(settings.results_topic, 0, offset, report.result.bureau.encode(), value))
            offset += 1
        await pipeline.on_results([record.message for record in records])
        contributions = as_events(producer.take(pipeline.contributions), pipeline.contributions, offsets["c"])
        await pipeline.on_contributions(contributions)  # type: ignore[arg-type]  # stand-ins
        nation = as_events(producer.take(pipeline.nation), pipeline.nation, offsets["n"])
        await pipeline.on_contributions(nation)  # type: ignore[arg-type]
        for _, _, value in producer.take(updates):
            night.events += 1
            # orjson writes no spaces: the kind is read only from the events that are calls
            if b'"kind":"decided"' not in value and b'"kind":"undecided"' not in value:
                continue
            event = orjson.loads(value)
            if event["kind"] == "undecided":
                night.undecided.append(event)
                continue
            night.decided[event["level"]] += 1
            key = (event["level"], event["area"])
            if event["level"] in CALLED_LEVELS and key not in night.calls:
                night.calls[key] = Call(
                    level=event["level"],
                    area=event["area"],
                    name=event["name"],
                    at=local(event["as_of"]),
                    reported=event["bureaux_reported"],
                    total=event["bureaux_total"],
                    called=tuple(event["qualified"] or [event["leader"]]),
                    batch=number,
                )
    night.cpu = time.process_time() - began
    night.rejected = producer.counts.get(settings.rejected_topic, 0)
    return night


# --------------------------------------------------------------------------------------------
# the file alone


def read_truth(path: Path) -> Truth:
    """Every bureau of a ministry file with the csv module: its department, registered, votes."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        first = header.index("exprimes") + 1
        column = {name: header.index(name) for name in ("departement", "commune", "bureau", "inscrits")}
        truth = Truth(candidates=header[first:], bureaux={}, departments=[])
        seen: set[str] = set()
        for row in reader:
            department = row[column["departement"]]
            if department not in seen:
                seen.add(department)
                truth.departments.append(department)
            bureau = f"{department}{row[column['commune']]}-{row[column['bureau']]}"
            votes = tuple(int(v) for v in row[first:])
            truth.bureaux[bureau] = (department, int(row[column["inscrits"]]), votes)
    return truth


def official_votes(path: Path, candidates: list[str]) -> dict[str, tuple[tuple[int, ...], str]]:
    """An official table (departments or regions): code -> (votes in ``candidates`` order, name)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {row[next(iter(row))]: (tuple(int(row[c]) for c in candidates), row[list(row)[1]]) for row in rows}


def areas_of(department: str) -> list[Area]:
    region = REGION_OF_DEPARTMENT.get(department)
    areas: list[Area] = [("department", department), ("nation", NATION)]
    if region is not None:
        areas.append(("region", region))
    return areas


def top(votes: list[int] | tuple[int, ...], candidates: list[str], n: int) -> tuple[str, ...] | None:
    """The first ``n`` (sorted ids, as ``qualified`` lists them); None when the n-th ties the next."""
    ranked = sorted(range(len(votes)), key=lambda k: -votes[k])
    if votes[ranked[n - 1]] == votes[ranked[n]]:
        return None
    return tuple(sorted(candidates[k] for k in ranked[:n]))


def safe(votes: list[int], remaining: int, n: int) -> bool:
    """The bound: the n-th's lead over the next exceeds the registered voters still to report."""
    ranked = sorted(votes, reverse=True)
    return ranked[n - 1] - ranked[n] > remaining


@dataclass
class Check:
    """Per area, from the file: the final outcome, and the first batch when the bound held."""

    final: dict[Area, tuple[str, ...] | None]
    first_safe: dict[Area, tuple[int, int, datetime]]  # batch, bureaux reported, latest reported_at
    bureaux: Counter[Area]
    all_in: dict[Area, datetime]


def check_file(truth: Truth, batches: list[list[TimedResult]], n: int) -> Check:
    """Walk the batches over plain sums: when would the bound first hold, and who wins at the end."""
    size = len(truth.candidates)
    registered: Counter[Area] = Counter()
    bureaux: Counter[Area] = Counter()
    final: dict[Area, list[int]] = {}
    for department, inscrits, votes in truth.bureaux.values():
        for area in areas_of(department):
            registered[area] += inscrits
            bureaux[area] += 1
            sums = final.setdefault(area, [0] * size)
            for k, v in enumerate(votes):
                sums[k] += v
    counted: dict[Area, list[int]] = {area: [0] * size for area in final}
    counted_registered: Counter[Area] = Counter()
    counted_bureaux: Counter[Area] = Counter()
    latest: dict[Area, datetime] = {}
    first_safe: dict[Area, tuple[int, int, datetime]] = {}
    for number, batch in enumerate(batches):
        touched: set[Area] = set()
        for report in batch:
            department, inscrits, votes = truth.bureaux[report.result.bureau]
            for area in areas_of(department):
                sums = counted[area]
                for k, v in enumerate(votes):
                    sums[k] += v
                counted_registered[area] += inscrits
                counted_bureaux[area] += 1
                latest[area] = max(latest.get(area, report.at), report.at)
                touched.add(area)
        for area in touched:
            if area not in first_safe and safe(counted[area], registered[area] - counted_registered[area], n):
                first_safe[area] = (number, counted_bureaux[area], latest[area].astimezone(LOCAL))
    return Check(
        final={area: top(sums, truth.candidates, n) for area, sums in final.items()},
        first_safe=first_safe,
        bureaux=bureaux,
        all_in={area: moment.astimezone(LOCAL) for area, moment in latest.items()},
    )


def check_official(truth: Truth, data: Path, number: int) -> list[str]:
    """The plain sums against the ministry's definitive tables (departments, regions): equal."""
    problems = []
    sums: dict[Area, list[int]] = {}
    for department, _, votes in truth.bureaux.values():
        for area in areas_of(department):
            total = sums.setdefault(area, [0] * len(votes))
            for k, v in enumerate(votes):
                total[k] += v
    for level, table in (("department", "departement"), ("region", "region")):
        official = official_votes(data / f"official/off_T{number}_definitif_{table}.csv", truth.candidates)
        mine = {area: tuple(v) for (at, area), v in sums.items() if at == level}
        if level == "department":
            truth.names = {code: name for code, (_, name) in official.items()}
        if set(mine) != set(official):
            problems.append(f"round {number}: {level}s {sorted(set(mine) ^ set(official))} in one side only")
        problems += [
            f"round {number}: {level} {code} sums {mine[code]} != official {votes}"
            for code, (votes, _) in official.items()
            if code in mine and mine[code] != votes
        ]
    return problems


def verify(night: Night, check: Check, election: str) -> list[str]:
    """Every call against the file: right, made as soon as the bound held and not before."""
    problems = []
    for area, final in check.final.items():
        if area[0] not in CALLED_LEVELS:
            continue
        call = night.calls.get(area)
        where = f"{election} {area[0]} {area[1]}"
        if call is None:
            if final is not None:
                problems.append(f"{where}: never called, final {'+'.join(final)}")
            continue
        if final is None or call.called != final:
            final_text = "+".join(final) if final else "a tie"
            problems.append(
                f"WRONG CALL {where} ({call.name}): called {'+'.join(call.called)} at {clock(call.at)} "
                f"with {call.reported}/{call.total} bureaux; final {final_text}"
            )
        first = check.first_safe.get(area)
        if first is None or first[0] != call.batch:
            when = f"batch {first[0]} ({clock(first[2])})" if first else "never"
            problems.append(
                f"{where}: called in batch {call.batch} ({clock(call.at)}), the bound first held in {when}"
            )
        elif call.reported != first[1] or call.total != check.bureaux[area] or call.at != first[2]:
            problems.append(
                f"{where}: {call.reported}/{call.total} bureaux as of {clock(call.at)} in the call, "
                f"{first[1]}/{check.bureaux[area]} as of {clock(first[2])} in the file by then"
            )
    for event in night.undecided:
        problems.append(f"{election}: undecided {event['level']} {event['area']} at {event['as_of']}")
    return problems


# --------------------------------------------------------------------------------------------
# output


@dataclass
class Round:
    election: str
    title: str
    qualify: int | None
    polls_close: datetime
    batches: int
    reports: int
    night: Night
    check: Check
    truth: Truth


def called_text(call: Call) -> str:
    return " + ".join(call.called)


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %"


def by_marks(calls: list[Call]) -> list[tuple[str, int]]:
    """How many were called at or before each mark (local time)."""
    return [(mark, sum(clock(c.at) <= f"{mark}:00" for c in calls)) for mark in MARKS]


def departments(one: Round) -> list[Call]:
    return [c for (level, _), c in one.night.calls.items() if level == "department"]


def lead_time(one: Round, calls: list[Call]) -> float:
    """Median minutes between a call and its area's last report."""
    return statistics.median((one.check.all_in[(c.level, c.area)] - c.at).total_seconds() / 60 for c in calls)


def summary(one: Round) -> list[str]:
    calls = departments(one)
    ordered = sorted(calls, key=lambda c: (c.at, c.area))
    nation = one.night.calls.get(("nation", NATION))
    lines = [
        f"{one.election} ({one.title}), polls closed {one.polls_close.strftime('%H:%M')}: "
        f"{one.reports:,} reports in {one.batches} batches (one per simulated minute), "
        f"{one.night.events:,} events, {sum(one.night.decided.values()):,} decided "
        f"({', '.join(f'{level} {n}' for level, n in sorted(one.night.decided.items()))}), "
        f"{len(one.night.undecided)} undecided, {one.night.rejected} rejected, "
        f"engine CPU {one.night.cpu:.1f} s",
        f"  departments decided by (of {len(calls)}): "
        + ", ".join(f"{mark} {n}" for mark, n in by_marks(calls)),
        f"  median call {lead_time(one, calls):.0f} min before the department's last report",
        "  earliest: " + "; ".join(dept_text(c) for c in ordered[:3]),
        "  latest:   " + "; ".join(dept_text(c) for c in ordered[-3:]),
    ]
    if nation is not None:
        lines.append(
            f"  nation: {called_text(nation)} at {clock(nation.at)}, "
            f"{nation.reported:,}/{nation.total:,} bureaux ({percent(nation.reported, nation.total)})"
        )
    regions = sorted(
        (c for (level, _), c in one.night.calls.items() if level == "region"), key=lambda c: c.at
    )
    lines.append(
        "  regions: "
        + "; ".join(f"{c.name} {clock(c.at)[:5]} ({percent(c.reported, c.total)})" for c in regions)
    )
    return lines


def dept_text(call: Call) -> str:
    return f"{call.area} {call.name} {clock(call.at)} ({call.reported}/{call.total}, {called_text(call)})"


def markdown(rounds: list[Round], seed: int, settings: Settings, data: str, problems: list[str]) -> str:
    t1, t2 = rounds
    n1 = t1.night.calls.get(("nation", NATION))
    n2 = t2.night.calls.get(("nation", NATION))
    out = [
        "# When each department is called: the 2017 nights",
        "",
        "Generated by `bench/calls_2017.py` (do not edit by hand: run it again). Both rounds of the",
        "2017 presidential election are replayed offline through the engine's own code, and every",
        "call it made is checked against plain sums over the ministry's files.",
        "",
        "## What a call is, and why it is never wrong",
        "",
        "An area (a commune, circonscription, department, region or the nation) is **decided** when",
        "its leader's margin over the runner-up exceeds the registered voters of its bureaux that have",
        "not reported yet. Those bureaux can bring at most that many ballots: even if every voter",
        "registered there voted, and all for the runner-up (or all for any other candidate), the",
        "leader would stay ahead. No outcome of the rest can overturn the leader, and the engine",
        "announces it once, as an `UpdateEvent` of kind `decided`. With",
        "`qualify: N` (round 1 of a presidential election: `qualify: 2`, the first two go to round 2)",
        "the call is about the set of the first N: it is decided when the N-th's lead over the",
        "(N+1)-th exceeds the same bound, and the event's `qualified` lists the pair. Who leads",
        "within the pair is not part of the call.",
        "",
        "The bound uses only the roll (registered voters per bureau, known before the night) and the",
        "counted reports, never a forecast: a call can only be reopened by a *correction* of a",
        "bureau already counted (a higher `seq`), which the engine then announces as `undecided`.",
        "The replays below have no corrections (each bureau reports once), so no call may be",
        "reopened, and none was.",
        "",
        "The bound is cautious: it assumes a turnout of 100 % in the bureaux still out, all for one",
        "candidate. A department whose leader is far ahead is called early; one where the top two",
        "(round 2) or the second and third (round 1) are close is called only when nearly all of its",
        "bureaux are in, or with its last one.",
        "",
        "## How the figures were produced",
        "",
        "```",
        f".venv/bin/python bench/calls_2017.py --data {data} --seed {seed} --doc docs/calls.md",
        "```",
        "",
        "* **The engine, offline.** The same `Pipeline` the worker runs (routing, the tally of",
        "  bureaux into communes, circonscriptions and departments, departments into regions and the",
        "  nation, change detection), on the stand-ins of `stream/testing.py` for Kafka, the table and",
        "  Redis, as `bench/tally_cpu.py` uses them. The `decided` and `undecided` events are read",
        "  from what the pipeline sends to the updates topic.",
        "* **The evening.** `stream.sources.scenario.scenario_from_ministry(file, election,",
        "  polls_close, seed)`: every bureau of the file reports once (`seq` 1), at polls closing",
        "  (19:00 local time, `KNOWN_POLLS_CLOSE`) plus a delay from `report_delay`: 15 minutes plus",
        "  a log-normal around 88 minutes (σ 0.4), 15 to 50 minutes more in communes of 20 bureaux",
        "  or more (big cities closed at 20:00 and count longer), an extra exponential delay",
        "  (mean 45 min) for 6 % of bureaux, at most 270 minutes (23:30). "
        f"Random seed {seed}; both rounds draw",
        "  the same delays per bureau (same seed, same bureaux in the same order).",
        f"* **Batches.** The reports, in time order, are fed one simulated minute at a time (at most "
        f"{settings.batch_size:,}",
        "  per batch, `SOIREE_BATCH_SIZE`), routed, tallied, then tallied into the nation, as the",
        "  agents would. A call's time is the event's `as_of`: the latest `reported_at` the area's",
        "  total includes, so within the minute of the batch that made it; the bureaux reported are",
        "  the event's `bureaux_reported`.",
        "* **Round 1** is defined with `qualify: 2` (`round: 1`), round 2 with no `qualify`",
        "  (`round: 2`); everything else as `soiree election create --from-ministry` defines them.",
        "* **Checked without engine code.** The script also reads each file with the `csv` module",
        "  and, on plain sums of its bureaux, checks for every department, region and the nation",
        "  that the call names the final leader (round 2) or the final first two (round 1), that",
        "  the bound held on the bureaux reported by the minute of the call and not a minute",
        "  earlier (the call came as soon as it was safe, never before), and that no area was left",
        "  uncalled; also that each call's `bureaux_reported` and `as_of` are the file's for the",
        "  bureaux reported by then. Its sums equal the ministry's definitive department and region",
        "  tables (departments grouped into regions by `stream/domain/regions.py`, which this",
        "  confirms). Any failure makes it exit with status 1. "
        + ("This run had none." if not problems else f"This run had {len(problems)}:"),
        *(f"  * {problem}" for problem in problems),
        "",
        "Limits of the simulation: the reporting curve is drawn, not the order in which bureaux",
        "really reported in 2017; it is the same everywhere, overseas included (whose time zones",
        "and earlier voting are not modelled: Saint-Pierre-et-Miquelon and Wallis-et-Futuna, with",
        "4 and 1 bureaux here, are called first simply because they are small); and there are no",
        "corrections, late or missing bureaux.",
        "",
        "## Summary",
        "",
        "Departments decided by each time (local time, 107 departments: 101 departments, 5",
        "overseas collectivities and the French abroad, ZZ):",
        "",
        "| by | " + " | ".join(MARKS) + " |",
        "|---|" + "---|" * len(MARKS),
    ]
    for one in rounds:
        out.append(f"| {one.title} | " + " | ".join(str(n) for _, n in by_marks(departments(one))) + " |")
    out += [
        "",
        *why_nation(rounds),
        "",
        "| | round 1 (the pair) | round 2 (the winner) |",
        "|---|---|---|",
        f"| called | {called_text(n1) if n1 else '-'} | {called_text(n2) if n2 else '-'} |",
        f"| nation called at | {nation_text(n1)} | {nation_text(n2)} |",
        f"| first department | {first_last(t1, 0)} | {first_last(t2, 0)} |",
        f"| last department | {first_last(t1, -1)} | {first_last(t2, -1)} |",
        f"| first of the 101 departments in a region | {first_last(t1, 0, True)} "
        f"| {first_last(t2, 0, True)} |",
        f"| median department: call before its last report | {lead_time(t1, departments(t1)):.0f} min "
        f"| {lead_time(t2, departments(t2)):.0f} min |",
        f"| median department: bureaux reported at the call | {median_share(departments(t1))} "
        f"| {median_share(departments(t2))} |",
        f"| `decided` events (all levels) | {sum(t1.night.decided.values()):,} "
        f"| {sum(t2.night.decided.values()):,} |",
        f"| `undecided` events | {len(t1.night.undecided)} | {len(t2.night.undecided)} |",
        f"| reports, batches | {t1.reports:,}, {t1.batches} | {t2.reports:,}, {t2.batches} |",
        "",
        "### Regions",
        "",
        "| code | region | round 1: decided at | bureaux then | pair | round 2: decided at | bureaux then |"
        " winner |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for code in REGION_NAMES:
        r1 = t1.night.calls.get(("region", code))
        r2 = t2.night.calls.get(("region", code))
        out.append(f"| {code} | {REGION_NAMES[code]} | {cells(r1)} | {cells(r2)} |")
    out += [
        "",
        "## Every department",
        "",
        "Bureaux reported at the call / the department's bureaux; *all in*: its last report.",
        "",
    ]
    for one in rounds:
        what = "pair" if one.qualify else "winner"
        out += [
            "<details>",
            f"<summary>{one.title}: 107 departments, in code order</summary>",
            "",
            f"| code | department | decided at | bureaux then | share | {what} | all in |",
            "|---|---|---|---|---|---|---|",
        ]
        for code in one.truth.departments:
            call = one.night.calls.get(("department", code))
            name = one.truth.names.get(code, code)
            if call is None:
                out.append(f"| {code} | {name} | never | | | | |")
                continue
            all_in = clock(one.check.all_in[("department", code)])
            out.append(
                f"| {code} | {call.name} | {clock(call.at)} | {call.reported:,} / {call.total:,} "
                f"| {percent(call.reported, call.total)} | {called_text(call)} | {all_in} |"
            )
        out += ["", "</details>", ""]
    return "\n".join(out)


def why_nation(rounds: list[Round]) -> list[str]:
    """The nation's final margin that the bound had to beat, per round (from the file)."""
    lines = []
    for one in rounds:
        n = one.qualify or 1
        sums = [0] * len(one.truth.candidates)
        registered = 0
        for _, inscrits, votes in one.truth.bureaux.values():
            registered += inscrits
            for k, v in enumerate(votes):
                sums[k] += v
        ranked = sorted(range(len(sums)), key=lambda k: -sums[k])
        ahead, behind = ranked[n - 1], ranked[n]
        lead = sums[ahead] - sums[behind]
        what = "the second's (" if n == 2 else "the winner's ("
        lines.append(
            f"* {one.title.capitalize()}: {what}{one.truth.candidates[ahead]}) final lead over "
            f"{one.truth.candidates[behind]} is {lead:,} votes, {100 * lead / registered:.1f} % of the "
            f"{registered:,} registered. The nation can be called only once the lead at the time "
            "exceeds the registered voters still out: with a final lead of that size, only once "
            f"roughly {100 * lead / registered:.1f} % of the registered or fewer are left."
        )
    return lines


def nation_text(call: Call | None) -> str:
    if call is None:
        return "never"
    return (
        f"{clock(call.at)}, {call.reported:,} / {call.total:,} bureaux ({percent(call.reported, call.total)})"
    )


def first_last(one: Round, index: int, in_region: bool = False) -> str:
    calls = [c for c in departments(one) if not in_region or c.area in REGION_OF_DEPARTMENT]
    call = sorted(calls, key=lambda c: (c.at, c.area))[index]
    return (
        f"{call.area} {call.name}, {clock(call.at)} ({call.reported:,} / {call.total:,}, {called_text(call)})"
    )


def median_share(calls: list[Call]) -> str:
    return f"{statistics.median(100 * c.reported / c.total for c in calls):.1f} %"


def cells(call: Call | None) -> str:
    if call is None:
        return "never | |"
    return (
        f"{clock(call.at)} | {call.reported:,} / {call.total:,} ({percent(call.reported, call.total)}) | "
        + (called_text(call))
    )


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0, help="the reporting curve's random seed")
    parser.add_argument("--doc", type=Path, help="write the markdown document there (docs/calls.md)")
    args = parser.parse_args()
    settings = Settings()
    rounds: list[Round] = []
    problems: list[str] = []
    for number, (election, filename, update) in enumerate(ROUNDS, start=1):
        path = args.data / filename
        if not path.is_file():
            sys.exit(
                f"{filename} is not in {args.data}: pass --data DIR (the folder of shared/data/pres2017)"
            )
        polls_close = KNOWN_POLLS_CLOSE[election]
        scenario = scenario_from_ministry(path, election, polls_close, seed=args.seed)
        definition = scenario.election.model_copy(update=update)
        index = ElectionIndex.from_json(definition.model_dump_json().encode())
        batches = batches_of(scenario, settings.batch_size)
        night = asyncio.run(replay(settings, index, batches))
        truth = read_truth(path)
        if set(truth.bureaux) != {r.result.bureau for r in scenario.reports}:
            sys.exit(f"{filename}: the scenario's bureaux are not the file's")
        problems += check_official(truth, args.data, number)
        qualify = update.get("qualify")
        check = check_file(truth, batches, qualify or 1)
        problems += verify(night, check, election)
        title = "round 1" if number == 1 else "round 2"
        one = Round(
            election, title, qualify, polls_close, len(batches), len(scenario.reports), night, check, truth
        )
        rounds.append(one)
        print("\n".join(summary(one)))
    if args.doc is not None:
        data = "../shared/data/pres2017" if args.data == DEFAULT_DATA else str(args.data)
        args.doc.write_text(markdown(rounds, args.seed, settings, data, problems) + "\n")
        print(f"wrote {args.doc}")
    if problems:
        print(f"{len(problems)} problem(s):", *problems, sep="\n  ")
        sys.exit(1)
    calls = sum(len(one.night.calls) for one in rounds)
    print(
        f"checked: {calls} calls (departments, regions, nation, both rounds) right and as early as the bound"
    )


if __name__ == "__main__":
    main()
