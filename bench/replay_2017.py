"""Benchmark: the 2017 presidential round 1 (69,242 bureaux) end to end, next to a baseline.

Baseline (same run, same broker): plain aiokafka produces the same 69,242 messages to a fresh
topic and a plain consumer reads them all back. Floor (same run, Redis store only): what the night
must write, written by plain clients with no computation: the reports consumed while the night's
update events (read back from its updates topic) are produced as record batches and its
standings (read back from Redis) written with MSET; no worker can do the night faster than its
own writes, so this bounds the ratio any worker can reach. Soirée: one worker (``--workers N``: N
worker processes in one group), already started and ready, the same messages published to
``bureau-results``; the clock stops when the nation's
standings in Redis include every bureau. Then the workers are killed (-9) and a new one started:
the time until it is ready measures failover. Both with the Redis store and with Faust's memory
store (which replays the whole changelog). ``--signed``: each store's night a second time, right
after the first, signed: the election requires signatures, a sources file of the run's (in a temp
dir) holds one source of scope ``nation:FR`` with its public key, every report is signed with
``sign()`` before the clock starts; the workers verify each one (the cost of signatures, issue 17).
Usage (Kafka and Redis running, e.g. `soiree up`)::

    python bench/replay_2017.py [--data ../shared/data/pres2017] [--json bench/results/replay_2017.json]
                                [--stores redis,memory] [--workers 1] [--signed]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[1]

from stream.adapters.kafka.definitions import register_election
from stream.adapters.kafka.publisher import Publisher
from stream.adapters.kafka.topics import ensure_topics
from stream.adapters.redis.keys import results_pattern
from stream.adapters.redis.standings import read_standings
from stream.auth.registry import add_source
from stream.auth.signatures import load_private_key, sign, write_key_pair
from stream.cli.supervisor import process_count
from stream.devstack import services as infra
from stream.settings import Settings
from stream.sources.ministry import election_from_ministry, results_from_ministry
from stream.testing import forget_run, private_settings

ROUND1 = "2017-presidentielle-1_par_bureau_large.csv.gz"
#: The one source of a signed night: it may report every bureau.
SOURCE = "bench-nation"


def require(settings: Settings, data: Path | None = None) -> None:
    """One line instead of a traceback when the services or the 2017 file are not there."""
    problems = []
    if not infra.kafka_answers(settings.kafka_bootstrap):
        problems.append(f"Kafka does not answer at {settings.kafka_bootstrap}")
    if not infra.redis_answers(settings.redis_dsn()):
        problems.append("Redis does not answer at " + settings.redis_display())
    if problems:
        sys.exit(
            "; ".join(problems)
            + ": start them with `./soiree up` (or set SOIREE_KAFKA_BOOTSTRAP, SOIREE_REDIS_URL)"
        )
    if data is not None and not (data / ROUND1).is_file():
        sys.exit(f"{ROUND1} is not in {data}: pass --data DIR (the folder of shared/data/pres2017)")


#: Seconds without progress of the nation's count before a run is declared failed.
STALL_S = 120


async def create_topic(settings: Settings, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.partitions, 1)])
    finally:
        await admin.close()


async def delete_topic(settings: Settings, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def baseline(settings: Settings, payloads: list[tuple[bytes, bytes]]) -> dict[str, float]:
    """Plain aiokafka: produce everything, then consume everything, on a fresh topic."""
    topic = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    await create_topic(settings, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all"
    )
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await producer.start()
    await consumer.start()
    started = time.perf_counter()
    for key, value in payloads:
        await producer.send(topic, key=key, value=value)
    await producer.flush()
    produced = time.perf_counter() - started
    seen = 0
    while seen < len(payloads):
        batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
        seen += sum(len(messages) for messages in batch.values())
    total = time.perf_counter() - started
    await producer.stop()
    await consumer.stop()
    await delete_topic(settings, topic)
    return {"produce_s": produced, "total_s": total, "per_s": len(payloads) / total}


async def read_topic(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every message of a topic, from the beginning to its current end (no group)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        while not consumer.assignment():  # every partition, once the topic's metadata is in
            await asyncio.sleep(0.05)
        partitions = list(consumer.assignment())
        end = await consumer.end_offsets(partitions)
        messages: list[tuple[bytes | None, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                messages += [(record.key, record.value) for record in records]
        return messages
    finally:
        await consumer.stop()


def read_standings_of(settings: Settings, election: str) -> dict[bytes, bytes]:
    """Every standing the night wrote to Redis (all levels), as stored."""
    client = redis.Redis.from_url(settings.redis_dsn())
    keys = list(client.scan_iter(match=results_pattern(election), count=10_000))
    standings: dict[bytes, bytes] = {}
    for start in range(0, len(keys), 10_000):
        chunk = keys[start : start + 10_000]
        standings.update(zip(chunk, client.mget(chunk)))
    return standings


async def floor(
    settings: Settings, events: list[tuple[bytes | None, bytes]], standings: dict[bytes, bytes], reports: int
) -> dict[str, float]:
    """The night's necessary I/O by plain clients, no computation (see the module's docstring).

    The reports are consumed from the run's results topic while, in as many steps as the worker
    has batches, the events go out as aiokafka record batches (Soirée's own way, the cheapest
    aiokafka has) to a topic of the run's (deleted with it) and the standings to scratch keys.
    """
    topic = f"{settings.app_id}-floor"
    await create_topic(settings, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_batch_size=512 * 1024
    )
    consumer = AIOKafkaConsumer(
        settings.results_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    client = aioredis.Redis.from_url(settings.redis_dsn())
    scratch = [(b"bench-floor:" + key, value) for key, value in standings.items()]
    steps = max(1, -(-reports // settings.batch_size))
    await producer.start()
    await consumer.start()
    await producer.client._wait_on_metadata(topic)
    partitions = len(producer.client.cluster.partitions_for_topic(topic))

    async def consume() -> None:
        seen = 0
        while seen < reports:
            seen += sum(
                len(records)
                for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values()
            )

    async def write() -> None:
        for step in range(steps):
            futures = []
            batches: dict[int, Any] = {}
            for key, value in events[step * len(events) // steps : (step + 1) * len(events) // steps]:
                partition = (
                    zlib.crc32(key or b"") % partitions
                )  # any spread will do; Kafka's murmur2 is pure Python
                batch = batches.get(partition) or batches.setdefault(partition, producer.create_batch())
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = batches[partition] = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            for partition, batch in batches.items():
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            await client.mset(
                dict(scratch[step * len(scratch) // steps : (step + 1) * len(scratch) // steps])
            )
            await asyncio.gather(*futures)

    started = time.perf_counter()
    await asyncio.gather(consume(), write())
    total = time.perf_counter() - started
    await producer.stop()
    await consumer.stop()
    for start in range(0, len(scratch), 10_000):
        await client.unlink(*[key for key, _ in scratch[start : start + 10_000]])
    await client.aclose()
    return {
        "total_s": total,
        "events": len(events),
        "event_bytes": sum(len(value) for _, value in events),
        "standings": len(standings),
    }


def make_source(directory: Path, election: str) -> tuple[Path, Ed25519PrivateKey]:
    """A sources file in ``directory`` with one source (``SOURCE``, scope ``nation:FR``, ``election``
    only) and its public key; returns the file and the source's private key."""
    private, public = write_key_pair(directory / SOURCE)
    sources = directory / "sources.toml"
    add_source(sources, SOURCE, "nation:FR", election=election, public_key=public)
    return sources, load_private_key(private)


