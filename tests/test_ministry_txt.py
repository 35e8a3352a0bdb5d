"""The ministry TXT reader (``stream.sources.ministry_txt``) against real bureaux of 2017.

The 2017 presidential CSV is read here with plain ``csv`` and ``gzip`` (never with ``stream``
code), turned into the ministry's TXT layout by ``tests/ministry_files.py`` (written from the
format's description, independently of the reader), and what the reader makes of it is compared
with sums computed here from the CSV rows. The legislative files are invented over the bureaux of
a few departments: 3 to 8 candidates per circonscription with nuances, each bureau's expressed
votes split among them deterministically.
"""

from __future__ import annotations

import csv
import gzip
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.domain.messages import BureauResult, Election, validate_result
from stream.errors import MinistryFormatError
from stream.sources.ministry import circonscription_name, election_from_ministry, results_from_ministry
from stream.sources.ministry_txt import definition_from_txt, is_ministry_txt, results_from_txt

from .harness import ROOT, ROUND_FILES
from .ministry_files import TxtBureau, TxtCandidate, header, write_ministry_txt

#: Round 1 of 2017 in panel order: (panel, sex, surname as in the CSV, first name).
PRES2017 = [
    (1, "M", "DUPONT-AIGNAN", "Nicolas"),
    (2, "F", "LE PEN", "Marine"),
    (3, "M", "MACRON", "Emmanuel"),
    (4, "M", "HAMON", "Benoît"),
    (5, "F", "ARTHAUD", "Nathalie"),
    (6, "M", "POUTOU", "Philippe"),
    (7, "M", "CHEMINADE", "Jacques"),
    (8, "M", "LASSALLE", "Jean"),
    (9, "M", "MÉLENCHON", "Jean-Luc"),
    (10, "M", "ASSELINEAU", "François"),
    (11, "M", "FILLON", "François"),
]
NAMES = {
    "DUPONT-AIGNAN": "Nicolas Dupont-Aignan",
    "LE PEN": "Marine Le Pen",
    "MACRON": "Emmanuel Macron",
    "HAMON": "Benoît Hamon",
    "ARTHAUD": "Nathalie Arthaud",
    "POUTOU": "Philippe Poutou",
    "CHEMINADE": "Jacques Cheminade",
    "LASSALLE": "Jean Lassalle",
    "MÉLENCHON": "Jean-Luc Mélenchon",
    "ASSELINEAU": "François Asselineau",
    "FILLON": "François Fillon",
}
NUANCES = ["REM", "LR", "FN", "FI", "SOC", "ECO", "DVD", "DVG", "COM", "UDI", "DLF", "EXG", "REG"]
SURNAMES = ["MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "RICHARD", "PETIT", "DURAND", "LEROY"]
SURNAMES += ["MOREAU", "SIMON", "LAURENT", "LEFÈVRE", "MICHEL", "GARCIA", "DAVID", "BERTRAND", "ROUX"]
SURNAMES += ["VINCENT", "FOURNIER", "MOREL", "GIRARD", "ANDRÉ", "MERCIER", "DUPONT", "LE GALL", "FAURE"]
FIRST_NAMES = {
    "F": ["Marie", "Nathalie", "Isabelle", "Sylvie", "Catherine", "Hélène", "Chloé", "Léa", "Anaïs"],
    "M": ["Jean", "Pierre", "Michel", "André", "Philippe", "François", "Jérôme", "Noël", "Loïc"],
}
LEGISLATIVE_DEPARTMENTS = ("01", "2A", "42", "75", "ZZ")
SAMPLE_DEPARTMENTS = ("01", "2A", "2B", "42", "ZA", "ZS", "ZZ")


# -- the CSV, read here with plain csv ------------------------------------------------------------
@pytest.fixture(scope="module")
def csv_rows(data_dir: Path) -> list[dict[str, str]]:
    with gzip.open(data_dir / ROUND_FILES[1], "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def department_labels() -> dict[str, str]:
    with open(ROOT / "stream/sources/data/departments.csv", encoding="utf-8", newline="") as handle:
        return {row["code"]: row["name"] for row in csv.DictReader(handle)}


def circ_label(number: int) -> str:
    """As the ministry's own files write it: "1ère circonscription", "2ème circonscription"."""
    return f"{number}{'ère' if number == 1 else 'ème'} circonscription"


def bureau_id(row: dict[str, str]) -> str:
    return f"{row['departement']}{row['commune']}-{row['bureau']}"


def to_txt(row: dict[str, str], labels: dict[str, str]) -> TxtBureau:
    """A CSV row as a presidential TXT row (nuls = votants - blancs - exprimes)."""
    voters, blank, expressed = int(row["votants"]), int(row["blancs"]), int(row["exprimes"])
    number = int(row["circonscription"])
    return TxtBureau(
        department=row["departement"],
        department_name=labels[row["departement"]],
        circonscription=number,
        circonscription_name=circ_label(number),
        commune=row["commune"],
        commune_name=row["commune_libelle"],
        bureau=row["bureau"],
        registered=int(row["inscrits"]),
        voters=voters,
        blank=blank,
        invalid=voters - blank - expressed,
        candidates=[
            TxtCandidate(panel, sex, surname, first, int(row[surname]))
            for panel, sex, surname, first in PRES2017
        ],
    )


def expected_by_department(rows: Iterable[dict[str, str]]) -> dict[str, Counter[str]]:
    """Per department: bureaux, registered, voters, blank, invalid and votes per candidate."""
    sums: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        total = sums[row["departement"]]
        voters, blank, expressed = int(row["votants"]), int(row["blancs"]), int(row["exprimes"])
        total["bureaux"] += 1
        total["registered"] += int(row["inscrits"])
        total["voters"] += voters
        total["blank"] += blank
        total["invalid"] += voters - blank - expressed
        for _, _, surname, _ in PRES2017:
            total[surname] += int(row[surname])
    return dict(sums)


def read_by_department(definition: Election, results: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    department = {entry.bureau: entry.department for entry in definition.bureaux}
    sums: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        total = sums[department[result["bureau"]]]
        total["bureaux"] += 1
        for key in ("registered", "voters", "blank", "invalid"):
            total[key] += result[key]
        total.update(result["votes"])
    registered: Counter[str] = Counter()
    for entry in definition.bureaux:
        registered[entry.department] += entry.registered
    for code, total in sums.items():
        assert total["registered"] == registered[code], code  # the roll agrees with the results
    return dict(sums)


def check_presidential(
    definition: Election, results: list[dict[str, Any]], rows: list[dict[str, str]], labels: dict[str, str]
) -> None:
    assert [c.id for c in definition.candidates] == [surname for _, _, surname, _ in PRES2017]
    assert {c.id: c.name for c in definition.candidates} == NAMES
    assert definition.races is None
    assert [entry.bureau for entry in definition.bureaux] == [bureau_id(row) for row in rows]
    assert [result["bureau"] for result in results] == [bureau_id(row) for row in rows]
    for entry, row in zip(definition.bureaux, rows):
        assert entry.commune == row["departement"] + row["commune"]
        assert entry.commune_name == row["commune_libelle"].strip()  # "Amsterdam " in the CSV
        assert entry.department == row["departement"]
        assert entry.department_name == labels[row["departement"]]
        number = int(row["circonscription"])
        assert entry.circonscription == f"{row['departement']}-{number:02d}"
        assert entry.circonscription_name == f"{labels[row['departement']]}, {circ_label(number)}"
        assert entry.registered == int(row["inscrits"])
        assert entry.race is None
    for result, row in zip(results, rows):
        voters, blank, expressed = int(row["votants"]), int(row["blancs"]), int(row["exprimes"])
        assert (result["registered"], result["voters"], result["blank"], result["invalid"]) == (
            int(row["inscrits"]),
            voters,
            blank,
            voters - blank - expressed,
        )
        assert result["votes"] == {surname: int(row[surname]) for _, _, surname, _ in PRES2017}
    assert read_by_department(definition, results) == expected_by_department(rows)


# -- presidential ---------------------------------------------------------------------------------
def test_the_whole_first_round_as_txt(csv_rows, department_labels, tmp_path: Path) -> None:
    """All 69,242 bureaux, written as the ministry's Latin-1 CRLF TXT (gzip), read back exactly."""
    path = write_ministry_txt(
        (to_txt(row, department_labels) for row in csv_rows),
        tmp_path / "PR17_BVot_T1_FE.txt",
        encoding="latin-1",
        compress=True,
    )
    started = time.perf_counter()
    definition = definition_from_txt(path, "pres2017-t1", "Présidentielle 2017, 1er tour")
    results = list(results_from_txt(path, "pres2017-t1"))
    elapsed = time.perf_counter() - started
    assert len(definition.bureaux) == len(results) == len(csv_rows) == 69_242
    assert definition.name == "Présidentielle 2017, 1er tour"
    check_presidential(definition, results, csv_rows, department_labels)
    # the nation: the same sums as the CSV's, bureau by bureau and in total
    nation = sum(read_by_department(definition, results).values(), Counter())
    assert nation["registered"] == 47_582_183
    assert nation["MACRON"] == sum(int(row["MACRON"]) for row in csv_rows)
    assert elapsed < 30, f"reading 69,242 bureaux took {elapsed:.1f} s"


@pytest.fixture(scope="module")
def sample_rows(csv_rows) -> list[dict[str, str]]:
    return [row for row in csv_rows if row["departement"] in SAMPLE_DEPARTMENTS]


@pytest.mark.parametrize(
    "encoding, newline, trailing",
    [
        ("latin-1", "\r\n", False),
        ("cp1252", "\r\n", True),
        ("utf-8", "\n", False),
        ("utf-8-sig", "\r\n", True),
    ],
    ids=["latin1-crlf", "cp1252-trailing", "utf8-lf", "utf8-bom-trailing"],
)
def test_encodings_and_line_ends(
    sample_rows, department_labels, tmp_path: Path, encoding: str, newline: str, trailing: bool
) -> None:
    path = write_ministry_txt(
        (to_txt(row, department_labels) for row in sample_rows),
        tmp_path / "sample.txt",
        encoding=encoding,
        newline=newline,
        trailing_semicolon=trailing,
    )
    if encoding.startswith("utf-8"):
        path.read_bytes().decode("utf-8")  # the variant really is UTF-8 ...
    else:
        with pytest.raises(UnicodeDecodeError):
            path.read_bytes().decode("utf-8")  # ... and this one really is not
    definition = definition_from_txt(path, "t")
    results = list(results_from_txt(path, "t"))
    check_presidential(definition, results, sample_rows, department_labels)
    assert {entry.department for entry in definition.bureaux} == set(SAMPLE_DEPARTMENTS)


def test_both_formats_of_a_night_agree(sample_rows, department_labels, tmp_path: Path) -> None:
    """The CSV reader and the TXT reader give the same candidate ids, roll and results."""
    csv_path = tmp_path / "2017-presidentielle-1_sample.csv.gz"
    with gzip.open(csv_path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(sample_rows[0]))
        writer.writeheader()
        writer.writerows(sample_rows)
    txt_path = write_ministry_txt(
        (to_txt(row, department_labels) for row in sample_rows), tmp_path / "sample.txt"
    )
    from_csv = election_from_ministry(csv_path, "t")
    from_txt = definition_from_txt(txt_path, "t")
    assert sorted(from_csv.candidate_list) == sorted(from_txt.candidate_list)
    # the CSV has surnames only: "Hamon" there, "Benoît Hamon" here
    shown = {c.id: c.name for c in from_txt.candidates}
    assert all(shown[c.id].endswith(" " + c.name) for c in from_csv.candidates)
    keep = {"bureau", "commune", "department", "department_name", "circonscription", "registered"}
    assert [e.model_dump(include=keep) for e in from_csv.bureaux] == [
        e.model_dump(include=keep) for e in from_txt.bureaux
    ]
    assert [e.commune_name.strip() for e in from_csv.bureaux] == [e.commune_name for e in from_txt.bureaux]
    fields = ("election", "bureau", "seq", "registered", "voters", "blank", "invalid", "votes")
    csv_results = [{k: r[k] for k in fields} for r in results_from_ministry(csv_path, "t")]
    txt_results = [{k: r[k] for k in fields} for r in results_from_txt(txt_path, "t")]
    assert csv_results == txt_results


def test_results_carry_seq_status_and_time_and_validate(sample_rows, department_labels, tmp_path) -> None:
    path = write_ministry_txt(
        (to_txt(row, department_labels) for row in sample_rows[:300]), tmp_path / "x.txt"
    )
    definition = definition_from_txt(path, "pres2017-t1", round=1)
    at = datetime(2017, 4, 23, 20, 14, tzinfo=timezone(timedelta(hours=2)))
    results = list(results_from_txt(path, "pres2017-t1", seq=3, status="definitive", reported_at=at))
    for result in results:
        assert (result["seq"], result["status"], result["reported_at"]) == (
            3,
            "definitive",
            "2017-04-23T20:14:00+02:00",
        )
        accepted = validate_result(orjson.dumps(result), {"pres2017-t1": definition})
        assert accepted.status == "definitive"
    plain = next(iter(results_from_txt(path, "pres2017-t1")))
    assert (plain["seq"], plain["status"], plain["reported_at"]) == (1, "provisional", None)
    BureauResult.model_validate(plain)
    with pytest.raises(ValueError, match="status"):
        results_from_txt(path, "pres2017-t1", status="final")


def test_short_codes_are_padded(sample_rows, department_labels, tmp_path: Path) -> None:
    """Files that write "1" for department "01", commune "001", bureau "0001" or circonscription "01"."""
    rows = [row for row in sample_rows if row["departement"] == "01"][:40]
    short = [
        replace(
            to_txt(row, department_labels),
            department="1",
            commune=str(int(row["commune"])),
            bureau=str(int(row["bureau"])) if row["bureau"].isdigit() else row["bureau"],
            circonscription=row["circonscription"],
            circonscription_name="",
            department_name="",
        )
        for row in rows
    ]
    path = write_ministry_txt(short, tmp_path / "short.txt")
    definition = definition_from_txt(path, "t")
    assert [e.bureau for e in definition.bureaux] == [bureau_id(row) for row in rows]
    assert {e.department for e in definition.bureaux} == {"01"}
    assert {e.department_name for e in definition.bureaux} == {"Ain"}  # the package's names when empty
    for entry, row in zip(definition.bureaux, rows):
        number = int(row["circonscription"])
        assert entry.circonscription == f"01-{number:02d}"
        assert entry.circonscription_name == circonscription_name("Ain", number)
    assert [r["bureau"] for r in results_from_txt(path, "t")] == [bureau_id(row) for row in rows]


def test_non_numeric_bureau_codes_and_corsica_are_kept_as_written(tmp_path: Path) -> None:
    rows = [
        TxtBureau("2a", "Corse-du-Sud", 1, "", "004", "Ajaccio", "BV01", 100, 80, 1, 1,
                  [TxtCandidate(1, "F", "DUPONT", "Anne", 50), TxtCandidate(2, "M", "DURAND", "Paul", 28)]),
    ]  # fmt: skip
    path = write_ministry_txt(rows, tmp_path / "x.txt")
    definition = definition_from_txt(path, "t")
    entry = definition.bureaux[0]
    assert (entry.bureau, entry.commune, entry.department, entry.circonscription) == (
        "2A004-BV01",
        "2A004",
        "2A",
        "2A-01",
    )
    assert entry.circonscription_name == "Corse-du-Sud, 1re circonscription"


# -- legislative ----------------------------------------------------------------------------------
def invent_candidates(circ: str) -> list[tuple[int, str, str, str, str, float]]:
    """3 to 8 candidates of a circonscription: (panel, sex, surname, first name, nuance, weight)."""
    rng = random.Random(f"candidates {circ}")
    count = rng.randint(3, 8)
    panels = sorted(rng.sample(range(1, 16), count))  # panels need not be consecutive
    nuances = rng.sample(NUANCES, count)
    surnames = rng.sample(SURNAMES, count)
    out = []
    for panel, nuance, surname in zip(panels, nuances, surnames):
        sex = rng.choice("FM")
        out.append((panel, sex, surname, rng.choice(FIRST_NAMES[sex]), nuance, rng.uniform(0.2, 5)))
    return out


def split_votes(expressed: int, weights: list[float]) -> list[int]:
    """``expressed`` split in proportion to ``weights`` (largest remainder): sums exactly."""
    total = sum(weights)
    quotas = [expressed * w / total for w in weights]
    votes = [int(q) for q in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda i: (quotas[i] - votes[i], -i), reverse=True)
    for i in by_remainder[: expressed - sum(votes)]:
        votes[i] += 1
    return votes


def legislative_rows(
    rows: list[dict[str, str]], labels: dict[str, str]
) -> tuple[list[TxtBureau], dict[str, list[tuple[int, str, str, str, str, float]]]]:
    races: dict[str, list[tuple[int, str, str, str, str, float]]] = {}
    out = []
    for row in rows:
        number = int(row["circonscription"])
        circ = f"{row['departement']}-{number:02d}"
        candidates = races.setdefault(circ, invent_candidates(circ))
        rng = random.Random(bureau_id(row))
        weights = [weight * rng.uniform(0.5, 1.5) for *_, weight in candidates]
        votes = split_votes(int(row["exprimes"]), weights)
        blocks = [
            TxtCandidate(panel, sex, surname, first, count, nuance)
            for (panel, sex, surname, first, nuance, _), count in zip(candidates, votes)
        ]
        rng.shuffle(blocks)  # a bureau may list its candidates in any order: panels identify them
        out.append(replace(to_txt(row, labels), candidates=blocks))
    return out, races


@pytest.fixture(scope="module")
def legislative(csv_rows, department_labels, tmp_path_factory):
    rows = [row for row in csv_rows if row["departement"] in LEGISLATIVE_DEPARTMENTS]
    txt_rows, races = legislative_rows(rows, department_labels)
    path = write_ministry_txt(
        txt_rows, tmp_path_factory.mktemp("leg") / "LG17_BVot_T1.txt", legislative=True, encoding="latin-1"
    )
    definition = definition_from_txt(path, "leg2017-t1", "Législatives 2017, 1er tour")
    results = list(results_from_txt(path, "leg2017-t1"))
    return rows, txt_rows, races, path, definition, results


def test_legislative_races_candidates_and_parties(legislative, department_labels) -> None:
    rows, _, races, _, definition, _ = legislative
    assert definition.candidates == []
    assert definition.races is not None
    assert [race.race for race in definition.races] == list(races)  # in file order
    assert len(races) == 5 + 2 + 6 + 18 + 11  # Ain, Corse-du-Sud, Loire, Paris, abroad
    names = {entry.circonscription: entry.department_name for entry in definition.bureaux}
    for race in definition.races:
        number = int(race.race[-2:])
        assert race.name == f"{names[race.race]}, {circ_label(number)}"  # the file's label is ambiguous alone
        assert race.area.model_dump() == {"level": "circonscription", "id": race.race}
        assert (race.seats, race.rules) == (1, "legislative")
        assert [(c.id, c.name, c.party) for c in race.candidates] == [
            (f"{race.race}-{panel:02d}", f"{first} {surname.title()}", nuance)
            for panel, _, surname, first, nuance, _ in races[race.race]
        ]
        assert 3 <= len(race.candidates) <= 8
    for entry, row in zip(definition.bureaux, rows):
        assert entry.bureau == bureau_id(row)
        assert (
            entry.race == entry.circonscription == f"{row['departement']}-{int(row['circonscription']):02d}"
        )
        assert entry.department_name == department_labels[row["departement"]]


def test_legislative_vote_sums_per_race(legislative) -> None:
    rows, txt_rows, _, _, definition, results = legislative
    expected: Counter[str] = Counter()
    for row, txt in zip(rows, txt_rows):
        circ = f"{row['departement']}-{int(row['circonscription']):02d}"
        for candidate in txt.candidates:
            expected[f"{circ}-{candidate.panel:02d}"] += candidate.votes
    read: Counter[str] = Counter()
    for result in results:
        read.update(result["votes"])
    assert read == expected
    # per race, the candidates' votes sum to the CSV's expressed votes of the race's bureaux
    expressed: Counter[str] = Counter()
    for row in rows:
        expressed[f"{row['departement']}-{int(row['circonscription']):02d}"] += int(row["exprimes"])
    assert definition.races is not None
    for race in definition.races:
        assert sum(read[c.id] for c in race.candidates) == expressed[race.race]
    # per department, registered and voters as in the CSV
    csv_sums: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        csv_sums[row["departement"]].update(
            {"registered": int(row["inscrits"]), "voters": int(row["votants"]), "bureaux": 1}
        )
    department = {entry.bureau: entry.department for entry in definition.bureaux}
    read_sums: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        read_sums[department[result["bureau"]]].update(
            {"registered": result["registered"], "voters": result["voters"], "bureaux": 1}
        )
    assert read_sums == csv_sums
    # every row is a report the validator accepts against the definition
    for result in results:
        validate_result(orjson.dumps(result), {"leg2017-t1": definition})


# -- errors ---------------------------------------------------------------------------------------
FIELDS = header().split(";")
LEG_FIELDS = header(legislative=True).split(";")
WIDTH, LEG_WIDTH = 7, 8


def small_rows(legislative: bool = False) -> list[TxtBureau]:
    def candidates(extra: str) -> list[TxtCandidate]:
        return [
            TxtCandidate(1, "F", "DUPONT", "Anne", 40, "REM"),
            TxtCandidate(2, "M", "DURAND", "Paul", 30, "LR"),
            TxtCandidate(3, "M", "MARTIN" + extra, "Luc", 8, "FI"),
        ]

    return [
        TxtBureau("42", "Loire", 1, "1ère circonscription", "218", "Saint-Étienne", f"000{i}",
                  100, 80, 1, 1, candidates(""))
        for i in range(1, 5)
    ]  # fmt: skip


def write_small(tmp_path: Path, legislative: bool = False, **kwargs: Any) -> Path:
    return write_ministry_txt(small_rows(legislative), tmp_path / "x.txt", legislative=legislative, **kwargs)


def edit(
    path: Path, line: int, column: str, value: str, candidate: int = 0, legislative: bool = False
) -> None:
    """Set one field of a Latin-1 file: ``column`` of the bureau block, or of candidate block
    ``candidate`` (1-based) when given."""
    lines = path.read_bytes().decode("latin-1").split("\r\n")
    fields = lines[line - 1].split(";")
    names = LEG_FIELDS if legislative else FIELDS
    if candidate:
        width = LEG_WIDTH if legislative else WIDTH
        block = names[21:]
        fields[21 + (candidate - 1) * width + block.index(column)] = value
    else:
        fields[names.index(column)] = value
    lines[line - 1] = ";".join(fields)
    path.write_bytes("\r\n".join(lines).encode("latin-1"))


def error_of(path: Path, what: str = "both") -> str:
    with pytest.raises(MinistryFormatError) as caught:
        if what in ("both", "definition"):
            definition_from_txt(path, "t")
        if what in ("both", "results"):
            list(results_from_txt(path, "t"))
    return str(caught.value)


def test_a_count_that_is_not_a_whole_number(tmp_path: Path) -> None:
    path = write_small(tmp_path)
    edit(path, 3, "Votants", "12a")
    assert error_of(path, "results") == f"{path}, line 3, column 'Votants': not a whole number: '12a'"
    definition_from_txt(path, "t")  # the roll does not need Votants
    edit(path, 3, "Votants", "80")
    edit(path, 4, "Inscrits", "1 000")
    message = f"{path}, line 4, column 'Inscrits': not a whole number: '1 000'"
    assert error_of(path, "definition") == message
    assert error_of(path, "results") == message
    edit(path, 4, "Inscrits", "100")
    edit(path, 5, "Voix", "-3", candidate=2)
    assert error_of(path, "results") == f"{path}, line 5, column 'Voix': not a whole number: '-3'"
    edit(path, 5, "Voix", "3,5", candidate=2)
    assert error_of(path, "definition") == f"{path}, line 5, column 'Voix': not a whole number: '3,5'"


def test_missing_header_columns(tmp_path: Path) -> None:
    path = write_small(tmp_path)
    text = path.read_bytes().decode("latin-1").replace(";Votants;", ";Votes;", 1).replace("Nom;", "Name;", 1)
    path.write_bytes(text.encode("latin-1"))
    message = error_of(path)
    assert message.startswith(f"{path}, line 1: not a ministry per-bureau TXT header: missing columns")
    assert "'Votants', 'Nom'" in message
    assert not is_ministry_txt(path)


def test_a_candidate_block_of_the_wrong_width(tmp_path: Path) -> None:
    path = write_small(tmp_path)
    lines = path.read_bytes().decode("latin-1").split("\r\n")
    lines[2] += ";1"  # line 3: a field after the third candidate
    path.write_bytes("\r\n".join(lines).encode("latin-1"))
    message = error_of(path)
    assert message.startswith(
        f"{path}, line 3, column 'N°Panneau': 1 field after the last whole candidate block (candidate 4)"
    )
    assert "a candidate block has 7 fields" in message
    # a legislative row in a presidential file: 8 fields per candidate, not 7
    leg = write_ministry_txt(small_rows(), tmp_path / "leg.txt", legislative=True)
    lines = leg.read_bytes().decode("latin-1").split("\r\n")
    lines[0] = header(legislative=False)
    leg.write_bytes("\r\n".join(lines).encode("latin-1"))
    assert error_of(leg).startswith(f"{leg}, line 2, column 'N°Panneau': 3 fields after the last whole")


def test_a_row_shorter_than_the_bureau_block_or_without_candidates(tmp_path: Path) -> None:
    path = write_small(tmp_path)
    lines = path.read_bytes().decode("latin-1").split("\r\n")
    lines[1] = ";".join(lines[1].split(";")[:10])
    lines[3] = ";".join(lines[3].split(";")[:21])
    path.write_bytes("\r\n".join(lines).encode("latin-1"))
    assert error_of(path).startswith(f"{path}, line 2, column 'Votants': missing")
    lines[1] = lines[2]
    path.write_bytes("\r\n".join(lines).encode("latin-1"))
    assert error_of(path, "results") == f"{path}, line 4, column 'N°Panneau': no candidate in this row"


@pytest.mark.parametrize("code", ["X1", "0", "100", "1.5"])
def test_a_bad_circonscription_code(tmp_path: Path, code: str) -> None:
    path = write_small(tmp_path, legislative=True)
    edit(path, 4, "Code de la circonscription", code, legislative=True)
    assert error_of(path) == (
        f"{path}, line 4, column 'Code de la circonscription': "
        f"not a circonscription number from 1 to 99: {code!r}"
    )


def test_an_empty_circonscription(tmp_path: Path) -> None:
    """Presidential: the bureau has none. Legislative: its race is unknown, an error."""
    path = write_small(tmp_path)
    edit(path, 2, "Code de la circonscription", "")
    definition = definition_from_txt(path, "t")
    assert definition.bureaux[0].circonscription is None
    assert definition.bureaux[1].circonscription == "42-01"
    leg = write_small(tmp_path, legislative=True)
    edit(leg, 2, "Code de la circonscription", " ", legislative=True)
    assert error_of(leg) == (
        f"{leg}, line 2, column 'Code de la circonscription': not a circonscription number from 1 to 99: ' '"
    )


def test_an_empty_file(tmp_path: Path) -> None:
    for name, data in (("empty.txt", b""), ("bom.txt", b"\xef\xbb\xbf\r\n"), ("blank.txt", b"\r\n\r\n")):
        path = tmp_path / name
        path.write_bytes(data)
        assert error_of(path).startswith(f"{path}, line 1: empty file")
        assert not is_ministry_txt(path)
    gz = tmp_path / "empty.txt.gz"
    gz.write_bytes(gzip.compress(b""))
    assert error_of(gz).startswith(f"{gz}, line 1: empty file")


def test_a_header_without_rows(tmp_path: Path) -> None:
    path = write_ministry_txt([], tmp_path / "x.txt")
    assert error_of(path, "definition") == f"{path}, line 2: no bureau (the file has only its header)"
    assert list(results_from_txt(path, "t")) == []
    assert is_ministry_txt(path)


def test_undecodable_bytes(tmp_path: Path) -> None:
    """0x81 is neither UTF-8 (a lone continuation byte) nor Windows-1252 (unassigned)."""
    path = write_small(tmp_path)
    data = path.read_bytes().split(b"\r\n")
    data[3] = data[3].replace(b"Saint-", b"Saint\x81", 1)
    path.write_bytes(b"\r\n".join(data))
    assert error_of(path) == (
        f"{path}, line 4, column 'Libellé de la commune': "
        "byte b'\\x81' is neither UTF-8 nor Windows-1252 (Latin-1) text"
    )
    data[3] = data[3].replace(b"Saint\x81", b"Saint-").replace(b";Luc;", b";Lu\x8d;")
    path.write_bytes(b"\r\n".join(data))
    assert error_of(path).startswith(f"{path}, line 4, column 'Prénom': byte b'\\x8d'")
    # a bad byte far into a big file: the line is counted across the chunks read
    rows = small_rows() * 4000
    rows = [replace(row, bureau=f"{i:04d}") for i, row in enumerate(rows, 1)]
    big = write_ministry_txt(rows, tmp_path / "big.txt")
    data = big.read_bytes().split(b"\r\n")
    data[15_000] = data[15_000].replace(b";DURAND;", b";DUR\x90ND;")
    big.write_bytes(b"\r\n".join(data))
    assert big.stat().st_size > 2 << 20
    assert error_of(big).startswith(f"{big}, line 15001, column 'Nom': byte b'\\x90'")


def test_utf8_is_tried_first_then_windows_1252(tmp_path: Path) -> None:
    """'Ã©' in Windows-1252 is also valid UTF-8 for 'é': a UTF-8 file reads as UTF-8, a file with
    one byte that is not UTF-8 reads wholly as Windows-1252 (no mixing line by line)."""
    rows = small_rows()
    rows[0] = replace(rows[0], commune_name="Saint-Étienne Œ")
    utf8 = write_ministry_txt(rows, tmp_path / "u.txt", encoding="utf-8")
    assert definition_from_txt(utf8, "t").bureaux[0].commune_name == "Saint-Étienne Œ"
    cp = write_ministry_txt(rows, tmp_path / "w.txt", encoding="cp1252")
    assert definition_from_txt(cp, "t").bureaux[0].commune_name == "Saint-Étienne Œ"
    assert definition_from_txt(cp, "t").bureaux[1].commune_name == "Saint-Étienne"


def test_a_panel_names_the_same_candidate_in_every_bureau(tmp_path: Path) -> None:
    leg = write_small(tmp_path, legislative=True)
    edit(leg, 4, "Nom", "MARTINEZ", candidate=3, legislative=True)
    assert error_of(leg, "definition") == (
        f"{leg}, line 4, column 'Nom': panel 3 of 42-01 is 'MARTINEZ' here but 'MARTIN' on line 2 "
        "(a panel must name the same candidate in every bureau)"
    )
    list(results_from_txt(leg, "t"))  # results key votes by panel: nothing to compare there
    edit(leg, 4, "Nom", "MARTIN", candidate=3, legislative=True)
    edit(leg, 5, "Nuance", "DVG", candidate=1, legislative=True)
    assert error_of(leg, "definition").startswith(
        f"{leg}, line 5, column 'Nuance': panel 1 of 42-01 is 'DVG'"
    )
    edit(leg, 5, "Nuance", "", candidate=1, legislative=True)
    edit(leg, 2, "Nuance", "", candidate=1, legislative=True)
    assert error_of(leg, "definition") == f"{leg}, line 2, column 'Nuance': empty (the party)"
    pres = write_small(tmp_path)
    edit(pres, 3, "Nom", "DUPOND", candidate=1)
    assert error_of(pres, "definition") == (
        f"{pres}, line 3, column 'Nom': panel 1 is 'DUPOND' here but 'DUPONT' on line 2 "
        "(a panel must name the same candidate in every bureau)"
    )
    edit(pres, 3, "Nom", "DUPONT", candidate=1)
    edit(pres, 3, "N°Panneau", "9", candidate=1)
    assert error_of(pres, "definition") == (
        f"{pres}, line 3, column 'N°Panneau': 'DUPONT' has panel 9 here but 1 on line 2"
    )
    edit(pres, 3, "N°Panneau", "x", candidate=1)
    assert error_of(pres, "definition") == f"{pres}, line 3, column 'N°Panneau': not a whole number: 'x'"


def test_a_candidate_or_bureau_twice(tmp_path: Path) -> None:
    pres = write_small(tmp_path)
    edit(pres, 3, "Nom", "DUPONT", candidate=2)
    assert (
        error_of(pres, "results")
        == f"{pres}, line 3, column 'Nom': candidate DUPONT appears twice in this row"
    )
    leg = write_small(tmp_path, legislative=True)
    edit(leg, 3, "N°Panneau", "1", candidate=2, legislative=True)
    assert (
        error_of(leg, "results")
        == f"{leg}, line 3, column 'N°Panneau': candidate 42-01-01 appears twice in this row"
    )
    assert (
        error_of(leg, "definition") == f"{leg}, line 3, column 'N°Panneau': panel 1 appears twice in this row"
    )
    twice = write_small(tmp_path)
    edit(twice, 4, "Code du b.vote", "1")
    assert error_of(twice, "definition") == (
        f"{twice}, line 4, column 'Code du b.vote': bureau 42218-0001 already on line 2"
    )


def test_gzip_by_magic_bytes_not_by_name(tmp_path: Path) -> None:
    plain = write_small(tmp_path)
    packed = tmp_path / "results.txt"  # gzip-compressed whatever its name
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert definition_from_txt(packed, "t") == definition_from_txt(plain, "t")
    assert list(results_from_txt(packed, "t")) == list(results_from_txt(plain, "t"))
    assert is_ministry_txt(packed)
    fake = tmp_path / "results.txt.gz"
    fake.write_bytes(plain.read_bytes())
    assert error_of(fake) == f"{fake}: named .gz but is not gzip-compressed"
    assert not is_ministry_txt(fake)
    broken = tmp_path / "broken.txt"
    broken.write_bytes(gzip.compress(plain.read_bytes())[:-30])
    assert "cannot read the gzip stream" in error_of(broken)


def test_is_ministry_txt_sniffs_the_header(tmp_path: Path, data_dir: Path) -> None:
    assert is_ministry_txt(write_small(tmp_path))
    assert is_ministry_txt(write_ministry_txt(small_rows(), tmp_path / "l.txt", legislative=True))
    assert is_ministry_txt(write_ministry_txt(small_rows(), tmp_path / "u.txt", encoding="utf-8-sig"))
    assert not is_ministry_txt(data_dir / ROUND_FILES[1])  # the ministry's CSV is not its TXT
    with pytest.raises(MinistryFormatError, match=r"line 1: not a ministry per-bureau TXT header: missing"):
        definition_from_txt(data_dir / ROUND_FILES[1], "t")
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"election": "t", "bureau": "42218-0001"}\n')
    assert not is_ministry_txt(jsonl)
    binary = tmp_path / "b.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    assert not is_ministry_txt(binary)


def test_header_names_are_matched_loosely(tmp_path: Path) -> None:
    """Case, inner spaces and 'Nº' for 'N°' do not matter; the messages use the file's names."""
    path = write_small(tmp_path)
    text = path.read_bytes().decode("latin-1")
    first, rest = text.split("\r\n", 1)
    first = first.replace("N°Panneau", "Nº Panneau").replace("Votants", "VOTANTS").replace("Nom", " nom ")
    path.write_bytes((first + "\r\n" + rest).encode("cp1252"))
    assert [c.id for c in definition_from_txt(path, "t").candidates] == ["DUPONT", "DURAND", "MARTIN"]
    edit(path, 3, "Votants", "x")
    assert error_of(path, "results") == f"{path}, line 3, column 'VOTANTS': not a whole number: 'x'"
