"""The seed night agrees with every published figure; scenario files round-trip; errors name lines.

Every figure is re-summed here from the reports (latest seq per bureau, computed in the test), not
taken from ``Scenario.facts`` or ``Scenario.final``; the published values are written out literally.
"""

from __future__ import annotations

import time
from collections import defaultdict
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
    seed_scenario,
    write_scenario,
)

CET = timezone(timedelta(hours=1))
NIGHT_START = datetime(2017, 1, 29, 19, 0, tzinfo=CET)


@pytest.fixture(scope="module")
def seed() -> Scenario:
    return seed_scenario()


@pytest.fixture(scope="module")
def final(seed: Scenario) -> dict[str, BureauResult]:
    latest: dict[str, BureauResult] = {}
    for report in seed.reports:
        result = report.result
        if result.bureau not in latest or result.seq > latest[result.bureau].seq:
            latest[result.bureau] = result
    return latest


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
    increase = nation["voters"] - seed.facts["first_round_voters"]["FR"]
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


def test_counts_plausible(seed: Scenario, final: dict[str, BureauResult]) -> None:
    for r in final.values():
        assert r.registered is not None and r.voters <= r.registered
        assert r.voters >= 20
        assert r.blank + r.invalid <= 0.06 * r.voters


def test_deterministic() -> None:
    first, second = seed_scenario(), seed_scenario()
    assert first == second
    assert [r.model_dump() for r in first.reports] == [r.model_dump() for r in second.reports]


def test_fast() -> None:
    started = time.perf_counter()
    seed_scenario()
    assert time.perf_counter() - started < 3.0  # about 0.4 s on an idle machine


def test_every_report_valid(seed: Scenario) -> None:
    for report in seed.reports:
        result = BureauResult.model_validate(report.result.model_dump(mode="json"))
        check_against_election(result, seed.election)
        assert result.election == seed.election.election
        assert result.reported_at == report.at


def test_times_within_the_evening_and_sorted(seed: Scenario) -> None:
    assert seed.polls_close == NIGHT_START
    times = [r.at for r in seed.reports]
    assert times == sorted(times)
    assert all(t.utcoffset() == timedelta(hours=1) for t in times)
    assert NIGHT_START + timedelta(minutes=10) <= times[0] <= NIGHT_START + timedelta(minutes=50)
    assert NIGHT_START + timedelta(hours=4) <= times[-1] <= NIGHT_START + timedelta(hours=4, minutes=45)
    early = sum(t.hour < 20 for t in times) / len(times)
    core = sum(20 <= t.hour < 22 for t in times) / len(times)
    late = sum(t.hour >= 22 for t in times) / len(times)
    assert 0 < early < 0.15 and core > 0.6 and 0.02 < late < 0.25


def test_big_cities_report_later(seed: Scenario, final: dict[str, BureauResult]) -> None:
    first_seen = {}
    for report in seed.reports:
        first_seen.setdefault(report.result.bureau, report.at)
    paris = sorted(first_seen[b] for b in first_seen if b.startswith("75056-"))
    others = sorted(first_seen[b] for b in first_seen if not b.startswith(("75056-", "13055-", "69123-")))
    assert paris[len(paris) // 2] > others[len(others) // 2]


def test_corrections(seed: Scenario, final: dict[str, BureauResult]) -> None:
    by_bureau: dict[str, list] = defaultdict(list)
    for report in seed.reports:
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
    assert len(header["bureaux"]) == len(seed.election.bureaux) and header["facts"] == seed.facts
    assert set(orjson.loads(lines[1])) == {"at", "result"}
    assert len(lines) == 1 + len(seed.reports)
    loaded = load_scenario(path)
    assert loaded == seed
    assert resolve(str(path)) == seed


def test_resolve_names() -> None:
    assert resolve("seed").election.election == "primaire-gauche-2017-t2"
    assert resolve("primaire-2017").election.election == "primaire-gauche-2017-t2"
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
