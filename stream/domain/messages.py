"""The messages of PRODUCT.md as pydantic v2 models, and the checks that need an election's roll.

Everything here is pure: no Kafka, no Redis. ``parse_result`` turns raw bytes into a
``BureauResult`` or raises ``InvalidResult`` whose message says exactly what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Literal, Protocol, TypeVar

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from stream.domain.regions import REGION_NAMES, region_of
from stream.errors import InvalidResult

__all__ = [
    "MAX_COUNT",
    "Level",
    "Candidate",
    "Race",
    "RaceArea",
    "RuleName",
    "ReportStatus",
    "STATUSES",
    "check_races",
    "RollEntry",
    "Election",
    "BureauResult",
    "Cause",
    "UpdateEvent",
    "Standings",
    "Rejection",
    "InvalidResult",
    "parse_result",
    "check_against_election",
    "validate_result",
    "parse_turnout",
    "validate_turnout",
    "NATION",
    "LEVELS",
    "TurnoutReport",
    "TURNOUT_HOURS",
    "describe_payload",
    "make_rejection",
    "reason_kind",
]

#: No bureau counts more than this many ballots; bigger numbers are data-entry errors.
MAX_COUNT = 10_000_000
#: A rejection keeps at most this many characters of the payload (Kafka refuses messages > 1 MB).
MAX_REJECTED_PAYLOAD = 65_536
NATION = "FR"

Level = Literal["bureau", "commune", "circonscription", "department", "region", "nation"]
#: Levels from the bottom up; a bureau counts once at each.
LEVELS: tuple[Level, ...] = ("bureau", "commune", "circonscription", "department", "region", "nation")
Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]
#: The contract's ids (elections, areas, races, candidates, sources): letters (accents too),
#: digits, ``.``, ``_``, an apostrophe and ``-``, words separated by single spaces ("LE PEN");
#: never ``:`` ``|`` ``{`` ``}`` ``*``, other punctuation or control characters, which could
#: collide in Redis keys (``soiree:results:<election>:...``) or forge a log line.
ID_PATTERN = r"^[\w.'\-]+(?: [\w.'\-]+)*$"
ID_RULE = "letters, digits, '.', '_', an apostrophe or '-', words separated by single spaces"
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]


class Candidate(BaseModel):
    id: Identifier
    name: str
    party: Identifier | None = Field(None, description="the nuance (REM, LR…); required in races")


RuleName = Literal["legislative", "presidential", "plurality"]
#: Levels a race may cover: a race's area holds whole bureaux of one department or less.
RaceLevel = Literal["commune", "circonscription", "department"]


class RaceArea(BaseModel):
    level: RaceLevel
    id: Identifier


class Race(BaseModel):
    """One race of an election (a circonscription of the législatives, a commune of the
    municipales): its own candidates, its seats and the rules that elect them."""

    race: Identifier
    name: str
    area: RaceArea
    seats: Annotated[int, Field(ge=1)] = 1
    rules: RuleName
    candidates: list[Candidate] = Field(min_length=1)

    @model_validator(mode="after")
    def _rules_fit(self) -> Race:
        if self.rules != "plurality" and self.seats != 1:
            raise ValueError(f"race {self.race}: {self.rules} rules elect one seat, not {self.seats}")
        for candidate in self.candidates:
            if candidate.party is None:
                raise ValueError(f"race {self.race}: candidate {candidate.id} has no party")
        return self


class RollEntry(BaseModel):
    """One bureau of the roll; ``commune`` is the full id (department code + commune code)."""

    bureau: Identifier
    commune: Identifier
    commune_name: str = ""
    department: Identifier
    department_name: str = ""
    circonscription: Annotated[str, Field(pattern=r"^[^|]+-[0-9]{2}$")] | None = Field(
        None, description="legislative constituency, '<department>-<nn>' (42-01)"
    )
    circonscription_name: str = ""
    registered: Count
    race: Identifier | None = Field(
        None, description="the race the bureau votes in, when the election has races"
    )

    @model_validator(mode="after")
    def _commune_in_department(self) -> RollEntry:
        if not self.commune.startswith(self.department):
            raise ValueError(
                f"bureau {self.bureau}: commune id {self.commune!r} must start with its department code "
                f"{self.department!r}"
            )
        if self.circonscription is not None and not self.circonscription.startswith(self.department + "-"):
            raise ValueError(
                f"bureau {self.bureau}: circonscription {self.circonscription!r} must be "
                f"'{self.department}-<nn>' (its department code, a dash, two digits)"
            )
        return self


class Election(BaseModel):
    """An election definition; its roll of bureaux is authoritative."""

    model_config = ConfigDict(frozen=True, ignored_types=(cached_property,))

    election: Identifier
    name: str
    candidates: list[Candidate] = Field(
        default_factory=list, description="the one race's candidates; empty when the election has races"
    )
    bureaux: list[RollEntry] = Field(min_length=1)
    races: list[Race] | None = Field(
        None, description="races with their own candidates; each bureau names its race"
    )
    compare_to: Identifier | None = Field(
        None, description="an election whose roll shares bureau ids: standings gain reference and change"
    )
    round: Literal[1, 2] = 1
    qualify: Annotated[int, Field(ge=1)] | None = Field(
        None, description="the first N go through (presidential round 1: 2); decided covers the set"
    )
    publish_after: AwareDatetime | None = Field(
        None, description="no result or event is served over HTTP before (operators excepted)"
    )
    rehearsal: bool = Field(False, description="a rehearsal: the page says so on every screen")
    require_signature: bool = Field(
        False, description="every report must be signed by a source whose scope holds its bureau"
    )
    revision: Annotated[int, Field(ge=1)] = Field(
        1, description="the definition's revision: `election create --replace` registers the next one"
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> Election:
        if "~" in self.election:
            raise ValueError(f"election {self.election}: '~' may not appear in an election id")
        if self.compare_to == self.election:
            raise ValueError(f"election {self.election}: compare_to names the election itself")
        if self.races is None:
            if not self.candidates:
                raise ValueError(f"election {self.election}: no candidates (and no races)")
            placed = [entry.bureau for entry in self.bureaux if entry.race is not None]
            if placed:
                raise ValueError(
                    f"election {self.election}: bureau {placed[0]} names a race, the election has none"
                )
        else:
            check_races(self)
        if self.qualify is not None and self.qualify >= len(self.candidates):
            raise ValueError(
                f"election {self.election}: qualify = {self.qualify} needs more than "
                f"{self.qualify} candidates"
            )
        for what, ids in (
            ("candidate", self.candidate_list),
            ("bureau", [b.bureau for b in self.bureaux]),
        ):
            seen: set[str] = set()
            for item in ids:
                if item in seen:
                    raise ValueError(f"election {self.election}: {what} {item!r} appears twice")
                seen.add(item)
        communes: dict[str, str] = {}
        for entry in self.bureaux:
            if communes.setdefault(entry.commune, entry.department) != entry.department:
                raise ValueError(f"election {self.election}: commune {entry.commune} is in two departments")
        return self

    @cached_property
    def roll(self) -> dict[str, RollEntry]:
        return {entry.bureau: entry for entry in self.bureaux}

    @cached_property
    def candidate_list(self) -> list[str]:
        """Every candidate id: the one race's, or every race's in race order."""
        if self.races is None:
            return [c.id for c in self.candidates]
        return [c.id for race in self.races for c in race.candidates]

    @cached_property
    def candidate_ids(self) -> frozenset[str]:
        return frozenset(self.candidate_list)

    @cached_property
    def race_candidates(self) -> dict[str | None, frozenset[str]]:
        """The candidates a bureau's report may name, by its race (None: the single race)."""
        if self.races is None:
            return {None: self.candidate_ids}
        return {race.race: frozenset(c.id for c in race.candidates) for race in self.races}

    @cached_property
    def areas(self) -> dict[tuple[str, str], tuple[str, int, int]]:
        """(level, area) -> (name, bureaux_total, registered) for every area of the election."""
        names: dict[tuple[str, str], str] = {}
        totals: dict[tuple[str, str], list[int]] = {}
        for entry in self.bureaux:
            places = [
                (("bureau", entry.bureau), f"{entry.commune_name} {entry.bureau}".strip()),
                (("commune", entry.commune), entry.commune_name or entry.commune),
                (("department", entry.department), entry.department_name or entry.department),
                (("nation", NATION), "France"),
            ]
            if entry.circonscription is not None:
                places.append(
                    (
                        ("circonscription", entry.circonscription),
                        entry.circonscription_name or entry.circonscription,
                    )
                )
            region = region_of(entry.department)
            if region is not None:
                places.append((("region", region), REGION_NAMES[region]))
            for key, name in places:
                names.setdefault(key, name)
                total = totals.setdefault(key, [0, 0])
                total[0] += 1
                total[1] += entry.registered
        return {key: (names[key], *totals[key]) for key in names}  # type: ignore[misc]

    def parent_of(self, level: str, area: str) -> tuple[str, str] | None:
        """The (level, area) one step up, or None for the nation."""
        if level == "bureau":
            return ("commune", self.roll[area].commune)
        if level == "commune":
            return ("department", self.roll_by_commune[area])
        if level == "department":
            return ("nation", NATION)
        return None

    @cached_property
    def communes_of_department(self) -> dict[str, list[str]]:
        found: dict[str, dict[str, None]] = {}
        for entry in self.bureaux:
            found.setdefault(entry.department, {})[entry.commune] = None
        return {department: list(communes) for department, communes in found.items()}

    @cached_property
    def registered_of_commune(self) -> dict[str, int]:
        """Registered voters per commune (a commune's turnout report is checked against it)."""
        totals: dict[str, int] = {}
        for entry in self.bureaux:
            totals[entry.commune] = totals.get(entry.commune, 0) + entry.registered
        return totals

    @cached_property
    def roll_by_commune(self) -> dict[str, str]:
        return {entry.commune: entry.department for entry in self.bureaux}


