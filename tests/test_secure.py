"""``soiree up --secure``: Kafka over SASL_SSL with ACLs per principal, Redis with ACL users.

One secure stack for the module, started by the real command on private ports and a private
``SOIREE_HOME`` (never the shared stack's 9092/9093/6379), and stopped by ``soiree down`` at the
end. Every command runs as a subprocess with a principal's env file, as a person would.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from stream.adapters.kafka.client import client_options
from stream.adapters.redis.standings import read_standings
from stream.devstack import services as infra
from stream.devstack.secure import PRINCIPALS, read_env_file
from stream.settings import Settings

from .harness import ROOT, ROUND_FILES
from .test_pres2017 import (
    BUREAUX,
    assert_equal_to_official,
    official_departments,
    official_nation,
)

pytestmark = pytest.mark.integration


def _free_ports(count: int) -> list[int]:
    """Ports nothing listens on, chosen by the system: never the shared stack's, and another test
    session running this file at the same time gets others."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SecureStack:
    home: Path
    base_env: dict[str, str]
    up_output: str
    log_dir: Path

    @property
    def secure(self) -> Path:
        return self.home / "secure"

    def values(self, principal: str) -> dict[str, str]:
        return read_env_file(self.secure / f"{principal}.env")

    def env(self, principal: str, **overrides: str) -> dict[str, str]:
        return {**self.base_env, **self.values(principal), **overrides}

    def settings(self, principal: str, **overrides: str) -> Settings:
        """The settings a process sourcing ``principal``'s env file reads."""
        values = {**self.values(principal), **overrides}
        fields = {k.removeprefix("SOIREE_").lower(): v for k, v in values.items()}
        return Settings(**fields)

    def passwords(self) -> list[str]:
        return [self.values(p)["SOIREE_KAFKA_SASL_PASSWORD"] for p in PRINCIPALS]

    def soiree(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stream.cli", *args],
            env=env or self.base_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    home = tmp_path_factory.mktemp("secure-home")
    # The broker's jars are the session's (fetched once by Maven), not fetched again here.
    libs = infra.ensure_kafka_jars(Settings())
    version = Settings().kafka_version
    (home / f"kafka-{version}").mkdir()
    (home / f"kafka-{version}" / "libs").symlink_to(libs.resolve(), target_is_directory=True)
    ports = dict(zip(("kafka", "controller", "redis"), _free_ports(3)))
    # the developer's own SOIREE_* settings (a sourced env file) must not leak in
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOIREE_") or k == "SOIREE_PRES2017_DIR"}
    env.update(
        SOIREE_HOME=str(home),
        SOIREE_KAFKA_BOOTSTRAP=f"localhost:{ports['kafka']}",
        SOIREE_KAFKA_CONTROLLER_PORT=str(ports["controller"]),
        SOIREE_REDIS_URL=f"redis://localhost:{ports['redis']}/0",
        SOIREE_WORKER_METRICS_PORT="0",
    )
    started = time.monotonic()
    up = subprocess.run(
        [sys.executable, "-m", "stream.cli", "up", "--secure"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    stack = SecureStack(home, env, up.stdout + up.stderr, tmp_path_factory.mktemp("secure-logs"))
    try:
        assert up.returncode == 0, f"soiree up --secure failed:\n{stack.up_output}"
        print(f"soiree up --secure: {time.monotonic() - started:.1f}s")
        yield stack
    finally:
        down = stack.soiree("down", timeout=120)
        output = down.stdout + down.stderr
        assert down.returncode == 0, output
        for port in (ports["kafka"], ports["controller"], ports["redis"]):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text)


# --------------------------------------------------------------------------- the command


def test_up_writes_private_env_files_and_prints_no_password(secure: SecureStack) -> None:
    output = _one_line(secure.up_output)
    assert "kafka started" in output and "SASL_SSL" in output
    assert "redis started" in output and "credentials written" in output
    assert stat.S_IMODE(secure.secure.stat().st_mode) == 0o700
    for principal in PRINCIPALS:
        path = secure.secure / f"{principal}.env"
        assert f"{principal}.env" in output
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        values = secure.values(principal)
        assert values["SOIREE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert values["SOIREE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert values["SOIREE_KAFKA_SASL_USERNAME"] == principal
        assert Path(values["SOIREE_KAFKA_SSL_CAFILE"]).is_file()
        password = values["SOIREE_KAFKA_SASL_PASSWORD"]
        assert len(password) >= 24
        assert values["SOIREE_REDIS_URL"].startswith(f"redis://{principal}:{password}@")
    assert len(set(secure.passwords())) == len(PRINCIPALS)
    # never in the output, the logs, the Redis configuration (only hashes there)
    readable = [secure.secure / "logs" / "kafka.log", secure.secure / "logs" / "redis.log"]
    readable.append(secure.secure / "redis" / "redis.conf")
    for password in secure.passwords():
        assert password not in secure.up_output
        for path in readable:
            assert password not in path.read_text(errors="replace"), path


def test_up_again_keeps_everything_and_so_does_a_restart(secure: SecureStack) -> None:
    files = {p: (secure.secure / f"{p}.env").read_text() for p in PRINCIPALS}
    again = secure.soiree("up", "--secure")
    output = _one_line(again.stdout + again.stderr)
    assert again.returncode == 0, output
    assert "kafka already running" in output and "redis already running" in output
    assert "credentials kept" in output
    down = secure.soiree("down")
    assert down.returncode == 0 and "secure kafka stopped" in _one_line(down.stdout)
    restarted = secure.soiree("up", "--secure")
    output = _one_line(restarted.stdout + restarted.stderr)
    assert restarted.returncode == 0, output
    assert "kafka started" in output and "credentials kept" in output
    assert {p: (secure.secure / f"{p}.env").read_text() for p in PRINCIPALS} == files


# --------------------------------------------------------------------------- who may do what


async def _produce(options: dict[str, object], topic: str) -> None:
    producer = AIOKafkaProducer(**options, request_timeout_ms=10000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"42218-0001")
    finally:
        await producer.stop()


async def _fetch(options: dict[str, object], topic: str) -> None:
    consumer = AIOKafkaConsumer(topic, **options, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=3000)
    finally:
        await consumer.stop()


def test_unauthenticated_clients_are_refused(secure: SecureStack) -> None:
    bootstrap = secure.values("reader")["SOIREE_KAFKA_BOOTSTRAP"]
    controller = f"localhost:{secure.base_env['SOIREE_KAFKA_CONTROLLER_PORT']}"
    assert not infra.kafka_answers(bootstrap)  # a plaintext metadata request gets nothing
    assert not infra.kafka_answers(controller)
    for address in (bootstrap, controller):
        with pytest.raises(KafkaConnectionError):
            asyncio.run(_produce({"bootstrap_servers": address}, "bureau-results"))
    no_sasl = client_options(secure.settings("reader", SOIREE_KAFKA_SECURITY_PROTOCOL="SSL"))
    with pytest.raises(KafkaConnectionError):  # TLS with the right CA, but no SASL
        asyncio.run(_produce(no_sasl, "bureau-results"))
    # Redis: the default user is disabled; the reader reads only
    url = secure.base_env["SOIREE_REDIS_URL"]
    with redis.Redis.from_url(url) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with redis.Redis.from_url(secure.values("reader")["SOIREE_REDIS_URL"]) as reader:
        assert reader.ping() is True
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set("soiree:results:x:nation:FR", "{}")
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.keys("*")


def test_each_principal_only_does_its_part(secure: SecureStack) -> None:
    reader = client_options(secure.settings("reader"))
    ingest = client_options(secure.settings("ingest"))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_produce(reader, "bureau-results"))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_produce(ingest, "election-updates"))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_fetch(ingest, "bureau-results"))
    asyncio.run(_fetch(reader, "election-updates"))  # allowed: nothing raised


