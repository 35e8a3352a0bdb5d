"""A worker's ``/metrics`` (``stream.runtime.metrics``): what it counts, and the port it serves on.

The expected counts are the test's own: the reports it published, and the events read back from
the updates topic.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from stream.adapters.kafka.topics import contributions_topic, nation_topic
from stream.runtime import metrics, outages
from stream.runtime.metrics import REGISTRY, serve_metrics
from stream.settings import Settings

from .harness import Stack
from .test_held_states import Night, report
from .test_pipeline import mini_election, result

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of ``http://127.0.0.1:<port>/metrics``, by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by_label(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of ``name``, by the values of ``labels``."""
    found = {}
    for (sample, pairs), value in samples.items():
        if sample == name:
            values = dict(pairs)
            found[tuple(values[label] for label in labels)] = value
    return found


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free on every interface (below Linux's ephemeral range)."""
    for _ in range(200):
        first = random.randrange(20000, 32000)
        if all(_free(port) for port in range(first, first + count)):
            return first
    raise AssertionError("no free ports found")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


@contextmanager
def listening(*ports: int) -> Iterator[None]:
    """Ports taken by someone else for the duration."""
    sockets = []
    try:
        for port in ports:
            taken = socket.socket()
            taken.bind(("0.0.0.0", port))
            taken.listen()
            sockets.append(taken)
        yield
    finally:
        for taken in sockets:
            taken.close()


# -- the port ----------------------------------------------------------------------------
def test_a_taken_port_moves_the_metrics_to_the_next_free_one() -> None:
    first = free_ports(4)
    with listening(first, first + 1):
        served = serve_metrics(first)
        assert served is not None
        port, server = served
        try:
            assert port == first + 2
            assert ("soiree_worker_reports_routed_total", frozenset()) in scrape(port)
        finally:
            server.shutdown()
            server.server_close()
        assert serve_metrics(first, attempts=2) is None  # every port it may try is taken
    assert serve_metrics(0) is None  # 0: no metrics


# -- counting, in-process -----------------------------------------------------------------
def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_offline_pipeline_counts_batches_rejections_events_and_outages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Metrics are the process's: a second pipeline adds to them (no duplicate registration)."""
    monkeypatch.setattr(outages, "OUTAGE_RETRY_DELAY", 0.01)
    reason = "blank + invalid + votes = #, voters = #"
    before = {
        "routed": value("soiree_worker_reports_routed_total"),
        "rejected": value("soiree_worker_reports_rejected_total", reason=reason),
        "batches": value("soiree_worker_batch_reports_count"),
        "chunks": value("soiree_worker_tally_chunk_seconds_count"),
        "kafka": value("soiree_worker_outages_total", service="kafka"),
    }
    events_before = {
        (kind, level): value("soiree_worker_events_total", kind=kind, level=level)
        for kind in ("reported", "corrected", "leader_changed", "complete")
        for level in ("bureau", "commune", "department", "nation")
    }
    bad = orjson.loads(report("42218-0002", 1, 5, 5)[1]) | {"voters": 11}

    async def scenario() -> list[dict[str, Any]]:
        for _ in range(2):  # two pipelines, one process
            night = Night()
            contributions = await night.route(
                report("42218-0001", 1, 60, 40), (b"42218-0002", orjson.dumps(bad))
            )
            await night.tally(contributions)
        correction = await night.route(report("42218-0001", 2, 10, 90))
        night.producer.fail_next = KafkaConnectionError()  # the second's correction meets an outage
        await night.tally(correction)
        return [orjson.loads(v) for _, _, v in night.producer.take(Settings().updates_topic)]

    events = asyncio.run(scenario())
    assert value("soiree_worker_reports_routed_total") - before["routed"] == 3
    assert value("soiree_worker_reports_rejected_total", reason=reason) - before["rejected"] == 2
    assert value("soiree_worker_batch_reports_count") - before["batches"] == 3
    assert value("soiree_worker_tally_chunk_seconds_count") - before["chunks"] == 3  # the failed try is not
    assert value("soiree_worker_outages_total", service="kafka") - before["kafka"] == 1
    assert ("corrected", "bureau") in Counter((e["kind"], e["level"]) for e in events)
    counted = {key: value("soiree_worker_events_total", kind=key[0], level=key[1]) for key in events_before}
    made = {key: counted[key] - events_before[key] for key in counted}
    # both pipelines' first bureau reported; the second's correction was announced twice: once in
    # the try Kafka refused, once after (events are counted as produced, at least once)
    assert made[("reported", "bureau")] == 2
    assert made[("corrected", "bureau")] == 2
    assert made[("complete", "nation")] == 0


def test_a_rejections_reason_keeps_no_input_in_its_label() -> None:
    kind = metrics.reason_kind
    assert kind("bureau 42218-0001: voters = 641 exceeds the roll's registered = 640") == (
        "voters = # exceeds the roll's registered = #"
    )
    assert kind("bureau x: message key 'zz' must be the bureau id (all reports ...)") == (
        "message key '…' must be the bureau id"
    )
    assert kind("bureau 42218-0001: unknown candidates EVIL, WORSE") == "unknown candidates"
    assert (
        kind("bureau 42218-0001: field 'seq': Input should be >= 1 (got 0)")
        == "field '…': Input should be >= #"
    )
    assert kind("commune 42218: unknown election 'secret-id'") == "unknown election '…'"


class FakeConsumer:
    """What ``refresh_consumer`` reads of Faust's consumer."""

    def __init__(self, offsets: dict[TP, tuple[int | None, int]]) -> None:
        self.offsets = offsets  # tp -> (highwater, position)

    def assignment(self) -> set[TP]:
        return set(self.offsets)

    def highwater(self, tp: TP) -> int | None:
        return self.offsets[tp][0]

    async def position(self, tp: TP) -> int:
        return self.offsets[tp][1]


def test_consumer_lag_is_highwater_minus_position_for_the_partitions_held() -> None:
    lag = "soiree_worker_consumer_lag"
    consumer = FakeConsumer(
        {
            TP("r", 0): (120, 100),
            TP("r", 1): (7, 7),
            TP("c", 1): (None, 0),  # not fetched yet: no figure
            TP("r-changelog", 1): (50, 0),  # a topic the agents do not read
        }
    )
    asyncio.run(metrics.refresh_consumer(consumer, ["r", "c"], "r"))
    assert value("soiree_worker_partitions_assigned") == 2
    assert (value(lag, topic="r", partition="0"), value(lag, topic="r", partition="1")) == (20, 0)
    assert REGISTRY.get_sample_value(lag, {"topic": "c", "partition": "1"}) is None
    assert REGISTRY.get_sample_value(lag, {"topic": "r-changelog", "partition": "1"}) is None
    consumer.offsets = {TP("r", 1): (9, 7)}  # partition 0 moved to another worker
    asyncio.run(metrics.refresh_consumer(consumer, ["r", "c"], "r"))
    assert value("soiree_worker_partitions_assigned") == 1
    assert REGISTRY.get_sample_value(lag, {"topic": "r", "partition": "0"}) is None
    assert value(lag, topic="r", partition="1") == 2


# -- a real worker -----------------------------------------------------------------------
def test_a_workers_metrics_tell_what_it_did(stack: Any) -> None:
    port = free_ports(3)
    s: Stack = stack("metrics", worker_metrics_port=port)
    election = mini_election()
    e = election.election
    s.register(election)
    valid = [
        result(e, "42218-0001", 1, {"A": 40, "B": 10}),
        result(e, "42218-0002", 1, {"A": 10, "B": 30}),
        result(e, "42001-0001", 1, {"A": 5, "B": 3}),
        result(e, "75056-0001", 1, {"C": 70}),
        result(e, "75056-0001", 1, {"C": 70}),  # a duplicate: valid, routed, changes nothing
        result(e, "42218-0001", 2, {"A": 10, "B": 40}),  # a correction
    ]
    mismatch = "blank + invalid + votes = #, voters = #"
    e_shown = re.sub(r"\d+", "#", e)  # an election's id may stay in a reason (there are few), not its digits
    bad = [
        (b"42218-0002", orjson.dumps({**result(e, "42218-0002", 5, {"A": 10}), "voters": 11}), mismatch),
        (b"42001-0001", orjson.dumps({**result(e, "42001-0001", 5, {"A": 1}), "voters": 3}), mismatch),
        (b"42218-0002", orjson.dumps(result(e, "42218-0002", 6, {"Z": 1})), "unknown candidate"),
        (
            b"42001-0001",
            orjson.dumps(result(e, "42218-0002", 8, {"A": 1})),
            "message key '…' must be the bureau id",
        ),
        (b"42218-0002", b"", "empty message"),
        (
            b"99999-0001",
            orjson.dumps(result(e, "99999-0001", 1, {"A": 1})),
            f"not in the roll of election {e_shown}",
        ),
    ]
    s.start_worker()
    log = s.log_dir / f"{s.settings.app_id}-worker0.log"
    url = f"metrics at http://127.0.0.1:{port}/metrics"
    s.wait_until(lambda: url in log.read_text(), 60, "the metrics URL")
    s.publish(valid, raw=[(key, payload) for key, payload, _ in bad])

    read_topics = [s.settings.results_topic, s.settings.turnout_topic]
    read_topics += [contributions_topic(s.settings), nation_topic(s.settings)]
    every_partition = {(topic, str(p)) for topic in read_topics for p in range(s.settings.partitions)}
    samples: Samples = {}

    def settled() -> bool:
        nonlocal samples
        samples = scrape(port)
        rejected = sum(by_label(samples, "soiree_worker_reports_rejected_total", "reason").values())
        lag = by_label(samples, "soiree_worker_consumer_lag", "topic", "partition")
        nation = s.standings(e, "nation", "FR")
        return (
            samples.get(("soiree_worker_reports_routed_total", frozenset())) == len(valid)
            and rejected == len(bad)
            and nation is not None
            and (nation.bureaux_reported, nation.votes) == (4, {"A": 25, "B": 73, "C": 70})  # corrected
            and set(lag) == every_partition
            and not any(lag.values())
        )

    s.wait_until(settled, 90, "the metrics of every report, and no lag")
    assert by_label(samples, "soiree_worker_reports_rejected_total", "reason") == {
        (reason,): float(n) for reason, n in Counter(reason for *_, reason in bad).items()
    }
    assert samples[("soiree_worker_partitions_assigned", frozenset())] == s.settings.partitions
    # every record of the results topic went through a routing batch
    assert samples[("soiree_worker_batch_reports_sum", frozenset())] == len(valid) + len(bad)
    assert samples[("soiree_worker_tally_chunk_seconds_count", frozenset())] >= 1
    assert samples[("soiree_worker_store_flush_seconds_count", frozenset())] >= 1
    assert not any(by_label(samples, "soiree_worker_outages_total", "service").values())

    events = Counter((v["kind"], v["level"]) for _, v in s.read_topic(s.settings.updates_topic))
    counted = by_label(scrape(port), "soiree_worker_events_total", "kind", "level")
    assert counted == {key: float(n) for key, n in events.items()}
    assert counted[("reported", "bureau")] == 4  # one per bureau
    assert counted[("corrected", "bureau")] == 1
    assert counted[("complete", "nation")] == 1

    # a second worker on the machine takes the next port, and the partitions are shared
    s.start_worker()
    second = s.log_dir / f"{s.settings.app_id}-worker1.log"
    s.wait_until(lambda: "/metrics" in second.read_text(), 60, "the second worker's metrics URL")
    assert f"metrics at http://127.0.0.1:{port + 1}/metrics ({port} is taken)" in second.read_text()

    def shared() -> bool:
        key = ("soiree_worker_partitions_assigned", frozenset())
        held = [scrape(p).get(key, 0.0) for p in (port, port + 1)]
        return all(held) and sum(held) == s.settings.partitions

    s.wait_until(shared, 90, "both workers holding partitions")
