"""Keys and values handed to the agents as the bytes Kafka gave.

Faust's own schema decodes ``raw`` bytes through its serializer registry and settings lookups,
once per message: a quarter of a counting agent's per-message time once Faust's fetch loop was
made direct (docs/performance.md).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.serializers.schemas import Schema

__all__ = ["RawSchema"]


class RawSchema(Schema):
    """Keys and values stay the bytes Kafka gave. Faust's own schema decodes ``raw`` bytes
    through its serializer registry and settings lookups, once per message (a quarter of a
    counting agent's per-message time once Faust's fetch loop was made direct; see
    docs/performance.md)."""

    def compile(self, app: faust.types.AppT, **_: Any) -> Any:  # Schema.compile's signature
        event_class = app.conf.Event

        async def decode(message: faust.types.Message, *, propagate: bool = False) -> Any:
            # conf.Event is typed as the EventT protocol; at run time it is the Event class
            return event_class(app, message.key, message.value, message.headers, message)  # type: ignore[operator]

        return decode
