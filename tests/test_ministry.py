"""The ministry reader against the real 2017 presidential files and the official national totals.

The totals are read here from ``official/france_entiere_conseil_constitutionnel.csv`` with plain
``csv``, independently of ``stream.ministry``, and compared with sums of what the reader yields.
"""

from __future__ import annotations

import csv
import gzip
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from stream.domain.messages import BureauResult, check_against_election
from stream.sources.ministry import (
    MinistryFormatError,
    candidates_of,
    circonscription_name,
    department_names,
    display_name,
    election_from_ministry,
    election_id_from_filename,
    read_rows,
    results_from_ministry,
)

from .harness import ROUND_FILES

CANDIDATES = {
    1: [
        "ARTHAUD",
        "ASSELINEAU",
        "CHEMINADE",
        "DUPONT-AIGNAN",
        "FILLON",
        "HAMON",
        "LASSALLE",
        "LE PEN",
        "MACRON",
        "MÉLENCHON",
        "POUTOU",
    ],
    2: ["LE PEN", "MACRON"],
}


@pytest.fixture(scope="module")
def official(data_dir: Path) -> dict[int, dict[str, int]]:
    totals: dict[int, dict[str, int]] = {1: {}, 2: {}}
    with open(
        data_dir / "official/france_entiere_conseil_constitutionnel.csv", encoding="utf-8", newline=""
    ) as f:
        for row in csv.DictReader(f):
            totals[int(row["tour"])][row["item"]] = int(row["value"])
    return totals


@pytest.fixture(scope="module", params=[1, 2], ids=["round1", "round2"])
def night(request, data_dir: Path):
    path = data_dir / ROUND_FILES[request.param]
    election_id = f"pres2017-t{request.param}"
    election = election_from_ministry(path, election_id)
    results = list(results_from_ministry(path, election_id))
    return request.param, path, election, results


def test_every_bureau_once(night) -> None:
    _, _, election, results = night
    assert len(election.bureaux) == 69_242
    assert len(results) == 69_242
    assert len({r["bureau"] for r in results}) == 69_242
    assert {r["bureau"] for r in results} == set(election.roll)


def test_nation_sums_equal_the_official_totals(night, official) -> None:
    tour, _, election, results = night
    expected = official[tour]
    sums: Counter[str] = Counter()
    for r in results:
        sums["inscrits"] += r["registered"]
        sums["votants"] += r["voters"]
        sums["blancs"] += r["blank"]
        sums["nuls"] += r["invalid"]
        sums["exprimes"] += sum(r["votes"].values())
        sums.update(r["votes"])
    assert sum(e.registered for e in election.bureaux) == expected["inscrits"]
    assert dict(sums) == expected
    assert max(r["votes"]["MACRON"] for r in results) > 0


def test_every_result_valid_against_its_election(night) -> None:
    tour, _, election, results = night
    assert [c.id for c in election.candidates] == CANDIDATES[tour]
    for r in results:
        check_against_election(BureauResult.model_validate(r), election)


def test_results_are_json_ready(night) -> None:
    _, _, _, results = night
    sample = results[::997]
    assert orjson.loads(orjson.dumps(sample)) == sample
    assert all(r["seq"] == 1 and r["reported_at"] is None for r in sample)


def test_loire_and_saint_etienne(night) -> None:
    _, _, election, results = night
    loire = [e for e in election.bureaux if e.department == "42"]
    assert len(loire) == 671
    assert len({e.commune for e in loire}) == 326
    assert {e.department_name for e in loire} == {"Loire"}
    saint_etienne = [e for e in loire if e.commune == "42218"]
    assert len(saint_etienne) == 100
    first = election.roll["42218-0001"]
    assert (first.commune, first.commune_name, first.department) == ("42218", "Saint-Etienne", "42")
    by_bureau = {r["bureau"]: r for r in results}
    assert by_bureau["42218-0001"]["registered"] == first.registered


def test_roll_matches_the_file(night) -> None:
    tour, _, election, _ = night
    assert election.name == f"Présidentielle 2017, {'1er' if tour == 1 else '2nd'} tour"
    names = department_names()
    assert {e.department for e in election.bureaux} <= set(names)
    assert all(e.department_name == names[e.department] for e in election.bureaux[::101])
    paris = [e for e in election.bureaux if e.commune == "75056"]
    assert len(paris) == 896 and paris[0].department_name == "Paris"
    assert {e.department for e in election.bureaux if e.commune.startswith("ZZ")} == {"ZZ"}


