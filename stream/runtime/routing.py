"""Hop 1, ``route_results``: validate each report, dead-letter the invalid, and send the valid
ones to the contributions topic, one message per department per batch. It keeps no state."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from faust.types import ProducerT

from stream.adapters.redis.elections import ElectionCache, ElectionNeeded
from stream.auth.registry import Sources
from stream.auth.verification import signature_problem
from stream.domain.aggregation import Tally, turnout_child, utc_text
from stream.domain.contributions import BureauRow, department_message
from stream.domain.messages import ElectionLookup, InvalidResult, validate_result, validate_turnout
from stream.domain.roll import ElectionIndex
from stream.runtime import metrics
from stream.runtime.dead_letters import DeadLetters, Record, internal_error, source_header
from stream.runtime.faust.outbox import Outbox
from stream.runtime.outages import (
    OUTAGE_RETRY_DELAY,
    OUTAGES,
    KafkaRefused,
    through_outages,
    waiting_for_redis,
)

__all__ = ["Router", "VERIFIER_THREADS"]

#: Threads verifying a batch's signatures (a worker process uses about one core for the rest).
VERIFIER_THREADS = 2
#: (the record, its election, "bureau …" or "commune …"): a signature to verify
SignatureCheck = tuple[Record, ElectionIndex, str]

log = logging.getLogger(__name__)


class Router:
    def __init__(
        self,
        elections: ElectionCache,
        producer: ProducerT,
        contributions: str,
        dead_letters: DeadLetters,
        max_message_bytes: int,
        turnout_topic: str = "turnout-reports",
        sources: Sources | None = None,
    ) -> None:
        self.turnout_topic = turnout_topic
        #: threads verifying signatures (``_verify``), made when an election first needs them
        self._verifiers: ThreadPoolExecutor | None = None
        #: who may sign what, for elections that require signatures (``auth.verification``)
        self.sources = sources
        self.elections = elections
        self.producer = producer
        self.contributions = contributions
        self.dead_letters = dead_letters
        self.max_message_bytes = max_message_bytes

    async def on_results(self, records: list[Record]) -> None:
        """Validate and route a batch; returns once Kafka acknowledged everything it produced."""
        metrics.BATCH_REPORTS.observe(len(records))
        try:
            routed = await through_outages(self._route, records)
        except KafkaRefused as refused:  # the batch's reports, with the error: not lost, not stuck
            log.error(
                "Kafka refused a routed batch for good; its %d reports go to the dead letters: %s",
                len(records),
                refused,
            )
            await self._dead_letter_all_or_wait((records, f"not routed: {refused}"))
            return
        metrics.REPORTS_ROUTED.inc(routed)

    async def _dead_letter_all_or_wait(self, batch: tuple[list[Record], str]) -> None:
        """Dead-letter them; should Kafka refuse the dead letters too (their topic's ACL), wait
        and try again rather than let the reports go: the partition waits for an operator."""
        delay = OUTAGE_RETRY_DELAY
        while True:
            try:
                await through_outages(self._dead_letter_all, batch)
                return
            except KafkaRefused as refused:
                log.critical(
                    "Kafka refuses the dead letters too (%s); trying again in %.0f s", refused, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _dead_letter_all(self, batch: tuple[list[Record], str]) -> None:
        records, reason = batch
        outbox = Outbox(self.producer)
        for record in records:
            self.dead_letters.reject(outbox, record, reason)
        await outbox.deliver()

    async def _route(self, records: list[Record]) -> int:
        """The batch's valid reports to the contributions topic; returns how many.

        Definitions come from memory (``ElectionCache.get``): a first pass finds the elections
        the batch names that Redis may have (``ElectionNeeded``), one round trip fetches them,
        and their reports are validated then, in their order."""
        await self.elections.check_revisions()
        outbox = Outbox(self.producer)
        by_department: dict[tuple[str, str], list[BureauRow]] = {}
        signed: list[tuple[Record, tuple[str, str], BureauRow, SignatureCheck]] = []
        later: list[Record] = []
        needed: set[str] = set()
        for record in records:
            try:
                self._take(record, self.elections.strict, outbox, by_department, signed)
            except ElectionNeeded as missing:
                later.append(record)
                needed.add(missing.election_id)
        if later:
            await waiting_for_redis(self.elections.prepare, needed)
            for record in later:
                self._take(record, self.elections, outbox, by_department, signed)
        if signed:
            problems = await self._verify([check for *_, check in signed])
            for (record, place, row, _), problem in zip(signed, problems, strict=True):
                if problem is not None:
                    self.dead_letters.reject(outbox, record, problem)
                else:
                    by_department.setdefault(place, []).append(row)
        for (election, department), rows in by_department.items():
            outbox.add(self.contributions, *department_message(election, department, rows))
        await outbox.deliver()
        return sum(map(len, by_department.values()))

    def _take(
        self,
        record: Record,
        elections: ElectionLookup,
        outbox: Outbox,
        by_department: dict[tuple[str, str], list[BureauRow]],
        signed: list[tuple[Record, tuple[str, str], BureauRow, SignatureCheck]],
    ) -> None:
        """A report into its department's rows, or the signatures to verify, or the dead letters."""
        try:
            election, department, row, check = self._validate(record, elections)
        except InvalidResult as exc:
            self.dead_letters.reject(outbox, record, str(exc))
            return
        except (ElectionNeeded, *OUTAGES):
            raise
        except Exception as exc:  # a bug met by this report: to the dead letters, not lost
            log.exception("Routing failed on %s[%s]@%s", record.topic, record.partition, record.offset)
            self.dead_letters.reject(outbox, record, f"not processed: {internal_error(exc)}")
            return
        if check is not None:  # verified below, all of the batch's at once, off the loop
            signed.append((record, (election, department), row, check))
        else:
            by_department.setdefault((election, department), []).append(row)

    def _validate(
        self, record: Record, elections: ElectionLookup
    ) -> tuple[str, str, list[Any], SignatureCheck | None]:
        """(election, department, row, the signature to verify if the election requires one) of a
        valid report, or InvalidResult (``contributions``)."""
        if record.topic == self.turnout_topic:
            return self._validate_turnout(record, elections)
        result = validate_result(record.value or b"", elections, self.max_message_bytes)
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        if key != result.bureau:
            raise InvalidResult(
                f"bureau {result.bureau}: message key {key!r} must be the bureau id "
                f"(all reports of a bureau must share a partition to keep their order)"
            )
        election = self.elections.get(result.election)
        if election is None:  # validate_result found it: a bug, dead-lettered as such by _take
            raise RuntimeError(f"election {result.election!r} validated but not found")
        check = (record, election, f"bureau {result.bureau}") if election.require_signature else None
        entry = election.roll[result.bureau]
        tally = Tally.of_result(result, entry.registered)
        row = [result.bureau, result.seq, tally.to_json()]
        source = source_header(record)
        if source is not None:  # its dead letters in the tally (a conflict) name it too
            row.append(source)
        return election.tally_id, entry.department, row, check

    def _signature_problem(self, check: SignatureCheck) -> str | None:
        """Why a report cannot count (not signed by a source whose scope holds it), or None."""
        record, election, where = check
        data = orjson.loads(record.value or b"")  # valid JSON: it was validated
        name = data.get("source")
        source = self.sources.get(name) if self.sources is not None and isinstance(name, str) else None
        problem = signature_problem(data, source, election)
        return None if problem is None else f"{where}: {problem}"

    async def _verify(self, checks: list[SignatureCheck]) -> list[str | None]:
        """The batch's signatures, verified in threads: Ed25519 verification is most of a signed
        report's cost, and it releases the GIL, so the loop goes on and a second core helps."""
        if self._verifiers is None:
            self._verifiers = ThreadPoolExecutor(VERIFIER_THREADS, thread_name_prefix="soiree-verify")
        loop = asyncio.get_running_loop()
        size = max(1, -(-len(checks) // VERIFIER_THREADS))
        parts = [checks[i : i + size] for i in range(0, len(checks), size)]
        answers = await asyncio.gather(
            *(loop.run_in_executor(self._verifiers, self._problems, part) for part in parts)
        )
        return [problem for answer in answers for problem in answer]

    def _problems(self, checks: list[SignatureCheck]) -> list[str | None]:
        problems: list[str | None] = []
        for check in checks:
            try:
                problems.append(self._signature_problem(check))
            except Exception as exc:  # a bug met by this report: to the dead letters, not a crash
                log.exception("Verifying the signature of %s failed", check[2])
                problems.append(f"{check[2]}: not processed: {internal_error(exc)}")
        return problems

    def _validate_turnout(
        self, record: Record, elections: ElectionLookup
    ) -> tuple[str, str, list[Any], SignatureCheck | None]:
        """A turnout report's row: ``[place|hour, seq, tally, commune, bureau or None]``; its tally
        holds only ``turnout_at = {hour: [registered, voters]}`` (and its time)."""
        report = validate_turnout(record.value or b"", elections, self.max_message_bytes)
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        if key != report.place:
            raise InvalidResult(
                f"{'bureau' if report.bureau else 'commune'} {report.place}: message key {key!r} must be "
                f"the {'bureau' if report.bureau else 'commune'} id (a place's reports share a partition)"
            )
        election = self.elections.get(report.election)
        if election is None:  # validate_turnout found it: a bug, dead-lettered as such by _take
            raise RuntimeError(f"election {report.election!r} validated but not found")
        where = f"{'bureau' if report.bureau else 'commune'} {report.place}"
        check = (record, election, where) if election.require_signature else None
        if report.bureau is not None:
            placement = election.roll[report.bureau]
            commune, registered = placement.commune, placement.registered
        else:
            commune, registered = report.place, election.registered_of_commune[report.place]
        tally = Tally(
            as_of=utc_text(report.reported_at), turnout_at={report.at_hour: [registered, report.voters]}
        )
        row = [
            turnout_child(report.place, report.at_hour),
            report.seq,
            tally.to_json(),
            commune,
            report.bureau,
        ]
        return election.tally_id, election.roll_by_commune[commune], row, check
