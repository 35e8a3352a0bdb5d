"""The layers' direction, checked in fresh interpreters: the pure domain loads no Kafka, Redis,
Faust or HTTP client, and the read-only commands (results, tail) load no Faust."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import stream.domain

from .harness import ROOT

SERVICE_LIBRARIES = ("faust", "mode", "aiokafka", "redis", "aiohttp")


def loaded_after(code: str) -> set[str]:
    """Top-level names of the modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


DOMAIN_MODULES = sorted(m.name for m in pkgutil.iter_modules(stream.domain.__path__, "stream.domain."))


def test_the_domain_has_modules() -> None:
    assert {"stream.domain.aggregation", "stream.domain.changes", "stream.domain.messages"} <= set(
        DOMAIN_MODULES
    )


@pytest.mark.parametrize("module", DOMAIN_MODULES + ["stream.errors"])
def test_a_domain_module_loads_no_service_library(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    assert module.split(".")[0] in loaded  # the probe did import it
    assert not loaded & set(SERVICE_LIBRARIES), f"{module} pulls in {sorted(loaded & set(SERVICE_LIBRARIES))}"


@pytest.mark.parametrize(
    "code",
    [
        # what `soiree results` runs
        "from stream.cli import commands\n"
        "from stream.adapters.redis.standings import list_standings, read_standings\n"
        "from stream.cli.views import areas_table, standings_table",
        # what `soiree tail` runs
        "from stream.cli import commands\n"
        "from stream.adapters.kafka.updates import follow_updates\n"
        "from stream.cli.views import event_line",
    ],
    ids=["results", "tail"],
)
def test_the_read_only_commands_load_no_faust(code: str) -> None:
    loaded = loaded_after(code)
    assert "faust" not in loaded and "mode" not in loaded


def test_the_probe_sees_a_service_library_when_one_is_imported() -> None:
    """The check above can fail: importing the runtime does load Faust."""
    assert "faust" in loaded_after("import stream.runtime.app")