def bureau_figures(path: Path) -> dict[str, tuple[str, str, dict[str, int]]]:
    """Bureau id -> (department, circonscription cell, figures), read straight with gzip and csv."""
    figures: dict[str, tuple[str, str, dict[str, int]]] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            bureau = f"{row['departement']}{row['commune']}-{row['bureau']}"
            counts = {name: int(row[name]) for name in ("inscrits", "votants", "blancs", "exprimes")}
            figures[bureau] = (row["departement"], row["circonscription"], counts)
    return figures


def test_circonscriptions_sum_to_the_official_table(night, data_dir: Path) -> None:
    """The roll's circonscription ids, checked against the ministry's definitive per-constituency table:
    the file's bureaux of each id add up exactly to the official row keyed department + two digits."""
    tour, path, election, _ = night
    figures = bureau_figures(path)
    official: dict[str, dict[str, int]] = {}
    with open(
        data_dir / f"official/off_T{tour}_definitif_circonscription.csv", encoding="utf-8", newline=""
    ) as handle:
        for row in csv.DictReader(handle):
            key = f"{row['Code du département']}-{row['Code de la circonscription']}"
            assert key not in official
            official[key] = {name: int(row[name]) for name in ("inscrits", "votants", "blancs", "exprimes")}
    assert len(official) == 577
    sums: dict[str, Counter[str]] = {}
    for entry in election.bureaux:
        assert entry.circonscription is not None, entry.bureau
        department, cell, counts = figures[entry.bureau]
        assert entry.circonscription == f"{department}-{int(cell):02d}"
        sums.setdefault(entry.circonscription, Counter()).update(counts)
    assert len(sums) == 577
    assert set(sums) == set(official)
    wrong = {key: (dict(sums[key]), official[key]) for key in official if dict(sums[key]) != official[key]}
    assert not wrong, f"{len(wrong)} circonscriptions differ, e.g. {next(iter(wrong.items()))}"


def test_circonscription_names_and_a_bureau(night) -> None:
    _, path, election, _ = night
    names = {e.circonscription: e.circonscription_name for e in election.bureaux}
    assert names["42-01"] == "Loire, 1re circonscription"
    assert names["42-02"] == "Loire, 2e circonscription"
    assert names["ZZ-11"] == "Français établis hors de France, 11e circonscription"
    assert names["2A-02"] == "Corse-du-Sud, 2e circonscription"
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        cell = next(
            row["circonscription"]
            for row in csv.DictReader(handle)
            if (row["departement"], row["commune"], row["bureau"]) == ("42", "218", "0001")
        )
    first = election.roll["42218-0001"]
    assert first.circonscription == f"42-{int(cell):02d}" == "42-02"
    assert first.circonscription_name == "Loire, 2e circonscription"


def test_read_rows_and_candidates(data_dir: Path) -> None:
    path = data_dir / ROUND_FILES[1]
    assert candidates_of(path) == CANDIDATES[1]
    assert candidates_of(data_dir / ROUND_FILES[2]) == CANDIDATES[2]
    count = 0
    for row in read_rows(path):
        count += 1
        if count == 1:
            assert row["departement"] == "01" and row["commune_libelle"] == "L'Abergement-Clémenciat"
            assert list(row)[-1] == "POUTOU"
    assert count == 69_242


def test_reading_a_round_is_fast(data_dir: Path) -> None:
    started = time.perf_counter()
    count = sum(1 for _ in results_from_ministry(data_dir / ROUND_FILES[1], "pres2017-t1"))
    elapsed = time.perf_counter() - started
    assert count == 69_242
    assert elapsed < 6, f"reading 69,242 rows took {elapsed:.2f}s"


def test_display_names() -> None:
    assert display_name("MÉLENCHON") == "Mélenchon"
    assert display_name("LE PEN") == "Le Pen"
    assert display_name("DUPONT-AIGNAN") == "Dupont-Aignan"
    assert display_name("GISCARD D'ESTAING") == "Giscard d'Estaing"
    assert display_name("Benoît Hamon") == "Benoît Hamon"


def test_election_id_from_filename() -> None:
    assert election_id_from_filename(Path("x/2017-presidentielle-1_par_bureau_large.csv.gz")) == "pres2017-t1"
    assert election_id_from_filename(Path("2017-presidentielle-2_par_bureau_large.csv")) == "pres2017-t2"
    assert election_id_from_filename(Path("municipales.csv.gz")) == "municipales"


# ---- small handmade files: formats and errors ------------------------------------------------

HEADER = (
    "departement,commune,bureau,circonscription,commune_libelle,"
    "inscrits,votants,blancs,exprimes,LE PEN,MACRON\n"
)
ROWS = "42,218,0001,1,Saint-Etienne,812,640,9,627,200,427\n2A,004,BV01,1,Ajaccio,500,400,5,390,190,200\n"


