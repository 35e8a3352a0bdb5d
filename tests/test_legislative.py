"""The generated législatives night (``stream.sources.legislative``) on the 2017 presidential roll.

Every figure is re-summed here from the reports (latest seq per bureau, computed in the test) and the
roll, not taken from ``Scenario.final``; the 2017 national shares and rates are written out
literally; the round-1 outcome of each race is judged here from the law, independently of the
generator.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from pydantic import TypeAdapter

from stream.domain.messages import BureauResult, Candidate, Election, validate_result
from stream.sources.legislative import legislative_scenario
from stream.sources.ministry import election_from_ministry
from stream.sources.scenario import Scenario, TimedResult, load_scenario, write_scenario

from .harness import ROUND_FILES

CEST = timezone(timedelta(hours=2))
#: Round 1, 11 June 2017: national shares of expressed votes by nuance (ministry).
SHARES_2017 = {
    "REM": 28.21,
    "LR": 15.77,
    "FN": 13.20,
    "FI": 11.03,
    "SOC": 7.44,
    "ECO": 4.30,
    "MDM": 4.12,
    "UDI": 3.03,
    "DVD": 2.76,
    "COM": 2.72,
    "DIV": 2.21,
    "DVG": 1.60,
    "DLF": 1.17,
    "REG": 0.90,
    "EXG": 0.77,
    "RDG": 0.47,
    "EXD": 0.30,
}
NUANCES = set(SHARES_2017)
#: At most one candidate of these per circonscription.
MAJOR = {"REM", "MDM", "LR", "UDI", "FN", "FI", "SOC", "RDG", "COM", "DLF"}


@pytest.fixture(scope="module")
def roll(data_dir: Path) -> Election:
    return election_from_ministry(data_dir / ROUND_FILES[1], "pres2017-t1")


@pytest.fixture(scope="module")
def timed_night(roll: Election) -> tuple[Scenario, float]:
    started = time.perf_counter()
    night = legislative_scenario(roll, "leg2017-t1")
    return night, time.perf_counter() - started


@pytest.fixture(scope="module")
def night(timed_night: tuple[Scenario, float]) -> Scenario:
    return timed_night[0]


@pytest.fixture(scope="module")
def second(roll: Election) -> Scenario:
    return legislative_scenario(roll, "leg2017-t2", round=2)


def latest(night: Scenario) -> dict[str, BureauResult]:
    found: dict[str, BureauResult] = {}
    for report in night.reports:
        known = found.get(report.result.bureau)
        if known is None or report.result.seq > known.seq:
            found[report.result.bureau] = report.result
    return found


def circonscriptions(roll: Election) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for entry in roll.bureaux:
        if entry.circonscription is not None:
            found[entry.circonscription].add(entry.bureau)
    return found


def race_totals(night: Scenario) -> dict[str, tuple[Counter[str], int, int]]:
    """Per race: votes per candidate, expressed votes and registered voters (from the roll)."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    expressed: Counter[str] = Counter()
    registered: Counter[str] = Counter()
    roll = night.election.roll
    for bureau, result in latest(night).items():
        race = roll[bureau].race
        assert race is not None
        votes[race].update(result.votes)
        expressed[race] += sum(result.votes.values())
    for entry in night.election.bureaux:
        registered[entry.race or ""] += entry.registered
    return {race: (votes[race], expressed[race], registered[race]) for race in votes}


def round_one_law(votes: Counter[str], expressed: int, registered: int) -> tuple[str | None, set[str]]:
    """(elected, qualified): more than half the expressed votes and a quarter of the registered
    elects; else an eighth of the registered qualifies, or the first two when fewer reach it."""
    ranked = sorted(votes, key=lambda c: -votes[c])
    first = ranked[0]
    if votes[first] * 2 > expressed and votes[first] * 4 >= registered:
        return first, set()
    through = {c for c in votes if votes[c] * 8 >= registered}
    return None, through if len(through) >= 2 else set(ranked[:2])


