"""What a source may report: its scope, as ``level:area`` entries (pure, no I/O).

``department:42``, ``circonscription:42-01``, ``commune:42218``, ``bureau:42218-0001``,
``region:84`` or ``nation:FR`` (everything). A report is in scope when its bureau (or, for a
turnout report of a whole commune, the commune) lies in one of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from stream.domain.messages import NATION

__all__ = ["SCOPE_LEVELS", "ScopeEntry", "parse_scope", "covers"]

SCOPE_LEVELS = ("nation", "region", "department", "circonscription", "commune", "bureau")


class ScopeEntry(NamedTuple):
    level: str
    area: str

    def __str__(self) -> str:
        return f"{self.level}:{self.area}"


def parse_scope(text: str) -> list[ScopeEntry]:
    """``department:42,commune:69123`` -> entries; ValueError naming the wrong one."""
    entries = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        level, colon, area = part.partition(":")
        if not colon or level not in SCOPE_LEVELS or not area.strip():
            raise ValueError(
                f"scope {part!r}: expected LEVEL:AREA with LEVEL one of {', '.join(SCOPE_LEVELS)}"
            )
        entries.append(ScopeEntry(level, area.strip()))
    if not entries:
        raise ValueError("an empty scope: give at least one LEVEL:AREA")
    return entries


def covers(
    scope: Iterable[ScopeEntry],
    *,
    bureau: str | None,
    commune: str,
    department: str,
    circonscription: str | None,
    region: str | None,
) -> bool:
    """Whether a report of that place (a bureau's, or a whole commune's: ``bureau`` None) is in scope.
    A commune's own report is covered by its commune or anything containing the whole commune."""
    for entry in scope:
        level, area = entry
        if (
            (level == "nation" and area == NATION)
            or (level == "region" and area == region)
            or (level == "department" and area == department)
            or (level == "commune" and area == commune)
            or (level == "circonscription" and bureau is not None and area == circonscription)
            or (level == "bureau" and area == bureau)
        ):
            return True
    return False
