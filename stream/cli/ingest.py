"""``soiree ingest``: read a results file in any of its formats, check every report, publish the valid.

A report is checked twice before it goes out: against the contract and the roll (as the worker
will), then against what is already applied, read from the bureaux' standings in Redis. The same
``seq`` with other counts is a conflict and a lower ``seq`` is stale: the worker would
dead-letter the first and ignore the second, so both are refused here, with the ``seq`` to use,
instead of being published and counted as "accepted". An identical report already applied is a
repeat: skipped, said, and not an error.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import redis

from stream.adapters.kafka.publisher import IngestReport, check_line, check_turnout_line
from stream.adapters.redis.keys import results_key
from stream.auth.signatures import sign
from stream.domain.messages import STATUSES, Election, InvalidResult
from stream.errors import MinistryFormatError

__all__ = ["FORMATS", "IngestOptions", "read_items", "applied_verdict", "Ingest"]

#: ``--format``: JSON Lines, the reshaped ministry CSV (``ministry`` is the contract's name,
#: ``wide-csv`` says what it is), the ministry's own TXT, and turnout reports as JSON Lines
FORMATS = ("jsonl", "ministry", "wide-csv", "ministry-txt", "turnout")
#: Reports looked up in Redis per MGET
LOOKUP_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class IngestOptions:
    format: str = "jsonl"
    rate: float | None = None
    dry_run: bool = False
    #: for the whole file: every report's seq and status (a file's own values are replaced)
    seq: int | None = None
    status: str | None = None
    #: (source id, Ed25519 private key): every report signed (``--sign-with``)
    signer: tuple[str, Any] | None = None

    def signed(self, signer: tuple[str, Any]) -> IngestOptions:
        return replace(self, signer=signer)

    def check(self) -> str | None:
        """Why these options cannot work together, or None."""
        if self.format not in FORMATS:
            return f"unknown format {self.format!r}; use {', '.join(FORMATS)}"
        if self.status is not None and self.status not in STATUSES:
            return f"unknown status {self.status!r}; use {', '.join(STATUSES)}"
        if self.seq is not None and self.seq < 1:
            return f"--seq must be 1 or more, not {self.seq}"
        if self.format == "turnout" and self.status is not None:
            return "--status is for results, not turnout reports"
        return None


Items = Iterator[tuple[str, bytes]]


def read_items(file: str, election: str, options: IngestOptions) -> tuple[Items, int | None]:
    """(where, raw report) pairs of the file, and how many (None: unknown, stdin)."""
    if options.format in ("ministry", "wide-csv", "ministry-txt"):
        if file == "-":
            raise MinistryFormatError(f"the {options.format} format needs a file path, not stdin")
        path = Path(file)
        if not path.exists():
            raise MinistryFormatError(f"no such file: {file}")
        if options.format == "ministry-txt":
            from stream.sources.ministry_txt import results_from_txt

            rows: list[dict[str, Any]] = list(results_from_txt(path, election))
            first_line = 2
        else:
            from stream.sources.ministry import results_from_ministry

            rows = list(results_from_ministry(path, election))
            first_line = 2
        items = ((f"row {i}", orjson.dumps(row)) for i, row in enumerate(rows, first_line))
        return items, len(rows)
    lines, total = _jsonl_lines(file)
    return ((f"line {i}", line.strip()) for i, line in enumerate(lines, 1)), total


def _jsonl_lines(file: str) -> tuple[Iterator[bytes], int | None]:
    if file == "-":
        return (line for line in sys.stdin.buffer), None
    path = Path(file)
    if not path.exists():
        raise MinistryFormatError(f"no such file: {file}")
    opener = _open_maybe_gzip(path)
    with opener() as handle:
        total = sum(1 for _ in handle)

    def lines() -> Iterator[bytes]:
        with opener() as handle:
            yield from handle

    return lines(), total


def _open_maybe_gzip(path: Path) -> Callable[[], Any]:
    with path.open("rb") as handle:
        is_gzip = handle.read(2) == b"\x1f\x8b"
    return (lambda: gzip.open(path, "rb")) if is_gzip else (lambda: path.open("rb"))


def _overridden(raw: bytes, options: IngestOptions) -> bytes:
    """The report with the file-wide ``--seq`` and ``--status`` (left as is if it is no object)."""
    if options.seq is None and options.status is None:
        return raw
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(data, dict):
        return raw
    if options.seq is not None:
        data["seq"] = options.seq
    if options.status is not None:
        data["status"] = options.status
    return orjson.dumps(data)


def applied_verdict(report: dict[str, Any], standings: dict[str, Any] | None) -> tuple[str, str] | None:
    """What the bureau's applied report says of this one: None (new: publish), ("repeat", why)
    or ("refuse", why) for a conflict (same seq, other counts) or a stale report (lower seq)."""
    applied = None if standings is None else standings.get("seq")
    if applied is None or report["seq"] > applied:
        return None
    bureau, seq = report["bureau"], report["seq"]
    if report["seq"] < applied:
        return "refuse", (
            f"bureau {bureau}: seq {seq} is older than the report applied (seq {applied}): it would change "
            f"nothing; send corrections with --seq {applied + 1} or more"
        )
    if _same_content(report, standings or {}):
        return "repeat", f"bureau {bureau}: seq {seq} is already applied with these counts"
    return "refuse", (
        f"bureau {bureau}: conflict: seq {seq} is already applied with other counts; "
        f"send the right ones with --seq {applied + 1} or more"
    )


def _same_content(report: dict[str, Any], standings: dict[str, Any]) -> bool:
    by_status = standings.get("bureaux_by_status") or {}
    status = next((name for name, count in by_status.items() if count), "provisional")
    if report.get("status", "provisional") != status:
        return False
    if status == "annulled":
        return True
    votes: dict[str, int] = standings["votes"]
    given: dict[str, int] = report["votes"]
    return (
        {c: n for c, n in given.items() if n} == {c: n for c, n in votes.items() if n}  # 0 = left out
        and (report["voters"], report["blank"], report["invalid"])
        == (standings["voters"], standings["blank"], standings["invalid"])
    )


class Ingest:
    """One run of ``soiree ingest``: checks, lookups of what is applied, and the report."""

    def __init__(self, definition: Election, options: IngestOptions, client: redis.Redis | None) -> None:
        self.definition = definition
        self.options = options
        self.client = client  # None: nothing is looked up (a dry run without Redis)
        self.report = IngestReport()
        self.turnout = options.format == "turnout"
        #: (bureau, seq) -> the report published in this run: a later line with the same seq is
        #: a repeat or a conflict like one already applied
        self.published: dict[tuple[str, int], dict[str, Any]] = {}

    def check(self, where: str, raw: bytes, max_bytes: int) -> dict[str, Any] | None:
        """The report as a dict, or None after recording why it is refused."""
        checker = check_turnout_line if self.turnout else check_line
        try:
            report = checker(_overridden(raw, self.options), self.definition, max_bytes)
        except InvalidResult as exc:
            self.report.reject(where, str(exc))
            return None
        if self.options.signer is not None:
            source, key = self.options.signer
            report["source"] = source
            report["signature"] = sign(report, key)
        return report

    def against_applied(
        self, batch: list[tuple[str, bytes, dict[str, Any]]]
    ) -> tuple[list[dict[str, Any]], list[tuple[str, bytes, str]]]:
        """(reports to publish, refused ones as (where, raw, reason)); repeats are counted."""
        if self.turnout or self.client is None or not batch:
            return [report for _, _, report in batch], []
        keys = [results_key(self.definition.election, "bureau", report["bureau"]) for _, _, report in batch]
        found: list[Any] = self.client.mget(keys)  # bytes: no decode_responses
        publish: list[dict[str, Any]] = []
        refused: list[tuple[str, bytes, str]] = []
        for (where, raw, report), standings in zip(batch, found, strict=True):
            earlier = self.published.get((report["bureau"], report["seq"]))
            applied = None if standings is None else json.loads(standings)
            if earlier is not None:  # this run published that seq already: compare with it
                applied = {**earlier, "bureaux_by_status": {earlier.get("status", "provisional"): 1}}
            verdict = applied_verdict(report, applied)
            if verdict is None:
                publish.append(report)
                self.published[report["bureau"], report["seq"]] = report
            elif verdict[0] == "repeat":
                self.report.repeats += 1
            else:
                self.report.reject(where, verdict[1])
                refused.append((where, raw, verdict[1]))
        return publish, refused
