"""``soiree up --brokers 3``: a three-node KRaft cluster, replicated topics, a broker killed mid-night.

One cluster for the module, started by the real command on private ports (node *i* on base +
2(*i*-1), its controller on base + 1 + 2(*i*-1)) and a private ``SOIREE_HOME``, never the shared
stack's; stopped by ``soiree down`` at the end. Clients get all three addresses, as an operator
would give them, so that any one node may be down.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream.adapters.kafka.topics import changelog_topic, ensure_topics, topic_partitions
from stream.devstack import services as infra
from stream.errors import TopicsMisconfigured
from stream.settings import Settings
from stream.testing import free_port_range, private_settings

from .faults import Feeder, expected_truth, generate_big_night, read_results, reported, settle
from .harness import ROOT, Stack

pytestmark = [pytest.mark.integration, pytest.mark.faults]

BROKERS = 3
SEED = 20170618


@dataclass
class Cluster:
    home: Path
    env: dict[str, str]
    settings: Settings
    up_output: str
    log_dir: Path

    def soiree(self, *args: str, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stream.cli", *args],
            env={**self.env, **extra},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def node_pid(self, node: int) -> int | None:
        path = infra.cluster_dir(self.settings, BROKERS) / f"node-{node}" / "run" / "kafka.pid"
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("brokers-home")
    libs = infra.ensure_kafka_jars(Settings())  # the session's jars, not fetched again
    version = Settings().kafka_version
    (home / f"kafka-{version}").mkdir()
    (home / f"kafka-{version}" / "libs").symlink_to(libs.resolve(), target_is_directory=True)
    base = free_port_range(2 * BROKERS + 1)  # two per node, then Redis
    bootstrap = ",".join(f"localhost:{base + 2 * i}" for i in range(BROKERS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOIREE_") or k == "SOIREE_PRES2017_DIR"}
    env.update(
        SOIREE_HOME=str(home),
        SOIREE_KAFKA_BOOTSTRAP=bootstrap,
        SOIREE_KAFKA_CONTROLLER_PORT=str(base + 1),
        SOIREE_REDIS_URL=f"redis://localhost:{base + 2 * BROKERS}/0",
        SOIREE_WORKER_METRICS_PORT="0",
    )
    settings = Settings(
        home=home,
        kafka_bootstrap=bootstrap,
        kafka_controller_port=base + 1,
        redis_url=env["SOIREE_REDIS_URL"],
        worker_metrics_port=0,
    )
    started = time.monotonic()
    up = subprocess.run(
        [sys.executable, "-m", "stream.cli", "up", "--brokers", str(BROKERS)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    made = Cluster(home, env, settings, up.stdout + up.stderr, tmp_path_factory.mktemp("brokers-logs"))
    try:
        assert up.returncode == 0, f"soiree up --brokers {BROKERS} failed:\n{made.up_output}"
        print(f"soiree up --brokers {BROKERS}: {time.monotonic() - started:.1f}s")
        yield made
    finally:
        down = made.soiree("down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert len(re.findall(r"kafka-\d \(kafka-cluster-3\) stopped", down.stdout)) == BROKERS, down.stdout
        for port in range(base, base + 2 * BROKERS + 1):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def _describe(settings: Settings, names: list[str]) -> dict[str, tuple[int, int, int]]:
    """Each topic's (fewest replicas, fewest in-sync replicas, min.insync.replicas)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = {d["topic"]: d["partitions"] for d in await admin.describe_topics(names)}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        insync: dict[str, int] = {}
        for response in await admin.describe_configs(resources):
            for _code, _message, _type, name, entries, *_ in response.resources:
                for entry in entries:
                    if entry[0] == "min.insync.replicas":
                        insync[name] = int(entry[1])
    finally:
        await admin.close()
    return {
        name: (
            min(len(p["replicas"]) for p in parts),
            min(len(p["isr"]) for p in parts),
            insync[name],
        )
        for name, parts in described.items()
    }


