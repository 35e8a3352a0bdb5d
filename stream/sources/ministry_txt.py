"""Read the Ministry of the Interior's own per-bureau TXT result files (``--format ministry-txt``).

Semicolon-separated text, UTF-8 or Windows-1252 (Latin-1 as Windows writes it; the file is tried as
strict UTF-8 first), an optional byte-order mark, CRLF or LF line ends, plain or gzip-compressed
(recognised by its magic bytes). The header names the bureau block::

    Code du département;Libellé du département;Code de la circonscription;
    Libellé de la circonscription;Code de la commune;Libellé de la commune;Code du b.vote;
    Inscrits;Abstentions;% Abs/Ins;Votants;% Vot/Ins;Blancs;% Blancs/Ins;% Blancs/Vot;
    Nuls;% Nuls/Ins;% Nuls/Vot;Exprimés;% Exp/Ins;% Exp/Vot

then ONE candidate block, ``N°Panneau;Sexe;Nom;Prénom;Voix;% Voix/Ins;% Voix/Exp`` for a presidential
election, with ``Nuance`` (the party) after ``Prénom`` for a legislative one. Every data row has the
bureau block and then the candidate block once per candidate of its race, so rows differ in length
(a trailing ``;`` is tolerated). Percentages (decimal commas) are not read: counts are.

A presidential file is one race: its candidates' ids are their surnames as written (``MACRON``,
``LE PEN``), the ids ``stream.sources.ministry`` reads from the CSV files, so both formats of a night
agree. A legislative file is one race per circonscription (``42-01``), with candidates
``<circonscription>-<panneau>`` (``42-01-03``) whose party is their nuance.

Every error is a ``MinistryFormatError`` naming the file, the line and the column (by its header
name). Results are plain JSON-ready dicts, as in ``stream.sources.ministry``: whether their counts add
up is for ``stream.domain.messages.validate_result`` to say, with a reason, downstream.
"""

from __future__ import annotations

import codecs
import gzip
import io
import unicodedata
import zlib
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from stream.domain.messages import STATUSES, Election
from stream.errors import MinistryFormatError
from stream.sources.ministry import (
    circonscription_name,
    department_names,
    display_name,
    election_name_from_filename,
)

__all__ = [
    "BUREAU_COLUMNS",
    "CANDIDATE_COLUMNS",
    "LEGISLATIVE_CANDIDATE_COLUMNS",
    "MinistryFormatError",
    "definition_from_txt",
    "is_ministry_txt",
    "results_from_txt",
]

#: The bureau block of the header, in file order.
BUREAU_COLUMNS: tuple[str, ...] = (
    "Code du département",
    "Libellé du département",
    "Code de la circonscription",
    "Libellé de la circonscription",
    "Code de la commune",
    "Libellé de la commune",
    "Code du b.vote",
    "Inscrits",
    "Abstentions",
    "% Abs/Ins",
    "Votants",
    "% Vot/Ins",
    "Blancs",
    "% Blancs/Ins",
    "% Blancs/Vot",
    "Nuls",
    "% Nuls/Ins",
    "% Nuls/Vot",
    "Exprimés",
    "% Exp/Ins",
    "% Exp/Vot",
)
#: The candidate block of a presidential file; rows repeat it once per candidate.
CANDIDATE_COLUMNS: tuple[str, ...] = (
    "N°Panneau",
    "Sexe",
    "Nom",
    "Prénom",
    "Voix",
    "% Voix/Ins",
    "% Voix/Exp",
)
#: The candidate block of a legislative file: ``Nuance`` is the candidate's party.
LEGISLATIVE_CANDIDATE_COLUMNS: tuple[str, ...] = (
    "N°Panneau",
    "Sexe",
    "Nom",
    "Prénom",
    "Nuance",
    "Voix",
    "% Voix/Ins",
    "% Voix/Exp",
)