def check_races(election: Election) -> None:
    """A definition with races: unique race ids, candidate ids unique across races and apart
    from party names, every bureau in exactly one race and inside its area, and every bureau of
    a race's area in that race (so a race's area shows only its candidates)."""
    races = election.races or []
    name = election.election
    if election.candidates:
        raise ValueError(
            f"election {name}: with races, candidates belong to the races "
            "(top-level candidates must be empty)"
        )
    if election.qualify is not None:
        raise ValueError(f"election {name}: qualify is for a single race; races have their rules")
    by_id: dict[str, Race] = {}
    area_race: dict[tuple[str, str], str] = {}
    for declared in races:
        if by_id.setdefault(declared.race, declared) is not declared:
            raise ValueError(f"election {name}: race {declared.race!r} appears twice")
        covered: tuple[str, str] = (declared.area.level, declared.area.id)
        if covered in area_race:
            raise ValueError(
                f"election {name}: races {area_race[covered]} and {declared.race} cover the same "
                f"{covered[0]} {covered[1]}"
            )
        area_race[covered] = declared.race
    parties = {c.party or "" for race in races for c in race.candidates}
    clash = sorted(parties & {c.id for race in races for c in race.candidates})
    if clash:
        raise ValueError(f"election {name}: {clash[0]!r} is both a party and a candidate id")
    bureaux_of_race: dict[str, int] = {}
    for entry in election.bureaux:
        if entry.race is None:
            raise ValueError(f"election {name}: bureau {entry.bureau} names no race (the election has races)")
        race = by_id.get(entry.race)
        if race is None:
            raise ValueError(f"election {name}: bureau {entry.bureau} names unknown race {entry.race!r}")
        where = {
            "commune": entry.commune,
            "circonscription": entry.circonscription,
            "department": entry.department,
        }
        if where[race.area.level] != race.area.id:
            raise ValueError(
                f"election {name}: bureau {entry.bureau} is in race {race.race} but not in its area "
                f"({race.area.level} {race.area.id}; "
                f"the bureau's {race.area.level} is {where[race.area.level]})"
            )
        for level, place in where.items():
            other = area_race.get((level, place)) if place is not None else None
            if other is not None and other != entry.race:
                raise ValueError(
                    f"election {name}: bureau {entry.bureau} is in {level} {place}, "
                    f"the area of race {other}, but names race {entry.race}"
                )
        bureaux_of_race[entry.race] = bureaux_of_race.get(entry.race, 0) + 1
    empty = [race.race for race in races if race.race not in bureaux_of_race]
    if empty:
        raise ValueError(f"election {name}: race {empty[0]} has no bureau")


