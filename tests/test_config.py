"""The operator's ``config/`` folder, checked against the code it configures.

Every file there is an example or a service's configuration, never something the package needs:
these tests keep them in step with ``stream.settings.Settings``, the worker's logging, the message
models and the Redis that ``soiree up`` runs. None needs Kafka or Redis.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from stream.devstack import services as devstack
from stream.domain.messages import Election, check_against_election, parse_result
from stream.settings import CONFIG_ENV, ConfigError, Settings
from tests.test_compose import only_env, read_env_file, redis_directives

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
ENV_FILES = (CONFIG / "local.env.example", CONFIG / "compose.env")
PREFIX = Settings.model_config["env_prefix"]
VARIABLES = {f"{PREFIX}{name.upper()}": name for name in Settings.model_fields}


def default(name: str) -> Any:
    return Settings.model_fields[name].get_default(call_default_factory=True)


def plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def settings_from(env: dict[str, str]) -> Settings:
    """Settings from exactly ``env`` (the caller's SOIREE_* variables, SOIREE_CONFIG too, left out)."""
    with only_env(env):
        return Settings()


# -- the env files ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_has_a_line_for_every_setting_and_only_settings(path: Path) -> None:
    listed = list(read_env_file(path))
    assert sorted(set(VARIABLES) - set(listed)) == [], f"{path.name} lacks these settings"
    assert sorted(set(listed) - set(VARIABLES)) == [], f"{path.name} has variables that are no settings"
    assert [k for k, n in Counter(_assignments(path)).items() if n > 1] == [], "a variable is set twice"


def _assignments(path: Path) -> list[str]:
    return [
        line.partition("=")[0]
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.match(r"\w+=", line)
    ]


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_says_what_each_variable_is_for(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\w+=", line):
            above = lines[number - 1] if number else ""
            assert above.startswith("# ") and len(above) > 4, f"{path.name}: no comment above {line!r}"


def test_local_env_example_holds_the_defaults() -> None:
    env = read_env_file(CONFIG / "local.env.example")
    settings = settings_from(env)
    for variable, name in VARIABLES.items():
        assert plain(getattr(settings, name)) == plain(default(name)), f"{variable}={env[variable]!r}"


def test_local_env_example_reads_the_same_in_a_shell() -> None:
    """``set -a; . config/local.env; set +a``, as its header says: the shell must see the same values."""
    script = f"set -a; . {CONFIG / 'local.env.example'}; set +a; env -0"
    done = subprocess.run(
        ["bash", "-c", script], env={"PATH": os.defpath}, capture_output=True, check=True, cwd=CONFIG
    )
    shell = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if item.startswith(PREFIX))
    assert shell == read_env_file(CONFIG / "local.env.example")


def test_compose_env_differs_from_a_local_run_only_by_the_service_names_and_the_serve_host() -> None:
    local = settings_from(read_env_file(CONFIG / "local.env.example"))
    compose = settings_from(read_env_file(CONFIG / "compose.env"))
    differ = {
        name for name in VARIABLES.values() if plain(getattr(local, name)) != plain(getattr(compose, name))
    }
    assert differ == {"kafka_bootstrap", "redis_url", "serve_host", "worker_metrics_host"}
    assert compose.kafka_bootstrap == "kafka:9092"
    assert compose.serve_host == "0.0.0.0"  # in a container, reachable through its published port
    assert compose.redis_dsn() == "redis://redis:6379/0"


# -- the TOML file ------------------------------------------------------------------------------
TOML_EXAMPLE = CONFIG / "soiree.toml.example"


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "soiree.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_toml_example_shows_every_setting_with_its_default(tmp_path: Path) -> None:
    text = TOML_EXAMPLE.read_text(encoding="utf-8")
    uncommented = re.sub(r"(?m)^#(\w+ = )", r"\1", text)  # the commented-out settings, switched on
    assert sorted(tomllib.loads(uncommented)) == sorted(Settings.model_fields)
    for version in (text, uncommented):
        settings = settings_from({CONFIG_ENV: str(_toml(tmp_path, version))})
        for name in Settings.model_fields:
            assert plain(getattr(settings, name)) == plain(default(name)), name


def test_file_values_apply(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
        kafka_bootstrap = "broker-1:9092,broker-2:9092"
        redis_url = "redis://:secret@cache:6380/2"
        partitions = 12
        event_levels = ["department", "nation"]
        home = "/var/lib/soiree"
        """,
    )
    settings = settings_from({CONFIG_ENV: str(path)})
    assert settings.kafka_bootstrap == "broker-1:9092,broker-2:9092"
    assert settings.redis_dsn() == "redis://:secret@cache:6380/2"
    assert settings.partitions == 12
    assert settings.event_levels == ["department", "nation"]
    assert settings.home == Path("/var/lib/soiree")
    assert settings.app_id == "soiree"  # not in the file: the default


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'partitions = 12\napp_id = "from-file"\n')
    settings = settings_from({CONFIG_ENV: str(path), "SOIREE_PARTITIONS": "6"})
    assert settings.partitions == 6
    assert settings.app_id == "from-file"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("partitons = 4\n", "unknown setting 'partitons'; did you mean 'partitions'?"),
        ('SOIREE_APP_ID = "x"\n', "unknown setting 'SOIREE_APP_ID'; did you mean 'app_id'?"),
        ('[kafka]\nbootstrap = "x"\n', "unknown setting 'kafka'"),
        ("partitions = \n", "is not valid TOML"),
    ],
    ids=["typo", "variable name", "table", "not TOML"],
)
def test_a_bad_file_is_a_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(expected)) as info:
        settings_from({CONFIG_ENV: str(path)})
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="settings file .*nowhere.toml .* does not exist"):
        settings_from({CONFIG_ENV: str(tmp_path / "nowhere.toml")})


def soiree(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command as users run it, with no SOIREE_* variable but ``env``; Redis is never there."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        capture_output=True,
        text=True,
        env={**clean, "COLUMNS": "200", **(env or {})},
        cwd=ROOT,
        timeout=120,
    )


def test_cli_config_option_and_variable(tmp_path: Path) -> None:
    """``--config`` (or SOIREE_CONFIG) reaches the command; a variable still beats the file."""
    path = _toml(tmp_path, 'redis_url = "redis://127.0.0.1:1/0"\n')
    results = ["results", "nation", "--election", "x"]
    for args, env in ((["--config", str(path)], {}), ([], {CONFIG_ENV: str(path)})):
        done = soiree(*args, *results, env=env)
        assert done.returncode == 1, done.stderr
        assert "Redis is not reachable at redis://127.0.0.1:1/0" in done.stderr
    done = soiree("--config", str(path), *results, env={"SOIREE_REDIS_URL": "redis://127.0.0.1:2/0"})
    assert "Redis is not reachable at redis://127.0.0.1:2/0" in done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "does not exist"),
        ("partitons = 4\n", "unknown setting 'partitons'; did you mean 'partitions'?"),
        ('partitions = "many"\n', "partitions (SOIREE_PARTITIONS): Input should be a valid integer"),
    ],
    ids=["missing", "unknown key", "invalid value"],
)
def test_cli_says_what_is_wrong_with_the_file_in_one_line(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    path = tmp_path / "soiree.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    done = soiree("--config", str(path), "schema")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert expected in done.stderr and str(path) in done.stderr


# -- logging ------------------------------------------------------------------------------------
LOGGING = CONFIG / "logging.yaml"

#: Run in a fresh interpreter: dictConfig changes the whole process's logging.
_JSON_LINES = """
import logging, sys
from pathlib import Path
from stream.logs import load_logging_config

load_logging_config(Path(sys.argv[1]))
log = logging.getLogger("stream.runtime.tally")
log.info("tallied %d reports", 2000, extra={"election": "example"})
try:
    1 / 0
except ZeroDivisionError:
    log.exception("chunk failed")
logging.getLogger("aiokafka").info("not shown: the root level is WARNING")
"""


def _run_logging(config: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _JSON_LINES, str(config)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout == ""
    return done.stderr.splitlines()


def test_logging_yaml_gives_json_lines_when_switched_as_it_says(tmp_path: Path) -> None:
    text = LOGGING.read_text(encoding="utf-8")
    assert "handlers: [text]" in text and "`handlers: [json]`" in text  # what its comment tells to do
    switched = tmp_path / "logging.yaml"
    switched.write_text(text.replace("handlers: [text]", "handlers: [json]"), encoding="utf-8")
    lines = _run_logging(switched)
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert [(e["level"], e["logger"], e["message"]) for e in entries] == [
        ("INFO", "stream.runtime.tally", "tallied 2000 reports"),
        ("ERROR", "stream.runtime.tally", "chunk failed"),
    ]
    assert entries[0]["election"] == "example"
    assert "ZeroDivisionError" in entries[1]["exception"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entries[0]["at"])


def test_logging_yaml_default_is_text() -> None:
    lines = _run_logging(LOGGING)
    assert lines[0].endswith("[INFO] stream.runtime.tally: tallied 2000 reports")
    assert "Traceback" in "\n".join(lines) and not lines[0].startswith("{")


def test_faust_worker_applies_the_logging_config(tmp_path: Path) -> None:
    """``faust.Worker(logging_config=…)``, as ``soiree worker --log-config`` passes it (faust 0.15.3)."""
    switched = tmp_path / "logging.yaml"
    switched.write_text(LOGGING.read_text().replace("handlers: [text]", "handlers: [json]"), encoding="utf-8")
    script = """
import logging, sys
from pathlib import Path
import faust
from stream.logs import load_logging_config

config = load_logging_config(Path(sys.argv[1]))
logging.getLogger().handlers.clear()
worker = faust.Worker(faust.App("logtest"), loglevel="debug", logging_config=config)
worker._setup_logging()
logging.getLogger("stream").warning("through faust")
logging.getLogger("faust").info("not shown")
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(switched)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    [line] = [line for line in done.stderr.splitlines() if line.startswith("{")]
    assert json.loads(line)["message"] == "through faust"
    assert "not shown" not in done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "cannot be read"),
        ("version: 1\nhandlers: {x: {class: no.such.Handler}}\n", "Unable to configure handler 'x'"),
        ("version: [1\n", "is not valid YAML"),
        ("- a list\n", "must be a dictConfig mapping"),
    ],
    ids=["missing", "bad handler", "not YAML", "not a mapping"],
)
def test_worker_refuses_a_bad_log_config_in_one_line(tmp_path: Path, text: str | None, expected: str) -> None:
    path = tmp_path / "logging.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    # Kafka is not there either: the file is checked first, so its error is the one shown.
    done = soiree("worker", "--log-config", str(path), env={"SOIREE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: logging configuration"), (
        done.stderr
    )
    assert expected in done.stderr


# -- the example election and results ------------------------------------------------------------
ELECTION = CONFIG / "elections" / "example.json"
RESULTS = CONFIG / "results" / "example.jsonl"


def test_example_results_are_valid_for_the_example_election() -> None:
    election = Election.model_validate_json(ELECTION.read_text(encoding="utf-8"))
    assert (election.election, len(election.bureaux)) == ("example", 3)
    lines = RESULTS.read_text(encoding="utf-8").splitlines()
    for line in lines:
        check_against_election(parse_result(line), election)
    assert {parse_result(line).bureau for line in lines} == set(election.roll), "every bureau reports"


def test_example_results_add_up() -> None:
    """Checked by hand, without the models: the figures the README's "Try it" leads to."""
    roll = {entry["bureau"]: entry for entry in json.loads(ELECTION.read_text(encoding="utf-8"))["bureaux"]}
    latest: dict[str, dict[str, Any]] = {}
    for line in RESULTS.read_text(encoding="utf-8").splitlines():
        report = json.loads(line)
        assert report["blank"] + report["invalid"] + sum(report["votes"].values()) == report["voters"]
        assert report["voters"] <= report["registered"] == roll[report["bureau"]]["registered"]
        if report["seq"] > latest.get(report["bureau"], {"seq": 0})["seq"]:
            latest[report["bureau"]] = report
    assert {b: r["seq"] for b, r in latest.items()} == {"42218-0001": 1, "42218-0002": 2, "69123-0101": 1}
    votes: Counter[str] = Counter()
    for report in latest.values():
        votes.update(report["votes"])
    assert votes == {"HAMON": 861, "MACRON": 812, "LE PEN": 460}
    assert sum(r["voters"] for r in latest.values()) == 2186
    assert sum(r["registered"] for r in latest.values()) == 2813
    assert sum(r["blank"] + r["invalid"] for r in latest.values()) == 53


def test_readme_tries_the_examples() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "soiree election create config/elections/example.json" in readme
    assert "soiree ingest config/results/example.jsonl --election example" in readme


# -- Redis ----------------------------------------------------------------------------------------
def test_both_redis_configurations_never_evict_and_choose_their_persistence(tmp_path: Path) -> None:
    """compose's Redis (config/redis/redis.conf) keeps an append-only file; ``soiree up``'s keeps
    nothing on disk, on purpose: the local stack is for replays, and a Redis that comes back empty
    is what the worker recovers from (the fault tests restart it so). Both say so explicitly, and
    neither ever evicts a key (an evicted table key would lose an area's counts)."""
    written = devstack._redis_conf(Settings(home=tmp_path), "localhost", 6399, None, None)
    ours = redis_directives(written.read_text(encoding="utf-8"))
    editable = redis_directives((CONFIG / "redis" / "redis.conf").read_text(encoding="utf-8"))
    assert editable["appendonly"] == "yes" and editable["appendfsync"] == "everysec"
    assert ours["appendonly"] == "no" and ours["save"] in ("", '""', "''")  # no RDB snapshots either
    assert editable["maxmemory-policy"] == ours["maxmemory-policy"] == "noeviction"
