"""Toxiproxy (Shopify's TCP fault proxy) for the fault tests: built from source, started, driven.

Why: a crash or a restart is easy to make, but the faults real networks make (a peer that stops
answering without refusing, latency, connections reset mid-request) need something between the
worker and Kafka or Redis. Toxiproxy is that something; it is a Go program, so it is built once
from the Go module proxy into ``$SOIREE_HOME/bin`` (no prebuilt binary is fetched), and driven
through its HTTP API with the standard library only (no new dependency).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stream.errors import InfraError
from stream.settings import Settings

__all__ = [
    "TOXIPROXY_VERSION",
    "Proxy",
    "Toxiproxy",
    "ensure_toxiproxy",
    "start_toxiproxy",
    "stop_toxiproxy",
]

TOXIPROXY_VERSION = "v2.12.0"
_MODULE = "github.com/Shopify/toxiproxy/v2"
#: where the Go tarball installs itself, for a shell whose PATH lacks it
_GO_FALLBACK = Path("/usr/local/go/bin/go")


def _binary(settings: Settings) -> Path:
    return settings.home.expanduser().resolve() / "bin" / "toxiproxy-server"


def _built_version(binary: Path) -> str:
    try:
        done = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return done.stdout.strip().rpartition(" ")[2]


def ensure_toxiproxy(settings: Settings) -> Path:
    """``$SOIREE_HOME/bin/toxiproxy-server`` at ``TOXIPROXY_VERSION``, built with ``go install``
    the first time (a minute; later calls only check its version). No Go is an error, not a skip:
    a fault test must never pass without its faults."""
    binary = _binary(settings)
    if _built_version(binary) == TOXIPROXY_VERSION:
        return binary
    go = shutil.which("go") or (str(_GO_FALLBACK) if _GO_FALLBACK.is_file() else None)
    package = f"{_MODULE}/cmd/server@{TOXIPROXY_VERSION}"
    flags = f"-X {_MODULE}.Version={TOXIPROXY_VERSION}"  # so that `-version` tells which one we built
    command = f'go install -ldflags "{flags}" {package}'
    if go is None:
        raise InfraError(
            f"`go` not found on PATH; it builds Toxiproxy for the network fault tests. Install Go "
            f"1.21 or newer (https://go.dev/dl), then run: GOBIN={binary.parent} {command} "
            f"(and rename {binary.parent}/server to {binary.name})"
        )
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent, prefix=".build-") as staging:
        env = {**os.environ, "GOBIN": staging, "CGO_ENABLED": "0"}
        done = subprocess.run(
            [go, "install", "-ldflags", flags, package], env=env, capture_output=True, text=True, timeout=900
        )
        built = Path(staging) / "server"
        if done.returncode != 0 or not built.is_file():
            raise InfraError(
                f"building Toxiproxy failed (exit {done.returncode}); command: GOBIN={staging} {command}\n"
                + (done.stdout + done.stderr).strip()[-2000:]
            )
        os.replace(built, binary)  # atomic: a concurrent build never leaves half a binary
    return binary


class ToxiproxyError(InfraError):
    """The Toxiproxy API refused a request (its status and message are in the text)."""


class Toxiproxy:
    """A client of Toxiproxy's HTTP API (``http://host:port``), synchronous and dependency-free."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")

    def request(self, method: str, path: str, body: Any = None, *, missing_ok: bool = False) -> Any:
        """One API call; the decoded JSON answer (None when empty, or a 404 with ``missing_ok``)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as answer:
                text = answer.read()
        except urllib.error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return None
            detail = exc.read().decode(errors="replace").strip()
            raise ToxiproxyError(f"Toxiproxy {method} {path}: HTTP {exc.code} {detail}") from None
        return json.loads(text) if text.strip() else None

    def version(self) -> str:
        with urllib.request.urlopen(f"{self.api_url}/version", timeout=2) as answer:
            text: str = answer.read().decode().strip()
        with contextlib.suppress(ValueError, AttributeError):
            text = json.loads(text).get("version", text)  # v2.12 answers JSON, older ones plain text
        return text

    def proxy(self, name: str, listen: str, upstream: str) -> Proxy:
        """Create the proxy ``name`` listening on ``listen`` (host:port) for ``upstream``; one of the
        same name is replaced (a test run after a failed one starts clean)."""
        self.request("DELETE", f"/proxies/{name}", missing_ok=True)
        self.request("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream})
        return Proxy(self, name, listen, upstream)

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self.request("POST", "/reset")


class Proxy:
    """One proxy of a ``Toxiproxy``; its toxics are faults applied to the connections through it."""

    def __init__(self, server: Toxiproxy, name: str, listen: str, upstream: str) -> None:
        self.server, self.name, self.listen, self.upstream = server, name, listen, upstream

    def add_toxic(
        self, type: str, stream: str = "downstream", toxicity: float = 1.0, **attributes: Any
    ) -> str:
        """Add a toxic (``latency``, ``timeout``, ``reset_peer``, ``bandwidth``, ``slow_close``,
        ``slicer``, ``limit_data``) with its attributes; returns its name (to remove it).
        ``downstream``: from the upstream to the client; ``upstream``: the other way."""
        name = f"{type}_{stream}_{time.monotonic_ns()}"
        body = {"name": name, "type": type, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        self.server.request("POST", f"/proxies/{self.name}/toxics", body)
        return name

    def remove_toxic(self, name: str) -> None:
        self.server.request("DELETE", f"/proxies/{self.name}/toxics/{name}")

    def toxics(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.server.request("GET", f"/proxies/{self.name}/toxics")
        return found

    def disable(self) -> None:
        """Close every connection and refuse new ones (a peer that is down, not a silent one)."""
        self.server.request("POST", f"/proxies/{self.name}", {"enabled": False})

    def enable(self) -> None:
        self.server.request("POST", f"/proxies/{self.name}", {"enabled": True})

    @contextlib.contextmanager
    def toxic(
        self,
        type: str,
        streams: tuple[str, ...] = ("downstream",),
        toxicity: float = 1.0,
        **attributes: Any,
    ) -> Iterator[list[str]]:
        """The toxic on each of ``streams`` for the duration of the with-block, removed even when the
        block fails."""
        names: list[str] = []
        try:
            for stream in streams:
                names.append(self.add_toxic(type, stream, toxicity, **attributes))
            yield names
        finally:
            for name in names:
                self.remove_toxic(name)


def start_toxiproxy(
    settings: Settings, port: int, binary: Path | None = None, timeout: float = 20
) -> tuple[subprocess.Popen[bytes], Toxiproxy]:
    """Start ``toxiproxy-server`` with its API on 127.0.0.1:``port`` (``binary``, else the one of
    ``ensure_toxiproxy(settings)``), logging to ``$SOIREE_HOME/logs/toxiproxy-<port>.log``, and
    wait until the API answers. Stop it with ``stop_toxiproxy``."""
    binary = binary or ensure_toxiproxy(settings)
    log = settings.home.expanduser().resolve() / "logs" / f"toxiproxy-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [binary, "-host", "127.0.0.1", "-port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = Toxiproxy(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.version()
            return process, client
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_toxiproxy(process)
                tail = log.read_text(errors="replace")[-1500:]
                raise InfraError(f"Toxiproxy did not start on port {port}; see {log}:\n{tail}") from None
            time.sleep(0.1)


def stop_toxiproxy(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
