"""Operational safety: security settings, secrets kept out of output, refusing bad starts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.adapters.kafka.client import client_options, faust_credentials
from stream.settings import Settings

from .harness import ROOT, Stack


def test_sasl_ssl_settings_reach_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOIREE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SOIREE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SOIREE_KAFKA_SASL_USERNAME", "newsroom")
    monkeypatch.setenv("SOIREE_KAFKA_SASL_PASSWORD", "s3cret-kafka")
    monkeypatch.setenv("SOIREE_REDIS_URL", "rediss://soiree:s3cret-redis@redis.example:6380/0")
    settings = Settings()
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "newsroom" and options["sasl_plain_password"] == "s3cret-kafka"
    assert options["ssl_context"] is not None
    credentials = faust_credentials(settings)
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.protocol.value == "SASL_SSL"
    shown = repr(settings) + str(settings) + repr(credentials) + settings.redis_display()
    assert "s3cret" not in shown
    assert settings.redis_display() == "rediss://soiree:***@redis.example:6380/0"


def test_plaintext_by_default() -> None:
    settings = Settings(kafka_bootstrap="localhost:9092")
    assert client_options(settings) == {
        "bootstrap_servers": "localhost:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert faust_credentials(settings) is None


def worker(stack: Stack, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", "worker", *args],
        capture_output=True,
        text=True,
        env={**stack.env(), **(env or {})},
        cwd=ROOT,
        timeout=60,
    )


def test_worker_refuses_a_missing_election(stack: Any) -> None:
    s: Stack = stack("refuse")
    missing = [f"nowhere-{uuid.uuid4().hex}" for _ in range(3)]  # a message far wider than 80 columns
    done = worker(s, *[f"--election={e}" for e in missing])
    assert done.returncode == 1
    assert "is not registered" in done.stderr and "soiree election create" in done.stderr
    assert ", ".join(missing) in done.stderr
    assert done.stderr.count("\n") == 1, f"an error is one line, however long: {done.stderr!r}"


def test_worker_refuses_misconfigured_topics(stack: Any) -> None:
    s: Stack = stack("topics")
    wrong = f"t-wrong-{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=s.settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(wrong, 3, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    done = worker(s, env={"SOIREE_RESULTS_TOPIC": wrong})
    assert done.returncode == 1
    assert f"topic {wrong} has 3 partitions but SOIREE_PARTITIONS=4" in done.stderr


def test_worker_banner_hides_the_redis_password(stack: Any) -> None:
    s: Stack = stack("secret")
    done = worker(s, "--election", "nowhere", env={"SOIREE_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"})
    assert done.returncode == 1
    assert "hunter2" not in done.stderr + done.stdout
    assert "redis://:***@127.0.0.1:1/0" in done.stderr
