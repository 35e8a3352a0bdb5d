"""JSON encoding for values held a while (standings until their MSET, states until sent)."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps"]


def dumps(value: Any) -> bytes:
    """JSON bytes at their own size, for values held a while (standings until their MSET).

    orjson returns bytes that keep its whole growth buffer (at least 4 kB, 32 kB behind a 3 kB
    document). A batch holds thousands of standings: held as orjson returns them, each costs
    fresh memory pages, and keeping 6,000 events took 15-60 µs each instead of 1.5 µs. Messages
    for an ``Outbox`` need no copy: it appends them to a record batch at once.
    """
    return bytes(memoryview(orjson.dumps(value)))
