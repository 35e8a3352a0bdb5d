"""What a worker keeps of an election's roll: one small tuple per bureau, names once.

Pure: built from the definition's JSON (validated when it was registered), no Kafka, no Redis.
"""

from __future__ import annotations

import hashlib
import sys
import zlib
from typing import Any, NamedTuple

import orjson

from stream.domain.changes import RaceRules
from stream.domain.messages import LEVELS as _LEVELS
from stream.domain.messages import NATION
from stream.domain.races import Rules
from stream.domain.regions import REGION_NAMES, region_of

__all__ = [
    "AreaInfo",
    "ElectionIndex",
    "Placement",
    "RaceInfo",
    "tally_id",
    "split_tally_id",
    "definition_stamp",
]


class Placement(NamedTuple):
    """Where a bureau of the roll belongs, and its registered voters."""

    commune: str
    department: str
    registered: int
    circonscription: str | None
    region: str | None
    race: str | None = None


class RaceInfo(NamedTuple):
    """What the tally needs of a race: where it is, how it elects, and its candidates."""

    race: str
    level: str
    area: str
    department: str
    seats: int
    rules: Rules
    candidates: list[str]


#: What an area is: its name, its number of bureaux and their registered voters (from the roll).
AreaInfo = tuple[str, int, int]


class _AreaNames:
    """``(level, area) -> (name, bureaux_total, registered)``; a bureau's is made when asked."""

    __slots__ = ("_roll", "_commune_names", "_fixed")

    def __init__(
        self,
        roll: dict[str, Placement],
        commune_names: dict[str, str],
        fixed: dict[tuple[str, str], AreaInfo],
    ) -> None:
        self._roll = roll
        self._commune_names = commune_names  # as in the roll, possibly empty
        self._fixed = fixed

    def __getitem__(self, key: tuple[str, str]) -> AreaInfo:
        level, area = key
        if level != "bureau":
            return self._fixed[key]
        placement = self._roll[area]
        return f"{self._commune_names[placement.commune]} {area}".strip(), 1, placement.registered

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._fixed or (key[0] == "bureau" and key[1] in self._roll)

    def of_level(self, level: str) -> list[str]:
        """Every area of a level (bureaux included), in roll order."""
        if level == "bureau":
            return list(self._roll)
        return [area for (at, area) in self._fixed if at == level]


def tally_id(election: str, revision: int) -> str:
    """The id an election's areas are tallied under: its id, then ``~r<revision>`` from the
    second revision on, so that a replaced definition is counted afresh, never on top of the
    old one (``~`` is in no election id)."""
    return election if revision == 1 else f"{election}~r{revision}"


def definition_stamp(revision: int, raw: bytes) -> str:
    """``<revision>:<digest>``: what ``soiree:revision:<id>`` holds. Workers fetch a definition
    again when it changes: a new revision is counted afresh; a new digest alone (a name, an
    embargo) only changes what they show."""
    return f"{revision}:{hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]}"


def split_tally_id(value: str) -> tuple[str, int]:
    """(election, revision) of a ``tally_id``."""
    election, _, revision = value.rpartition("~r")
    if election and revision.isdigit():
        return election, int(revision)
    return value, 1


