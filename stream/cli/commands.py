"""The ``soiree`` command line (typer + rich). Each command is a thin shell over a module."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stream.errors import SoireeError
from stream.settings import CONFIG_ENV, LEVELS, ConfigError, get_settings

app = typer.Typer(help="Soirée: exact election-night totals and change events.", no_args_is_help=True)
election_app = typer.Typer(help="Register and inspect election definitions.", no_args_is_help=True)
app.add_typer(election_app, name="election")
operator_app = typer.Typer(help="Operators: who may see results before publish_after.", no_args_is_help=True)
app.add_typer(operator_app, name="operator")

console = Console()
err = Console(stderr=True, soft_wrap=True)  # an error is one line, however long


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def fail_on_kafka(settings: Any, exc: Exception) -> NoReturn:
    """One clear line for a Kafka error: unreachable (run `soiree up`), or what the broker refused."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | OSError):
        fail(
            f"Kafka is not reachable at {settings.kafka_bootstrap} ({type(exc).__name__}: {exc}); "
            "run `soiree up` first"
        )
    fail(f"Kafka refused: {type(exc).__name__}: {exc}")


def _register(election: Any) -> None:
    """Register a definition in Kafka (durable) and Redis, or fail with one clear line."""
    from aiokafka.errors import KafkaError

    from stream.adapters.kafka.definitions import register_election

    settings = get_settings()
    client = _redis()
    try:
        register_election(settings, client, election)
    except SoireeError as exc:  # too large a definition, misconfigured or refused topics
        fail(str(exc))
    except (KafkaError, OSError) as exc:
        fail_on_kafka(settings, exc)


def _redis() -> Any:
    import redis

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_dsn())
    try:
        client.ping()
    except redis.RedisError as exc:
        fail(
            f"Redis is not reachable at {settings.redis_display()} ({exc.__class__.__name__}); "
            "run `soiree up` first"
        )
    return client


def _check_level(level: str) -> str:
    if level not in LEVELS:
        fail(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
    return level


@app.callback()
def _options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            dir_okay=False,
            help=f"settings file (TOML, see config/soiree.toml.example; or {CONFIG_ENV}); "
            "SOIREE_* variables override it",
        ),
    ] = None,
) -> None:
    """Soirée: exact election-night totals and change events."""
    if config is not None:
        # Through the environment, so that the processes the command starts (workers) read it too.
        os.environ[CONFIG_ENV] = str(config.resolve())
        get_settings.cache_clear()
    try:  # read now: a bad file or value is one line here, not a traceback in the middle of a command
        get_settings()
    except ValidationError as exc:
        fail(str(ConfigError.from_validation(exc)))
    except ConfigError as exc:
        fail(str(exc))


# -- infrastructure ---------------------------------------------------------------------------
@app.command()
def up() -> None:
    """Start local Kafka (KRaft) and Redis unless they already answer; idempotent."""
    from stream.adapters.kafka.topics import ensure_topics
    from stream.devstack import services as infra

    settings = get_settings()
    try:
        statuses = infra.up(settings, console)
        asyncio.run(ensure_topics(settings))
    except Exception as exc:  # noqa: BLE001 - any failure here is shown as one clear line
        fail(str(exc))
    for status in statuses:
        console.print(f"[green]✔[/] {status.name} {status.state} at {status.address} {status.detail}")


@app.command()
def down() -> None:
    """Stop what `soiree up` started (and nothing else)."""
    from stream.devstack import services as infra

    for status in infra.down(get_settings(), console):
        console.print(f"[yellow]■[/] {status.name} {status.state} {status.detail}")


