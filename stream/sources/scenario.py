"""Election nights to replay: the generated seed night, recorded nights on disk, ministry files.

The seed night is the second round of the French Socialist ("Belle Alliance populaire") primary,
29 January 2017. Only a news report of it survives (national shares, voters, and the Loire and
Saint-Étienne figures), no per-bureau data, so ``seed_scenario`` generates one deterministically
that agrees with every published figure (``Scenario.facts``); the tests check them with independent
sums. Nothing here reads ``../shared``: the demo must run from a clean clone.

A recorded night is a JSON Lines file: the first line ``{"scenario": {...}}`` holds the election
definition (``election``, ``name``, ``candidates``, ``bureaux``) plus ``polls_close`` and ``facts``;
every further line is one report ``{"at": "<ISO time>", "result": {<BureauResult>}}``.
"""

from __future__ import annotations

import copy
import csv
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError, model_validator

from stream.domain.messages import BureauResult, Election, InvalidResult, check_against_election
from stream.errors import ScenarioError
from stream.sources.ministry import (
    department_names,
    election_from_ministry,
    election_id_from_filename,
    results_from_ministry,
)

__all__ = [
    "KNOWN_POLLS_CLOSE",
    "SEED_ELECTION",
    "SEED_NAMES",
    "SEED_POLLS_CLOSE",
    "Scenario",
    "ScenarioError",
    "TimedResult",
    "load_scenario",
    "report_delay",
    "resolve",
    "scenario_from_ministry",
    "seed_scenario",
    "write_scenario",
]

SEED_ELECTION = "primaire-gauche-2017-t2"
SEED_NAME = "Primaire citoyenne de la gauche 2017, 2nd tour"
#: Names that ``resolve`` maps to the generated seed night.
SEED_NAMES = frozenset({"seed", "primaire-2017", SEED_ELECTION})
_CET = timezone(timedelta(hours=1))
SEED_POLLS_CLOSE = datetime(2017, 1, 29, 19, 0, tzinfo=_CET)
#: When most bureaux closed (big cities closed an hour later; the reporting curve makes them late).
KNOWN_POLLS_CLOSE: dict[str, datetime] = {
    "pres2017-t1": datetime(2017, 4, 23, 19, 0, tzinfo=timezone(timedelta(hours=2))),
    "pres2017-t2": datetime(2017, 5, 7, 19, 0, tzinfo=timezone(timedelta(hours=2))),
}

_SEED = 20170129
_HAMON, _VALLS = "HAMON", "VALLS"
_CANDIDATES = [{"id": _HAMON, "name": "Benoît Hamon"}, {"id": _VALLS, "name": "Manuel Valls"}]

# The published figures (news report of the night, ../shared/seed) and the two national values the
# report only gives roughly ("a little over two million voters", "about 400,000 more than in the
# first round"), fixed here so that the night is exact.
_BUREAUX_FR = 7530
_VOTERS_FR = 2_045_339
_FIRST_ROUND_FR = 1_646_000
_HAMON_SHARE_FR = 0.5872
_LOIRE = "42"
_LOIRE_BUREAUX = 65
_LOIRE_VOTERS = 18_501
_LOIRE_HAMON = 11_089
_LOIRE_VALLS = 7_146
_LOIRE_FIRST_ROUND = 14_697
_SAINT_ETIENNE = "42218"
_SE_VOTERS = 4_503
_SE_BUREAUX = 14
_SE_HAMON_SHARE = 0.6385  # "presque 64 %"
_SE_HIGH_BUREAUX = 4  # "dans plusieurs bureaux son score dépasse même les 70 %"

