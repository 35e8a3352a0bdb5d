"""The contract's topic names, and making sure they exist with the partitions the app expects."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from stream.adapters.kafka.client import client_options
from stream.errors import TopicCreationFailed, TopicsMisconfigured
from stream.settings import Settings

__all__ = [
    "contributions_topic",
    "nation_topic",
    "ensure_topics",
    "changelog_topic",
    "co_partitioned",
    "topic_partitions",
    "check_created",
    "check_replication",
    "replication",
    "resolve_replication",
    "ELECTIONS_MAX_MESSAGE_BYTES",
    "SOURCE_HEADER",
]

#: A definition is one message, gzipped: a million-bureau roll is 120 MB of JSON (bench/growth.py),
#: the 2017 one 0.9 MB gzipped.
ELECTIONS_MAX_MESSAGE_BYTES = 64 * 2**20


def contributions_topic(settings: Settings) -> str:
    """Internal topic carrying routed reports to their department's partition."""
    return f"{settings.app_id}-contributions"


def nation_topic(settings: Settings) -> str:
    """Internal topic carrying departments' totals to the nation's partition.

    Separate from the reports so that, when reports pile up (a worker catching up, a burst),
    the nation's updates do not queue behind them: the agent reads both topics in turn.
    """
    return f"{settings.app_id}-nation-contributions"


#: The Kafka header naming the source of a report that came through HTTP ingest.
SOURCE_HEADER = "soiree-source"


