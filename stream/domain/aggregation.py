"""Exact, idempotent totals: the arithmetic of contributions and versions (no Kafka, no Redis).

Every area (commune, circonscription, department, region, nation) keeps its total *and* the
last contribution of each child with that child's version. A contribution is a child's whole
current tally, never a delta, so applying the same one twice, or an older one late, changes
nothing; a newer one replaces the child's earlier contribution. That is what makes at-least-
once delivery safe: re-sending is always allowed, counting twice is impossible.

A commune's and a circonscription's children are bureaux, versioned by the report's ``seq``
(and turnout reports, ``turnout_child``). A department's children are its communes, and a
region's and the nation's are departments, versioned by the offset of the message that last
changed them, which only grows, even across crashes (see ``runtime.tally``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stream.domain.messages import BureauResult

__all__ = ["Tally", "Comparison", "AreaState", "area_key", "split_area_key", "utc_text", "turnout_child"]


@dataclass(slots=True)
class Tally:
    """Integer counts of a set of reported bureaux, and what travels with them.

    ``as_of`` is the latest ``reported_at`` included (UTC, ``%Y-%m-%dT%H:%M:%SZ``, so text order
    is time order; "" when none said). ``comparison`` holds the ``compare_to`` election's tally
    and this one's over the bureaux reported in both (None without one). ``turnout_at`` is
    ``{hour: [registered, voters]}`` of the turnout reports included. All three ride along every
    sum, so every level gets them.
    """

    bureaux: int = 0
    registered: int = 0
    voters: int = 0
    blank: int = 0
    invalid: int = 0
    votes: dict[str, int] = field(default_factory=dict)
    as_of: str = ""
    comparison: Comparison | None = None
    turnout_at: dict[str, list[int]] = field(default_factory=dict)
    #: ``[definitive, annulled, annulled_registered]``: bureaux reported definitive, bureaux
    #: annulled (counted nowhere) and their registered voters; None while all are provisional
    status: list[int] | None = None
    #: races' seats by party ``{party: [won, decided]}`` (elections with races, above a race)
    seats: dict[str, list[int]] | None = None

    @classmethod
    def of_result(cls, result: BureauResult, registered: int) -> Tally:
        """One bureau's report; ``registered`` comes from the roll (authoritative). An annulled
        report counts nothing but its annulment."""
        if result.status == "annulled":
            return cls(as_of=utc_text(result.reported_at), status=[0, 1, registered])
        return cls(
            1,
            registered,
            result.voters,
            result.blank,
            result.invalid,
            dict(result.votes),
            utc_text(result.reported_at),
            status=[1, 0, 0] if result.status == "definitive" else None,
        )

    @property
    def annulled(self) -> bool:
        """A bureau's report that annuls it (a total with annulled bureaux is not)."""
        return self.status is not None and self.status[1] > 0 and self.bureaux == 0 and self.registered == 0

    @property
    def settled_registered(self) -> int:
        """Registered voters of the bureaux nothing more is expected from: reported or annulled."""
        return self.registered + (self.status[2] if self.status else 0)

    def by_status(self) -> dict[str, int]:
        """``bureaux_by_status``: provisional, definitive and annulled bureaux."""
        definitive, annulled, _ = self.status or (0, 0, 0)
        return {"provisional": self.bureaux - definitive, "definitive": definitive, "annulled": annulled}

    def same_count(self, other: Tally) -> bool:
        """The same report's content (its time aside): counts and status."""
        return (
            self.registered == other.registered
            and self.voters == other.voters
            and self.blank == other.blank
            and self.invalid == other.invalid
            and _nonzero(self.votes) == _nonzero(other.votes)  # a candidate left out has 0
            and (self.status or [0, 0, 0]) == (other.status or [0, 0, 0])
        )

    @property
    def expressed(self) -> int:
        return sum(self.votes.values())

    def add(self, other: Tally, sign: int = 1) -> None:
        """In place: self += sign * other (``as_of`` only grows: the latest ever included)."""
        self.bureaux += sign * other.bureaux
        self.registered += sign * other.registered
        self.voters += sign * other.voters
        self.blank += sign * other.blank
        self.invalid += sign * other.invalid
        votes = self.votes
        for candidate, count in other.votes.items():
            votes[candidate] = votes.get(candidate, 0) + sign * count
        if other.as_of > self.as_of:
            self.as_of = other.as_of
        if other.comparison is not None:
            if self.comparison is None:
                self.comparison = Comparison(Tally(), Tally())
            self.comparison.reference.add(other.comparison.reference, sign)
            self.comparison.current.add(other.comparison.current, sign)
        if other.turnout_at:
            for hour, (registered, voters) in other.turnout_at.items():
                mine = self.turnout_at.setdefault(hour, [0, 0])
                mine[0] += sign * registered
                mine[1] += sign * voters
        if other.status is not None:
            status = self.status
            if status is None:
                status = self.status = [0, 0, 0]
            for index, count in enumerate(other.status):
                status[index] += sign * count
        if other.seats is not None:
            seats = self.seats
            if seats is None:
                seats = self.seats = {}
            for party, (won, decided) in other.seats.items():
                mine = seats.setdefault(party, [0, 0])
                mine[0] += sign * won
                mine[1] += sign * decided

    def copy(self) -> Tally:
        return Tally(
            self.bureaux,
            self.registered,
            self.voters,
            self.blank,
            self.invalid,
            dict(self.votes),
            self.as_of,
            None if self.comparison is None else self.comparison.copy(),
            {hour: list(pair) for hour, pair in self.turnout_at.items()},
            None if self.status is None else list(self.status),
            None if self.seats is None else {party: list(pair) for party, pair in self.seats.items()},
        )

    def to_json(self) -> list[Any]:
        """``[bureaux, registered, voters, blank, invalid, votes]``, then ``as_of, comparison,
        turnout_at`` when any is set, then ``status, seats`` when either is."""
        data: list[Any] = [self.bureaux, self.registered, self.voters, self.blank, self.invalid, self.votes]
        extended = self.status is not None or self.seats is not None
        if self.as_of or self.comparison is not None or self.turnout_at or extended:
            comparison = self.comparison
            compared = (
                None if comparison is None else [comparison.reference.to_json(), comparison.current.to_json()]
            )
            data += [self.as_of, compared, self.turnout_at]
            if extended:
                data += [self.status, self.seats]
        return data

    @classmethod
    def from_json(cls, data: list[Any]) -> Tally:
        if len(data) == 6:
            bureaux, registered, voters, blank, invalid, votes = data
            return cls(bureaux, registered, voters, blank, invalid, dict(votes))
        bureaux, registered, voters, blank, invalid, votes, as_of, compared, turnout_at, *extended = data
        status, seats = extended or (None, None)
        return cls(
            bureaux,
            registered,
            voters,
            blank,
            invalid,
            dict(votes),
            as_of,
            None if compared is None else Comparison(cls.from_json(compared[0]), cls.from_json(compared[1])),
            {hour: list(pair) for hour, pair in turnout_at.items()},
            None if status is None else list(status),
            None if seats is None else {party: list(pair) for party, pair in seats.items()},
        )


