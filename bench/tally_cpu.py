"""Benchmark: the CPU our own code spends on the 2017 night, without Kafka or Redis.

The worker is CPU-bound and most of its CPU is ``stream.pipeline`` (docs/performance.md), so
this drives the very same ``Pipeline`` methods the agents call (routing, tally, nation) with
stand-ins for the producer, the table and Redis, on the 69,242 reports in file order and in
chunks of the worker's batch size. It prints CPU seconds per hop next to a baseline measured in
the same run (decoding and encoding every report once with orjson, the least a hop must do,
measured batch by batch just before each batch, as this VM's speed drifts within a run), and checks
the nation's total against an independent sum of the input. ``--profile`` adds a cProfile of
the whole run (top functions by own time). Usage::

    python bench/tally_cpu.py [--data ../shared/data/pres2017] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]

from stream.domain.aggregation import AreaState, area_key
from stream.domain.messages import NATION
from stream.domain.roll import ElectionIndex
from stream.runtime.app import GC_THRESHOLDS
from stream.runtime.pipeline import Pipeline
from stream.settings import Settings
from stream.sources.ministry import election_from_ministry, results_from_ministry
from stream.testing import FakeEvent, FakeProducer, as_events, offline_pipeline

ROUND1 = "2017-presidentielle-1_par_bureau_large.csv.gz"


async def night(
    settings: Settings, election: ElectionIndex, payloads: list[tuple[bytes, bytes]]
) -> tuple[Pipeline, FakeProducer, dict[str, float]]:
    """Routing, tally and nation over the night, batch by batch as the agents would; CPU per hop."""
    producer = FakeProducer(decoded={"contributions", "nation"})  # events are only counted
    pipeline = offline_pipeline(settings, election, producer)
    batch = settings.batch_size
    cpu = {"route": 0.0, "tally": 0.0, "nation": 0.0, "baseline": 0.0}
    offsets: dict[str, dict[int, int]] = {"c": {}, "n": {}}
    for start in range(0, len(payloads), batch):
        records = [
            FakeEvent("bureau-results", 0, start + n, key, value).message
            for n, (key, value) in enumerate(payloads[start : start + batch])
        ]
        began = time.process_time()  # the baseline, batch by batch: this VM's speed drifts within a run
        for record in records:
            orjson.dumps(orjson.loads(record.value))
        cpu["baseline"] += time.process_time() - began
        began = time.process_time()
        await pipeline.on_results(records)
        cpu["route"] += time.process_time() - began
        contributions = as_events(producer.take(pipeline.contributions), pipeline.contributions, offsets["c"])
        began = time.process_time()
        await pipeline.on_contributions(contributions)
        cpu["tally"] += time.process_time() - began
        nation = as_events(producer.take(pipeline.nation), pipeline.nation, offsets["n"])
        began = time.process_time()
        await pipeline.on_contributions(nation)
        cpu["nation"] += time.process_time() - began
    return pipeline, producer, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/pres2017")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one more run and print the top functions"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/tally_cpu.json")
    args = parser.parse_args()
    path = args.data / ROUND1
    if not path.is_file():
        sys.exit(f"{ROUND1} is not in {args.data}: pass --data DIR (the folder of shared/data/pres2017)")
    settings = Settings()
    definition = election_from_ministry(path, "pres2017-t1")
    election = ElectionIndex.from_json(definition.model_dump_json().encode())
    results = list(results_from_ministry(path, election.election))
    payloads = [(r["bureau"].encode(), orjson.dumps(r)) for r in results]
    expected = {"voters": sum(r["voters"] for r in results), "bureaux": len(results)}
    gc.freeze()  # as the worker does once the roll is loaded (elections.ElectionCache)
    gc.set_threshold(*GC_THRESHOLDS)  # as ``soiree worker`` does

    runs = []
    for _ in range(args.repeat):
        pipeline, producer, cpu = asyncio.run(night(settings, election, payloads))
        nation = AreaState.from_json(
            orjson.loads(pipeline.areas.data[area_key(election.election, "nation", NATION).encode()])
        )
        if (nation.total.voters, nation.total.bureaux) != (expected["voters"], expected["bureaux"]):
            sys.exit(
                f"nation total wrong: {nation.total.voters} voters of {nation.total.bureaux} bureaux, "
                f"expected {expected}"
            )
        events = producer.counts.get(settings.updates_topic, 0)
        baseline = cpu.pop("baseline")
        total = sum(cpu.values())
        runs.append(
            {**cpu, "total": total, "baseline": baseline, "ratio": total / baseline, "events": events}
        )
        print(
            f"route {cpu['route']:.2f} s · tally {cpu['tally']:.2f} s · nation {cpu['nation']:.2f} s · "
            f"total {total:.2f} s CPU = {total / baseline:.1f}× decoding and encoding every report "
            f"({baseline:.3f} s) · {events:,} events · nation exact"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": runs}, indent=2))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(night(settings, election, payloads))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
