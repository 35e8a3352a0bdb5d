"""Following ``election-updates``: the consumer behind ``soiree tail`` and the demo's live view."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer

from stream.adapters.kafka.client import client_options
from stream.domain.messages import UpdateEvent
from stream.settings import Settings

__all__ = ["follow_updates"]


async def follow_updates(
    settings: Settings,
    election: str | None = None,
    from_beginning: bool = False,
    level: str | None = None,
    area: str | None = None,
) -> AsyncIterator[UpdateEvent]:
    """Events as they arrive, filtered; no consumer group, so followers never disturb each other."""
    consumer = AIOKafkaConsumer(
        settings.updates_topic,
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    try:
        async for message in consumer:
            event = UpdateEvent.model_validate_json(message.value)
            if election and event.election != election:
                continue
            if level and event.level != level:
                continue
            if area and event.area != area:
                continue
            yield event
    finally:
        await consumer.stop()