ReportStatus = Literal["provisional", "definitive", "annulled"]
#: A report's status, in the order ``bureaux_by_status`` lists them.
STATUSES: tuple[ReportStatus, ...] = ("provisional", "definitive", "annulled")


class BureauResult(BaseModel):
    """A bureau's count. Rules that need no roll are enforced here; the rest in ``check_against_election``."""

    model_config = ConfigDict(extra="ignore")

    election: Identifier
    bureau: Identifier
    seq: Annotated[StrictInt, Field(ge=1, le=2**62)]
    reported_at: datetime | None = None
    registered: Count | None = None
    voters: Count
    blank: Count
    invalid: Count
    votes: dict[Identifier, Count]
    status: ReportStatus = Field(
        "provisional", description="definitive once proclaimed; annulled: counted nowhere, shown as annulled"
    )
    source: Identifier | None = Field(None, description="the source that signed it (signed reports)")
    signature: str | None = Field(
        None,
        max_length=200,
        description="Ed25519 over the report's canonical JSON without this field, base64",
    )

    @model_validator(mode="after")
    def _ballots_add_up(self) -> BureauResult:
        total = self.blank + self.invalid + sum(self.votes.values())
        if total != self.voters:
            raise ValueError(
                f"bureau {self.bureau}: blank + invalid + votes = {total}, voters = {self.voters}"
            )
        if self.registered is not None and self.voters > self.registered:
            raise ValueError(
                f"bureau {self.bureau}: voters = {self.voters} exceeds registered = {self.registered}"
            )
        return self