def sign_all(results: list[dict[str, Any]], key: Ed25519PrivateKey) -> float:
    """Sign every report in place as ``SOURCE`` (``source`` then ``signature``); returns seconds."""
    started = time.perf_counter()
    for result in results:
        result["source"] = SOURCE
        result["signature"] = sign(result, key)
    return time.perf_counter() - started


def start_worker(
    settings: Settings, log: Path, *elections: str, sources: Path | None = None
) -> subprocess.Popen[bytes]:
    """A worker process of the run's settings (``sources``: its ``SOIREE_SOURCES_FILE``)."""
    env = dict(os.environ)
    env.update(
        SOIREE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        SOIREE_REDIS_URL=settings.redis_dsn(),
        SOIREE_STORE=settings.store,
        SOIREE_APP_ID=settings.app_id,
        SOIREE_RESULTS_TOPIC=settings.results_topic,
        SOIREE_REJECTED_TOPIC=settings.rejected_topic,
        SOIREE_UPDATES_TOPIC=settings.updates_topic,
        SOIREE_ELECTIONS_TOPIC=settings.elections_topic,
    )
    if sources is not None:
        env["SOIREE_SOURCES_FILE"] = str(sources)
    handle = log.open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "worker",
            "--loglevel",
            "info",
            *[f"--election={e}" for e in elections],
        ],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def wait_ready(log: Path, worker: subprocess.Popen[bytes], skip: int = 0, timeout: float = 300) -> float:
    """Seconds until the worker logs "Worker ready" (after table recovery) past byte ``skip`` of its log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if worker.poll() is not None:
            raise SystemExit(f"worker died; see {log}")
        if b"Worker ready" in log.read_bytes()[skip:]:
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit(f"worker not ready after {timeout} s; see {log}")


async def publish_and_wait(
    settings: Settings, election: str, results: list[dict[str, Any]]
) -> dict[str, float]:
    client = redis.Redis.from_url(settings.redis_dsn())
    started = time.perf_counter()
    async with Publisher(settings) as publisher:
        for result in results:
            await publisher.result(result)
    published = time.perf_counter() - started
    reported, progressed = -1, time.perf_counter()
    while True:
        nation = read_standings(client, election, "nation", "FR")
        if nation is not None and nation.bureaux_reported == len(results):
            break
        now = nation.bureaux_reported if nation is not None else 0
        if now != reported:
            reported, progressed = now, time.perf_counter()
        elif time.perf_counter() - progressed > STALL_S:
            raise SystemExit(
                f"the nation stayed at {reported:,} of {len(results):,} bureaux for {STALL_S} s: "
                "reports lost?"
            )
        await asyncio.sleep(0.02)
    total = time.perf_counter() - started
    return {"publish_s": published, "total_s": total, "per_s": len(results) / total}


def logged_seconds(log: Path, skip: int, start: str, end: str) -> float:
    """Seconds between the first log line containing ``start`` and the next containing ``end``."""
    from datetime import datetime

    began = None
    for line in log.read_bytes()[skip:].decode(errors="replace").splitlines():
        if not line.startswith("["):
            continue
        when = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
        if began is None and start in line:
            began = when
        elif began is not None and end in line:
            return (when - began).total_seconds()
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mb(pid: int, field: str = "VmHWM") -> float:
    """A memory figure of a process from /proc (VmHWM: peak RSS, VmRSS: RSS now), in MB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_settled(logs: list[Path], quiet: float = 3.0, timeout: float = 120) -> None:
    """Several workers: each one's joining moves partitions again; wait until no worker has
    logged "Worker ready" for ``quiet`` seconds."""
    started = time.monotonic()
    seen = [log.read_bytes().count(b"Worker ready") for log in logs]
    last_change = time.monotonic()
    while time.monotonic() - last_change < quiet:
        if time.monotonic() - started > timeout:
            raise SystemExit(f"workers still rebalancing after {timeout} s; see {logs}")
        time.sleep(0.2)
        now = [log.read_bytes().count(b"Worker ready") for log in logs]
        if now != seen:
            seen, last_change = now, time.monotonic()


