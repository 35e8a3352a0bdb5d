"""The drift guard of ``stream/runtime/faust/versions.py``: the pinned versions, and the upstream
code our patches copy or assume, hashed from the installed packages."""

from __future__ import annotations

import importlib
import inspect
import linecache
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest

from stream.errors import FaustVersionMismatch, SoireeError
from stream.runtime.faust import versions
from stream.runtime.faust.app import SoireeApp, _Transport
from stream.runtime.faust.bundle import Bundle
from stream.runtime.faust.consumer import _Consumer, _ConsumerThread
from stream.runtime.faust.monitor import QuietMonitor
from stream.runtime.faust.recovery import SeekFirstRecovery, SeekFirstTableManager
from stream.runtime.faust.versions import ASSUMED, COPIED, PINNED, check_versions, source_hash, upstream

ROOT = Path(__file__).resolve().parent.parent

#: Our classes that subclass Faust's, to find every upstream method they override.
PATCHED_CLASSES = (
    SeekFirstRecovery,
    SeekFirstTableManager,
    _ConsumerThread,
    _Consumer,
    Bundle,
    QuietMonitor,
    _Transport,
    SoireeApp,
)
#: Overrides that neither copy nor restate upstream code: they call it (``super()``) and add to it.
EXTENDED = {
    "faust.app.base.App.__init__": "SoireeApp checks the versions, then calls it",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer": (
        "_ConsumerThread calls it, then shortens the fetch wait (AIOKafkaConsumer.start is in ASSUMED)"
    ),
}


def _drifted(hashes: Mapping[str, str], what_to_do: str) -> list[str]:
    """A message for each path whose installed source no longer hashes as recorded."""
    return [
        f"{path} changed upstream (sha256 {source_hash(upstream(path))}, recorded {recorded}): {what_to_do}"
        for path, recorded in hashes.items()
        if source_hash(upstream(path)) != recorded
    ]


COPIED_CHANGED = (
    "re-read the upstream change and re-apply it to our copy in stream/runtime/faust (the comment "
    "above it in versions.COPIED names it), then update its hash in versions.COPIED"
)
ASSUMED_CHANGED = (
    "re-read the upstream change and check that the patch named above it in versions.ASSUMED still "
    "holds (fix it if not), then update its hash in versions.ASSUMED"
)


@pytest.mark.parametrize("path", sorted(COPIED))
def test_the_upstream_code_we_copied_is_unchanged(path: str) -> None:
    drift = _drifted({path: COPIED[path]}, COPIED_CHANGED)
    assert not drift, drift[0]


@pytest.mark.parametrize("path", sorted(ASSUMED))
def test_the_upstream_code_we_assume_is_unchanged(path: str) -> None:
    drift = _drifted({path: ASSUMED[path]}, ASSUMED_CHANGED)
    assert not drift, drift[0]


def test_every_upstream_method_we_override_is_accounted_for() -> None:
    """A new override must be hashed (COPIED, ASSUMED) or said to only extend upstream code."""
    unaccounted = []
    for cls in PATCHED_CLASSES:
        for name, member in vars(cls).items():
            if not (inspect.isfunction(member) or isinstance(member, property | classmethod | staticmethod)):
                continue
            base = next((base for base in cls.__mro__[1:] if name in vars(base)), None)
            if base is None:
                continue  # ours only
            path = f"{base.__module__}.{base.__qualname__}.{name}"
            if path not in COPIED and path not in ASSUMED and path not in EXTENDED:
                unaccounted.append(f"{cls.__name__}.{name} overrides {path}")
    assert not unaccounted, (
        "list each in versions.COPIED (a modified copy), versions.ASSUMED (restated or replaced) "
        f"or this test's EXTENDED (calls it and adds to it): {unaccounted}"
    )


def test_the_pins_are_the_projects() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(dependency.split("==", 1) for dependency in dependencies if "==" in dependency)
    assert {name: pins.get(name) for name in PINNED} == dict(PINNED)


