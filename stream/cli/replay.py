"""Replaying a night: publish each report when its time comes, compressed by ``speed``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from stream.adapters.kafka.publisher import Publisher
from stream.settings import Settings
from stream.sources.scenario import Scenario, TimedResult, resolve

__all__ = ["load_night", "run_replay", "renamed"]


def renamed(scenario: Scenario, election_id: str) -> Scenario:
    """The same night under another election id (the demo uses a fresh id per run)."""
    election = scenario.election.model_copy(update={"election": election_id})
    reports = [
        TimedResult(at=r.at, result=r.result.model_copy(update={"election": election_id}))
        for r in scenario.reports
    ]
    return scenario.model_copy(update={"election": election, "reports": reports})


def load_night(name_or_path: str, as_election: str | None = None, legislative: int | None = None) -> Scenario:
    """A night by name or file; with ``legislative`` (a round), a législatives night generated on
    that night's roll (``sources.legislative``)."""
    scenario = resolve(name_or_path)
    if legislative is not None:
        from stream.sources.legislative import legislative_scenario

        election = as_election or f"legislatives-t{legislative}"
        return legislative_scenario(scenario.election, election, round=legislative)
    return renamed(scenario, as_election) if as_election else scenario


async def run_replay(
    settings: Settings,
    scenario: Scenario,
    speed: float,
    on_sent: Callable[[], None] | None = None,
) -> None:
    """Publish every report; with ``speed`` > 0, report i goes out at (at_i - at_0) / speed seconds."""
    if not scenario.reports:
        return
    first = scenario.reports[0].at
    started = time.monotonic()
    async with Publisher(settings) as publisher:
        for report in scenario.reports:
            if speed > 0:
                delay = (report.at - first).total_seconds() / speed - (time.monotonic() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            await publisher.result(report.result.model_dump(mode="json", exclude_none=True))
            if on_sent:
                on_sent()
