"""Waiting out Kafka and Redis outages instead of losing or rejecting what was being processed.

An error raised out of an agent crashes it, and Faust acknowledges a crashed agent's messages:
their offsets get committed and they are never tallied. So a batch that meets an outage is
tried again, with backoff, from the stored state, exactly as a re-delivery would be.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from stream.errors import ElectionsUnavailable
from stream.runtime import metrics

__all__ = [
    "OUTAGES",
    "OUTAGE_RETRY_DELAY",
    "KafkaRefused",
    "refused_for_good",
    "through_outages",
    "waiting_for_redis",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

#: Errors of a service being away, tried again rather than taken for a bad message.
OUTAGES = (KafkaError, RedisError, OSError, ElectionsUnavailable)
#: Seconds before a batch that met an outage is tried again (doubling up to ``MAX_RETRY_DELAY``).
OUTAGE_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 10.0
#: Seconds before an election's lookup is tried again while Redis is away (doubling up to 5 s).
REDIS_RETRY_DELAY = 0.2


class KafkaRefused(Exception):
    """Kafka refused what was sent for good (a message too large, an authorisation missing): no
    retry will pass, so the caller dead-letters what it was sending instead of waiting forever."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(f"Kafka refused it: {type(error).__name__}: {error}")
        self.error = error


def refused_for_good(exc: BaseException) -> bool:
    """A Kafka error no retry can pass: a specific error class aiokafka marks not retriable (the
    bare ``KafkaError`` says nothing either way and is waited out as before)."""
    return isinstance(exc, KafkaError) and type(exc) is not KafkaError and not exc.retriable


async def through_outages(work: Callable[[T], Awaitable[R]], batch: T) -> R:
    """``work(batch)``, again (with backoff) for as long as an outage (``OUTAGES``) reaches it;
    ``KafkaRefused`` when Kafka refuses it for good."""
    delay = OUTAGE_RETRY_DELAY
    while True:
        try:
            return await work(batch)
        except OUTAGES as exc:
            if refused_for_good(exc):
                raise KafkaRefused(exc) from exc
            if delay == OUTAGE_RETRY_DELAY:  # counted once per batch, however long it waits
                metrics.count_outage(exc)
            log.warning("A batch met an outage (%r); trying it again in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)


async def waiting_for_redis(call: Callable[[Any], Awaitable[T]], arg: Any) -> T:
    """``await call(arg)``, waiting (with backoff) while an unknown election cannot be looked up."""
    delay = REDIS_RETRY_DELAY
    while True:
        try:
            return await call(arg)
        except ElectionsUnavailable as exc:
            if delay == REDIS_RETRY_DELAY:  # counted once per lookup, however long it waits
                metrics.count_outage(exc)
            log.warning("%s; retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
