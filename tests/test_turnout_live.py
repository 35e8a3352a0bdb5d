"""Turnout reports through a real worker: ``soiree ingest --format turnout`` publishes them to
``turnout-reports``, the worker routes them with the results and every level shows
``turnout_at``; an invalid one goes to the dead letters with its reason.

Expected percentages are written out from the reports by hand.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson

from stream.domain.messages import Election

from .harness import ROOT, Stack


def election() -> Election:
    return Election.model_validate(
        {
            "election": f"turnout-{uuid.uuid4().hex[:6]}",
            "name": "Turnout",
            "candidates": [{"id": "A", "name": "a"}, {"id": "B", "name": "b"}],
            "bureaux": [
                {"bureau": "42218-0001", "commune": "42218", "department": "42", "registered": 1000},
                {"bureau": "42218-0002", "commune": "42218", "department": "42", "registered": 600},
                {"bureau": "42001-0001", "commune": "42001", "department": "42", "registered": 400},
            ],
        }
    )


def test_turnout_reports_through_the_worker(stack: Any, tmp_path: Path) -> None:
    s: Stack = stack("turnout")
    definition = election()
    e = definition.election
    s.register(definition)
    s.start_worker()
    reports = [
        {"bureau": "42218-0001", "at_hour": "12:00", "voters": 200, "seq": 1},
        {"bureau": "42218-0002", "at_hour": "12:00", "voters": 150, "seq": 1},
        {"commune": "42001", "at_hour": "17:00", "voters": 300, "seq": 1},
        {"commune": "42001", "at_hour": "18:00", "voters": 1, "seq": 1},  # not an hour the ministry publishes
    ]
    path = tmp_path / "turnout.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in reports) + b"\n")
    ingest = subprocess.run(
        [sys.executable, "-m", "stream.cli", "ingest", str(path), "--election", e, "--format", "turnout"],
        env=s.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ingest.returncode == 1, ingest.stderr  # one rejected
    assert "3 accepted" in ingest.stdout and "1 rejected" in ingest.stdout, ingest.stdout

    def shown() -> bool:
        loire = s.standings(e, "department", "42")
        return loire is not None and loire.turnout_at == {"12:00": 21.88, "17:00": 75.0}

    s.wait_until(shown, 60, "the Loire's turnout at 12:00 (350 of 1600) and 17:00 (300 of 400)")
    commune = s.standings(e, "commune", "42218")
    assert commune is not None and commune.turnout_at == {"12:00": 21.88}
    bureau = s.standings(e, "bureau", "42218-0001")
    assert bureau is None  # no result yet: a bureau's standings start with its count
    nation = s.standings(e, "nation", "FR")
    assert nation is not None and nation.turnout_at == {"12:00": 21.88, "17:00": 75.0}
    assert nation.bureaux_reported == 0
    events = [v for _, v in s.read_topic(s.settings.updates_topic) if v["election"] == e]
    said = {(ev["level"], ev["area"], ev["hour"]) for ev in events if ev["kind"] == "turnout_reported"}
    assert {("department", "42", "12:00"), ("department", "42", "17:00"), ("nation", "FR", "17:00")} <= said
    rejected = [v for _, v in s.read_topic(s.settings.rejected_topic, idle=1.0)]
    assert len(rejected) == 1 and "at_hour" in rejected[0]["reason"]
