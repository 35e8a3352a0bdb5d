"""Local Kafka and Redis without Docker, for ``soiree up`` / ``soiree down`` and the test session.

Why this shape:

* A service that already answers at the configured address is left alone (it may be the
  developer's own broker, a CI service, a systemd Redis): ``up`` only starts what is missing.
* Kafka is Apache Kafka 4.x in KRaft mode (one process is broker and controller), run straight
  from the jars Maven fetches into ``settings.home`` -- no tarball, no ZooKeeper, no Docker.
* Whatever ``up`` starts is recorded in a pid file under ``settings.home/run``; ``down`` stops
  only those processes, so it never kills a service it did not start.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console

from stream.errors import InfraError
from stream.settings import Settings

__all__ = [
    "InfraError",
    "ServiceStatus",
    "down",
    "ensure_kafka_jars",
    "kafka_answers",
    "redis_answers",
    "serve",
    "up",
    "wait_for_kafka",
]

#: KRaft needs a cluster id at format time; a fixed one keeps ``kafka-data`` reusable.
#: (base64url of ``b"soiree-kraft-one"``: 16 bytes, as Kafka requires.)
CLUSTER_ID = "c29pcmVlLWtyYWZ0LW9uZQ"
KAFKA_START_TIMEOUT = 120.0  # seconds; a warm start takes ~5 s, a cold JVM on a slow CI box more
REDIS_START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0  # SIGTERM grace before SIGKILL (the broker flushes and closes its logs)
KAFKA_HEAP = "-Xmx1g"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}
_POM = Path(__file__).resolve().with_name("pom.xml")

# Popen objects of the services this process started: kept so ``down`` can reap them
# (a killed child stays a zombie, still "alive" to kill(0), until its parent waits).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class ServiceStatus:
    """What ``up``/``down`` did for one service, for the CLI to print."""

    name: str
    address: str
    state: str  # "started" | "already running" | "stopped" | "not running"
    detail: str = ""


# --------------------------------------------------------------------------- probes


def _split_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """``"h1:9092,h2"`` -> ``[("h1", 9092), ("h2", 9092)]``."""
    out: list[tuple[str, int]] = []
    for item in bootstrap.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [::1]:9092
            host, _, rest = item[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        out.append((host, int(port) if port else 9092))
    return out


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def _metadata_brokers(host: str, port: int, timeout: float) -> int:
    """Send a Kafka Metadata request (v4, no topics) and return how many brokers the reply lists.

    Plain sockets rather than aiokafka: no event loop (``up`` may run inside one), no client
    log noise while the broker is still starting, and a port owned by something else just fails.
    """
    client_id = b"soiree-probe"
    correlation = 0x50C0
    header = struct.pack(">hhih", 3, 4, correlation, len(client_id)) + client_id
    body = struct.pack(">i?", -1, False)  # topics: null (none listed), allow_auto_topic_creation
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 12 <= size <= 16 * 1024 * 1024:
            raise ConnectionError(f"not a Kafka reply (size {size})")
        reply = _recv_exact(sock, size)
    got_correlation, _throttle, brokers = struct.unpack_from(">iii", reply)
    if got_correlation != correlation:
        raise ConnectionError("not a Kafka reply (correlation id)")
    return brokers


def kafka_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when some bootstrap server answers a Metadata request listing at least one broker."""
    for host, port in _split_bootstrap(bootstrap):
        try:
            if _metadata_brokers(host, port, timeout) >= 1:
                return True
        except (OSError, ValueError, struct.error):
            continue
    return False


def wait_for_kafka(bootstrap: str, timeout: float) -> None:
    """Block until ``kafka_answers(bootstrap)``; raise ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not kafka_answers(bootstrap):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s")
        time.sleep(0.25)


def _redis_ping(url: str, timeout: float = 2.0) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def redis_answers(url: str, timeout: float = 2.0) -> bool:
    """True when the Redis at ``url`` answers PING (with the URL's credentials)."""
    import redis

    try:
        _redis_ping(url, timeout)
    except (redis.RedisError, OSError, ValueError):
        return False
    return True


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host or "localhost", port), timeout=1.0):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- processes