@app.command()
def worker(
    loglevel: str = typer.Option("warning", help="Faust log level"),
    election: list[str] | None = typer.Option(
        None, help="refuse to start unless this election is registered (repeatable)"
    ),
    log_config: Annotated[
        Path | None,
        typer.Option(
            "--log-config",
            metavar="FILE",
            dir_okay=False,
            help="logging.config.dictConfig file (YAML), e.g. config/logging.yaml; sets the levels instead "
            "of --loglevel",
        ),
    ] = None,
) -> None:
    """Run a Faust worker in the foreground (several may run at once)."""
    import faust
    from aiokafka.errors import KafkaError

    from stream.adapters.kafka.definitions import restore_from_log
    from stream.adapters.kafka.topics import ensure_topics
    from stream.adapters.redis.elections import list_elections
    from stream.logs import load_logging_config
    from stream.runtime.app import GC_THRESHOLDS, create_app
    from stream.runtime.faust.versions import check_versions

    try:
        check_versions()  # before anything else: the Faust patches were written for the pinned versions
    except SoireeError as exc:
        fail(str(exc))

    logging_config = None
    if log_config is not None:
        try:
            logging_config = load_logging_config(log_config)
        except ConfigError as exc:
            fail(str(exc))
    settings = get_settings()
    try:
        asyncio.run(ensure_topics(settings))
    except SoireeError as exc:  # topics misconfigured, or refused by the broker
        fail(str(exc))
    except (KafkaError, OSError) as exc:
        fail_on_kafka(settings, exc)
    client = _redis()
    restored = asyncio.run(restore_from_log(settings))  # Redis may have lost them; the topic has not
    if restored:
        err.print(
            f"[yellow]note:[/] restored {len(restored)} election definitions that Redis had lost: "
            f"{', '.join(restored)}"
        )
    registered = list_elections(client)
    missing = [e for e in election or [] if e not in registered]
    if missing:
        fail(
            f"election {', '.join(missing)} is not registered "
            f"(registered: {', '.join(registered) or 'none'}); run `soiree election create` first"
        )
    if not registered:
        err.print("[yellow]warning:[/] no election is registered yet; results will be rejected until one is")
    console.print(
        f"worker [bold]{settings.app_id}[/] on Kafka {settings.kafka_bootstrap}, "
        f"Redis {settings.redis_display()}"
    )
    from stream.runtime.metrics import serve_metrics

    wanted = settings.worker_metrics_port
    try:
        served = serve_metrics(
            wanted, settings.worker_metrics_host
        )  # a thread of its own: Faust's web server stays off
    except OSError as exc:  # a port it may not use (below 1024): a setting to correct
        fail(f"cannot serve metrics on port {wanted} (SOIREE_WORKER_METRICS_PORT): {exc}")
    if served is not None:
        note = "" if served[0] == wanted else f" ({wanted} is taken)"
        console.print(f"metrics at http://127.0.0.1:{served[0]}/metrics{note}")
    elif wanted:
        err.print(f"[yellow]warning:[/] ports {wanted} to {wanted + 20} are taken: no metrics")
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # the same asyncio, a faster loop
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        faust_app = create_app(settings)
    except SoireeError as exc:
        fail(str(exc))
    faust_app.pipeline.elections.preload(election or [])  # type: ignore[attr-defined]
    sys.argv = [sys.argv[0], "worker"]
    faust.Worker(faust_app, loglevel=loglevel, logging_config=logging_config).execute_from_commandline()