def run_soiree(
    base: Settings,
    store: str,
    path: Path,
    workers: int = 1,
    with_floor: bool = False,
    signed: bool = False,
) -> dict[str, Any]:
    """``workers`` workers with ``store``: the night, then kill -9 and the time a new worker needs
    to be ready; and, ``with_floor``, the floor of the night's writes (``floor``); ``signed``, an
    election requiring signatures, every report signed beforehand (``sign_s``, not timed)."""
    if not signed:
        return _run_soiree(base, store, path, workers, with_floor, None)
    with tempfile.TemporaryDirectory(prefix="soiree-bench-") as scratch:  # the key pair, the sources
        return _run_soiree(base, store, path, workers, with_floor, Path(scratch))


def _run_soiree(
    base: Settings, store: str, path: Path, workers: int, with_floor: bool, scratch: Path | None
) -> dict[str, Any]:
    """``run_soiree``; signed when given a ``scratch`` directory for the key pair and sources file."""
    tag = uuid.uuid4().hex[:6]
    election = election_from_ministry(path, f"pres2017-t1-bench-{tag}")
    results = list(results_from_ministry(path, election.election))
    sources, sign_s = None, None
    if scratch is not None:
        election = election.model_copy(update={"require_signature": True})
        sources, key = make_source(scratch, election.election)
        sign_s = sign_all(results, key)
    settings = private_settings(base, f"bench-{tag}", store=store)
    register_election(settings, redis.Redis.from_url(base.redis_dsn()), election)
    asyncio.run(ensure_topics(settings))
    try:  # whatever happens, the run deletes its topics and keys (a broker keeping them slows down)
        logs = [ROOT / f".soiree/logs/bench-worker-{tag}-{n}.log" for n in range(workers)]
        logs[0].parent.mkdir(parents=True, exist_ok=True)
        running: list[subprocess.Popen[bytes]] = []
        try:
            for log in logs:
                running.append(start_worker(settings, log, election.election, sources=sources))
            ready = max(wait_ready(log, worker) for log, worker in zip(logs, running))
            if workers > 1:
                wait_settled(logs)
            cpu_before = [cpu_seconds(worker.pid) for worker in running]
            figures: dict[str, Any] = asyncio.run(publish_and_wait(settings, election.election, results))
            figures["workers"] = workers
            if sign_s is not None:
                figures["signed"], figures["sign_s"] = True, sign_s
            figures["worker_cpu_s"] = sum(
                cpu_seconds(worker.pid) - before for worker, before in zip(running, cpu_before)
            )
            figures["rss_mb"] = max(status_mb(worker.pid) for worker in running)  # peak RSS of the largest
            time.sleep(3)  # let the store flush and the offsets commit, as on a quiet moment of the night
        finally:
            for worker in running:
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=30)
        log = logs[0]
        skip = log.stat().st_size
        worker = start_worker(settings, log, election.election, sources=sources)
        try:
            figures["restart_ready_s"] = wait_ready(log, worker, skip)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        figures["recovery_s"] = logged_seconds(log, skip, "Setting newly assigned partitions", "Worker ready")
        figures["first_ready_s"] = ready
        figures["redis_used_mb"] = (
            redis.Redis.from_url(base.redis_dsn()).info("memory")["used_memory"] / 2**20
        )
        if with_floor:
            events = asyncio.run(read_topic(settings, settings.updates_topic))
            figures["floor"] = asyncio.run(
                floor(settings, events, read_standings_of(settings, election.election), len(results))
            )
        return figures
    finally:
        forget_run(settings, election.election)


