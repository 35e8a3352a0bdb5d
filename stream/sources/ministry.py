"""Read the Ministry of the Interior's per-bureau result files (the ``../shared/data/pres2017`` format).

One row per bureau: ``departement,commune,bureau,circonscription,commune_libelle,inscrits,votants,
blancs,exprimes`` then one column per candidate (``circonscription``, the constituency's number inside
its department, is optional). The files are the only real, complete election nights we have, so they
feed both the election definition (the roll) and the results to publish.
Rows are read with the ``csv`` module straight from the gzip stream: the 69,242 rows of a round take
about a second, and results come out as plain JSON-ready dicts (no pydantic per row) because the
benchmark publishes all of them.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from stream.domain.messages import Election
from stream.errors import MinistryFormatError

__all__ = [
    "REQUIRED_COLUMNS",
    "MinistryFormatError",
    "candidates_of",
    "circonscription_name",
    "department_names",
    "display_name",
    "election_from_ministry",
    "election_id_from_filename",
    "election_name_from_filename",
    "read_rows",
    "results_from_ministry",
]

#: The columns every ministry per-bureau file has; the candidates are the columns after ``exprimes``.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "departement",
    "commune",
    "bureau",
    "commune_libelle",
    "inscrits",
    "votants",
    "blancs",
    "exprimes",
)

_GZIP_MAGIC = b"\x1f\x8b"
_DEPARTMENTS_CSV = Path(__file__).with_name("data") / "departments.csv"
_PRES_FILE = re.compile(r"(?P<year>\d{4})-presidentielle-(?P<round>\d)")


def _open_text(path: Path) -> IO[str]:
    """Open as text, gunzipping when the file starts with the gzip magic bytes (whatever its name)."""
    path = Path(path)
    raw = open(path, "rb")  # noqa: SIM115 - handed over to the wrapper below
    try:
        magic = raw.read(2)
        raw.seek(0)
        if magic == _GZIP_MAGIC:
            binary: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        elif path.name.endswith(".gz"):
            raise MinistryFormatError(f"{path}: named .gz but is not gzip-compressed")
        else:
            binary = raw
        # utf-8-sig: tolerate a byte-order mark written by spreadsheet tools.
        return io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    except BaseException:
        raw.close()
        raise


def _check_header(path: Path, header: list[str] | None) -> list[str]:
    """The header, or a ``MinistryFormatError`` naming the file and exactly what is missing."""
    if not header:
        raise MinistryFormatError(f"{path}: empty file, expected a ministry per-bureau CSV header")
    header = [name.strip() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        shown = ",".join(header[:12]) + (",..." if len(header) > 12 else "")
        raise MinistryFormatError(
            f"{path}: not a ministry per-bureau file: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (header: {shown})"
        )
    if len(set(header)) != len(header):
        twice = sorted({name for name in header if header.count(name) > 1})
        raise MinistryFormatError(
            f"{path}: column{'s' if len(twice) > 1 else ''} {', '.join(twice)} appear twice"
        )
    if header.index("exprimes") == len(header) - 1:
        raise MinistryFormatError(f"{path}: no candidate columns after 'exprimes'")
    return header


def _table(path: Path) -> tuple[list[str], Any, IO[str]]:
    """(checked header, ``csv.reader`` positioned on the first data row, the open file)."""
    handle = _open_text(path)
    try:
        reader = csv.reader(handle)
        try:
            header = _check_header(path, next(reader, None))
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error) as exc:
            raise MinistryFormatError(f"{path}: cannot read the header: {exc}") from None
    except BaseException:
        handle.close()
        raise
    return header, reader, handle


def _rows(path: Path, reader: Any, handle: IO[str], width: int) -> Iterator[list[str]]:
    """The data rows, each of the header's width (else an error naming file and line); closes the file."""
    with handle:
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise MinistryFormatError(
                    f"{path}, line {reader.line_num}: {len(row)} fields, the header has {width}"
                )
            yield row


def read_rows(path: Path) -> Iterator[dict[str, str]]:
    """Every row as a dict of strings (``csv.DictReader``); the header is checked before the first row."""
    path = Path(path)
    header, reader, handle = _table(path)
    for row in _rows(path, reader, handle, len(header)):
        yield dict(zip(header, row))


def candidates_of(path: Path) -> list[str]:
    """The candidate columns, in file order: every column after ``exprimes``."""
    header, _, handle = _table(Path(path))
    handle.close()
    return header[header.index("exprimes") + 1 :]


_PARTICLES = frozenset({"de", "du", "des", "d'", "d’"})


def display_name(column: str) -> str:
    """A candidate column as a name to show: "MÉLENCHON" -> "Mélenchon", "LE PEN" -> "Le Pen",
    "DUPONT-AIGNAN" -> "Dupont-Aignan". Columns already in mixed case are kept as they are."""
    column = " ".join(column.split())
    if column != column.upper():
        return column
    parts = re.split(r"([\s\-]+)", column)
    shown: list[str] = []
    for index, part in enumerate(parts):
        if not part or part.isspace() or set(part) <= {"-", " "}:
            shown.append(part)
            continue
        words = re.split(r"(?<=['’])", part)  # "D'ESTAING" -> ["D'", "ESTAING"]
        out = []
        for position, word in enumerate(words):
            lower = word.lower()
            if lower in _PARTICLES and (index > 0 or position > 0):
                out.append(lower)
            else:
                out.append(lower[:1].upper() + lower[1:])
        shown.append("".join(out))
    return "".join(shown)


