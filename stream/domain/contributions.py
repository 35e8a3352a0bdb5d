"""The internal wire rows between the two hops, encoded and decoded here only.

A contribution message (topics ``<app>-contributions`` and ``<app>-nation-contributions``)::

    {"e": election, "l": "department", "a": "42",  "c": [[bureau, seq, tally(, source)], ...]}
        (source: the source of a report that came through HTTP ingest, its dead letters' source;
        a turnout report's row: [child, seq, tally, commune, bureau or null], child = "<place>|<hour>")
    {"e": election, "l": "nation",     "a": "FR",  "c": [[department, version, tally, cause], ...]}

with ``tally = [bureaux, registered, voters, blank, invalid, {candidate: votes}, as_of, comparison,
turnout_at, status, seats]`` (``Tally.to_json``; the last ones only when set) and
``cause = {"bureau": ..., "seq": ...}`` or null. Plain lists keep a
night's few thousand messages small and fast to decode; the tally reads the rows in place.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream.domain.aggregation import area_key
from stream.domain.messages import NATION
from stream.domain.roll import split_tally_id

__all__ = [
    "BureauRow",
    "TURNOUT_ROW",
    "DepartmentRow",
    "department_message",
    "nation_message",
    "reports_of",
    "report_of_row",
]

#: [bureau, seq, tally] or [bureau, seq, tally, source]; a turnout report's has ``TURNOUT_ROW`` items
BureauRow = list[Any]
TURNOUT_ROW = 5
#: [department, version, tally, cause]
DepartmentRow = list[Any]


def department_message(election: str, department: str, rows: list[BureauRow]) -> tuple[bytes, bytes]:
    """(key, value) of the reports of one department, routed to the department's partition.

    Keyed by the department alone: every election's reports of a department are tallied in
    the same partition, where an election finds the one it is compared with (``compare_to``)."""
    key = f"department|{department}".encode()
    return key, orjson.dumps({"e": election, "l": "department", "a": department, "c": rows})


def nation_message(election: str, rows: list[DepartmentRow]) -> tuple[bytes, bytes]:
    """(key, value) of departments' totals passed to the nation."""
    key = area_key(election, "nation", NATION).encode()
    return key, orjson.dumps({"e": election, "l": "nation", "a": NATION, "c": rows})


def reports_of(message: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]] | None:
    """The reports a department contribution was made of (``BureauResult`` s, and
    ``TurnoutReport`` s for turnout rows), by place, or None if it is not one."""
    if not isinstance(message, dict) or message.get("l") != "department":
        return None
    try:
        election = split_tally_id(message["e"])[0]  # the public id, not its revision's
        return [report_of_row(election, row) for row in message["c"]]
    except (KeyError, TypeError, ValueError):  # rows of another shape
        return None


def report_of_row(election: str, row: list[Any]) -> tuple[str, dict[str, Any]]:
    """(place, the report) of one row: what a dead letter carries, to publish it again."""
    child, seq, tally = row[0], row[1], row[2]
    _, registered, voters, blank, invalid, votes, *extra = tally
    as_of = extra[0] if extra else ""
    if len(row) == TURNOUT_ROW:  # a turnout report: [place|hour, seq, tally, commune, bureau or None]
        place, hour = child.split("|", 1)
        _, turnout_voters = tally[8][hour]
        report = {"election": election, "at_hour": hour, "voters": turnout_voters, "seq": seq}
        report["bureau" if row[4] is not None else "commune"] = place
    else:
        place = child
        status = extra[3] if len(extra) > 3 else None
        report = {
            "election": election,
            "bureau": child,
            "seq": seq,
            "registered": registered if not status or not status[1] else status[2],
            "voters": voters,
            "blank": blank,
            "invalid": invalid,
            "votes": votes,
        }
        if status:
            report["status"] = "annulled" if status[1] else "definitive"
    if as_of:
        report["reported_at"] = as_of
    return place, report
