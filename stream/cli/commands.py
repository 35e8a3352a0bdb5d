"""The ``soiree`` command line (typer + rich). Each command is a thin shell over a module."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stream.adapters.redis.clients import sync_client
from stream.errors import SoireeError
from stream.settings import CONFIG_ENV, LEVELS, ConfigError, get_settings

app = typer.Typer(help="Soirée: exact election-night totals and change events.", no_args_is_help=True)
election_app = typer.Typer(help="Register and inspect election definitions.", no_args_is_help=True)
app.add_typer(election_app, name="election")
operator_app = typer.Typer(help="Operators: who may see results before publish_after.", no_args_is_help=True)
app.add_typer(operator_app, name="operator")
source_app = typer.Typer(
    help="Sources: who may report what (HTTP ingest, signed reports).", no_args_is_help=True
)
app.add_typer(source_app, name="source")

console = Console()
err = Console(stderr=True, soft_wrap=True)  # an error is one line, however long


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def fail_on_kafka(settings: Any, exc: Exception) -> NoReturn:
    """One clear line for a Kafka error: unreachable (run `soiree up`), or what the broker refused."""
    from aiokafka.errors import (
        AuthenticationFailedError,
        KafkaConnectionError,
        KafkaTimeoutError,
        SaslAuthenticationFailed,
    )

    if isinstance(exc, SaslAuthenticationFailed | AuthenticationFailedError):
        fail(
            f"Kafka at {settings.kafka_bootstrap} refused the credentials of "
            f"SOIREE_KAFKA_SASL_USERNAME={settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}): "
            "check the username and password (`soiree up --secure` writes them to $SOIREE_HOME/secure/)"
        )
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | OSError):
        sasl = settings.kafka_security_protocol.startswith("SASL")
        hint = (
            f"or it refused the credentials of SOIREE_KAFKA_SASL_USERNAME={settings.kafka_sasl_username!r}; "
            "check them, and that `soiree up --secure` runs"
            if sasl
            else "run `soiree up` first"
        )
        fail(f"Kafka is not reachable at {settings.kafka_bootstrap} ({type(exc).__name__}: {exc}); {hint}")
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
    client = sync_client(settings.redis_dsn())
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
def up(
    secure: bool = typer.Option(
        False,
        help="a locked-down Kafka (SASL/SCRAM over TLS with a local CA, ACLs per principal: ingest, "
        "worker, reader) and Redis with ACL users, as in production",
    ),
    brokers: int = typer.Option(
        1,
        min=1,
        max=5,
        help="a KRaft cluster of N broker+controller nodes: node i on the bootstrap port + 2(i-1), its "
        "controller on SOIREE_KAFKA_CONTROLLER_PORT + 2(i-1); data in $SOIREE_HOME/kafka-cluster-N",
    ),
) -> None:
    """Start local Kafka (KRaft) and Redis unless they already answer; idempotent."""
    from stream.adapters.kafka.topics import ensure_topics
    from stream.devstack import services as infra

    settings = get_settings()
    try:
        statuses = infra.up(settings, console, secure=secure, brokers=brokers)
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
    processes: str = typer.Option(
        "1", help="N worker processes, or auto (one per core), started and restarted if they die"
    ),
) -> None:
    """Run a Faust worker in the foreground (several may run at once)."""
    if processes != "1":
        from stream.cli.supervisor import process_count, supervise, worker_command

        try:
            count = process_count(processes)
        except ValueError as exc:
            fail(str(exc))
        raise typer.Exit(supervise(worker_command(sys.argv), count, lambda line: err.print(escape(line))))
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
    if election:
        preloading = sync_client(settings.redis_dsn())  # before the loop runs: nothing to block
        faust_app.pipeline.elections.preload(preloading, election)  # type: ignore[attr-defined]
        preloading.close()
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
    replace: bool = typer.Option(
        False, help="replace a definition whose roll or candidates changed once results exist: count again"
    ),
) -> None:
    """Register an election definition (its roll of bureaux is authoritative).

    --from-ministry reads the reshaped CSV (``../shared/data/pres2017``) or the ministry's own
    per-bureau TXT (presidential: one race; législatives: one race per circonscription)."""
    from pydantic import ValidationError

    from stream.domain.messages import Election

    if from_ministry is not None:
        if not election:
            fail("--election ID is required with --from-ministry")
        from stream.sources.ministry import election_from_ministry
        from stream.sources.ministry_txt import definition_from_txt, is_ministry_txt

        try:
            if is_ministry_txt(from_ministry):
                definition = definition_from_txt(from_ministry, election, name, round_ or 1)
            else:
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
    plan, registered = _plan_and_register(definition, replace)
    definition = plan.definition
    communes = {entry.commune for entry in definition.bureaux}
    races = f"{len(definition.races)} races, " if definition.races else ""
    revision = f", revision {definition.revision}" if definition.revision > 1 else ""
    console.print(
        f"[green]✔[/] election [bold]{escape(definition.election)}[/] ({escape(definition.name)}{revision}): "
        f"{races}{len(definition.candidate_list)} candidates, {len(definition.bureaux):,} bureaux, "
        f"{len(communes):,} communes"
    )
    if registered is not None and plan.recount:
        _recount(registered, definition)
    elif registered is not None and _recount_pending(definition):
        _recount(registered, definition, resume=True)


def _plan_and_register(definition: Any, replace: bool) -> tuple[Any, Any]:
    """Register ``definition`` under the right revision (``cli.registration``), or fail saying why;
    returns (the plan, the definition registered before). The one before comes from Redis, or
    from the durable topic when Redis lost it: a revision never goes down."""
    from stream.adapters.redis.elections import has_results, load_election
    from stream.adapters.redis.keys import recount_key
    from stream.cli.registration import RegistrationRefused, plan_registration

    client = _redis()
    registered = load_election(client, definition.election) or _durable_definition(definition.election)
    try:
        plan = plan_registration(
            registered,
            definition,
            registered is not None and has_results(client, definition.election),
            replace,
        )
    except RegistrationRefused as exc:
        fail(str(exc))
    if plan.recount:  # until the recount is done: an interrupted one is taken up by the next create
        client.set(recount_key(definition.election), plan.definition.revision)
    _register(plan.definition)
    return plan, registered


def _durable_definition(election_id: str) -> Any:
    """The definition the durable topic holds for ``election_id`` (None if none)."""
    from aiokafka.errors import KafkaError

    from stream.adapters.kafka.definitions import read_definitions
    from stream.domain.messages import Election

    settings = get_settings()
    try:
        raw = asyncio.run(read_definitions(settings)).get(election_id)
    except (KafkaError, OSError) as exc:
        fail_on_kafka(settings, exc)
    return None if raw is None else Election.model_validate_json(raw)


def _recount_pending(definition: Any) -> bool:
    from stream.adapters.redis.keys import recount_key

    pending = _redis().get(recount_key(definition.election))
    return pending is not None and int(pending) == definition.revision


def _recount(old: Any, new: Any, resume: bool = False) -> None:
    """Count a replaced election again from its reports (``adapters.kafka.recount``); the
    pending mark goes only once it is done."""
    from aiokafka.errors import KafkaError
    from redis import RedisError

    from stream.adapters.kafka.recount import RECOUNT_GRACE, recount
    from stream.adapters.redis.keys import recount_key

    settings = get_settings()
    err.print(
        f"recounting {escape(new.election)} under revision {new.revision} (in {RECOUNT_GRACE:.0f} s: "
        "workers pick the revision up)"
    )
    with _progress() as progress:
        task = progress.add_task("recount", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            done = asyncio.run(recount(settings, old, new, advance, resume=resume))
        except (KafkaError, OSError) as exc:
            fail_on_kafka(settings, exc)
        except RedisError as exc:
            fail(f"the recount stopped on Redis ({exc}); run the same command again to finish it")
    _redis().delete(recount_key(new.election))
    console.print(
        f"[green]✔[/] {done.republished:,} reports published again for revision {new.revision}; "
        f"{done.standings_deleted:,} standings of the old roll deleted"
    )
    for reason, count in done.refused.most_common(5):
        console.print(f"  {count:>7,} × refused now: {reason}", markup=False, highlight=False)


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
    file: str = typer.Argument(..., help="results file (JSON Lines, ministry CSV[.gz] or TXT); - for stdin"),
    election: str = typer.Option(..., help="election id the results belong to"),
    format: str = typer.Option(
        "jsonl",
        "--format",
        help="jsonl | ministry (= wide-csv, the reshaped CSV) | ministry-txt (the ministry's own "
        "per-bureau TXT) | turnout (JSON Lines of turnout reports)",
    ),
    seq: int | None = typer.Option(
        None, help="every report's seq (a definitive file after a provisional one: --seq 2)"
    ),
    status: str | None = typer.Option(None, help="every report's status: provisional, definitive, annulled"),
    rate: float | None = typer.Option(None, help="publish at most N results per second"),
    dry_run: bool = typer.Option(False, help="validate only, publish nothing"),
    sign_with: Path | None = typer.Option(
        None, help="sign every report with this Ed25519 private key (PEM; `soiree source keygen`)"
    ),
    source: str | None = typer.Option(
        None, help="the signing source's id (default: the source whose public key matches)"
    ),
) -> None:
    """Validate and publish results; invalid lines go to bureau-results-rejected with their reason.

    Exits with 1 when anything was refused (2 when nothing was accepted)."""
    from stream.adapters.redis.elections import load_election
    from stream.cli.ingest import IngestOptions

    settings = get_settings()
    client = _redis()
    definition = load_election(client, election)
    if definition is None:
        fail(f"unknown election {election!r}; register it with `soiree election create`")
    options = IngestOptions(format=format, rate=rate, dry_run=dry_run, seq=seq, status=status)
    problem = options.check()
    if problem:
        fail(problem)
    if sign_with is not None:
        options = options.signed(_signer(settings, sign_with, source))
    elif definition.require_signature:
        fail(f"election {election} requires signed reports: give --sign-with KEY (a source's private key)")
    report = asyncio.run(_ingest(settings, definition, file, options, client))
    verb = "validated" if dry_run else "published"
    repeats = f", {report.repeats:,} already applied (skipped)" if report.repeats else ""
    console.print(
        f"[green]{report.accepted:,} accepted[/] ({verb}){repeats}, [red]{report.rejected:,} rejected[/]"
    )
    for reason, count in report.reasons.most_common(5):
        console.print(f"  {count:>7,} × {reason}", markup=False, highlight=False)
    for example in report.examples[:5]:
        console.print(f"  {example}", style="dim", markup=False, highlight=False)
    if report.rejected:
        total = report.accepted + report.rejected + report.repeats
        err.print(f"[red]{report.rejected:,} of {total:,} reports rejected[/]")
        raise typer.Exit(2 if report.accepted == 0 and report.repeats == 0 else 1)


def _signer(settings: Any, key_file: Path, source_id: str | None) -> Any:
    """(source id, private key) for ``--sign-with``: the source named, or the one whose public key
    is the key's; fails with what to do when there is none."""
    from stream.auth.registry import read_sources
    from stream.auth.signatures import load_private_key, public_key_text

    try:
        key = load_private_key(key_file)
        sources = read_sources(settings.sources_file)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    mine = public_key_text(key.public_key())
    matching = [
        s.id for s in sources.values() if s.public_key is not None and public_key_text(s.public_key) == mine
    ]
    if source_id is None:
        if not matching:
            fail(
                f"no source in {settings.sources_file} has the public key of {key_file}; add one with "
                f"`soiree source add ID --scope … --public-key {key_file.with_suffix('.pub')}`, "
                "or give --source"
            )
        source_id = matching[0]
    elif source_id not in matching:
        err.print(
            f"[yellow]warning:[/] source {escape(source_id)} does not have this key: workers will refuse"
        )
    return source_id, key