_FACTS: dict[str, Any] = {
    "source": "news report of the night, 29 January 2017 (Loire); national figures as announced",
    "date": "2017-01-29",
    "bureaux": {"FR": _BUREAUX_FR, _LOIRE: _LOIRE_BUREAUX},
    "voters": {"FR": _VOTERS_FR, _LOIRE: _LOIRE_VOTERS, _SAINT_ETIENNE: _SE_VOTERS},
    "first_round_voters": {"FR": _FIRST_ROUND_FR, _LOIRE: _LOIRE_FIRST_ROUND},
    "votes": {_LOIRE: {_HAMON: _LOIRE_HAMON, _VALLS: _LOIRE_VALLS}},
    "blank_or_invalid": {_LOIRE: _LOIRE_VOTERS - _LOIRE_HAMON - _LOIRE_VALLS},
    "shares": {"FR": {_HAMON: 58.72, _VALLS: 41.28}, _LOIRE: {_HAMON: 60.8, _VALLS: 39.2}},
    "turnout_change_pct": {_LOIRE: 25.9},
    "hamon_share_range": {_SAINT_ETIENNE: [63.5, 64.0]},
    "min_bureaux_hamon_over_70": {_SAINT_ETIENNE: 3},
    "notes": (
        "voters.FR and first_round_voters.FR are this scenario's values for 'a little over two million' "
        "and 'about 400,000 more than in the first round'; shares are of expressed votes; "
        "French citizens abroad (ZZ) voted online, so they have no bureau here."
    ),
}

# Per department: code, registered voters (presidential 2017, round 1, used as the roll of the
# area its primary bureaux served and as its weight), then its largest commune: code, name,
# registered. Taken from the ministry's per-bureau file; abroad (ZZ) left out.
_DATA = Path(__file__).with_name("data")
_DEPARTMENTS = "seed_departments.csv"

# The Loire's primary bureaux, in real communes (code, name, registered 2017, bureaux that night).
_LOIRE_COMMUNES = "seed_loire_communes.csv"

_OVERSEAS_WEIGHT = 0.4  # fewer primary bureaux, and lower turnout, per registered voter overseas
_BIG_CITY_BUREAUX = 10  # a commune with this many bureaux counts (and reports) like a big city


class TimedResult(BaseModel):
    """One report of the night: ``result`` becomes known at ``at``."""

    at: datetime
    result: BureauResult


class Scenario(BaseModel):
    """A night to replay: the election, its reports sorted by time, and the figures it must reproduce."""

    election: Election
    reports: list[TimedResult]
    facts: dict[str, Any] = {}
    polls_close: datetime

    @model_validator(mode="after")
    def _sorted(self) -> Scenario:
        """Reports in time order (stable: a bureau's seq 1 stays before its seq 2 at the same time)."""
        if any(a.at > b.at for a, b in zip(self.reports, self.reports[1:])):
            self.reports = sorted(self.reports, key=lambda r: r.at)
        return self

    def final(self) -> dict[str, BureauResult]:
        """Latest ``seq`` per bureau: what the standings must show once every report is in."""
        latest: dict[str, BureauResult] = {}
        for report in self.reports:
            known = latest.get(report.result.bureau)
            if known is None or report.result.seq > known.seq:
                latest[report.result.bureau] = report.result
        return latest


# --------------------------------------------------------------------------------------------
# helpers


