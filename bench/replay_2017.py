"""Benchmark: the 2017 presidential round 1 (69,242 bureaux) end to end, next to a baseline.

Baseline (same run, same broker): plain aiokafka produces the same 69,242 messages to a fresh
topic and a plain consumer reads them all back. Soirée: one worker (already started and
ready), the same messages published to ``bureau-results``; the clock stops when the nation's
standings in Redis include every bureau. Usage (Kafka and Redis as configured, e.g. `soiree up`)::

    python bench/replay_2017.py [--data ../shared/data/pres2017] [--json bench/results/replay_2017.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.elections import save_election  # noqa: E402
from stream.ministry import election_from_ministry, results_from_ministry  # noqa: E402
from stream.publish import Publisher  # noqa: E402
from stream.results import read_standings  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.topics import ensure_topics  # noqa: E402

ROUND1 = "2017-presidentielle-1_par_bureau_large.csv.gz"


async def baseline(settings: Settings, payloads: list[tuple[bytes, bytes]]) -> dict[str, float]:
    """Plain aiokafka: produce everything, then consume everything, on a fresh topic."""
    topic = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, settings.partitions, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", group_id=None)
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
    return {"produce_s": produced, "total_s": total, "per_s": len(payloads) / total}


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        SOIREE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        SOIREE_REDIS_URL=settings.redis_dsn(),
        SOIREE_APP_ID=settings.app_id,
        SOIREE_RESULTS_TOPIC=settings.results_topic,
        SOIREE_REJECTED_TOPIC=settings.rejected_topic,
        SOIREE_UPDATES_TOPIC=settings.updates_topic,
    )
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info"], env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_ready(log: Path, worker: subprocess.Popen[bytes], timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if worker.poll() is not None:
            raise SystemExit(f"worker died; see {log}")
        if b"Ready" in log.read_bytes() or b"ready" in log.read_bytes():
            return time.monotonic() - started
        time.sleep(0.1)
    raise SystemExit(f"worker not ready after {timeout} s; see {log}")


async def soiree(settings: Settings, election: str, results: list[dict[str, Any]], rss: dict[str, int]) -> dict[str, float]:
    client = redis.Redis.from_url(settings.redis_dsn())
    started = time.perf_counter()
    async with Publisher(settings) as publisher:
        for result in results:
            await publisher.result(result)
    published = time.perf_counter() - started
    while True:
        nation = read_standings(client, election, "nation", "FR")
        if nation is not None and nation.bureaux_reported == len(results):
            break
        await asyncio.sleep(0.02)
    total = time.perf_counter() - started
    return {"publish_s": published, "total_s": total, "per_s": len(results) / total}


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/pres2017")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/replay_2017.json")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    settings = Settings().model_copy(
        update=dict(
            app_id=f"bench-{tag}",
            results_topic=f"bench-{tag}-results",
            rejected_topic=f"bench-{tag}-rejected",
            updates_topic=f"bench-{tag}-updates",
        )
    )
    path = args.data / ROUND1
    election = election_from_ministry(path, f"pres2017-t1-bench-{tag}")
    results = list(results_from_ministry(path, election.election))
    payloads = [(r["bureau"].encode(), orjson.dumps(r)) for r in results]
    save_election(redis.Redis.from_url(settings.redis_dsn()), election)
    asyncio.run(ensure_topics(settings))

    base = asyncio.run(baseline(settings, payloads))
    log = ROOT / f".soiree/logs/bench-worker-{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    worker = start_worker(settings, log)
    try:
        ready = wait_ready(log, worker)
        ours = asyncio.run(soiree(settings, election.election, results, {}))
        rss = peak_rss_mb(worker.pid)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    redis_mb = redis.Redis.from_url(settings.redis_dsn()).info("memory")["used_memory"] / 2**20

    rows = [
        ("bureaux", f"{len(results):,}", ""),
        ("baseline: aiokafka produce + consume", f"{base['total_s']:.2f} s", f"{base['per_s']:,.0f} msg/s"),
        ("soirée: first publish → nation complete", f"{ours['total_s']:.2f} s", f"{ours['per_s']:,.0f} bureaux/s"),
        ("ratio soirée / baseline (time)", f"{ours['total_s'] / base['total_s']:.1f}×", ""),
        ("worker start → ready", f"{ready:.1f} s", ""),
        ("worker peak RSS", f"{rss:.0f} MB", ""),
        ("Redis used memory (whole server)", f"{redis_mb:.0f} MB", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"Soirée replay benchmark, {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for name, value, extra in rows:
        print(f"  {name:<{width}}  {value:>10}  {extra}")
    report = {"bureaux": len(results), "baseline": base, "soiree": ours, "ratio": ours["total_s"] / base["total_s"],
              "worker_ready_s": ready, "worker_peak_rss_mb": rss, "redis_used_mb": redis_mb}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  written to {args.json}")


if __name__ == "__main__":
    main()