def test_a_worker_with_a_wrong_password_says_so_in_one_line(secure: SecureStack) -> None:
    wrong = "wrong-" + secure.values("worker")["SOIREE_KAFKA_SASL_PASSWORD"][::-1]
    started = time.monotonic()
    run = secure.soiree("worker", env=secure.env("worker", SOIREE_KAFKA_SASL_PASSWORD=wrong), timeout=90)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert time.monotonic() - started < 60
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert re.search(r"authenticat|credential", output, re.IGNORECASE), output
    for password in (wrong, *secure.passwords()):
        assert password not in output


# --------------------------------------------------------------------------- a whole night


def test_the_2017_first_round_replays_exact_on_the_secure_stack(secure: SecureStack, data_dir: Path) -> None:
    """Registered as ``worker``, published by ``soiree ingest`` as ``ingest``, counted by a worker
    as ``worker``, read back as ``reader``: every department and the nation equal the official
    tables, and nothing went to the dead letters."""
    path = data_dir / ROUND_FILES[1]
    election = "pres2017-t1"
    timings: dict[str, float] = {}
    started = time.monotonic()
    created = secure.soiree(
        "election", "create", "--from-ministry", str(path), "--election", election, env=secure.env("worker")
    )
    assert created.returncode == 0, created.stdout + created.stderr
    timings["create"] = time.monotonic() - started
    log = (secure.log_dir / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info"],
        env=secure.env("worker"),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        started = time.monotonic()
        ingest = secure.soiree(
            "ingest", str(path), "--election", election, "--format", "ministry", env=secure.env("ingest")
        )
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        assert f"{BUREAUX:,} accepted" in _one_line(ingest.stdout)
        timings["ingest"] = time.monotonic() - started
        client = redis.Redis.from_url(secure.values("reader")["SOIREE_REDIS_URL"])
        deadline = time.monotonic() + 150
        while True:
            assert worker.poll() is None, f"the worker died; log in {secure.log_dir}"
            nation = read_standings(client, election, "nation", "FR")
            if nation is not None and nation.bureaux_reported == BUREAUX:
                break
            assert time.monotonic() < deadline, f"the night did not complete; log in {secure.log_dir}"
            time.sleep(0.5)
        timings["counted"] = time.monotonic() - started
        assert_equal_to_official(nation, official_nation(data_dir, 1), "nation")
        departments = official_departments(data_dir, 1)
        assert len(departments) == 107
        for code, official in departments.items():
            got = read_standings(client, election, "department", code)
            assert_equal_to_official(got, official, f"department {code}")
        client.close()
        # `soiree results` as reader (its Redis user reads only)
        results = secure.soiree("results", "nation", "--election", election, env=secure.env("reader"))
        assert results.returncode == 0 and "8,656,346" in results.stdout, results.stdout + results.stderr
        rejected: list[bytes] = []

        async def dead_letters() -> None:
            consumer = AIOKafkaConsumer(
                "bureau-results-rejected",
                **client_options(secure.settings("reader")),
                group_id=None,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            try:
                for messages in (await consumer.getmany(timeout_ms=2000)).values():
                    rejected.extend(m.value or b"" for m in messages)
            finally:
                await consumer.stop()

        asyncio.run(dead_letters())
        assert rejected == []
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    print("the 2017 first round on the secure stack:", {k: f"{v:.1f}s" for k, v in timings.items()})