def test_one_race_per_circonscription_over_exactly_its_bureaux(roll: Election, night: Scenario) -> None:
    election = night.election
    expected = circonscriptions(roll)
    assert len(expected) == 577
    assert election.races is not None and len(election.races) == 577
    assert election.round == 1 and election.candidates == [] and election.election == "leg2017-t1"
    names = {e.circonscription: e.circonscription_name for e in roll.bureaux if e.circonscription}
    by_race: dict[str, set[str]] = defaultdict(set)
    for entry in election.bureaux:
        by_race[entry.race or ""].add(entry.bureau)
        original = roll.roll[entry.bureau]
        assert entry.race == original.circonscription == entry.circonscription
        assert (entry.registered, entry.commune, entry.department) == (
            original.registered,
            original.commune,
            original.department,
        )
    assert by_race == expected
    for race in election.races:
        assert race.name == names[race.race]
        assert (race.area.level, race.area.id) == ("circonscription", race.race)
        assert (race.seats, race.rules) == (1, "legislative")
    assert len(election.bureaux) == len(roll.bureaux) == 69_242  # every bureau has a circonscription
    # The definition is a valid contract message as it travels (JSON and back).
    assert Election.model_validate_json(election.model_dump_json()) == election


def test_candidates(night: Scenario) -> None:
    races = night.election.races or []
    sizes = [len(race.candidates) for race in races]
    assert min(sizes) >= 5 and max(sizes) <= 17
    assert 12.5 <= sum(sizes) / len(sizes) <= 14.5  # 13.7 in 2017
    ids = [c.id for race in races for c in race.candidates]
    assert len(ids) == len(set(ids))
    parties: Counter[str] = Counter()
    for race in races:
        assert [c.id for c in race.candidates] == [
            f"{race.race}-{n:02d}" for n in range(1, len(race.candidates) + 1)
        ]
        here = Counter(c.party for c in race.candidates)
        assert set(here) <= NUANCES
        assert all(here[p] <= 1 for p in MAJOR), (race.race, here)
        names = [c.name for c in race.candidates]
        assert len(set(names)) == len(names)
        assert all(len(n.split()) >= 2 and n[0].isupper() for n in names)
        parties.update(here)
    # Parties that stand nearly everywhere, and the ones that stand in a few places.
    assert parties["FN"] > 540 and parties["FI"] > 520 and 400 < parties["REM"] + parties["MDM"] <= 577
    assert 0 < parties["REG"] < 200 and 0 < parties["MDM"] < 150


def test_every_report_is_valid_and_the_night_is_timed(night: Scenario) -> None:
    election = night.election
    known = {election.election: election}
    assert night.polls_close == datetime(2017, 6, 11, 20, 0, tzinfo=CEST)
    seqs: dict[str, list[int]] = defaultdict(list)
    for report in night.reports:
        raw = orjson.dumps(report.result.model_dump(mode="json"))
        result = validate_result(raw, known)
        assert result.reported_at == report.at
        assert result.registered == election.roll[result.bureau].registered
        assert timedelta(minutes=15) <= report.at - night.polls_close <= timedelta(minutes=340)
        seqs[result.bureau].append(result.seq)
    assert [r.at for r in night.reports] == sorted(r.at for r in night.reports)
    assert set(seqs) == set(election.roll)
    corrected = {b for b, s in seqs.items() if s == [1, 2]}
    assert all(s == [1] for b, s in seqs.items() if b not in corrected)
    assert corrected == set(night.facts["corrected"]) and 1 <= len(corrected) <= 20
    first = {r.result.bureau: r.result for r in night.reports if r.result.seq == 1}
    final = latest(night)
    for bureau in corrected:
        assert first[bureau].model_dump(exclude={"seq", "reported_at"}) != final[bureau].model_dump(
            exclude={"seq", "reported_at"}
        )
    # A night, not a dump: most reports come between 21:00 and 23:00.
    hours = Counter(r.at.hour for r in night.reports)
    assert hours[21] + hours[22] > 0.6 * len(night.reports)


