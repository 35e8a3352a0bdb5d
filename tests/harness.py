"""A private Soirée stack per test: its own topics, consumer group, tables and worker processes.

Everything runs for real: ``soiree worker`` subprocesses against the session's Kafka and Redis.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer

from stream.adapters.kafka.definitions import register_election
from stream.adapters.kafka.publisher import Publisher
from stream.adapters.kafka.topics import ensure_topics
from stream.adapters.redis.standings import read_standings
from stream.domain.messages import Election, Standings
from stream.settings import Settings
from stream.testing import forget_run, private_settings

ROOT = Path(__file__).resolve().parents[1]

#: The 2017 presidential per-bureau files, by round (in ``../shared/data/pres2017``).
ROUND_FILES = {
    1: "2017-presidentielle-1_par_bureau_large.csv.gz",
    2: "2017-presidentielle-2_par_bureau_large.csv.gz",
}


def pres2017_dir() -> Path:
    """Where the 2017 data lives: $SOIREE_PRES2017_DIR, else ``../shared/data/pres2017`` next to the
    checkout, else ``/work/shared/data/pres2017`` (a clone elsewhere on the development machine)."""
    configured = os.environ.get("SOIREE_PRES2017_DIR")
    if configured:
        return Path(configured)
    candidates = [ROOT.parent / "shared/data/pres2017", Path("/work/shared/data/pres2017")]
    return next((c for c in candidates if (c / ROUND_FILES[1]).is_file()), candidates[0])


class Stack:
    def __init__(self, base: Settings, name: str, log_dir: Path, **overrides: Any) -> None:
        tag = f"{name}-{uuid.uuid4().hex[:6]}"
        self.settings = private_settings(base, f"t-{tag}", **overrides)
        self.redis = redis.Redis.from_url(self.settings.redis_dsn())
        self.log_dir = log_dir
        self.workers: list[subprocess.Popen[bytes]] = []
        self.background: list[threading.Thread] = []  # publishers a test runs while it injects faults
        self.elections: list[str] = []
        asyncio.run(ensure_topics(self.settings))

    # -- environment of a worker process ------------------------------------------------
    def env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(
            SOIREE_KAFKA_BOOTSTRAP=s.kafka_bootstrap,
            SOIREE_REDIS_URL=s.redis_dsn(),
            SOIREE_APP_ID=s.app_id,
            SOIREE_PARTITIONS=str(s.partitions),
            SOIREE_RESULTS_TOPIC=s.results_topic,
            SOIREE_TURNOUT_TOPIC=s.turnout_topic,
            SOIREE_REJECTED_TOPIC=s.rejected_topic,
            SOIREE_AUDIT_TOPIC=s.audit_topic,
            SOIREE_SOURCES_FILE=str(s.sources_file),
            SOIREE_UPDATES_TOPIC=s.updates_topic,
            SOIREE_ELECTIONS_TOPIC=s.elections_topic,
            SOIREE_TURNOUT_STEP=str(s.turnout_step),
            SOIREE_BATCH_SIZE=str(s.batch_size),
            SOIREE_HOME=str(s.home),
            SOIREE_WORKER_METRICS_PORT=str(s.worker_metrics_port),
        )
        return env

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{self.settings.app_id}-worker{len(self.workers)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        process.send_signal(sig)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
        for process in self.workers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def assert_workers_alive(self) -> None:
        for process in self.workers:
            assert process.poll() is None, (
                f"a worker died with exit code {process.returncode}; logs in {self.log_dir}"
            )

    # -- input ---------------------------------------------------------------------------
    def register(self, election: Election) -> None:
        register_election(self.settings, self.redis, election)
        self.elections.append(election.election)

    def forget(self) -> None:
        """Delete the stack's topics and Redis keys (workers stopped first)."""
        forget_run(self.settings, *self.elections)

    def publish(
        self, results: Iterable[dict[str, Any]], raw: Iterable[tuple[bytes | None, bytes]] = ()
    ) -> None:
        """Valid-looking results keyed by bureau, and raw (key, payload) pairs as they are."""

        async def run() -> None:
            async with Publisher(self.settings) as publisher:
                for result in results:
                    await publisher.result(result)
                producer = publisher._producer  # raw bytes: exactly what a careless bureau might send
                for key, payload in raw:
                    await producer.send(self.settings.results_topic, key=key, value=payload)

        asyncio.run(run())

    # -- output --------------------------------------------------------------------------
    def standings(self, election: str, level: str, area: str) -> Standings | None:
        return read_standings(self.redis, election, level, area)

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_workers_alive()
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; logs in {self.log_dir}")

    def read_topic(self, topic: str, idle: float = 2.0) -> list[tuple[bytes | None, dict[str, Any]]]:
        """Every message of ``topic`` so far (until ``idle`` seconds pass with nothing new)."""

        async def run() -> list[tuple[bytes | None, dict[str, Any]]]:
            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=self.settings.kafka_bootstrap,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                group_id=None,
            )
            await consumer.start()
            found: list[tuple[bytes | None, dict[str, Any]]] = []
            try:
                while True:
                    batch = await consumer.getmany(timeout_ms=int(idle * 1000))
                    if not batch:
                        return found
                    for messages in batch.values():
                        found.extend((m.key, orjson.loads(m.value)) for m in messages)
            finally:
                await consumer.stop()

        return asyncio.run(run())
