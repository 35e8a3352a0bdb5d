"""The ``soiree`` command, run as users run it (subprocesses) against the real Kafka and Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from stream.domain.messages import BureauResult, Election, Rejection, Standings, TurnoutReport, UpdateEvent

from .harness import ROOT, Stack
from .test_pipeline import CANDIDATES, expected_by_area, mini_election, result


def soiree(
    stack: Stack, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**stack.env(), "COLUMNS": "200"},
        cwd=ROOT,
        timeout=timeout,
    )


def test_schema_files_in_docs_are_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "stream.cli", "schema", "--out", str(tmp_path)], check=True, cwd=ROOT
    )
    for model in (Election, BureauResult, TurnoutReport, UpdateEvent, Standings, Rejection):
        generated = json.loads((tmp_path / f"{model.__name__}.json").read_text())
        assert generated == model.model_json_schema()
        committed = ROOT / "docs/schema" / f"{model.__name__}.json"
        assert json.loads(committed.read_text()) == generated, (
            f"{committed} is stale: run soiree schema --out docs/schema"
        )


def test_election_ingest_results_and_tail(stack: Any, tmp_path: Path) -> None:
    s: Stack = stack("cli")
    election = mini_election()
    e = election.election

    created = soiree(s, "election", "create", "-", stdin=election.model_dump_json())
    assert created.returncode == 0, created.stderr
    assert f"election {e}" in created.stdout and "4 bureaux" in created.stdout

    good = [
        result(e, "42218-0001", 1, {"A": 40, "B": 10}),
        result(e, "42218-0002", 1, {"A": 10, "B": 30}),
        result(e, "75056-0001", 1, {"C": 70}),
        result(e, "42218-0001", 2, {"A": 41, "B": 10}),
    ]
    lines = [orjson.dumps(r).decode() for r in good]
    no_election = {k: v for k, v in result(e, "42001-0001", 1, {"A": 5}).items() if k != "election"}
    lines.append(orjson.dumps(no_election).decode())  # the election comes from --election
    lines.append(
        '{"election": "'
        + e
        + '", "bureau": "42001-0001", "seq": 1, "voters": 3, "blank": 0, "invalid": 0, "votes": {"A": 2}}'
    )
    lines.append("not json")
    file = tmp_path / "night.jsonl"
    file.write_text("\n".join(lines) + "\n")

    dry = soiree(s, "ingest", str(file), "--election", e, "--dry-run")
    assert dry.returncode == 1, dry.stderr
    assert "5 accepted" in dry.stdout and "2 rejected" in dry.stdout
    assert "line 6: bureau 42001-0001: blank + invalid + votes = 2, voters = 3" in dry.stdout
    assert "line 7: payload is not valid JSON" in dry.stdout

    s.start_worker()
    ingested = soiree(s, "ingest", str(file), "--election", e)
    assert ingested.returncode == 1, ingested.stderr  # something was rejected: not a success
    assert "5 accepted (published), 2 rejected" in ingested.stdout
    assert "2 of 7 reports rejected" in ingested.stderr
    rejected = [r for _, r in s.read_topic(s.settings.rejected_topic)]
    assert sorted(r["payload"] for r in rejected) == sorted([lines[5], lines[6]])
    assert {r["topic"] for r in rejected} == {"ingest"}

    truth = expected_by_area(election, good + [{**no_election, "election": e}])
    nation = truth[("nation", "FR")]
    s.wait_until(
        lambda: (st := s.standings(e, "nation", "FR")) is not None and st.voters == nation["voters"],
        60,
        "the nation",
    )
    shown = soiree(s, "results", "nation", "--election", e, "--json")
    assert shown.returncode == 0, shown.stderr
    standings = Standings.model_validate_json(shown.stdout)
    assert standings.votes == {c: nation["votes"].get(c, 0) for c in CANDIDATES}
    assert (standings.bureaux_reported, standings.bureaux_total) == (4, 4)

    table = soiree(s, "results", "commune", "--election", e)
    assert table.returncode == 0 and "Saint-Étienne" in table.stdout and "Paris" in table.stdout
    missing = soiree(s, "results", "commune", "99999", "--election", e)
    assert missing.returncode == 1 and "no results yet for commune 99999" in missing.stderr
    regions = soiree(s, "results", "region", "--election", e)  # a level since v2
    assert regions.returncode == 0 and "Auvergne-Rhône-Alpes" in regions.stdout, regions.stderr
    wrong_level = soiree(s, "results", "canton", "--election", e)
    assert wrong_level.returncode == 1 and "unknown level 'canton'" in wrong_level.stderr

    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "tail",
            "--election",
            e,
            "--json",
            "--from-beginning",
            "--level",
            "nation",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=s.env(),
        cwd=ROOT,
    )
    try:
        events: list[UpdateEvent] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert tail.stdout is not None
            events.append(UpdateEvent.model_validate_json(tail.stdout.readline()))
            if events[-1].kind == "complete":
                break
        assert events and events[-1].kind == "complete" and events[-1].level == "nation"
        assert {ev.level for ev in events} == {"nation"}
    finally:
        tail.terminate()
        tail.wait(timeout=10)


def test_election_create_sets_compare_to_qualify_and_round(stack: Any) -> None:
    s: Stack = stack("cli-create")
    first, second = mini_election(), mini_election()
    s.elections += [first.election, second.election]  # cleaned up with the stack
    early = soiree(
        s,
        "election",
        "create",
        "-",
        "--compare-to",
        first.election,
        "--round",
        "2",
        stdin=second.model_dump_json(),
    )
    assert early.returncode == 0, early.stderr
    assert f"{first.election} is not registered yet" in early.stderr  # said, not refused
    stored = Election.model_validate_json(s.redis.get(f"soiree:election:{second.election}") or b"")
    assert (stored.compare_to, stored.round, stored.qualify) == (first.election, 2, None)
    qualified = soiree(s, "election", "create", "-", "--qualify", "2", stdin=first.model_dump_json())
    assert qualified.returncode == 0 and "not registered" not in qualified.stderr, qualified.stderr
    stored = Election.model_validate_json(s.redis.get(f"soiree:election:{first.election}") or b"")
    assert stored.qualify == 2
    too_many = soiree(s, "election", "create", "-", "--qualify", "3", stdin=first.model_dump_json())
    assert too_many.returncode == 1 and "qualify = 3 needs more than 3 candidates" in too_many.stderr


def test_clear_errors_without_services(tmp_path: Path) -> None:
    env = {
        "SOIREE_REDIS_URL": "redis://:secret@127.0.0.1:1/0",
        "SOIREE_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "stream.cli", "results", "nation", "--election", "x"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Redis is not reachable at redis://:***@127.0.0.1:1/0" in done.stderr
    assert "secret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_a_kafka_refusal_during_ingest_is_one_clear_line_not_a_traceback(
    tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    """Kafka errors are told apart by type: a refusal (here a message too large) is not reported
    as "Kafka is not reachable", and no error class is matched by its name any more."""
    import asyncio

    import pytest
    import typer
    from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

    from stream.adapters.kafka import publisher
    from stream.cli import commands
    from stream.cli.ingest import IngestOptions
    from stream.settings import Settings

    election = mini_election()
    path = tmp_path / "results.jsonl"
    line = result(election.election, election.bureaux[0].bureau, 1, dict.fromkeys(CANDIDATES, 1))
    path.write_bytes(orjson.dumps(line) + b"\n")

    for error, said in (
        (MessageSizeTooLargeError("the broker says 1048588 bytes is too many"), "Kafka refused: Message"),
        (KafkaConnectionError("no route"), "Kafka is not reachable at"),
    ):

        class Refused:
            failure = error

            def __init__(self, *args: Any) -> None:
                pass

            async def __aenter__(self) -> Any:
                raise self.failure

            async def __aexit__(self, *args: Any) -> None:
                pass

        monkeypatch.setattr(publisher, "Publisher", Refused)
        with pytest.raises(typer.Exit):
            asyncio.run(commands._ingest(Settings(), election, str(path), IngestOptions()))
        assert said in capsys.readouterr().err
