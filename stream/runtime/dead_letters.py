"""Dead letters: what cannot be counted goes to ``bureau-results-rejected`` with its reason.

Invalid reports get the validation's reason. A report or a contribution that meets a bug gets
the error as its reason, and a contribution is dead-lettered as the reports it carried (its
rows hold all their counts), so that publishing the rejected payloads again after a fix
recounts them. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import orjson
from faust.types import EventT, ProducerT

from stream.adapters.kafka.topics import SOURCE_HEADER
from stream.domain.contributions import reports_of
from stream.domain.messages import make_rejection
from stream.runtime import metrics
from stream.runtime.faust.outbox import Outbox
from stream.runtime.outages import through_outages

__all__ = ["Record", "DeadLetters", "internal_error", "SOURCE_HEADER", "source_header"]

log = logging.getLogger(__name__)


class Record(Protocol):
    """What routing and rejections need of a Kafka message (aiokafka's ``ConsumerRecord`` and
    Faust's ``Message`` both are one)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def source_header(message: Any) -> str | None:
    """The source a report came from (its ``soiree-source`` header), if it has one."""
    headers = getattr(message, "headers", None) or ()
    items = headers.items() if isinstance(headers, dict) else headers
    for name, value in items:
        if name == SOURCE_HEADER and value:
            return bytes(value).decode("utf-8", "replace")
    return None


def internal_error(exc: Exception) -> str:
    """The reason given with a message that met a bug (the worker's log has the traceback)."""
    return (
        f"an internal error stopped it ({type(exc).__name__}: {exc}); please report it (the worker's "
        f"log has the details); the payload can be published again once it is fixed"
    )


class DeadLetters:
    """Writes rejections to the dead-letter topic, through an ``Outbox`` or on their own."""

    def __init__(self, producer: ProducerT, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def reject(
        self,
        outbox: Outbox,
        message: Record,
        reason: str,
        payload: bytes | None = None,
        key: bytes | None = None,
        applied: bytes | None = None,
        source: str | None = None,
    ) -> None:
        """Dead-letter ``message`` (or ``payload``, under ``key``, found in it) with ``reason``;
        ``applied``: for a conflict, the report already applied in its place."""
        if payload is None:
            payload, key = message.value or b"", message.key
        rejection = make_rejection(
            payload,
            reason,
            key=None if key is None else key.decode("utf-8", "backslashreplace"),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            applied=None if applied is None else applied.decode(),
            source=source or source_header(message),
        )
        log.warning("Rejected %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason)
        metrics.count_rejection(reason)
        outbox.add(self.topic, key, rejection.model_dump_json().encode())

    async def contribution(self, event: EventT, message: dict[str, Any] | None, exc: Exception) -> None:
        """A contribution the tally cannot take: each of its reports rebuilt as the
        ``BureauResult`` it came from; a message of any other shape as it is."""
        record = event.message
        log.error(
            "Contribution %s[%s]@%s dead-lettered",
            record.topic,
            record.partition,
            record.offset,
            exc_info=exc,
        )
        await through_outages(self._send, (event, message, exc))

    async def _send(self, failed: tuple[EventT, dict[str, Any] | None, Exception]) -> None:
        event, message, exc = failed
        outbox = Outbox(self.producer)
        reason = f"not tallied: {internal_error(exc)}"
        reports = reports_of(message)
        if reports is None:
            self.reject(outbox, event.message, f"contribution {reason}")
        for place, report in reports or ():
            payload = orjson.dumps(report)
            what = "commune" if "commune" in report else "bureau"
            self.reject(
                outbox, event.message, f"{what} {place}: {reason}", payload=payload, key=place.encode()
            )
        await outbox.deliver()