_DEP, _DEP_NAME, _CIRC, _CIRC_NAME, _COM, _COM_NAME, _BUREAU = BUREAU_COLUMNS[:7]
_REGISTERED, _VOTERS, _BLANK, _INVALID, _EXPRESSED = "Inscrits", "Votants", "Blancs", "Nuls", "Exprimés"
#: Read from the bureau block (the percentages and ``Abstentions`` are not needed, so not required).
_REQUIRED_BUREAU = (*BUREAU_COLUMNS[:7], _REGISTERED, _VOTERS, _BLANK, _INVALID, _EXPRESSED)
#: Counts checked to be whole numbers in every row (``Abstentions`` too, when the header has it).
_COUNTS = (_REGISTERED, "Abstentions", _VOTERS, _BLANK, _INVALID, _EXPRESSED)
_PANEL, _SEX, _SURNAME, _FIRST_NAME, _NUANCE, _VOTES = "N°Panneau", "Sexe", "Nom", "Prénom", "Nuance", "Voix"
_REQUIRED_CANDIDATE = (_PANEL, _SURNAME, _FIRST_NAME, _VOTES)

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = codecs.BOM_UTF8
_CHUNK = 1 << 20
#: The header is the first line; a file whose first line is longer than this is not one of ours.
_MAX_HEADER = 64 * 1024


def _norm(name: str) -> str:
    """A header name compared loosely: NFC, without spaces, case folded, 'º' as '°'."""
    return "".join(unicodedata.normalize("NFC", name).replace("º", "°").split()).casefold()


_CANONICAL = {_norm(c): c for c in (*BUREAU_COLUMNS, *LEGISLATIVE_CANDIDATE_COLUMNS)}


# -- reading bytes --------------------------------------------------------------------------------
def _open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when it starts with the gzip magic bytes (whatever its name)."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if path.name.endswith(".gz"):
        raise MinistryFormatError(f"{path}: named .gz but is not gzip-compressed")
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


@dataclass(frozen=True)
class _BadByte:
    line: int
    field: int  # 0-based position of the field holding it
    byte: bytes


def _detect_encoding(path: Path) -> tuple[str, _BadByte | None]:
    """``("utf-8", None)`` when the whole file is strict UTF-8, else ``("cp1252", None)`` when it is
    Windows-1252, else ``("cp1252", where)``: the first byte neither can decode."""
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    utf8_ok = True
    bad: _BadByte | None = None
    line, fields = 1, 0  # where the current chunk starts
    first = True
    try:
        with _open_binary(path) as raw:
            while True:
                chunk = raw.read(_CHUNK)
                if first:
                    chunk = chunk.removeprefix(_BOM)
                    first = False
                if not chunk:
                    break
                if utf8_ok:
                    try:
                        utf8.decode(chunk)
                    except UnicodeDecodeError:
                        utf8_ok = False
                if bad is None:
                    try:
                        chunk.decode("cp1252")
                    except UnicodeDecodeError as exc:
                        before = chunk[: exc.start]
                        newline = before.rfind(b"\n")
                        bad = _BadByte(
                            line=line + before.count(b"\n"),
                            field=fields + before.count(b";")
                            if newline < 0
                            else before[newline + 1 :].count(b";"),
                            byte=chunk[exc.start : exc.start + 1],
                        )
                if not utf8_ok and bad is not None:
                    break
                newlines = chunk.count(b"\n")
                if newlines:
                    line += newlines
                    fields = chunk[chunk.rfind(b"\n") + 1 :].count(b";")
                else:
                    fields += chunk.count(b";")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise MinistryFormatError(f"{path}: cannot read the gzip stream: {exc}") from None
    if utf8_ok:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_ok = False
    return ("utf-8", None) if utf8_ok else ("cp1252", bad)


# -- the header -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    path: Path
    header: list[str]  # names as the file writes them
    columns: dict[str, int]  # canonical bureau-block name -> position
    start: int  # position of the first candidate block (the width of the bureau block)
    block: list[str]  # canonical names of the candidate block's columns
    legislative: bool

    @property
    def width(self) -> int:
        return len(self.block)

    def at(self, canonical: str) -> int:
        return self.block.index(canonical)

    def column(self, field: int) -> str:
        """The header name of a row's field (the candidate block's names repeat along the row)."""
        if field < self.start:
            return self.header[field]
        offset = (field - self.start) % self.width
        return self.header[self.start + offset]

    def where(self, line: int, field: int) -> str:
        return f"{self.path}, line {line}, column {self.column(field)!r}"

    def error(self, line: int, field: int, what: str) -> MinistryFormatError:
        return MinistryFormatError(f"{self.where(line, field)}: {what}")