async def _ingest(settings: Any, definition: Any, file: str, options: Any, client: Any = None) -> Any:
    from stream.cli.ingest import LOOKUP_CHUNK, Ingest, read_items
    from stream.errors import MinistryFormatError

    run = Ingest(definition, options, client)
    try:
        items, total = read_items(file, definition.election, options)
    except (MinistryFormatError, OSError) as exc:
        fail(str(exc))

    async def publish(publisher: Any, batch: list[tuple[str, bytes, dict[str, Any]]]) -> None:
        reports, refused = run.against_applied(batch)
        run.report.accepted += len(reports)
        if publisher:
            for report in reports:
                await (publisher.turnout(report) if run.turnout else publisher.result(report))
            for _, raw, reason in refused:
                await publisher.rejection(raw, reason)

    async def go(publisher: Any) -> None:
        batch: list[tuple[str, bytes, dict[str, Any]]] = []
        with _progress() as progress:
            task = progress.add_task("ingest", total=total)
            try:
                for where, raw in items:
                    progress.advance(task)
                    if not raw:
                        continue
                    checked = run.check(where, raw, settings.max_message_bytes)
                    if checked is None:
                        if publisher:
                            await publisher.rejection(raw, run.report.last_reason)
                        continue
                    batch.append((where, raw, checked))
                    if len(batch) >= LOOKUP_CHUNK:
                        await publish(publisher, batch)
                        batch = []
            except MinistryFormatError as exc:
                fail(str(exc))
            await publish(publisher, batch)

    if options.dry_run:
        await go(None)
    else:
        from aiokafka.errors import KafkaError

        from stream.adapters.kafka.publisher import Publisher

        try:
            async with Publisher(settings, options.rate) as publisher:
                await go(publisher)
        except (KafkaError, OSError) as exc:
            fail_on_kafka(settings, exc)
    return run.report


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
    legislative: int | None = typer.Option(
        None,
        help="generate a législatives night (round 1 or 2) on the roll of SCENARIO (a ministry file "
        "with circonscriptions): one race per circonscription, invented candidates",
    ),
    save: Path | None = typer.Option(None, help="write the night to this scenario .jsonl and stop"),
) -> None:
    """Replay a recorded or generated night with its timing (registers its election first)."""
    from stream.cli.replay import load_night, run_replay

    settings = get_settings()
    try:
        night = load_night(scenario, as_election, legislative)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if save is not None:
        from stream.sources.scenario import write_scenario

        write_scenario(night, save)
        console.print(
            f"[green]✔[/] {len(night.reports):,} reports of {escape(night.election.name)} written to {save}"
        )
        return
    night = night.model_copy(
        update={"election": _plan_and_register(night.election, replace=False)[0].definition}
    )
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