def test_national_figures(night: Scenario) -> None:
    final = latest(night)
    party = {c.id: c.party for race in night.election.races or [] for c in race.candidates}
    registered = sum(e.registered for e in night.election.bureaux)
    voters = sum(r.voters for r in final.values())
    blank = sum(r.blank for r in final.values())
    invalid = sum(r.invalid for r in final.values())
    votes: Counter[str] = Counter()
    for result in final.values():
        for candidate, n in result.votes.items():
            votes[party[candidate] or ""] += n
    expressed = sum(votes.values())
    assert expressed == voters - blank - invalid
    assert round(100 * voters / registered, 2) == 48.70  # 2017's turnout, to the voter
    assert 1.0 <= 100 * blank / voters <= 2.0 and 0.5 <= 100 * invalid / voters <= 1.0
    shares = {p: 100 * n / expressed for p, n in votes.items()}
    for p, share in SHARES_2017.items():
        assert abs(shares[p] - share) <= max(0.3, share * 0.03), (p, shares[p], share)
    facts = night.facts
    assert facts["bureaux"]["FR"] == len(final) == 69_242 and facts["races"] == 577
    assert (facts["registered"]["FR"], facts["voters"]["FR"]) == (registered, voters)
    assert (facts["blank"]["FR"], facts["invalid"]["FR"], facts["expressed"]["FR"]) == (
        blank,
        invalid,
        expressed,
    )
    assert facts["votes"]["FR"] == dict(votes)
    assert facts["shares"]["FR"] == {p: round(s, 2) for p, s in shares.items()}
    assert facts["target_shares"] == SHARES_2017
    assert facts["candidates"] == len(party)


def test_round_one_outcomes_follow_the_law(night: Scenario) -> None:
    party = {c.id: c.party for race in night.election.races or [] for c in race.candidates}
    elected: dict[str, str] = {}
    qualified: dict[str, list[str]] = {}
    for race, (votes, expressed, registered) in race_totals(night).items():
        winner, through = round_one_law(votes, expressed, registered)
        if winner is not None:
            elected[race] = winner
        else:
            qualified[race] = sorted(through)
    assert night.facts["elected"] == elected
    assert {race: sorted(ids) for race, ids in night.facts["qualified"].items()} == qualified
    assert night.facts["seats"] == dict(Counter(party[c] for c in elected.values()))
    assert 1 <= len(elected) <= 20  # 4 in 2017: few reach a quarter of the registered
    sizes = Counter(len(ids) for ids in qualified.values())
    assert sizes[2] > 500 and 1 <= sizes[3] <= 25
    # Who qualifies: mostly REM and MoDem, LR, FN.
    through = Counter(party[c] for ids in qualified.values() for c in ids)
    assert through["REM"] + through["MDM"] > 400 and through["LR"] + through["UDI"] > 150


def test_round_two_follows_round_one(roll: Election, night: Scenario, second: Scenario) -> None:
    first = race_totals(night)
    outcome = {race: round_one_law(*totals) for race, totals in first.items()}
    still_open = {race for race, (winner, _) in outcome.items() if winner is None}
    election = second.election
    assert election.round == 2 and second.polls_close == datetime(2017, 6, 18, 20, 0, tzinfo=CEST)
    races = {race.race: race for race in election.races or []}
    assert set(races) == still_open
    expected = circonscriptions(roll)
    assert {e.bureau for e in election.bureaux} == set().union(*(expected[r] for r in still_open))
    names = {c.id: (c.name, c.party) for race in night.election.races or [] for c in race.candidates}
    sizes: Counter[int] = Counter()
    for race in races.values():
        ids = [c.id for c in race.candidates]
        sizes[len(ids)] += 1
        votes = first[race.race][0]
        assert set(ids) <= outcome[race.race][1]
        assert max(votes, key=lambda c: votes[c]) in ids  # the first never withdraws
        assert all((c.name, c.party) == names[c.id] for c in race.candidates)
    assert set(sizes) <= {1, 2, 3} and sizes[2] >= 0.9 * len(races)
    assert sizes[3] >= 1 and sizes[1] >= 1
    final = latest(second)
    known = {election.election: election}
    for report in second.reports:
        validate_result(orjson.dumps(report.result.model_dump(mode="json")), known)
    assert set(final) == set(election.roll)
    registered = sum(e.registered for e in election.bureaux)
    voters = sum(r.voters for r in final.values())
    assert round(100 * voters / registered, 2) == 42.64
    assert second.facts["voters"]["FR"] == voters
    # The winners, by plurality; the presidential majority wins most seats.
    party = {c.id: c.party for race in races.values() for c in race.candidates}
    winners: dict[str, str] = {}
    for race, (votes, _, _) in race_totals(second).items():
        best = max(votes.values())
        leaders = [c for c, n in votes.items() if n == best]
        if len(leaders) == 1:
            winners[race] = leaders[0]
    assert second.facts["elected"] == winners
    seats = Counter(party[c] for c in winners.values())
    assert second.facts["seats"] == dict(seats)
    assert seats["REM"] + seats["MDM"] > 289 and seats["LR"] > 40
    assert second.facts["elected_in_round_1"] == {
        race: winner for race, (winner, _) in outcome.items() if winner is not None
    }