def _layout(path: Path, text: str) -> _Layout:
    """The header's layout, or an error naming exactly what is missing."""
    text = text.removeprefix("\ufeff").rstrip("\r\n")
    if not text.strip():
        raise MinistryFormatError(
            f"{path}, line 1: empty file, expected a ministry per-bureau TXT header "
            f"({';'.join(BUREAU_COLUMNS[:3])};…)"
        )
    header = [name.strip() for name in text.split(";")]
    while header and not header[-1]:
        header.pop()
    normed = [_norm(name) for name in header]
    panel = _norm(_PANEL)
    start = normed.index(panel) if panel in normed else len(normed)
    end = normed.index(panel, start + 1) if panel in normed[start + 1 :] else len(normed)
    bureau_part, block_part = normed[:start], normed[start:end]
    missing = [c for c in _REQUIRED_BUREAU if _norm(c) not in bureau_part]
    missing += [c for c in _REQUIRED_CANDIDATE if _norm(c) not in block_part]
    if missing:
        shown = ";".join(header[:8]) + (";…" if len(header) > 8 else "")
        shown = shown if len(shown) <= 200 else shown[:199] + "…"
        plural = "s" if len(missing) > 1 else ""
        raise MinistryFormatError(
            f"{path}, line 1: not a ministry per-bureau TXT header: missing column{plural} "
            f"{', '.join(repr(m) for m in missing)} (header: {shown})"
        )
    twice = sorted({header[i] for i, n in enumerate(block_part, start) if block_part.count(n) > 1})
    if twice:
        raise MinistryFormatError(
            f"{path}, line 1, column {twice[0]!r}: appears twice in the candidate block"
        )
    columns: dict[str, int] = {}
    for position, name in enumerate(bureau_part):
        columns.setdefault(_CANONICAL.get(name, header[position]), position)
    block = [_CANONICAL.get(name, header[start + k]) for k, name in enumerate(block_part)]
    return _Layout(
        path=path,
        header=header,
        columns=columns,
        start=start,
        block=block,
        legislative=_NUANCE in block,
    )


# -- rows -----------------------------------------------------------------------------------------
def _rows(path: Path) -> tuple[_Layout, Generator[tuple[int, list[str]], None, None]]:
    """The header's layout and the data rows as (line number, fields): every row has the bureau
    block and at least one whole candidate block (a trailing empty field is dropped)."""
    path = Path(path)
    encoding, bad = _detect_encoding(path)
    errors = "strict" if bad is None else "replace"  # replace: only to name the columns below
    handle = io.TextIOWrapper(_open_binary(path), encoding=encoding, errors=errors, newline="\n")
    try:
        first = handle.readline(_MAX_HEADER)
        if bad is not None:
            raise _undecodable(path, first, bad)
        if len(first) == _MAX_HEADER and not first.endswith("\n"):
            raise MinistryFormatError(
                f"{path}, line 1: not a ministry per-bureau TXT header: over {_MAX_HEADER} characters"
            )
        layout = _layout(path, first)
    except BaseException:
        handle.close()
        raise
    return layout, _data_rows(layout, handle)


def _undecodable(path: Path, header: str, bad: _BadByte) -> MinistryFormatError:
    where = f"{path}, line {bad.line}"
    if bad.line == 1:
        where += ", in the header"
    else:
        try:
            where += f", column {_layout(path, header).column(bad.field)!r}"
        except MinistryFormatError:
            where += f", field {bad.field + 1}"
    return MinistryFormatError(f"{where}: byte {bad.byte!r} is neither UTF-8 nor Windows-1252 (Latin-1) text")