def signature_cost(unsigned: dict[str, Any], signed: dict[str, Any], reports: int) -> dict[str, float]:
    """The signed night against the unsigned one of the same store and run."""
    extra_cpu = signed["worker_cpu_s"] - unsigned["worker_cpu_s"]
    return {
        "unsigned_s": unsigned["total_s"],
        "signed_s": signed["total_s"],
        "ratio": signed["total_s"] / unsigned["total_s"],
        "unsigned_cpu_s": unsigned["worker_cpu_s"],
        "signed_cpu_s": signed["worker_cpu_s"],
        "cpu_ratio": signed["worker_cpu_s"] / unsigned["worker_cpu_s"],
        "extra_cpu_us_per_report": extra_cpu * 1e6 / reports,
        "sign_s": signed["sign_s"],
    }


def signed_rows(store: str, cost: dict[str, float]) -> list[tuple[str, str, str]]:
    """The table's rows of one store's signed night (``signature_cost``)."""
    return [
        (
            f"{store} store, signed: first publish → nation complete",
            f"{cost['signed_s']:.2f} s",
            f"unsigned {cost['unsigned_s']:.2f} s; reports signed beforehand in {cost['sign_s']:.1f} s",
        ),
        (
            f"{store} store, signed: worker CPU time for the night",
            f"{cost['signed_cpu_s']:.2f} s",
            f"unsigned {cost['unsigned_cpu_s']:.2f} s ({cost['cpu_ratio']:.2f}×), "
            f"+{cost['extra_cpu_us_per_report']:.0f} µs per report",
        ),
        (
            f"{store} store: signed / unsigned night (time)",
            f"{cost['ratio']:.2f}×",
            "target: under 1.5×" + (" (reached)" if cost["ratio"] < 1.5 else " (not reached)"),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/pres2017")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/replay_2017.json")
    parser.add_argument(
        "--stores", default="redis,memory", help="comma-separated: redis (ours), memory (Faust's)"
    )
    parser.add_argument(
        "--workers",
        type=process_count,
        default=1,
        help="worker processes in the group, or auto: one per core (as `soiree worker --processes`)",
    )
    parser.add_argument(
        "--signed",
        action="store_true",
        help="each store's night again, every report signed and verified by the workers",
    )
    args = parser.parse_args()
    base = Settings()
    require(base, args.data)
    path = args.data / ROUND1
    results = list(results_from_ministry(path, "pres2017-t1"))
    payloads = [(r["bureau"].encode(), orjson.dumps(r)) for r in results]

    baseline_figures = asyncio.run(baseline(base, payloads))
    stores = {"redis": "", "memory": "memory://"}
    ours = {
        name: run_soiree(base, stores[name], path, args.workers, with_floor=name == "redis")
        for name in args.stores.split(",")
    }
    signed: dict[str, dict[str, Any]] = {}
    if args.signed:  # after the unsigned nights, on the same broker
        signed = {name: run_soiree(base, stores[name], path, args.workers, signed=True) for name in ours}

    rows = [
        ("bureaux", f"{len(results):,}", ""),
        (
            "baseline: plain aiokafka produce + consume",
            f"{baseline_figures['total_s']:.2f} s",
            f"{baseline_figures['per_s']:,.0f} msg/s",
        ),
    ]
    if "redis" in ours:
        low = ours["redis"]["floor"]
        rows.append(
            (
                "floor: the night's writes alone, plain clients",
                f"{low['total_s']:.2f} s",
                f"{low['total_s'] / baseline_figures['total_s']:.1f}× baseline: reports consumed, "
                f"{low['events']:,} events "
                f"({low['event_bytes'] / 1e6:.0f} MB) produced, {low['standings']:,} standings written",
            )
        )
    for name, figures in ours.items():
        label = f"{name} store" + (f", {args.workers} workers" if args.workers > 1 else "")
        rows += [
            (
                f"{label}: first publish → nation complete",
                f"{figures['total_s']:.2f} s",
                f"{figures['per_s']:,.0f} bureaux/s, "
                f"{figures['total_s'] / baseline_figures['total_s']:.1f}× baseline",
            ),
            (
                f"{label}: worker CPU time for the night",
                f"{figures['worker_cpu_s']:.2f} s",
                f"{figures['worker_cpu_s'] / figures['total_s']:.0%} of one core"
                + (", all workers" if args.workers > 1 else ""),
            ),
            (
                f"{label}: restart after kill -9 → ready",
                f"{figures['restart_ready_s']:.2f} s",
                "one new worker; includes the wait for the killed workers' sessions to expire",
            ),
            (
                f"{label}: of which partitions assigned → ready",
                f"{figures['recovery_s']:.2f} s",
                "table recovery",
            ),
            (
                f"{label}: worker peak RSS",
                f"{figures['rss_mb']:.0f} MB",
                "the largest worker" if args.workers > 1 else "",
            ),
            (
                f"{label}: Redis used memory after the night",
                f"{figures['redis_used_mb']:.0f} MB",
                "whole server; each run's data is deleted after it",
            ),
        ]
    if "redis" in ours and "memory" in ours:
        cost = ours["redis"]["total_s"] / ours["memory"]["total_s"] - 1
        rows.append(("redis store cost vs memory store (time)", f"{cost:+.0%}", "target: at most +20 %"))
        rows.append(
            (
                "table recovery: memory / redis",
                f"{ours['memory']['recovery_s'] / ours['redis']['recovery_s']:.1f}×",
                "",
            )
        )
    costs = {name: signature_cost(ours[name], figures, len(results)) for name, figures in signed.items()}
    for name, cost in costs.items():
        rows += signed_rows(name, cost)
    width = max(len(r[0]) for r in rows)
    print(
        f"Soirée replay benchmark, {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    for name, value, extra in rows:
        print(f"  {name:<{width}}  {value:>10}  {extra}")
    report: dict[str, Any] = {
        "bureaux": len(results),
        "workers": args.workers,
        "baseline": baseline_figures,
        "soiree": ours,
    }
    if signed:
        report["signed"] = {name: {**figures, "cost": costs[name]} for name, figures in signed.items()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  written to {args.json}")


if __name__ == "__main__":
    main()