# -- elections ------------------------------------------------------------------------------
@election_app.command("create")
def election_create(
    file: str | None = typer.Argument(None, help="election definition JSON, or - for stdin"),
    from_ministry: Path | None = typer.Option(None, help="build it from a ministry per-bureau file"),
    election: str | None = typer.Option(None, help="election id (required with --from-ministry)"),
    name: str | None = typer.Option(None, help="display name (with --from-ministry)"),
    compare_to: str | None = typer.Option(
        None, help="an election sharing its bureau ids: standings gain reference and change"
    ),
    qualify: int | None = typer.Option(None, help="the first N go through (presidential round 1: 2)"),
    round_: int | None = typer.Option(None, "--round", help="1 or 2"),
) -> None:
    """Register an election definition (its roll of bureaux is authoritative)."""
    from pydantic import ValidationError

    from stream.domain.messages import Election

    if from_ministry is not None:
        if not election:
            fail("--election ID is required with --from-ministry")
        from stream.sources.ministry import election_from_ministry

        try:
            definition = election_from_ministry(from_ministry, election, name)
        except (OSError, ValueError) as exc:
            fail(str(exc))
    elif file is not None:
        text = sys.stdin.read() if file == "-" else _read_text(Path(file))
        try:
            definition = Election.model_validate_json(text)
        except ValidationError as exc:
            fail("invalid election definition:\n" + _errors(exc))
        if election and election != definition.election:
            fail(f"--election {election} but the file defines {definition.election}")
    else:
        fail("give a FILE (or -) or --from-ministry FILE --election ID")
    if compare_to is not None:
        from stream.adapters.redis.elections import list_elections

        if compare_to not in list_elections(_redis()):
            err.print(
                f"[yellow]warning:[/] {escape(compare_to)} is not registered yet; a report is compared "
                "with what the reference has counted when it is tallied, so register and count "
                f"{escape(compare_to)} first"
            )
    options = {"compare_to": compare_to, "qualify": qualify, "round": round_}
    if any(value is not None for value in options.values()):
        given = {key: value for key, value in options.items() if value is not None}
        try:
            definition = Election.model_validate({**definition.model_dump(), **given})
        except ValidationError as exc:
            fail("invalid election definition:\n" + _errors(exc))
    _register(definition)
    communes = {entry.commune for entry in definition.bureaux}
    console.print(
        f"[green]✔[/] election [bold]{escape(definition.election)}[/] ({escape(definition.name)}): "
        f"{len(definition.candidates)} candidates, {len(definition.bureaux):,} bureaux, "
        f"{len(communes):,} communes"
    )


@election_app.command("list")
def election_list() -> None:
    """List registered elections."""
    from stream.adapters.redis.elections import list_elections

    for election_id in list_elections(_redis()):
        console.print(election_id)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    raise AssertionError


def _errors(exc: Any) -> str:
    return "\n".join(
        f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)[:10]
    )


# -- ingest ---------------------------------------------------------------------------------
@app.command()
def ingest(
    file: str = typer.Argument(..., help="results file (JSON Lines or ministry CSV[.gz]); - for stdin"),
    election: str = typer.Option(..., help="election id the results belong to"),
    format: str = typer.Option(
        "jsonl",
        "--format",
        help="jsonl | ministry | turnout (JSON Lines of turnout reports, to turnout-reports)",
    ),
    rate: float | None = typer.Option(None, help="publish at most N results per second"),
    dry_run: bool = typer.Option(False, help="validate only, publish nothing"),
) -> None:
    """Validate and publish results; invalid lines go to bureau-results-rejected with their reason."""
    from stream.adapters.redis.elections import load_election

    settings = get_settings()
    definition = load_election(_redis(), election)
    if definition is None:
        fail(f"unknown election {election!r}; register it with `soiree election create`")
    if format not in ("jsonl", "ministry", "turnout"):
        fail(f"unknown format {format!r}; use jsonl, ministry or turnout")
    if format == "ministry" and file == "-":
        fail("the ministry format needs a file path")
    report = asyncio.run(_ingest(settings, definition, file, format, rate, dry_run))
    verb = "validated" if dry_run else "published"
    console.print(f"[green]{report.accepted:,} accepted[/] ({verb}), [red]{report.rejected:,} rejected[/]")
    for reason, count in report.reasons.most_common(5):
        console.print(f"  {count:>7,} × {reason}", markup=False, highlight=False)
    for example in report.examples[:5]:
        console.print(f"  {example}", style="dim", markup=False, highlight=False)
    if report.accepted == 0 and report.rejected:
        raise typer.Exit(2)


def _jsonl_lines(file: str) -> tuple[Iterator[bytes], int | None]:
    if file == "-":
        return (line for line in sys.stdin.buffer), None
    path = Path(file)
    if not path.exists():
        fail(f"no such file: {file}")
    opener = _open_maybe_gzip(path)
    with opener() as handle:
        total = sum(1 for _ in handle)

    def lines() -> Iterator[bytes]:
        with opener() as handle:
            yield from handle

    return lines(), total


