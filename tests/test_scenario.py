"""The seed nights agree with every published figure; scenario files round-trip; errors name lines.

Every figure is re-summed here from the reports (latest seq per bureau, computed in the test), not
taken from ``Scenario.facts`` or ``Scenario.final``; the published values are written out literally:
the second round's from the news report of 29 January 2017, the first round's from the primary's
Haute Autorité (definitive results of 25 January 2017: votes, blank and invalid ballots, and shares
of voters) and the Loire's from PRODUCT.md.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from stream.domain.messages import BureauResult, check_against_election
from stream.sources.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    resolve,
    scenario_from_ministry,
    seed_first_round,
    seed_scenario,
    write_scenario,
)

CET = timezone(timedelta(hours=1))
NIGHT_START = datetime(2017, 1, 29, 19, 0, tzinfo=CET)
FIRST_NIGHT_START = datetime(2017, 1, 22, 19, 0, tzinfo=CET)
#: The first round's definitive results (Haute Autorité, 25 January 2017), in the published order.
FIRST_ROUND_VOTES = {
    "HAMON": 596_647,
    "VALLS": 521_238,
    "MONTEBOURG": 290_070,
    "PEILLON": 112_718,
    "DE RUGY": 63_430,
    "PINEL": 33_067,
    "BENNAHMIAS": 16_869,
}
#: Its percentages, of voters (blank and invalid ballots included), as published.
FIRST_ROUND_SHARES_OF_VOTERS = {
    "HAMON": 36.03,
    "VALLS": 31.48,
    "MONTEBOURG": 17.52,
    "PEILLON": 6.81,
    "DE RUGY": 3.83,
    "PINEL": 2.00,
    "BENNAHMIAS": 1.02,
}


def _latest(night: Scenario) -> dict[str, BureauResult]:
    latest: dict[str, BureauResult] = {}
    for report in night.reports:
        result = report.result
        if result.bureau not in latest or result.seq > latest[result.bureau].seq:
            latest[result.bureau] = result
    return latest


@pytest.fixture(scope="module")
def seed() -> Scenario:
    return seed_scenario()


@pytest.fixture(scope="module")
def final(seed: Scenario) -> dict[str, BureauResult]:
    return _latest(seed)


@pytest.fixture(scope="module")
def first() -> Scenario:
    return seed_first_round()


@pytest.fixture(scope="module")
def first_final(first: Scenario) -> dict[str, BureauResult]:
    return _latest(first)


@pytest.fixture(scope="module", params=["round 1", "round 2"])
def night(request: pytest.FixtureRequest, first: Scenario, seed: Scenario) -> Scenario:
    """Each seed night in turn, for the checks both must pass."""
    return first if request.param == "round 1" else seed


def _sums(results: list[BureauResult]) -> dict[str, int]:
    sums: dict[str, int] = defaultdict(int)
    for r in results:
        sums["bureaux"] += 1
        sums["voters"] += r.voters
        sums["registered"] += r.registered or 0
        sums["spoiled"] += r.blank + r.invalid
        sums["HAMON"] += r.votes.get("HAMON", 0)
        sums["VALLS"] += r.votes.get("VALLS", 0)
    return sums


def _area(seed: Scenario, final: dict[str, BureauResult], **where: str) -> list[BureauResult]:
    roll = {e.bureau: e for e in seed.election.bureaux}
    return [r for b, r in final.items() if all(getattr(roll[b], k) == v for k, v in where.items())]


def _share(sums: dict[str, int], candidate: str) -> float:
    return 100 * sums[candidate] / (sums["HAMON"] + sums["VALLS"])


def test_election_definition(seed: Scenario) -> None:
    election = seed.election
    assert election.election == "primaire-gauche-2017-t2"
    assert [(c.id, c.name) for c in election.candidates] == [
        ("HAMON", "Benoît Hamon"),
        ("VALLS", "Manuel Valls"),
    ]
    assert 7_400 <= len(election.bureaux) <= 7_650
    saint_etienne = [e for e in election.bureaux if e.commune == "42218"]
    assert saint_etienne and {(e.commune_name, e.department, e.department_name) for e in saint_etienne} == {
        ("Saint-Étienne", "42", "Loire")
    }
    departments = {e.department for e in election.bureaux}
    assert len(departments) >= 96 and {f"{n:02d}" for n in range(1, 96) if n != 20} <= departments


def test_every_bureau_reports(seed: Scenario, final: dict[str, BureauResult]) -> None:
    assert set(final) == {e.bureau for e in seed.election.bureaux}


def test_national_figures(seed: Scenario, final: dict[str, BureauResult]) -> None:
    nation = _sums(list(final.values()))
    assert round(_share(nation, "HAMON"), 2) == 58.72
    assert round(_share(nation, "VALLS"), 2) == 41.28
    assert 2_000_000 < nation["voters"] < 2_100_000  # "plus de deux millions"
    assert nation["voters"] == seed.facts["voters"]["FR"]
    increase = nation["voters"] - 1_655_919
    assert 380_000 <= increase <= 420_000  # "400 000 de plus qu'au premier tour"
    assert 0.02 < nation["voters"] / nation["registered"] < 0.08  # a primary: a few percent turnout
    assert 0.002 < nation["spoiled"] / nation["voters"] < 0.03


def test_loire_figures(seed: Scenario, final: dict[str, BureauResult]) -> None:
    loire = _sums(_area(seed, final, department="42"))
    assert loire["bureaux"] == 65
    assert loire["voters"] == 18_501
    assert loire["HAMON"] == 11_089
    assert loire["VALLS"] == 7_146
    assert loire["spoiled"] == 266
    assert round(_share(loire, "HAMON"), 1) == 60.8
    assert round(_share(loire, "VALLS"), 1) == 39.2
    assert seed.facts["first_round_voters"]["42"] == 14_697
    assert round(100 * (loire["voters"] / 14_697 - 1), 1) == 25.9


def test_saint_etienne_figures(seed: Scenario, final: dict[str, BureauResult]) -> None:
    bureaux = _area(seed, final, commune="42218")
    town = _sums(bureaux)
    assert town["voters"] == 4_503
    assert 63.5 <= _share(town, "HAMON") < 64.0
    over_70 = [r for r in bureaux if r.votes["HAMON"] > 0.70 * (r.votes["HAMON"] + r.votes["VALLS"])]
    assert len(over_70) >= 3


def test_facts_are_the_published_ones(seed: Scenario) -> None:
    facts = seed.facts
    assert facts["voters"]["42"] == 18_501 and facts["voters"]["42218"] == 4_503
    assert facts["votes"]["42"] == {"HAMON": 11_089, "VALLS": 7_146}
    assert facts["shares"]["FR"] == {"HAMON": 58.72, "VALLS": 41.28}
    assert facts["bureaux"]["42"] == 65
    assert orjson.loads(orjson.dumps(facts)) == facts


# --------------------------------------------------------------------------------------------
# the first round, 22 January 2017


def _first_sums(results: list[BureauResult]) -> Counter[str]:
    sums: Counter[str] = Counter()
    for r in results:
        sums["bureaux"] += 1
        sums["voters"] += r.voters
        sums["blank"] += r.blank
        sums["invalid"] += r.invalid
        sums["expressed"] += sum(r.votes.values())
        sums.update(r.votes)
    return sums


def test_first_round_definition(first: Scenario, seed: Scenario) -> None:
    election = first.election
    assert election.election == "primaire-gauche-2017-t1"
    assert election.name == "Primaire citoyenne de la gauche 2017, 1er tour"
    assert (election.round, election.qualify, election.compare_to) == (1, 2, None)
    assert [c.id for c in election.candidates] == list(FIRST_ROUND_VOTES)
    assert {c.id: c.name for c in election.candidates}["DE RUGY"] == "François de Rugy"
    assert (seed.election.round, seed.election.qualify, seed.election.compare_to) == (
        2,
        None,
        "primaire-gauche-2017-t1",
    )
    # The same bureaux both Sundays: same ids, communes, departments and registered voters.
    assert [e.model_dump() for e in election.bureaux] == [e.model_dump() for e in seed.election.bureaux]


def test_first_round_every_bureau_reports(
    first: Scenario, first_final: dict[str, BureauResult], final: dict[str, BureauResult]
) -> None:
    assert set(first_final) == {e.bureau for e in first.election.bureaux} == set(final)


def test_first_round_national_figures(
    first_final: dict[str, BureauResult], final: dict[str, BureauResult]
) -> None:
    nation = _first_sums(list(first_final.values()))
    assert nation["voters"] == 1_655_919
    assert {c: nation[c] for c in FIRST_ROUND_VOTES} == FIRST_ROUND_VOTES
    assert (nation["blank"], nation["invalid"]) == (11_766, 10_114)
    for candidate, published in FIRST_ROUND_SHARES_OF_VOTERS.items():
        share = 100 * nation[candidate] / nation["voters"]
        assert abs(share - published) < 0.1 and round(share, 2) == published
    by_votes = sorted(FIRST_ROUND_VOTES, key=lambda c: -nation[c])
    assert by_votes == list(FIRST_ROUND_SHARES_OF_VOTERS)
    # As standings show them (of expressed votes), the same order, each a little higher.
    of_expressed = {c: 100 * nation[c] / nation["expressed"] for c in FIRST_ROUND_VOTES}
    assert round(of_expressed["HAMON"], 2) == 36.51 and round(of_expressed["VALLS"], 2) == 31.90
    assert all(of_expressed[c] > FIRST_ROUND_SHARES_OF_VOTERS[c] for c in FIRST_ROUND_VOTES)
    assert 0.01 < (nation["blank"] + nation["invalid"]) / nation["voters"] < 0.015
    second_voters = sum(r.voters for r in final.values())
    assert second_voters - nation["voters"] == 389_420  # "400 000 de plus qu'au premier tour"


def test_first_round_loire_figures(
    first: Scenario,
    first_final: dict[str, BureauResult],
    seed: Scenario,
    final: dict[str, BureauResult],
) -> None:
    loire = _first_sums(_area(first, first_final, department="42"))
    assert loire["bureaux"] == 65
    assert loire["voters"] == 14_697
    assert loire["HAMON"] == 5_530 and loire["VALLS"] == 4_434
    assert round(100 * loire["HAMON"] / loire["expressed"], 2) == 38.09
    assert round(100 * loire["VALLS"] / loire["expressed"], 2) == 30.54
    second = _sums(_area(seed, final, department="42"))
    assert round(100 * (second["voters"] / loire["voters"] - 1), 1) == 25.9


def test_first_round_montebourg_first_in_his_three_departments(
    first: Scenario, first_final: dict[str, BureauResult]
) -> None:
    # Published with the definitive results: Montebourg first in Saône-et-Loire, the Nièvre and
    # La Réunion, Hamon first in about two thirds of the departments, Valls in about thirty.
    leaders: Counter[str] = Counter()
    for department in {e.department for e in first.election.bureaux}:
        sums = _first_sums(_area(first, first_final, department=department))
        leader = max(FIRST_ROUND_VOTES, key=lambda c: sums[c])
        leaders[leader] += 1
        assert (leader == "MONTEBOURG") == (department in ("71", "58", "ZD")), department
    assert leaders["HAMON"] > 60 and 20 <= leaders["VALLS"] <= 40


def test_first_round_an_independent_draw(
    first_final: dict[str, BureauResult], final: dict[str, BureauResult]
) -> None:
    """Not round 2 scaled by a constant: per bureau the ratio of voters varies, yet follows round 2."""
    ratios = [first_final[b].voters / final[b].voters for b in final]
    assert 0.75 < statistics.median(ratios) < 0.85
    assert statistics.stdev(ratios) > 0.05 and min(ratios) > 0.3 and max(ratios) < 2.0
    hamon_1 = [r.votes["HAMON"] / sum(r.votes.values()) for r in (first_final[b] for b in final)]
    hamon_2 = [r.votes["HAMON"] / sum(r.votes.values()) for r in final.values()]
    assert 0.3 < statistics.correlation(hamon_1, hamon_2) < 0.95
    assert all(r.registered is not None and r.voters <= r.registered for r in first_final.values())


def test_first_round_facts(first: Scenario) -> None:
    facts = first.facts
    assert facts["voters"] == {"FR": 1_655_919, "42": 14_697}
    assert facts["votes"]["FR"] == FIRST_ROUND_VOTES
    assert facts["votes"]["42"] == {"HAMON": 5_530, "VALLS": 4_434}
    assert facts["shares_of_voters"]["FR"] == FIRST_ROUND_SHARES_OF_VOTERS
    assert facts["shares"]["42"] == {"HAMON": 38.09, "VALLS": 30.54}
    assert orjson.loads(orjson.dumps(facts)) == facts


def test_renaming_both_rounds_keeps_the_reference(first: Scenario, seed: Scenario) -> None:
    one = first.renamed("primaire-gauche-2017-t1-demo-7")
    two = seed.renamed("primaire-gauche-2017-t2-demo-7", compare_to=one.election.election)
    assert two.election.compare_to == "primaire-gauche-2017-t1-demo-7"
    assert (one.election.round, one.election.qualify, two.election.round) == (1, 2, 2)
    for night, renamed in ((first, one), (seed, two)):
        assert {r.result.election for r in renamed.reports} == {renamed.election.election}
        assert [r.result.model_dump(exclude={"election"}) for r in renamed.reports] == [
            r.result.model_dump(exclude={"election"}) for r in night.reports
        ]
        assert renamed.election.bureaux == night.election.bureaux and renamed.facts == night.facts
    # Without a new reference, the renamed round 2 still points at round 1 as generated.
    assert seed.renamed("t2-only").election.compare_to == "primaire-gauche-2017-t1"
    assert seed.election.election == "primaire-gauche-2017-t2"  # the original is left alone


def test_counts_plausible(night: Scenario) -> None:
    for r in _latest(night).values():
        assert r.registered is not None and r.voters <= r.registered
        assert r.voters >= 20
        assert r.blank + r.invalid <= 0.06 * r.voters


@pytest.mark.parametrize("generate", [seed_first_round, seed_scenario], ids=["round 1", "round 2"])
def test_deterministic(generate: Callable[[], Scenario]) -> None:
    first, second = generate(), generate()
    assert first == second
    assert [r.model_dump() for r in first.reports] == [r.model_dump() for r in second.reports]


@pytest.mark.parametrize("generate", [seed_first_round, seed_scenario], ids=["round 1", "round 2"])
def test_fast(generate: Callable[[], Scenario]) -> None:
    started = time.perf_counter()
    generate()
    assert time.perf_counter() - started < 3.0  # about 0.4 s (round 2) and 1 s (round 1) when idle


def test_every_report_valid(night: Scenario) -> None:
    for report in night.reports:
        result = BureauResult.model_validate(report.result.model_dump(mode="json"))
        check_against_election(result, night.election)
        assert result.election == night.election.election
        assert result.reported_at == report.at


def test_times_within_the_evening_and_sorted(night: Scenario) -> None:
    start = NIGHT_START if night.election.round == 2 else FIRST_NIGHT_START
    assert night.polls_close == start
    times = [r.at for r in night.reports]
    assert times == sorted(times)
    assert all(t.utcoffset() == timedelta(hours=1) for t in times)
    assert start + timedelta(minutes=10) <= times[0] <= start + timedelta(minutes=50)
    assert start + timedelta(hours=4) <= times[-1] <= start + timedelta(hours=4, minutes=45)
    early = sum(t.hour < 20 for t in times) / len(times)
    core = sum(20 <= t.hour < 22 for t in times) / len(times)
    late = sum(t.hour >= 22 for t in times) / len(times)
    assert 0 < early < 0.15 and core > 0.6 and 0.02 < late < 0.25


def test_big_cities_report_later(night: Scenario) -> None:
    first_seen: dict[str, datetime] = {}
    for report in night.reports:
        first_seen.setdefault(report.result.bureau, report.at)
    paris = sorted(first_seen[b] for b in first_seen if b.startswith("75056-"))
    others = sorted(first_seen[b] for b in first_seen if not b.startswith(("75056-", "13055-", "69123-")))
    assert paris[len(paris) // 2] > others[len(others) // 2]


def test_corrections(night: Scenario) -> None:
    final = _latest(night)
    by_bureau: dict[str, list] = defaultdict(list)
    for report in night.reports:
        by_bureau[report.result.bureau].append(report)
    corrected = {b: reports for b, reports in by_bureau.items() if len(reports) > 1}
    assert 3 <= len(corrected) <= 5
    for bureau, reports in corrected.items():
        assert [r.result.seq for r in reports] == [1, 2]
        first, second = reports
        assert first.at < second.at
        assert second.result == final[bureau]
        keys = ("voters", "blank", "invalid", "votes")
        assert [getattr(first.result, k) for k in keys] != [getattr(second.result, k) for k in keys]
    assert all(len(reports) == 1 for b, reports in by_bureau.items() if b not in corrected)


def test_roundtrip(seed: Scenario, tmp_path: Path) -> None:
    path = tmp_path / "seed.jsonl"
    write_scenario(seed, path)
    lines = path.read_bytes().splitlines()
    header = orjson.loads(lines[0])["scenario"]
    assert (
        header["election"] == "primaire-gauche-2017-t2"
        and header["polls_close"] == "2017-01-29T19:00:00+01:00"
    )
    assert (header["compare_to"], header["round"], header["qualify"]) == ("primaire-gauche-2017-t1", 2, None)
    assert len(header["bureaux"]) == len(seed.election.bureaux) and header["facts"] == seed.facts
    assert set(orjson.loads(lines[1])) == {"at", "result"}
    assert len(lines) == 1 + len(seed.reports)
    loaded = load_scenario(path)
    assert loaded == seed
    assert resolve(str(path)) == seed


def test_first_round_roundtrip(first: Scenario, tmp_path: Path) -> None:
    path = tmp_path / "seed-t1.jsonl"
    write_scenario(first, path)
    header = orjson.loads(path.read_bytes().splitlines()[0])["scenario"]
    assert (header["election"], header["round"], header["qualify"], header["compare_to"]) == (
        "primaire-gauche-2017-t1",
        1,
        2,
        None,
    )
    assert header["polls_close"] == "2017-01-22T19:00:00+01:00"
    loaded = load_scenario(path)
    assert loaded == first
    assert (loaded.election.round, loaded.election.qualify) == (1, 2)


def test_resolve_names() -> None:
    assert resolve("seed").election.election == "primaire-gauche-2017-t2"
    assert resolve("primaire-2017").election.election == "primaire-gauche-2017-t2"
    assert resolve("seed-t1").election.election == "primaire-gauche-2017-t1"
    with pytest.raises(FileNotFoundError, match="no-such-night"):
        resolve("no-such-night")


def _write_lines(path: Path, lines: list[object]) -> None:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines))


def test_load_errors_name_the_line(seed: Scenario, tmp_path: Path) -> None:
    path = tmp_path / "night.jsonl"
    write_scenario(seed, path)
    header, first, second = path.read_bytes().splitlines()[:3]

    _write_lines(path, [header, first, b"{not json"])
    with pytest.raises(ScenarioError, match=r"line 3: not valid JSON"):
        load_scenario(path)

    stranger = orjson.loads(second)
    stranger["result"]["bureau"] = "99999-0001"
    _write_lines(path, [header, first, stranger])
    with pytest.raises(ScenarioError, match=r"line 3: .*99999-0001.*not in the roll"):
        load_scenario(path)

    broken = orjson.loads(second)
    broken["result"]["voters"] += 1
    _write_lines(path, [header, broken])
    with pytest.raises(ScenarioError, match=r"line 2: invalid report: .*voters"):
        load_scenario(path)

    missing_at = orjson.loads(second)
    del missing_at["at"]
    _write_lines(path, [header, missing_at])
    with pytest.raises(ScenarioError, match=r"line 2: invalid report: at: Field required"):
        load_scenario(path)

    _write_lines(path, [first])
    with pytest.raises(ScenarioError, match=r"line 1: the first line must be"):
        load_scenario(path)

    path.write_bytes(b"")
    with pytest.raises(ScenarioError, match="empty scenario file"):
        load_scenario(path)


MINISTRY = (
    "departement,commune,bureau,circonscription,commune_libelle,"
    "inscrits,votants,blancs,exprimes,LE PEN,MACRON\n"
    "42,218,0001,1,Saint-Etienne,812,640,9,627,200,427\n"
    "42,218,0002,1,Saint-Etienne,700,500,5,490,190,300\n"
    "2A,004,0001,1,Ajaccio,500,400,5,390,190,200\n"
)


def test_ministry_file_as_a_night(tmp_path: Path) -> None:
    path = tmp_path / "2017-presidentielle-2_par_bureau_large.csv"
    path.write_text(MINISTRY, encoding="utf-8")
    close = datetime(2017, 5, 7, 19, 0, tzinfo=timezone(timedelta(hours=2)))
    night = scenario_from_ministry(path, "pres2017-t2", close, seed=1)
    assert night.election.election == "pres2017-t2"
    assert sorted(r.result.bureau for r in night.reports) == ["2A004-0001", "42218-0001", "42218-0002"]
    assert all(r.result.seq == 1 and r.result.reported_at == r.at for r in night.reports)
    assert all(
        close + timedelta(minutes=15) <= r.at <= close + timedelta(hours=4, minutes=30) for r in night.reports
    )
    assert [r.at for r in night.reports] == sorted(r.at for r in night.reports)
    assert night == scenario_from_ministry(path, "pres2017-t2", close, seed=1)
    resolved = resolve(str(path))
    assert resolved.election.election == "pres2017-t2" and resolved.polls_close == close
    unknown = tmp_path / "elsewhere.csv"
    unknown.write_text(MINISTRY, encoding="utf-8")
    with pytest.raises(ScenarioError, match="polls_close"):
        resolve(str(unknown))
    assert resolve(str(unknown), polls_close=close).election.election == "elsewhere"
