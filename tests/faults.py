"""Helpers of the fault-injection tests (``tests/test_faults.py``): a big messy night with invalid
messages mixed in, a paced feeder that survives a broker restart, the faults themselves, and the
checks (truth, dead letters, events) adapted to at-least-once delivery across crashes.

Nothing here uses ``stream``'s arithmetic: the truth and the reachable figures are recomputed from
what ``bureau-results`` actually holds (per partition, in order), with ``tests/traffic.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from random import Random
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from stream.devstack import services as infra
from stream.domain.messages import Election
from stream.settings import Settings

from .harness import Stack
from .test_messy_nights import event_shape_problems, interleave
from .traffic import (
    AREA_KINDS,
    Record,
    Total,
    as_of_problems,
    bureau_story_problems,
    bureaux_total,
    decision_problems,
    enumerable_areas,
    event_figure_problems,
    event_raw,
    fresh_versions,
    make_election,
    members_of,
    mismatches,
    per_area,
    random_counts,
    reachable,
    read_records,
    registered_total,
    result,
    truth,
    version_problems,
)

CANDIDATES = ["MACRON", "LE PEN", "FILLON", "MELENCHON", "HAMON"]
STEP = 0.1  # SOIREE_TURNOUT_STEP, default
DUPLICATES, OUT_OF_ORDER, CORRECTIONS = 0.10, 0.10, 0.05


# -- the night ---------------------------------------------------------------------------------


@dataclass
class Message:
    key: bytes | None
    value: bytes
    valid: bool


@dataclass
class BigNight:
    election: Election
    messages: list[Message]  # in publishing order
    silent: list[str]
    invalid_payloads: set[bytes] = field(default_factory=set)

    @property
    def e(self) -> str:
        return self.election.election


def departments(rng: Random, count: int) -> list[tuple[str, str, int, tuple[int, int]]]:
    """Many small departments (about 30 bureaux each): the check that every department event was
    true enumerates all combinations of per-partition prefixes, which grows fast with the size."""
    codes = [f"{n:02d}" for n in rng.sample(range(1, 96), count - 2)] + ["2A", "971"]
    return [(code, f"Département {code}", rng.randint(4, 7), (1, 10)) for code in sorted(codes)]


def generate_big_night(seed: int, n_departments: int = 80, silent: int = 5, invalid: int = 120) -> BigNight:
    """A generated night of a few thousand bureaux: 10 % duplicates, 10 % out-of-order versions,
    5 % corrections (the recipe of ``test_messy_nights.generate_night``), a few silent bureaux,
    and ``invalid`` invalid messages of a dozen kinds spread through it. One department in four
    has two circonscriptions (one of its communes split between them), the others none."""
    rng = Random(seed)
    chosen = departments(rng, n_departments)
    election = make_election(
        rng,
        f"faults-{seed}-{uuid.uuid4().hex[:6]}",
        CANDIDATES,
        chosen,
        circonscriptions={code: 2 for i, (code, *_) in enumerate(chosen) if i % 4 == 1},
    )
    e = election.election
    leaning = {entry.department: [rng.random() + 0.05 for _ in CANDIDATES] for entry in election.bureaux}

    def version(bureau: str, seq: int) -> dict[str, Any]:
        entry = election.roll[bureau]
        return result(
            e, bureau, seq, random_counts(rng, entry.registered, CANDIDATES, leaning[entry.department])
        )

    bureaux = [entry.bureau for entry in election.bureaux]
    silent_ones = sorted(rng.sample(bureaux, silent))
    reporting = [b for b in bureaux if b not in silent_ones]
    total = round(len(reporting) / (1 - DUPLICATES - OUT_OF_ORDER - CORRECTIONS))
    corrected = set(rng.sample(reporting, round(CORRECTIONS * total)))
    stale = set(rng.sample(reporting, round(OUT_OF_ORDER * total)))
    plans: dict[str, list[dict[str, Any]]] = {}
    for bureau in reporting:
        if bureau in corrected and bureau in stale:
            plans[bureau] = [version(bureau, 1), version(bureau, 4), version(bureau, 2)]
        elif bureau in corrected:
            plans[bureau] = [version(bureau, 1), version(bureau, rng.randint(2, 4))]
        elif bureau in stale:
            high = rng.randint(2, 5)
            plans[bureau] = [version(bureau, high), version(bureau, rng.randint(1, high - 1))]
        else:
            plans[bureau] = [version(bureau, rng.randint(1, 3))]
    for _ in range(round(DUPLICATES * total)):
        plan = plans[rng.choice(reporting)]
        original = rng.randrange(len(plan))
        plan.insert(rng.randint(original + 1, len(plan)), dict(plan[original]))
    valid = [
        Message(m["bureau"].encode(), orjson.dumps(m), True)
        for m in interleave(rng, [plans[b] for b in reporting])
    ]
    bad = [invalid_message(rng, election, k) for k in range(invalid)]
    night = BigNight(election, [], silent_ones, {m.value for m in bad})
    assert len(night.invalid_payloads) == len(bad), "invalid payloads must be unique to be told apart"
    night.messages = interleave(rng, [valid, *([m] for m in bad)])
    return night


def invalid_message(rng: Random, election: Election, k: int) -> Message:
    """One invalid report (kind ``k`` mod 12), unique thanks to a nonce, keyed like a careless bureau."""
    e = election.election
    entry = rng.choice(election.bureaux)
    b = entry.bureau
    good = result(e, b, rng.randint(1, 9), random_counts(rng, entry.registered, CANDIDATES, keep_zero=True))
    nonce = f"n{k}-{uuid.uuid4().hex[:8]}"
    kind = k % 12
    key: bytes | None = b.encode()
    if kind == 0:
        value = (
            b'{"election": "'
            + e.encode()
            + b'", "bureau": "'
            + b.encode()
            + b'", "seq": 1, '
            + nonce.encode()
        )
    elif kind == 1:
        value = orjson.dumps(good | {"voters": good["voters"] + 1, "nonce": nonce})
    elif kind == 2:
        value = orjson.dumps(good | {"seq": 0, "nonce": nonce})
    elif kind == 3:
        value = orjson.dumps(good | {"voters": str(good["voters"]), "nonce": nonce})
    elif kind == 4:
        value = orjson.dumps(good | {"bureau": f"99999-{k:04d}", "nonce": nonce})
        key = f"99999-{k:04d}".encode()
    elif kind == 5:
        value = orjson.dumps(good | {"election": f"nope-{nonce}"})
    elif kind == 6:
        value = orjson.dumps(good | {"votes": {**good["votes"], "NOBODY": 0}, "nonce": nonce})
    elif kind == 7:
        value = orjson.dumps(good | {"registered": entry.registered + 1, "nonce": nonce})
    elif kind == 8:
        over = entry.registered + 1
        value = orjson.dumps(
            good
            | {"voters": over, "blank": over - sum(good["votes"].values()) - good["invalid"], "nonce": nonce}
        )
    elif kind == 9:
        value = orjson.dumps(good | {"nonce": nonce})
        key = b"not-" + b.encode()  # wrong key: the report would lose its order
    elif kind == 10:
        value = b"\xff\xfe" + nonce.encode() + b"\x80 not utf-8"
    else:
        value = orjson.dumps({k2: v for k2, v in good.items() if k2 != "voters"} | {"nonce": nonce})
    return Message(key, value, False)


# -- feeding, paced, in segments -------------------------------------------------------------------


class Feeder:
    """Publishes segments of messages in a thread of its own, paced; survives a broker restart
    (a send that fails is sent again, which may duplicate it: the truth is read back from the topic)."""

    def __init__(self, settings: Settings, rate: float) -> None:
        self.settings = settings
        self.rate = rate
        self.sent = 0
        self.retries = 0
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._producer: AIOKafkaProducer | None = None
        self._current: Any = None
        self._call(self._start())

    def _call(self, coroutine: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            linger_ms=5,
            request_timeout_ms=15000,
            retry_backoff_ms=500,
        )
        await self._producer.start()

    async def _send_all(self, messages: list[Message]) -> None:
        assert self._producer is not None
        started = time.monotonic()
        for i, m in enumerate(messages):
            delay = started + i / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            while True:
                try:
                    await self._producer.send_and_wait(self.settings.results_topic, key=m.key, value=m.value)
                    break
                except KafkaError:
                    self.retries += 1
                    await asyncio.sleep(1)
            self.sent += 1

    def feed(self, messages: list[Message]) -> None:
        """Start publishing ``messages`` in the background (the previous segment must be done)."""
        self.wait()
        self._current = asyncio.run_coroutine_threadsafe(self._send_all(messages), self._loop)

    def wait(self, timeout: float = 300) -> None:
        if self._current is not None:
            self._current.result(timeout)
            self._current = None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._producer is not None:
                self._call(self._producer.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


# -- the faults --------------------------------------------------------------------------------


def require_managed(settings: Settings) -> None:
    """Kafka and Redis must be soiree's own (we restart them): fail, never skip, otherwise."""
    for status in infra.up(settings):
        if "started by soiree" not in status.detail and status.state != "started":
            pytest.fail(
                f"{status.name} at {status.address} is {status.state}, {status.detail}: "
                f"the fault-injection test restarts it and only does so to a {status.name} "
                "that soiree started (`soiree up`, or let the test "
                "session start it: stop the foreign one or point SOIREE_* at free ports)",
                pytrace=False,
            )


