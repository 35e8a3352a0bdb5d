"""Writing a table's store directly, as ``Table.__setitem__`` would, without its changelog send.

Faust picks the partition of a table write from the event being processed (a context
variable private to ``faust.streams``); the tally writes a whole chunk at once, after the
events that touched each area, so it sets that variable to each area's latest event.
"""

from __future__ import annotations

import weakref
from typing import Any

from faust.streams import _current_event
from faust.types import EventT

__all__ = ["write_under_event"]


def write_under_event(store: Any, key: bytes, value: bytes, event: EventT) -> None:
    """``store[key] = value`` with ``event`` as Faust's current event (it gives the partition)."""
    token = _current_event.set(weakref.ref(event))
    try:
        store[key] = value
    finally:
        _current_event.reset(token)
