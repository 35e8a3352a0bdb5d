"""stream.infra against the real services: a KRaft Kafka broker and redis-server."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from stream.devstack import services as infra
from stream.settings import Settings

from .harness import Stack


def test_kafka_answers_metadata(services: Settings) -> None:
    assert infra.kafka_answers(services.kafka_bootstrap)
    infra.wait_for_kafka(services.kafka_bootstrap, timeout=5)


def test_kafka_produce_consume_fresh_topic(services: Settings) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"test-infra-{uuid.uuid4().hex[:12]}"

    async def roundtrip() -> tuple[bytes | None, bytes | None]:
        admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"bonsoir", key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=services.kafka_bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        return message.key, message.value

    assert asyncio.run(roundtrip()) == (b"k", b"bonsoir")


def test_redis_answers_ping(services: Settings) -> None:
    assert infra.redis_answers(services.redis_dsn())
    client = redis.Redis.from_url(services.redis_dsn())
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_up_again_reports_already_running(services: Settings) -> None:
    statuses = infra.up(services)
    assert [(s.name, s.state) for s in statuses] == [
        ("kafka", "already running"),
        ("redis", "already running"),
    ]


def test_kafka_answers_false_on_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert not infra.kafka_answers(f"127.0.0.1:{port}", timeout=1)
    assert not infra.redis_answers(f"redis://127.0.0.1:{port}/0", timeout=1)


def test_the_demos_serve_is_started_once_and_stopped_by_down(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``soiree demo`` leaves ``soiree serve`` running; ``soiree down`` stops it (and only it here)."""
    s: Stack = stack("serve-up")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = s.settings.model_copy(update={"serve_port": port, "home": tmp_path})
    for name, value in {**s.env(), "SOIREE_SERVE_PORT": str(port), "SOIREE_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    url, started = infra.serve(settings)
    try:
        assert (url, started.state) == (f"http://127.0.0.1:{port}/", "started")
        with urllib.request.urlopen(url + "healthz", timeout=5) as response:
            assert response.status == 200
        _, again = infra.serve(settings)
        assert again.state == "already running" and "started by soiree" in again.detail
    finally:
        stopped = {status.name: status.state for status in infra.down(settings, only=["serve"])}
    assert stopped == {"serve": "stopped"}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