def _apportion(total: int, weights: Sequence[float], caps: Sequence[int] | None = None) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder), none above its cap.

    This is how every generated count hits its published total exactly.
    """
    n = len(weights)
    if n == 1 and (caps is None or total <= caps[0]):
        return [total]
    if caps is not None and total > sum(caps):
        raise ValueError(f"cannot place {total} within caps summing to {sum(caps)}")
    result = [0] * n
    free = list(range(n))
    remaining = total
    while True:
        weight = math.fsum(weights[i] for i in free)
        if remaining and weight <= 0:
            raise ValueError("no weight left to apportion to")
        scale = remaining / weight if weight else 0.0
        quotas = [weights[i] * scale for i in free]
        if caps is not None:
            over = {i for i, q in zip(free, quotas) if q > caps[i]}
            if over:
                for i in over:
                    result[i] = caps[i]
                    remaining -= caps[i]
                free = [i for i in free if i not in over]
                continue
        floors = [math.floor(q) for q in quotas]
        left = remaining - sum(floors)
        order = sorted(range(len(free)), key=lambda k: (floors[k] - quotas[k], free[k]))
        for k in order[:left]:
            floors[k] += 1
        for i, value in zip(free, floors):
            result[i] = value
        return result


def report_delay(rng: random.Random, big_city: bool = False) -> timedelta:
    """Minutes from polls closing to a bureau's report: a few before 20:00, most 20:00-22:00,
    a long tail to about 23:30; big cities count later. Whole seconds, from 15 to 270 minutes."""
    for _ in range(20):
        minutes = 15 + rng.lognormvariate(math.log(88), 0.4)
        if big_city:
            minutes += rng.uniform(15, 50)
        if rng.random() < 0.06:
            minutes += rng.expovariate(1 / 45)
        if minutes <= 270:
            break
    minutes = min(minutes, 270.0)
    return timedelta(seconds=round(minutes * 60))


def _parse_table(name: str) -> list[list[str]]:
    """The rows of one of the seed's reference tables (``sources/data/<name>``), header left out."""
    with (_DATA / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))[1:]


