"""What a worker keeps of an election's roll: one small tuple per bureau, names once.

Pure: built from the definition's JSON (validated when it was registered), no Kafka, no Redis.
"""

from __future__ import annotations

import sys
import zlib
from typing import Any, NamedTuple

import orjson

from stream.domain.messages import NATION

__all__ = ["ElectionIndex", "Placement"]


class Placement(NamedTuple):
    """Where a bureau of the roll belongs, and its registered voters."""

    commune: str
    department: str
    registered: int


class _AreaNames:
    """``(level, area) -> (name, bureaux_total)``; a bureau's name is made when asked, not stored."""

    __slots__ = ("_roll", "_commune_names", "_fixed")

    def __init__(
        self,
        roll: dict[str, Placement],
        commune_names: dict[str, str],
        fixed: dict[tuple[str, str], tuple[str, int]],
    ) -> None:
        self._roll = roll
        self._commune_names = commune_names  # as in the roll, possibly empty
        self._fixed = fixed

    def __getitem__(self, key: tuple[str, str]) -> tuple[str, int]:
        level, area = key
        if level != "bureau":
            return self._fixed[key]
        return f"{self._commune_names[self._roll[area].commune]} {area}".strip(), 1


class ElectionIndex:
    """What a worker needs of an election definition, and nothing more.

    A validated ``messages.Election`` keeps a pydantic object per bureau: about 1.6 kB each, 110 MB
    for the 2017 roll and over a gigabyte for a million bureaux. A worker only looks bureaux up,
    so it keeps one small tuple per bureau, names of communes and departments once, and the
    definition itself compressed (to register it again if Redis loses it). Built from the JSON
    that ``save_election`` stored, which was validated then.
    """

    def __init__(self, definition: dict[str, Any], raw: bytes) -> None:
        self.election: str = definition["election"]
        self.name: str = definition["name"]
        self.candidate_list: list[str] = [candidate["id"] for candidate in definition["candidates"]]
        self.candidate_ids = frozenset(self.candidate_list)
        intern = sys.intern
        roll: dict[str, Placement] = {}
        names: dict[tuple[str, str], str] = {("nation", NATION): "France"}
        counts: dict[tuple[str, str], int] = {("nation", NATION): 0}
        communes_of_department: dict[str, dict[str, None]] = {}
        commune_names: dict[str, str] = {}
        for entry in definition["bureaux"]:
            commune, department = intern(entry["commune"]), intern(entry["department"])
            roll[entry["bureau"]] = Placement(commune, department, entry["registered"])
            commune_names.setdefault(commune, entry.get("commune_name", ""))
            communes_of_department.setdefault(department, {})[commune] = None
            for key, name in (
                (("commune", commune), entry.get("commune_name") or commune),
                (("department", department), entry.get("department_name") or department),
            ):
                if key not in names:
                    names[key] = name
                counts[key] = counts.get(key, 0) + 1
            counts[("nation", NATION)] += 1
        self.roll = roll
        self.communes_of_department = {
            department: list(communes) for department, communes in communes_of_department.items()
        }
        self.roll_by_commune = {
            commune: department
            for department, communes in self.communes_of_department.items()
            for commune in communes
        }
        self.areas = _AreaNames(
            roll, commune_names, {key: (name, counts[key]) for key, name in names.items()}
        )
        self._definition = zlib.compress(raw, 1)

    @classmethod
    def from_json(cls, raw: bytes) -> ElectionIndex:
        return cls(orjson.loads(raw), raw)

    def definition_json(self) -> bytes:
        """The definition as registered (the PRODUCT.md JSON)."""
        return zlib.decompress(self._definition)