def _open_maybe_gzip(path: Path) -> Any:
    import gzip

    with path.open("rb") as handle:
        is_gzip = handle.read(2) == b"\x1f\x8b"
    return (lambda: gzip.open(path, "rb")) if is_gzip else (lambda: path.open("rb"))


async def _ingest(
    settings: Any, definition: Any, file: str, format: str, rate: float | None, dry_run: bool
) -> Any:
    from stream.adapters.kafka.publisher import IngestReport, Publisher, check_line, check_turnout_line
    from stream.domain.messages import InvalidResult

    turnout = format == "turnout"
    check = check_turnout_line if turnout else check_line

    report = IngestReport()
    if format == "ministry":
        from stream.sources.ministry import results_from_ministry

        rows = list(results_from_ministry(Path(file), definition.election))
        items: Iterator[tuple[str, bytes]] = (
            (f"row {i}", json.dumps(r).encode()) for i, r in enumerate(rows, 2)
        )
        total: int | None = len(rows)
    else:
        lines, total = _jsonl_lines(file)
        items = ((f"line {i}", line.strip()) for i, line in enumerate(lines, 1))

    async def run(publisher: Any) -> None:
        with _progress() as progress:
            task = progress.add_task("ingest", total=total)
            for where, raw in items:
                progress.advance(task)
                if not raw:
                    continue
                try:
                    result = check(raw, definition, settings.max_message_bytes)
                except InvalidResult as exc:
                    report.reject(where, str(exc))
                    if publisher:
                        await publisher.rejection(raw, str(exc))
                    continue
                report.accepted += 1
                if publisher:
                    await (publisher.turnout(result) if turnout else publisher.result(result))

    if dry_run:
        await run(None)
    else:
        from aiokafka.errors import KafkaError

        from stream.adapters.kafka.publisher import Publisher

        try:
            async with Publisher(settings, rate) as publisher:
                await run(publisher)
        except (KafkaError, OSError) as exc:
            fail_on_kafka(settings, exc)
    return report


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


