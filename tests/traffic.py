"""Shared generators and independent checks for the traffic tests (bad input, messy nights).

Nothing here uses ``stream``'s arithmetic: elections are generated with a seeded RNG, truths are
plain sums over the latest ``seq`` of each bureau, and figures (leader, tie, margin, turnout) are
recomputed from the contract's definitions. Only the message *shapes* come from ``stream.models``.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.domain.messages import Election

from .harness import Stack

NATION = "FR"


# -- elections ---------------------------------------------------------------------------------


def make_election(
    rng: random.Random,
    election_id: str,
    candidates: list[str],
    departments: list[tuple[str, str, int, tuple[int, int]]],
    registered: tuple[int, int] = (150, 1400),
) -> Election:
    """A generated roll: per department (code, name, communes, (min, max) bureaux per commune)."""
    bureaux: list[dict[str, Any]] = []
    for code, name, communes, (low, high) in departments:
        commune_codes = rng.sample(range(1, 999), communes)
        for number in sorted(commune_codes):
            commune = f"{code}{number:03d}"
            for k in range(1, rng.randint(low, high) + 1):
                bureaux.append(
                    dict(
                        bureau=f"{commune}-{k:04d}",
                        commune=commune,
                        commune_name=f"Commune {commune}",
                        department=code,
                        department_name=name,
                        registered=rng.randint(*registered),
                    )
                )
    return Election.model_validate(
        {
            "election": election_id,
            "name": f"Generated night {election_id}",
            "candidates": [{"id": c, "name": c.title()} for c in candidates],
            "bureaux": bureaux,
        }
    )


def areas_of(election: Election, bureau: str) -> list[tuple[str, str]]:
    entry = election.roll[bureau]
    return [
        ("bureau", bureau),
        ("commune", entry.commune),
        ("department", entry.department),
        ("nation", NATION),
    ]


def bureaux_total(election: Election) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for entry in election.bureaux:
        for area in areas_of(election, entry.bureau):
            totals[area] += 1
    return dict(totals)


def random_counts(
    rng: random.Random,
    registered: int,
    candidates: list[str],
    weights: list[float] | None = None,
    keep_zero: bool = False,
) -> dict[str, Any]:
    """voters/blank/invalid/votes of a plausible bureau (every rule holds)."""
    voters = rng.randint(registered // 3, registered)
    blank = rng.randint(0, voters // 30)
    invalid = rng.randint(0, voters // 50)
    expressed = voters - blank - invalid
    weights = weights or [rng.random() + 0.05 for _ in candidates]
    cuts = sorted(rng.choices(range(expressed + 1), k=len(candidates) - 1))
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, expressed])]
    # bias the random split towards the weights: sort the shares along the weights' order
    order = sorted(range(len(candidates)), key=lambda i: -weights[i] * rng.uniform(0.6, 1.4))
    ranked = sorted(shares, reverse=True)
    votes = {candidates[i]: ranked[rank] for rank, i in enumerate(order)}
    if not keep_zero:
        votes = {c: v for c, v in votes.items() if v or rng.random() < 0.5}  # a missing candidate has 0
    return {"voters": voters, "blank": blank, "invalid": invalid, "votes": votes}


def result(
    election: str, bureau: str, seq: int, counts: dict[str, Any], registered: int | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"election": election, "bureau": bureau, "seq": seq, **counts}
    if registered is not None:
        data["registered"] = registered
    return data


# -- truth ---------------------------------------------------------------------------------------


@dataclass
class Total:
    bureaux: int = 0
    registered: int = 0
    voters: int = 0
    blank: int = 0
    invalid: int = 0
    votes: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, registered: int, report: dict[str, Any]) -> None:
        self.bureaux += 1
        self.registered += registered
        self.voters += report["voters"]
        self.blank += report["blank"]
        self.invalid += report["invalid"]
        for candidate, count in report["votes"].items():
            self.votes[candidate] += count


class Figures(NamedTuple):
    """What an event says about an area, as the contract defines it."""

    leader: str | None
    tied: tuple[str, ...] | None
    margin: int
    turnout: float | None
    bureaux_reported: int


def figures(total: Total, candidates: list[str]) -> Figures:
    votes = {c: total.votes.get(c, 0) for c in candidates}
    top = max(votes.values(), default=0)
    leaders = sorted(c for c, v in votes.items() if v == top)
    if top == 0:
        leader, tied, margin = None, None, 0
    elif len(leaders) > 1:
        leader, tied, margin = None, tuple(leaders), 0
    else:
        runner_up = max((v for c, v in votes.items() if c != leaders[0]), default=0)
        leader, tied, margin = leaders[0], None, top - runner_up
    turnout = round(100.0 * total.voters / total.registered, 2) if total.registered else None
    return Figures(leader, tied, margin, turnout, total.bureaux)


def latest_versions(results: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The report that counts for each bureau: the highest seq (the first one on equal seq)."""
    latest: dict[str, dict[str, Any]] = {}
    for r in results:
        if r["bureau"] not in latest or r["seq"] > latest[r["bureau"]]["seq"]:
            latest[r["bureau"]] = r
    return latest


