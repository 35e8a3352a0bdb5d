"""The workers' check of a signed report: from a source with a key, inside its scope, and signed
by it. Reasons start with ``unsigned``, ``unknown source``, ``out of scope`` or ``bad signature``."""

from __future__ import annotations

from typing import Any

from stream.auth.registry import Source
from stream.auth.signatures import signature_matches
from stream.domain.regions import region_of
from stream.domain.roll import ElectionIndex
from stream.domain.scopes import covers

__all__ = ["signature_problem", "in_scope"]


def in_scope(source: Source, election: ElectionIndex, bureau: str | None, commune: str | None) -> bool:
    """Whether ``source`` may report that bureau (or that whole commune) of ``election``."""
    if not source.for_election(election.election):
        return False
    if bureau is not None:
        placement = election.roll.get(bureau)
        if placement is None:
            return False
        return covers(
            source.scope,
            bureau=bureau,
            commune=placement.commune,
            department=placement.department,
            circonscription=placement.circonscription,
            region=placement.region,
        )
    department = election.roll_by_commune.get(commune or "")
    if department is None:
        return False
    return covers(
        source.scope,
        bureau=None,
        commune=commune or "",
        department=department,
        circonscription=None,
        region=region_of(department),
    )


def signature_problem(data: dict[str, Any], source: Source | None, election: ElectionIndex) -> str | None:
    """Why a report of an election requiring signatures cannot count, or None."""
    name = data.get("source")
    if not isinstance(name, str) or not name or not isinstance(data.get("signature"), str):
        return "unsigned: the election requires reports signed by their source (source and signature)"
    if source is None:
        return f"unknown source {name!r}"
    bureau, commune = data.get("bureau"), data.get("commune")
    if not in_scope(source, election, bureau, commune):
        where = f"bureau {bureau}" if bureau else f"commune {commune}"
        return f"out of scope: {where} of {election.election} is not in the scope of source {name}"
    if source.public_key is None:
        return f"bad signature: source {name} has no public key"
    if not signature_matches(data, source.public_key):
        return f"bad signature: not signed by source {name}'s key (or altered after signing)"
    return None
