"""``soiree demo``: services up, a worker, the seed night replayed live, the outcome printed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import deque
from datetime import datetime

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from stream.adapters.redis.clients import async_client, sync_client
from stream.adapters.redis.keys import results_key
from stream.cli.replay import run_replay
from stream.cli.views import event_line, standings_table
from stream.domain.messages import Standings, UpdateEvent
from stream.settings import Settings
from stream.sources.scenario import Scenario, seed_first_round, seed_scenario

__all__ = ["run_demo"]

#: The areas on screen: the nation, the Loire and Saint-Étienne (the news report's places).
WATCHED = (("nation", "FR"), ("department", "42"), ("commune", "42218"))


def run_demo(settings: Settings, console: Console, speed: float) -> None:
    from stream.adapters.kafka.definitions import register_election
    from stream.adapters.kafka.topics import ensure_topics
    from stream.devstack import services as infra

    console.rule("[bold]Soirée demo: primaire de la gauche, 2nd round, 29 January 2017")
    infra.up(settings, console)
    asyncio.run(ensure_topics(settings))
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S")
    first = seed_first_round()
    first = first.renamed(f"{first.election.election}-demo-{run_id}")
    scenario = seed_scenario()
    scenario = scenario.renamed(
        f"{scenario.election.election}-demo-{run_id}", compare_to=first.election.election
    )

    client = sync_client(settings.redis_dsn())
    register_election(settings, client, first.election)
    register_election(settings, client, scenario.election)
    worker = _start_worker(settings, scenario.election.election)
    console.print(f"worker started (pid {worker.pid}, log {settings.home / 'logs' / 'worker.log'})")
    url, serving = infra.serve(settings, console)
    page = f"{url}?election={scenario.election.election}"
    console.print(f"live page: [bold]{page}[/] ({serving.state}; it keeps running after the demo)")
    try:
        asyncio.run(_first_round(settings, console, first, worker))
        final = asyncio.run(_live(settings, console, scenario, speed, worker))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
    _print_outcome(console, scenario, final)
    console.print(
        f"\nKafka, Redis and the page ([bold]{page}[/]) keep running. Try "
        f"[bold]soiree results department --election {scenario.election.election}[/]"
        " or [bold]soiree tail --from-beginning --level nation[/]; [bold]soiree down[/] stops them."
    )


def _start_worker(settings: Settings, election: str) -> subprocess.Popen[bytes]:
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "worker.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info", "--election", election],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )


def expected_totals(scenario: Scenario) -> dict[tuple[str, str], tuple[int, dict[str, int]]]:
    """Independent sums of the latest report per bureau: (voters, votes) per watched area."""
    roll = scenario.election.roll
    sums: dict[tuple[str, str], tuple[int, dict[str, int]]] = {}
    for result in scenario.final().values():
        entry = roll[result.bureau]
        for key in (("nation", "FR"), ("department", entry.department), ("commune", entry.commune)):
            if key not in WATCHED:
                continue
            voters, votes = sums.get(key, (0, {}))
            votes = dict(votes)
            for candidate, count in result.votes.items():
                votes[candidate] = votes.get(candidate, 0) + count
            sums[key] = (voters + result.voters, votes)
    return sums


async def _first_round(
    settings: Settings, console: Console, first: Scenario, worker: subprocess.Popen[bytes]
) -> None:
    """The first round, as fast as it goes: the second compares itself with it (``compare_to``)."""
    election = first.election.election
    bureaux = len(first.election.bureaux)
    client = async_client(settings.redis_dsn())
    sent = 0

    def on_sent() -> None:
        nonlocal sent
        sent += 1

    with _progress(console) as progress:
        published = progress.add_task("first round (22 January) published", total=len(first.reports))
        counted = progress.add_task("first round counted", total=bureaux)
        replay = asyncio.create_task(run_replay(settings, first, 0, on_sent=on_sent))
        deadline: float | None = None
        while True:
            await asyncio.sleep(0.25)
            if worker.poll() is not None:
                raise SystemExit(
                    f"the worker stopped (exit {worker.returncode}); see {settings.home}/logs/worker.log"
                )
            raw = await client.get(results_key(election, "nation", "FR"))
            reported = Standings.model_validate_json(raw).bureaux_reported if raw else 0
            progress.update(published, completed=sent)
            progress.update(counted, completed=reported)
            if replay.done():
                replay.result()
                deadline = deadline or time.monotonic() + 60
                if reported == bureaux:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the worker did not count the first round within 60 s; see its log")
    await client.aclose()


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console)


async def _live(
    settings: Settings, console: Console, scenario: Scenario, speed: float, worker: subprocess.Popen[bytes]
) -> dict[tuple[str, str], Standings]:
    from stream.adapters.kafka.updates import follow_updates

    election = scenario.election.election
    client = async_client(settings.redis_dsn())
    events: deque[UpdateEvent] = deque(maxlen=8)
    sent = 0

    async def collect() -> None:
        async for event in follow_updates(settings, election, from_beginning=True):
            if event.level != "bureau":
                events.append(event)

    def on_sent() -> None:
        nonlocal sent
        sent += 1

    async def standings() -> dict[tuple[str, str], Standings]:
        raws = await client.mget([results_key(election, level, area) for level, area in WATCHED])
        return {key: Standings.model_validate_json(raw) for key, raw in zip(WATCHED, raws) if raw is not None}

    def screen(current: dict[tuple[str, str], Standings], note: str) -> Group:
        progress = f"{sent:,}/{len(scenario.reports):,} reports published · {note}"
        lines = [event_line(e) for e in events] or [Text("…")]
        return Group(summary_table(current, scenario), Panel(Group(*lines), title="latest events"), progress)

    expected = expected_totals(scenario)
    collector = asyncio.create_task(collect())
    replay = asyncio.create_task(run_replay(settings, scenario, speed, on_sent=on_sent))
    current: dict[tuple[str, str], Standings] = {}
    deadline: float | None = None
    with Live(screen(current, "replaying"), console=console, refresh_per_second=8) as live:
        while True:
            await asyncio.sleep(0.25)
            if worker.poll() is not None:
                raise SystemExit(
                    f"the worker stopped (exit {worker.returncode}); see {settings.home}/logs/worker.log"
                )
            current = await standings()
            if replay.done():
                replay.result()
                deadline = deadline or time.monotonic() + 60
                settled = all(
                    _matches(current.get(key), voters, votes) for key, (voters, votes) in expected.items()
                )
                live.update(screen(current, "settled" if settled else "waiting for the worker to catch up"))
                if settled:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the worker did not reach the final totals within 60 s; see its log")
            else:
                live.update(screen(current, f"replaying at ×{speed:g}"))
    console.print()
    collector.cancel()
    await client.aclose()
    return current


def summary_table(current: dict[tuple[str, str], Standings], scenario: Scenario) -> Table:
    """The watched areas, one row each: shares of the (first four) candidates, turnout, progress."""
    candidates = scenario.election.candidate_list[:4]
    table = Table(title=scenario.election.name, expand=False)
    table.add_column("area")
    for candidate in candidates:
        table.add_column(candidate, justify="right")
    table.add_column("turnout", justify="right")
    table.add_column("bureaux", justify="right")
    for key in WATCHED:
        standings = current.get(key)
        if standings is None:
            table.add_row(key[1], *["—"] * len(candidates), "—", "0")
            continue
        shares = [
            f"[bold]{standings.shares[c]:.2f} %[/]"
            if c == standings.leader
            else f"{standings.shares[c]:.2f} %"
            for c in candidates
        ]
        turnout = "—" if standings.turnout is None else f"{standings.turnout:.2f} %"
        table.add_row(
            standings.name, *shares, turnout, f"{standings.bureaux_reported:,}/{standings.bureaux_total:,}"
        )
    return table


def _matches(standings: Standings | None, voters: int, votes: dict[str, int]) -> bool:
    if standings is None or standings.voters != voters:
        return False
    return all(standings.votes.get(candidate, 0) == count for candidate, count in votes.items())


def _print_outcome(console: Console, scenario: Scenario, final: dict[tuple[str, str], Standings]) -> None:
    console.rule("[bold]Final standings")
    for key in WATCHED:
        if key in final:
            console.print(standings_table(final[key]))
    nation, loire = final.get(("nation", "FR")), final.get(("department", "42"))
    if nation and loire:
        console.print(
            f"Nation: Hamon {nation.shares.get('HAMON', 0):.2f} %, "
            f"Valls {nation.shares.get('VALLS', 0):.2f} %, {nation.voters:,} voters" + _on_first_round(nation)
        )
        console.print(
            f"Loire: {loire.voters:,} voters in {loire.bureaux_total} bureaux, "
            f"Hamon {loire.votes.get('HAMON', 0):,} ({loire.shares.get('HAMON', 0):.1f} %)"
            + _on_first_round(loire)
        )


def _on_first_round(standings: Standings) -> str:
    """What the engine's comparison says (``change``, over the bureaux counted in both rounds)."""
    change, reference = standings.change, standings.reference
    if change is None or reference is None or change.voters_pct is None:
        return ""
    more = ""
    if reference.bureaux == standings.bureaux_reported:  # like for like over every counted bureau
        more = f", {standings.voters - reference.voters:+,} voters"
    return f"; turnout up {change.voters_pct:.1f} % on the first round{more}"
