"""Who is elected, or goes to round 2, in one race, called only when the rest of the count can't change it.

Pure: plain integers in and out; no Kafka, no Redis, no HTTP.

A race is called (``decided``) only if *every* way the unreported bureaux could still vote gives
the same elected and qualified candidates. Each of the ``remaining`` registered voters of those
bureaux may vote for any candidate, vote blank or invalid (not expressed), or not vote at all, so
the bounds below take the worst case of each of those for every candidate. All arithmetic is on
integers (``2*v > E`` rather than ``v / E > 0.5``), so a boundary such as exactly 12.5 % of the
roll is never lost to rounding.

Rules (French law):

* ``plurality`` (any round, ``seats`` = k): the k candidates with most votes are elected;
  also round 2 of ``legislative`` and ``presidential`` (k = 1).
* ``presidential`` round 1: more than 50 % of the expressed votes elects; else the first two go
  to round 2.
* ``legislative`` round 1: more than 50 % of the expressed votes *and* at least 25 % of the
  registered voters elects; else those with at least 12.5 % of the registered voters go to round 2,
  or the first two if fewer than two reach it.

An exact tie at the full count that the rules themselves do not settle (at the last seat, or
between the 2nd and the 3rd when the first two qualify) is never decided: the law gives it to the
eldest candidate, and we do not know the candidates' ages.

Counts are assumed only to grow; a correction that lowers them is handled by the caller (an
``undecided`` event), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RULES", "Outcome", "Rules", "outcome_if_final", "race_outcome"]

Rules = Literal["legislative", "presidential", "plurality"]
RULES: tuple[str, ...] = ("legislative", "presidential", "plurality")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What can be announced of a race: nothing until no completion of the count can change it."""

    decided: bool  # no outcome of the unreported bureaux can change elected/qualified
    elected: list[str]  # candidate ids, sorted; empty unless decided
    qualified: list[str]  # candidate ids going to round 2, sorted; empty unless decided


def _undecided() -> Outcome:
    """A fresh one each time: the lists are mutable, so no instance is shared between callers."""
    return Outcome(False, [], [])


def race_outcome(
    votes: dict[str, int],
    registered_total: int,
    remaining: int,
    rules: Rules,
    round: int,
    seats: int = 1,
) -> Outcome:
    """The race's outcome if no completion of the count can change it, else ``Outcome(False, [], [])``.

    ``votes`` holds every candidate of the race (0 when none yet); ``registered_total`` is the
    whole roll of the race (the base of the 25 % and 12.5 % thresholds); ``remaining`` is the
    registered voters of the bureaux not reported yet, the most ballots still to come.
    """
    _check(votes, registered_total, remaining, rules, round, seats)
    if rules == "plurality" or round == 2:
        return _plurality(votes, remaining, seats)
    return _first_round(votes, registered_total, remaining, legislative=rules == "legislative")


def outcome_if_final(
    votes: dict[str, int],
    registered_total: int,
    rules: Rules,
    round: int,
    seats: int = 1,
) -> Outcome:
    """The outcome if counting stopped now: what the counts so far would give (seats "won" so far)."""
    return race_outcome(votes, registered_total, 0, rules, round, seats)


def _check(
    votes: dict[str, int], registered_total: int, remaining: int, rules: str, round: int, seats: int
) -> None:
    """Refuse what the rules don't define, rather than call a race on a wrong reading of it."""
    if rules not in RULES:
        raise ValueError(f"unknown rules {rules!r}, expected one of {', '.join(RULES)}")
    if round not in (1, 2):
        raise ValueError(f"round must be 1 or 2, not {round}")
    if seats < 1:
        raise ValueError(f"seats must be at least 1, not {seats}")
    if seats != 1 and rules != "plurality":
        raise ValueError(f"{rules} races have one seat, not {seats}")
    if registered_total < 0 or remaining < 0 or any(v < 0 for v in votes.values()):
        raise ValueError("votes, registered_total and remaining must not be negative")


def _ranked(votes: dict[str, int]) -> list[str]:
    """Candidates by votes, most first (ids break ties only to make the order stable)."""
    return sorted(votes, key=lambda c: (-votes[c], c))


def _top_is_certain(votes: dict[str, int], ranked: list[str], k: int, remaining: int) -> bool:
    """Whether the first k can no longer change (nor end tied with the next).

    The closest challenge is the (k+1)-th taking every remaining ballot against the k-th, so the
    first k are fixed iff the k-th leads the (k+1)-th by more than ``remaining``.
    """
    if len(ranked) <= k:
        return True
    return votes[ranked[k - 1]] - votes[ranked[k]] > remaining


def _plurality(votes: dict[str, int], remaining: int, seats: int) -> Outcome:
    """The ``seats`` candidates with most votes, once no remaining ballots can reorder the last seat.

    With no more candidates than seats all are elected whatever the count; that is announced once
    any vote is counted or nothing remains, not on an empty count.
    """
    ranked = _ranked(votes)
    if len(ranked) <= seats:
        if sum(votes.values()) > 0 or remaining == 0:
            return Outcome(True, sorted(ranked), [])
        return _undecided()
    if _top_is_certain(votes, ranked, seats, remaining):
        return Outcome(True, sorted(ranked[:seats]), [])
    return _undecided()


def _first_round(votes: dict[str, int], registered: int, remaining: int, legislative: bool) -> Outcome:
    """Round 1 of a presidential or legislative race: a winner, or the candidates for round 2.

    Decided iff someone is elected in every completion, or nobody can be elected in any and the
    set going to round 2 is the same in all of them.
    """
    expressed = sum(votes.values())
    for c, v in votes.items():
        # Worst case for c: every remaining ballot goes to a rival (and counts as expressed).
        if 2 * v > expressed + remaining and (not legislative or 4 * v >= registered):
            return Outcome(True, [c], [])
    for v in votes.values():
        # Best case for c: every remaining ballot goes to c. Both conditions only get easier with
        # each ballot c gains, so if they fail with all of them they fail with any fewer.
        best = v + remaining
        if 2 * best > expressed + remaining and (not legislative or 4 * best >= registered):
            return _undecided()
    ranked = _ranked(votes)
    first_two_certain = _top_is_certain(votes, ranked, 2, remaining)
    first_two = sorted(ranked[:2])
    if not legislative:
        return Outcome(True, [], first_two) if first_two_certain else _undecided()
    sure = {c for c, v in votes.items() if 8 * v >= registered}
    possible = {c for c, v in votes.items() if 8 * (v + remaining) >= registered}
    if sure == possible and len(sure) >= 2:
        # The same two or more reach 12.5 % of the roll whatever happens, and they qualify.
        return Outcome(True, [], sorted(sure))
    if first_two_certain and possible <= set(first_two):
        # Whoever reaches 12.5 % is among the first two: either both reach it, or fewer do and
        # the first two qualify anyway; the same pair both ways.
        return Outcome(True, [], first_two)
    return _undecided()
