"""What is worth announcing: leader and turnout change detection (pure, no I/O).

Results and events are built as plain dicts shaped exactly like ``messages.Standings`` and
``messages.UpdateEvent`` (the tests check they validate): pydantic per message costs too much.

Each area remembers what was last *announced* about it (``AreaState.announced``), and new
standings are compared with that, not with the previous total: a turnout creeping up by
0.01 point a hundred times still makes an event once it has moved a full step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stream.domain.aggregation import Tally

__all__ = ["leader_of", "shares_of", "make_standings", "detect_changes", "EPSILON"]

#: Floating-point slack when comparing a turnout move with the step.
EPSILON = 1e-9


def leader_of(votes: dict[str, int]) -> tuple[str | None, list[str] | None, int]:
    """(leader, tied, margin): nobody leads without votes; a shared lead is a tie with margin 0
    (the tied candidates in id order)."""
    if not votes:
        return None, None, 0
    leader = max(votes, key=votes.__getitem__)  # runs per area and message: C-level calls only
    top = votes[leader]
    if top == 0:
        return None, None, 0
    counts = sorted(votes.values(), reverse=True)
    runner_up = counts[1] if len(counts) > 1 else 0
    if runner_up == top:
        return None, sorted(candidate for candidate, count in votes.items() if count == top), 0
    return leader, None, top - runner_up


def shares_of(votes: dict[str, int], expressed: int) -> dict[str, float]:
    """``round(100.0 * count / expressed, 2)`` per candidate, exactly, at half the cost.

    ``round`` to 2 places formats the float as decimal text and parses it back, and a night makes
    175,000 standings of a dozen shares. Away from a rounding tie the nearest hundredth is
    ``int(100 * x + 0.5)``, and that divided by 100 is the very float ``round`` returns (both are
    the correctly rounded value of the same hundredth). Within 1e-6 of a tie, where the float
    error of ``100 * x`` could tip it, ``round`` decides.
    """
    if not expressed:
        return dict.fromkeys(votes, 0.0)
    shares: dict[str, float] = {}
    for candidate, count in votes.items():
        x = 100.0 * count / expressed
        hundredths = x * 100.0 + 0.5
        nearest = int(hundredths)
        shares[candidate] = (
            nearest / 100 if 1e-6 < hundredths - nearest < 0.999999 and x >= 0 else round(x, 2)
        )
    return shares


def turnout_of(total: Tally) -> float | None:
    """Percentage of the registered voters of the reported bureaux who voted."""
    return 100.0 * total.voters / total.registered if total.registered else None


def make_standings(
    election: str,
    level: str,
    area: str,
    name: str,
    bureaux_total: int,
    total: Tally,
    candidates: list[str],
) -> dict[str, Any]:
    """The results view of one area (a ``Standings`` as a plain dict: this runs per message)."""
    votes = total.votes
    if list(votes) == candidates:  # the usual case: reports list candidates in the election's order
        votes = dict(votes)
    else:  # in the election's order, missing ones at 0, foreign ones (never validated) dropped
        votes = {candidate: votes.get(candidate, 0) for candidate in candidates}
    expressed = sum(votes.values())
    shares = shares_of(votes, expressed)
    leader, tied, margin = leader_of(votes)
    turnout = turnout_of(total)
    return {
        "election": election,
        "level": level,
        "area": area,
        "name": name,
        "registered": total.registered,
        "voters": total.voters,
        "blank": total.blank,
        "invalid": total.invalid,
        "expressed": expressed,
        "votes": votes,
        "shares": shares,
        "turnout": None if turnout is None else round(turnout, 2),
        "leader": leader,
        "tied": tied,
        "margin": margin,
        "bureaux_reported": total.bureaux,
        "bureaux_total": bureaux_total,
    }


def detect_changes(
    announced: dict[str, Any],
    standings: dict[str, Any],
    total: Tally,
    step: float,
    cause: dict[str, Any] | None,
    at: datetime | str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Events (``UpdateEvent`` dicts) for the move from ``announced`` to ``standings``, and the new
    ``announced``.

    ``announced`` holds ``leader``, ``tied``, ``turnout`` (unrounded) and ``complete``; an empty
    dict means nothing was said yet, so the first leader and first turnout are events too.
    ``at`` (a time, or its ISO-8601 text when a batch shares one) defaults to now.
    """
    events: list[dict[str, Any]] = []
    now = dict(announced)
    common = {
        "election": standings["election"],
        "level": standings["level"],
        "area": standings["area"],
        "name": standings["name"],
        "leader": standings["leader"],
        "previous_leader": None,
        "tied": standings["tied"],
        "margin": standings["margin"],
        "turnout": standings["turnout"],
        "previous_turnout": None,
        "bureaux_reported": standings["bureaux_reported"],
        "bureaux_total": standings["bureaux_total"],
        "at": at if isinstance(at, str) else (at or datetime.now(UTC)).isoformat(),
        "cause": cause,
    }

    lead = (standings["leader"], standings["tied"])
    was = (announced.get("leader"), announced.get("tied"))
    if lead != was:
        events.append({**common, "kind": "leader_changed", "previous_leader": was[0]})
        now["leader"], now["tied"] = lead

    turnout = turnout_of(total)
    previous = announced.get("turnout")
    if turnout is not None and (previous is None or abs(turnout - previous) >= step - EPSILON):
        previous_turnout = None if previous is None else round(previous, 2)
        events.append({**common, "kind": "turnout_changed", "previous_turnout": previous_turnout})
        now["turnout"] = turnout

    if not announced.get("complete") and 0 < standings["bureaux_total"] <= standings["bureaux_reported"]:
        events.append({**common, "kind": "complete"})
        now["complete"] = True
    return events, now
