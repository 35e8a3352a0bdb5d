"""Hop 2, ``tally_areas`` and ``tally_nation``: contributions into the ``areas`` table.

Each bureau's report goes into its commune (child = bureau, version = ``seq``), each touched
commune into its department (version = the offset of the message that last changed the
commune); then one message per chunk carries every touched department to the nation's key, on
the nation topic, where the same code puts each department into the nation.

One rule makes at-least-once delivery safe: every area a chunk touched passes its *whole*
current total, with its version, to its parent, changed or not. A parent keeps per child the
highest version seen, so a re-sent total is ignored and a total lost in a crash is sent again
when the message behind it is re-delivered. Nothing is a delta, nothing counts twice.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from faust.types import EventT, ProducerT, TableT

from stream.adapters.redis.elections import ElectionCache
from stream.domain.aggregation import AreaState, Tally, area_key
from stream.domain.changes import detect_changes
from stream.domain.contributions import DepartmentRow, nation_message
from stream.domain.encoding import dumps
from stream.domain.messages import NATION
from stream.domain.roll import ElectionIndex
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.outages import through_outages, waiting_for_redis
from stream.runtime.standings import StandingsWriter, area_standings, bureau_standings
from stream.runtime.transaction import AreaTransaction, TouchedArea
from stream.settings import Settings

__all__ = ["Tallier", "HELD_STATES"]

log = logging.getLogger(__name__)

#: Area states kept as objects between chunks (``Tallier.held``): decoding a commune's stored
#: state each time a chunk touches it was a tenth of the tally's CPU.
HELD_STATES = 8192

Contribution = tuple[EventT, dict[str, Any]]


class Tallier:
    """The tally's state between chunks (held states, in-memory departments) and its steps."""

    def __init__(
        self,
        settings: Settings,
        elections: ElectionCache,
        areas: TableT,
        producer: ProducerT,
        nation_topic: str,
        dead_letters: DeadLetters,
        standings: StandingsWriter,
    ) -> None:
        self.settings = settings
        self.elections = elections
        self.areas = areas
        self.producer = producer
        self.nation_topic = nation_topic
        self.dead_letters = dead_letters
        self.standings = standings
        #: in-memory departments with their communes' totals (see ``_department``)
        self.departments: dict[bytes, AreaState] = {}
        #: communes' and the nation's states exactly as last written, most recent last (``_hold``)
        self.held: OrderedDict[bytes, AreaState] = OrderedDict()
        #: bumped whenever held states are dropped: a chunk that ran meanwhile must not hold its own
        self.held_generation = 0

    async def on_contributions(self, events: list[EventT]) -> None:
        """Tally what the agent took, in chunks of about ``batch_size`` reports.

        One contribution carries up to a whole routing batch, so a few hundred of them can hold
        a night: a chunk bounds the events held in memory and the time before the first goes
        out. Chunks end between messages: the versions passed upwards are the messages'.
        """
        chunk: list[Contribution] = []
        reports = 0
        for event in events:
            try:
                message = orjson.loads(event.message.value)  # type: ignore[arg-type]  # None: dead-lettered
                reports += len(message["c"])
            except Exception as exc:  # not one of ours: written to the topic by something else
                await self.dead_letters.contribution(event, None, exc)
                continue
            chunk.append((event, message))
            if reports >= self.settings.batch_size:
                await self._tally_or_isolate(chunk)
                chunk, reports = [], 0
        if chunk:
            await self._tally_or_isolate(chunk)

    async def _tally_or_isolate(self, chunk: list[Contribution]) -> None:
        """``_tally`` the chunk; should it fail other than by an outage, each message on its own.

        An error raised out of the agent would lose the chunk (Faust acknowledges a crashed
        agent's messages, ``runtime.outages``), and retrying the chunk whole would fail
        forever on the one message that meets a bug. Tallied one by one, the others count and
        the culprit goes to the dead letters with the error, its reports listed for publishing
        again once the bug is fixed.
        """
        try:
            await through_outages(self._tally, chunk)  # outages are waited out in there
        except Exception as exc:
            if len(chunk) == 1:
                await self.dead_letters.contribution(*chunk[0], exc)
                return
            log.exception("A chunk of %d contributions failed; tallying them one by one", len(chunk))
            for message in chunk:
                await self._tally_or_isolate([message])

    async def _tally(self, messages: list[Contribution]) -> None:
        """``_tally_chunk``, keeping its states as objects for the next chunks once written.

        A chunk changes its states in place; one that does not finish (an error, a rebalance
        cancelling it) leaves them ahead of the store, so every state kept in memory is dropped
        and read again from the store.
        """
        generation = self.held_generation
        try:
            tx = await self._tally_chunk(messages)
        except BaseException:
            self.forget_states()
            raise
        if generation == self.held_generation:  # no rebalance meanwhile: these are still ours
            self._hold(tx)

    def _hold(self, tx: AreaTransaction) -> None:
        held = self.held
        for area in tx.areas.values():
            if area.level != "department":  # departments live in ``departments``
                held[area.key] = area.state
        while len(held) > HELD_STATES:
            held.popitem(last=False)  # the least recently written (a dict's first key is O(n) to find)

    async def _tally_chunk(self, messages: list[Contribution]) -> AreaTransaction:
        """One chunk: changes detected message by message, then committed once (``AreaTransaction``).

        Events are decided after each message, never across a chunk: they are then a function
        of the stored state and the log alone, whatever the chunking. That is what makes a crash
        safe for the events: a worker killed after its events went out but before its state was
        stored resumes from the earlier state, re-reads the same messages and announces the same
        changes again (repeats). Decided per chunk, the replay could lump together a change and
        its undoing (FILLON -> LE PEN -> FILLON) and announce nothing, leaving subscribers with
        the LE PEN of the lost run (a CI run of 2026-11-26 failed on it).
        """
        tx = AreaTransaction(self.areas, self.held, self.producer)
        touched_departments: dict[bytes, TouchedArea] = {}
        at = datetime.now(UTC).isoformat()  # one time for the chunk's events
        for event, message in messages:
            election = await waiting_for_redis(self.elections.get, message["e"])
            if election is None:
                reason = f"contribution for unknown election {message['e']!r}"
                self.dead_letters.reject(tx.outbox, event.message, reason)
            elif message["l"] == "department":
                touched_departments.update(self._into_communes(tx, election, event, message, at))
            else:
                nation = self._into_nation(tx, election, event, message)
                if nation.changed:
                    self._announce(tx, nation, at)
        self._forward_to_nation(tx, touched_departments.values())
        await tx.commit(self.standings)
        return tx

    def _department(
        self, tx: AreaTransaction, election: ElectionIndex, code: str, event: EventT
    ) -> TouchedArea:
        """A department, whose children (its communes' totals) live only in memory.

        Written with its children, a department would be rewritten whole (hundreds of communes)
        by every chunk that touches it, and interleaved national traffic touches them all. Its
        total is instead derived from its communes' states, which are each written atomically,
        so it is right after any crash; only its total and what was announced are stored.
        """
        key = area_key(election.election, "department", code).encode()
        area = tx.areas.get(key)
        if area is not None:
            area.event = event
            return area
        state = self.departments.get(key)
        if state is None:
            state = self.departments[key] = self._rebuild_department(election, key, code)
        area = TouchedArea(election, "department", code, key, state, event)
        tx.add(area)
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
        self, tx: AreaTransaction, election: ElectionIndex, event: EventT, message: dict[str, Any], at: str
    ) -> dict[bytes, TouchedArea]:
        """One contribution: its bureaux into their communes, the communes into their department,
        then the events of everything it changed. Returns the departments it touched."""
        offset = event.message.offset
        roll = election.roll
        communes: dict[bytes, TouchedArea] = {}
        for bureau, seq, tally_json in message["c"]:
            commune = tx.get(election, "commune", roll[bureau].commune, event)
            tally = Tally.from_json(tally_json)
            if commune.state.apply(bureau, seq, tally):
                commune.changed = True
                commune.state.version = offset
                commune.cause = {"bureau": bureau, "seq": seq}
                self._announce_bureau(tx, commune, bureau, seq, tally, at)
            else:
                view_key, standings = bureau_standings(election, bureau, commune.state.children[bureau][1])
                tx.views[view_key] = dumps(standings)
            communes[commune.key] = commune
        touched: dict[bytes, TouchedArea] = {}
        for commune in communes.values():
            department = self._department(tx, election, election.roll_by_commune[commune.area], event)
            # a copy: the department keeps it as the commune's total, which a later message may change
            if department.state.apply(commune.area, commune.state.version, commune.state.total.copy()):
                department.changed = True
                department.state.version = max(department.state.version, commune.state.version)
                department.cause = commune.cause or department.cause
            touched[department.key] = department
            if commune.changed:
                self._announce(tx, commune, at)
        for department in touched.values():
            if department.changed:
                self._announce(tx, department, at)
        return touched

    def _into_nation(
        self, tx: AreaTransaction, election: ElectionIndex, event: EventT, message: dict[str, Any]
    ) -> TouchedArea:
        nation = tx.get(election, "nation", NATION, event)
        for department, version, tally_json, cause in message["c"]:
            if nation.state.apply(department, version, Tally.from_json(tally_json)):
                nation.changed = True
                nation.state.version = event.message.offset
                nation.cause = cause
        return nation

    def _forward_to_nation(self, tx: AreaTransaction, departments: Iterable[TouchedArea]) -> None:
        by_election: dict[str, list[DepartmentRow]] = {}
        for department in departments:
            state = department.state
            row = [department.area, state.version, state.total.to_json(), department.cause]
            by_election.setdefault(department.election.election, []).append(row)
        for election, rows in by_election.items():
            tx.outbox.add(self.nation_topic, *nation_message(election, rows))

    # -- announcing ----------------------------------------------------------------------
    def _announce_bureau(
        self, tx: AreaTransaction, commune: TouchedArea, bureau: str, seq: int, tally: Tally, at: str
    ) -> None:
        """A bureau's own events; what was said about it is kept in its commune's state."""
        view_key, standings = bureau_standings(commune.election, bureau, tally)
        announced = commune.state.child_announced.get(bureau, {})
        cause = {"bureau": bureau, "seq": seq}
        events, commune.state.child_announced[bureau] = detect_changes(
            announced, standings, tally, self.settings.turnout_step, cause, at
        )
        self._publish(tx, view_key, bureau, standings, events)

    def _announce(self, tx: AreaTransaction, area: TouchedArea, at: str) -> None:
        state = area.state
        view_key, standings = area_standings(area.election, area.level, area.area, state.total)
        events, state.announced = detect_changes(
            state.announced, standings, state.total, self.settings.turnout_step, area.cause, at
        )
        area.changed, area.written = False, True
        self._publish(tx, view_key, area.area, standings, events)

    def _publish(
        self,
        tx: AreaTransaction,
        view_key: str,
        area: str,
        standings: dict[str, Any],
        events: list[dict[str, Any]],
    ) -> None:
        tx.views[view_key] = dumps(standings)
        if standings["level"] in self.settings.event_levels:
            for change in events:
                tx.outbox.add(self.settings.updates_topic, area.encode(), orjson.dumps(change))
