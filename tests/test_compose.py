"""docker-compose.yml, Dockerfile and .dockerignore, checked without Docker.

No Docker engine runs where the tests run, so the compose file is checked by construction:
Kafka's KRaft settings and listeners, which listener each soiree service reaches (its settings
read from ``config/compose.env`` through ``env_file:``, as Compose reads them), Redis and its
mounted ``config/redis/redis.conf``, the dependency graph, and every service command resolved
against the real typer/click CLI.

Each ``check_*`` function takes the parsed compose file (a dict) and returns a list of problems
(empty when all is well). They run on the real file, and on mutated copies to prove they fail.
"""

from __future__ import annotations

import base64
import copy
import difflib
import importlib
import json
import os
import re
import shlex
import shutil
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml
from packaging.specifiers import SpecifierSet
from pydantic import ValidationError

import stream.cli.commands
from stream.settings import LEVELS, Settings
from stream.sources.scenario import SEED_NAMES

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

EXPECTED_SERVICES = ("kafka", "redis", "worker", "replay", "tail", "serve")
SOIREE_SERVICES = ("worker", "replay", "tail", "serve")
#: CLI commands that talk to Redis (they must wait for it); every command talks to Kafka.
REDIS_COMMANDS = frozenset({"worker", "replay", "ingest", "results", "election", "demo", "serve"})
CONDITIONS = frozenset({"service_started", "service_healthy", "service_completed_successfully"})
#: Hosts that mean "the machine running Docker", not a container on the compose network.
HOST_SIDE = frozenset({"localhost", "127.0.0.1", "::1", "host.docker.internal"})

Problems = list[str]


class Compose(dict[str, Any]):
    """The parsed compose file, and the directory its relative paths (env_file, volumes) start from."""

    directory: Path = ROOT


# -- reading the compose file -----------------------------------------------------------------
def load_compose(path: Path = COMPOSE_FILE) -> Compose:
    """The compose file as Compose reads it (YAML merge keys ``<<: *anchor`` resolved)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    compose = Compose(data)
    compose.directory = Path(path).resolve().parent
    return compose


def services(compose: Compose) -> dict[str, dict[str, Any]]:
    return compose.get("services") or {}


_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)")
_SINGLE_QUOTED = re.compile(r"'([^']*)'\s*(?:#.*)?")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"\s*(?:#.*)?')


def read_env_file(path: Path) -> dict[str, str]:
    """A dotenv file as Compose reads an ``env_file``; ValueError names the first line it would not.

    ``KEY=value``; ``#`` starts a comment line, or an inline comment after a blank; ``'single'``
    quotes are literal, ``"double"`` ones take backslash escapes. A ``$`` outside single quotes
    would be interpolated by Compose from the host's environment: refused, nothing here needs it.
    """
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{path.name}:{number}"
        match = _ENV_LINE.fullmatch(text)
        if match is None:
            raise ValueError(f"{where}: not KEY=VALUE: {text!r}")
        key, raw = match.groups()
        if raw.startswith("'"):
            quoted = _SINGLE_QUOTED.fullmatch(raw)
            if quoted is None:
                raise ValueError(f"{where}: {key}: unterminated single quote")
            env[key] = quoted[1]
            continue
        if raw.startswith('"'):
            quoted = _DOUBLE_QUOTED.fullmatch(raw)
            if quoted is None:
                raise ValueError(f"{where}: {key}: unterminated double quote")
            value = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), quoted[1])
        else:
            value = re.split(r"\s#", raw, maxsplit=1)[0].rstrip()
        if "$" in value:
            raise ValueError(f"{where}: {key}: '$' would be interpolated by Compose (single-quote the value)")
        env[key] = value
    return env


def env_files(compose: Compose, service: dict[str, Any]) -> list[tuple[Path, bool]]:
    """``(path, required)`` of each ``env_file`` entry (string, list, or ``{path, required}``)."""
    entries = service.get("env_file") or []
    entries = [entries] if isinstance(entries, str | dict) else entries
    result = []
    for entry in entries:
        if isinstance(entry, dict):
            result.append((compose.directory / str(entry["path"]), bool(entry.get("required", True))))
        else:
            result.append((compose.directory / str(entry), True))
    return result


def environment(compose: Compose, service: dict[str, Any]) -> dict[str, str]:
    """What the container's environment holds: its env files in order, then ``environment``
    (either syntax, mapping or ``KEY=value`` list), which wins. A file that is missing or does
    not parse adds nothing here; ``check_env_files`` reports it."""
    merged: dict[str, str] = {}
    for path, _ in env_files(compose, service):
        try:
            merged.update(read_env_file(path))
        except (OSError, ValueError):
            pass
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    for key, value in env.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        merged[str(key)] = "" if value is None else text
    return merged


def command_args(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def network_names(compose: Compose, name: str) -> set[str]:
    """Names under which other containers on the compose network reach service ``name``."""
    service = services(compose).get(name, {})
    names = {name}
    for key in ("hostname", "container_name"):
        if service.get(key):
            names.add(str(service[key]))
    networks = service.get("networks")
    if isinstance(networks, dict):
        for settings in networks.values():
            names.update((settings or {}).get("aliases") or [])
    return names


def service_by_image(compose: Compose, pattern: str) -> str | None:
    for name, service in services(compose).items():
        if re.match(pattern, str(service.get("image", ""))):
            return name
    return None


def kafka_service(compose: Compose) -> str | None:
    return service_by_image(compose, r"^(docker\.io/)?apache/kafka:")


def redis_service(compose: Compose) -> str | None:
    return service_by_image(compose, r"^(docker\.io/)?(library/)?redis(:|$)")


def soiree_services(compose: Compose) -> list[str]:
    """Services running the project's image (built from the Dockerfile, entrypoint ``soiree``)."""
    built = {str(s.get("image")) for s in services(compose).values() if "build" in s}
    return [n for n, s in services(compose).items() if "build" in s or str(s.get("image")) in built]


