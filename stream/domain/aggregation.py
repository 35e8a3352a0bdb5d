"""Exact, idempotent totals: the arithmetic of contributions and versions (no Kafka, no Redis).

Every area (commune, department, nation) keeps its total *and* the last contribution of each
child with that child's version. A contribution is a child's whole current tally, never a
delta, so applying the same one twice, or an older one late, changes nothing; a newer one
replaces the child's earlier contribution. That is what makes at-least-once delivery safe:
re-sending is always allowed, counting twice is impossible.

A commune's children are its bureaux, versioned by the report's ``seq``. A department's
children are its communes and the nation's its departments, versioned by the offset of the
message that last changed them, which only grows, even across crashes (see ``pipeline``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.domain.messages import BureauResult

__all__ = ["Tally", "AreaState", "area_key", "split_area_key"]


@dataclass(slots=True)
class Tally:
    """Integer counts of a set of reported bureaux."""

    bureaux: int = 0
    registered: int = 0
    voters: int = 0
    blank: int = 0
    invalid: int = 0
    votes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of_result(cls, result: BureauResult, registered: int) -> Tally:
        """One bureau's report; ``registered`` comes from the roll (authoritative)."""
        return cls(1, registered, result.voters, result.blank, result.invalid, dict(result.votes))

    @property
    def expressed(self) -> int:
        return sum(self.votes.values())

    def add(self, other: Tally, sign: int = 1) -> None:
        """In place: self += sign * other."""
        self.bureaux += sign * other.bureaux
        self.registered += sign * other.registered
        self.voters += sign * other.voters
        self.blank += sign * other.blank
        self.invalid += sign * other.invalid
        votes = self.votes
        for candidate, count in other.votes.items():
            votes[candidate] = votes.get(candidate, 0) + sign * count

    def copy(self) -> Tally:
        return Tally(self.bureaux, self.registered, self.voters, self.blank, self.invalid, dict(self.votes))

    def to_json(self) -> list[Any]:
        return [self.bureaux, self.registered, self.voters, self.blank, self.invalid, self.votes]

    @classmethod
    def from_json(cls, data: list[Any]) -> Tally:
        bureaux, registered, voters, blank, invalid, votes = data
        return cls(bureaux, registered, voters, blank, invalid, dict(votes))


@dataclass(slots=True)
class AreaState:
    """An area's total, the contributions it is made of, and what was last announced about it."""

    version: int = 0
    total: Tally = field(default_factory=Tally)
    children: dict[str, tuple[int, Tally]] = field(default_factory=dict)
    announced: dict[str, Any] = field(default_factory=dict)
    #: what was last announced about each child (a commune keeps its bureaux' here)
    child_announced: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, child: str, version: int, tally: Tally) -> bool:
        """Take a child's contribution if it is newer than the one held; True if anything changed."""
        held = self.children.get(child)
        if held is not None:
            held_version, held_tally = held
            if version <= held_version:
                return False
            self.total.add(held_tally, -1)
        self.total.add(tally)
        self.children[child] = (version, tally)
        return True

    def to_json(self, with_children: bool = True) -> dict[str, Any]:
        children = self.children.items() if with_children else ()
        return {
            "v": self.version,
            "t": self.total.to_json(),
            "c": {child: [version, tally.to_json()] for child, (version, tally) in children},
            "a": self.announced,
            "ca": self.child_announced,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AreaState:
        return cls(
            version=data["v"],
            total=Tally.from_json(data["t"]),
            children={child: (version, Tally.from_json(t)) for child, (version, t) in data["c"].items()},
            announced=data.get("a", {}),
            child_announced=data.get("ca", {}),
        )


def area_key(election: str, level: str, area: str) -> str:
    """Table key and Kafka key of an area; '|' never occurs in ids of the roll."""
    return f"{election}|{level}|{area}"


def split_area_key(key: str) -> tuple[str, str, str]:
    election, level, area = key.split("|", 2)
    return election, level, area
