"""Shared fixtures. The real Kafka and Redis come from ``stream.infra`` (as ``soiree up`` does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stream import infra
from stream.settings import Settings


@pytest.fixture(scope="session")
def services() -> Iterator[Settings]:
    """Kafka and Redis at the configured addresses (env vars respected), started if missing.

    Fails (never skips) when they cannot start: integration tests must not pass vacuously.
    At the end, stops only what this session started, not what the developer already ran.
    """
    settings = Settings()
    statuses = infra.up(settings)
    started = [s.name for s in statuses if s.state == "started"]
    yield settings
    if started:
        infra.down(settings, only=started)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use ``services`` are integration tests (``-m "not integration"`` skips them)."""
    for item in items:
        if "services" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