@lru_cache(maxsize=1)
def department_names() -> dict[str, str]:
    """Department code -> name, from ``stream/sources/data/departments.csv`` (shipped with the package)."""
    with open(_DEPARTMENTS_CSV, encoding="utf-8", newline="") as handle:
        return {row["code"]: row["name"] for row in csv.DictReader(handle)}


def election_id_from_filename(path: Path) -> str:
    """``2017-presidentielle-1_par_bureau_large.csv.gz`` -> ``pres2017-t1``; otherwise the bare file name."""
    name = Path(path).name
    match = _PRES_FILE.search(name)
    if match:
        return f"pres{match['year']}-t{match['round']}"
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    return name


def election_name_from_filename(path: Path) -> str | None:
    """A readable election name when the file name says which presidential round it is."""
    match = _PRES_FILE.search(Path(path).name)
    if not match:
        return None
    return f"Présidentielle {match['year']}, {'1er' if match['round'] == '1' else '2nd'} tour"


def circonscription_name(department_name: str, number: int) -> str:
    """The name of a constituency: "Loire, 1re circonscription", "Loire, 2e circonscription"."""
    ordinal = "1re" if number == 1 else f"{number}e"
    shown = f"{ordinal} circonscription"
    return f"{department_name}, {shown}" if department_name else shown


def _circonscription_number(path: Path, line: int, bureau: str, text: str) -> int | None:
    """The constituency number of a row (1 to 99); ``None`` when the cell is empty."""
    text = text.strip()
    if not text:
        return None
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= 99:
        raise MinistryFormatError(
            f"{path}, line {line} (bureau {bureau}): "
            f"'circonscription' is not a constituency number from 1 to 99: {text!r}"
        )
    return number


def election_from_ministry(path: Path, election: str, name: str | None = None) -> Election:
    """The election definition (roll of bureaux, candidates) that a ministry file describes.

    With a ``circonscription`` column (the constituency's number inside its department), each bureau
    gets ``circonscription`` ``<department>-<nn>`` ("42-01", "ZZ-11") and its name ("Loire,
    1re circonscription"); without the column, or where its cell is empty, the bureau has none.
    """
    path = Path(path)
    departments = department_names()
    header, reader, handle = _table(path)
    index = {column: position for position, column in enumerate(header)}
    i_dep, i_com, i_bur, i_name, i_reg = (
        index[c] for c in ("departement", "commune", "bureau", "commune_libelle", "inscrits")
    )
    i_circ = index.get("circonscription")
    width = len(header)
    bureaux: list[dict[str, Any]] = []
    for row in _rows(path, reader, handle, width):
        department = row[i_dep]
        commune = department + row[i_com]
        bureau = f"{commune}-{row[i_bur]}"
        try:
            registered = int(row[i_reg])
        except ValueError:
            raise MinistryFormatError(
                f"{path}, line {reader.line_num} (bureau {bureau}): "
                f"'inscrits' is not a whole number: {row[i_reg]!r}"
            ) from None
        department_name = departments.get(department, "")
        entry: dict[str, Any] = {
            "bureau": bureau,
            "commune": commune,
            "commune_name": row[i_name],
            "department": department,
            "department_name": department_name,
            "registered": registered,
        }
        if i_circ is not None:
            number = _circonscription_number(path, reader.line_num, bureau, row[i_circ])
            if number is not None:
                entry["circonscription"] = f"{department}-{number:02d}"
                entry["circonscription_name"] = circonscription_name(department_name or department, number)
        bureaux.append(entry)
    candidates = [{"id": c, "name": display_name(c)} for c in header[index["exprimes"] + 1 :]]
    return Election.model_validate(
        {
            "election": election,
            "name": name or election_name_from_filename(path) or election,
            "candidates": candidates,
            "bureaux": bureaux,
        }
    )


def results_from_ministry(
    path: Path, election: str, seq: int = 1, reported_at: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """One ``BureauResult``-shaped, JSON-ready dict per row; nuls = votants - blancs - exprimes.

    Rows are passed on as they are (a row whose counts do not add up is for the validator to reject
    with a reason); only a count that is not a whole number stops the read, naming file and line.
    """
    path = Path(path)
    stamp = reported_at.isoformat() if reported_at is not None else None
    header, reader, handle = _table(path)
    index = {column: position for position, column in enumerate(header)}
    first = index["exprimes"] + 1
    candidates = header[first:]
    i_dep, i_com, i_bur = index["departement"], index["commune"], index["bureau"]
    numeric = [(c, index[c]) for c in ("inscrits", "votants", "blancs", "exprimes")]
    i_reg, i_vot, i_bla, i_exp = (i for _, i in numeric)
    width = len(header)
    for row in _rows(path, reader, handle, width):
        try:
            registered = int(row[i_reg])
            voters = int(row[i_vot])
            blank = int(row[i_bla])
            expressed = int(row[i_exp])
            votes = dict(zip(candidates, map(int, row[first:])))
        except ValueError:
            bad = next(
                (column, row[i])
                for column, i in numeric + [(c, first + k) for k, c in enumerate(candidates)]
                if not _is_int(row[i])
            )
            raise MinistryFormatError(
                f"{path}, line {reader.line_num} (bureau {row[i_dep]}{row[i_com]}-{row[i_bur]}): "
                f"{bad[0]!r} is not a whole number: {bad[1]!r}"
            ) from None
        yield {
            "election": election,
            "bureau": f"{row[i_dep]}{row[i_com]}-{row[i_bur]}",
            "seq": seq,
            "reported_at": stamp,
            "registered": registered,
            "voters": voters,
            "blank": blank,
            "invalid": voters - blank - expressed,
            "votes": votes,
        }


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