def _home(settings: Settings) -> Path:
    return settings.home.expanduser().resolve()


def _pid_file(settings: Settings, name: str) -> Path:
    return _home(settings) / "run" / f"{name}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    return _home(settings) / "logs" / f"{name}.log"


_MARKERS = {"kafka": "kafka.Kafka", "redis": "redis-server", "serve": "stream.cli serve"}


def _alive(pid: int, name: str) -> bool:
    """Is ``pid`` a live process, and (where /proc tells) the service we started?"""
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
        if done == pid:
            _children.pop(pid, None)
            return False
        if pid in _children:
            # Our own child, still running. Right after the fork its cmdline is still ours (the
            # exec has not happened yet), which the marker check below took for a dead service.
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat[stat.rfind(")") + 2 :].startswith("Z"):
                return False
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
        return _MARKERS[name] in cmdline  # a recycled pid belongs to something else
    return True


def _read_pid(settings: Settings, name: str) -> int | None:
    """The pid ``up`` recorded for ``name`` if that process still runs; drops a stale pid file."""
    path = _pid_file(settings, name)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None
    if _alive(pid, name):
        return pid
    path.unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def _lock(settings: Settings) -> Iterator[None]:
    """Serialise ``up``/``down`` across processes (two terminals, parallel test sessions)."""
    run = _home(settings) / "run"
    run.mkdir(parents=True, exist_ok=True)
    with open(run / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _spawn(settings: Settings, name: str, argv: list[str], cwd: Path) -> int:
    """Start ``argv`` detached (own session, output appended to the log) and record its pid."""
    log = _log_file(settings, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n===== soiree up: starting {name} at {time.strftime('%F %T')} =====\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    pid_file = _pid_file(settings, name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _tail(path: Path, lines: int = 15) -> str:
    """The telling part of a service log since our last start: its errors, else its last lines."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    recent = text[text.rfind("===== soiree up:") :].splitlines()[1:]
    errors = [line for line in recent if re.search(r"\b(ERROR|FATAL)\b|^Caused by:|^Error|# ", line)]
    chosen = list(dict.fromkeys(errors))[:lines] or recent[-lines:]
    return "\n".join("    " + line[:300] for line in chosen)


def _wait_started(
    settings: Settings, name: str, pid: int, ready: Callable[[], bool], timeout: float
) -> float:
    """Poll ``ready()`` until true; fail early if the process dies. Returns the seconds waited."""
    start = time.monotonic()
    log = _log_file(settings, name)
    while not ready():
        if not _alive(pid, name):
            _pid_file(settings, name).unlink(missing_ok=True)
            raise InfraError(f"{name} exited while starting; see {log}. From the log:\n{_tail(log)}")
        if time.monotonic() - start > timeout:
            _stop(settings, name, pid)
            raise InfraError(
                f"{name} did not become ready within {timeout:.0f}s (stopped it); see {log}. "
                f"From the log:\n{_tail(log)}"
            )
        time.sleep(0.2)
    return time.monotonic() - start


def _stop(settings: Settings, name: str, pid: int, timeout: float = STOP_TIMEOUT) -> str:
    """SIGTERM the process group, SIGKILL after ``timeout``; remove the pid file."""

    def signal_group(sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)  # started with start_new_session: pgid == pid
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    detail = "SIGTERM"
    while _alive(pid, name):
        if time.monotonic() > deadline:
            signal_group(signal.SIGKILL)
            detail = f"SIGKILL after {timeout:.0f}s"
            kill_deadline = time.monotonic() + 10
            while _alive(pid, name) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
            break
        time.sleep(0.1)
    proc = _children.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    _pid_file(settings, name).unlink(missing_ok=True)
    return detail


# --------------------------------------------------------------------------- Kafka


def _need(tool: str, install: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise InfraError(
            f"`{tool}` not found on PATH; it is needed to run Kafka locally. Install it: {install}"
        )
    return path


def _check_java() -> str:
    """Kafka 4.x brokers need Java 17+; say so rather than let the JVM fail obscurely."""
    java = _need("java", "apt-get install -y openjdk-17-jre-headless (or any JDK 17+)")
    out = subprocess.run([java, "-version"], check=False, capture_output=True, text=True).stderr
    try:
        version = out.split('"')[1]
        major = int(
            version.split(".")[1] if version.startswith("1.") else version.split(".")[0].split("-")[0]
        )
    except (IndexError, ValueError):
        return java  # unusual vendor string: let Kafka itself complain if it must
    if major < 17:
        raise InfraError(f"Kafka 4.x needs Java 17 or newer; `java` is {version}. Install a JDK 17+.")
    return java


def ensure_kafka_jars(settings: Settings, console: Console | None = None) -> Path:
    """Fetch the broker jars once with Maven (``stream/devstack/pom.xml``); return the libs dir.

    Cached under ``home/kafka-<version>/libs``; a ``.complete`` marker means an interrupted
    download is redone instead of leaving a half-filled classpath.
    """
    base = _home(settings) / f"kafka-{settings.kafka_version}"
    libs = base / "libs"
    if (libs / ".complete").exists():
        return libs
    mvn = _need("mvn", "apt-get install -y maven")
    _check_java()
    base.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_POM, base / "pom.xml")
    staging = base / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(base / "pom.xml"), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime", f"-Dkafka.version={settings.kafka_version}",
    ]  # fmt: skip
    status = (
        console.status(
            f"Fetching Apache Kafka {settings.kafka_version} jars with Maven (first run only, ~1 min)…"
        )
        if console is not None
        else contextlib.nullcontext()
    )
    with status:
        result = subprocess.run(argv, check=False, cwd=base, capture_output=True, text=True)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        lines = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr).strip().splitlines()
        errors = [ln for ln in lines if ln.startswith("[ERROR] ") and ln[8:].strip() and "switch" not in ln]
        output = "\n".join(errors[:2] or lines[-20:])
        raise InfraError(
            f"Maven could not fetch Kafka {settings.kafka_version} (exit {result.returncode}); "
            f"command: {' '.join(argv)}\n{output}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs / ".complete").write_text(f"{settings.kafka_version}\n")
    if console is not None:
        console.print(f"Fetched Kafka {settings.kafka_version} jars into {libs}")
    return libs


_LOG4J2 = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- written by soiree (stream/devstack); the broker's stdout is {log} -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.storage.internals.log" level="WARN"/>
    <Logger name="kafka.log.LogCleaner" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="stdout"/></Root>
  </Loggers>
</Configuration>
"""


def _kafka_endpoint(settings: Settings) -> tuple[str, int]:
    """The (host, port) clients use; the broker we start listens on that port."""
    servers = _split_bootstrap(settings.kafka_bootstrap)
    if not servers:
        raise InfraError("SOIREE_KAFKA_BOOTSTRAP is empty")
    return servers[0]


def _kafka_config(
    settings: Settings,
    port: int,
    *,
    node_id: int = 1,
    controller_port: int | None = None,
    voters: str | None = None,
    brokers: int = 1,
) -> Path:
    """Write ``server.properties`` and ``log4j2.xml`` into the home dir (regenerated every start).

    One node of ``brokers``: ``node_id`` listens on ``port`` and ``controller_port``, ``voters`` is
    the ``controller.quorum.voters`` of the whole cluster (the single node's when not given).
    """
    home = _home(settings)
    data = home / "kafka-data"
    conf = home / "kafka-config"
    conf.mkdir(parents=True, exist_ok=True)
    ctl = settings.kafka_controller_port if controller_port is None else controller_port
    # the internal topics' replication: all of a small cluster's brokers, at most 3; writes to
    # them need two in sync once there are two
    replicas, insync = str(min(3, brokers)), str(min(2, brokers))
    # a fault proxy (Toxiproxy) on the advertised port stands between the clients and the broker;
    # the nodes of a cluster then also replicate through theirs
    advertised = (
        settings.kafka_advertised_port + 2 * (node_id - 1) if settings.kafka_advertised_port else port
    )
    properties = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        # static quorum: the voter's address comes from here at each start, not from the
        # formatted storage, so changing the controller port later needs no re-format
        "controller.quorum.voters": voters or f"{node_id}@localhost:{ctl}",
        "listeners": f"PLAINTEXT://localhost:{port},CONTROLLER://localhost:{ctl}",
        "advertised.listeners": f"PLAINTEXT://localhost:{advertised}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": str(settings.partitions),
        # every topic is created on purpose (ensure_topics, Faust), with its replication: a
        # mistyped name must fail, not make a topic of one replica
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": str(max(settings.partitions, 1)),
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": insync,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": insync,
        "group.initial.rebalance.delay.ms": "0",
    }
    server = conf / "server.properties"
    lines = "".join(f"{key}={value}\n" for key, value in properties.items())
    server.write_text("# written by soiree (stream/devstack) at each start\n" + lines)
    (conf / "log4j2.xml").write_text(_LOG4J2.replace("{log}", str(_log_file(settings, "kafka"))))
    return server


def _format_storage(settings: Settings, java: str, libs: Path, server: Path) -> None:
    """Format the KRaft log dir once (``kafka.tools.StorageTool format``) with the fixed cluster id."""
    data = _home(settings) / "kafka-data"
    if (data / "meta.properties").exists():
        return
    log4j = server.parent / "log4j2.xml"
    argv = [
        java, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*", "kafka.tools.StorageTool",
        "format", "-t", CLUSTER_ID, "-c", str(server), "--ignore-formatted",
    ]  # fmt: skip
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise InfraError(f"formatting Kafka storage in {data} failed:\n{result.stdout}{result.stderr}")


def _start_kafka(settings: Settings, console: Console | None) -> ServiceStatus:
    address = settings.kafka_bootstrap
    host, port = _kafka_endpoint(settings)
    pid = _read_pid(settings, "kafka")
    if pid is not None:  # ours, still starting (e.g. another terminal's `up`)
        _wait_started(settings, "kafka", pid, lambda: kafka_answers(address), KAFKA_START_TIMEOUT)
        return ServiceStatus("kafka", address, "already running", f"started by soiree, pid {pid}")
    if host not in _LOCAL_HOSTS:
        raise InfraError(f"Kafka at {address} is not reachable and not local, cannot start it")
    if _port_open(host, port):
        raise InfraError(
            f"port {port} is taken by something that does not answer Kafka metadata requests; "
            f"free it or point SOIREE_KAFKA_BOOTSTRAP elsewhere"
        )
    if _port_open("localhost", settings.kafka_controller_port):
        raise InfraError(
            f"the KRaft controller port {settings.kafka_controller_port} is already in use; "
            f"free it or set SOIREE_KAFKA_CONTROLLER_PORT"
        )
    java = _check_java()
    libs = ensure_kafka_jars(settings, console)
    server = _kafka_config(settings, port)
    _format_storage(settings, java, libs, server)
    log4j = server.parent / "log4j2.xml"
    argv = [
        java, KAFKA_HEAP, "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={_home(settings) / 'logs'}",
        "-cp", f"{libs}/*", "kafka.Kafka", str(server),
    ]  # fmt: skip
    status = console.status(f"Starting Kafka on localhost:{port}…") if console else contextlib.nullcontext()
    with status:
        pid = _spawn(settings, "kafka", argv, cwd=_home(settings))
        waited = _wait_started(settings, "kafka", pid, lambda: kafka_answers(address), KAFKA_START_TIMEOUT)
    detail = f"pid {pid}, ready in {waited:.1f}s, log {_log_file(settings, 'kafka')}"
    return ServiceStatus("kafka", address, "started", detail)


# --------------------------------------------------------------------------- a cluster


def cluster_dir(settings: Settings, brokers: int) -> Path:
    """Where ``up(brokers=N)`` keeps its nodes: ``$SOIREE_HOME/kafka-cluster-<N>/node-<id>``, each
    with its ``kafka-data``, ``kafka-config``, ``run/kafka.pid`` and ``logs/kafka.log``. Apart from
    the single broker's (``kafka-data``): a node's metadata names its cluster's voters."""
    return _home(settings) / f"kafka-cluster-{brokers}"


def _node_settings(settings: Settings, brokers: int, node: int) -> Settings:
    return settings.model_copy(update={"home": cluster_dir(settings, brokers) / f"node-{node}"})


def cluster_ports(settings: Settings, brokers: int) -> list[tuple[int, int]]:
    """(client port, controller port) of each node, node 1 first: node *i* (1-based) listens on
    the bootstrap port + 2(*i*-1) and its controller on ``SOIREE_KAFKA_CONTROLLER_PORT`` + 2(*i*-1)
    (defaults: 9092/9093, 9094/9095, 9096/9097)."""
    _host, port = _kafka_endpoint(settings)
    ctl = settings.kafka_controller_port
    pairs = [(port + 2 * i, ctl + 2 * i) for i in range(brokers)]
    flat = [p for pair in pairs for p in pair]
    if len(set(flat)) != len(flat) or max(flat) > 65535:
        raise InfraError(
            f"{brokers} brokers from port {port} and controllers from {ctl}, each every 2 ports, "
            f"overlap or run past 65535: set SOIREE_KAFKA_CONTROLLER_PORT to {port + 1} (interleaved) "
            f"or to a port at least {2 * brokers} away"
        )
    return pairs


def cluster_bootstrap(settings: Settings, brokers: int) -> str:
    """Every node's address: a client given them all still starts when node 1 is down."""
    return ",".join(f"localhost:{port}" for port, _ in cluster_ports(settings, brokers))


def _brokers_listed(port: int) -> int:
    try:
        return _metadata_brokers("localhost", port, 2.0)
    except (OSError, ValueError, struct.error):
        return 0


def _answers_at(port: int) -> bool:
    return _brokers_listed(port) >= 1


def _start_cluster(settings: Settings, console: Console | None, brokers: int) -> list[ServiceStatus]:
    """Start the nodes of the ``brokers``-node cluster that are not running (all of them at once:
    the quorum needs a majority of controllers before any broker is ready), then wait until
    every node answers and node 1's metadata lists all ``brokers``."""
    host, _port = _kafka_endpoint(settings)
    pairs = cluster_ports(settings, brokers)
    voters = ",".join(f"{n}@localhost:{ctl}" for n, (_p, ctl) in enumerate(pairs, 1))
    statuses: dict[int, ServiceStatus] = {}
    starting: dict[int, int] = {}  # node -> pid
    waits: dict[int, int] = {}  # node -> pid, of nodes already running (maybe still starting)
    java: str | None = None
    libs = Path()
    for node, (port, ctl) in enumerate(pairs, 1):
        node_settings = _node_settings(settings, brokers, node)
        address = f"localhost:{port}"
        pid = _read_pid(node_settings, "kafka")
        if pid is not None:
            waits[node] = pid
            statuses[node] = ServiceStatus(
                f"kafka-{node}", address, "already running", f"started by soiree, pid {pid}"
            )
            continue
        if host not in _LOCAL_HOSTS:
            raise InfraError(
                f"Kafka at {settings.kafka_bootstrap} is not local, cannot start a cluster there"
            )
        for taken, what in ((port, "client"), (ctl, "controller")):
            if _port_open("localhost", taken):
                listed = _brokers_listed(taken)
                known = (
                    f" by a Kafka of {listed} broker(s) (the single-broker `soiree up`?)" if listed else ""
                )
                raise InfraError(
                    f"node {node}'s {what} port {taken} is taken{known}; `soiree down` first, or set "
                    f"SOIREE_KAFKA_BOOTSTRAP and SOIREE_KAFKA_CONTROLLER_PORT to free ports"
                )
        if java is None:
            java = _check_java()
            libs = ensure_kafka_jars(settings, console)  # shared by every node
        server = _kafka_config(
            node_settings, port, node_id=node, controller_port=ctl, voters=voters, brokers=brokers
        )
        _format_storage(node_settings, java, libs, server)
        log4j = server.parent / "log4j2.xml"
        argv = [
            java, KAFKA_HEAP, "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={_home(node_settings) / 'logs'}",
            "-cp", f"{libs}/*", "kafka.Kafka", str(server),
        ]  # fmt: skip
        starting[node] = _spawn(node_settings, "kafka", argv, cwd=_home(node_settings))
    label = (
        f"Starting {len(starting)} of {brokers} Kafka nodes…"
        if starting
        else f"Waiting for {brokers} Kafka nodes…"
    )
    status = console.status(label) if console else contextlib.nullcontext()
    with status:
        began = time.monotonic()
        for node, pid in {**waits, **starting}.items():
            port = pairs[node - 1][0]
            remaining = max(KAFKA_START_TIMEOUT - (time.monotonic() - began), 1.0)
            _wait_started(
                _node_settings(settings, brokers, node),
                "kafka",
                pid,
                functools.partial(_answers_at, port),
                remaining,
            )
        first = pairs[0][0]
        while _brokers_listed(first) < brokers:
            if time.monotonic() - began > KAFKA_START_TIMEOUT:
                raise InfraError(
                    f"the {brokers} Kafka nodes did not all join within {KAFKA_START_TIMEOUT:.0f}s "
                    f"(node 1 lists {_brokers_listed(first)}); see "
                    f"{cluster_dir(settings, brokers)}/node-*/logs/kafka.log"
                )
            time.sleep(0.2)
        waited = time.monotonic() - began
    for node, pid in starting.items():
        log = _log_file(_node_settings(settings, brokers, node), "kafka")
        port, ctl = pairs[node - 1]
        statuses[node] = ServiceStatus(
            f"kafka-{node}",
            f"localhost:{port}",
            "started",
            f"controller {ctl}, pid {pid}, ready in {waited:.1f}s, log {log}",
        )
    return [statuses[node] for node in sorted(statuses)]


def _cluster_pids(settings: Settings) -> list[tuple[Settings, str, int | None, bool]]:
    """(node settings, name, pid if running, had a pid file) of every cluster node ``up`` made."""
    found = []
    for pid_file in sorted(_home(settings).glob("kafka-cluster-*/node-*/run/kafka.pid")):
        node_home = pid_file.parent.parent
        node_settings = settings.model_copy(update={"home": node_home})
        name = f"kafka-{node_home.name.removeprefix('node-')} ({node_home.parent.name})"
        found.append((node_settings, name, _read_pid(node_settings, "kafka"), True))
    return found


def _stop_cluster(settings: Settings, console: Console | None) -> list[ServiceStatus]:
    """SIGTERM every running node at once (one at a time, the last ones would wait for a quorum
    that is gone), then wait for each."""
    import concurrent.futures

    nodes = _cluster_pids(settings)
    statuses = []
    running = [(s, name, pid) for s, name, pid, _ in nodes if pid is not None]
    for _s, name, pid, had in nodes:
        if pid is None and had:
            statuses.append(ServiceStatus(name, "", "not running", "stale pid file removed"))
    if not running:
        return statuses
    status = console.status(f"Stopping {len(running)} Kafka nodes…") if console else contextlib.nullcontext()
    with status, concurrent.futures.ThreadPoolExecutor(len(running)) as pool:
        hows = list(pool.map(lambda item: _stop(item[0], "kafka", item[2]), running))
    for (_s, name, pid), how in zip(running, hows):
        statuses.append(ServiceStatus(name, "", "stopped", f"pid {pid}, {how}"))
    return statuses


# --------------------------------------------------------------------------- Redis


def _redis_conf(settings: Settings, host: str, port: int, username: str | None, password: str | None) -> Path:
    """A redis.conf (mode 0600: it may hold the password, which must not show in ``ps``).

    Never an evicted key (an evicted table key would lose an area's counts), as in
    ``config/redis/redis.conf`` (compose's). Unlike compose's, nothing is kept on disk: the local
    stack is for replays, and a Redis that comes back empty is what workers recover from (the
    definitions from their topic, the tables from their changelog); the fault tests restart it so.
    """
    data = _home(settings) / "redis"
    data.mkdir(parents=True, exist_ok=True)
    lines = [
        "# written by soiree (stream/devstack) at each start; see config/redis/redis.conf",
        f"port {port}",
        f"bind {'::1' if host == '::1' else '127.0.0.1'}",
        f'dir "{data}"',
        "appendonly no",  # no persistence, on purpose (above)
        'save ""',
        "maxmemory-policy noeviction",
        "daemonize no",
        'logfile ""',  # stdout, which goes to logs/redis.log
    ]
    if password:
        if username and username != "default":
            lines.append(f"user {username} on >{password} ~* &* +@all")
        else:
            lines.append(f"requirepass {password}")
    conf = data / "redis.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _start_redis(settings: Settings, console: Console | None) -> ServiceStatus:
    url = settings.redis_dsn()
    address = settings.redis_display()
    pid = _read_pid(settings, "redis")
    if pid is not None:
        _wait_started(settings, "redis", pid, lambda: redis_answers(url), REDIS_START_TIMEOUT)
        return ServiceStatus("redis", address, "already running", f"started by soiree, pid {pid}")
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 6379
    if parts.scheme not in ("redis", "rediss") or host not in _LOCAL_HOSTS:
        raise InfraError(f"Redis at {address} is not reachable and not local, cannot start it")
    if _port_open(host, port):
        try:
            _redis_ping(url)
        except Exception as exc:
            raise InfraError(
                f"something listens on port {port} but Redis PING at {address} fails: {exc}"
            ) from exc
    server = shutil.which("redis-server")
    if server is None:
        raise InfraError("`redis-server` not found on PATH. Install it: apt-get install -y redis-server")
    conf = _redis_conf(settings, host, port, parts.username, parts.password)
    status = console.status(f"Starting Redis on localhost:{port}…") if console else contextlib.nullcontext()
    with status:
        pid = _spawn(settings, "redis", [server, str(conf)], cwd=_home(settings) / "redis")
        waited = _wait_started(settings, "redis", pid, lambda: redis_answers(url), REDIS_START_TIMEOUT)
    detail = f"pid {pid}, ready in {waited:.1f}s, log {_log_file(settings, 'redis')}"
    return ServiceStatus("redis", address, "started", detail)


# --------------------------------------------------------------------------- API


def up(
    settings: Settings, console: Console | None = None, secure: bool = False, brokers: int = 1
) -> list[ServiceStatus]:
    """Make Kafka then Redis answer at the configured addresses, starting only what is missing.

    ``secure``: the locked-down stack of ``stream.devstack.secure`` instead, in ``home/secure``.
    ``brokers`` > 1: a KRaft cluster of that many nodes instead of the single broker (every node
    broker and controller; ports: ``cluster_ports``; data: ``cluster_dir``).
    Idempotent. Raises ``InfraError`` (pointing at the log file) when a service cannot start.
    """
    if brokers < 1:
        raise InfraError(f"--brokers must be at least 1, not {brokers}")
    if secure and brokers > 1:
        raise InfraError("--secure runs a single broker; --brokers N is for the plain stack")
    if secure:  # a stack of its own, locked down: stream/devstack/secure.py
        from stream.devstack import secure as secure_stack

        with _lock(settings):
            return secure_stack.up(settings, console)
    statuses: list[ServiceStatus] = []
    with _lock(settings):
        if brokers > 1:
            statuses.extend(_start_cluster(settings, console, brokers))
        elif kafka_answers(settings.kafka_bootstrap):
            pid = _read_pid(settings, "kafka")
            detail = f"started by soiree, pid {pid}" if pid else "not managed by soiree"
            statuses.append(ServiceStatus("kafka", settings.kafka_bootstrap, "already running", detail))
        else:
            statuses.append(_start_kafka(settings, console))
        if redis_answers(settings.redis_dsn()):
            pid = _read_pid(settings, "redis")
            detail = f"started by soiree, pid {pid}" if pid else "not managed by soiree"
            statuses.append(ServiceStatus("redis", settings.redis_display(), "already running", detail))
        else:
            statuses.append(_start_redis(settings, console))
    return statuses


def serve(settings: Settings, console: Console | None = None) -> tuple[str, ServiceStatus]:
    """Make ``soiree serve`` answer at the configured port (``soiree demo`` leaves it running):
    started detached, with a pid file like Kafka's and Redis's, unless something answers there."""
    host = "127.0.0.1" if settings.serve_host in _LOCAL_HOSTS else settings.serve_host
    url = f"http://{host}:{settings.serve_port}/"
    with _lock(settings):
        if _port_open(host, settings.serve_port):
            pid = _read_pid(settings, "serve")
            detail = f"started by soiree, pid {pid}" if pid else "not managed by soiree"
            return url, ServiceStatus("serve", url, "already running", detail)
        status = console.status("Starting soiree serve…") if console else contextlib.nullcontext()
        with status:
            argv = [sys.executable, "-m", "stream.cli", "serve"]
            pid = _spawn(settings, "serve", argv, Path.cwd())
            waited = _wait_started(settings, "serve", pid, lambda: _port_open(host, settings.serve_port), 30)
        return url, ServiceStatus("serve", url, "started", f"pid {pid}, ready in {waited:.1f}s")


def down(
    settings: Settings, console: Console | None = None, *, only: Collection[str] | None = None
) -> list[ServiceStatus]:
    """Stop what ``up`` (or the demo's ``serve``) started (per the pid files), SIGTERM then
    SIGKILL; never anything else.

    ``only`` limits it to some of ``"serve"``, ``"kafka"``, ``"redis"`` (the test session stops
    just what it started), ``"secure"`` (the stack of ``up(secure=True)``), ``"cluster"`` (the
    nodes of ``up(brokers=N)``).
    """
    statuses: list[ServiceStatus] = []
    addresses = {
        "kafka": settings.kafka_bootstrap,
        "redis": settings.redis_display(),
        "serve": f"port {settings.serve_port}",
    }
    with _lock(settings):
        if only is None or "secure" in only:
            from stream.devstack import secure as secure_stack

            statuses.extend(secure_stack.down(settings, console))
        if only is None or "cluster" in only:
            statuses.extend(_stop_cluster(settings, console))
        for name in ("serve", "redis", "kafka"):  # reverse start order
            if only is not None and name not in only:
                continue
            had_file = _pid_file(settings, name).exists()
            pid = _read_pid(settings, name)
            if pid is None:
                detail = "stale pid file removed" if had_file else "not started by soiree"
                statuses.append(ServiceStatus(name, addresses[name], "not running", detail))
                continue
            status = console.status(f"Stopping {name} (pid {pid})…") if console else contextlib.nullcontext()
            with status:
                how = _stop(settings, name, pid)
            statuses.append(ServiceStatus(name, addresses[name], "stopped", f"pid {pid}, {how}"))
    statuses.reverse()
    return statuses
