"""Benchmark: how time and memory grow with the size of the night (10k, 100k, 1M bureaux).

Each size is a generated election (100 departments, 2 bureaux per commune, 6 candidates, seeded)
replayed through one worker with the Redis store, reports interleaved across the country as on a
real night; the nation's final totals are checked against independent sums of what was
published. Baseline, per size and in the same run: plain aiokafka producing and consuming the
same messages. Prints time, bureaux/s, worker CPU time, worker RSS when ready and at its peak,
the Redis memory the night added, and the growth factor from one size to the next.

    python bench/growth.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]

import orjson
from replay_2017 import (
    baseline,
    cpu_seconds,
    publish_and_wait,
    require,
    start_worker,
    status_mb,
    wait_ready,
)

from stream.adapters.kafka.definitions import register_election
from stream.adapters.kafka.topics import ensure_topics
from stream.adapters.redis.keys import results_key
from stream.domain.messages import NATION, Election
from stream.settings import Settings
from stream.testing import forget_run, private_settings

CANDIDATES = ["A", "B", "C", "D", "E", "F"]


def generated_night(size: int, seed: int = 1) -> tuple[Election, list[dict[str, Any]]]:
    rng = random.Random(seed)
    election_id = f"growth-{size}-{uuid.uuid4().hex[:6]}"
    bureaux, results = [], []
    for i in range(size):
        department = f"{i % 100:02d}"
        commune = f"{department}{i // 200:05d}"  # within a department, i // 100 counts its bureaux
        bureau = f"{commune}-{(i // 100) % 2:04d}"
        registered = rng.randint(300, 1500)
        bureaux.append(
            {"bureau": bureau, "commune": commune, "department": department, "registered": registered}
        )
        voters = rng.randint(0, registered)
        blank = rng.randint(0, voters // 20)
        invalid = rng.randint(0, (voters - blank) // 20)
        left = voters - blank - invalid
        votes = {}
        for candidate in CANDIDATES[:-1]:
            votes[candidate] = rng.randint(0, left)
            left -= votes[candidate]
        votes[CANDIDATES[-1]] = left
        results.append(
            {
                "election": election_id,
                "bureau": bureau,
                "seq": 1,
                "voters": voters,
                "blank": blank,
                "invalid": invalid,
                "votes": votes,
            }
        )
    election = Election.model_validate(
        {
            "election": election_id,
            "name": f"Generated night of {size:,} bureaux",
            "candidates": [{"id": c, "name": c} for c in CANDIDATES],
            "bureaux": bureaux,
        }
    )
    return election, results


def run(size: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    settings = private_settings(Settings(), f"growth-{tag}")
    election, results = generated_night(size)
    client = redis.Redis.from_url(settings.redis_dsn())
    register_election(settings, client, election)
    asyncio.run(ensure_topics(settings))
    redis_before = client.info("memory")["used_memory"]
    log = ROOT / f".soiree/logs/bench-growth-{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    payloads = [(r["bureau"].encode(), orjson.dumps(r)) for r in results]
    base = asyncio.run(baseline(settings, payloads))
    del payloads
    worker = start_worker(settings, log, election.election)
    try:
        wait_ready(log, worker, timeout=900)
        ready_rss = status_mb(worker.pid, "VmRSS")
        cpu_before = cpu_seconds(worker.pid)
        figures = asyncio.run(publish_and_wait(settings, election.election, results))
        figures["worker_cpu_s"] = cpu_seconds(worker.pid) - cpu_before
        figures["rss_mb"] = status_mb(worker.pid)  # peak RSS
        figures["ready_rss_mb"] = ready_rss
        figures["baseline_s"] = base["total_s"]
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    nation = json.loads(client.get(results_key(election.election, "nation", NATION)))
    expected = {c: sum(r["votes"][c] for r in results) for c in CANDIDATES}
    assert nation["votes"] == expected and nation["voters"] == sum(r["voters"] for r in results), (
        "totals differ"
    )
    figures["exact"] = 1.0
    figures["redis_added_mb"] = (client.info("memory")["used_memory"] - redis_before) / 2**20
    forget_run(settings, election.election)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/growth.json")
    args = parser.parse_args()
    require(Settings())
    report: dict[int, dict[str, float]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        started = time.perf_counter()
        report[size] = run(size)
        f = report[size]
        print(
            f"  {size:>9,} bureaux: {f['total_s']:8.1f} s (baseline {f['baseline_s']:.1f} s, "
            f"{f['total_s'] / f['baseline_s']:.0f}×)  {f['per_s']:8,.0f} bureaux/s  "
            f"worker CPU {f['worker_cpu_s']:.0f} s  "
            f"RSS ready {f['ready_rss_mb']:.0f} MB, peak {f['rss_mb']:.0f} MB  "
            f"Redis +{f['redis_added_mb']:.0f} MB  "
            f"exact totals  (whole step {time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    sizes = sorted(report)
    for small, big in zip(sizes, sizes[1:]):
        factor = big / small
        print(
            f"  ×{factor:g} bureaux: time ×{report[big]['total_s'] / report[small]['total_s']:.1f}, "
            f"baseline ×{report[big]['baseline_s'] / report[small]['baseline_s']:.1f}, "
            f"worker CPU ×{report[big]['worker_cpu_s'] / report[small]['worker_cpu_s']:.1f}, "
            f"peak RSS ×{report[big]['rss_mb'] / report[small]['rss_mb']:.1f}, "
            f"Redis ×{report[big]['redis_added_mb'] / max(report[small]['redis_added_mb'], 0.1):.1f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  written to {args.json}")


if __name__ == "__main__":
    main()
