"""What the agents do with a batch of messages: validate, apply, announce, pass upwards.

One rule makes at-least-once delivery safe: after a batch, every area it touched sends its
*whole* current total, with its version, to its parent, changed or not. A parent keeps, per
child, the highest version it has seen, so a re-sent total is ignored and a lost one is sent
again when the message behind it is re-delivered. Nothing is a delta, nothing counts twice.

Versions: a bureau's is its report's ``seq``; any other area's is the offset (in the
contributions topic) of the last message that changed it. Offsets only grow, and replaying a
partition from any committed offset recomputes the same (version, total) pairs.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
import redis.asyncio as aioredis
from faust.streams import _current_event  # Faust picks a table write's partition from it
from faust.types import EventT, ProducerT, TableT

from .aggregation import AreaState, Tally, area_key
from .changes import detect_changes, make_standings
from .elections import ElectionCache
from .models import Election, InvalidResult, Rejection, describe_payload, validate_result
from .settings import Settings

__all__ = ["Pipeline", "Update", "results_key"]

log = logging.getLogger(__name__)


def results_key(election: str, level: str, area: str) -> str:
    """Redis key of an area's current standings (the ``soiree results --json`` object)."""
    return f"soiree:results:{election}:{level}:{area}"


@dataclass(slots=True)
class Update:
    """One child's contribution to one area, and the message it came from."""

    event: EventT
    election: Election
    level: str
    area: str
    child: str
    version: int
    tally: Tally
    cause: dict[str, Any] | None
    #: the version the area takes if this update changes it (seq for a bureau, offset above)
    area_version: int


@dataclass(slots=True)
class _Touched:
    update: Update
    state: AreaState
    changed: bool = False
    cause: dict[str, Any] | None = None
    event: Any = None


@dataclass
class Pipeline:
    """The state and outlets the agents share; built once per worker by ``app.create_app``."""

    settings: Settings
    elections: ElectionCache
    bureaux: TableT
    areas: TableT
    producer: ProducerT
    rejected: str
    updates: str
    contributions: str
    redis: aioredis.Redis
    counters: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "rejected": 0})

    # -- bureau-results -------------------------------------------------------------------
    async def on_results(self, events: list[EventT]) -> None:
        updates: list[Update] = []
        for event in events:
            try:
                updates.append(self._bureau_update(event))
            except InvalidResult as exc:
                await self.reject(event, str(exc))
        self.counters["accepted"] += len(updates)
        await self._apply(self.bureaux, updates)

    def _bureau_update(self, event: EventT) -> Update:
        message = event.message
        raw = message.value if message.value is not None else b""
        result = validate_result(raw, self.elections, self.settings.max_message_bytes)
        key = message.key.decode("utf-8", "replace") if message.key is not None else None
        if key != result.bureau:
            raise InvalidResult(
                f"bureau {result.bureau}: message key {key!r} must be the bureau id "
                f"(all reports of a bureau must share a partition to keep their order)"
            )
        election = self.elections.get(result.election)
        assert election is not None  # validate_result checked it
        registered = election.roll[result.bureau].registered
        return Update(
            event=event,
            election=election,
            level="bureau",
            area=result.bureau,
            child=result.bureau,
            version=result.seq,
            tally=Tally.of_result(result, registered),
            cause={"bureau": result.bureau, "seq": result.seq},
            area_version=result.seq,
        )

    async def reject(self, event: EventT, reason: str) -> None:
        message = event.message
        payload, is_utf8 = describe_payload(message.value or b"")
        rejection = Rejection(
            reason=reason,
            payload=payload,
            payload_utf8=is_utf8,
            key=None if message.key is None else message.key.decode("utf-8", "backslashreplace"),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            at=datetime.now(timezone.utc),
        )
        self.counters["rejected"] += 1
        log.warning("Rejected %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason)
        await self._send(self.rejected, message.key, rejection.model_dump_json().encode())

    # -- contributions (commune, department, nation) -----------------------------------------
    async def on_contributions(self, events: list[EventT]) -> None:
        updates: list[Update] = []
        for event in events:
            data = orjson.loads(event.message.value)
            election = self.elections.get(data["e"])
            if election is None:
                await self.reject(event, f"contribution for unknown election {data['e']!r}")
                continue
            updates.append(
                Update(
                    event=event,
                    election=election,
                    level=data["l"],
                    area=data["a"],
                    child=data["c"],
                    version=data["v"],
                    tally=Tally.from_json(data["t"]),
                    cause=data.get("cause"),
                    area_version=event.message.offset,
                )
            )
        await self._apply(self.areas, updates)

    # -- shared --------------------------------------------------------------------------
    async def _apply(self, table: TableT, updates: list[Update]) -> None:
        touched: dict[str, _Touched] = {}
        for update in updates:
            key = area_key(update.election.election, update.level, update.area)
            entry = touched.get(key)
            if entry is None:
                raw = table.get(key.encode())
                state = AreaState.from_json(orjson.loads(raw)) if raw is not None else AreaState()
                entry = touched[key] = _Touched(update=update, state=state, event=update.event)
            if entry.state.apply(update.child, update.version, update.tally):
                entry.changed = True
                entry.state.version = update.area_version
                entry.cause = update.cause
                entry.event = update.event
        views: dict[str, bytes] = {}
        for key, entry in touched.items():
            if entry.changed:
                await self._announce(key, entry, views)
                self._write(table, entry.event, key.encode(), orjson.dumps(entry.state.to_json()))
            await self._forward(entry)
        if views:
            await self.redis.mset(views)

    async def _announce(self, key: str, entry: _Touched, views: dict[str, bytes]) -> None:
        update, state = entry.update, entry.state
        election = update.election
        name, bureaux_total = election.areas[(update.level, update.area)]
        standings = make_standings(
            election.election,
            update.level,
            update.area,
            name,
            bureaux_total,
            state.total,
            [c.id for c in election.candidates],
        )
        events, state.announced = detect_changes(
            state.announced, standings, state.total, self.settings.turnout_step, entry.cause
        )
        views[results_key(election.election, update.level, update.area)] = orjson.dumps(standings)
        if update.level in self.settings.event_levels:
            for change in events:
                await self._send(self.updates, update.area.encode(), orjson.dumps(change))

    async def _forward(self, entry: _Touched) -> None:
        update, state = entry.update, entry.state
        parent = update.election.parent_of(update.level, update.area)
        if parent is None:
            return
        level, area = parent
        election = update.election.election
        cause = entry.cause or update.cause
        message = {
            "e": election,
            "l": level,
            "a": area,
            "c": update.area,
            "v": state.version,
            "t": state.total.to_json(),
            "cause": cause,
        }
        await self._send(self.contributions, area_key(election, level, area).encode(), orjson.dumps(message))

    async def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Straight to the producer: Faust flushes it before committing offsets (at-least-once),
        without the per-message cost of ``Topic.send``."""
        await self.producer.send(topic, key, value, None, None, None)

    @staticmethod
    def _write(table: TableT, event: EventT, key: bytes, value: bytes) -> None:
        """table[key] = value as of ``event``: the changelog and the store use its partition."""
        token = _current_event.set(weakref.ref(event))
        try:
            table[key] = value
        finally:
            _current_event.reset(token)
