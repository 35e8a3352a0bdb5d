"""The contract's topic names, and making sure they exist with the partitions the app expects."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from stream.adapters.kafka.client import client_options
from stream.errors import TopicsMisconfigured
from stream.settings import Settings

__all__ = [
    "contributions_topic",
    "nation_topic",
    "ensure_topics",
    "TopicsMisconfigured",
    "ELECTIONS_MAX_MESSAGE_BYTES",
]

#: A definition is one message, gzipped: a million-bureau roll is 120 MB of JSON (growth.py), the 2017 one 0.9 MB gzipped.
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


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create the topics if missing; refuse if ``bureau-results`` has the wrong partition count.

    Faust keeps a table partition next to the source partition it comes from, so the results
    topic must have exactly ``SOIREE_PARTITIONS`` partitions. The internal topics are created
    here too, before any worker starts, and waited for: when two workers started together on a
    fresh group, each created one of them, and the group's assignment, made before the broker's
    metadata showed it, ignored the contributions topic ("Ignoring missing topic"): nothing was
    tallied until the next rebalance.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        results = settings.results_topic
        names = (
            results,
            settings.rejected_topic,
            settings.updates_topic,
            contributions_topic(settings),
            nation_topic(settings),
        )
        wanted = dict.fromkeys(names, settings.partitions)
        wanted[settings.elections_topic] = 1  # read whole by every worker: one partition keeps it simple
        configs = {
            settings.elections_topic: {
                "cleanup.policy": "compact",  # the latest definition of each election, forever
                "max.message.bytes": str(ELECTIONS_MAX_MESSAGE_BYTES),
            }
        }
        existing = await admin.list_topics()
        missing = [
            NewTopic(name, n, 1, topic_configs=configs.get(name))
            for name, n in wanted.items()
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except KafkaError as exc:  # created meanwhile by another process
                if "TopicAlreadyExists" not in type(exc).__name__:
                    raise
        for _ in range(
            300
        ):  # a topic just created may show no partitions for a while (a broker just started)
            described = await admin.describe_topics(list(wanted))
            partitions = {d["topic"]: len(d["partitions"]) for d in described}
            if all(partitions.get(name) for name in wanted):
                break
            await asyncio.sleep(0.1)
        if partitions.get(results) != settings.partitions:
            raise TopicsMisconfigured(
                f"topic {results} has {partitions.get(results)} partitions but SOIREE_PARTITIONS={settings.partitions}; "
                f"set SOIREE_PARTITIONS={partitions.get(results)} (tables must be co-partitioned with it)"
            )
        return partitions
    finally:
        await admin.close()