def truth(election: Election, results: Iterable[dict[str, Any]]) -> dict[tuple[str, str], Total]:
    """Per (level, area): plain sums of the latest version of every bureau that reported."""
    totals: dict[tuple[str, str], Total] = defaultdict(Total)
    for bureau, report in latest_versions(results).items():
        registered = election.roll[bureau].registered
        for area in areas_of(election, bureau):
            totals[area].add(registered, report)
    return dict(totals)


def mismatches(stack: Stack, election: Election, expected: dict[tuple[str, str], Total]) -> list[str]:
    """Every difference between Redis standings and the truth (empty when they agree to the vote)."""
    candidates = election.candidate_list
    sizes = bureaux_total(election)
    problems: list[str] = []
    for (level, area), total in expected.items():
        got = stack.standings(election.election, level, area)
        if got is None:
            problems.append(f"{level} {area}: no standings")
            continue
        want_votes = {c: total.votes.get(c, 0) for c in candidates}
        want = figures(total, candidates)
        pairs = {
            "registered": (got.registered, total.registered),
            "voters": (got.voters, total.voters),
            "blank": (got.blank, total.blank),
            "invalid": (got.invalid, total.invalid),
            "expressed": (got.expressed, sum(want_votes.values())),
            "votes": (got.votes, want_votes),
            "bureaux_reported": (got.bureaux_reported, total.bureaux),
            "bureaux_total": (got.bureaux_total, sizes[(level, area)]),
            "leader": (got.leader, want.leader),
            "tied": (tuple(sorted(got.tied)) if got.tied else None, want.tied),
            "margin": (got.margin, want.margin),
            "turnout": (got.turnout, want.turnout),
        }
        for name, (have, should) in pairs.items():
            if have != should:
                problems.append(f"{level} {area} {name}: got {have!r}, expected {should!r}")
    return problems


# -- reading topics ----------------------------------------------------------------------------


class Record(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def topic_size(stack: Stack, topic: str) -> int:
    """How many messages the topic holds (sum of its partitions' end offsets; never compacted here)."""

    async def run() -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                partitions = consumer.partitions_for_topic(topic) or set()
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            return sum(ends.values())
        finally:
            await consumer.stop()

    return asyncio.run(run())


def read_records(stack: Stack, topic: str, idle: float = 2.0) -> list[Record]:
    """Every message of ``topic`` so far with its partition and offset, in each partition's order."""

    async def run() -> list[Record]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        found: list[Record] = []
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=int(idle * 1000), max_records=5000)
                if not batch:
                    break
                for messages in batch.values():
                    found.extend(Record(m.partition, m.offset, m.key, m.value) for m in messages)
        finally:
            await consumer.stop()
        found.sort(key=lambda r: (r.partition, r.offset))
        return found

    return asyncio.run(run())
