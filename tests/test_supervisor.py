"""``soiree worker --processes N``: N workers from one command, a killed one restarted, all
stopped with the command; the totals exact through it (sums of the reports, computed here)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stream.cli.supervisor import process_count, worker_command

from .harness import ROOT, Stack
from .test_pipeline import expected_by_area, mini_election, result


def test_process_count_and_the_command_each_worker_runs() -> None:
    assert process_count("auto") == (os.cpu_count() or 1) and process_count("3") == 3
    for wrong in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="a number from 1, or auto"):
            process_count(wrong)
    command = worker_command(["soiree", "worker", "--processes", "2", "--loglevel", "info", "--processes=3"])
    assert command == [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info"]


def test_workers_from_one_command_restarted_when_killed_and_stopped_with_it(
    stack: Any, tmp_path: Path
) -> None:
    s: Stack = stack("supervisor")
    election = mini_election()
    e = election.election
    s.register(election)
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "--processes", "2"],
            env={**s.env(), "COLUMNS": "200"},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:

        def pids() -> dict[str, int]:
            found = re.findall(r"worker (\d) of 2 started \(pid (\d+)\)", log.read_text())
            return {slot: int(pid) for slot, pid in found}  # the latest per slot

        s.wait_until(lambda: len(pids()) == 2, 30, "two workers started")
        first = [result(e, "42218-0001", 1, {"A": 40, "B": 10}), result(e, "75056-0001", 1, {"C": 70})]
        s.publish(first)
        s.wait_until(
            lambda: (n := s.standings(e, "nation", "FR")) is not None and n.bureaux_reported == 2,
            90,
            "the first",
        )
        killed = pids()["1"]
        os.kill(killed, signal.SIGKILL)
        s.wait_until(lambda: pids()["1"] != killed, 30, "the killed worker started again")
        assert f"(pid {killed}) exited with -9; restarting it" in log.read_text()
        second = [result(e, "42218-0002", 1, {"A": 5, "B": 30}), result(e, "42001-0001", 1, {"B": 8})]
        s.publish(second)
        nation = expected_by_area(election, first + second)[("nation", "FR")]
        s.wait_until(
            lambda: (n := s.standings(e, "nation", "FR")) is not None and n.voters == nation["voters"],
            120,
            "the second, after the restart",
        )
        got = s.standings(e, "nation", "FR")
        assert got is not None and got.votes == {c: nation["votes"].get(c, 0) for c in ("A", "B", "C")}
    finally:
        children = list(pids().values()) if log.exists() else []
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
    time.sleep(0.5)
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # every worker stopped with the command
    assert "stopped 2 workers" in log.read_text()
