"""One chunk of the tally as a transaction: its areas loaded once, changed in memory, and
committed in a fixed order that makes a crash at any step safe (see ``AreaTransaction.commit``)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import TopicPartition
from faust.types import EventT, ProducerT, TableT

from stream.domain.aggregation import AreaState, area_key
from stream.domain.encoding import dumps
from stream.domain.roll import ElectionIndex
from stream.runtime.faust.outbox import Outbox
from stream.runtime.faust.table_writes import write_under_event
from stream.runtime.outages import through_outages
from stream.runtime.standings import StandingsWriter, area_standings

__all__ = ["TouchedArea", "AreaTransaction", "ChunkFenced", "DERIVED_LEVELS"]

#: Levels whose states live in the tally's memory, derived from their communes', and are stored
#: without their children (``runtime.tally.Tallier._derived``).
DERIVED_LEVELS = frozenset({"department", "circonscription"})


class ChunkFenced(Exception):
    """Some of the chunk's table partitions are not this worker's any more (another loaded them
    since: this one lost them without knowing, paused past its session timeout; or they were
    dropped or given up here): the chunk stops before it sends or writes anything (events, the
    departments' totals for the nation, standings, changelog, state). A worker paused right
    between that check and the sends still lets them out when it wakes; the standings, changelog
    and state are fenced again after. ``partitions``: those not this worker's."""

    def __init__(self, partitions: set[int]) -> None:
        super().__init__(f"table partitions {sorted(partitions)} have another owner")
        self.partitions = partitions


@dataclass(slots=True)
class TouchedArea:
    """An area loaded for one chunk: its state, and what the chunk did to it."""

    election: ElectionIndex
    level: str
    area: str
    key: bytes
    state: AreaState
    event: EventT  # the latest message that touched it: its partition is the table partition
    changed: bool = False  # since its last announcement
    written: bool = False  # announced in this chunk, so its state is written at the end
    cause: dict[str, Any] | None = None


@dataclass
class AreaTransaction:
    """The areas of one chunk, the messages it produces and the standings it shows."""

    table: TableT
    #: states exactly as previous chunks wrote them, by key (``Tallier.held``); taken while in use
    held: OrderedDict[bytes, AreaState]
    producer: ProducerT
    areas: dict[bytes, TouchedArea] = field(default_factory=dict)
    #: events, dead letters and the departments' totals for the nation
    outbox: Outbox = field(init=False)
    #: standings to write, by Redis key
    views: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.outbox = Outbox(self.producer)

    def get(self, election: ElectionIndex, level: str, area: str, event: EventT) -> TouchedArea:
        key = area_key(election.tally_id, level, area).encode()
        found = self.areas.get(key)
        if found is None:
            state = self.held.pop(key, None)  # the chunk's own while it runs; held again once written
            if state is None:
                raw = self.table.data.get(key)  # the store itself: Table.get adds sensors per key
                state = AreaState.from_json(orjson.loads(raw)) if raw is not None else AreaState()
            found = self.areas[key] = TouchedArea(election, level, area, key, state, event)
        else:
            found.event = event
        return found

    def add(self, area: TouchedArea) -> None:
        """An area the caller loaded itself (a department, from memory)."""
        self.areas[area.key] = area

    async def commit(self, standings: StandingsWriter) -> None:
        """Outputs first, state last, in this order:

        1. every area the chunk loaded but did not announce gets its standings rewritten,
           changed or not, so that a re-delivery repairs them too;
        2. provided the chunk's table partitions are still this worker's (their owner
           epochs in Redis, ``ChunkFenced``), the outbox goes to Kafka and is acknowledged
           (events, dead letters, the departments' totals for the nation): the state records
           what was announced, so it is written only once the events are in Kafka;
        3. the standings go to Redis (or wait in memory while it is away), under the same
           check, atomic with the writes this time;
        4. the announced areas' states go to the changelog as record batches, and Kafka
           acknowledges them; only these are retried on an outage (retried whole, the chunk
           would find nothing new in the store and send none);
        5. then only, they go to the table store (which flushes to Redis on its own timer),
           departments and circonscriptions before their communes: should a crash keep only
           part of them, their announced state is then ahead of their communes, never behind,
           and the replay announces from what subscribers last heard. A state in the store
           before its changelog record is acknowledged could reach Redis, a crash re-deliver
           the chunk, the chunk find nothing new and send no record: the changelog, which is
           what a Redis that lost its data is rebuilt from, would lack it for good.

        A crash before step 5 re-delivers the chunk, which changes the state again and
        announces again (at least once); nothing counts twice, since every contribution carries
        a whole total and a version.
        """
        for area in self.areas.values():  # 1
            if not area.written:
                view_key, shown = area_standings(area.election, area.level, area.area, area.state)
                self.views[view_key] = dumps(shown)
        await self._check_owner()
        await self.outbox.deliver()  # 2
        if not await standings.write(self.views, self._owner_epochs()):  # 3
            await self._check_owner()  # taken meanwhile: drops them
            raise ChunkFenced(self._partitions())
        records = [
            (area, dumps(area.state.to_json(with_children=area.level not in DERIVED_LEVELS)))
            for area in sorted(self.areas.values(), key=lambda area: area.level not in DERIVED_LEVELS)
            if area.written
        ]
        offsets = await through_outages(self._send_changelog, records)  # 4
        store: Any = self.table.data  # the Redis store (or Faust's): a changelog offset per partition
        for area, value in records:  # 5
            write_under_event(store, area.key, value, area.event)
        for partition, offset in offsets.items():  # stored with the data, at the store's next flush
            store.set_persisted_offset(partition, offset)  # as Faust's own changelog callback does

    def _partitions(self) -> set[int]:
        return {area.event.message.partition for area in self.areas.values()}

    async def _check_owner(self) -> None:
        """``ChunkFenced`` if another worker loaded some of the chunk's partitions since (a
        zombie's departments' totals, sent to the nation, would be taken for the newest)."""
        stale_partitions = getattr(self.table.data, "stale_partitions", None)
        if stale_partitions is not None:
            stale = await stale_partitions(self._partitions())
            if stale:
                raise ChunkFenced(stale)

    def _owner_epochs(self) -> dict[str, int] | None:
        """The owner epochs of the chunk's table partitions (``RedisStore``; other stores have none)."""
        epochs = getattr(self.table.data, "owner_epochs", None)
        return epochs(self._partitions()) if epochs is not None else None

    async def _send_changelog(self, records: list[tuple[TouchedArea, bytes]]) -> dict[TopicPartition, int]:
        """The chunk's states as changelog records, sent and acknowledged; returns the offset of
        the last one in each partition.

        What ``Table.__setitem__`` does, but with a whole chunk's records sent as record batches:
        Faust sends each one with its own future through a 100-message buffer, which took half
        the time of a night with reports interleaved across the country. Each record goes to the
        partition of its area's latest message (the table's partition, as Faust would choose it).
        """
        changelog = Outbox(self.producer)
        topic = self.table.changelog_topic.get_topic_name()
        for area, value in records:
            changelog.add(topic, area.key, value, partition=area.event.message.partition)
        offsets: dict[TopicPartition, int] = {}

        def delivered(partition: TopicPartition, offset: int) -> None:
            offsets[partition] = max(offset, offsets.get(partition, -1))

        sent = await changelog.send(on_delivered=delivered)
        if sent:
            await asyncio.gather(*sent)
        return offsets