def _data_rows(layout: _Layout, handle: IO[str]) -> Generator[tuple[int, list[str]], None, None]:
    start, width = layout.start, layout.width
    with handle:
        for line, text in enumerate(handle, 2):
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            fields = text.split(";")
            if len(fields) < start:
                raise layout.error(
                    line,
                    len(fields),
                    f"missing: the row has {len(fields)} fields, the bureau block alone has {start}",
                )
            extra = (len(fields) - start) % width
            while extra and not fields[-1].strip():
                fields.pop()
                extra = (len(fields) - start) % width
            if extra:
                whole = (len(fields) - start) // width
                raise layout.error(
                    line,
                    start + whole * width,
                    f"{extra} field{'s' if extra > 1 else ''} after the last whole candidate block "
                    f"(candidate {whole + 1}); a candidate block has {width} fields "
                    f"({';'.join(layout.header[start : start + width])})",
                )
            if len(fields) == start:
                raise layout.error(line, start, "no candidate in this row")
            yield line, fields


def _count(layout: _Layout, line: int, field: int, text: str) -> int:
    text = text.strip()
    if text.isdigit() and text.isascii():
        return int(text)
    raise layout.error(line, field, f"not a whole number: {text!r}")


def _code(layout: _Layout, line: int, field: int, text: str, width: int, upper: bool = False) -> str:
    """A code as written, trimmed; numeric codes padded with zeros to ``width``."""
    text = text.strip()
    if not text:
        raise layout.error(line, field, "empty")
    if text.isdigit() and text.isascii():
        return text.zfill(width)
    return text.upper() if upper else text


@dataclass(frozen=True)
class _Place:
    department: str
    commune: str  # department + commune code
    bureau: str  # commune id - bureau code
    circonscription: str | None  # "<dep>-<nn>"
    number: int | None  # the circonscription's number


def _place(layout: _Layout, line: int, fields: list[str]) -> _Place:
    c = layout.columns
    department = _code(layout, line, c[_DEP], fields[c[_DEP]], 2, upper=True)
    commune = department + _code(layout, line, c[_COM], fields[c[_COM]], 3)
    bureau = f"{commune}-{_code(layout, line, c[_BUREAU], fields[c[_BUREAU]], 4)}"
    text = fields[c[_CIRC]].strip()
    if not text and not layout.legislative:
        return _Place(department, commune, bureau, None, None)
    number = int(text) if text.isdigit() and text.isascii() else 0
    if not 1 <= number <= 99:
        raise layout.error(line, c[_CIRC], f"not a circonscription number from 1 to 99: {fields[c[_CIRC]]!r}")
    return _Place(department, commune, bureau, f"{department}-{number:02d}", number)


def _panel(layout: _Layout, line: int, field: int, text: str) -> int:
    number = _count(layout, line, field, text)
    if number < 1:
        raise layout.error(line, field, f"not a panel number (1 or more): {text.strip()!r}")
    return number