@dataclass(slots=True)
class Comparison:
    """Like for like with the ``compare_to`` election: both tallies over the bureaux reported in both."""

    reference: Tally
    current: Tally

    def copy(self) -> Comparison:
        return Comparison(self.reference.copy(), self.current.copy())


def _nonzero(votes: dict[str, int]) -> dict[str, int]:
    return {candidate: count for candidate, count in votes.items() if count}


def utc_text(moment: datetime | None) -> str:
    """A report's time as sortable UTC text ("" if it gave none; a naive time is taken as UTC)."""
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class AreaState:
    """An area's total, the contributions it is made of, and what was last announced about it."""

    version: int = 0
    total: Tally = field(default_factory=Tally)
    children: dict[str, tuple[int, Tally]] = field(default_factory=dict)
    announced: dict[str, Any] = field(default_factory=dict)

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
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AreaState:
        return cls(
            version=data["v"],
            total=Tally.from_json(data["t"]),
            children={child: (version, Tally.from_json(t)) for child, (version, t) in data["c"].items()},
            announced=data.get("a", {}),
        )


def area_key(election: str, level: str, area: str) -> str:
    """Table key and Kafka key of an area; '|' never occurs in ids of the roll."""
    return f"{election}|{level}|{area}"


def split_area_key(key: str) -> tuple[str, str, str]:
    election, level, area = key.split("|", 2)
    return election, level, area


def turnout_child(place: str, hour: str) -> str:
    """A commune's child for a turnout report ('|' never occurs in a bureau or commune id)."""
    return f"{place}|{hour}"