def _synthetic_code(k: int) -> str:
    """Three-character commune code ``S`` + base 36, never a real ministry code (those are digits)."""
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "S" + digits[k // 36] + digits[k % 36]


@dataclass
class _Bureau:
    bureau: str
    commune: str
    commune_name: str
    department: str
    department_name: str
    registered: int
    big_city: bool
    turnout: float = 0.0
    lean: float = 0.0  # Hamon's share before scaling
    voters: int = 0
    spoiled: int = 0  # blank + invalid
    blank: int = 0
    invalid: int = 0
    hamon: int = 0
    valls: int = 0
    at: datetime = SEED_POLLS_CLOSE

    def roll(self) -> dict[str, Any]:
        return {
            "bureau": self.bureau,
            "commune": self.commune,
            "commune_name": self.commune_name,
            "department": self.department,
            "department_name": self.department_name,
            "registered": self.registered,
        }

    def result(self, seq: int, at: datetime, **override: int) -> dict[str, Any]:
        counts = {
            "voters": self.voters,
            "blank": self.blank,
            "invalid": self.invalid,
            _HAMON: self.hamon,
            _VALLS: self.valls,
        } | override
        return {
            "election": SEED_ELECTION,
            "bureau": self.bureau,
            "seq": seq,
            "reported_at": at,
            "registered": self.registered,
            "voters": counts["voters"],
            "blank": counts["blank"],
            "invalid": counts["invalid"],
            "votes": {_HAMON: counts[_HAMON], _VALLS: counts[_VALLS]},
        }


def _commune_bureaux(
    department: str,
    department_name: str,
    code: str,
    name: str,
    count: int,
    registered: int,
    rng: random.Random,
    big_city: bool,
) -> list[_Bureau]:
    """``count`` bureaux of one commune sharing ``registered`` (with some spread between them)."""
    rolls = _apportion(registered, [rng.uniform(0.8, 1.2) for _ in range(count)])
    commune = department + code
    return [
        _Bureau(f"{commune}-{k + 1:04d}", commune, name, department, department_name, rolls[k], big_city)
        for k in range(count)
    ]


def _layout(rng: random.Random) -> list[_Bureau]:
    """The roll: how many bureaux each department had, in which communes, serving how many registered."""
    names = department_names()
    table = [row for row in _parse_table(_DEPARTMENTS)]
    others = [row for row in table if row[0] != _LOIRE]
    weights = [int(row[1]) * (_OVERSEAS_WEIGHT if row[0].startswith("Z") else 1.0) for row in others]
    spare = _BUREAUX_FR - _LOIRE_BUREAUX - len(others)
    counts = [1 + extra for extra in _apportion(spare, weights)]

    bureaux: list[_Bureau] = []
    for (code, registered, city_code, city_name, city_registered), n in zip(others, counts):
        dept_name = names.get(code, code)
        registered_i, city_i = int(registered), int(city_registered)
        share = city_i / registered_i
        if n == 1:
            n_city, city_i = 1, registered_i  # one bureau, in the main town, serving the department
        elif share > 0.999:
            n_city = n  # Paris: one commune
        else:
            n_city = min(n - 1, max(1, round(n * share * 1.25)))
        bureaux += _commune_bureaux(
            code, dept_name, city_code, city_name, n_city, city_i, rng, n_city >= _BIG_CITY_BUREAUX
        )
        rest = n - n_city
        if rest:
            # Away from the main town a primary bureau serves a canton-sized area of several villages.
            sizes: list[int] = []
            while sum(sizes) < rest:
                sizes.append(min(rest - sum(sizes), rng.choices((1, 2, 3), (0.8, 0.15, 0.05))[0]))
            areas = _apportion(registered_i - city_i, [s * rng.uniform(0.6, 1.4) for s in sizes])
            for k, (size, area) in enumerate(zip(sizes, areas)):
                bureaux += _commune_bureaux(
                    code,
                    dept_name,
                    _synthetic_code(k),
                    f"{dept_name}, secteur {k + 1}",
                    size,
                    area,
                    rng,
                    False,
                )

    loire_name = names.get(_LOIRE, "Loire")
    loire_registered = next(int(row[1]) for row in table if row[0] == _LOIRE)
    communes = _parse_table(_LOIRE_COMMUNES)
    # Small towns' bureaux also serve the villages around them: share out the rest of the roll.
    outside = loire_registered - sum(int(row[2]) for row in communes)
    singles = [int(row[2]) * rng.uniform(0.6, 1.4) if int(row[3]) == 1 else 0.0 for row in communes]
    extra = _apportion(outside, singles)
    for (code, name, roll_size, count), more in zip(communes, extra):
        bureaux += _commune_bureaux(
            _LOIRE,
            loire_name,
            code,
            name,
            int(count),
            int(roll_size) + more,
            rng,
            int(count) >= _BIG_CITY_BUREAUX,
        )
    return bureaux


def _fill(
    group: list[_Bureau],
    total: int,
    attr: str,
    weight: Callable[[_Bureau], float],
    cap: Callable[[_Bureau], int],
) -> None:
    for bureau, value in zip(group, _apportion(total, [weight(b) for b in group], [cap(b) for b in group])):
        setattr(bureau, attr, value)


def _generate(rng: random.Random) -> list[_Bureau]:
    bureaux = _layout(rng)
    se = [b for b in bureaux if b.commune == _SAINT_ETIENNE]
    loire = [b for b in bureaux if b.department == _LOIRE and b.commune != _SAINT_ETIENNE]
    rest = [b for b in bureaux if b.department != _LOIRE]

    # Turnout and lean: a department effect, a big-town effect, and bureau noise.
    dept_turnout: dict[str, float] = {}
    dept_lean: dict[str, float] = {}
    for b in bureaux:
        if b.department not in dept_turnout:
            dept_turnout[b.department] = rng.lognormvariate(0, 0.2) * (
                0.5 if b.department.startswith("Z") else 1.0
            )
            dept_lean[b.department] = rng.gauss(0, 0.05)
        b.turnout = (
            0.045 * dept_turnout[b.department] * (1.25 if b.big_city else 1.0) * rng.lognormvariate(0, 0.15)
        )
        b.lean = min(0.88, max(0.25, _HAMON_SHARE_FR + dept_lean[b.department] + rng.gauss(0, 0.045)))

    def roll_cap(b: _Bureau) -> int:
        return b.registered

    _fill(se, _SE_VOTERS, "voters", lambda b: b.registered * b.turnout, roll_cap)
    _fill(loire, _LOIRE_VOTERS - _SE_VOTERS, "voters", lambda b: b.registered * b.turnout, roll_cap)
    _fill(rest, _VOTERS_FR - _LOIRE_VOTERS, "voters", lambda b: b.registered * b.turnout, roll_cap)

    # Blank and spoiled ballots: about 1 %, exact in the Loire (266).
    for b in bureaux:
        rate = 0.011 * rng.lognormvariate(0, 0.35)
        b.spoiled = min(b.voters, int(b.voters * rate + rng.random()))
    loire_spoiled = _LOIRE_VOTERS - _LOIRE_HAMON - _LOIRE_VALLS
    se_spoiled = round(loire_spoiled * _SE_VOTERS / _LOIRE_VOTERS)
    _fill(se, se_spoiled, "spoiled", lambda b: b.spoiled + 0.5, lambda b: b.voters)
    _fill(loire, loire_spoiled - se_spoiled, "spoiled", lambda b: b.spoiled + 0.5, lambda b: b.voters)
    for b in bureaux:
        b.blank = round(b.spoiled * rng.uniform(0.4, 0.7))
        b.invalid = b.spoiled - b.blank

    def expressed(b: _Bureau) -> int:
        return b.voters - b.spoiled

    # Hamon's votes. Saint-Étienne: near 64 %, over 70 % in a few bureaux.
    for b in rng.sample(se, _SE_HIGH_BUREAUX):
        b.lean = rng.uniform(0.725, 0.765)
    for b in se:
        if b.lean < 0.7:
            b.lean = min(0.68, max(0.5, rng.gauss(0.61, 0.03)))
    se_hamon = round(_SE_HAMON_SHARE * sum(expressed(b) for b in se))
    expressed_fr = sum(expressed(b) for b in bureaux)
    hamon_fr = round(_HAMON_SHARE_FR * expressed_fr)
    _fill(se, se_hamon, "hamon", lambda b: expressed(b) * b.lean, expressed)
    _fill(loire, _LOIRE_HAMON - se_hamon, "hamon", lambda b: expressed(b) * b.lean, expressed)
    _fill(rest, hamon_fr - _LOIRE_HAMON, "hamon", lambda b: expressed(b) * b.lean, expressed)
    for b in bureaux:
        b.valls = expressed(b) - b.hamon
        b.at = SEED_POLLS_CLOSE + report_delay(rng, b.big_city)
    return bureaux


def _self_check(final: list[_Bureau]) -> None:
    """Refuse to hand out a night that contradicts a published figure (guards generator edits)."""

    def total(group: list[_Bureau], attr: str) -> int:
        return sum(getattr(b, attr) for b in group)

    loire = [b for b in final if b.department == _LOIRE]
    se = [b for b in loire if b.commune == _SAINT_ETIENNE]
    hamon, valls = total(final, "hamon"), total(final, "valls")
    se_share = 100 * total(se, "hamon") / (total(se, "hamon") + total(se, "valls"))
    over_70 = sum(1 for b in se if b.hamon > 0.7 * (b.hamon + b.valls))
    checks = {
        "bureaux": len(final) == _BUREAUX_FR,
        "FR voters": total(final, "voters") == _VOTERS_FR,
        "FR Hamon share": round(100 * hamon / (hamon + valls), 2) == 58.72,
        "FR Valls share": round(100 * valls / (hamon + valls), 2) == 41.28,
        "Loire bureaux": len(loire) == _LOIRE_BUREAUX,
        "Loire voters": total(loire, "voters") == _LOIRE_VOTERS,
        "Loire Hamon": total(loire, "hamon") == _LOIRE_HAMON,
        "Loire Valls": total(loire, "valls") == _LOIRE_VALLS,
        "Saint-Étienne voters": total(se, "voters") == _SE_VOTERS,
        "Saint-Étienne share": 63.5 <= se_share < 64.0,
        "Saint-Étienne over 70 %": over_70 >= 3,
        "counts": all(min(b.hamon, b.valls) >= 0 and b.voters <= b.registered for b in final),
    }
    broken = [name for name, ok in checks.items() if not ok]
    if broken:
        raise RuntimeError(f"seed scenario generator broke published figures: {', '.join(broken)}")


def _corrections(rng: random.Random, bureaux: list[_Bureau]) -> list[tuple[_Bureau, dict[str, int]]]:
    """A few first reports that were wrong (seq 1), each with what it said instead of the truth."""
    early = [b for b in bureaux if b.at <= SEED_POLLS_CLOSE + timedelta(hours=3)]
    chosen: list[tuple[_Bureau, dict[str, int]]] = []

    def pick(candidates: list[_Bureau]) -> _Bureau:
        taken = {b.bureau for b, _ in chosen}
        return rng.choice([b for b in candidates if b.bureau not in taken])

    # Candidates' columns swapped on entry: the bureau's leader flips, then flips back.
    b = pick(
        [b for b in early if b.department == _LOIRE and b.commune != _SAINT_ETIENNE and b.hamon > b.valls]
    )
    chosen.append((b, {_HAMON: b.valls, _VALLS: b.hamon}))
    # A typo: one hundred Hamon votes too many (and so one hundred voters).
    b = pick([b for b in early if b.commune == "75056" and b.voters + 100 <= b.registered])
    chosen.append((b, {_HAMON: b.hamon + 100, "voters": b.voters + 100}))
    # A tally sheet left out: some Valls ballots missing.
    b = pick([b for b in early if b.commune == _SAINT_ETIENNE and b.valls >= 40])
    missing = rng.randint(12, 30)
    chosen.append((b, {_VALLS: b.valls - missing, "voters": b.voters - missing}))
    # Blank and spoiled ballots entered in each other's boxes.
    b = pick([b for b in early if b.department not in (_LOIRE, "75") and b.blank != b.invalid])
    chosen.append((b, {"blank": b.invalid, "invalid": b.blank}))
    return chosen


def seed_scenario() -> Scenario:
    """The generated night of 29 January 2017; the same every call (fixed random seed)."""
    rng = random.Random(_SEED)
    bureaux = _generate(rng)
    _self_check(bureaux)
    reports: list[dict[str, Any]] = []
    corrected = _corrections(rng, bureaux)
    wrong = {b.bureau: override for b, override in corrected}
    for b in bureaux:
        if b.bureau in wrong:
            later = b.at + timedelta(seconds=rng.randint(20 * 60, 70 * 60))
            reports.append({"at": b.at, "result": b.result(1, b.at, **wrong[b.bureau])})
            reports.append({"at": later, "result": b.result(2, later)})
        else:
            reports.append({"at": b.at, "result": b.result(1, b.at)})
    reports.sort(key=lambda r: (r["at"], r["result"]["bureau"], r["result"]["seq"]))
    election = Election.model_validate(
        {
            "election": SEED_ELECTION,
            "name": SEED_NAME,
            "candidates": _CANDIDATES,
            "bureaux": [b.roll() for b in bureaux],
        }
    )
    return Scenario.model_validate(
        {
            "election": election,
            "reports": reports,
            "facts": copy.deepcopy(_FACTS),
            "polls_close": SEED_POLLS_CLOSE,
        }
    )


# --------------------------------------------------------------------------------------------
# files


def write_scenario(scenario: Scenario, path: Path) -> None:
    """Write ``scenario`` as JSON Lines (header line, then one line per report in time order)."""
    header = scenario.election.model_dump(mode="json") | {
        "polls_close": scenario.polls_close.isoformat(),
        "facts": scenario.facts,
    }
    with open(path, "wb") as out:
        out.write(orjson.dumps({"scenario": header}) + b"\n")
        for report in scenario.reports:
            out.write(
                orjson.dumps({"at": report.at.isoformat(), "result": report.result.model_dump(mode="json")})
            )
            out.write(b"\n")


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file written by ``write_scenario`` (or by hand); errors name file and line."""
    path = Path(path)
    election: Election | None = None
    header: dict[str, Any] = {}
    reports: list[TimedResult] = []
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ScenarioError(f"{where}: not valid JSON: {exc}") from None
            if not isinstance(data, dict):
                raise ScenarioError(f"{where}: expected a JSON object, got {type(data).__name__}")
            if election is None:
                header = data.get("scenario")  # type: ignore[assignment]
                if not isinstance(header, dict):
                    raise ScenarioError(
                        f'{where}: the first line must be {{"scenario": {{...}}}} with the election'
                    )
                definition = header["election"] if isinstance(header.get("election"), dict) else header
                if "polls_close" not in header:
                    raise ScenarioError(f"{where}: the scenario has no 'polls_close'")
                try:
                    election = Election.model_validate(
                        {k: v for k, v in definition.items() if k not in ("polls_close", "facts")}
                    )
                except ValidationError as exc:
                    raise ScenarioError(f"{where}: invalid election definition: {_reason(exc)}") from None
                continue
            try:
                report = TimedResult.model_validate(data)
            except ValidationError as exc:
                raise ScenarioError(f"{where}: invalid report: {_reason(exc)}") from None
            if report.result.election != election.election:
                raise ScenarioError(
                    f"{where}: result is for election {report.result.election!r}, "
                    f"the scenario is {election.election!r}"
                )
            try:
                check_against_election(report.result, election)
            except InvalidResult as exc:
                raise ScenarioError(f"{where}: {exc}") from None
            reports.append(report)
    if election is None:
        raise ScenarioError(f"{path}: empty scenario file")
    try:
        return Scenario.model_validate(
            {
                "election": election,
                "reports": reports,
                "facts": header.get("facts") or {},
                "polls_close": header["polls_close"],
            }
        )
    except ValidationError as exc:
        raise ScenarioError(f"{path}, line 1: {_reason(exc)}") from None


def scenario_from_ministry(path: Path, election: str, polls_close: datetime, seed: int = 0) -> Scenario:
    """A ministry per-bureau file as a night: every bureau once (seq 1), at a time from the usual curve."""
    path = Path(path)
    definition = election_from_ministry(path, election)
    per_commune = Counter(entry.commune for entry in definition.bureaux)
    commune_of = {entry.bureau: entry.commune for entry in definition.bureaux}
    rng = random.Random(seed)
    reports: list[TimedResult] = []
    totals: Counter[str] = Counter()
    for row in results_from_ministry(path, election):
        at = polls_close + report_delay(rng, per_commune[commune_of[row["bureau"]]] >= 20)
        row["reported_at"] = at
        result = BureauResult.model_validate(row)
        totals.update(registered=result.registered or 0, voters=result.voters)
        reports.append(TimedResult(at=at, result=result))
    facts = {
        "source": path.name,
        "bureaux": {"FR": len(reports)},
        "registered": {"FR": totals["registered"]},
        "voters": {"FR": totals["voters"]},
    }
    return Scenario(election=definition, reports=reports, facts=facts, polls_close=polls_close)


def resolve(name_or_path: str, polls_close: datetime | None = None) -> Scenario:
    """What ``soiree replay``/``demo`` accept: "seed" (or "primaire-2017"), a scenario file, or a
    ministry per-bureau file (.csv/.csv.gz; election id from its name, e.g. "pres2017-t1")."""
    key = str(name_or_path).strip()
    if key.lower() in SEED_NAMES:
        return seed_scenario()
    path = Path(key).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"no scenario {key!r}: not a known name ({', '.join(sorted(SEED_NAMES))}) and no such file"
        )
    if path.name.lower().endswith((".csv", ".csv.gz")):
        election = election_id_from_filename(path)
        close = polls_close or KNOWN_POLLS_CLOSE.get(election)
        if close is None:
            raise ScenarioError(
                f"{path}: cannot tell when polls closed for election {election!r}; pass polls_close"
            )
        return scenario_from_ministry(path, election, close)
    return load_scenario(path)