class Cause(BaseModel):
    bureau: str
    seq: int


EventKind = Literal[
    "reported",
    "corrected",
    "leader_changed",
    "turnout_changed",
    "complete",
    "decided",
    "undecided",
    "turnout_reported",
    "elected",
    "qualified",
]


class Reference(BaseModel):
    """The reference election (``compare_to``) over the bureaux reported in both: like for like."""

    election: str
    registered: int
    voters: int
    turnout: float | None
    votes: dict[str, int]
    shares: dict[str, float]
    bureaux: int
    turnout_at: dict[str, float] = Field(default_factory=dict)


class Change(BaseModel):
    """Now against the reference: voters in %, turnout and shares in points."""

    voters_pct: float | None
    turnout_points: float | None
    shares_points: dict[str, float]
    turnout_at_points: dict[str, float] = Field(default_factory=dict)


class Seats(BaseModel):
    won: int = Field(description="races the party wins on the counts so far")
    decided: int = Field(description="of those, races no outcome of the unreported bureaux can change")


class _Figures(BaseModel):
    """What standings and events both carry: the area, its numbers and the time of its data."""

    election: str
    level: Level
    area: str
    name: str
    registered: int
    voters: int
    blank: int
    invalid: int
    expressed: int
    votes: dict[str, int]
    shares: dict[str, float]
    turnout: float | None
    leader: str | None = Field(None, description="candidate ahead; null while nobody leads or on a tie")
    tied: list[str] | None = Field(None, description="candidates sharing the lead, when tied")
    margin: int
    bureaux_reported: int
    bureaux_total: int
    as_of: datetime | None = Field(None, description="the latest reported_at included")
    version: int = Field(0, description="grows with every change of the area")
    decided: bool = Field(
        False, description="no outcome of the unreported bureaux can change the leader (or the qualified)"
    )
    qualified: list[str] | None = Field(
        None, description="with qualify: N, the first N once decided; a race's candidates in its round 2"
    )
    turnout_at: dict[str, float] | None = Field(
        None, description='turnout reported before the count, {"12:00": 19.4}'
    )
    reference: Reference | None = None
    change: Change | None = None
    bureaux_by_status: dict[ReportStatus, int] | None = Field(
        None, description='{"provisional": n, "definitive": n, "annulled": n}'
    )
    seq: int | None = Field(None, description="a bureau's: the seq of the report counted")
    race: str | None = Field(None, description="the race whose area this is (elections with races)")
    elected: list[str] | None = Field(None, description="a race's elected candidates, once decided")
    seats: dict[str, Seats] | None = Field(
        None, description="above races: seats by party, won on the counts so far and decided"
    )


class UpdateEvent(_Figures):
    """A change worth announcing, on ``election-updates`` keyed by area."""

    kind: EventKind
    previous_leader: str | None = None
    previous_turnout: float | None = None
    hour: str | None = Field(None, description="turnout_reported: the hour reported")
    publish_after: datetime | None = Field(None, description="the election's embargo, when it has one")
    at: datetime
    cause: Cause | None = None