@source_app.command("add")
def source_add(
    source_id: str = typer.Argument(..., metavar="ID", help="the source's id (a prefecture, a town hall)"),
    scope: str = typer.Option(
        ..., help="what it may report: LEVEL:AREA[,LEVEL:AREA…] (department:42, commune:69123, bureau:…)"
    ),
    election: str | None = typer.Option(None, help="only this election (every election without it)"),
    public_key: Path | None = typer.Option(None, help="its Ed25519 public key (PEM), to sign reports"),
    replace: bool = typer.Option(False, help="renew an existing source (its old token stops working)"),
) -> None:
    """Add a source; prints its bearer token once (only an scrypt hash of it is kept)."""
    from stream.auth.registry import SourceExists, add_source

    settings = get_settings()
    try:
        token = add_source(settings.sources_file, source_id, scope, election, public_key, replace)
    except SourceExists as exc:
        fail(str(exc))
    except (OSError, ValueError) as exc:
        fail(str(exc))
    console.print(f"[green]✔[/] source [bold]{escape(source_id)}[/] in {settings.sources_file}; its token:")
    print(token)  # plain, alone on its line: the only time it is shown
    err.print(
        "keep it secret: it is shown only now (POST /api/elections/{id}/reports, Authorization: Bearer …)"
    )