def test_plain_and_gzip_files(tmp_path: Path) -> None:
    plain = tmp_path / "night.csv"
    plain.write_text(HEADER + ROWS, encoding="utf-8")
    packed = tmp_path / "night-without-suffix"
    packed.write_bytes(gzip.compress((HEADER + ROWS).encode()))
    at = datetime(2017, 5, 7, 20, 14, tzinfo=timezone(timedelta(hours=2)))
    for path in (plain, packed):
        results = list(results_from_ministry(path, "t", seq=3, reported_at=at))
        assert results[0] == {
            "election": "t",
            "bureau": "42218-0001",
            "seq": 3,
            "reported_at": "2017-05-07T20:14:00+02:00",
            "registered": 812,
            "voters": 640,
            "blank": 9,
            "invalid": 4,
            "votes": {"LE PEN": 200, "MACRON": 427},
        }
        assert results[1]["bureau"] == "2A004-BV01"
        election = election_from_ministry(path, "t")
        assert election.name == "t"
        assert election_from_ministry(path, "t", name="Second tour").name == "Second tour"
        assert election.roll["2A004-BV01"].department_name == "Corse-du-Sud"
        assert [c.name for c in election.candidates] == ["Le Pen", "Macron"]


def test_wrong_header_names_file_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("dep,commune,bureau,inscrits,votants,exprimes,A\n1,2,3,4,5,6,7\n", encoding="utf-8")
    for call in (
        lambda: list(read_rows(path)),
        lambda: candidates_of(path),
        lambda: election_from_ministry(path, "t"),
        lambda: list(results_from_ministry(path, "t")),
    ):
        with pytest.raises(MinistryFormatError) as info:
            call()
        message = str(info.value)
        assert str(path) in message
        assert "departement" in message and "commune_libelle" in message and "blancs" in message
        assert "'votants'" not in message


def test_unparsable_number_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + ROWS + "42,187,0002,5,Roanne,700,5OO,1,499,200,299\n", encoding="utf-8")
    with pytest.raises(MinistryFormatError, match=r"line 4 \(bureau 42187-0002\).*'votants'.*'5OO'"):
        list(results_from_ministry(path, "t"))
    path.write_text(HEADER + "42,187,0002,5,Roanne,700,500,1,499,200\n", encoding="utf-8")
    with pytest.raises(MinistryFormatError, match="line 2: 10 fields, the header has 11"):
        list(read_rows(path))


def test_gz_name_that_is_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "fake.csv.gz"
    path.write_text(HEADER, encoding="utf-8")
    with pytest.raises(MinistryFormatError, match="not gzip"):
        candidates_of(path)


def test_circonscription_names() -> None:
    assert circonscription_name("Loire", 1) == "Loire, 1re circonscription"
    assert circonscription_name("Loire", 2) == "Loire, 2e circonscription"
    assert circonscription_name("Paris", 18) == "Paris, 18e circonscription"


def test_circonscription_column_missing_or_empty(tmp_path: Path) -> None:
    path = tmp_path / "night.csv"
    path.write_text(HEADER + ROWS, encoding="utf-8")
    election = election_from_ministry(path, "t")
    assert (election.roll["42218-0001"].circonscription, election.roll["2A004-BV01"].circonscription) == (
        "42-01",
        "2A-01",
    )
    assert election.roll["2A004-BV01"].circonscription_name == "Corse-du-Sud, 1re circonscription"
    # without the column: no circonscription, nothing else changes
    path.write_text(
        "departement,commune,bureau,commune_libelle,inscrits,votants,blancs,exprimes,LE PEN,MACRON\n"
        "42,218,0001,Saint-Etienne,812,640,9,627,200,427\n",
        encoding="utf-8",
    )
    entry = election_from_ministry(path, "t").roll["42218-0001"]
    assert (entry.circonscription, entry.circonscription_name, entry.registered) == (None, "", 812)
    # an empty cell: that bureau has none
    path.write_text(HEADER + "42,218,0002,,Saint-Etienne,812,640,9,627,200,427\n" + ROWS, encoding="utf-8")
    election = election_from_ministry(path, "t")
    assert [e.circonscription for e in election.bureaux] == [None, "42-01", "2A-01"]


@pytest.mark.parametrize("cell", ["X", "1.5", "0", "100", "-3"])
def test_malformed_circonscription_names_file_line_and_value(tmp_path: Path, cell: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + ROWS + f"42,187,0002,{cell},Roanne,700,500,1,499,200,299\n", encoding="utf-8")
    with pytest.raises(MinistryFormatError) as info:
        election_from_ministry(path, "t")
    message = str(info.value)
    assert str(path) in message
    assert "line 4 (bureau 42187-0002)" in message and "'circonscription'" in message
    assert repr(cell) in message