# -- results and events -----------------------------------------------------------------------
@app.command()
def results(
    level: str = typer.Argument(
        ..., help="bureau | commune | circonscription | department | region | nation"
    ),
    area: str | None = typer.Argument(
        None, help="area id (FR, 84, 42, 42-01, 42218, 42218-0001); all areas if omitted"
    ),
    election: str = typer.Option(..., help="election id"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Current standings, read straight from Redis."""
    from stream.adapters.redis.standings import list_standings, read_standings

    _check_level(level)
    client = _redis()
    if level == "nation" and area is None:
        area = "FR"
    if area is not None:
        standings = read_standings(client, election, level, area)
        if standings is None:
            fail(f"no results yet for {level} {area} in election {election}")
        if as_json:
            print(standings.model_dump_json())
        else:
            from stream.cli.views import standings_table

            console.print(standings_table(standings))
        return
    everything = list_standings(client, election, level)
    if as_json:
        print(json.dumps([s.model_dump(mode="json") for s in everything], ensure_ascii=False))
        return
    if not everything:
        fail(f"no {level} results yet for election {election}")
    from stream.cli.views import areas_table

    console.print(areas_table(everything))


@app.command()
def tail(
    election: str | None = typer.Option(None, help="only this election"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
    from_beginning: bool = typer.Option(False, help="start from the first event kept by Kafka"),
    level: str | None = typer.Option(None, help="only this level"),
    area: str | None = typer.Option(None, help="only this area id"),
) -> None:
    """Follow election-updates as events arrive (Ctrl-C to stop)."""
    from stream.adapters.kafka.updates import follow_updates
    from stream.cli.views import event_line

    if level:
        _check_level(level)
    settings = get_settings()

    async def run() -> None:
        async for event in follow_updates(settings, election, from_beginning, level, area):
            if as_json:
                print(event.model_dump_json(), flush=True)
            else:
                console.print(event_line(event))

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


# -- replay and demo --------------------------------------------------------------------------
@app.command()
def replay(
    scenario: str = typer.Argument("seed", help="'seed', a scenario .jsonl file, or a ministry .csv.gz"),
    speed: float = typer.Option(
        60.0, help="time compression: 60 plays an hour in a minute; 0 = as fast as possible"
    ),
    as_election: str | None = typer.Option(None, "--as", help="register and replay under this election id"),
) -> None:
    """Replay a recorded or generated night with its timing (registers its election first)."""
    from stream.cli.replay import load_night, run_replay

    settings = get_settings()
    night = load_night(scenario, as_election)
    _register(night.election)
    console.print(
        f"replaying [bold]{night.election.name}[/] ({night.election.election}): "
        f"{len(night.reports):,} reports at ×{speed:g}"
        if speed
        else "as fast as possible"
    )
    with _progress() as progress:
        task = progress.add_task("replay", total=len(night.reports))
        asyncio.run(run_replay(settings, night, speed, on_sent=lambda: progress.advance(task)))


@app.command()
def demo(
    speed: float = typer.Option(600.0, help="time compression of the night (600: 4 hours in 24 s)"),
) -> None:
    """The main job: bring everything up, replay the seed night live, print the outcome."""
    from stream.cli.demo import run_demo

    run_demo(get_settings(), console, speed)


@app.command()
def schema(
    out: Path | None = typer.Option(None, help="write one <Model>.json per message into this folder"),
) -> None:
    """JSON Schema of every message (printed, or written to a folder)."""
    from stream.domain.messages import (
        BureauResult,
        Election,
        Rejection,
        Standings,
        TurnoutReport,
        UpdateEvent,
    )

    schemas = {
        m.__name__: m.model_json_schema()
        for m in (Election, BureauResult, TurnoutReport, UpdateEvent, Standings, Rejection)
    }
    if out is None:
        print(json.dumps(schemas, indent=2, ensure_ascii=False))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, body in schemas.items():
        (out / f"{name}.json").write_text(
            json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    console.print(f"wrote {len(schemas)} schemas to {out}")


# -- HTTP service -----------------------------------------------------------------------------
@app.command()
def serve(
    host: str | None = typer.Option(None, help="address to listen on (default: SOIREE_SERVE_HOST)"),
    port: int | None = typer.Option(None, help="port (default: SOIREE_SERVE_PORT, 8080)"),
) -> None:
    """Serve the night over HTTP: elections, results, Server-Sent Events, health and metrics."""
    import logging

    from aiohttp import web
    from aiokafka.errors import KafkaError

    from stream.adapters.kafka.positions import TopicReader
    from stream.http.app import SafeAccessLogger, create_web_app

    settings = get_settings()
    _redis()  # one clear line when Redis is not there

    async def check_kafka() -> None:
        reader = TopicReader(settings)
        await reader.start({settings.updates_topic: None})
        await reader.stop()

    try:
        asyncio.run(asyncio.wait_for(check_kafka(), 20))
    except LookupError as exc:
        fail(str(exc))
    except (KafkaError, OSError, TimeoutError) as exc:
        fail_on_kafka(settings, exc)
    host = host or settings.serve_host
    port = port or settings.serve_port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        runner = web.AppRunner(
            create_web_app(settings), access_log_class=SafeAccessLogger, shutdown_timeout=5
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
            shown = f"[{host}]" if ":" in host else host
            console.print(f"serving on [bold]http://{shown}:{port}/[/] (Ctrl-C to stop)", highlight=False)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


@operator_app.command("add")
def operator_add(
    name: str = typer.Argument(..., help="who the token is for"),
    replace: bool = typer.Option(False, "--replace", help="make a new token for an existing operator"),
) -> None:
    """Make an operator token (printed once; only its SHA-256 is kept in SOIREE_OPERATORS_FILE)."""
    from stream.http.embargo import OperatorExists, add_operator

    settings = get_settings()
    try:
        token = add_operator(settings.operators_file, name, replace)
    except (OperatorExists, ValueError, OSError) as exc:
        fail(str(exc))
    err.print(f"operator {name} added to {settings.operators_file}; the token is shown once:")
    print(token, flush=True)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