def _blocks(layout: _Layout, fields: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(position of the block's first field, the block's fields) for each candidate of a row."""
    width = layout.width
    for offset in range(layout.start, len(fields), width):
        yield offset, fields[offset : offset + width]


# -- the definition -------------------------------------------------------------------------------
@dataclass
class _Seen:
    """A candidate as first seen: the values that must stay the same, and where."""

    values: dict[str, str]
    line: int


def _same_person(layout: _Layout, line: int, offset: int, block: list[str], seen: _Seen, what: str) -> None:
    for name, value in seen.values.items():
        here = block[layout.at(name)].strip()
        if here != value:
            raise layout.error(
                line,
                offset + layout.at(name),
                f"{what} is {here!r} here but {value!r} on line {seen.line} "
                "(a panel must name the same candidate in every bureau)",
            )


def _person(layout: _Layout, block: list[str]) -> dict[str, str]:
    names = [n for n in (_SEX, _SURNAME, _FIRST_NAME, _NUANCE) if n in layout.block]
    return {name: block[layout.at(name)].strip() for name in names}


def _display(person: dict[str, str]) -> str:
    return " ".join(part for part in (person[_FIRST_NAME], display_name(person[_SURNAME])) if part)


def definition_from_txt(path: Path, election: str, name: str | None = None, round: int = 1) -> Election:
    """The election definition (roll of bureaux, candidates or races) a ministry TXT file describes.

    Each bureau is ``<department><commune>-<bureau>`` (``42218-0001``) with its commune, department,
    circonscription (``42-01``) and their names from the file, and ``registered`` = Inscrits. A
    presidential file gives the top-level candidates (id: the surname as written); a legislative file
    one race per circonscription, each bureau naming its race.
    """
    path = Path(path)
    layout, rows = _rows(path)
    columns = layout.columns
    departments = department_names()
    i_pan, i_sur, i_vot = layout.at(_PANEL), layout.at(_SURNAME), layout.at(_VOTES)
    bureaux: list[dict[str, Any]] = []
    bureau_lines: dict[str, int] = {}
    circ_names: dict[str, str] = {}
    # presidential: surname -> (panel, seen); panel -> surname
    by_surname: dict[str, tuple[int, _Seen]] = {}
    by_panel: dict[int, str] = {}
    # legislative: circonscription -> panel -> seen
    races: dict[str, dict[int, _Seen]] = {}
    with closing(rows):
        for line, fields in rows:
            place = _place(layout, line, fields)
            if place.bureau in bureau_lines:
                raise layout.error(
                    line,
                    columns[_BUREAU],
                    f"bureau {place.bureau} already on line {bureau_lines[place.bureau]}",
                )
            bureau_lines[place.bureau] = line
            department_name = fields[columns[_DEP_NAME]].strip() or departments.get(place.department, "")
            entry: dict[str, Any] = {
                "bureau": place.bureau,
                "commune": place.commune,
                "commune_name": fields[columns[_COM_NAME]].strip(),
                "department": place.department,
                "department_name": department_name,
                "registered": _count(layout, line, columns[_REGISTERED], fields[columns[_REGISTERED]]),
            }
            if place.circonscription is not None and place.number is not None:
                circ = place.circonscription
                if circ not in circ_names:
                    label = fields[columns[_CIRC_NAME]].strip()
                    if label and department_name and department_name.lower() not in label.lower():
                        label = f"{department_name}, {label}"  # the ministry's "1ère circonscription"
                    circ_names[circ] = label or circonscription_name(
                        department_name or place.department, place.number
                    )
                entry["circonscription"] = circ
                entry["circonscription_name"] = circ_names[circ]
                if layout.legislative:
                    entry["race"] = circ
            bureaux.append(entry)
            panels_here: set[int] = set()
            for offset, block in _blocks(layout, fields):
                panel = _panel(layout, line, offset + i_pan, block[i_pan])
                _count(layout, line, offset + i_vot, block[i_vot])
                if panel in panels_here:
                    raise layout.error(line, offset + i_pan, f"panel {panel} appears twice in this row")
                panels_here.add(panel)
                if layout.legislative:
                    panels = races.setdefault(str(entry["race"]), {})
                    seen = panels.get(panel)
                    if seen is None:
                        person = _person(layout, block)
                        if not person[_NUANCE]:
                            raise layout.error(line, offset + layout.at(_NUANCE), "empty (the party)")
                        panels[panel] = _Seen(person, line)
                    else:
                        _same_person(layout, line, offset, block, seen, f"panel {panel} of {entry['race']}")
                    continue
                surname = block[i_sur].strip()
                if not surname:
                    raise layout.error(line, offset + i_sur, "empty (the candidate's id)")
                known = by_surname.get(surname)
                if known is None:
                    if panel in by_panel:
                        first = by_surname[by_panel[panel]][1]
                        raise layout.error(
                            line,
                            offset + i_sur,
                            f"panel {panel} is {surname!r} here but {by_panel[panel]!r} on line {first.line} "
                            "(a panel must name the same candidate in every bureau)",
                        )
                    by_surname[surname] = (panel, _Seen(_person(layout, block), line))
                    by_panel[panel] = surname
                else:
                    known_panel, seen = known
                    if known_panel != panel:
                        raise layout.error(
                            line,
                            offset + i_pan,
                            f"{surname!r} has panel {panel} here but {known_panel} on line {seen.line}",
                        )
                    _same_person(layout, line, offset, block, seen, f"panel {panel}")
    if not bureaux:
        raise MinistryFormatError(f"{path}, line 2: no bureau (the file has only its header)")
    definition: dict[str, Any] = {
        "election": election,
        "name": name or election_name_from_filename(path) or election,
        "round": round,
        "bureaux": bureaux,
    }
    if layout.legislative:
        definition["races"] = [
            {
                "race": circ,
                "name": circ_names[circ],
                "area": {"level": "circonscription", "id": circ},
                "seats": 1,
                "rules": "legislative",
                "candidates": [
                    {
                        "id": f"{circ}-{panel:02d}",
                        "name": _display(panels[panel].values),
                        "party": panels[panel].values[_NUANCE],
                    }
                    for panel in sorted(panels)
                ],
            }
            for circ, panels in races.items()
        ]
    else:
        definition["candidates"] = [
            {"id": surname, "name": _display(by_surname[surname][1].values)}
            for _, surname in sorted(by_panel.items())
        ]
    try:
        return Election.model_validate(definition)
    except ValidationError as exc:
        problems = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors()[:3])
        raise MinistryFormatError(f"{path}: not a valid election definition: {problems}") from exc


# -- the results ----------------------------------------------------------------------------------
def results_from_txt(
    path: Path,
    election: str,
    seq: int = 1,
    status: str = "provisional",
    reported_at: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """One ``BureauResult``-shaped, JSON-ready dict per data row, in file order.

    ``registered`` = Inscrits, ``voters`` = Votants, ``blank`` = Blancs, ``invalid`` = Nuls and
    ``votes`` {candidate id: Voix}. Rows are passed on whether or not their counts add up (the
    validator rejects those with a reason); a count that is not a whole number stops the read.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if seq < 1:
        raise ValueError(f"seq must be 1 or more, not {seq}")
    return _results(Path(path), election, seq, status, reported_at)


def _results(
    path: Path, election: str, seq: int, status: str, reported_at: datetime | None
) -> Iterator[dict[str, Any]]:
    stamp = reported_at.isoformat() if reported_at is not None else None
    layout, rows = _rows(path)
    c = layout.columns
    counts = [(name, c[name]) for name in _COUNTS if name in c]
    i_pan, i_sur, i_vot = layout.at(_PANEL), layout.at(_SURNAME), layout.at(_VOTES)
    legislative = layout.legislative
    with closing(rows):
        for line, fields in rows:
            place = _place(layout, line, fields)
            number = {name: _count(layout, line, i, fields[i]) for name, i in counts}
            votes: dict[str, int] = {}
            for offset, block in _blocks(layout, fields):
                if legislative:
                    panel = _panel(layout, line, offset + i_pan, block[i_pan])
                    candidate, field = f"{place.circonscription}-{panel:02d}", offset + i_pan
                else:
                    candidate, field = block[i_sur].strip(), offset + i_sur
                    if not candidate:
                        raise layout.error(line, field, "empty (the candidate's id)")
                if candidate in votes:
                    raise layout.error(line, field, f"candidate {candidate} appears twice in this row")
                votes[candidate] = _count(layout, line, offset + i_vot, block[i_vot])
            yield {
                "election": election,
                "bureau": place.bureau,
                "seq": seq,
                "status": status,
                "reported_at": stamp,
                "registered": number[_REGISTERED],
                "voters": number[_VOTERS],
                "blank": number[_BLANK],
                "invalid": number[_INVALID],
                "votes": votes,
            }


# -- sniffing -------------------------------------------------------------------------------------
def is_ministry_txt(path: Path) -> bool:
    """Whether the file's first line is a ministry per-bureau TXT header (plain or gzip)."""
    path = Path(path)
    try:
        with _open_binary(path) as raw:
            head = raw.readline(_MAX_HEADER)
    except (MinistryFormatError, gzip.BadGzipFile, EOFError, zlib.error):
        return False
    head = head.removeprefix(_BOM)
    for encoding in ("utf-8", "cp1252"):
        try:
            text = head.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        return False
    try:
        _layout(path, text)
    except MinistryFormatError:
        return False
    return True