class Standings(_Figures):
    """The results view that ``soiree results --json`` prints and Redis holds per area."""


TURNOUT_HOURS = ("12:00", "17:00")


class TurnoutReport(BaseModel):
    """Voters at a fixed hour before the count, from a bureau or a whole commune (``turnout-reports``)."""

    model_config = ConfigDict(extra="ignore")

    election: Identifier
    bureau: Identifier | None = None
    commune: Identifier | None = None
    at_hour: Literal["12:00", "17:00"]
    voters: Count
    seq: Annotated[StrictInt, Field(ge=1, le=2**62)]
    reported_at: datetime | None = None

    @model_validator(mode="after")
    def _one_place(self) -> TurnoutReport:
        if (self.bureau is None) == (self.commune is None):
            raise ValueError("a turnout report names either a bureau or a commune (exactly one)")
        return self

    @property
    def place(self) -> str:
        return self.bureau or self.commune or ""


class Rejection(BaseModel):
    """What ``bureau-results-rejected`` carries: the original payload and why it was refused."""

    reason: str
    payload: str = Field(description="the original bytes, as UTF-8 text (invalid bytes escaped as \\xNN)")
    payload_utf8: bool = True
    payload_bytes: int | None = Field(None, description="size of the original payload")
    payload_truncated: bool = Field(
        False, description=f"payload cut to its first {MAX_REJECTED_PAYLOAD} characters"
    )
    applied: str | None = Field(
        None, description="a conflict: the report already applied with the same seq (JSON text)"
    )
    source: str | None = Field(None, description="the source that sent it over HTTP, when one did")
    key: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    at: datetime


def _describe(error: ErrorDetails) -> str:
    location = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if error["type"] == "value_error":
        message = message.removeprefix("Value error, ")
        return message
    if error["type"] == "missing":
        return f"missing field '{location}'"
    if error["type"] == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == ID_PATTERN:
        message = f"not an id ({ID_RULE})"
    given = error.get("input")
    shown = repr(given)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"field '{location}': {message} (got {shown})" if location else f"{message} (got {shown})"


_Message = TypeVar("_Message", bound=BaseModel)


def parse_result(raw: bytes | str, max_bytes: int = 65536) -> BureauResult:
    """Decode and check one ``bureau-results`` payload, or raise ``InvalidResult``."""
    return _parse(raw, BureauResult, max_bytes)


def parse_turnout(raw: bytes | str, max_bytes: int = 65536) -> TurnoutReport:
    """Decode and check one ``turnout-reports`` payload, or raise ``InvalidResult``."""
    return _parse(raw, TurnoutReport, max_bytes)


