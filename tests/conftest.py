"""Shared fixtures. The real Kafka and Redis come from ``stream.devstack`` (as ``soiree up`` does)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.devstack import services as infra
from stream.settings import Settings

from .harness import ROUND_FILES, Stack, pres2017_dir


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


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The 2017 presidential data; its absence fails the tests that need it (never a skip)."""
    directory = pres2017_dir()
    missing = [name for name in ROUND_FILES.values() if not (directory / name).is_file()]
    if missing or not (directory / "official/france_entiere_conseil_constitutionnel.csv").is_file():
        pytest.fail(
            f"the 2017 presidential data is missing from {directory} "
            f"({', '.join(missing) or 'official totals'}); "
            "set SOIREE_PRES2017_DIR to the folder holding the ministry per-bureau files",
            pytrace=False,
        )
    return directory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use ``services`` are integration tests (``-m "not integration"`` skips them)."""
    for item in items:
        if "services" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def stack(services: Settings, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Factory of private stacks (own topics, group, tables); their workers stop at the end."""
    made: list[Stack] = []

    def make(name: str, **overrides: Any) -> Stack:
        made.append(Stack(services, name, tmp_path, **overrides))
        return made[-1]

    yield make
    for one in made:
        one.stop()
        try:
            one.forget()
        except Exception as exc:  # noqa: BLE001  # cleanup never fails a test; the next run is not harmed
            warnings.warn(
                f"could not delete the topics and keys of {one.settings.app_id}: {exc!r}", stacklevel=1
            )
