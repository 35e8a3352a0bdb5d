"""A législatives night through a real worker: 577 races on the 2017 bureaux (69,242 of them),
invented candidates and nuances (``stream.sources.legislative``), every report published as the
night had it, corrections included.

Expected figures are computed here from the reports the test published (the last ``seq`` of each
bureau), and the outcomes by the election law written out again below, independently of
``stream.domain.races``: every race's votes and outcome, every department's and the nation's
votes by party, and the seats each party won.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from fractions import Fraction
from typing import Any

from stream.sources.legislative import legislative_scenario
from stream.sources.ministry import election_from_ministry

from .harness import ROUND_FILES, Stack, pres2017_dir


def law_round_one(votes: dict[str, int], registered: int) -> tuple[list[str], list[str]]:
    """(elected, qualified) at the full count, from the Code électoral (art. L126 and L162)."""
    expressed = sum(votes.values())
    for candidate, count in votes.items():
        if Fraction(count) > Fraction(expressed, 2) and Fraction(count) >= Fraction(registered, 4):
            return [candidate], []
    reached = sorted(c for c, n in votes.items() if Fraction(n) >= Fraction(registered, 8))
    if len(reached) >= 2:
        return [], reached
    ranked = sorted(votes, key=lambda c: -votes[c])
    return [], sorted(ranked[:2])


def test_a_legislative_night_counts_every_race_party_and_seat(stack: Any) -> None:
    s: Stack = stack("legislative")
    roll = election_from_ministry(pres2017_dir() / ROUND_FILES[1], "roll")
    e = f"leg2017-t1-{uuid.uuid4().hex[:6]}"
    night = legislative_scenario(roll, e, round=1)
    election = night.election
    assert election.races is not None and len(election.races) == 577
    s.register(election)
    s.start_worker()
    s.publish(report.result.model_dump(mode="json", exclude_none=True) for report in night.reports)

    final: dict[str, Any] = {}
    for report in night.reports:
        held = final.get(report.result.bureau)
        if held is None or report.result.seq > held.seq:
            final[report.result.bureau] = report.result
    bureaux = len(election.bureaux)
    assert len(final) == bureaux

    def complete() -> bool:
        nation = s.standings(e, "nation", "FR")
        return nation is not None and nation.bureaux_reported == bureaux

    s.wait_until(complete, 600, f"all {bureaux:,} bureaux in the nation's total")

    party_of = {c.id: c.party for race in election.races for c in race.candidates}
    roll_of = {entry.bureau: entry for entry in election.bureaux}
    race_votes: dict[str, Counter[str]] = defaultdict(Counter)
    race_registered: Counter[str] = Counter()
    department_parties: dict[str, Counter[str]] = defaultdict(Counter)
    nation_parties: Counter[str] = Counter()
    for bureau, result in final.items():
        entry = roll_of[bureau]
        race_registered[entry.race] += entry.registered
        for candidate, count in result.votes.items():
            race_votes[entry.race][candidate] += count
            department_parties[entry.department][party_of[candidate]] += count
            nation_parties[party_of[candidate]] += count

    seats: Counter[str] = Counter()
    elected_races = 0
    for race in election.races:
        votes = {c.id: race_votes[race.race][c.id] for c in race.candidates}
        got = s.standings(e, "circonscription", race.race)
        assert got is not None and got.votes == votes, race.race
        assert got.race == race.race and got.decided, race.race
        elected, qualified = law_round_one(votes, race_registered[race.race])
        assert (got.elected, got.qualified) == (elected, qualified), race.race
        for candidate in elected:
            seats[party_of[candidate]] += 1
        elected_races += bool(elected)

    for department, parties in department_parties.items():
        got = s.standings(e, "department", department)
        assert got is not None
        assert {p: n for p, n in got.votes.items() if n} == dict(parties), department
    nation = s.standings(e, "nation", "FR")
    assert nation is not None
    assert {p: n for p, n in nation.votes.items() if n} == dict(nation_parties)
    assert nation.seats is not None
    assert {p: (v.won, v.decided) for p, v in nation.seats.items()} == {p: (n, n) for p, n in seats.items()}
    assert elected_races == sum(seats.values())
    events = s.read_topic(s.settings.updates_topic)
    called = Counter(
        event["kind"] for _, event in events if event["level"] == "circonscription" and event["election"] == e
    )
    # every race is settled once, and again after each correction that reopened it
    assert called["elected"] + called["qualified"] - called["undecided"] == 577