def _parse(raw: bytes | str, model: type[_Message], max_bytes: int) -> _Message:
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError:
            raise InvalidResult("payload is not valid UTF-8 (lone surrogate)") from None
    if raw is None or len(raw) == 0:
        raise InvalidResult("empty message")
    if len(raw) > max_bytes:
        raise InvalidResult(f"payload of {len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidResult("payload is not valid UTF-8") from None
        raise InvalidResult(f"payload is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidResult(f"payload must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        place = data.get("bureau") or data.get("commune")
        what = "bureau" if data.get("bureau") else "commune"
        # the place prefixes the reason only when it is a valid id: a made-up one (a newline,
        # a ':') is shown quoted by the field's own message instead, never raw in a log line
        valid = isinstance(place, str) and len(place) <= 64 and _ID.fullmatch(place) is not None
        prefix = f"{what} {place}: " if valid else ""
        reasons = "; ".join(_describe(e) for e in exc.errors(include_url=False))
        if prefix and reasons.startswith(prefix):
            prefix = ""
        raise InvalidResult(prefix + reasons) from None


class KnownElection(Protocol):
    """What the roll checks need: a ``messages.Election``, or the worker's ``ElectionIndex``."""

    @property
    def election(self) -> str: ...

    @property
    def race_candidates(self) -> Mapping[str | None, frozenset[str]]: ...

    @property
    def roll(self) -> Mapping[str, Any]: ...

    @property
    def registered_of_commune(self) -> Mapping[str, int]: ...


class ElectionLookup(Protocol):
    def get(self, election_id: str, /) -> KnownElection | None: ...


def check_against_election(result: BureauResult, election: KnownElection | None) -> None:
    """The rules that need the roll; raise ``InvalidResult`` on the first broken one."""
    if election is None or election.election != result.election:
        raise InvalidResult(f"bureau {result.bureau}: unknown election {result.election!r}")
    entry = election.roll.get(result.bureau)
    if entry is None:
        raise InvalidResult(f"bureau {result.bureau}: not in the roll of election {result.election}")
    unknown = sorted(set(result.votes) - election.race_candidates[entry.race])
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        race = f" of race {entry.race}" if entry.race is not None else ""
        raise InvalidResult(f"bureau {result.bureau}: unknown candidate{plural}{race} {', '.join(unknown)}")
    if result.registered is not None and result.registered != entry.registered:
        raise InvalidResult(
            f"bureau {result.bureau}: registered = {result.registered}, the roll says {entry.registered}"
        )
    if result.voters > entry.registered:
        raise InvalidResult(
            f"bureau {result.bureau}: voters = {result.voters} exceeds the roll's registered = "
            f"{entry.registered}"
        )


def validate_result(raw: bytes | str, elections: ElectionLookup, max_bytes: int = 65536) -> BureauResult:
    """``parse_result`` then ``check_against_election``: the full contract for one payload."""
    result = parse_result(raw, max_bytes)
    check_against_election(result, elections.get(result.election))
    return result


def validate_turnout(raw: bytes | str, elections: ElectionLookup, max_bytes: int = 65536) -> TurnoutReport:
    """``parse_turnout`` and the roll's rules: the election exists, the bureau or commune is in
    its roll, and no more voters than its registered."""
    report = parse_turnout(raw, max_bytes)
    election = elections.get(report.election)
    where = f"{'bureau' if report.bureau else 'commune'} {report.place}"
    if election is None or election.election != report.election:
        raise InvalidResult(f"{where}: unknown election {report.election!r}")
    if report.bureau is not None:
        entry = election.roll.get(report.bureau)
        if entry is None:
            raise InvalidResult(f"{where}: not in the roll of election {report.election}")
        registered = entry.registered
    else:
        known = election.registered_of_commune.get(report.place)
        if known is None:
            raise InvalidResult(f"{where}: not in the roll of election {report.election}")
        registered = known
    if report.voters > registered:
        raise InvalidResult(
            f"{where}: voters = {report.voters} at {report.at_hour} exceeds the roll's "
            f"registered = {registered}"
        )
    return report


def describe_payload(raw: bytes) -> tuple[str, bool]:
    """The payload as text for a rejection: (text, was_valid_utf8); cut to ``MAX_REJECTED_PAYLOAD``
    characters, so that the rejection itself always fits in a Kafka message."""
    try:
        text, is_utf8 = raw.decode("utf-8"), True
    except UnicodeDecodeError:
        text, is_utf8 = raw.decode("utf-8", errors="backslashreplace"), False
    return text[:MAX_REJECTED_PAYLOAD], is_utf8


def make_rejection(raw: bytes, reason: str, **where: Any) -> Rejection:
    """The dead letter for ``raw``: its reason, its payload (cut if huge) and where it came from."""
    payload, is_utf8 = describe_payload(raw)
    return Rejection(
        reason=reason,
        payload=payload,
        payload_utf8=is_utf8,
        payload_bytes=len(raw),
        payload_truncated=len(payload) < len(raw.decode("utf-8", errors="backslashreplace")),
        at=datetime.now(UTC),
        **where,
    )


_ID = re.compile(ID_PATTERN)
_PLACE = re.compile(r"^(?:bureau|commune) [^\s:]+: ")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_ASIDE = re.compile(r" \(.*", re.DOTALL)
_NAMES = re.compile(r"^(unknown candidates?) .*", re.DOTALL)
_NUMBER = re.compile(r"\d+")


def reason_kind(reason: str) -> str:
    """A rejection's reason without what the input put in it, for metrics labels:
    ``bureau 42218-0001: voters = 641 exceeds the roll's registered = 640`` ->
    ``voters = # exceeds the roll's registered = #``; quoted values, asides in parentheses and
    names of unknown candidates go too."""
    text = _PLACE.sub("", reason, count=1)
    text = _QUOTED.sub("'…'", text)
    text = _ASIDE.sub("", text)
    text = _NAMES.sub(r"\1", text)
    return _NUMBER.sub("#", text)[:80]
