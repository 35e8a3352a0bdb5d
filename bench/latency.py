"""Benchmark: latency from a bureau's report to the nation-level event that includes it.

Reports of the 2017 round 1 are published at a steady rate (default 200 per second, twenty times a
real night's average); a subscriber on ``election-updates`` notes when each nation event arrives.
Report i (in publishing order) counts as included by the first nation event whose
``bureaux_reported`` reaches i. With ``SOIREE_TURNOUT_STEP`` set tiny for the run, the nation
announces (almost) every change, so the events are dense enough to time every report.
Baseline, same run: plain aiokafka at the same rate, produce → consume of one topic.

    python bench/latency.py [--rate 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]

from replay_2017 import ROUND1, create_topic, delete_topic, require, start_worker, wait_ready

from stream.adapters.kafka.definitions import register_election
from stream.adapters.kafka.publisher import Publisher
from stream.adapters.kafka.topics import ensure_topics
from stream.settings import Settings
from stream.sources.ministry import election_from_ministry, results_from_ministry
from stream.testing import forget_run, private_settings


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "p50_ms": 1000 * pick(0.50),
        "p99_ms": 1000 * pick(0.99),
        "max_ms": 1000 * ordered[-1],
        "mean_ms": 1000 * statistics.fmean(ordered),
        "n": len(ordered),
    }


async def paced(rate: float, count: int) -> Any:
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i


async def baseline(settings: Settings, payloads: list[tuple[bytes, bytes]], rate: float) -> dict[str, float]:
    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    await create_topic(settings, topic)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, acks="all")
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await producer.start()
    await consumer.start()
    sent: dict[bytes, float] = {}
    latencies: list[float] = []

    async def consume() -> None:
        async for message in consumer:
            latencies.append(time.perf_counter() - sent[message.value])
            if len(latencies) == len(payloads):
                return

    task = asyncio.create_task(consume())
    async for i in paced(rate, len(payloads)):
        key, value = payloads[i]
        sent[value] = time.perf_counter()
        await producer.send(topic, key=key, value=value)
    await asyncio.wait_for(task, 60)
    await producer.stop()
    await consumer.stop()
    await delete_topic(settings, topic)
    return percentiles(latencies)


async def soiree(
    settings: Settings, election: str, results: list[dict[str, Any]], rate: float
) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        settings.updates_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        group_id=None,
    )
    await consumer.start()
    await consumer.seek_to_end()
    seen: list[tuple[float, int]] = []  # (arrival, bureaux_reported) of nation events

    async def consume() -> None:
        async for message in consumer:
            event = orjson.loads(message.value)
            if event["election"] == election and event["level"] == "nation":
                seen.append((time.perf_counter(), event["bureaux_reported"]))
                if event["bureaux_reported"] >= len(results):
                    return

    task = asyncio.create_task(consume())
    published: list[float] = []
    async with Publisher(settings) as publisher:
        async for i in paced(rate, len(results)):
            published.append(time.perf_counter())
            await publisher.result(results[i])
    await asyncio.wait_for(task, 120)
    await consumer.stop()
    latencies = []
    j = 0
    for i, at in enumerate(published, start=1):
        while seen[j][1] < i:
            j += 1
        latencies.append(seen[j][0] - at)
    figures = percentiles(latencies)
    if os.environ.get("BENCH_SERIES"):
        Path(os.environ["BENCH_SERIES"]).write_text(
            json.dumps(
                [[round(at - published[0], 3), round(lat * 1000, 1)] for at, lat in zip(published, latencies)]
            )
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/pres2017")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/latency.json")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    settings = private_settings(Settings(), f"lat-{tag}", turnout_step=0.000001)
    require(settings, args.data)
    path = args.data / ROUND1
    election = election_from_ministry(path, f"pres2017-t1-lat-{tag}")
    count = int(args.rate * args.seconds)
    results = list(results_from_ministry(path, election.election))[:count]
    register_election(settings, redis.Redis.from_url(settings.redis_dsn()), election)
    asyncio.run(ensure_topics(settings))

    base = asyncio.run(
        baseline(settings, [(r["bureau"].encode(), orjson.dumps(r)) for r in results], args.rate)
    )
    log = ROOT / f".soiree/logs/bench-latency-{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    os.environ["SOIREE_TURNOUT_STEP"] = str(settings.turnout_step)
    worker = start_worker(settings, log, election.election)
    try:
        wait_ready(log, worker)
        time.sleep(1)
        ours = asyncio.run(soiree(settings, election.election, results, args.rate))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        forget_run(settings, election.election)
    print(f"Latency at {args.rate:g} reports/s, {count:,} reports (2017 round 1), one worker, Redis store")
    print(f"  {'':44}{'p50':>10}{'p99':>10}{'max':>10}")
    print(
        f"  {'baseline: aiokafka produce → consume':44}"
        f"{base['p50_ms']:>8.1f}ms{base['p99_ms']:>8.1f}ms{base['max_ms']:>8.1f}ms"
    )
    print(
        f"  {'soirée: publish → nation event including it':44}"
        f"{ours['p50_ms']:>8.1f}ms{ours['p99_ms']:>8.1f}ms{ours['max_ms']:>8.1f}ms"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"rate": args.rate, "reports": count, "baseline": base, "soiree": ours}, indent=2) + "\n"
    )
    print(f"  written to {args.json}")


if __name__ == "__main__":
    main()
