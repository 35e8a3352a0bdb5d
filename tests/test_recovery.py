"""Crashes and outages in the middle of the real 2017 night: the totals stay exact.

* kill -9 of the worker, a new worker takes over from Redis plus the changelog tail;
* Redis shut down (no persistence), a few seconds without it, then a new, empty Redis: the
  worker keeps going in memory, writes everything back, and re-registers the election.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from stream.devstack import services as infra
from stream.sources.ministry import election_from_ministry, results_from_ministry

from .harness import ROUND_FILES, Stack
from .test_pres2017 import assert_equal_to_official, official_departments, official_nation

BUREAUX = 69_242


def replay_round1(s: Stack, data_dir: Path) -> str:
    """Register round 1, start a worker and publish the night from a thread: the faults must
    strike while the worker is busy, and a fast worker can finish while a blocking publish is
    still reading the file."""
    path = data_dir / ROUND_FILES[1]
    election = election_from_ministry(path, f"pres2017-t1-{uuid.uuid4().hex[:6]}")
    s.register(election)
    s.start_worker()
    results = list(results_from_ministry(path, election.election))
    publisher = threading.Thread(target=s.publish, args=(results,), daemon=True)
    publisher.start()
    s.background.append(publisher)
    return election.election


def reported(s: Stack, election: str) -> int:
    try:
        nation = s.standings(election, "nation", "FR")
    except Exception:  # noqa: BLE001 - Redis may be down on purpose
        return 0
    return 0 if nation is None else nation.bureaux_reported


def assert_exact(s: Stack, election: str, data_dir: Path) -> None:
    for publisher in s.background:
        publisher.join(timeout=300)
        assert not publisher.is_alive(), "publishing the night did not finish"
    s.wait_until(lambda: reported(s, election) == BUREAUX, 600, "all bureaux in the nation's total")
    assert_equal_to_official(s.standings(election, "nation", "FR"), official_nation(data_dir, 1), "nation")
    for code, official in official_departments(data_dir, 1).items():
        assert_equal_to_official(s.standings(election, "department", code), official, f"department {code}")


def test_kill9_mid_night_then_a_new_worker_finishes_exactly(stack: Any, data_dir: Path) -> None:
    s: Stack = stack("kill9")
    election = replay_round1(s, data_dir)
    s.wait_until(lambda: reported(s, election) >= 15_000, 300, "a quarter of the night")
    first = s.workers[0]
    s.kill_worker(first, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL
    at_kill = reported(s, election)
    assert at_kill < BUREAUX, "the night ended before the kill; the test proves nothing"
    s.workers.remove(first)
    s.start_worker()
    assert_exact(s, election, data_dir)


def test_redis_lost_mid_night_is_rebuilt_exactly(stack: Any, data_dir: Path) -> None:
    s: Stack = stack("redislost")
    election = replay_round1(s, data_dir)
    s.wait_until(lambda: reported(s, election) >= 15_000, 300, "a quarter of the night")
    url = s.settings.redis_dsn()
    subprocess.run(["redis-cli", "-u", url, "SHUTDOWN", "NOSAVE"], capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while infra.redis_answers(url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not infra.redis_answers(url), "Redis did not stop"
    time.sleep(3)  # the worker runs without Redis for a while
    s.assert_workers_alive()
    infra.up(s.settings)  # a new, empty Redis
    assert_exact(s, election, data_dir)
    assert s.redis.exists(f"soiree:election:{election}"), "the election was not registered again"
