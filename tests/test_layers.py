"""The layers' direction, checked in fresh interpreters: the pure domain loads no Kafka, Redis,
Faust or HTTP client, and the read-only commands (results, tail) load no Faust."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

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
        # what `soiree serve` runs
        "from stream.cli import commands\nimport stream.http.app",
    ],
    ids=["results", "tail", "serve"],
)
def test_the_read_only_commands_load_no_faust(code: str) -> None:
    loaded = loaded_after(code)
    assert "faust" not in loaded and "mode" not in loaded


def test_the_probe_sees_a_service_library_when_one_is_imported() -> None:
    """The check above can fail: importing the runtime does load Faust."""
    assert "faust" in loaded_after("import stream.runtime.app")


#: What each layer may import from the package (besides itself and third-party libraries).
ALLOWED = {
    "stream.domain": {"stream.domain", "stream.errors"},
    "stream.sources": {"stream.sources", "stream.domain", "stream.errors"},
    # who may report what: tokens, the sources file, signatures (pyca/cryptography); no service
    "stream.auth": {"stream.auth", "stream.domain", "stream.errors"},
    "stream.adapters": {"stream.adapters", "stream.domain", "stream.errors", "stream.settings"},
    "stream.http": {
        "stream.http",
        "stream.auth",
        "stream.adapters",
        "stream.domain",
        "stream.errors",
        "stream.settings",
    },
    "stream.runtime": {
        "stream.runtime",
        "stream.auth",
        "stream.adapters",
        "stream.domain",
        "stream.errors",
        "stream.settings",
    },
}
#: Third-party libraries the domain may use: it stays pure arithmetic and message shapes.
DOMAIN_LIBRARIES = {"pydantic", "pydantic_core", "orjson"}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; the package uses no relative imports but
    ``runtime/faust/__init__``'s, which stay inside its folder)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def layer_of(module: str) -> str | None:
    return next((layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")), None)


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for path in sorted((ROOT / "stream").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        layer = layer_of(module)
        if layer is None:
            continue
        for imported in imports_of(path):
            if imported.startswith("stream.") and not any(
                imported == allowed or imported.startswith(allowed + ".") for allowed in ALLOWED[layer]
            ):
                wrong.append(f"{module} imports {imported}")
            top = imported.split(".")[0]
            if layer == "stream.domain" and top not in sys.stdlib_module_names | DOMAIN_LIBRARIES | {
                "stream"
            }:
                wrong.append(f"{module} imports {imported} (the domain uses the stdlib, pydantic and orjson)")
    assert not wrong, "\n".join(wrong)


def test_the_import_check_sees_a_wrong_edge(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from stream.runtime.tally import Tallier\nimport redis\n", encoding="utf-8")
    assert imports_of(bad) == {"stream.runtime.tally", "redis"}
    assert layer_of("stream.domain.bad") == "stream.domain"
    assert "stream.runtime.tally" not in ALLOWED["stream.domain"]
