"""Write files in the Ministry of the Interior's per-bureau TXT layout, for the tests of its reader.

Written from the format's description alone (nothing here imports ``stream``): a header naming the
bureau block and ONE candidate block, then one row per bureau with the bureau block and the
candidate block repeated for each of its candidates; semicolons, percentages with two decimals and
a decimal comma, CRLF line ends, Latin-1 by default.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

BUREAU_HEADER = (
    "Code du département;Libellé du département;Code de la circonscription;"
    "Libellé de la circonscription;Code de la commune;Libellé de la commune;Code du b.vote;"
    "Inscrits;Abstentions;% Abs/Ins;Votants;% Vot/Ins;Blancs;% Blancs/Ins;% Blancs/Vot;"
    "Nuls;% Nuls/Ins;% Nuls/Vot;Exprimés;% Exp/Ins;% Exp/Vot"
)
PRESIDENTIAL_BLOCK = "N°Panneau;Sexe;Nom;Prénom;Voix;% Voix/Ins;% Voix/Exp"
LEGISLATIVE_BLOCK = "N°Panneau;Sexe;Nom;Prénom;Nuance;Voix;% Voix/Ins;% Voix/Exp"


@dataclass
class TxtCandidate:
    panel: int
    sex: str
    surname: str
    first_name: str
    votes: int
    nuance: str = ""


@dataclass
class TxtBureau:
    """One data row. Codes are written exactly as given (``"01"`` or ``"1"``); ``circonscription``
    as given when a string, on two digits when a number."""

    department: str
    department_name: str
    circonscription: int | str
    circonscription_name: str
    commune: str
    commune_name: str
    bureau: str
    registered: int
    voters: int
    blank: int
    invalid: int
    candidates: list[TxtCandidate] = field(default_factory=list)

    @property
    def expressed(self) -> int:
        return self.voters - self.blank - self.invalid


def percent(part: int, whole: int) -> str:
    """``part`` in % of ``whole`` with two decimals and a decimal comma ("78,69"); "0,00" of nothing."""
    if whole == 0:
        return "0,00"
    return f"{100 * part / whole:.2f}".replace(".", ",")


def header(legislative: bool = False) -> str:
    return f"{BUREAU_HEADER};{LEGISLATIVE_BLOCK if legislative else PRESIDENTIAL_BLOCK}"


def row_fields(row: TxtBureau, legislative: bool = False) -> list[str]:
    """The fields of one data row, in the layout's order."""
    registered, voters, expressed = row.registered, row.voters, row.expressed
    circ = row.circonscription if isinstance(row.circonscription, str) else f"{row.circonscription:02d}"
    fields = [
        row.department,
        row.department_name,
        circ,
        row.circonscription_name,
        row.commune,
        row.commune_name,
        row.bureau,
        str(registered),
        str(registered - voters),
        percent(registered - voters, registered),
        str(voters),
        percent(voters, registered),
        str(row.blank),
        percent(row.blank, registered),
        percent(row.blank, voters),
        str(row.invalid),
        percent(row.invalid, registered),
        percent(row.invalid, voters),
        str(expressed),
        percent(expressed, registered),
        percent(expressed, voters),
    ]
    for candidate in row.candidates:
        fields += [str(candidate.panel), candidate.sex, candidate.surname, candidate.first_name]
        if legislative:
            fields.append(candidate.nuance)
        fields += [
            str(candidate.votes),
            percent(candidate.votes, registered),
            percent(candidate.votes, expressed),
        ]
    return fields


def write_ministry_txt(
    rows: Iterable[TxtBureau],
    path: Path,
    *,
    legislative: bool = False,
    encoding: str = "latin-1",
    newline: str = "\r\n",
    trailing_semicolon: bool = False,
    compress: bool = False,
) -> Path:
    """Write ``rows`` to ``path`` in the ministry's TXT layout and return ``path``.

    ``encoding`` is any Python codec ("latin-1", "cp1252", "utf-8", "utf-8-sig" for a byte-order
    mark); ``trailing_semicolon`` ends every data row with ';' as some ministry files do;
    ``compress`` gzips the file (whatever its name).
    """
    end = ";" if trailing_semicolon else ""
    lines = [header(legislative)]
    lines += [";".join(row_fields(row, legislative)) + end for row in rows]
    data = "".join(line + newline for line in lines).encode(encoding)
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    return path