def changelog_topic(settings: Settings) -> str:
    """The ``areas`` table's changelog (created by Faust when a worker starts)."""
    return f"{settings.app_id}-areas-changelog"


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Every topic Soirée creates, with its partition count."""
    names = (
        settings.results_topic,
        settings.turnout_topic,
        settings.rejected_topic,
        settings.updates_topic,
        contributions_topic(settings),
        nation_topic(settings),
    )
    wanted = dict.fromkeys(names, settings.partitions)
    wanted[settings.elections_topic] = 1  # read whole by every worker: one partition keeps it simple
    wanted[settings.audit_topic] = 1  # a few refused requests: in their order
    return wanted


def co_partitioned(settings: Settings) -> list[str]:
    """Topics whose partition N must hold the same keys as ``bureau-results``' partition N.

    Faust keeps a table partition next to the source partition it comes from, and the tally
    reads the contributions, the nation's messages and the table's changelog by partition."""
    return [
        settings.results_topic,
        settings.turnout_topic,
        contributions_topic(settings),
        nation_topic(settings),
        changelog_topic(settings),
    ]


#: Per-topic configuration of the topics that need one (beyond ``min.insync.replicas``, every topic's).
def _topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    return {
        settings.elections_topic: {
            "cleanup.policy": "compact",  # the latest definition of each election, forever
            "max.message.bytes": str(ELECTIONS_MAX_MESSAGE_BYTES),
        }
    }


#: (replication factor, min.insync.replicas) already worked out, by bootstrap and settings
_resolved: dict[tuple[str, int, int], tuple[int, int]] = {}


async def replication(settings: Settings, admin: AIOKafkaAdminClient) -> tuple[int, int]:
    """The replication factor and ``min.insync.replicas`` of the topics Soirée creates:
    ``SOIREE_REPLICATION_FACTOR`` (0: min(3, brokers the cluster lists)) and
    ``SOIREE_MIN_INSYNC_REPLICAS`` (0: min(2, that factor))."""
    factor = settings.replication_factor
    if not factor:
        cluster = await admin.describe_cluster()
        factor = max(1, min(3, len(cluster.get("brokers") or ())))
    insync = settings.min_insync_replicas or min(2, factor)
    if insync > factor:
        raise TopicsMisconfigured(
            f"SOIREE_MIN_INSYNC_REPLICAS={insync} is more than the replication factor {factor}: "
            "no write could ever be acknowledged"
        )
    _resolved[(settings.kafka_bootstrap, settings.replication_factor, settings.min_insync_replicas)] = (
        factor,
        insync,
    )
    return factor, insync


def resolve_replication(settings: Settings) -> tuple[int, int]:
    """``replication`` from synchronous code (``create_app``: Faust's own topics, the changelog):
    what ``ensure_topics`` found in this process, else asked of the cluster now."""
    key = (settings.kafka_bootstrap, settings.replication_factor, settings.min_insync_replicas)
    if key in _resolved:
        return _resolved[key]
    if settings.replication_factor:  # nothing to ask the cluster
        factor = settings.replication_factor
        insync = settings.min_insync_replicas or min(2, factor)
        return factor, insync

    async def ask() -> tuple[int, int]:
        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        try:
            return await replication(settings, admin)
        finally:
            await admin.close()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="soiree-replication") as pool:
        return pool.submit(asyncio.run, ask()).result()


def check_replication(
    factors: dict[str, int], insyncs: dict[str, int | None], factor: int, insync: int
) -> None:
    """Refuse (``TopicsMisconfigured``, one line) topics with fewer replicas, or a lower
    ``min.insync.replicas``, than the settings ask for: a worker would run with less
    durability than the operator configured, and nothing would say so."""
    wrong = [
        f"topic {name} has replication factor {count} (SOIREE_REPLICATION_FACTOR wants {factor})"
        for name, count in sorted(factors.items())
        if count < factor
    ]
    wrong += [
        f"topic {name} has min.insync.replicas {value} (SOIREE_MIN_INSYNC_REPLICAS wants {insync})"
        for name, value in sorted(insyncs.items())
        if value is not None and value < insync
    ]
    if wrong:
        raise TopicsMisconfigured(
            "; ".join(wrong) + ": raise them (kafka-reassign-partitions, kafka-configs --alter) or recreate "
            "those topics, or set the settings lower"
        )


async def _replication_of(
    admin: AIOKafkaAdminClient, names: list[str]
) -> tuple[dict[str, int], dict[str, int | None]]:
    """Each topic's replication factor (its fewest replicas over its partitions) and effective
    ``min.insync.replicas`` (None if the broker would not say)."""
    described = await admin.describe_topics(names)
    factors = {
        d["topic"]: min(len(p["replicas"]) for p in d["partitions"]) for d in described if d.get("partitions")
    }
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, configs={"min.insync.replicas": None})
        for name in names
    ]
    insyncs: dict[str, int | None] = dict.fromkeys(names)
    for response in await admin.describe_configs(resources):
        for code, _message, _type, name, entries in (r[:5] for r in response.resources):
            for entry in entries if code == 0 else ():
                if entry[0] == "min.insync.replicas" and entry[1] is not None:
                    insyncs[name] = int(entry[1])
    return factors, insyncs


def check_created(topic_errors: list[tuple[Any, ...]]) -> None:
    """Raise ``TopicCreationFailed`` for every topic the broker refused (a CreateTopics response's
    ``topic_errors``: (topic, error code[, message])). A topic created meanwhile by another
    process is not a failure."""
    failures = []
    for topic, code, *message in topic_errors:
        if code in (0, TopicAlreadyExistsError.errno):
            continue
        error = for_code(code)
        detail = (message[0] if message else None) or getattr(error, "description", "")
        failures.append(f"{topic}: {error.__name__} (code {code}): {detail}")
    if failures:
        raise TopicCreationFailed(
            "the broker refused to create "
            + "; ".join(failures)
            + ". Check the broker's limits and permissions (partitions, replication factor, ACLs), "
            "or create the topics yourself with these names and SOIREE_PARTITIONS partitions"
        )


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create the topics if missing, with the replication of ``replication``; refuse if a
    co-partitioned one has the wrong partition count, or any (the changelog too, once it exists)
    fewer replicas or a lower ``min.insync.replicas`` than the settings ask for.

    The internal topics are created here too, before any worker starts, and waited for: when
    two workers started together on a fresh group, each created one of them, and the group's
    assignment, made before the broker's metadata showed it, ignored the contributions topic
    ("Ignoring missing topic"): nothing was tallied until the next rebalance.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        wanted = topic_partitions(settings)
        configs = _topic_configs(settings)
        factor, insync = await replication(settings, admin)
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                count,
                factor,
                topic_configs={**configs.get(name, {}), "min.insync.replicas": str(insync)},
            )
            for name, count in wanted.items()
            if name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            check_created(response.topic_errors)
        partitions = await _wait_for_partitions(admin, wanted)
        changelog = changelog_topic(settings)
        if changelog in existing:
            partitions.update(await _wait_for_partitions(admin, {changelog: settings.partitions}))
        wrong = [
            f"topic {name} has {partitions[name]} partitions but SOIREE_PARTITIONS={settings.partitions}"
            for name in co_partitioned(settings)
            if name in partitions and partitions[name] != settings.partitions
        ]
        if wrong:
            raise TopicsMisconfigured(
                "; ".join(wrong) + f": these topics are co-partitioned with {settings.results_topic} (the "
                f"tables are), so set SOIREE_PARTITIONS={partitions[settings.results_topic]} or recreate "
                "the topics that differ"
            )
        check_replication(*await _replication_of(admin, list(partitions)), factor, insync)
        return partitions
    finally:
        await admin.close()


async def _wait_for_partitions(admin: AIOKafkaAdminClient, wanted: dict[str, int]) -> dict[str, int]:
    """Partition counts, once the broker's metadata shows every topic (a topic just created may
    show none for a while, on a broker just started)."""
    partitions: dict[str, int] = {}
    for _ in range(300):
        described = await admin.describe_topics(list(wanted))
        partitions = {d["topic"]: len(d["partitions"]) for d in described if d.get("partitions")}
        if all(partitions.get(name) for name in wanted):
            return partitions
        await asyncio.sleep(0.1)
    absent = sorted(name for name in wanted if not partitions.get(name))
    raise TopicCreationFailed(
        f"topic {', '.join(absent)} still shows no partitions after 30 s; is the broker healthy?"
    )
