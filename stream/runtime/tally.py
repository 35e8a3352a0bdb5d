"""Hop 2, ``tally_areas`` and ``tally_nation``: contributions into the ``areas`` table.

Each report goes into its commune (child = the bureau, or ``place|hour`` for a turnout report;
version = ``seq``) and into its circonscription, each touched commune into its department
(version = the offset of the message that last changed the commune); then one message per
chunk carries every touched department to the nation's key, on the nation topic, where the
same code puts each department into the nation and its region.

One rule makes at-least-once delivery safe: every area a chunk touched passes its *whole*
current total, with its version, to its parent, changed or not. A parent keeps per child the
highest version seen, so a re-sent total is ignored and a total lost in a crash is sent again
when the message behind it is re-delivered. Nothing is a delta, nothing counts twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from faust.types import EventT, ProducerT, TableT

from stream.adapters.redis.elections import ElectionCache
from stream.domain.aggregation import AreaState, Comparison, Tally, area_key, turnout_child
from stream.domain.changes import RaceRules, by_party, detect_changes, race_seats, report_event
from stream.domain.contributions import TURNOUT_ROW, DepartmentRow, nation_message, report_of_row
from stream.domain.encoding import dumps
from stream.domain.messages import NATION
from stream.domain.regions import region_of
from stream.domain.roll import ElectionIndex
from stream.runtime import metrics
from stream.runtime.dead_letters import DeadLetters
from stream.runtime.outages import through_outages, waiting_for_redis
from stream.runtime.standings import StandingsWriter, area_standings, bureau_standings
from stream.runtime.transaction import DERIVED_LEVELS, AreaTransaction, ChunkFenced, TouchedArea
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
        #: in-memory departments and circonscriptions, with their communes' totals or their
        #: bureaux' reports (``_derived``)
        self.derived: dict[bytes, AreaState] = {}
        #: communes', regions' and the nation's states (and reference elections' communes, for
        #: ``_compare``) exactly as last written, most recent last (``_hold``)
        self.held: OrderedDict[bytes, AreaState] = OrderedDict()
        #: bumped whenever held states are dropped: a chunk that ran meanwhile must not hold its own
        self.held_generation = 0
        #: races' seats by party, per department key and race (``_race_seats``); rebuilt with
        #: the department (``_rebuild_department``)
        self.seats: dict[bytes, dict[str, dict[str, list[int]]]] = {}
        #: reports of a replaced revision sent back to routing (``_reroute``), most recent last
        self.rerouted: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        #: events produced since the last chunk ended, by (kind, level), for ``metrics``
        self.events_made: Counter[tuple[str, str]] = Counter()

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
        began = time.perf_counter()
        try:
            tx = await self._tally_chunk(messages)
        except ChunkFenced as fenced:
            # Dropped, not waited on: the rebalance that settles whose the partitions are waits
            # for this chunk to end (Faust's ``wait_empty``). Its offsets cannot be committed
            # (this member's generation is over); whoever owns the partitions next, this worker
            # included (its store loads them again, ``RedisStore.on_rebalance``), reads it again.
            metrics.FENCED_WRITES.labels("chunk").inc()
            self.forget_states()
            log.error("fenced: a chunk of %d contributions dropped: %s", len(messages), fenced)
            return
        except BaseException:
            self.forget_states()
            raise
        finally:
            metrics.count_events(self.events_made)
        metrics.TALLY_CHUNK_SECONDS.observe(time.perf_counter() - began)
        if generation == self.held_generation:  # no rebalance meanwhile: these are still ours
            self._hold(tx)
        else:  # states derived or read while it ran may miss what the chunk did: read them again
            self.forget_states()

    def _hold(self, tx: AreaTransaction) -> None:
        held = self.held
        for area in tx.areas.values():
            if area.level not in DERIVED_LEVELS:  # those live in ``derived``
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
        # definitions are read from memory below: fetched first (and their references), async
        await self.elections.check_revisions()
        await waiting_for_redis(self.elections.prepare, {message["e"] for _, message in messages})
        tx = AreaTransaction(self.areas, self.held, self.producer)
        touched_departments: dict[bytes, TouchedArea] = {}
        at = datetime.now(UTC).isoformat()  # one time for the chunk's events
        for event, message in messages:
            election = self.elections.get(message["e"])
            if election is None:
                reason = f"contribution for unknown election {message['e']!r}"
                self.dead_letters.reject(tx.outbox, event.message, reason)
            elif election.tally_id != message["e"]:  # a replaced revision's: recounted under the new one
                metrics.STALE_CONTRIBUTIONS.inc()
                self._reroute(tx, election, event, message)
            elif message["l"] == "department":
                self._learn_reference_parties(election)
                touched_departments.update(self._into_communes(tx, election, event, message, at))
            else:
                self._learn_reference_parties(election)
                self._into_nation(tx, election, event, message, at)
        self._forward_to_nation(tx, touched_departments.values())
        await tx.commit(self.standings)
        return tx

    def _learn_reference_parties(self, election: ElectionIndex) -> None:
        """With races and ``compare_to``, the reference's candidates count for their party in the
        comparison too (a round 1 candidate who is not in round 2)."""
        if election.compare_to is None or not election.party_of:
            return
        if election.comparison_party_of is election.party_of:
            reference = self.elections.get(election.compare_to)
            if reference is not None and reference.party_of:
                election.comparison_party_of = {**reference.party_of, **election.party_of}

    def _reroute(
        self, tx: AreaTransaction, election: ElectionIndex, event: EventT, message: dict[str, Any]
    ) -> None:
        """A contribution routed under a replaced revision of the definition: its reports go back
        to the input topics, to be routed under the current one (a report counts once however
        often it is sent). Once only: met again (a router still on the old revision), or signed
        (the row no longer holds the signature), it goes to the dead letters instead."""
        for row in message["c"] if message["l"] == "department" else ():
            place, report = report_of_row(election.election, row)
            turnout = len(row) == TURNOUT_ROW
            seen = (message["e"], str(row[0]), int(row[1]))
            if election.require_signature or seen in self.rerouted:
                reason = (
                    f"{'commune' if 'commune' in report else 'bureau'} {place}: routed under a replaced "
                    f"definition of {election.election} ({message['e']}, now revision {election.revision}): "
                    "publish it again"
                )
                self.dead_letters.reject(
                    tx.outbox, event.message, reason, payload=orjson.dumps(report), key=place.encode()
                )
                continue
            self.rerouted[seen] = None
            while len(self.rerouted) > HELD_STATES:
                self.rerouted.popitem(last=False)
            topic = self.settings.turnout_topic if turnout else self.settings.results_topic
            tx.outbox.add(topic, place.encode(), orjson.dumps(report))

    def _derived(
        self, tx: AreaTransaction, election: ElectionIndex, level: str, code: str, event: EventT
    ) -> TouchedArea:
        """A department or a circonscription, whose children live only in memory.

        Written with its children, a department would be rewritten whole (hundreds of communes)
        by every chunk that touches it, and interleaved national traffic touches them all. Its
        total is instead derived from its communes' states, which are each written atomically,
        so it is right after any crash; only its total and what was announced are stored. A
        circonscription is derived the same way, from the bureaux in its department's communes.
        """
        key = area_key(election.tally_id, level, code).encode()
        area = tx.areas.get(key)
        if area is not None:
            area.event = event
            return area
        state = self.derived.get(key)
        if state is None:
            department = code if level == "department" else code.rsplit("-", 1)[0]
            department_key = area_key(election.tally_id, "department", department).encode()
            if department_key not in self.derived:
                self._rebuild_department(tx, election, department)
            state = self.derived.get(key)
            if state is None:  # a circonscription none of whose bureaux reported yet
                state = self.derived[key] = AreaState(announced=self._stored(key).announced)
        area = TouchedArea(election, level, code, key, state, event)
        tx.add(area)
        return area

    def _stored(self, key: bytes) -> AreaState:
        raw = self.areas.data.get(key)
        return AreaState.from_json(orjson.loads(raw)) if raw is not None else AreaState()

    def _rebuild_department(self, tx: AreaTransaction, election: ElectionIndex, department: str) -> None:
        """A department's state and its circonscriptions', from its communes in the store; those
        the chunk already holds (states were forgotten while it ran) stay the chunk's."""
        name = election.tally_id
        key = area_key(name, "department", department).encode()
        state = AreaState()
        circonscriptions: dict[str, AreaState] = {}
        communes: dict[str, AreaState] = {}
        for commune in election.communes_of_department[department]:
            raw = self.areas.data.get(area_key(name, "commune", commune).encode())
            if raw is None:
                continue
            commune_state = communes[commune] = AreaState.from_json(orjson.loads(raw))
            state.apply(commune, commune_state.version, commune_state.total)
            state.version = max(state.version, commune_state.version)
            for child, (seq, tally) in commune_state.children.items():
                circonscription = self._circonscription_of(election, child)
                if circonscription is None:
                    continue
                circ = circonscriptions.get(circonscription)
                if circ is None:
                    circ = circonscriptions[circonscription] = AreaState()
                circ.apply(child, seq, tally)
                circ.version = max(circ.version, commune_state.version)
        rebuilt = {key: state} | {
            area_key(name, "circonscription", code).encode(): circ for code, circ in circonscriptions.items()
        }
        for rebuilt_key, rebuilt_state in rebuilt.items():
            loaded = tx.areas.get(rebuilt_key)
            if loaded is not None:
                self.derived[rebuilt_key] = loaded.state
                continue
            stored = self._stored(rebuilt_key)  # what was announced, and the latest time ever included
            rebuilt_state.announced = stored.announced
            rebuilt_state.total.as_of = max(rebuilt_state.total.as_of, stored.total.as_of)
            self.derived[rebuilt_key] = rebuilt_state
        for race_id in election.races_of_department.get(department, ()):
            race = election.races[race_id]  # type: ignore[index]  # races_of_department: races exist
            if race.level == "commune":
                race_state = communes.get(race.area)
            else:
                race_state = self.derived.get(area_key(name, race.level, race.area).encode())
            if race_state is not None:
                self._race_seats(election, race_id, race_state)

    @staticmethod
    def _circonscription_of(election: ElectionIndex, child: str) -> str | None:
        """The circonscription of a commune's child: a bureau, or a turnout report of a bureau or
        of a commune (``aggregation.turnout_child``; a commune split between several has none)."""
        place = child.split("|", 1)[0]
        placement = election.roll.get(place)
        if placement is not None:
            return placement.circonscription
        return election.circonscription_of_commune.get(place)

    def forget_states(self, *args: Any, **kwargs: Any) -> None:
        """Partitions move (or a chunk failed): states are read again from the store, and
        departments and circonscriptions rebuilt from the communes the worker then holds."""
        self.derived.clear()
        self.seats.clear()
        self.held.clear()
        self.held_generation += 1

    def _into_communes(
        self, tx: AreaTransaction, election: ElectionIndex, event: EventT, message: dict[str, Any], at: str
    ) -> dict[bytes, TouchedArea]:
        """One contribution: its reports into their communes and circonscriptions, the communes
        into their department, then the events of everything it changed. Returns the
        departments it touched.

        A row is ``[bureau, seq, tally]`` for a result, ``[child, seq, tally, commune, bureau]``
        for a turnout report (``contributions``)."""
        offset = event.message.offset
        roll = election.roll
        communes: dict[bytes, TouchedArea] = {}
        derived: dict[bytes, TouchedArea] = {}
        for row in message["c"]:
            child, seq, tally_json = row[0], row[1], row[2]
            turnout = len(row) == TURNOUT_ROW
            if turnout:  # the bureau whose standings it changes, if any (None: a commune's report)
                commune_id, bureau = row[3], row[4]
                circonscription = self._circonscription_of(election, child)
            else:
                placement = roll[child]
                commune_id, bureau, circonscription = placement.commune, child, placement.circonscription
            commune = tx.get(election, "commune", commune_id, event)
            if turnout and (conflict := self._mixed_turnout(commune.state, row)):
                place, report = report_of_row(election.election, row)
                reason = f"{'bureau' if row[4] else 'commune'} {place}: {conflict}"
                self.dead_letters.reject(
                    tx.outbox, event.message, reason, payload=orjson.dumps(report), key=place.encode()
                )
                continue
            tally = Tally.from_json(tally_json)
            held = commune.state.children.get(child)
            if not turnout and held is not None and held[0] == seq and not held[1].same_count(tally):
                self._conflict(tx, election, event, row, held)
                continue
            if election.compare_to is not None:
                reference = self.elections.get(election.compare_to)
                if reference is not None:
                    self._compare(tx, reference.tally_id, commune.area, child, tally)
            corrected = held is not None
            if commune.state.apply(child, seq, tally):
                commune.changed = True
                commune.state.version = offset
                commune.cause = cause = {"bureau": child, "seq": seq}
                if circonscription is not None:
                    circ = self._derived(tx, election, "circonscription", circonscription, event)
                    if circ.state.apply(child, seq, tally):
                        circ.changed = True
                        circ.state.version = max(circ.state.version, offset)
                        circ.cause = cause
                    derived[circ.key] = circ
                if not turnout:
                    self._announce_bureau(tx, commune, bureau, corrected, cause, at)
                elif bureau is not None and bureau in commune.state.children:  # its turnout_at
                    view_key, standings = bureau_standings(election, bureau, commune.state)
                    tx.views[view_key] = dumps(standings)
            elif bureau is not None and bureau in commune.state.children:  # repair a lost view
                view_key, standings = bureau_standings(election, bureau, commune.state)
                tx.views[view_key] = dumps(standings)
            communes[commune.key] = commune
        touched: dict[bytes, TouchedArea] = {}
        races = election.races is not None
        for commune in communes.values():
            department = self._derived(
                tx, election, "department", election.roll_by_commune[commune.area], event
            )
            # a copy: the department keeps it as the commune's total, which a later message may change
            if department.state.apply(commune.area, commune.state.version, commune.state.total.copy()):
                department.changed = True
                department.state.version = max(department.state.version, commune.state.version)
                department.cause = commune.cause or department.cause
            touched[department.key] = department
            if commune.changed:
                self._announce(tx, commune, at)
        for area in derived.values():
            if area.changed:
                self._announce(tx, area, at)
        for department in touched.values():
            if races:
                known = self.seats.get(department.key, {})
                if len(known) < len(election.races_of_department.get(department.area, ())):
                    self._missing_race_seats(tx, election, department)  # forgotten while the chunk ran
                race = election.race_of_area.get(("department", department.area))
                if race is not None and election.races[race].level == "department":  # type: ignore[index]
                    self._race_seats(election, race, department.state)  # its own seats, before they count
                department.state.total.seats = self._seats_of_department(department)
            if department.changed:
                self._announce(tx, department, at)
        return touched

    def _conflict(
        self,
        tx: AreaTransaction,
        election: ElectionIndex,
        event: EventT,
        row: list[Any],
        held: tuple[int, Tally],
    ) -> None:
        """A report whose bureau and ``seq`` were applied with other counts: which one is right
        cannot be told, so neither is silently kept over the other; it goes to the dead letters
        with the one applied, and a higher ``seq`` settles it."""
        place, report = report_of_row(election.election, row)
        _, applied = report_of_row(election.election, [row[0], held[0], held[1].to_json()])
        reason = (
            f"bureau {place}: conflict: seq {row[1]} was already applied with other counts "
            f"(send the right one with a higher seq)"
        )
        self.dead_letters.reject(
            tx.outbox,
            event.message,
            reason,
            payload=orjson.dumps(report),
            key=place.encode(),
            applied=orjson.dumps(applied),
            source=row[3] if len(row) == 4 else None,
        )

    def _race_seats(self, election: ElectionIndex, race_id: str, state: AreaState) -> None:
        """Keep the seats of a race (its area's state just changed, or was rebuilt), for its
        department's total."""
        race = election.races[race_id]  # type: ignore[index]  # only called for elections with races
        _, _, registered_total = election.areas[(race.level, race.area)]
        votes = {candidate: state.total.votes.get(candidate, 0) for candidate in race.candidates}
        rules = RaceRules(race.race, race.rules, election.round, race.seats)
        seats = race_seats(rules, votes, registered_total, state.total, election.party_of)
        department = area_key(election.tally_id, "department", race.department).encode()
        self.seats.setdefault(department, {})[race.race] = seats

    def _missing_race_seats(
        self, tx: AreaTransaction, election: ElectionIndex, department: TouchedArea
    ) -> None:
        """The seats of a department's races not known here, from the states the chunk holds, else
        from memory or the store (they were forgotten while the chunk ran, ``forget_states``)."""
        known = self.seats.setdefault(department.key, {})
        for race_id in election.races_of_department.get(department.area, ()):
            if race_id in known:
                continue
            race = election.races[race_id]  # type: ignore[index]  # races_of_department: races exist
            key = area_key(election.tally_id, race.level, race.area).encode()
            loaded = tx.areas.get(key)
            state = loaded.state if loaded is not None else self.derived.get(key) or self.held.get(key)
            if state is None:
                state = self._stored(key)
            self._race_seats(election, race_id, state)

    def _seats_of_department(self, department: TouchedArea) -> dict[str, list[int]]:
        """The seats of the races in a department, by party: what its total passes upwards."""
        total: dict[str, list[int]] = {}
        for seats in self.seats.get(department.key, {}).values():
            for party, (won, decided) in seats.items():
                pair = total.setdefault(party, [0, 0])
                pair[0] += won
                pair[1] += decided
        return total

    @staticmethod
    def _mixed_turnout(commune: AreaState, row: list[Any]) -> str | None:
        """Why a turnout report cannot count: its commune already reports that hour the other
        way (for itself, or through its bureaux), which would count its voters twice."""
        child, commune_id, bureau = row[0], row[3], row[4]
        hour = child.split("|", 1)[1]
        if bureau is not None:
            if turnout_child(commune_id, hour) in commune.children:
                return f"commune {commune_id} already reports its {hour} turnout as a whole"
            return None
        suffix = "|" + hour
        if any(key.endswith(suffix) and key != child for key in commune.children):
            return f"its {hour} turnout is already reported bureau by bureau"
        return None

    def _compare(self, tx: AreaTransaction, reference: str, commune: str, child: str, tally: Tally) -> None:
        """Attach the reference election's report of the same child, if it has one (``comparison``).

        The reference's commune is in this partition: contributions are keyed by department
        alone, whatever the election (``contributions.department_message``). What the reference
        held when this report came is what counts: a reference is a finished night.
        """
        key = area_key(reference, "commune", commune).encode()
        loaded = tx.areas.get(key)
        state = loaded.state if loaded is not None else self.held.get(key)
        if state is None:
            raw = self.areas.data.get(key)
            if raw is None:
                return
            state = AreaState.from_json(orjson.loads(raw))
            self.held[key] = state  # exactly as written: the next reports of the commune use it
        held = state.children.get(child)
        if held is not None and not held[1].annulled and not tally.annulled:
            before = held[1].copy()
            before.comparison = None
            tally.comparison = Comparison(before, tally.copy())

    def _into_nation(
        self, tx: AreaTransaction, election: ElectionIndex, event: EventT, message: dict[str, Any], at: str
    ) -> None:
        """Departments' totals into the nation and their regions (the overseas collectivities and
        the French abroad are in no region)."""
        nation = tx.get(election, "nation", NATION, event)
        regions: dict[bytes, TouchedArea] = {}
        offset = event.message.offset
        for department, version, tally_json, cause in message["c"]:
            tally = Tally.from_json(tally_json)
            if nation.state.apply(department, version, tally):
                nation.changed = True
                nation.state.version = offset
                nation.cause = cause
            code = region_of(department)
            if code is not None:
                region = tx.get(election, "region", code, event)
                if region.state.apply(department, version, tally):
                    region.changed = True
                    region.state.version = offset
                    region.cause = cause
                regions[region.key] = region
        for area in [*regions.values(), nation]:
            if area.changed:
                self._announce(tx, area, at)

    def _forward_to_nation(self, tx: AreaTransaction, departments: Iterable[TouchedArea]) -> None:
        by_election: dict[str, list[DepartmentRow]] = {}
        for department in departments:
            state = department.state
            total = state.total
            party_of = department.election.party_of
            if party_of:  # an election with races: above them, votes count by party
                total = total.copy()
                total.votes = by_party(total.votes, party_of)
                if total.comparison is not None:
                    compared = department.election.comparison_party_of
                    for tally in (total.comparison.reference, total.comparison.current):
                        tally.votes = by_party(tally.votes, compared)
            row = [department.area, state.version, total.to_json(), department.cause]
            by_election.setdefault(department.election.tally_id, []).append(row)
        for election_id, rows in by_election.items():
            tx.outbox.add(self.nation_topic, *nation_message(election_id, rows))

    # -- announcing ----------------------------------------------------------------------
    def _announce_bureau(
        self,
        tx: AreaTransaction,
        commune: TouchedArea,
        bureau: str,
        corrected: bool,
        cause: dict[str, Any],
        at: str,
    ) -> None:
        """A bureau's one event per accepted report (``reported`` or ``corrected``)."""
        view_key, standings = bureau_standings(commune.election, bureau, commune.state)
        event = report_event(standings, corrected, cause, at)
        self._publish(tx, commune.election, view_key, bureau, standings, [event])

    def _announce(self, tx: AreaTransaction, area: TouchedArea, at: str) -> None:
        state = area.state
        view_key, standings = area_standings(area.election, area.level, area.area, state)
        if standings["race"] is not None:
            self._race_seats(area.election, standings["race"], state)
        events, state.announced = detect_changes(
            state.announced, standings, state.total, self.settings.turnout_step, area.cause, at
        )
        area.changed, area.written = False, True
        self._publish(tx, area.election, view_key, area.area, standings, events)

    def _publish(
        self,
        tx: AreaTransaction,
        election: ElectionIndex,
        view_key: str,
        area: str,
        standings: dict[str, Any],
        events: list[dict[str, Any]],
    ) -> None:
        tx.views[view_key] = dumps(standings)
        level = standings["level"]
        if level in self.settings.event_levels:
            for change in events:
                if election.publish_after is not None:  # the topic is for trusted consumers: it says so
                    change["publish_after"] = election.publish_after
                tx.outbox.add(self.settings.updates_topic, area.encode(), orjson.dumps(change))
                self.events_made[change["kind"], level] += 1