def restart_kafka(settings: Settings, down_for: float) -> float:
    """Stop the broker soiree started, wait, start it again (same data dir). Returns seconds down."""
    started = time.monotonic()
    statuses = infra.down(settings, only=["kafka"])
    kafka = [s for s in statuses if s.name == "kafka"]
    if not kafka or kafka[0].state != "stopped":
        got = f"{kafka[0].state} ({kafka[0].detail})" if kafka else "no status"
        pytest.fail(
            f"could not restart Kafka at {settings.kafka_bootstrap}: down() says {got}; the test needs a "
            f"broker started by soiree",
            pytrace=False,
        )
    time.sleep(down_for)
    infra.up(settings)
    return time.monotonic() - started


def restart_redis(settings: Settings, down_for: float) -> float:
    """SHUTDOWN NOSAVE, ``down_for`` seconds without Redis, then a new, empty one."""
    started = time.monotonic()
    url = settings.redis_dsn()
    subprocess.run(["redis-cli", "-u", url, "SHUTDOWN", "NOSAVE"], capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while infra.redis_answers(url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not infra.redis_answers(url), "Redis did not stop"
    time.sleep(down_for)
    infra.up(settings)
    return time.monotonic() - started


def group_members(settings: Settings) -> int:
    """Members of the app's consumer group, as the broker sees them."""

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            described = await admin.describe_consumer_groups([settings.app_id])
            count = 0
            for response in described:
                for group in response.groups:
                    members = group[-2] if isinstance(group[-2], list) else group[-1]
                    count += len(members)
            return count
        finally:
            await admin.close()

    try:
        return asyncio.run(run())
    except Exception:  # noqa: BLE001 - the coordinator may be moving
        return -1


def reported(s: Stack, election: str) -> int:
    try:
        nation = s.standings(election, "nation", "FR")
    except Exception:  # noqa: BLE001 - Redis may be down on purpose
        return -1
    return 0 if nation is None else nation.bureaux_reported


# -- the checks --------------------------------------------------------------------------------


@dataclass
class Topic:
    """``bureau-results`` as it ended up: the valid reports (per partition, in order), the invalid."""

    valid: list[dict[str, Any]]  # concatenated partitions: per bureau, arrival order
    per_partition: dict[int, list[dict[str, Any]]]
    invalid: set[tuple[int, int]]  # (partition, offset)
    records: list[Record]


def read_results(s: Stack, night: BigNight) -> Topic:
    records = read_records(s, s.settings.results_topic)
    per_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    invalid: set[tuple[int, int]] = set()
    valid: list[dict[str, Any]] = []
    for record in records:
        if record.value in night.invalid_payloads:
            invalid.add((record.partition, record.offset))
        else:
            message = orjson.loads(record.value)
            per_partition[record.partition].append(message)
            valid.append(message)
    return Topic(valid, dict(per_partition), invalid, records)


def settle(s: Stack, night: BigNight, expected: dict[tuple[str, str], Total], timeout: float) -> None:
    try:
        s.wait_until(lambda: _no_mismatch(s, night, expected), timeout, "every level to match the truth")
    except AssertionError as exc:
        problems = mismatches(s, night.election, expected)
        levels = Counter(p.split()[0] for p in problems)
        raise AssertionError(
            f"{exc}\n{len(problems)} figures still differ from the truth {dict(levels)}, e.g.:\n"
            + "\n".join(problems[:30])
        ) from None
    time.sleep(1.5)  # events are sent before the standings are written; let the last ones land
    problems = mismatches(s, night.election, expected)
    assert problems == [], f"{len(problems)} figures differ from the truth, e.g.:\n" + "\n".join(
        problems[:25]
    )


def _no_mismatch(s: Stack, night: BigNight, expected: dict[tuple[str, str], Total]) -> bool:
    try:
        return not mismatches(s, night.election, expected)
    except Exception:  # noqa: BLE001 - Redis restarting
        return False


def check_dead_letters(s: Stack, topic: Topic) -> dict[str, int]:
    """Every invalid input is in the dead-letter topic (at least once), and nothing else is.

    At-least-once: a worker killed after sending a rejection but before committing its offset
    rejects the message again when it is re-delivered, so a dead letter may appear twice. The
    *set* of rejected (partition, offset) must equal the set of invalid inputs' offsets."""
    letters = s.read_topic(s.settings.rejected_topic)
    where: list[tuple[int, int]] = []
    problems: list[str] = []
    for _key, letter in letters:
        if letter.get("topic") != s.settings.results_topic:
            problems.append(f"a dead letter that is not from {s.settings.results_topic}: {str(letter)[:300]}")
            continue
        where.append((letter["partition"], letter["offset"]))
    rejected = set(where)
    valid_rejected = sorted(rejected - topic.invalid)
    lost = sorted(topic.invalid - rejected)
    by_place = {(r.partition, r.offset): r for r in topic.records}
    for place in valid_rejected[:10]:
        reason = next(
            letter["reason"]
            for _, letter in letters
            if (letter.get("partition"), letter.get("offset")) == place
        )
        problems.append(f"valid report {place} rejected: {reason}; payload {by_place.get(place)}")
    for place in lost[:10]:
        problems.append(f"invalid input {place} never reached the dead letters: {by_place.get(place)}")
    assert not problems, (
        f"dead letters: {len(valid_rejected)} valid reports rejected, {len(lost)} invalid inputs lost "
        f"(of {len(topic.invalid)}), e.g.:\n" + "\n".join(problems[:25])
    )
    return {
        "dead_letters": len(where),
        "invalid": len(topic.invalid),
        "duplicated": len(where) - len(rejected),
    }


def check_events(
    s: Stack,
    night: BigNight,
    topic: Topic,
    events: list[dict[str, Any]],
    expected: dict[tuple[str, str], Total],
) -> dict[str, int]:
    """The story of ``check_story`` (tests/test_messy_nights.py), adapted to crashes, and the
    figures of ``check_figures_were_true``.

    A crash re-delivers input whose events may already be out while the announced state that
    produced them was not yet stored, so an area's events may *repeat* a stretch of its story
    (the worker resumes from an earlier announced state). Asserted, whatever the crashes:

    * every event is a valid ``UpdateEvent`` whose figures (expressed, shares, turnout, leader,
      tied, margin, and decided against the registered of the unreported bureaux, computed here
      from the roll) are those of its own counts;
    * at bureau level only ``reported`` and ``corrected``: one per counted version of the
      bureau, ``reported`` for the first, in order, each showing exactly the version its cause
      names; a stretch may repeat, but no counted version is skipped and the last event is the
      newest version, equal to the final standings;
    * every commune's, circonscription's and department's event (and a one-department
      region's) carries counts that were true at some point (one combination of per-partition
      prefixes of ``bureau-results``): nothing ever announced was never true;
    * above bureau level only ``leader_changed``, ``turnout_changed``, ``complete``, ``decided``
      and ``undecided``;
    * each ``leader_changed`` follows a leader announced before (its ``previous_leader`` is None
      or the ``leader`` of an earlier ``leader_changed`` of the area) and differs from it; the
      area's last ``leader_changed`` is the final standings' (leader, tied); an area that never
      had a leader or a tie has none;
    * each ``turnout_changed``: ``previous_turnout`` None or an earlier announced turnout, moved by
      at least a step from it; the last one within a step of the final turnout;
    * ``complete`` (possibly repeated) iff every bureau of the area has reported, and says so;
    * calls: a ``decided`` naming a leader who is not the final one is followed by an
      ``undecided``; an ``undecided`` follows a ``decided``; the last call event is the final
      standings' call (``decision_problems`` with repeats);
    * every event: bureaux_total is the roll's, 1 <= bureaux_reported <= bureaux_total, its
      cause is a bureau of the area at a seq that was fresh when it arrived; ``version`` never
      beyond the final standings'; ``as_of`` None (no report gives a ``reported_at``);
    * areas that never reported (silent bureaux) have no events and no standings, every area
      that reported has events.
    """
    election = night.election
    candidates = election.candidate_list
    sizes = bureaux_total(election)
    rolls = registered_total(election)
    members = members_of(election)
    enumerable = enumerable_areas(election)
    fresh = fresh_versions(topic.valid)
    versions = {(m["bureau"], m["seq"]): m for m in topic.valid}
    grouped = per_area(events)
    problems: list[str] = []
    repeats = 0
    for area in expected:
        if area not in grouped:
            problems.append(f"{area}: no events at all")
    for (level, area), story in grouped.items():
        where = f"{level} {area}"
        final = s.standings(night.e, level, area)
        if final is None or (level, area) not in expected:
            problems.append(f"{where}: events for an area with no report")
            continue
        seen: set[bytes] = set()
        for event in story:
            fingerprint = orjson.dumps(
                {k: v for k, v in event.items() if k != "at"}, option=orjson.OPT_SORT_KEYS
            )
            repeats += fingerprint in seen
            seen.add(fingerprint)
            problems += event_figure_problems(where, event, election, rolls)
            if event["bureaux_total"] != sizes[(level, area)]:
                problems.append(
                    f"{where}: bureaux_total {event['bureaux_total']}, the roll has {sizes[(level, area)]}"
                )
            if not 1 <= event["bureaux_reported"] <= event["bureaux_total"]:
                problems.append(
                    f"{where}: bureaux_reported {event['bureaux_reported']}/{event['bureaux_total']}"
                )
            problems += event_shape_problems(where, event, election, level, area, fresh)
        if level == "bureau":
            problems += bureau_story_problems(
                election, area, story, fresh[area], versions, final, repeats=True
            )
            continue
        leaders: set[str | None] = {None}
        lead: tuple[Any, Any] = (None, None)
        turnouts: set[float | None] = {None}
        turnout: float | None = None
        completes = 0
        for event in story:
            kind = event["kind"]
            if kind not in AREA_KINDS:
                problems.append(f"{where}: a {kind} event above bureau level")
            if kind == "leader_changed":
                if event["previous_leader"] not in leaders:
                    problems.append(
                        f"{where}: previous_leader {event['previous_leader']!r}, never announced before"
                    )
                if event["previous_leader"] is not None and event["leader"] == event["previous_leader"]:
                    problems.append(f"{where}: leader_changed from {event['leader']!r} to itself")
                lead = (event["leader"], event["tied"])
                leaders.add(event["leader"])
            elif kind == "turnout_changed":
                before = event["previous_turnout"]
                if before not in turnouts:
                    problems.append(f"{where}: previous_turnout {before}, never announced before")
                if before is not None and abs(event["turnout"] - before) < STEP - 0.01 - 1e-9:
                    problems.append(
                        f"{where}: turnout moved {before} -> {event['turnout']}, less than a step"
                    )
                turnout = event["turnout"]
                turnouts.add(turnout)
            elif kind == "complete":
                completes += 1
                if event["bureaux_reported"] != event["bureaux_total"]:
                    problems.append(
                        f"{where}: complete at {event['bureaux_reported']}/{event['bureaux_total']}"
                    )
        if lead != (final.leader, final.tied):
            problems.append(
                f"{where}: last leader_changed says {lead}, the standings {(final.leader, final.tied)}"
            )
        if (completes >= 1) != (final.bureaux_reported == final.bureaux_total):
            problems.append(
                f"{where}: {completes} complete events at {final.bureaux_reported}/{final.bureaux_total}"
            )
        if final.turnout is not None and (turnout is None or abs(turnout - final.turnout) >= STEP + 0.01):
            problems.append(f"{where}: last turnout event {turnout}, final turnout {final.turnout}")
        problems += decision_problems(where, story, final, repeats=True)
        problems += version_problems(where, story, final, repeats=True)
        counted = [versions[(b, seq)].get("reported_at") for b in members[(level, area)] for seq in fresh[b]]
        problems += as_of_problems(where, story, final, counted, repeats=True)
        # counts that were true at some point
        if (level, area) in enumerable:
            states, _ = reachable(election, enumerable[(level, area)], topic.per_partition)
            for event in story:
                if event_raw(event, candidates) not in states:
                    problems.append(
                        f"{where}: {event['kind']} at {event['at'][11:23]} {event_raw(event, candidates)} "
                        "was never true"
                    )
    for bureau in night.silent:
        area = ("bureau", bureau)
        if area in grouped or s.standings(night.e, *area) is not None:
            problems.append(f"{area}: never reported, yet has events or standings")
    kinds = Counter(
        "never true" if "was never true" in p else "no events" if "no events at all" in p else "story"
        for p in problems
    )
    assert not problems, (
        f"{len(problems)} problems in the events of {night.e} {dict(kinds)}, e.g.:\n"
        + "\n".join(sorted(problems, key=lambda p: "was never true" in p)[:30])
    )
    return {"events": len(events), "repeated_events": repeats}


def expected_truth(night: BigNight, topic: Topic) -> dict[tuple[str, str], Total]:
    """The truth from what the topic holds; it must equal the truth of what was generated."""
    from_topic = truth(night.election, topic.valid)
    generated = truth(night.election, [orjson.loads(m.value) for m in night.messages if m.valid])
    assert from_topic.keys() == generated.keys() and all(
        vars(from_topic[k]) == vars(generated[k]) for k in generated
    ), "the topic does not hold the generated night (a resent message overtook a newer one?)"
    return from_topic
