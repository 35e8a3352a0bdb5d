"""What is worth announcing: standings, calls, and the change detection (pure, no I/O).

Results and events are built as plain dicts shaped exactly like ``messages.Standings`` and
``messages.UpdateEvent`` (the tests check they validate): pydantic per message costs too much.

Each area remembers what was last *announced* about it (``AreaState.announced``), and new
standings are compared with that, not with the previous total: a turnout creeping up by
0.01 point a hundred times still makes an event once it has moved a full step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from stream.domain.aggregation import Comparison, Tally
from stream.domain.races import Outcome, Rules, outcome_if_final, race_outcome

__all__ = [
    "leader_of",
    "shares_of",
    "turnout_of",
    "decision_of",
    "compare",
    "make_standings",
    "report_event",
    "detect_changes",
    "by_party",
    "race_seats",
    "RaceRules",
    "EPSILON",
]

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


def decision_of(votes: dict[str, int], remaining: int, qualify: int | None) -> tuple[bool, list[str] | None]:
    """(decided, qualified): can no outcome of the unreported bureaux change the result?

    ``remaining`` is the registered voters of the bureaux not yet reported: at most that many
    ballots are still to come, all of which could go to one candidate. The leader is then safe
    when their margin is larger; with ``qualify`` N, the set of the first N is safe when the
    N-th's lead over the (N+1)-th is.
    """
    if qualify is None:
        leader, _, margin = leader_of(votes)
        return leader is not None and margin > remaining, None
    ranked = sorted(votes.items(), key=lambda item: -item[1])
    if len(ranked) <= qualify or ranked[qualify - 1][1] - ranked[qualify][1] <= remaining:
        return False, None
    return True, sorted(candidate for candidate, _ in ranked[:qualify])


def _turnout_at(turnout_at: dict[str, list[int]]) -> dict[str, float]:
    return {
        hour: round(100.0 * voters / registered, 2)
        for hour, (registered, voters) in sorted(turnout_at.items())
        if registered
    }


def _turnout(tally: Tally) -> float | None:
    turnout = turnout_of(tally)
    return None if turnout is None else round(turnout, 2)


class RaceRules(NamedTuple):
    """How a race elects: its id, its rules (``races.Rules``), the election's round, its seats."""

    race: str
    rules: Rules
    round: int
    seats: int


def by_party(votes: dict[str, int], party_of: dict[str, str]) -> dict[str, int]:
    """Candidates' votes summed by party (a key that is no candidate is a party already)."""
    parties: dict[str, int] = {}
    for candidate, count in votes.items():
        party = party_of.get(candidate, candidate)
        parties[party] = parties.get(party, 0) + count
    return parties


def _party_comparison(comparison: Comparison, party_of: dict[str, str]) -> Comparison:
    reference, current = comparison.reference.copy(), comparison.current.copy()
    reference.votes, current.votes = by_party(reference.votes, party_of), by_party(current.votes, party_of)
    return Comparison(reference, current)


def _outcome(race: RaceRules, votes: dict[str, int], registered_total: int, remaining: int) -> Outcome:
    return race_outcome(votes, registered_total, remaining, race.rules, race.round, race.seats)


def race_seats(
    race: RaceRules, votes: dict[str, int], registered_total: int, total: Tally, party_of: dict[str, str]
) -> dict[str, list[int]]:
    """A race's seats by party, ``{party: [won, decided]}``: won on the counts so far (as if
    they were final), decided when no outcome of the unreported bureaux can change it."""
    sure = _outcome(race, votes, registered_total, registered_total - total.settled_registered)
    now = (
        sure
        if sure.decided
        else outcome_if_final(votes, registered_total, race.rules, race.round, race.seats)
    )
    seats: dict[str, list[int]] = {}
    for candidate in now.elected:
        pair = seats.setdefault(party_of[candidate], [0, 0])
        pair[0] += 1
        pair[1] += candidate in sure.elected
    return seats


def compare(reference_election: str, comparison: Comparison) -> tuple[dict[str, Any], dict[str, Any]]:
    """``reference`` and ``change`` (``messages.Reference``, ``messages.Change``) over the bureaux
    reported in both elections."""
    before, now = comparison.reference, comparison.current
    before_shares = shares_of(before.votes, before.expressed)
    now_shares = shares_of(now.votes, now.expressed)
    before_at, now_at = _turnout_at(before.turnout_at), _turnout_at(now.turnout_at)
    turnout_before, turnout_now = turnout_of(before), turnout_of(now)
    reference = {
        "election": reference_election,
        "registered": before.registered,
        "voters": before.voters,
        "turnout": _turnout(before),
        "votes": before.votes,
        "shares": before_shares,
        "bureaux": before.bureaux,
        "turnout_at": before_at,
    }
    change = {
        "voters_pct": round(100.0 * (now.voters - before.voters) / before.voters, 2)
        if before.voters
        else None,
        "turnout_points": (
            None if turnout_before is None or turnout_now is None else round(turnout_now - turnout_before, 2)
        ),
        "shares_points": {
            candidate: round(share - before_shares[candidate], 2)
            for candidate, share in now_shares.items()
            if candidate in before_shares
        },
        "turnout_at_points": {
            hour: round(value - before_at[hour], 2) for hour, value in now_at.items() if hour in before_at
        },
    }
    return reference, change


