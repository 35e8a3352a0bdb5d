"""Benchmark: issue 5's four targets in one command, one table, one verdict each.

Runs ``bench/replay_2017.py`` (Redis store, one worker), ``bench/latency.py`` and
``bench/growth.py`` one after the other against the running Kafka and Redis (each script
prints its own table as it goes and deletes its run's data), then reads the JSON each wrote and
prints every target with what was measured, the baseline of the same run and the verdict.
Writes ``bench/results/targets.json``. About 8 minutes with the 1M-bureau night (``--sizes``
to leave it out). Usage (Kafka and Redis running, e.g. ``soiree up``)::

    python bench/targets.py [--data ../shared/data/pres2017] [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from replay_2017 import require

from stream.settings import Settings

RESULTS = ROOT / "bench/results"
#: The targets, as issue 5 states them.
NIGHT_SECONDS, NIGHT_RATIO, P99_MS, WORKER_RSS_MB = 10.0, 3.0, 200.0, 400.0
#: Growth counts as linear when the time per bureau at the largest size is at most this many
#: times the time per bureau at the size before it.
LINEAR_SLACK = 1.5


def run(script: str, *args: str) -> dict[str, Any]:
    """Run one benchmark script (its output goes to the console); the JSON it wrote."""
    out = RESULTS / f"targets-{Path(script).stem}.json"
    print(f"\n$ python {script} {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, str(ROOT / script), *args, "--json", str(out)], cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{script} failed (exit {done.returncode}); see its output above")
    return json.loads(out.read_text())


def verdict(ok: bool) -> str:
    return "reached" if ok else "NOT reached"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/pres2017")
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="generated nights for the growth target"
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "targets.json")
    args = parser.parse_args()
    require(Settings(), args.data)
    RESULTS.mkdir(parents=True, exist_ok=True)

    replay = run("bench/replay_2017.py", "--stores", "redis", "--data", str(args.data))
    latency = run("bench/latency.py", "--data", str(args.data))
    growth = run("bench/growth.py", "--sizes", args.sizes)

    night, base = replay["soiree"]["redis"], replay["baseline"]["total_s"]
    ratio = night["total_s"] / base
    sizes = sorted(growth, key=int)
    per_bureau = {size: growth[size]["total_s"] / int(size) for size in sizes}
    slowdown = per_bureau[sizes[-1]] / per_bureau[sizes[-2]] if len(sizes) > 1 else float("nan")
    rows = [
        (
            "1. 2017 night, first publish → nation complete, one worker",
            f"{night['total_s']:.1f} s = {ratio:.1f}× baseline",
            f"{base:.2f} s (floor, the night's writes alone: {night['floor']['total_s']:.2f} s)",
            f"≤ {NIGHT_SECONDS:.0f} s and ≤ {NIGHT_RATIO:.0f}×",
            verdict(night["total_s"] <= NIGHT_SECONDS and ratio <= NIGHT_RATIO),
        ),
        (
            "2. latency, report → nation event, at 200 reports/s",
            f"p50 {latency['soiree']['p50_ms']:.0f} ms, p99 {latency['soiree']['p99_ms']:.0f} ms",
            f"p50 {latency['baseline']['p50_ms']:.0f} ms, p99 {latency['baseline']['p99_ms']:.0f} ms",
            f"p99 < {P99_MS:.0f} ms",
            verdict(latency["soiree"]["p99_ms"] < P99_MS),
        ),
        (
            "3. footprint of the 2017 night",
            f"worker peak RSS {night['rss_mb']:.0f} MB; Redis {night['redis_used_mb']:.0f} MB",
            "",
            f"worker < {WORKER_RSS_MB:.0f} MB",
            verdict(night["rss_mb"] < WORKER_RSS_MB),
        ),
        (
            "4. growth, generated nights",
            "; ".join(
                f"{int(s):,}: {growth[s]['total_s']:.1f} s, {growth[s]['rss_mb']:.0f} MB"
                + ("" if growth[s]["exact"] == 1.0 else " NOT EXACT")
                for s in sizes
            ),
            "; ".join(f"{int(s):,}: {growth[s]['baseline_s']:.1f} s" for s in sizes),
            f"exact; time per bureau at most ×{LINEAR_SLACK} from one size to the next",
            verdict(all(growth[s]["exact"] == 1.0 for s in sizes) and slowdown <= LINEAR_SLACK)
            + f" (×{slowdown:.2f} per bureau)",
        ),
    ]
    print("\nIssue 5 targets (baselines measured in the same runs)")
    for name, measured, baseline, target, outcome in rows:
        print(
            f"  {name}\n      measured {measured}\n      baseline {baseline or '-'}\n"
            f"      target   {target}: {outcome}"
        )
    args.json.write_text(
        json.dumps(
            {
                "targets": [
                    dict(zip(("target", "measured", "baseline", "wanted", "verdict"), row)) for row in rows
                ],
                "replay_2017": replay,
                "latency": latency,
                "growth": growth,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"  written to {args.json}")


if __name__ == "__main__":
    main()
