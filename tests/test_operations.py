"""Operational safety: security settings, secrets kept out of output, refusing bad starts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.adapters.kafka.client import client_options, faust_credentials
from stream.adapters.kafka.topics import check_created, contributions_topic, ensure_topics
from stream.errors import TopicCreationFailed, TopicsMisconfigured
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


def test_every_co_partitioned_topic_is_checked_not_only_the_results(stack: Any) -> None:
    """The internal contributions topic with the wrong count is refused too (only bureau-results was)."""
    s: Stack = stack("copart")
    fresh = s.settings.model_copy(update={"app_id": f"{s.settings.app_id}-fresh"})  # deleted with the stack's
    contributions = contributions_topic(fresh)

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=s.settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(contributions, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    with pytest.raises(
        TopicsMisconfigured, match=f"topic {contributions} has 2 partitions but SOIREE_PARTITIONS=4"
    ):
        asyncio.run(ensure_topics(fresh))


def test_a_topic_the_broker_refuses_fails_at_once_with_its_error(stack: Any) -> None:
    """aiokafka returns per-topic error codes instead of raising: each is read, none waited for."""
    s: Stack = stack("refused")
    bad = s.settings.model_copy(update={"updates_topic": "no spaces allowed here"})
    started = time.monotonic()
    with pytest.raises(TopicCreationFailed, match="no spaces allowed here: InvalidTopicError") as caught:
        asyncio.run(ensure_topics(bad))
    assert time.monotonic() - started < 10, "a refused topic must not look like a slow one"
    assert "create the topics yourself" in str(caught.value)


def test_creation_errors_are_read_code_by_code() -> None:
    check_created([("a", 0, None), ("b", 36, "Topic 'b' already exists.")])  # created, or by someone else
    with pytest.raises(TopicCreationFailed, match=r"c: PolicyViolationError \(code 44\): no way"):
        check_created([("a", 0, None), ("c", 44, "no way")])
