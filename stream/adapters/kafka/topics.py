"""The contract's topic names, and making sure they exist with the partitions the app expects."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
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


#: Per-topic configuration of the topics that need one.
def _topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    return {
        settings.elections_topic: {
            "cleanup.policy": "compact",  # the latest definition of each election, forever
            "max.message.bytes": str(ELECTIONS_MAX_MESSAGE_BYTES),
        }
    }


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
    """Create the topics if missing; refuse if a co-partitioned one has the wrong partition count.

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
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, count, 1, topic_configs=configs.get(name))
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