class ElectionIndex:
    """What a worker needs of an election definition, and nothing more.

    A validated ``messages.Election`` keeps a pydantic object per bureau: about 1.6 kB each, 110 MB
    for the 2017 roll and over a gigabyte for a million bureaux. A worker only looks bureaux up,
    so it keeps one small tuple per bureau, names of areas once, and the definition itself
    compressed (to register it again if Redis loses it). Built from the JSON that
    ``save_election`` stored, which was validated then.
    """

    def __init__(self, definition: dict[str, Any], raw: bytes) -> None:
        self.election: str = definition["election"]
        self.name: str = definition["name"]
        #: the definition's revision, and the id its areas are tallied under (``tally_id``)
        self.revision: int = definition.get("revision", 1)
        self.tally_id = tally_id(self.election, self.revision)
        self.stamp = definition_stamp(self.revision, raw)
        self.compare_to: str | None = definition.get("compare_to")
        self.qualify: int | None = definition.get("qualify")
        self.require_signature: bool = definition.get("require_signature", False)
        self.round: int = definition.get("round", 1)
        #: the embargo, as the definition's ISO-8601 text (events carry it)
        self.publish_after: str | None = definition.get("publish_after")
        races = definition.get("races")
        #: the races by id (None: a single-race election, as in v1)
        self.races: dict[str, RaceInfo] | None = None
        #: candidate -> party, and the parties in the definition's order (races only)
        self.party_of: dict[str, str] = {}
        self.parties: list[str] = []
        if races is None:
            self.candidate_list: list[str] = [candidate["id"] for candidate in definition["candidates"]]
            self.race_candidates: dict[str | None, frozenset[str]] = {None: frozenset(self.candidate_list)}
        else:
            self.races = {}
            for race in races:
                ids = [candidate["id"] for candidate in race["candidates"]]
                self.races[race["race"]] = RaceInfo(
                    race["race"],
                    race["area"]["level"],
                    race["area"]["id"],
                    "",
                    race.get("seats", 1),
                    race["rules"],
                    ids,
                )
                for candidate in race["candidates"]:
                    self.party_of[candidate["id"]] = candidate["party"]
            self.parties = list(dict.fromkeys(self.party_of.values()))
            self.candidate_list = list(self.party_of)
            self.race_candidates = {race: frozenset(info.candidates) for race, info in self.races.items()}
        self.candidate_ids = frozenset(self.candidate_list)
        #: candidate -> party for the comparison's tallies: the reference's candidates too, once the
        #: tally has met the reference (``runtime.tally``); a round 1 candidate absent from round 2
        #: still counts for their party
        self.comparison_party_of: dict[str, str] = self.party_of
        races_in: dict[tuple[str, str], set[str]] = {}
        intern = sys.intern
        roll: dict[str, Placement] = {}
        names: dict[tuple[str, str], str] = {("nation", NATION): "France"}
        counts: dict[tuple[str, str], list[int]] = {}
        communes_of_department: dict[str, dict[str, None]] = {}
        circonscriptions_of_commune: dict[str, dict[str, None]] = {}
        commune_names: dict[str, str] = {}
        for entry in definition["bureaux"]:
            commune, department = intern(entry["commune"]), intern(entry["department"])
            circonscription = entry.get("circonscription")
            circonscription = intern(circonscription) if circonscription else None
            region = region_of(department)
            registered = entry["registered"]
            race = entry.get("race")
            roll[entry["bureau"]] = Placement(commune, department, registered, circonscription, region, race)
            commune_names.setdefault(commune, entry.get("commune_name", ""))
            communes_of_department.setdefault(department, {})[commune] = None
            places: list[tuple[tuple[str, str], str]] = [
                (("commune", commune), entry.get("commune_name") or commune),
                (("department", department), entry.get("department_name") or department),
                (("nation", NATION), "France"),
            ]
            if circonscription is not None:
                circonscriptions_of_commune.setdefault(commune, {})[circonscription] = None
                places.append(
                    (
                        ("circonscription", circonscription),
                        entry.get("circonscription_name") or circonscription,
                    )
                )
            if region is not None:
                places.append((("region", region), REGION_NAMES[region]))
            if race is not None:
                for key, _ in places:
                    races_in.setdefault(key, set()).add(race)
            for key, name in places:
                if key not in names:
                    names[key] = name
                count = counts.get(key)
                if count is None:
                    counts[key] = [1, registered]
                else:
                    count[0] += 1
                    count[1] += registered
        self.roll = roll
        self.communes_of_department = {
            department: list(communes) for department, communes in communes_of_department.items()
        }
        self.roll_by_commune = {
            commune: department
            for department, communes in self.communes_of_department.items()
            for commune in communes
        }
        #: a commune's circonscription when it lies in exactly one (turnout reported per commune)
        self.circonscription_of_commune = {
            commune: next(iter(circs))
            for commune, circs in circonscriptions_of_commune.items()
            if len(circs) == 1
        }
        #: registered voters per commune (a commune's turnout report is checked against it)
        self.registered_of_commune = {
            area: count[1] for (level, area), count in counts.items() if level == "commune"
        }
        #: (level, area) -> the race whose candidates it shows; absent: it shows parties (races only)
        self.race_of_area: dict[tuple[str, str], str] = {}
        #: race -> the department its area is in (its seats are counted with that department's)
        self.races_of_department: dict[str, list[str]] = {}
        if self.races is not None:
            rank: dict[str, int] = {level: index for index, level in enumerate(_LEVELS)}
            for key, found in races_in.items():
                if len(found) == 1:
                    (race,) = found
                    if rank[key[0]] <= rank[self.races[race].level]:
                        self.race_of_area[key] = race
            for race, info in self.races.items():
                department = (
                    info.area
                    if info.level == "department"
                    else self.roll_by_commune[info.area]
                    if info.level == "commune"
                    else info.area.rsplit("-", 1)[0]
                )
                self.races[race] = info._replace(department=department)
                self.races_of_department.setdefault(department, []).append(race)
        self.areas = _AreaNames(
            roll, commune_names, {key: (name, counts[key][0], counts[key][1]) for key, name in names.items()}
        )
        self._definition = zlib.compress(raw, 1)

    @classmethod
    def from_json(cls, raw: bytes) -> ElectionIndex:
        return cls(orjson.loads(raw), raw)

    def view_of(self, level: str, area: str) -> tuple[list[str], dict[str, str] | None, RaceRules | None]:
        """How an area's standings count: (the ids its votes are keyed by, the candidate -> party
        map when they count by party, the race when the area is a race's)."""
        if self.races is None:
            return self.candidate_list, None, None
        race = self.roll[area].race if level == "bureau" else self.race_of_area.get((level, area))
        if race is None:
            return self.parties, self.party_of, None
        info = self.races[race]
        rules = RaceRules(race, info.rules, self.round, info.seats) if info.level == level else None
        return info.candidates, None, rules

    def definition_json(self) -> bytes:
        """The definition as registered (the PRODUCT.md JSON)."""
        return zlib.decompress(self._definition)