# -- source_hash sees a change in the upstream source -------------------------------------------
UPSTREAM_V1 = """
class Consumer:
    def drain(self, records):
        return [record for record in records if record]

    @property
    def recovery(self):
        return "recovery"
"""


def _load(tmp_path: Path, name: str, source: str) -> None:
    """(Re)write and forget the module ``name``, as a reinstalled package would look."""
    (tmp_path / f"{name}.py").write_text(source)
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    linecache.checkcache()


def test_a_change_in_the_upstream_source_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    name = f"fake_upstream_{uuid.uuid4().hex[:8]}"
    monkeypatch.delitem(sys.modules, name, raising=False)
    _load(tmp_path, name, UPSTREAM_V1)
    recorded = {f"{name}.Consumer.drain": "", f"{name}.Consumer.recovery": ""}
    recorded = {path: source_hash(upstream(path)) for path in recorded}
    assert not _drifted(recorded, COPIED_CHANGED)

    _load(tmp_path, name, UPSTREAM_V1.replace("if record]", "if record is not None]"))
    drift = _drifted(recorded, COPIED_CHANGED)
    assert len(drift) == 1 and drift[0].startswith(f"{name}.Consumer.drain changed upstream")
    assert "re-apply it to our copy" in drift[0] and "update its hash" in drift[0]

    _load(tmp_path, name, UPSTREAM_V1.replace('return "recovery"', 'return "seek first"'))
    assert [message.split(" ", 1)[0] for message in _drifted(recorded, COPIED_CHANGED)] == [
        f"{name}.Consumer.recovery"
    ], "a property is hashed by its getter"


DRAIN = """def drain(self, records):
    return [record for record in records if record]
"""


def test_source_hash_ignores_only_the_indentation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A method hashes as the same text at the top level would: moved or nested, it has not drifted."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    name = f"fake_upstream_{uuid.uuid4().hex[:8]}"
    monkeypatch.delitem(sys.modules, name, raising=False)
    _load(tmp_path, name, f"class Consumer:\n{textwrap.indent(DRAIN, '    ')}\n{DRAIN}")
    assert source_hash(upstream(f"{name}.Consumer.drain")) == source_hash(upstream(f"{name}.drain"))


# -- check_versions -------------------------------------------------------------------------------
def _installed(**found: str | None) -> object:
    """``importlib.metadata.version`` as versions.py sees it: pinned, except ``found`` (None: absent)."""
    versions_found = {**PINNED, **{name.replace("_", "-"): value for name, value in found.items()}}

    def version(name: str) -> str:
        value = versions_found[name]
        if value is None:
            raise PackageNotFoundError(name)
        return value

    return version


def test_check_versions_passes_on_the_installed_pins() -> None:
    check_versions()


def test_a_different_version_is_refused_in_one_readable_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "version", _installed(faust_streaming="0.16.0", aiokafka=None))
    with pytest.raises(FaustVersionMismatch) as raised:
        check_versions()
    message = str(raised.value)
    assert isinstance(raised.value, SoireeError), "the CLI prints SoireeErrors as one line"
    assert "\n" not in message
    assert "faust-streaming 0.16.0 (pinned 0.15.3)" in message
    assert "aiokafka none (pinned 0.14.0)" in message
    assert "mode-streaming" not in message, "only what differs"
    assert "Reinstall with the project's pins" in message
    assert "stream/runtime/faust" in message and "PINNED and the hashes" in message


def test_a_worker_refuses_to_start_on_other_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "version", _installed(mode_streaming="0.8.0"))
    with pytest.raises(FaustVersionMismatch, match=r"mode-streaming 0\.8\.0 \(pinned 0\.7\.1\)"):
        SoireeApp(f"t-drift-{uuid.uuid4().hex[:6]}", web_enabled=False, autodiscover=False)
