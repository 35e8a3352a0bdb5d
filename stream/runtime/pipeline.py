"""What the two hops do with a batch of messages: validate, route, tally, announce, pass upwards.

Two hops, so that a whole night is a few thousand internal messages, not hundreds of thousands:

1. ``route_results`` (the Faust agent on ``bureau-results``, keyed by bureau):
   validate each report, reject the invalid, and send the valid ones, one message per
   department per batch, to the contributions topic keyed by that department. It keeps no state.
2. ``tally_areas`` (the Faust agent on the contributions topic):
   each bureau's report goes into its commune (table ``areas``, child = bureau, version =
   ``seq``), each touched commune into its department (version = the offset of the message
   that last changed the commune); then one message per batch carries every touched department
   to the nation's key, on the nation topic;
3. ``tally_nation`` (the same code, as a second agent on the nation topic): each department
   into the nation.

One rule makes at-least-once delivery safe: every area a batch touched passes its *whole*
current total, with its version, to its parent, changed or not. A parent keeps per child the
highest version seen, so a re-sent total is ignored and a total lost in a crash is sent again
when the message behind it is re-delivered. Nothing is a delta, nothing counts twice.
A department's version is the highest version among its communes: the same messages replayed
in any batching give the same (version, total) pairs.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol, TypeVar

import orjson
import redis.asyncio as aioredis
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faust.streams import _current_event  # Faust picks a table write's partition from it
from faust.types import EventT, ProducerT, TableT
from redis.exceptions import RedisError

from stream.adapters.kafka.definitions import restore_from_log
from stream.adapters.kafka.outbox import Outbox, dumps
from stream.adapters.redis.elections import ElectionCache, ElectionIndex, ElectionsUnavailable
from stream.domain.aggregation import AreaState, Tally, area_key, split_area_key
from stream.domain.changes import detect_changes, make_standings
from stream.domain.messages import NATION, InvalidResult, make_rejection, validate_result
from stream.settings import Settings


class Record(Protocol):
    """What hop 1 and rejections need of a Kafka message (aiokafka's ``ConsumerRecord`` and
    Faust's ``Message`` both are one)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


__all__ = ["Pipeline", "results_key"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def results_key(election: str, level: str, area: str) -> str:
    """Redis key of an area's current standings (the ``soiree results --json`` object)."""
    return f"soiree:results:{election}:{level}:{area}"


#: Errors of a service being away, tried again rather than taken for a bad message.
OUTAGES = (KafkaError, RedisError, OSError, ElectionsUnavailable)


def internal_error(exc: Exception) -> str:
    """The reason given with a message that met a bug (the worker's log has the traceback)."""
    return (
        f"an internal error stopped it ({type(exc).__name__}: {exc}); please report it (the worker's "
        f"log has the details); the payload can be published again once it is fixed"
    )


def _reports_of(message: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]] | None:
    """The ``BureauResult`` s a department contribution was made of, or None if it is not one."""
    if not isinstance(message, dict) or message.get("l") != "department":
        return None
    try:
        return [
            (
                bureau,
                {
                    "election": message["e"],
                    "bureau": bureau,
                    "seq": seq,
                    "registered": registered,
                    "voters": voters,
                    "blank": blank,
                    "invalid": invalid,
                    "votes": votes,
                },
            )
            for bureau, seq, (_, registered, voters, blank, invalid, votes) in message["c"]
        ]
    except (KeyError, TypeError, ValueError):  # rows of another shape
        return None


@dataclass(slots=True)
class _Area:
    """An area loaded for one batch: its state, and what the batch did to it."""

    election: ElectionIndex
    level: str
    area: str
    key: bytes
    state: AreaState
    event: EventT  # the latest message that touched it: its partition is the table partition
    changed: bool = False  # since its last announcement
    written: bool = False  # announced in this chunk, so its state is written at the end
    cause: dict[str, Any] | None = None


#: Seconds before a batch that met an outage (Kafka refusing its outputs) is tried again (doubling up to 10 s).
OUTAGE_RETRY_DELAY = 0.5
#: Area states kept as objects between chunks (``Pipeline.held``): decoding a commune's stored
#: state each time a chunk touches it was a tenth of the tally's CPU.
HELD_STATES = 8192


@dataclass
class _Batch:
    """The areas of one batch, loaded once and written once."""

    table: TableT
    #: states as the previous chunks wrote them, by key (``Pipeline.held``)
    held: OrderedDict[bytes, AreaState]
    areas: dict[bytes, _Area] = field(default_factory=dict)

    def get(self, election: ElectionIndex, level: str, area: str, event: EventT) -> _Area:
        key = area_key(election.election, level, area).encode()
        found = self.areas.get(key)
        if found is None:
            state = self.held.pop(key, None)  # the batch's own while it runs; held again once written
            if state is None:
                raw = self.table.data.get(
                    key
                )  # the store itself: Table.get adds sensors and a __missing__ per key
                state = AreaState.from_json(orjson.loads(raw)) if raw is not None else AreaState()
            found = self.areas[key] = _Area(election, level, area, key, state, event)
        else:
            found.event = event
        return found


@dataclass
class Pipeline:
    """The state and outlets the agents share; built once per worker by ``app.create_app``."""

    settings: Settings
    elections: ElectionCache
    areas: TableT
    producer: ProducerT
    contributions: str
    nation: str
    redis: aioredis.Redis
    #: this worker's marker in Redis: when it disappears, Redis lost its data
    marker: str
    #: standings not yet written because Redis was unreachable (newest per key)
    pending_views: dict[str, bytes] = field(default_factory=dict)
    views_failing: bool = False
    #: one MSET at a time: Redis may run a later, smaller one (another connection) before it
    views_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: in-memory departments with their communes' totals (see ``_department``)
    departments: dict[bytes, AreaState] = field(default_factory=dict)
    #: communes' and the nation's states exactly as last written, most recent last (``_hold``)
    held: OrderedDict[bytes, AreaState] = field(default_factory=OrderedDict)
    #: bumped whenever held states are dropped: a chunk that ran meanwhile must not hold its own
    held_generation: int = 0
    marker_set: bool = False

    # -- hop 1: bureau-results ----------------------------------------------------------------
    async def on_results(self, records: list[Record]) -> None:
        """Validate and route a batch; returns once Kafka acknowledged everything it produced."""
        await self._through_outages(self._route, records)

    async def _route(self, records: list[Record]) -> None:
        outbox = Outbox(self.producer)
        by_department: dict[tuple[str, str], list[list[Any]]] = {}
        for record in records:
            try:
                election, department, row = await self._waiting_for_redis(self._validate, record)
            except InvalidResult as exc:
                self.reject(outbox, record, str(exc))
                continue
            except OUTAGES:
                raise
            except Exception as exc:  # a bug met by this report: to the dead letters, not lost
                log.exception("Routing failed on %s[%s]@%s", record.topic, record.partition, record.offset)
                self.reject(outbox, record, f"not processed: {internal_error(exc)}")
                continue
            by_department.setdefault((election, department), []).append(row)
        for (election, department), rows in by_department.items():
            message = {"e": election, "l": "department", "a": department, "c": rows}
            outbox.add(
                self.contributions,
                area_key(election, "department", department).encode(),
                orjson.dumps(message),
            )
        await outbox.deliver()

    def _validate(self, record: Record) -> tuple[str, str, list[Any]]:
        """(election, department, [bureau, seq, tally]) of a valid report, or InvalidResult."""
        result = validate_result(record.value or b"", self.elections, self.settings.max_message_bytes)
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        if key != result.bureau:
            raise InvalidResult(
                f"bureau {result.bureau}: message key {key!r} must be the bureau id "
                f"(all reports of a bureau must share a partition to keep their order)"
            )
        election = self.elections.get(result.election)
        assert election is not None  # validate_result checked it
        entry = election.roll[result.bureau]
        tally = Tally.of_result(result, entry.registered)
        return result.election, entry.department, [result.bureau, result.seq, tally.to_json()]

    def reject(
        self,
        outbox: Outbox,
        message: Record,
        reason: str,
        payload: bytes | None = None,
        key: bytes | None = None,
    ) -> None:
        """Dead-letter ``message`` (or ``payload``, under ``key``, found in it) with ``reason``."""
        if payload is None:
            payload, key = message.value or b"", message.key
        rejection = make_rejection(
            payload,
            reason,
            key=None if key is None else key.decode("utf-8", "backslashreplace"),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        log.warning("Rejected %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason)
        outbox.add(self.settings.rejected_topic, key, rejection.model_dump_json().encode())

    # -- hop 2: contributions ------------------------------------------------------------
    async def on_contributions(self, events: list[EventT]) -> None:
        """Tally what the agent took, in chunks of about ``batch_size`` reports.

        One contribution carries up to a whole routing batch, so a few hundred of them can hold
        a night: a chunk bounds the events held in memory and the time before the first goes
        out. Chunks end between messages: the versions passed upwards are the messages'.
        """
        chunk: list[tuple[EventT, dict[str, Any]]] = []
        reports = 0
        for event in events:
            try:
                message = orjson.loads(event.message.value)
                reports += len(message["c"])
            except Exception as exc:  # not one of ours: written to the topic by something else
                await self._dead_letter(event, None, exc)
                continue
            chunk.append((event, message))
            if reports >= self.settings.batch_size:
                await self._tally_or_isolate(chunk)
                chunk, reports = [], 0
        if chunk:
            await self._tally_or_isolate(chunk)

    async def _tally_or_isolate(self, chunk: list[tuple[EventT, dict[str, Any]]]) -> None:
        """``_tally`` the chunk; should it fail other than by an outage, each message on its own.

        An error raised out of the agent would lose the chunk (Faust acknowledges a crashed
        agent's messages, ``_through_outages``), and retrying the chunk whole would fail
        forever on the one message that meets a bug. Tallied one by one, the others count and
        the culprit goes to the dead letters with the error, its reports listed for publishing
        again once the bug is fixed.
        """
        try:
            await self._through_outages(self._tally, chunk)  # outages are waited out in there
        except Exception as exc:
            if len(chunk) == 1:
                await self._dead_letter(*chunk[0], exc)
                return
            log.exception("A chunk of %d contributions failed; tallying them one by one", len(chunk))
            for message in chunk:
                await self._tally_or_isolate([message])

    async def _dead_letter(self, event: EventT, message: dict[str, Any] | None, exc: Exception) -> None:
        """A contribution the tally cannot take, to the dead-letter topic: each of its reports
        rebuilt as the ``BureauResult`` it came from (the rows carry all of its counts), so that
        publishing the rejected payloads again recounts them; a message of any other shape as it is."""
        log.error(
            "Contribution %s[%s]@%s dead-lettered",
            event.message.topic,
            event.message.partition,
            event.message.offset,
            exc_info=exc,
        )
        await self._through_outages(self._send_dead_letters, (event, message, exc))

    async def _send_dead_letters(self, failed: tuple[EventT, dict[str, Any] | None, Exception]) -> None:
        event, message, exc = failed
        outbox = Outbox(self.producer)
        reason = f"not tallied: {internal_error(exc)}"
        reports = _reports_of(message)
        if reports is None:
            self.reject(outbox, event.message, f"contribution {reason}")
        for bureau, report in reports or ():
            self.reject(
                outbox,
                event.message,
                f"bureau {bureau}: {reason}",
                payload=orjson.dumps(report),
                key=bureau.encode(),
            )
        await outbox.deliver()

    async def _tally(self, messages: list[tuple[EventT, dict[str, Any]]]) -> None:
        """``_tally_chunk``, keeping its states as objects for the next chunks once written.

        A chunk changes its states in place; one that does not finish (an error, a rebalance
        cancelling it) leaves them ahead of the store, so every state kept in memory is dropped
        and read again from the store.
        """
        generation = self.held_generation
        try:
            batch = await self._tally_chunk(messages)
        except BaseException:
            self.forget_states()
            raise
        if generation == self.held_generation:  # no rebalance meanwhile: these are still ours
            self._hold(batch)

    def _hold(self, batch: _Batch) -> None:
        held = self.held
        for area in batch.areas.values():
            if area.level != "department":  # departments live in ``departments``
                held[area.key] = area.state
        while len(held) > HELD_STATES:
            held.popitem(
                last=False
            )  # the least recently written (a dict's first key is O(n) to find after deletions)

    async def _tally_chunk(self, messages: list[tuple[EventT, dict[str, Any]]]) -> _Batch:
        """One chunk: changes detected message by message, outputs sent once, state written last.

        Events are decided after each message, never across a chunk: they are then a function
        of the stored state and the log alone, whatever the chunking. That is what makes a crash
        safe for the events: a worker killed after its events went out but before its state was
        stored resumes from the earlier state, re-reads the same messages and announces the same
        changes again (repeats). Decided per chunk, the replay could lump together a change and
        its undoing (FILLON -> LE PEN -> FILLON) and announce nothing, leaving subscribers with
        the LE PEN of the lost run (a CI run of 2026-11-26 failed on it).
        """
        batch = _Batch(self.areas, self.held)
        outbox = Outbox(self.producer)
        views: dict[str, bytes] = {}
        touched_departments: dict[bytes, _Area] = {}
        at = datetime.now(UTC).isoformat()  # one time for the chunk's events
        for event, message in messages:
            election = await self._waiting_for_redis(self.elections.get, message["e"])
            if election is None:
                self.reject(outbox, event.message, f"contribution for unknown election {message['e']!r}")
            elif message["l"] == "department":
                touched_departments.update(
                    self._into_communes(batch, election, event, message, outbox, views, at)
                )
            else:
                nation = self._into_nation(batch, election, event, message)
                if nation.changed:
                    self._announce(outbox, nation, views, at)
        # Outputs first, state last: the state records what was announced, so it is written only
        # once the events are in Kafka. A crash in between re-delivers the chunk, which then
        # changes the state again and announces again (at least once). Standings of everything
        # the chunk touched are rewritten, changed or not, so a re-delivery repairs them too.
        for area in batch.areas.values():
            if not area.written:
                view_key, standings = self._area_standings(
                    area.election, area.level, area.area, area.state.total
                )
                views[view_key] = dumps(standings)
        self._forward_to_nation(outbox, touched_departments.values())
        await outbox.deliver()
        await self.write_views(views)
        # Departments before their communes: should a crash keep only part of these records, a
        # department's announced state is then ahead of its communes, never behind, and the
        # replay announces from what subscribers last heard.
        records = [
            (area, self._write(area))
            for area in sorted(batch.areas.values(), key=lambda area: area.level != "department")
            if area.written
        ]
        # The store has the states now: only their records are tried again if Kafka refuses them
        # (tried again whole, the chunk would find nothing new in the store and send none).
        await self._through_outages(self._send_changelog, records)
        return batch

    def _department(self, batch: _Batch, election: ElectionIndex, code: str, event: EventT) -> _Area:
        """A department, whose children (its communes' totals) live only in memory.

        Written with its children, a department would be rewritten whole (hundreds of communes)
        by every batch that touches it, and interleaved national traffic touches them all. Its
        total is instead derived from its communes' states, which are each written atomically,
        so it is right after any crash; only its total and what was announced are stored.
        """
        key = area_key(election.election, "department", code).encode()
        area = batch.areas.get(key)
        if area is not None:
            area.event = event
            return area
        state = self.departments.get(key)
        if state is None:
            state = self.departments[key] = self._rebuild_department(election, key, code)
        area = batch.areas[key] = _Area(election, "department", code, key, state, event)
        return area

    def _rebuild_department(self, election: ElectionIndex, key: bytes, code: str) -> AreaState:
        raw = self.areas.data.get(key)
        stored = AreaState.from_json(orjson.loads(raw)) if raw is not None else AreaState()
        state = AreaState(announced=stored.announced)
        for commune in election.communes_of_department[code]:
            raw = self.areas.data.get(area_key(election.election, "commune", commune).encode())
            if raw is not None:
                commune_state = AreaState.from_json(orjson.loads(raw))
                state.apply(commune, commune_state.version, commune_state.total)
                state.version = max(state.version, commune_state.version)
        return state

    def forget_states(self, *args: Any, **kwargs: Any) -> None:
        """Partitions move (or a chunk failed): states are read again from the store, and
        department totals rebuilt from the communes the worker then holds."""
        self.departments.clear()
        self.held.clear()
        self.held_generation += 1

    def _into_communes(
        self,
        batch: _Batch,
        election: ElectionIndex,
        event: EventT,
        message: dict[str, Any],
        outbox: Outbox,
        views: dict[str, bytes],
        at: str,
    ) -> dict[bytes, _Area]:
        """One contribution: its bureaux into their communes, the communes into their department,
        then the events of everything it changed. Returns the departments it touched."""
        offset = event.message.offset
        roll = election.roll
        communes: dict[bytes, _Area] = {}
        for bureau, seq, tally_json in message["c"]:
            commune = batch.get(election, "commune", roll[bureau].commune, event)
            tally = Tally.from_json(tally_json)
            if commune.state.apply(bureau, seq, tally):
                commune.changed = True
                commune.state.version = offset
                commune.cause = {"bureau": bureau, "seq": seq}
                self._announce_bureau(outbox, commune, bureau, seq, tally, views, at)
            else:
                view_key, standings = self._bureau_standings(
                    election, bureau, commune.state.children[bureau][1]
                )
                views[view_key] = dumps(standings)
            communes[commune.key] = commune
        touched: dict[bytes, _Area] = {}
        for commune in communes.values():
            department = self._department(batch, election, election.roll_by_commune[commune.area], event)
            # a copy: the department keeps it as the commune's total, which a later message may change
            if department.state.apply(commune.area, commune.state.version, commune.state.total.copy()):
                department.changed = True
                department.state.version = max(department.state.version, commune.state.version)
                department.cause = commune.cause or department.cause
            touched[department.key] = department
            if commune.changed:
                self._announce(outbox, commune, views, at)
        for department in touched.values():
            if department.changed:
                self._announce(outbox, department, views, at)
        return touched

    def _into_nation(
        self, batch: _Batch, election: ElectionIndex, event: EventT, message: dict[str, Any]
    ) -> _Area:
        nation = batch.get(election, "nation", NATION, event)
        for department, version, tally_json, cause in message["c"]:
            if nation.state.apply(department, version, Tally.from_json(tally_json)):
                nation.changed = True
                nation.state.version = event.message.offset
                nation.cause = cause
        return nation

    def _forward_to_nation(self, outbox: Outbox, departments: Iterable[_Area]) -> None:
        by_election: dict[str, list[list[Any]]] = {}
        for department in departments:
            state = department.state
            row = [department.area, state.version, state.total.to_json(), department.cause]
            by_election.setdefault(department.election.election, []).append(row)
        for election, rows in by_election.items():
            message = {"e": election, "l": "nation", "a": NATION, "c": rows}
            outbox.add(self.nation, area_key(election, "nation", NATION).encode(), orjson.dumps(message))

    # -- announcing ----------------------------------------------------------------------
    def _announce_bureau(
        self,
        outbox: Outbox,
        commune: _Area,
        bureau: str,
        seq: int,
        tally: Tally,
        views: dict[str, bytes],
        at: str,
    ) -> None:
        """A bureau's own events; what was said about it is kept in its commune's state."""
        view_key, standings = self._bureau_standings(commune.election, bureau, tally)
        announced = commune.state.child_announced.get(bureau, {})
        cause = {"bureau": bureau, "seq": seq}
        events, commune.state.child_announced[bureau] = detect_changes(
            announced, standings, tally, self.settings.turnout_step, cause, at
        )
        self._publish(outbox, view_key, bureau, standings, events, views)

    def _announce(self, outbox: Outbox, area: _Area, views: dict[str, bytes], at: str) -> None:
        state = area.state
        view_key, standings = self._area_standings(area.election, area.level, area.area, state.total)
        events, state.announced = detect_changes(
            state.announced, standings, state.total, self.settings.turnout_step, area.cause, at
        )
        area.changed, area.written = False, True
        self._publish(outbox, view_key, area.area, standings, events, views)

    def _publish(
        self,
        outbox: Outbox,
        view_key: str,
        area: str,
        standings: dict[str, Any],
        events: list[dict[str, Any]],
        views: dict[str, bytes],
    ) -> None:
        views[view_key] = dumps(standings)
        if standings["level"] in self.settings.event_levels:
            for change in events:
                outbox.add(self.settings.updates_topic, area.encode(), orjson.dumps(change))

    # -- Kafka and Redis outages ------------------------------------------------------------
    async def _through_outages(self, work: Callable[[T], Awaitable[None]], batch: T) -> None:
        """``work(batch)``, again (with backoff) for as long as Kafka refuses its outputs (or
        any other outage reaches it: ``OUTAGES``).

        Raised out of the agent, the error would crash it: Faust restarts a crashed agent, but
        acknowledges the messages it had taken, so their offsets get committed and they are
        never tallied. Tried again instead, the batch starts from the stored state (a failed
        tally drops what it held, ``_tally``), exactly as a re-delivery would.
        """
        delay = OUTAGE_RETRY_DELAY
        while True:
            try:
                return await work(batch)
            except OUTAGES as exc:
                log.warning("A batch met an outage (%r); trying it again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _waiting_for_redis(self, call: Callable[[Any], T], arg: Any) -> T:
        """``call(arg)``, waiting (with backoff) while an unknown election cannot be looked up."""
        delay = 0.2
        while True:
            try:
                return call(arg)
            except ElectionsUnavailable as exc:
                log.warning("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def write_views(self, views: dict[str, bytes]) -> None:
        """Write standings; while Redis is away they wait here (latest per area) and go later."""
        self.pending_views.update(views)
        # The two agents and the Redis check write in turn. Overlapping, the 30,000 standings
        # waiting after an outage (a 15 MB MSET) could land after a newer standing sent meanwhile
        # on another connection, and put an older one back for good.
        async with self.views_lock:
            if not self.pending_views:
                return
            writing = dict(self.pending_views)
            try:
                await self.redis.mset(writing)
            except (RedisError, OSError) as exc:
                if not self.views_failing:
                    log.warning("Redis unreachable, standings wait in memory until it is back: %s", exc)
                self.views_failing = True
            else:
                if self.views_failing:
                    log.warning("Redis is back: %d waiting standings written", len(writing))
                self.views_failing = False
                for key, value in writing.items():  # keep what was added meanwhile
                    if self.pending_views.get(key) is value:
                        del self.pending_views[key]

    async def check_redis(self) -> None:
        """Called every second: retry waiting standings; if Redis lost everything (restarted
        without persistence), register the elections again and rewrite every standing this
        worker holds. The table store rebuilds its own keys the same way."""
        try:
            if not self.marker_set:
                self.marker_set = bool(await self.redis.set(self.marker, "1", ex=3600))
            elif not await self.redis.set(self.marker, "1", ex=3600, xx=True):
                await self.restore()
                await self.redis.set(self.marker, "1", ex=3600)
            elif getattr(self.areas.data, "rebuilt_from_changelog", False):
                # Redis was wiped before this worker started (its marker could not tell): the
                # table came back from the changelog, the standings must come back from the table
                self.areas.data.rebuilt_from_changelog = False
                await self.restore()
        except (RedisError, OSError) as exc:
            log.warning("Redis unreachable: %s", exc)
            return
        except KafkaError as exc:  # the marker stays missing: tried again in a second
            log.warning("Redis lost its data and the election definitions cannot be read from Kafka: %s", exc)
            return
        await self.write_views({})

    async def restore(self) -> None:
        """Elections (from the durable log, and this worker's memory) and standings back into a
        wiped Redis. Until the marker is back, reports of elections Redis lacks wait.

        Written with SET NX: the agents keep running meanwhile, and a standing they wrote since
        the wipe is newer than the one computed here."""
        from_log = await restore_from_log(self.settings, self.redis)
        restored = 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for election in self.elections.known():
                pipe.set(f"soiree:election:{election.election}", election.definition_json(), nx=True)
                pipe.sadd("soiree:elections", election.election)
            for count, (key, raw) in enumerate(list(self.areas.data.items())):
                if count % 1000 == 999:
                    await asyncio.sleep(0)  # a national night is ~100,000 standings: let the agents run
                election_id, level, area = split_area_key(key.decode())
                try:
                    election = self.elections.get(election_id)
                except ElectionsUnavailable:  # in no log, in no memory: nothing to show it with
                    election = None
                if election is None or raw is None:
                    continue
                state = self.departments.get(key) if level == "department" else None
                state = state or AreaState.from_json(orjson.loads(raw))
                for view_key, standings in self._standings_of(election, level, area, state):
                    pipe.set(view_key, dumps(standings), nx=True)
                    restored += 1
            await pipe.execute()
        log.warning(
            "Redis had lost its data: restored %d elections from the log, %d from memory, and %d standings",
            len(from_log),
            len(self.elections.known()),
            restored,
        )

    @staticmethod
    def _area_standings(
        election: ElectionIndex, level: str, area: str, total: Tally
    ) -> tuple[str, dict[str, Any]]:
        name, bureaux_total = election.areas[(level, area)]
        standings = make_standings(
            election.election, level, area, name, bureaux_total, total, election.candidate_list
        )
        return results_key(election.election, level, area), standings

    @staticmethod
    def _bureau_standings(election: ElectionIndex, bureau: str, tally: Tally) -> tuple[str, dict[str, Any]]:
        name = election.areas[("bureau", bureau)][0]
        standings = make_standings(
            election.election, "bureau", bureau, name, 1, tally, election.candidate_list
        )
        return results_key(election.election, "bureau", bureau), standings

    def _standings_of(
        self, election: ElectionIndex, level: str, area: str, state: AreaState
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The standings of an area, and of its bureaux for a commune."""
        yield self._area_standings(election, level, area, state.total)
        if level == "commune":
            for bureau, (_, tally) in state.children.items():
                yield self._bureau_standings(election, bureau, tally)

    # -- output --------------------------------------------------------------------------
    def _write(self, area: _Area) -> bytes:
        """table[key] = state as of the area's latest message; returns it for the changelog.

        What ``Table.__setitem__`` does, but with the changelog records of a whole batch sent
        as record batches (``_send_changelog``): Faust sends each one with its own future through
        a 100-message buffer, which took half the time of a night with reports interleaved
        across the country.
        """
        value = dumps(area.state.to_json(with_children=area.level != "department"))  # held until sent
        token = _current_event.set(weakref.ref(area.event))
        try:
            self.areas.data[area.key] = value  # the store: the partition comes from the event
        finally:
            _current_event.reset(token)
        return value

    async def _send_changelog(self, records: list[tuple[_Area, bytes]]) -> None:
        """Each record goes to the partition of its area's latest message (the table's partition,
        as Faust would choose it); the store learns the offset once Kafka acknowledged it."""
        changelog = Outbox(self.producer)
        for area, value in records:
            changelog.add(self._changelog_topic, area.key, value, partition=area.event.message.partition)
        await changelog.send(on_delivered=self._changelog_delivered)

    @cached_property
    def _changelog_topic(self) -> str:
        return self.areas.changelog_topic.get_topic_name()

    def _changelog_delivered(self, partition: TopicPartition, offset: int) -> None:
        self.areas.data.set_persisted_offset(partition, offset)  # as Faust's own changelog callback does
