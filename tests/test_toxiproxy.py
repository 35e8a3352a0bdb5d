"""``stream.devstack.toxiproxy``: the client against the real ``toxiproxy-server`` (built by
``ensure_toxiproxy``), in front of a small TCP echo server; and the broker's advertised port.

A missing ``go`` fails these tests (never a skip): the network fault tests depend on them.
"""

from __future__ import annotations

import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.devstack import services as infra
from stream.devstack.toxiproxy import (
    TOXIPROXY_VERSION,
    Toxiproxy,
    ensure_toxiproxy,
    start_toxiproxy,
    stop_toxiproxy,
)
from stream.errors import InfraError
from stream.settings import Settings

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def toxiproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Toxiproxy]:
    binary = ensure_toxiproxy(Settings())  # the session's build, shared with the fault tests
    home = tmp_path_factory.mktemp("toxiproxy-home")
    process, client = start_toxiproxy(Settings(home=home), free_port(), binary=binary)
    try:
        yield client
    finally:
        stop_toxiproxy(process)
    assert process.returncode is not None
    assert any((home / "logs").glob("toxiproxy-*.log"))


def roundtrip(address: str, payload: bytes = b"ping", timeout: float = 2.0) -> tuple[bytes, float]:
    host, _, port = address.rpartition(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
    return got, time.monotonic() - started


def test_ensure_toxiproxy_builds_once_at_the_pinned_version() -> None:
    started = time.monotonic()
    binary = ensure_toxiproxy(Settings())
    assert time.monotonic() - started < 2, "built again although it was there"
    assert binary == Settings().home.resolve() / "bin" / "toxiproxy-server"
    assert subprocess.run([binary, "-version"], capture_output=True, text=True).stdout.split()[-1] == (
        TOXIPROXY_VERSION
    )


def test_proxy_toxics_and_reset_against_the_real_server(toxiproxy: Toxiproxy, echo: str) -> None:
    listen = f"127.0.0.1:{free_port()}"
    proxy = toxiproxy.proxy("echo", listen, echo)
    proxy = toxiproxy.proxy("echo", listen, echo)  # create or replace: no conflict
    assert roundtrip(listen)[0] == b"ping"

    with proxy.toxic("latency", streams=("upstream", "downstream"), latency=300) as names:
        assert sorted(t["name"] for t in proxy.toxics()) == sorted(names)
        got, took = roundtrip(listen)
        assert got == b"ping" and took >= 0.55, took
    assert proxy.toxics() == []
    assert roundtrip(listen)[1] < 0.3

    # a blackhole: the connection is accepted and stays open, nothing ever answers
    with proxy.toxic("timeout", streams=("upstream", "downstream"), timeout=0):
        with pytest.raises(TimeoutError):
            roundtrip(listen, timeout=1.0)
    assert roundtrip(listen)[0] == b"ping"

    name = proxy.add_toxic("reset_peer", stream="upstream", timeout=0)
    with pytest.raises(ConnectionResetError):
        roundtrip(listen)
    proxy.remove_toxic(name)
    assert roundtrip(listen)[0] == b"ping"

    proxy.disable()
    with pytest.raises(ConnectionRefusedError):  # a peer that is down: refused, at once
        roundtrip(listen, timeout=1.0)
    proxy.enable()
    assert roundtrip(listen)[0] == b"ping"

    proxy.add_toxic("latency", latency=1000)
    proxy.disable()
    toxiproxy.reset()  # every toxic removed, every proxy enabled
    assert proxy.toxics() == []
    assert roundtrip(listen)[1] < 0.3

    with pytest.raises(InfraError, match="HTTP 400"):
        proxy.add_toxic("no_such_toxic")


def test_the_broker_advertises_the_proxy_port(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_advertised_port=29092)
    server = infra._kafka_config(settings, 19092)  # noqa: SLF001 - the file `soiree up` writes
    text = server.read_text()
    assert "listeners=PLAINTEXT://localhost:19092," in text
    assert "advertised.listeners=PLAINTEXT://localhost:29092\n" in text
    node = infra._kafka_config(settings, 19094, node_id=2, brokers=3)  # noqa: SLF001
    assert "advertised.listeners=PLAINTEXT://localhost:29094\n" in node.read_text()
    plain = infra._kafka_config(Settings(home=tmp_path), 19092)  # noqa: SLF001
    assert "advertised.listeners=PLAINTEXT://localhost:19092\n" in plain.read_text()


def test_no_go_is_an_error_that_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stream.devstack import toxiproxy

    monkeypatch.setattr(toxiproxy.shutil, "which", lambda _name: None)
    monkeypatch.setattr(toxiproxy, "_GO_FALLBACK", tmp_path / "no-go")
    with pytest.raises(InfraError, match=r"`go` not found on PATH.*go install -ldflags .*server@v2\.12\.0"):
        ensure_toxiproxy(Settings(home=tmp_path))