def make_standings(
    election: str,
    level: str,
    area: str,
    name: str,
    bureaux_total: int,
    total: Tally,
    candidates: list[str],
    *,
    version: int = 0,
    registered_total: int | None = None,
    qualify: int | None = None,
    compare_to: str | None = None,
    party_of: dict[str, str] | None = None,
    race: RaceRules | None = None,
    comparison_party_of: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The results view of one area (a ``Standings`` as a plain dict: this runs per message).

    ``registered_total`` is the registered voters of all the area's bureaux (the roll's): with
    it, ``decided`` says whether the unreported ones can still change the outcome. With
    ``party_of``, votes count by party (``candidates`` then lists the parties); with ``race``,
    the area is that race's: ``decided``, ``elected`` and ``qualified`` follow its rules.
    """
    votes = total.votes if party_of is None else by_party(total.votes, party_of)
    if list(votes) == candidates:  # the usual case: reports list candidates in the election's order
        votes = dict(votes)
    else:  # in the election's order, missing ones at 0, foreign ones (never validated) dropped
        votes = {candidate: votes.get(candidate, 0) for candidate in candidates}
    expressed = sum(votes.values())
    shares = shares_of(votes, expressed)
    leader, tied, margin = leader_of(votes)
    turnout = turnout_of(total)
    elected: list[str] | None = None
    remaining = None if registered_total is None else registered_total - total.settled_registered
    if remaining is None or registered_total is None:
        decided, qualified = False, None
    elif race is not None:
        outcome = _outcome(race, votes, registered_total, remaining)
        decided, elected, qualified = outcome.decided, outcome.elected, outcome.qualified
    elif qualify is None:  # decision_of without computing the leader again (this runs per message)
        decided, qualified = leader is not None and margin > remaining, None
    else:
        decided, qualified = decision_of(votes, remaining, qualify)
    standings: dict[str, Any] = {
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
        "bureaux_by_status": total.by_status(),
        "as_of": total.as_of or None,
        "version": version,
        "decided": decided,
        "qualified": qualified,
        "turnout_at": (_turnout_at(total.turnout_at) or None) if total.turnout_at else None,
        "reference": None,
        "change": None,
        "seq": None,  # a bureau's: the seq of the report counted (``bureau_standings``)
        "race": None if race is None else race.race,
        "elected": elected,
        "seats": None
        if total.seats is None
        else {party: {"won": won, "decided": sure} for party, (won, sure) in total.seats.items() if won},
    }
    comparison = total.comparison
    if (
        compare_to is not None
        and comparison is not None
        and (comparison.reference.bureaux or comparison.reference.turnout_at)
    ):
        if party_of is not None:
            comparison = _party_comparison(comparison, comparison_party_of or party_of)
        standings["reference"], standings["change"] = compare(compare_to, comparison)
    return standings


def report_event(
    standings: dict[str, Any], corrected: bool, cause: dict[str, Any] | None, at: str
) -> dict[str, Any]:
    """A bureau's one event per accepted report: ``reported``, or ``corrected`` when a higher
    ``seq`` replaced an earlier report; it carries the bureau's figures."""
    return {
        **standings,
        "kind": "corrected" if corrected else "reported",
        "previous_leader": None,
        "previous_turnout": None,
        "hour": None,
        "at": at,
        "cause": cause,
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

    ``announced`` holds ``leader``, ``tied``, ``turnout`` (unrounded), ``complete``, ``decided``
    (what was called: the leader, or the qualified) and ``turnout_at``; an empty dict means
    nothing was said yet, so the first leader and first turnout are events too. ``at`` (a time,
    or its ISO-8601 text when a batch shares one) defaults to now.
    """
    events: list[dict[str, Any]] = []
    now = dict(announced)
    common = {
        **standings,
        "previous_leader": None,
        "previous_turnout": None,
        "hour": None,
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

    if total.turnout_at:
        said = announced.get("turnout_at", {})
        for hour, value in (standings["turnout_at"] or {}).items():
            before = said.get(hour)
            if before is None or abs(value - before) >= step - EPSILON:
                events.append(
                    {**common, "kind": "turnout_reported", "hour": hour, "previous_turnout": before}
                )
                said = {**said, hour: value}
        now["turnout_at"] = said

    settled = standings["bureaux_reported"] + standings["bureaux_by_status"]["annulled"]
    if not announced.get("complete") and 0 < standings["bureaux_total"] <= settled:
        events.append({**common, "kind": "complete"})
        now["complete"] = True

    called = announced.get("decided")
    race = standings["race"] is not None
    if not standings["decided"]:
        calling: Any = None
    elif race:  # a race's outcome: who is elected, who goes to the second round
        calling = {"elected": standings["elected"], "qualified": standings["qualified"]}
    else:
        calling = standings["qualified"] or standings["leader"]
    if called != calling:
        if called is not None:  # a correction reopened it (or turned it to someone else)
            events.append({**common, "kind": "undecided"})
        if calling is not None and not race:
            events.append({**common, "kind": "decided"})
        elif calling is not None:
            events += [{**common, "kind": kind} for kind in ("elected", "qualified") if calling[kind]]
        now["decided"] = calling
    return events, now