def published_ports(service: dict[str, Any]) -> list[tuple[int | None, int]]:
    """``(host port, container port)`` for every ``ports`` entry (short or long syntax)."""
    result: list[tuple[int | None, int]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            host = entry.get("published")
            result.append((int(host) if host not in (None, "") else None, int(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            result.append((None, int(parts[0])))
        else:
            result.append((int(parts[-2]) if parts[-2] else None, int(parts[-1])))
    return result


def parse_listeners(spec: str) -> dict[str, tuple[str, int]]:
    """``"PLAINTEXT://kafka:9092,CONTROLLER://:9093"`` -> ``{"PLAINTEXT": ("kafka", 9092), ...}``."""
    listeners: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        match = re.fullmatch(r"([A-Za-z0-9_]+)://(\[[^\]]*\]|[^:/]*):(\d+)", item)
        if not match:
            raise ValueError(f"not a listener: {item!r}")
        listeners[match[1].upper()] = (match[2], int(match[3]))
    return listeners


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host, int(port)


@contextmanager
def only_env(env: dict[str, str]) -> Iterator[None]:
    """os.environ with the caller's SOIREE_* variables removed and ``env`` added."""
    prefix = Settings.model_config["env_prefix"]
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith(prefix)}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        yield


def service_settings(compose: Compose, name: str) -> Settings:
    """The Settings a soiree container would read from its environment (raises if invalid)."""
    with only_env(environment(compose, services(compose)[name])):
        return Settings()


def valid_settings(compose: Compose) -> Iterator[tuple[str, Settings]]:
    """``(service, Settings)`` for each soiree service whose settings load (the rest are
    reported by ``check_settings_env``)."""
    for name in soiree_services(compose):
        try:
            settings = service_settings(compose, name)
        except ValidationError:
            settings = None
        if settings is not None:
            yield name, settings


# -- the checkers -------------------------------------------------------------------------------
def check_layout(compose: Compose) -> Problems:
    problems = []
    if "version" in compose:
        problems.append("top-level 'version' is obsolete in the Compose spec")
    for name in EXPECTED_SERVICES:
        if name not in services(compose):
            problems.append(f"service {name!r} is missing")
    shared = compose.get("x-soiree")
    if not isinstance(shared, dict):
        problems.append("no x-soiree extension holding the shared image/environment")
    else:
        for name in SOIREE_SERVICES:
            service = services(compose).get(name, {})
            for key in ("image", "build", "env_file", "environment"):
                if key in shared and service.get(key) != shared[key]:
                    problems.append(f"{name}: {key} differs from x-soiree (merge it with <<: *soiree)")
    return problems


def check_images(compose: Compose) -> Problems:
    problems = []
    kafka = kafka_service(compose)
    if kafka is None:
        problems.append("no service runs the official apache/kafka image")
    elif not re.fullmatch(
        r"(docker\.io/)?apache/kafka:4\.\d+(\.\d+)?", str(services(compose)[kafka]["image"])
    ):
        problems.append(f"{kafka}: image {services(compose)[kafka]['image']!r} is not apache/kafka 4.x")
    if redis_service(compose) is None:
        problems.append("no service runs the redis image")
    images = set()
    for name in soiree_services(compose):
        service = services(compose)[name]
        build = service.get("build")
        if build is None:
            problems.append(f"{name}: no build section (the image is built from the Dockerfile)")
            continue
        build = {"context": build} if isinstance(build, str) else build
        dockerfile = ROOT / str(build.get("context", ".")) / str(build.get("dockerfile", "Dockerfile"))
        if dockerfile.resolve() != DOCKERFILE.resolve():
            problems.append(f"{name}: builds from {dockerfile}, not the project's Dockerfile")
        images.add(service.get("image"))
    if len(images) > 1:
        problems.append(f"the soiree services tag different images: {sorted(map(str, images))}")
    return problems


def kafka_env(compose: Compose) -> dict[str, str]:
    kafka = kafka_service(compose)
    return environment(compose, services(compose)[kafka]) if kafka else {}


def check_kafka_kraft(compose: Compose) -> Problems:
    kafka = kafka_service(compose)
    if kafka is None:
        return ["no Kafka service"]
    env = kafka_env(compose)
    problems: Problems = []
    required = (
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
    )
    missing = [key for key in required if not env.get(key)]
    if missing:
        return [f"{kafka}: missing {', '.join(missing)} (KRaft needs them all)"]
    if {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")} != {"broker", "controller"}:
        problems.append(
            f"{kafka}: KAFKA_PROCESS_ROLES={env['KAFKA_PROCESS_ROLES']!r}, want broker,controller"
        )
    try:
        node_id = int(env["KAFKA_NODE_ID"])
        listeners = parse_listeners(env["KAFKA_LISTENERS"])
        advertised = parse_listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    except ValueError as exc:
        return [f"{kafka}: {exc}"]
    protocols = dict(item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    protocols = {k.strip().upper(): v.strip() for k, v in protocols.items()}
    controllers = [name.strip().upper() for name in env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")]
    for name in listeners:
        if name not in protocols:
            problems.append(f"{kafka}: listener {name} has no security protocol in the map")
    for name in controllers:
        if name not in listeners:
            problems.append(f"{kafka}: controller listener {name} is not in KAFKA_LISTENERS")
        if name in advertised:
            problems.append(f"{kafka}: controller listener {name} must not be advertised")
    for name, (host, port) in advertised.items():
        if name not in listeners:
            problems.append(f"{kafka}: advertised listener {name} is not in KAFKA_LISTENERS")
        elif host not in HOST_SIDE and listeners[name][1] != port:
            problems.append(f"{kafka}: {name} advertised on port {port} but listens on {listeners[name][1]}")
    inter = env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT").upper()
    if inter not in advertised or inter in controllers:
        problems.append(
            f"{kafka}: inter-broker listener {inter} must be an advertised, non-controller listener"
        )
    controller_ports = {listeners[name][1] for name in controllers if name in listeners}
    voters = {}
    for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","):
        match = re.fullmatch(r"\s*(\d+)@(.+):(\d+)\s*", voter)
        if not match:
            problems.append(f"{kafka}: quorum voter {voter!r} is not id@host:port")
            continue
        voters[int(match[1])] = (match[2], int(match[3]))
    if node_id not in voters:
        problems.append(f"{kafka}: node {node_id} is not among the quorum voters {sorted(voters)}")
    else:
        host, port = voters[node_id]
        if host not in network_names(compose, kafka) | {"localhost", "127.0.0.1"}:
            problems.append(f"{kafka}: quorum voter host {host!r} does not name the Kafka container")
        if port not in controller_ports:
            problems.append(
                f"{kafka}: quorum voter port {port} is not the controller listener's {controller_ports}"
            )
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        if env.get(key) != "1":
            problems.append(f"{kafka}: {key}={env.get(key)!r}; a single node needs 1")
    for key in (
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
        "KAFKA_MIN_INSYNC_REPLICAS",
    ):
        if key in env and env[key] != "1":
            problems.append(f"{kafka}: {key}={env[key]!r}; a single node needs 1")
    if env.get("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS") != "0":
        problems.append(f"{kafka}: KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS should be 0")
    if "CLUSTER_ID" in env:
        try:
            ok = (
                len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16 and len(env["CLUSTER_ID"]) == 22
            )
        except ValueError:
            ok = False
        if not ok:
            problems.append(
                f"{kafka}: CLUSTER_ID {env['CLUSTER_ID']!r} is not a base64url UUID (22 characters)"
            )
    healthcheck = services(compose)[kafka].get("healthcheck") or {}
    test = healthcheck.get("test")
    text = " ".join(test) if isinstance(test, list) else str(test or "")
    match = re.search(r"--bootstrap-server[ =](\S+)", text)
    if not match:
        problems.append(f"{kafka}: healthcheck does not probe the broker with --bootstrap-server")
    else:
        _, port = host_port(match[1])
        if not any(p == port and n not in controllers for n, (_, p) in listeners.items()):
            problems.append(f"{kafka}: healthcheck probes port {port}, where no broker listener listens")
    return problems


def check_ports(compose: Compose) -> Problems:
    problems = []
    kafka, redis = kafka_service(compose), redis_service(compose)
    if redis and not any(
        host and target == 6379 for host, target in published_ports(services(compose)[redis])
    ):
        problems.append(f"{redis}: port 6379 is not published")
    if kafka:
        env = kafka_env(compose)
        try:
            listeners = parse_listeners(env.get("KAFKA_LISTENERS", ""))
            advertised = parse_listeners(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
        except ValueError as exc:
            return problems + [f"{kafka}: {exc}"]
        ports = published_ports(services(compose)[kafka])
        host_side = {name: addr for name, addr in advertised.items() if addr[0] in HOST_SIDE}
        if not host_side:
            problems.append(f"{kafka}: no listener is advertised for the host (e.g. HOST://localhost:29092)")
        for name, (_, port) in host_side.items():
            bind = listeners.get(name, ("", -1))[1]
            if (port, bind) not in ports:
                problems.append(
                    f"{kafka}: listener {name} is advertised as localhost:{port}, "
                    f"so {port}:{bind} must be published"
                )
    return problems


def check_bootstrap(compose: Compose) -> Problems:
    """Every soiree service's SOIREE_KAFKA_BOOTSTRAP names a listener Kafka advertises in-network."""
    kafka = kafka_service(compose)
    if kafka is None:
        return ["no Kafka service"]
    env = kafka_env(compose)
    advertised = parse_listeners(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    controllers = {n.strip().upper() for n in env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "").split(",")}
    names = network_names(compose, kafka)
    reachable = {(h, p) for n, (h, p) in advertised.items() if n not in controllers and h in names}
    problems = []
    for name, settings in valid_settings(compose):
        bootstrap = settings.kafka_bootstrap
        for address in bootstrap.split(","):
            try:
                host, port = host_port(address)
            except ValueError:
                problems.append(f"{name}: SOIREE_KAFKA_BOOTSTRAP entry {address!r} is not host:port")
                continue
            if host not in names:
                problems.append(
                    f"{name}: SOIREE_KAFKA_BOOTSTRAP host {host!r} is not the Kafka service ({sorted(names)})"
                )
            elif (host, port) not in reachable:
                problems.append(
                    f"{name}: SOIREE_KAFKA_BOOTSTRAP {host}:{port} is not an advertised broker listener "
                    f"({', '.join(f'{h}:{p}' for h, p in sorted(reachable)) or 'none'})"
                )
    return problems


def check_redis_url(compose: Compose) -> Problems:
    redis = redis_service(compose)
    if redis is None:
        return ["no Redis service"]
    problems = []
    for name, settings in valid_settings(compose):
        url = urlsplit(settings.redis_dsn())
        if url.scheme not in ("redis", "rediss"):
            problems.append(f"{name}: SOIREE_REDIS_URL scheme {url.scheme!r} is not redis://")
        if url.hostname not in network_names(compose, redis):
            problems.append(
                f"{name}: SOIREE_REDIS_URL host {url.hostname!r} is not the Redis service {redis!r}"
            )
        if (url.port or 6379) != 6379:
            problems.append(f"{name}: SOIREE_REDIS_URL port {url.port} is not Redis's 6379")
        if url.path.strip("/") and not url.path.strip("/").isdigit():
            problems.append(f"{name}: SOIREE_REDIS_URL database {url.path!r} is not a number")
    return problems


def check_settings_env(compose: Compose) -> Problems:
    """SOIREE_* names are Settings fields and their values are valid for them."""
    prefix = Settings.model_config["env_prefix"]
    fields = set(Settings.model_fields)
    problems = []
    for name in soiree_services(compose):
        env = environment(compose, services(compose)[name])
        for key in env:
            if key.upper().startswith(prefix) and key[len(prefix) :].lower() not in fields:
                close = difflib.get_close_matches(key[len(prefix) :].lower(), fields, n=1)
                hint = f" (did you mean {prefix}{close[0].upper()}?)" if close else ""
                problems.append(f"{name}: {key} is not a Settings field{hint}")
        try:
            service_settings(compose, name)
        except ValidationError as exc:
            problems.append(f"{name}: invalid settings: {exc}")
    return problems


def check_partitions(compose: Compose) -> Problems:
    """Topics auto-created by the broker must have the partition count the Faust tables expect."""
    kafka = kafka_service(compose)
    wanted = kafka_env(compose).get("KAFKA_NUM_PARTITIONS")
    if kafka is None or wanted is None:
        return [f"{kafka}: KAFKA_NUM_PARTITIONS is not set"]
    problems = []
    for name, settings in valid_settings(compose):
        partitions = settings.partitions
        if str(partitions) != wanted:
            problems.append(f"{name}: SOIREE_PARTITIONS={partitions} but KAFKA_NUM_PARTITIONS={wanted}")
    return problems


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def has_healthcheck(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck") or {}
    return (
        bool(check.get("test")) and not check.get("disable") and check.get("test") not in (["NONE"], "NONE")
    )


def check_depends_on(compose: Compose) -> Problems:
    problems = []
    all_services = services(compose)
    for name, service in all_services.items():
        for target, condition in depends_on(service).items():
            if target not in all_services:
                problems.append(f"{name}: depends on {target!r}, which is not a service")
                continue
            if condition not in CONDITIONS:
                problems.append(f"{name}: unknown depends_on condition {condition!r}")
            if condition == "service_healthy" and not has_healthcheck(all_services[target]):
                problems.append(f"{name}: waits for {target} to be healthy, but {target} has no healthcheck")
    kafka, redis = kafka_service(compose), redis_service(compose)
    for name in soiree_services(compose):
        deps = depends_on(all_services[name])
        args = command_args(all_services[name])
        if kafka and deps.get(kafka) != "service_healthy":
            problems.append(f"{name}: must wait for {kafka} to be healthy")
        if redis and args and args[0] in REDIS_COMMANDS and deps.get(redis) != "service_healthy":
            problems.append(
                f"{name}: `soiree {args[0]}` uses Redis, so it must wait for {redis} to be healthy"
            )
    if "worker" not in depends_on(all_services.get("replay", {})):
        problems.append("replay: must depend on the worker (someone has to aggregate what it publishes)")
    # No cycles.
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 1:
            problems.append(f"dependency cycle: {' -> '.join(path + [node])}")
            return
        if state.get(node) == 2 or node not in all_services:
            return
        state[node] = 1
        for target in depends_on(all_services[node]):
            visit(target, path + [node])
        state[node] = 2

    for node in all_services:
        visit(node, [])
    return problems


def check_lifecycle(compose: Compose) -> Problems:
    problems = []
    worker = services(compose).get("worker", {})
    if worker.get("restart") not in ("unless-stopped", "always"):
        problems.append(f"worker: restart {worker.get('restart')!r}, want unless-stopped")
    replay = services(compose).get("replay", {})
    if replay.get("restart", "no") != "no":  # YAML `no` unquoted is False: Compose rejects it
        problems.append(f'replay: restart {replay.get("restart")!r}, want the string "no" (one shot)')
    return problems


def _click_exceptions(command: Any) -> Any:
    """The ``exceptions`` module of the click the CLI is built on (typer may vendor its own copy)."""
    for klass in type(command).__mro__:
        if klass.__module__.endswith("click.core"):
            return importlib.import_module(klass.__module__.rpartition(".")[0] + ".exceptions")
    raise AssertionError(f"{type(command)} is not a click command")


def cli_problems(args: list[str]) -> Problems:
    """``soiree ARGS`` resolved against the real CLI: command path, option names, then a strict parse.

    Resilient parsing (``make_context(..., resilient_parsing=True)``) walks the command path
    without running anything, but it silently ignores unknown options, so every option is then
    looked up by name among the command's parameters, and finally the arguments are parsed
    strictly (values converted, required options enforced, extra arguments refused).
    """
    root = typer.main.get_command(stream.cli.commands.app)
    errors = _click_exceptions(root)
    command: Any = root
    path = ["soiree"]
    rest = list(args)
    ctx: Any = None
    while hasattr(command, "resolve_command"):  # a group: find the subcommand
        ctx = command.make_context(path[-1], rest, parent=ctx, resilient_parsing=True)
        remaining = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
        if not remaining:
            return [f"`{' '.join(path)}` needs a command"]
        try:
            name, sub, rest = command.resolve_command(ctx, remaining)
        except errors.UsageError:
            name, sub = remaining[0], None
        if sub is None:
            known = sorted(command.list_commands(ctx))
            close = difflib.get_close_matches(remaining[0], known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; commands: {', '.join(known)}"
            return [f"`{' '.join(path)}` has no command {remaining[0]!r}{hint}"]
        command = sub
        path.append(str(name))
    sub_ctx = command.make_context(path[-1], list(rest), parent=ctx, resilient_parsing=True)
    options = {
        opt: param
        for param in command.get_params(sub_ctx)
        if param.param_type_name == "option"
        for opt in (*param.opts, *param.secondary_opts)
    }
    problems = []
    index = 0
    while index < len(rest):
        token = rest[index]
        if token == "--":
            break
        if token.startswith("-") and token != "-":
            option = token.split("=", 1)[0]
            param = options.get(option)
            if param is None:
                close = difflib.get_close_matches(option, list(options), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                problems.append(f"`{' '.join(path)}` has no option {option}{hint}")
            elif not param.is_flag and param.nargs != 0 and "=" not in token:
                index += param.nargs
        index += 1
    if not problems:
        try:
            command.make_context(path[-1], list(rest), parent=ctx)
        except errors.ClickException as exc:
            problems.append(f"`{' '.join(path)}`: {exc.format_message()}")
    return problems


def check_commands(compose: Compose) -> Problems:
    problems = []
    for name in soiree_services(compose):
        service = services(compose)[name]
        if service.get("entrypoint"):
            problems.append(f"{name}: overrides the image's `soiree` entrypoint")
        args = command_args(service)
        problems.extend(f"{name}: {problem}" for problem in cli_problems(args))
    return problems


def check_env_files(compose: Compose) -> Problems:
    """The soiree services read their settings from env files that exist and parse as Compose's."""
    problems = []
    for name in soiree_services(compose):
        files = env_files(compose, services(compose)[name])
        if not files:
            problems.append(f"{name}: no env_file (the soiree services' settings are in config/compose.env)")
        for path, required in files:
            if not path.is_file():
                if required:
                    problems.append(f"{name}: env_file {path} does not exist (Compose refuses to start)")
                continue
            try:
                read_env_file(path)
            except ValueError as exc:
                problems.append(f"{name}: env_file {exc}")
    return problems


def redis_directives(text: str) -> dict[str, str]:
    """A redis.conf as Redis reads it: a directive per line, the last one of a name wins, quotes dropped."""
    directives: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            directives[words[0].lower()] = " ".join(words[1:])
    return directives


def mounted_source(compose: Compose, service: dict[str, Any], target: str) -> Path | None:
    """The host file bind-mounted at ``target`` (short ``src:dst[:mode]`` or long syntax), if any."""
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            source = entry.get("source") if entry.get("target") == target else None
        else:
            parts = str(entry).split(":")
            source = parts[0] if len(parts) > 1 and parts[1] == target else None
        if source and str(source).startswith((".", "/")):  # a path, not a named volume
            return compose.directory / str(source)
    return None


def check_redis_config(compose: Compose) -> Problems:
    """Redis runs the project's redis.conf: reachable from the other containers, never evicting."""
    redis = redis_service(compose)
    if redis is None:
        return ["no Redis service"]
    service = services(compose)[redis]
    args = command_args(service)
    if len(args) < 2 or args[0] != "redis-server" or args[1].startswith("-"):
        return [f"{redis}: command {args} does not run redis-server with a configuration file"]
    source = mounted_source(compose, service, args[1])
    if source is None:
        return [f"{redis}: {args[1]} is not mounted from a file of the project (config/redis/redis.conf)"]
    if not source.is_file():
        return [f"{redis}: mounts {source} at {args[1]}, but it does not exist"]
    conf = redis_directives(source.read_text(encoding="utf-8"))
    problems = []
    if conf.get("maxmemory-policy") != "noeviction":
        problems.append(
            f"{redis}: maxmemory-policy {conf.get('maxmemory-policy')!r} may evict keys, and an evicted "
            "table key silently loses an area's counts: set noeviction"
        )
    if conf.get("appendonly") != "yes":
        problems.append(f"{redis}: appendonly {conf.get('appendonly')!r}: the chosen persistence is the AOF")
    binds = conf.get("bind", "* -::*").split()
    if not any(address.lstrip("-") in ("*", "0.0.0.0", "::*", "::") for address in binds):
        problems.append(f"{redis}: bind {conf['bind']!r} does not listen on the compose network")
    if conf.get("protected-mode", "yes") != "no" and "requirepass" not in conf:
        problems.append(f"{redis}: protected mode without a password refuses the other containers")
    if conf.get("port", "6379") != "6379":
        problems.append(f"{redis}: port {conf['port']} is not the 6379 the services and healthcheck use")
    if conf.get("daemonize", "no") != "no":
        problems.append(f"{redis}: daemonize {conf['daemonize']}: the container would exit at once")
    return problems


CHECKS: tuple[Callable[[Compose], Problems], ...] = (
    check_layout,
    check_images,
    check_kafka_kraft,
    check_ports,
    check_env_files,
    check_redis_config,
    check_bootstrap,
    check_redis_url,
    check_settings_env,
    check_partitions,
    check_depends_on,
    check_lifecycle,
    check_commands,
)


def all_problems(compose: Compose) -> Problems:
    return [problem for check in CHECKS for problem in check(compose)]


# -- the real compose file ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_compose_passes(compose: Compose, check: Callable[[Compose], Problems]) -> None:
    assert check(compose) == []


def test_the_services_are_the_expected_ones(compose: Compose) -> None:
    assert set(EXPECTED_SERVICES) <= set(services(compose))
    assert kafka_service(compose) == "kafka" and redis_service(compose) == "redis"
    assert sorted(soiree_services(compose)) == sorted(SOIREE_SERVICES)
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", services(compose)["kafka"]["image"])
    assert services(compose)["redis"]["image"].startswith("redis:")


def test_the_night_is_replayed_and_followed(compose: Compose) -> None:
    """`docker compose up` replays the seed night; `logs -f tail` shows the nation's events."""
    assert command_args(services(compose)["worker"]) == ["worker"]
    replay = command_args(services(compose)["replay"])
    assert replay[:2] == ["replay", "seed"]
    assert replay[1] in SEED_NAMES  # `soiree replay` resolves the name with stream.scenario.resolve
    tail = command_args(services(compose)["tail"])
    assert tail[0] == "tail" and "--from-beginning" in tail
    level = tail[tail.index("--level") + 1]
    assert level == "nation" and level in LEVELS  # `soiree tail` refuses other names at run time


def test_soiree_services_reach_kafka_and_redis_by_service_name(compose: Compose) -> None:
    for name in SOIREE_SERVICES:
        settings = service_settings(compose, name)
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.redis_dsn() == "redis://redis:6379/0"


def test_the_cli_checker_accepts_real_commands() -> None:
    assert cli_problems(["replay", "seed", "--speed=0"]) == []
    assert cli_problems(["election", "create", "--from-ministry", "f.csv", "--election", "x"]) == []
    assert cli_problems(["tail", "--json", "--area", "42"]) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["tail", "--form-beginning"], "no option --form-beginning; did you mean --from-beginning?"),
        (["replay", "seed", "--sped", "600"], "no option --sped"),
        (["replay", "seed", "--speed", "fast"], "Invalid value for '--speed'"),
        (["replay", "seed", "extra"], "unexpected extra argument"),
        (["worke"], "no command 'worke'; did you mean 'worker'?"),
        (["election", "creat"], "`soiree election` has no command 'creat'"),
        (["results", "nation"], "Missing option '--election'"),
        ([], "needs a command"),
    ],
)
def test_the_cli_checker_rejects_bad_commands(args: list[str], expected: str) -> None:
    problems = cli_problems(args)
    assert any(expected in p for p in problems), problems


# -- mutated copies: the checkers must catch these ----------------------------------------------
Mutation = Callable[[Compose, Path], None]


def _set_env(name: str, key: str, value: str | None) -> Mutation:
    """Set (or drop) a variable in a service's ``environment:``, which wins over its env files."""

    def mutate(compose: Compose, tmp: Path) -> None:
        env = dict(compose["services"][name].get("environment") or {})
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
        compose["services"][name]["environment"] = env

    return mutate


def _edit_env_file(edit: Callable[[list[str]], list[str]]) -> Mutation:
    """Edit the lines of (a copy of) the soiree services' env file, as a careless commit to
    config/compose.env would; the services then name the copy by its absolute path."""

    def mutate(compose: Compose, tmp: Path) -> None:
        [(source, _)] = env_files(compose, compose["x-soiree"])
        edited = tmp / "edited.env"
        edited.write_text("\n".join(edit(source.read_text(encoding="utf-8").splitlines())) + "\n")
        for service in (compose["x-soiree"], *(services(compose)[n] for n in soiree_services(compose))):
            service["env_file"] = [str(edited)]

    return mutate


def _set_env_file(key: str, value: str | None) -> Mutation:
    """``key=value`` in the env file instead of its line (``None``: the line deleted)."""

    def edit(lines: list[str]) -> list[str]:
        kept = [line for line in lines if line.partition("=")[0] != key]
        return kept if value is None else [*kept, f"{key}={value}"]

    return _edit_env_file(edit)


def _set(name: str, key: str, value: Any) -> Mutation:
    def mutate(compose: Compose, tmp: Path) -> None:
        compose["services"][name][key] = value

    return mutate


def _drop(name: str, key: str) -> Mutation:
    def mutate(compose: Compose, tmp: Path) -> None:
        compose["services"][name].pop(key, None)

    return mutate


MUTATIONS: list[tuple[str, Mutation, Callable[[Compose], Problems], str]] = [
    (
        "option typo",
        _set("tail", "command", ["tail", "--form-beginning", "--level", "nation"]),
        check_commands,
        "tail: `soiree tail` has no option --form-beginning",
    ),
    ("command typo", _set("worker", "command", "wroker"), check_commands, "has no command 'wroker'"),
    (
        "bad option value",
        _set("replay", "command", "replay seed --speed fast"),
        check_commands,
        "Invalid value for '--speed'",
    ),
    ("entrypoint override", _set("tail", "entrypoint", ["python"]), check_commands, "overrides"),
    (
        "bootstrap on localhost in the env file",
        _set_env_file("SOIREE_KAFKA_BOOTSTRAP", "localhost:9092"),
        check_bootstrap,
        "worker: SOIREE_KAFKA_BOOTSTRAP host 'localhost' is not the Kafka service",
    ),
    (
        "bootstrap on the controller port, overridden in one service",
        _set_env("tail", "SOIREE_KAFKA_BOOTSTRAP", "kafka:9093"),
        check_bootstrap,
        "tail: SOIREE_KAFKA_BOOTSTRAP kafka:9093 is not an advertised broker listener",
    ),
    (
        "bootstrap on the host listener",
        _set_env_file("SOIREE_KAFKA_BOOTSTRAP", "kafka:29092"),
        check_bootstrap,
        "replay: SOIREE_KAFKA_BOOTSTRAP kafka:29092",
    ),
    (
        "bootstrap line deleted (defaults to localhost)",
        _set_env_file("SOIREE_KAFKA_BOOTSTRAP", None),
        check_bootstrap,
        "worker: SOIREE_KAFKA_BOOTSTRAP host 'localhost'",
    ),
    (
        "env_file dropped from a service (every default: localhost)",
        _drop("worker", "env_file"),
        check_bootstrap,
        "worker: SOIREE_KAFKA_BOOTSTRAP host 'localhost'",
    ),
    ("env_file dropped, named", _drop("tail", "env_file"), check_env_files, "tail: no env_file"),
    (
        "env_file missing",
        _set("replay", "env_file", ["config/compose.env.missing"]),
        check_env_files,
        "replay: env_file",
    ),
    (
        "env file line without '='",
        _edit_env_file(lambda lines: [*lines, "SOIREE_APP_ID soiree"]),
        check_env_files,
        "not KEY=VALUE",
    ),
    (
        "env file value interpolated by Compose",
        _set_env_file("SOIREE_APP_ID", "soiree-$USER"),
        check_env_files,
        "'$' would be interpolated",
    ),
    (
        "advertised for the host only",
        _set_env("kafka", "KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://localhost:9092,HOST://localhost:29092"),
        check_bootstrap,
        "is not an advertised broker listener",
    ),
    (
        "redis host typo",
        _set_env_file("SOIREE_REDIS_URL", "redis://rediss:6379/0"),
        check_redis_url,
        "replay: SOIREE_REDIS_URL host 'rediss' is not the Redis service",
    ),
    (
        "env name typo",
        _set_env_file("SOIREE_KAFKA_BOOSTRAP", "kafka:9092"),
        check_settings_env,
        "SOIREE_KAFKA_BOOSTRAP is not a Settings field (did you mean SOIREE_KAFKA_BOOTSTRAP?)",
    ),
    (
        "invalid setting value",
        _set_env_file("SOIREE_PARTITIONS", "zero"),
        check_settings_env,
        "invalid settings",
    ),
    (
        "partitions disagree (env file)",
        _set_env_file("SOIREE_PARTITIONS", "3"),
        check_partitions,
        "SOIREE_PARTITIONS=3 but KAFKA_NUM_PARTITIONS=4",
    ),
    (
        "partitions disagree (broker)",
        _set_env("kafka", "KAFKA_NUM_PARTITIONS", "3"),
        check_partitions,
        "KAFKA_NUM_PARTITIONS=3",
    ),
    (
        "not KRaft combined",
        _set_env("kafka", "KAFKA_PROCESS_ROLES", "broker"),
        check_kafka_kraft,
        "broker,controller",
    ),
    (
        "no quorum voters",
        _set_env("kafka", "KAFKA_CONTROLLER_QUORUM_VOTERS", None),
        check_kafka_kraft,
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
    ),
    (
        "voter on the broker port",
        _set_env("kafka", "KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka:9092"),
        check_kafka_kraft,
        "quorum voter port 9092",
    ),
    (
        "no controller listener",
        _set_env("kafka", "KAFKA_LISTENERS", "PLAINTEXT://:9092,HOST://:29092"),
        check_kafka_kraft,
        "controller listener CONTROLLER is not in KAFKA_LISTENERS",
    ),
    (
        "offsets RF 3",
        _set_env("kafka", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
        check_kafka_kraft,
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR='3'",
    ),
    ("Kafka 3", _set("kafka", "image", "apache/kafka:3.9.1"), check_images, "is not apache/kafka 4.x"),
    ("Bitnami Kafka", _set("kafka", "image", "bitnami/kafka:4.1"), check_images, "official apache/kafka"),
    (
        "host listener not published",
        _set("kafka", "ports", ["9092:9092"]),
        check_ports,
        "29092:29092 must be published",
    ),
    ("redis not published", _set("redis", "ports", []), check_ports, "6379 is not published"),
    (
        "redis without its configuration",
        _drop("redis", "command"),
        check_redis_config,
        "does not run redis-server with a configuration file",
    ),
    (
        "redis configuration not mounted",
        _set("redis", "volumes", []),
        check_redis_config,
        "redis: /usr/local/etc/redis/redis.conf is not mounted",
    ),
    (
        "redis configuration mounted from a missing file",
        _set("redis", "volumes", ["./config/redis/redis.cnf:/usr/local/etc/redis/redis.conf:ro"]),
        check_redis_config,
        "redis.cnf at /usr/local/etc/redis/redis.conf, but it does not exist",
    ),
    (
        "waits on a service without healthcheck",
        _set(
            "tail",
            "depends_on",
            {"kafka": {"condition": "service_healthy"}, "worker": {"condition": "service_healthy"}},
        ),
        check_depends_on,
        "tail: waits for worker to be healthy, but worker has no healthcheck",
    ),
    (
        "depends on a missing service",
        _set("replay", "depends_on", ["kafka", "redis", "workers"]),
        check_depends_on,
        "replay: depends on 'workers'",
    ),
    (
        "worker does not wait for redis",
        _set("worker", "depends_on", {"kafka": {"condition": "service_healthy"}}),
        check_depends_on,
        "worker: `soiree worker` uses Redis",
    ),
    ("replay restarts", _set("replay", "restart", "on-failure"), check_lifecycle, "replay: restart"),
    (
        "replay restart unquoted no",
        _set("replay", "restart", False),
        check_lifecycle,
        "replay: restart False",
    ),
    ("a version key", lambda c, _: c.update(version="3.8"), check_layout, "'version' is obsolete"),
    ("a missing service", lambda c, _: c["services"].pop("tail"), check_layout, "service 'tail' is missing"),
]


@pytest.mark.parametrize(
    ("mutate", "check", "expected"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_checkers_catch_a_mutated_compose(
    compose: Compose,
    tmp_path: Path,
    mutate: Mutation,
    check: Callable[[Compose], Problems],
    expected: str,
) -> None:
    mutated = copy.deepcopy(compose)
    mutate(mutated, tmp_path)
    problems = check(mutated)
    assert any(expected in problem for problem in problems), problems
    assert all_problems(mutated), "the full check must fail too"
    assert all_problems(compose) == [], "the mutation leaked into the real file's compose"


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "docker-compose.yml",
            "--from-beginning",
            "--form-beginning",
            ["tail: `soiree tail` has no option --form-beginning"],
        ),
        (
            "config/compose.env",
            "SOIREE_KAFKA_BOOTSTRAP=kafka:9092",
            "SOIREE_KAFKA_BOOTSTRAP=broker:9092",
            [
                f"{name}: SOIREE_KAFKA_BOOTSTRAP host 'broker' is not the Kafka service"
                for name in SOIREE_SERVICES
            ],
        ),
        (
            "docker-compose.yml",
            "  env_file: [config/compose.env]",
            "  env_file: [config/compose-env]",
            [f"{name}: env_file" for name in SOIREE_SERVICES]
            + [f"{name}: SOIREE_KAFKA_BOOTSTRAP host 'localhost'" for name in SOIREE_SERVICES],
        ),
        (
            "config/redis/redis.conf",
            "maxmemory-policy noeviction",
            "maxmemory-policy allkeys-lru",
            ["redis: maxmemory-policy 'allkeys-lru' may evict keys"],
        ),
        (
            "config/redis/redis.conf",
            "bind * -::*",
            "bind 127.0.0.1 -::1",
            ["redis: bind '127.0.0.1 -::1' does not listen on the compose network"],
        ),
    ],
    ids=["option typo", "wrong bootstrap host", "env file renamed", "redis evicts", "redis on loopback"],
)
def test_a_mutated_copy_of_the_files_fails(
    tmp_path: Path, file: str, old: str, new: str, expected: list[str]
) -> None:
    """Edit the text of a copy, as a careless commit would, and re-read it from disk."""
    shutil.copyfile(COMPOSE_FILE, tmp_path / COMPOSE_FILE.name)
    shutil.copytree(ROOT / "config", tmp_path / "config")
    edited = tmp_path / file
    text = edited.read_text(encoding="utf-8")
    assert old in text
    edited.write_text(text.replace(old, new), encoding="utf-8")
    problems = all_problems(load_compose(tmp_path / COMPOSE_FILE.name))
    for item in expected:
        assert any(item in problem for problem in problems), problems


def test_an_unchanged_copy_passes(tmp_path: Path) -> None:
    """The copies above fail because of their edit, not because they were moved."""
    shutil.copyfile(COMPOSE_FILE, tmp_path / COMPOSE_FILE.name)
    shutil.copytree(ROOT / "config", tmp_path / "config")
    assert all_problems(load_compose(tmp_path / COMPOSE_FILE.name)) == []


def test_env_file_reader_follows_compose_quoting(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    lines = [
        "# comment",
        "",
        "A=plain # inline comment",
        """B='["x","y"]'""",
        r'C="two\nlines" # c',
        "D=",
        "export E=e",
        "F=a#b",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = {"A": "plain", "B": '["x","y"]', "C": "two\nlines", "D": "", "E": "e", "F": "a#b"}
    assert read_env_file(path) == expected
    for bad in ("G='open", "no equals sign", 'H="$HOME"', "I=${HOME}"):
        path.write_text(bad + "\n", encoding="utf-8")
        with pytest.raises(ValueError):
            read_env_file(path)


# -- Dockerfile and .dockerignore ---------------------------------------------------------------
def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def test_dockerfile_base_image_matches_requires_python() -> None:
    froms = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert froms == ["python:3.11-slim"]
    version = re.match(r"python:(\d+\.\d+)", froms[0])[1]
    assert version in SpecifierSet(pyproject()["project"]["requires-python"])


def test_dockerfile_installs_the_project_without_dev_deps() -> None:
    instructions = dockerfile_instructions()
    workdir = "/"
    copied: set[str] = set()
    installs: list[list[str]] = []
    for keyword, args in instructions:
        if keyword == "WORKDIR":
            workdir = str(Path(workdir, args))
        elif keyword == "COPY":
            sources, dest = shlex.split(args)[:-1], shlex.split(args)[-1]
            if "." in sources:  # the whole (allow-listed) build context
                copied.add(str(Path(workdir, dest)))
        elif keyword == "RUN":
            for command in re.split(r"&&|;", args):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]:
                    installs.append(words[words.index("install") + 1 :])
    assert installs, "no pip install in the Dockerfile"
    targets = [str(Path(workdir, word)) for words in installs for word in words if not word.startswith("-")]
    assert any(target in copied for target in targets), (targets, copied)
    flat = " ".join(" ".join(words) for words in installs)
    assert "[" not in flat, "installs extras (the test dependencies)"
    assert not re.search(r"(^|\s)(-e|--editable)(\s|$)", flat), (
        "an editable install needs the source at run time"
    )
    assert not any(re.search(r"pytest|hypothesis|-r\s", " ".join(words)) for words in installs)


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    entrypoints = [args for keyword, args in dockerfile_instructions() if keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    entrypoint = json.loads(entrypoints[-1])  # exec form, so signals reach the program
    assert entrypoint == ["soiree"]
    scripts = pyproject()["project"]["scripts"]
    assert "soiree" in scripts
    module, _, function = scripts["soiree"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "run as an unprivileged user"


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match plus ``**``)."""
    pattern = pattern.strip().lstrip("/").rstrip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def in_build_context(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for raw in patterns:
        negated = raw.startswith("!")
        regex = _docker_pattern(raw[1:] if negated else raw)
        if any(regex.match(candidate) for candidate in candidates):
            included = negated
    return included


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ["*", "!stream", "**/__pycache__"]
    assert in_build_context("stream/cli/commands.py", patterns)
    assert not in_build_context("stream/__pycache__/cli.cpython-311.pyc", patterns)
    assert not in_build_context(".venv/bin/python", patterns)
    assert not in_build_context("stream", ["stream/"])


def test_build_context_holds_what_pip_install_reads_and_nothing_heavy() -> None:
    patterns = dockerignore_patterns()
    package_data = pyproject()["tool"]["setuptools"]["package-data"]
    needed = ["pyproject.toml"] + [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "stream").rglob("*.py")
        if "__pycache__" not in p.parts
    ]
    for package, globs in package_data.items():
        for pattern in globs:
            matches = list((ROOT / package).glob(pattern))
            assert matches, f"package data {package}/{pattern} matches nothing"
            needed += [p.relative_to(ROOT).as_posix() for p in matches]
    readme = pyproject()["project"].get("readme")
    if isinstance(readme, str) and (ROOT / readme).exists():
        needed.append(readme)
    left_out = [path for path in needed if not in_build_context(path, patterns)]
    assert left_out == []
    for heavy in (
        ".git/HEAD",
        ".venv/bin/python",
        ".soiree/kafka/libs/x.jar",
        "bench/results/a.json",
        "stream/__pycache__/cli.cpython-311.pyc",
        "tests/test_compose.py",
        "soiree-data/x",
    ):
        assert not in_build_context(heavy, patterns), heavy