async def _leader(settings: Settings, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return next(p["leader"] for p in described["partitions"] if p["partition"] == 0)


def test_up_starts_three_nodes_and_makes_replicated_topics(cluster: Cluster) -> None:
    output = cluster.up_output
    for node in range(1, BROKERS + 1):
        assert re.search(rf"kafka-{node} started at localhost:\d+", output), output
        properties = (
            infra.cluster_dir(cluster.settings, BROKERS)
            / f"node-{node}"
            / "kafka-config"
            / "server.properties"
        ).read_text()
        assert f"node.id={node}\n" in properties
        assert "auto.create.topics.enable=false\n" in properties
        voters = re.search(r"controller.quorum.voters=(.*)", properties)
        assert voters and voters.group(1).count("@localhost:") == BROKERS
    assert "redis started" in output
    names = list(topic_partitions(cluster.settings))
    described = asyncio.run(_describe(cluster.settings, names))
    assert described == dict.fromkeys(names, (3, 3, 2))
    again = cluster.soiree("up", "--brokers", str(BROKERS))  # idempotent
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") == BROKERS + 1, again.stdout


def test_a_topic_with_fewer_replicas_is_refused_at_worker_start(cluster: Cluster) -> None:
    thin = private_settings(cluster.settings, f"t-thin-{random.randrange(10**6)}")

    async def create_thin() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=thin.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(thin.updates_topic, thin.partitions, 1)])
        finally:
            await admin.close()

    asyncio.run(create_thin())
    with pytest.raises(TopicsMisconfigured, match=f"topic {thin.updates_topic} has replication factor 1"):
        asyncio.run(ensure_topics(thin))
    worker = cluster.soiree(
        "worker",
        timeout=60,
        SOIREE_APP_ID=thin.app_id,
        SOIREE_UPDATES_TOPIC=thin.updates_topic,
        SOIREE_RESULTS_TOPIC=thin.results_topic,
    )
    assert worker.returncode == 1
    lines = [line for line in worker.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "replication factor 1 (SOIREE_REPLICATION_FACTOR wants 3)" in lines[0], lines


def test_a_broker_killed_mid_night_and_restarted_leaves_the_totals_exact(cluster: Cluster) -> None:
    """A small messy night (duplicates, corrections, invalid messages) through one worker; the
    leader of ``bureau-results``' partition 0 is killed with ``kill -9`` halfway, the night goes
    on with two brokers (min.insync.replicas 2: writes still succeed), then ``soiree up
    --brokers 3`` starts it again. Every figure must equal the truth."""
    started = time.monotonic()
    s = Stack(cluster.settings, "brokers", cluster.log_dir)
    night = generate_big_night(SEED, n_departments=16, silent=2, invalid=16)
    half = len(night.messages) // 2
    s.register(night.election)
    s.start_worker()
    feeder = Feeder(s.settings, rate=120)
    log: dict[str, Any] = {"messages": len(night.messages)}
    try:
        feeder.feed(night.messages[:half])
        s.wait_until(lambda: reported(s, night.e) > 0, 90, "the worker to count the first bureaux")
        leader = asyncio.run(_leader(s.settings, s.settings.results_topic))
        pid = cluster.node_pid(leader)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        log["killed"] = f"node {leader}, leader of partition 0, at {reported(s, night.e)} bureaux"
        feeder.feed(night.messages[half:])  # waits for the first half, then goes on
        time.sleep(5)
        restarted = time.monotonic()
        up = cluster.soiree("up", "--brokers", str(BROKERS))
        assert up.returncode == 0, up.stdout + up.stderr
        assert re.search(rf"kafka-{leader} started", up.stdout), up.stdout
        log["restart"] = f"{time.monotonic() - restarted:.1f} s"
        feeder.wait(timeout=120)
        log["feeder_retries"] = feeder.retries
    finally:
        feeder.close()
    try:
        topic = read_results(s, night)
        settle(s, night, expected_truth(night, topic), timeout=90)
        s.assert_workers_alive()
        changelog = changelog_topic(s.settings)
        assert asyncio.run(_describe(s.settings, [changelog]))[changelog][::2] == (3, 2)
    finally:
        s.stop()
        print(log, f"test took {time.monotonic() - started:.1f} s")