@source_app.command("keygen")
def source_keygen(
    prefix: Path = typer.Argument(..., help="writes PREFIX.key (private, 0600) and PREFIX.pub"),
) -> None:
    """Make an Ed25519 key pair for signing reports (give PREFIX.pub to `source add --public-key`)."""
    from stream.auth.signatures import write_key_pair

    try:
        private, public = write_key_pair(prefix)
    except FileExistsError:
        fail(f"{prefix}.key already exists; choose another prefix")
    except OSError as exc:
        fail(f"cannot write {prefix}.key: {exc.strerror}")
    console.print(f"[green]✔[/] private key {private} (keep it with the source), public key {public}")


@app.command()
def verify(
    file: Path = typer.Argument(
        ..., help="reports (JSON Lines) or dead letters (their payloads are checked)"
    ),
) -> None:
    """Check the signatures of a file of reports, offline, against the sources file (the scope is
    the workers' to check: a well-signed report outside its source's scope is "ok" here)."""
    import orjson

    from stream.auth.registry import Sources
    from stream.auth.signatures import signature_matches

    settings = get_settings()
    sources = Sources(settings.sources_file)
    try:
        lines = file.read_bytes().splitlines()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    good = bad = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:  # orjson, as the workers read reports
            data = orjson.loads(line)
            if isinstance(data, dict) and "reason" in data and isinstance(data.get("payload"), str):
                data = orjson.loads(data["payload"])  # a dead letter: its report
        except orjson.JSONDecodeError:
            console.print(f"line {number}: not JSON", markup=False, highlight=False)
            bad += 1
            continue
        name = data.get("source") if isinstance(data, dict) else None
        source = sources.get(name) if isinstance(name, str) else None
        if not isinstance(data, dict) or not isinstance(data.get("signature"), str) or name is None:
            problem = "unsigned"
        elif source is None:
            problem = f"unknown source {name!r}"
        elif source.public_key is None:
            problem = f"source {name} has no public key"
        elif not signature_matches(data, source.public_key):
            problem = f"bad signature (not by {name}'s key, or altered after signing)"
        else:
            problem = None
        place = (data.get("bureau") or data.get("commune")) if isinstance(data, dict) else None
        if problem is None:
            good += 1
            console.print(f"line {number}: ok, signed by {name} ({place})", markup=False, highlight=False)
        else:
            bad += 1
            console.print(f"line {number}: {problem} ({place})", markup=False, highlight=False)
    console.print(f"{good:,} signed correctly, {bad:,} not")
    if bad:
        raise typer.Exit(1)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
