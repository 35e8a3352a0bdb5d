"""Soak night (issue 18 item 5): the 2017 round 1 over an evening's shape, a fault every few minutes.

Why: the other benchmarks time one burst on a quiet stack; an election night is hours of reports
with something failing meanwhile. This one compresses the real evening (the 69,242 bureaux of 23
April 2017 at the times ``soiree replay`` gives a ministry file: a few before 20:00, most between
20:00 and 21:30, peak 20:15-21:00, a tail to 23:30) into ``--minutes`` (30), and injects a fault
every ``--fault-every`` seconds (180), in turn:

* ``broker``: kill -9 of the node leading ``bureau-results`` partition 0, ``soiree up --brokers 3``
  20 s later;
* ``worker-kill``: SIGKILL of one worker process (``soiree worker --processes`` restarts it);
* ``worker-stop``: SIGSTOP of one worker for its session timeout + 5 s, then SIGCONT;
* ``redis-stop``: SIGSTOP of redis-server for 30 s, then SIGCONT: Redis stops answering, its
  connections stay open. (``DEBUG SLEEP 30`` would be the same from inside, but the devstack's
  Redis 7 refuses DEBUG: ``enable-debug-command no``.)
* ``redis-net``: the workers reach Redis through Toxiproxy (``stream/devstack/toxiproxy.py``):
  500 ± 200 ms of latency for 20 s, then every connection reset for 10 s (left out, with a note,
  from a checkout without that module).

Zero manual steps: a private three-node cluster and Redis through the real ``soiree up --brokers
3`` (own ``SOIREE_HOME`` under ``.soiree/soak-<tag>``, free ports; ``soiree down`` at the end, on
Ctrl-C, SIGTERM and errors too), the election registered with ``soiree election create
--from-ministry``, workers started with ``soiree worker --processes 2``, reports fed with the
producer ``soiree ingest`` and ``soiree replay`` use (``Publisher``), each at its time.

Measured: report -> nation event (``latencies``); worker RSS (/proc VmRSS) and Redis
``used_memory`` every 5 s; at the end every figure of the nation, the 107 departments, 577
circonscriptions and 18 regions against the official tables, and the dead letters (none expected):
PASS/FAIL each, exit 1 on any FAIL. Writes the samples as JSON and a plot of memory and progress
with the faults marked (``docs/soak.svg``). Needs Java 17 and the Kafka jars (as ``./test``)::

    .venv/bin/python bench/soak.py [--minutes 30] [--fault-every 180]
                                   [--faults broker,worker-kill,worker-stop,redis-stop,redis-net]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))  # this checkout's engine, as the subprocesses (cwd ROOT) run it

from latency import percentiles
from replay_2017 import ROUND1, status_mb

from stream.adapters.kafka.publisher import Publisher
from stream.adapters.kafka.topics import topic_partitions
from stream.adapters.redis.keys import results_key
from stream.adapters.redis.standings import list_standings, read_standings
from stream.devstack import services as infra
from stream.settings import Settings
from stream.sources.scenario import KNOWN_POLLS_CLOSE, scenario_from_ministry
from stream.testing import free_port_range

ELECTION = "pres2017-t1"
BUREAUX = 69_242
BROKERS = 3
#: The evening compressed into the run: polls close at 19:00, the last report by 23:30.
EVENING_S = 270 * 60
FAULTS = ("broker", "worker-kill", "worker-stop", "redis-stop", "redis-net")
BROKER_DOWN_S, REDIS_SILENT_S, SAMPLE_EVERY_S = 20.0, 30.0, 5.0
#: ``redis-net``: seconds of latency (ms, jitter ms) on the workers' Redis link, then of resets
REDIS_SLOW_S, REDIS_LATENCY_MS, REDIS_JITTER_MS, REDIS_RESET_S = 20.0, 500, 200, 10.0
#: Seconds without progress of the nation's count, after the feed, before the run is failed.
STALL_S = 300.0
FIELDS = {"inscrits": "registered", "votants": "voters", "blancs": "blank", "nuls": "invalid"}
FIELDS["exprimes"] = "expressed"
STARTED = re.compile(r"worker (\d+) of \d+ started \(pid (\d+)\)")
clock = time.monotonic


def say(t: float | None, line: str) -> None:
    """A line of the run's log, stamped with the run's clock (mm:ss) when it has started."""
    stamp = f"[{int(t) // 60:02d}:{int(t) % 60:02d}] " if t is not None else ""
    print(stamp + line, flush=True)


# -- the cluster ----------------------------------------------------------------------------------


class Cluster:
    """Three Kafka nodes and a Redis of the run's own, driven by the real ``soiree`` commands."""

    def __init__(self, home: Path) -> None:
        base = free_port_range(2 * BROKERS + 1)  # two per node, then Redis
        self.home = home
        self.bootstrap = ",".join(f"localhost:{base + 2 * i}" for i in range(BROKERS))
        keep = {"SOIREE_SESSION_TIMEOUT"}  # the workers' and the worker-stop fault's must agree
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SOIREE_") or k in keep}
        self.env.update(
            SOIREE_HOME=str(home),
            SOIREE_KAFKA_BOOTSTRAP=self.bootstrap,
            SOIREE_KAFKA_CONTROLLER_PORT=str(base + 1),
            SOIREE_REDIS_URL=f"redis://localhost:{base + 2 * BROKERS}/0",
            SOIREE_WORKER_METRICS_PORT="0",
            PYTHONUNBUFFERED="1",
        )
        self.settings = Settings(
            home=home,
            kafka_bootstrap=self.bootstrap,
            kafka_controller_port=base + 1,
            redis_url=self.env["SOIREE_REDIS_URL"],
            worker_metrics_port=0,
        )

    def soiree(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stream.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self) -> str:
        """``soiree up --brokers 3`` (the shared Kafka jars linked in, not fetched again)."""
        shared = Settings()
        jars = self.home / f"kafka-{shared.kafka_version}" / "libs"
        if not jars.exists():
            if not shared.home.is_absolute():
                shared = shared.model_copy(update={"home": ROOT / shared.home})
            libs = infra.ensure_kafka_jars(shared)
            jars.parent.mkdir(parents=True, exist_ok=True)
            jars.symlink_to(libs.resolve(), target_is_directory=True)
        done = self.soiree("up", "--brokers", str(BROKERS))
        if done.returncode != 0:
            raise SystemExit(f"soiree up --brokers {BROKERS} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def down(self) -> str:
        done = self.soiree("down", timeout=180)
        return done.stdout + done.stderr

    def node_pid(self, node: int) -> int | None:
        return _pid(infra.cluster_dir(self.settings, BROKERS) / f"node-{node}" / "run" / "kafka.pid")

    def redis_pid(self) -> int | None:
        return _pid(self.home / "run" / "redis.pid")

    def forget_data(self) -> None:
        """The night's data (about a GB of replicated topics); the logs stay."""
        for data in self.home.glob("kafka-cluster-*/node-*/kafka-data"):
            shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(self.home / "faust", ignore_errors=True)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Workers:
    """``soiree worker --processes N`` (the supervisor) and the worker processes it runs."""

    def __init__(
        self, cluster: Cluster, processes: int, log: Path, turnout_step: float, redis_url: str | None = None
    ) -> None:
        self.log = log
        self.processes = processes
        env = {**cluster.env, "SOIREE_TURNOUT_STEP": str(turnout_step)}
        if redis_url is not None:  # through Toxiproxy
            env["SOIREE_REDIS_URL"] = redis_url
        argv = ["worker", "--processes", str(processes), "--loglevel", "info", "--election", ELECTION]
        with log.open("ab") as handle:  # own session: a Ctrl-C reaches the soak, which stops them in order
            self.supervisor = subprocess.Popen(
                [sys.executable, "-m", "stream.cli", *argv],
                env=env,
                cwd=ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def pids(self) -> dict[int, int]:
        """Slot (1..N) -> pid of each live worker, from the supervisor's "worker N of M started (pid P)"."""
        latest: dict[int, int] = {}
        for slot, pid in STARTED.findall(self.log.read_text(errors="replace")):
            latest[int(slot)] = int(pid)
        return {slot: pid for slot, pid in latest.items() if _running(pid)}

    def slots(self) -> list[int]:
        return list(range(1, self.processes + 1))

    def wait_ready(self, timeout: float = 300, quiet: float = 5.0) -> float:
        """Seconds until every worker logged "Worker ready" and none did for ``quiet`` seconds
        (each one joining moves partitions again)."""
        started = clock()
        seen, changed = -1, clock()
        while True:
            if self.supervisor.poll() is not None:
                raise SystemExit(f"soiree worker exited with {self.supervisor.returncode}; see {self.log}")
            text = self.log.read_text(errors="replace")
            ready = text.count("Worker ready")
            if ready != seen:
                seen, changed = ready, clock()
            pids = set(re.findall(r"\] \[(\d+)\] \[INFO\] \[\^---\w+\]: Worker ready", text))
            if len(pids) >= self.processes and clock() - changed >= quiet:
                return clock() - started
            if clock() - started > timeout:
                raise SystemExit(f"workers not ready after {timeout:.0f} s; see {self.log}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.supervisor.poll() is None:
            self.supervisor.terminate()  # it stops its workers (SIGTERM, then SIGKILL after 30 s)
            try:
                self.supervisor.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.supervisor.kill()
                self.supervisor.wait()
        for pid in self.pids().values():  # orphans, if the supervisor was killed
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """A live process (not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


class RedisProxy:
    """The workers' Redis behind Toxiproxy (``stream/devstack/toxiproxy.py``), for ``redis-net``:
    a slow link, then connections reset, which a process signal cannot make."""

    def __init__(self, cluster: Cluster) -> None:
        from stream.devstack import toxiproxy  # the module may be absent from an older checkout

        self.module = toxiproxy
        shared = Settings()
        if not shared.home.is_absolute():
            shared = shared.model_copy(update={"home": ROOT / shared.home})
        binary = toxiproxy.ensure_toxiproxy(shared)  # built once, shared like the Kafka jars
        self.process, server = toxiproxy.start_toxiproxy(cluster.settings, _any_port(), binary=binary)
        listen = _any_port()
        upstream = urlsplit(cluster.settings.redis_dsn()).port
        self.proxy = server.proxy("soak-redis", f"127.0.0.1:{listen}", f"127.0.0.1:{upstream}")
        self.url = f"redis://127.0.0.1:{listen}/0"

    def stop(self) -> None:
        self.module.stop_toxiproxy(self.process)


def _any_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Fault:
    at: float  # seconds since the feed started
    kind: str
    detail: str = ""
    ended: float | None = None
    ok: bool = True


@dataclass
class Sample:
    t: float
    rss_mb: dict[int, float]  # worker slot -> VmRSS
    redis_mb: float | None  # used_memory (None: Redis did not answer within 2 s)
    redis_rss_mb: float | None
    fed: int
    counted: int | None  # the nation's bureaux_reported


@dataclass
class Run:
    cluster: Cluster
    workers: Workers
    night: list[tuple[float, dict[str, Any]]]  # (seconds after the start, report), in time order
    duration: float
    fault_every: float
    kinds: list[str]
    t0: float = 0.0
    produced: list[float] = field(default_factory=list)  # first send of report i (run seconds)
    #: the nation's events: (arrival, bureaux_reported) and (arrival, as_of as a timestamp)
    nation_count: list[tuple[float, float]] = field(default_factory=list)
    nation_as_of: list[tuple[float, float]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)  # pids under SIGSTOP right now
    resent: int = 0
    stall: float = STALL_S
    proxy: RedisProxy | None = None
    send_errors: Counter[str] = field(default_factory=Counter)
    feed_lag: float = 0.0
    done: bool = False

    @property
    def settings(self) -> Settings:
        return self.cluster.settings

    def now(self) -> float:
        return clock() - self.t0


class TrackingPublisher(Publisher):
    """The ingest's publisher, keeping each send's future: a report Kafka gave up on is sent again
    (a copy is harmless: the same bureau, seq and counts count once)."""

    last: asyncio.Future[Any] | None = None

    def _track(self, future: asyncio.Future[Any]) -> None:
        super()._track(future)
        self.last = future


async def feed(run: Run) -> None:
    """Every report at its time, in slices (whatever is due at each tick of at most 0.1 s)."""
    failed: list[int] = []
    outstanding = 0

    def delivered(i: int, future: asyncio.Future[Any]) -> None:
        nonlocal outstanding
        outstanding -= 1
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if error is not None:
            run.send_errors[type(error).__name__] += 1
            failed.append(i)

    async def send(publisher: TrackingPublisher, i: int) -> None:
        nonlocal outstanding
        try:
            await publisher.result(run.night[i][1])
        except KafkaError as exc:
            run.send_errors[type(exc).__name__] += 1
            failed.append(i)
            return
        assert publisher.last is not None
        outstanding += 1
        publisher.last.add_done_callback(lambda future: delivered(i, future))

    publisher = TrackingPublisher(run.settings)
    async with publisher:
        i = 0
        while i < len(run.night):
            now = run.now()
            if run.night[i][0] > now:
                await asyncio.sleep(min(0.1, run.night[i][0] - now))
                continue
            run.feed_lag = max(run.feed_lag, now - run.night[i][0])
            while i < len(run.night) and run.night[i][0] <= now:
                run.produced.append(run.now())
                await send(publisher, i)
                i += 1
            while failed:
                run.resent += 1
                await send(publisher, failed.pop())
        deadline = clock() + run.stall
        while outstanding or failed:
            if clock() > deadline:
                raise SystemExit(f"{outstanding} reports still unacknowledged after {run.stall:.0f} s")
            while failed:
                run.resent += 1
                await send(publisher, failed.pop())
            await asyncio.sleep(0.2)
        publisher._pending.clear()  # each one checked above; a failed one was sent again
    say(
        run.now(),
        f"feed done: {len(run.night):,} reports, {run.resent} sent again, lag ≤ {run.feed_lag:.1f} s",
    )


async def follow(run: Run) -> None:
    """The nation's events: only the partition of key ``FR`` of the updates topic (Kafka's default
    partitioner, as the worker's outbox), noted with their arrival time."""
    topic = run.settings.updates_topic
    consumer = AIOKafkaConsumer(bootstrap_servers=run.settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = topic_partitions(run.settings)[topic]  # as created (the worker checks them)
        tp = TopicPartition(topic, (murmur2(b"FR") & 0x7FFFFFFF) % partitions)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
        while not run.done:
            batch = await consumer.getmany(tp, timeout_ms=200, max_records=5000)
            arrival = run.now()
            for record in batch.get(tp, []):
                if record.key != b"FR":
                    continue
                event = orjson.loads(record.value)
                if event["level"] == "nation" and event["election"] == ELECTION:
                    run.nation_count.append((arrival, event["bureaux_reported"]))
                    if event.get("as_of") is not None:
                        run.nation_as_of.append((arrival, epoch(event["as_of"])))
    finally:
        await consumer.stop()


def _rss(pid: int) -> float | None:
    try:
        return round(status_mb(pid, "VmRSS"), 1)
    except OSError:  # it just died (a fault)
        return None


async def sample(run: Run) -> None:
    """Every 5 s: each worker's RSS, Redis's memory, the reports fed and the nation's count."""
    client = aioredis.Redis.from_url(run.settings.redis_dsn(), socket_timeout=2, socket_connect_timeout=2)
    nation_key = results_key(ELECTION, "nation", "FR")
    try:
        while not run.done:
            began = clock()
            rss = {slot: mb for slot, pid in run.workers.pids().items() if (mb := _rss(pid)) is not None}
            used = rss_redis = counted = None
            try:
                memory = await asyncio.wait_for(client.info("memory"), 2.5)
                used = round(memory["used_memory"] / 2**20, 1)
                rss_redis = round(memory["used_memory_rss"] / 2**20, 1)
                raw = await asyncio.wait_for(client.get(nation_key), 2.5)
                counted = 0 if raw is None else orjson.loads(raw)["bureaux_reported"]
            except (TimeoutError, redis.RedisError, OSError):
                pass  # Redis silent (a fault): a gap in its line
            run.samples.append(Sample(round(run.now(), 1), rss, used, rss_redis, len(run.produced), counted))
            if len(run.samples) % 12 == 1:
                workers = ", ".join(f"{mb:.0f}" for mb in rss.values())
                say(
                    run.now(),
                    f"fed {len(run.produced):,}, nation {counted if counted is not None else '?'}, "
                    f"worker RSS {workers} MB, Redis {used if used is not None else '?'} MB",
                )
            await asyncio.sleep(max(0.0, SAMPLE_EVERY_S - (clock() - began)))
    finally:
        await client.aclose()


async def partition_leader(settings: Settings, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return int(next(p["leader"] for p in described["partitions"] if p["partition"] == partition))


async def inject(run: Run, fault: Fault, turn: int) -> None:
    """One fault, waited out (a stopped process is always continued, whatever happens)."""
    if fault.kind == "broker":
        topic = run.settings.results_topic
        node = await partition_leader(run.settings, topic, 0)
        pid = run.cluster.node_pid(node)
        if pid is None:
            raise RuntimeError(f"no pid for node {node}")
        os.kill(pid, signal.SIGKILL)
        fault.detail = f"kill -9 node {node} (leader of {topic}/0)"
        await asyncio.sleep(BROKER_DOWN_S)
        began = clock()
        done = await asyncio.to_thread(run.cluster.soiree, "up", "--brokers", str(BROKERS))
        if done.returncode != 0 or f"kafka-{node} started" not in done.stdout:
            fault.ok = False
            fault.detail += f"; soiree up failed: {(done.stdout + done.stderr)[-300:]}"
        else:
            fault.detail += f"; soiree up after {BROKER_DOWN_S:.0f} s, node back in {clock() - began:.1f} s"
        return
    if fault.kind == "redis-stop":
        pid = run.cluster.redis_pid()
        if pid is None:
            raise RuntimeError("no pid for Redis")
        await _stopped_for(run, pid, REDIS_SILENT_S)
        fault.detail = f"SIGSTOP redis-server for {REDIS_SILENT_S:.0f} s, then SIGCONT"
        return
    if fault.kind == "redis-net":
        if run.proxy is None:
            raise RuntimeError("no Toxiproxy")
        link = run.proxy.proxy
        for toxic, seconds, attributes in (
            ("latency", REDIS_SLOW_S, {"latency": REDIS_LATENCY_MS, "jitter": REDIS_JITTER_MS}),
            ("reset_peer", REDIS_RESET_S, {"timeout": 0}),
        ):
            name = await asyncio.to_thread(link.add_toxic, toxic, "downstream", **attributes)
            try:
                await asyncio.sleep(seconds)
            finally:
                await asyncio.to_thread(link.remove_toxic, name)
        fault.detail = (
            f"workers' Redis link through Toxiproxy: {REDIS_LATENCY_MS} ± {REDIS_JITTER_MS} ms for "
            f"{REDIS_SLOW_S:.0f} s, then every connection reset for {REDIS_RESET_S:.0f} s"
        )
        return
    pids = run.workers.pids()
    if not pids:
        raise RuntimeError("no worker running")
    slot = sorted(pids)[(turn + (fault.kind == "worker-stop")) % len(pids)]  # kill one, stop the other
    pid = pids[slot]
    if fault.kind == "worker-kill":
        os.kill(pid, signal.SIGKILL)
        began = clock()
        while run.workers.pids().get(slot, pid) == pid and clock() - began < 120:
            await asyncio.sleep(0.2)
        again = run.workers.pids().get(slot)
        fault.ok = again not in (None, pid)
        fault.detail = f"SIGKILL worker {slot} (pid {pid}); " + (
            f"restarted by the supervisor as pid {again} after {clock() - began:.1f} s"
            if fault.ok
            else "NOT restarted within 120 s"
        )
    elif fault.kind == "worker-stop":
        silent = run.settings.session_timeout + 5
        await _stopped_for(run, pid, silent)
        fault.detail = (
            f"SIGSTOP worker {slot} (pid {pid}) for {silent:.0f} s "
            f"(session timeout {run.settings.session_timeout:.0f} s), then SIGCONT"
        )
    else:
        raise ValueError(f"unknown fault {fault.kind!r}")


async def _stopped_for(run: Run, pid: int, seconds: float) -> None:
    os.kill(pid, signal.SIGSTOP)
    run.stopped.add(pid)
    try:
        await asyncio.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
        run.stopped.discard(pid)


async def faults(run: Run) -> None:
    """A fault every ``fault_every`` seconds while the feed lasts, the kinds in turn; each waited
    out before the next (a long one delays the next)."""
    k = 0
    while (k + 1) * run.fault_every < run.duration:
        await asyncio.sleep(max(0.0, (k + 1) * run.fault_every - run.now()))
        kind = run.kinds[k % len(run.kinds)]
        fault = Fault(round(run.now(), 1), kind)
        run.faults.append(fault)
        say(run.now(), f"fault {k + 1}: {kind}")
        try:
            await inject(run, fault, k // len(run.kinds))
        except Exception as exc:  # noqa: BLE001 - a fault that could not be made is reported, not fatal
            fault.ok, fault.detail = False, f"{fault.detail} FAILED: {exc!r}"
        fault.ended = round(run.now(), 1)
        say(run.now(), f"fault {k + 1} over: {fault.detail}")
        k += 1


async def wait_complete(run: Run) -> float | None:
    """Seconds after the feed until the nation counts every bureau; None when its count did not
    move for run.stall seconds (the checks then say what is missing)."""
    client = redis.Redis.from_url(run.settings.redis_dsn(), socket_timeout=2)
    began = clock()
    counted, progressed = -1, clock()
    while True:
        try:
            nation = read_standings(client, ELECTION, "nation", "FR")
        except redis.RedisError:
            nation = None
        now = nation.bureaux_reported if nation is not None else 0
        if now >= BUREAUX:
            return clock() - began
        if now != counted:
            counted, progressed = now, clock()
        elif clock() - progressed > run.stall:
            say(
                run.now(),
                f"STALLED: the nation stayed at {counted:,} of {BUREAUX:,} bureaux for {run.stall:.0f} s",
            )
            return None
        await asyncio.sleep(0.5)


async def soak(run: Run) -> float | None:
    """The night: feed, faults, the nation's events and the samples together; then the wait for
    the last bureau. Returns that wait (None: it never came)."""
    run.t0 = clock()
    background = [asyncio.create_task(follow(run), name="follow")]
    await asyncio.sleep(1)  # the follower at the end of the updates topic before the first report
    run.t0 = clock()
    background.append(asyncio.create_task(sample(run), name="sample"))
    try:
        await asyncio.gather(feed(run), faults(run))
        tail = await wait_complete(run)
        await asyncio.sleep(3)  # the last events
        return tail
    finally:
        run.done = True
        for task, failed in zip(background, await asyncio.gather(*background, return_exceptions=True)):
            if isinstance(failed, Exception):  # its figures are missing: say why
                say(run.now(), f"{task.get_name()} failed: {failed!r}")


# -- figures and checks ------------------------------------------------------------------------


def first_reaching(
    produced: list[float], wanted: list[float], events: list[tuple[float, float]]
) -> list[float | None]:
    """For each report (published at ``produced[i]``): seconds until the first nation event, in
    arrival order, by which the nation's figure (or an earlier event's: it may step back after a
    crash) reached ``wanted[i]``; None if it never did."""
    reach: list[float] = []
    arrivals: list[float] = []
    for arrival, value in sorted(events):
        if not reach or value > reach[-1]:
            reach.append(value)
            arrivals.append(arrival)
    out: list[float | None] = []
    for at, want in zip(produced, wanted):
        k = bisect.bisect_left(reach, want)
        out.append(max(0.0, arrivals[k] - at) if k < len(reach) else None)  # 0: it was already in
    return out


def latencies(run: Run) -> dict[str, list[float | None]]:
    """Two measures of report -> nation event, per report in publishing order.

    ``count``: report i (1-based) is in when a nation event has ``bureaux_reported`` >= i: the
    nation counts as many bureaux as had been published by then (``bench/latency.py``'s measure;
    each bureau reports once, so that event came after report i; it need not hold report i
    itself when another partition's reports overtook it). Once reports are lost it means nothing:
    the count then trails the feed for good.
    ``as_of``: report r is in when a nation event's ``as_of`` (the latest ``reported_at`` counted)
    is at least r's ``reported_at``: how fresh the nation is, which reports lost elsewhere do not
    hold back, but which a stalled partition does not show either."""
    produced = run.produced
    count = first_reaching(produced, [float(i) for i in range(1, len(produced) + 1)], run.nation_count)
    stamps = [epoch(report["reported_at"]) for _, report in run.night[: len(produced)]]
    return {"count": count, "as_of": first_reaching(produced, stamps, run.nation_as_of)}


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {k: round(v, 1) if k != "n" else v for k, v in percentiles(values).items()}


def windows(run: Run, lat: list[float | None]) -> list[dict[str, Any]]:
    """Latency of the reports published before the first fault, and from each fault to the next."""
    edges = [0.0] + [f.at for f in run.faults] + [float("inf")]
    names = ["before the first fault"] + [f"fault {n}: {f.kind}" for n, f in enumerate(run.faults, 1)]
    out = []
    for name, start, end in zip(names, edges, edges[1:]):
        values = [v for at, v in zip(run.produced, lat) if v is not None and start <= at < end]
        out.append({"window": name, "from_s": start, **summary(values)})
    return out


def official(data: Path) -> dict[str, dict[str, dict[str, int]]]:
    """The official round 1 tables, read with plain csv: level -> area -> figure -> value."""

    def table(name: str, keys: tuple[str, ...]) -> dict[str, dict[str, int]]:
        with (data / "official" / name).open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        figures = [c for c in rows[0] if not c.startswith(("Code ", "Libellé ")) and c != "abstentions"]
        return {"-".join(row[c] for c in keys): {c: int(row[c]) for c in figures} for row in rows}

    with (data / "official/france_entiere_conseil_constitutionnel.csv").open(encoding="utf-8") as handle:
        nation = {row["item"]: int(row["value"]) for row in csv.DictReader(handle) if row["tour"] == "1"}
    return {
        "nation": {"FR": nation},
        "department": table("off_T1_definitif_departement.csv", ("Code du département",)),
        "circonscription": table(
            "off_T1_definitif_circonscription.csv", ("Code du département", "Code de la circonscription")
        ),
        "region": table("off_T1_definitif_region.csv", ("Code de la région",)),
    }


def figures_of(standings: Any) -> dict[str, int]:
    got = {french: getattr(standings, field) for french, field in FIELDS.items()}
    return {**got, **standings.votes}


def checks(settings: Settings, data: Path) -> list[tuple[str, bool, str]]:
    """(what, PASS?, detail): each figure of the nation, each level whole, the dead letters."""
    client = redis.Redis.from_url(settings.redis_dsn())
    tables = official(data)
    rows: list[tuple[str, bool, str]] = []
    nation = read_standings(client, ELECTION, "nation", "FR")
    if nation is None:
        return [("nation standings", False, "none in Redis")]
    rows.append(
        ("nation bureaux_reported", nation.bureaux_reported == BUREAUX, f"{nation.bureaux_reported:,}")
    )
    got = figures_of(nation)
    for name, value in tables["nation"]["FR"].items():
        rows.append((f"nation {name}", got.get(name) == value, f"{got.get(name, 0):,} (official {value:,})"))
    for level in ("department", "circonscription", "region"):
        have = {s.area: figures_of(s) for s in list_standings(client, ELECTION, level)}
        wrong = [area for area, figures in tables[level].items() if have.get(area) != figures]
        detail = "every figure exact" if not wrong else f"{len(wrong)} differ, e.g. {', '.join(wrong[:5])}"
        rows.append((f"{len(tables[level])} {level}s", not wrong, detail))
    rejected = asyncio.run(count_records(settings, settings.rejected_topic))
    rows.append(("dead letters", rejected == 0, f"{rejected}"))
    return rows


async def count_records(settings: Settings, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(topic_partitions(settings)[topic])]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


def checks_settled(settings: Settings, data: Path, timeout: float = 60) -> list[tuple[str, bool, str]]:
    """``checks``, again until they pass or ``timeout`` (standings are written after the events)."""
    deadline = clock() + timeout
    while True:
        rows = checks(settings, data)
        if all(ok for _, ok, _ in rows) or clock() > deadline:
            return rows
        time.sleep(2)


def log_problems(log: Path) -> dict[str, Any]:
    """The worker log's ERROR/CRITICAL lines and tracebacks, grouped by message without numbers."""
    kinds: Counter[str] = Counter()
    tracebacks = 0
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            tracebacks += 1
        match = re.match(r"\[[^\]]+\] \[\d+\] \[(ERROR|CRITICAL)\] (.*)", line)
        if match:
            kinds[f"{match.group(1)} " + re.sub(r"\d+", "#", match.group(2))[:160]] += 1
    return {"lines": sum(kinds.values()), "tracebacks": tracebacks, "kinds": dict(kinds.most_common(12))}


# -- the plot -----------------------------------------------------------------------------------


def nice_step(top: float, ticks: int = 5) -> float:
    raw = max(top, 1e-9) / ticks
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1.0
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


Series = dict[str, tuple[str, list[tuple[float, float | None]]]]  # name -> (colour, points)


def tag(name: str, text: str = "", **attributes: object) -> str:
    """One SVG element (``stroke_width`` -> ``stroke-width``)."""
    attrs = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attributes.items())
    return f"<{name} {attrs}>{text}</{name}>" if text else f"<{name} {attrs}/>"


def svg_plot(run: Run, path: Path, title: str) -> None:
    """Memory (workers' RSS, Redis's used_memory) and progress (fed, counted) over the run, the
    faults as shaded spans: a small hand-written SVG (matplotlib is not a dependency)."""
    width, left, right = 960, 64, 170
    end = max([s.t for s in run.samples] + [run.duration, 1.0])

    def x(t: float) -> float:
        return left + (width - left - right) * t / end

    colours = {1: "#1f77b4", 2: "#2ca02c", 3: "#9467bd", 4: "#8c564b"}
    memory: Series = {
        f"worker {slot} RSS": (colours.get(slot, "#555"), [(s.t, s.rss_mb.get(slot)) for s in run.samples])
        for slot in sorted({slot for s in run.samples for slot in s.rss_mb})
    }
    memory["Redis used_memory"] = ("#d62728", [(s.t, s.redis_mb) for s in run.samples])
    counted = [(s.t, None if s.counted is None else s.counted / 1000) for s in run.samples]
    progress: Series = {
        "reports fed": ("#7f7f7f", [(s.t, s.fed / 1000) for s in run.samples]),
        "nation: bureaux counted": ("#ff7f0e", counted),
    }
    panels: list[tuple[int, int, str, Series]] = [
        (46, 250, "MB", memory),
        (346, 130, "bureaux (thousands)", progress),
    ]
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="960" height="520" font-family="sans-serif" '
        'font-size="11">',
        tag("rect", width="100%", height="100%", fill="white"),
        tag("text", title, x=left, y=20, font_size=14, font_weight="bold"),
    ]
    for top, height, unit, series in panels:
        values = [v for _, points in series.values() for _, v in points if v is not None]
        step = nice_step(max(values, default=1.0))
        ymax = step * (int(max(values, default=1.0) / step) + 1)

        def y(v: float, top: int = top, height: int = height, ymax: float = ymax) -> float:
            return top + height * (1 - v / ymax)

        for f in run.faults:
            x0, x1 = x(f.at), x(f.ended if f.ended is not None else f.at + 1)
            out.append(
                tag("rect", x=f"{x0:.1f}", y=top, width=f"{max(x1 - x0, 2):.1f}", height=height, fill="#fdd")
            )
            if top == panels[0][0]:
                out.append(tag("text", f.kind, x=f"{x0 + 1:.1f}", y=top - 4, fill="#a00", font_size=9))
        tick = 0.0
        while tick <= ymax + 1e-9:
            out.append(
                tag(
                    "line", x1=left, x2=width - right, y1=f"{y(tick):.1f}", y2=f"{y(tick):.1f}", stroke="#eee"
                )
            )
            out.append(tag("text", f"{tick:g}", x=left - 6, y=f"{y(tick) + 4:.1f}", text_anchor="end"))
            tick += step
        middle = top + height / 2
        out.append(
            tag("text", unit, x=14, y=middle, transform=f"rotate(-90 14 {middle})", text_anchor="middle")
        )
        for n, (name, (colour, points)) in enumerate(series.items()):
            for segment in _segments(points):
                line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in segment)
                out.append(tag("polyline", fill="none", stroke=colour, stroke_width=1.5, points=line))
            ly = top + 12 + 16 * n
            out.append(
                tag(
                    "line",
                    x1=width - right + 10,
                    x2=width - right + 28,
                    y1=ly - 4,
                    y2=ly - 4,
                    stroke=colour,
                    stroke_width=2,
                )
            )
            out.append(tag("text", name, x=width - right + 32, y=ly))
        out.append(
            tag("rect", x=left, y=top, width=width - left - right, height=height, fill="none", stroke="#333")
        )
    minutes = end / 60
    every = next(m for m in (1, 2, 5, 10, 15, 30, 60) if minutes / m <= 12)
    bottom = panels[-1][0] + panels[-1][1]
    for m in range(0, int(minutes) + 1, every):
        out.append(tag("text", str(m), x=f"{x(m * 60):.1f}", y=bottom + 16, text_anchor="middle"))
    label = "minutes into the run (shaded: a fault, from its start to its end)"
    out.append(tag("text", label, x=(left + width - right) / 2, y=bottom + 34, text_anchor="middle"))
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")


def _segments(points: list[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Unbroken runs of a series (a worker restarting, Redis silent: a gap)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in points:
        if v is None:
            runs.append([])
        else:
            runs[-1].append((t, v))
    return [r for r in runs if len(r) > 1]


# -- main -----------------------------------------------------------------------------------------


def load_night(data: Path, duration: float) -> list[tuple[float, dict[str, Any]]]:
    """The round 1's reports at ``soiree replay``'s evening times, 19:00-23:30 squeezed into ``duration``."""
    closing = KNOWN_POLLS_CLOSE[ELECTION]
    scenario = scenario_from_ministry(data / ROUND1, ELECTION, closing)
    scale = duration / EVENING_S
    night = [
        ((r.at - closing).total_seconds() * scale, r.result.model_dump(mode="json", exclude_none=True))
        for r in scenario.reports
    ]
    return sorted(night, key=lambda item: item[0])


def engine_version() -> str:
    """This checkout's commit, and whether stream/ has uncommitted changes (others' work in progress)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "stream"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout: pass --label)"
    return commit + (" + uncommitted changes in stream/" if dirty else "")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # the cleanup below runs, as on Ctrl-C


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/pres2017")
    parser.add_argument("--minutes", type=float, default=30.0, help="the evening 19:00-23:30 in this time")
    parser.add_argument("--fault-every", type=float, default=180.0, help="seconds between faults")
    parser.add_argument("--faults", default=",".join(FAULTS), help="kinds, in turn: " + ", ".join(FAULTS))
    parser.add_argument("--processes", type=int, default=2, help="soiree worker --processes N")
    parser.add_argument(
        "--stall", type=float, default=STALL_S, help="seconds without progress before the run is failed"
    )
    parser.add_argument(
        "--turnout-step",
        type=float,
        default=0.000001,
        help="SOIREE_TURNOUT_STEP of the workers: tiny, so that the nation announces (almost) every change",
    )
    parser.add_argument("--label", default=engine_version(), help="the engine's version, for the JSON")
    parser.add_argument("--json", type=Path, default=ROOT / "docs/soak.json")
    parser.add_argument("--svg", type=Path, default=ROOT / "docs/soak.svg")
    args = parser.parse_args()
    kinds = [k for k in args.faults.split(",") if k]
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown:
        sys.exit(f"unknown faults {unknown}: use {', '.join(FAULTS)}")
    if not (args.data / ROUND1).is_file():
        sys.exit(f"{ROUND1} is not in {args.data}: pass --data DIR (the folder of shared/data/pres2017)")
    signal.signal(signal.SIGTERM, _terminate)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the faults make our clients complain
    duration = args.minutes * 60
    night = load_night(args.data, duration)
    tag = uuid.uuid4().hex[:6]
    home = ROOT / ".soiree" / f"soak-{tag}"
    home.mkdir(parents=True)
    cluster = Cluster(home)
    workers: Workers | None = None
    proxy: RedisProxy | None = None
    run: Run | None = None
    code = 1
    try:
        began = clock()
        cluster.up()
        say(
            None,
            f"soiree up --brokers {BROKERS}: {cluster.bootstrap}, {cluster.settings.redis_display()}, "
            f"home {home} ({clock() - began:.0f} s)",
        )
        created = cluster.soiree(
            "election", "create", "--from-ministry", str(args.data / ROUND1), "--election", ELECTION,
            "--round", "1", "--qualify", "2",
        )  # fmt: skip
        if created.returncode != 0:
            raise SystemExit(f"soiree election create failed:\n{created.stdout}{created.stderr}")
        if "redis-net" in kinds:
            try:
                proxy = RedisProxy(cluster)
            except ImportError:
                kinds.remove("redis-net")
                say(None, "no stream/devstack/toxiproxy.py in this checkout: the redis-net fault is left out")
        log = home / "logs" / "workers.log"
        workers = Workers(cluster, args.processes, log, args.turnout_step, proxy.url if proxy else None)
        say(
            None,
            f"soiree worker --processes {args.processes}: ready in {workers.wait_ready():.0f} s, "
            f"log {workers.log}",
        )
        run = Run(cluster, workers, night, duration, args.fault_every, kinds, stall=args.stall, proxy=proxy)
        tail = asyncio.run(soak(run))
        if tail is not None:
            say(run.now(), f"nation complete {tail:.1f} s after the last report")
        code = report(run, args, tail)
    except KeyboardInterrupt:
        say(run.now() if run else None, "interrupted")
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for pid in run.stopped if run else ():
            os.kill(pid, signal.SIGCONT)
        if workers is not None:
            workers.stop()
        if proxy is not None:
            proxy.stop()
        stopped = re.findall(r"■ (.+?) stopped", cluster.down())
        say(None, f"soiree down: {', '.join(stopped) or 'nothing was running'}")
        cluster.forget_data()
    sys.exit(code)


def _range(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}" for v in (values[0], max(values), values[-1])) if values else "-"


def _cell(stats: dict[str, float]) -> str:
    if not stats["n"]:
        return f"{'-':>13}{'':24}"
    return f"{stats['n']:>13,} {stats['p50_ms']:>7,.0f} {stats['p99_ms']:>7,.0f} {stats['max_ms']:>7,.0f}"


def report(run: Run, args: argparse.Namespace, tail: float | None) -> int:
    """Print the figures and the checks, write the JSON and the plot; the exit code."""
    lat = latencies(run)
    overall = {name: summary([v for v in values if v is not None]) for name, values in lat.items()}
    unmatched = {name: sum(v is None for v in values) for name, values in lat.items()}
    spans = {name: windows(run, values) for name, values in lat.items()}
    rows = checks_settled(run.settings, args.data)
    problems = log_problems(run.workers.log)
    print(
        f"\nSoak night, {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}: "
        f"{BUREAUX:,} bureaux over {args.minutes:g} min "
        f"(19:00-23:30 compressed {EVENING_S / run.duration:.0f}×), "
        f"{BROKERS} brokers, {args.processes} workers, a fault every {args.fault_every:g} s; "
        f"engine {args.label}"
    )
    print("  faults:")
    for n, f in enumerate(run.faults, 1):
        mark = "" if f.ok else "  (FAILED)"
        print(
            f"    {n:>2}. {int(f.at) // 60:02d}:{int(f.at) % 60:02d}-{int(f.ended or 0) // 60:02d}:"
            f"{int(f.ended or 0) % 60:02d}  {f.kind:<12} {f.detail}{mark}"
        )
    print(
        f"  report → nation event, {len(run.nation_count):,} nation events; p50 / p99 / max in ms "
        "(count: the nation counts as many bureaux as were published; as_of: it includes a report "
        "as recent):"
    )
    heading = f"{'p50':>7} {'p99':>7} {'max':>7}"
    print(f"    {'':<28} {'count: n':>13} {heading}  {'as_of: n':>13} {heading}")
    lines = [("whole run", overall["count"], overall["as_of"])]
    lines += [(c["window"], c, a) for c, a in zip(spans["count"], spans["as_of"])]
    for name, count, as_of in lines:
        print(f"    {name:<28} {_cell(count)}  {_cell(as_of)}")
    for name, missing in unmatched.items():
        if missing:
            print(f"    {missing:,} reports never reached by the nation's {name}")
    rss = {slot: [x.rss_mb[slot] for x in run.samples if slot in x.rss_mb] for slot in run.workers.slots()}
    used = [x.redis_mb for x in run.samples if x.redis_mb is not None]
    print(
        "  memory, start / peak / end: "
        + ", ".join(f"worker {slot} RSS {_range(mb)} MB" for slot, mb in rss.items())
        + f"; Redis used_memory {_range(used)} MB"
    )
    print(
        f"  feed: {run.resent} reports sent again ({dict(run.send_errors) or 'no send failed'}), "
        f"at most {run.feed_lag:.1f} s behind its schedule; "
        + (f"nation complete {tail:.1f} s after the feed" if tail is not None else "nation NEVER complete")
    )
    print(
        f"  worker log: {problems['lines']} ERROR/CRITICAL lines, {problems['tracebacks']} tracebacks "
        f"({run.workers.log})"
    )
    for kind, count in problems["kinds"].items():
        print(f"    {count:>5} × {kind}")
    print("  totals against the official tables:")
    for what, ok, detail in rows:
        print(f"    {'PASS' if ok else 'FAIL'}  {what}: {detail}")
    title = (
        f"Soak night: 2017 round 1 over {args.minutes:g} min, {BROKERS} brokers, {args.processes} workers, "
        f"{len(run.faults)} faults"
    )
    svg_plot(run, args.svg, title)
    result = {
        "config": {
            "minutes": args.minutes, "fault_every_s": args.fault_every, "faults": run.kinds,
            "processes": args.processes, "brokers": BROKERS, "turnout_step": args.turnout_step,
            "bureaux": BUREAUX, "cpus": os.cpu_count(), "at": time.strftime("%Y-%m-%d %H:%M"),
            "engine": args.label,
        },
        "latency_ms": overall, "latency_unmatched": unmatched, "windows": spans,
        "faults": [asdict(f) for f in run.faults],
        "feed": {"resent": run.resent, "send_errors": dict(run.send_errors), "lag_s": round(run.feed_lag, 2),
                 "nation_events": len(run.nation_count),
                 "complete_after_feed_s": None if tail is None else round(tail, 1)},
        "checks": [{"what": w, "pass": ok, "detail": d} for w, ok, d in rows],
        "worker_log": problems,
        "samples": [asdict(s) for s in run.samples],
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, separators=(",", ":")) + "\n")
    print(f"  written to {args.json} and {args.svg}")
    passed = all(ok for _, ok, _ in rows) and all(f.ok for f in run.faults)
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    main()