def night_digest(night: Scenario) -> str:
    """The SHA-256 of the whole night: definition, reports (in order), facts and polls closing."""
    digest = hashlib.sha256(night.election.model_dump_json().encode())
    digest.update(TypeAdapter(list[TimedResult]).dump_json(night.reports))
    digest.update(orjson.dumps([night.facts, night.polls_close.isoformat()], option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def test_the_same_seed_gives_the_same_night_in_another_process(
    data_dir: Path, timed_night: tuple[Scenario, float]
) -> None:
    """Byte for byte, even with another hash seed (no set order leaks into the night)."""
    night, seconds = timed_night
    assert seconds < 15
    program = (
        "import sys; from pathlib import Path; "
        "from stream.sources.ministry import election_from_ministry; "
        "from stream.sources.legislative import legislative_scenario; "
        "from tests.test_legislative import night_digest; "
        "roll = election_from_ministry(Path(sys.argv[1]), 'pres2017-t1'); "
        "print(night_digest(legislative_scenario(roll, 'leg2017-t1')))"
    )
    other = subprocess.run(
        [sys.executable, "-c", program, str(data_dir / ROUND_FILES[1])],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
        env=os.environ | {"PYTHONHASHSEED": "12345"},
    )
    assert other.stdout.strip() == night_digest(night)


def small_roll(roll: Election) -> Election:
    """The Loire's bureaux, and a few bureaux of the Rhône that lost their circonscription."""
    loire = [e for e in roll.bureaux if e.department == "42"]
    rhone = [
        e.model_copy(update={"circonscription": None, "circonscription_name": ""})
        for e in roll.bureaux
        if e.department == "69"
    ][:5]
    return Election(
        election="small", name="small", candidates=[Candidate(id="X", name="X")], bureaux=loire + rhone
    )


def test_a_small_roll_another_seed_and_a_file(roll: Election, tmp_path: Path) -> None:
    small = small_roll(roll)
    night = legislative_scenario(small, "leg-loire", seed=7)
    assert {e.bureau for e in night.election.bureaux} == {
        e.bureau for e in small.bureaux if e.department == "42"
    }
    assert sorted(r.race for r in night.election.races or []) == [f"42-{n:02d}" for n in range(1, 7)]
    assert night.facts["bureaux"]["FR"] == len(night.election.bureaux)
    other = legislative_scenario(small, "leg-loire", seed=8)
    assert other.election.races != night.election.races
    assert legislative_scenario(small, "leg-loire", seed=7).reports == night.reports
    close = datetime(2024, 6, 30, 20, 0, tzinfo=CEST)
    late = legislative_scenario(small, "leg-loire", round=2, seed=7, polls_close=close)
    assert late.polls_close == close and all(r.at > close for r in late.reports)
    assert late.election.name == "Élections législatives 2024, 2nd tour"
    path = tmp_path / "night.jsonl"
    write_scenario(night, path)
    loaded = load_scenario(path)
    assert loaded.election == night.election and loaded.reports == night.reports
    assert loaded.facts == orjson.loads(orjson.dumps(night.facts))


def test_refusals(roll: Election) -> None:
    small = small_roll(roll)
    nowhere = Election(
        election="none",
        name="none",
        candidates=[Candidate(id="X", name="X")],
        bureaux=[e for e in small.bureaux if e.circonscription is None],
    )
    with pytest.raises(ValueError, match="no bureau has a circonscription"):
        legislative_scenario(nowhere, "leg")
    with pytest.raises(ValueError, match="round must be 1 or 2"):
        legislative_scenario(small, "leg", round=3)


def test_soiree_replay_writes_a_legislative_night_on_a_ministry_roll(
    data_dir: Path, night: Scenario, tmp_path: Path
) -> None:
    """``soiree replay FILE --legislative 1 --save NIGHT``: the generator from the command line,
    the same night as the function's (same seed), in a scenario file that loads back."""
    saved = tmp_path / "legislatives.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "replay",
            str(data_dir / ROUND_FILES[1]),
            "--legislative",
            "1",
            "--as",
            night.election.election,
            "--save",
            str(saved),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(night.reports):,} reports" in done.stdout
    loaded = load_scenario(saved)
    assert loaded.election == night.election
    assert [r.result for r in loaded.reports] == [r.result for r in night.reports]
