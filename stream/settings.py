"""Configuration: environment variables prefixed ``SOIREE_``, over an optional TOML file.

The defaults suit a local run, so a worker installed from a wheel needs no file at all; an
operator who wants one names it with ``SOIREE_CONFIG`` (or ``soiree --config FILE``).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stream.errors import SoireeError

__all__ = ["Settings", "get_settings", "LEVELS", "CONFIG_ENV", "ConfigError"]

#: The aggregation levels, from the smallest area to the largest.
LEVELS: tuple[str, ...] = ("bureau", "commune", "circonscription", "department", "region", "nation")
#: The environment variable naming the TOML settings file (not a setting itself: it says where they are).
CONFIG_ENV = "SOIREE_CONFIG"


class ConfigError(SoireeError, ValueError):
    """Settings that cannot be used: a missing or unreadable file, an unknown key, an invalid value."""

    @classmethod
    def from_validation(cls, exc: ValidationError) -> ConfigError:
        """One line naming each bad setting (not its value: it may be a secret)."""
        where = os.environ.get(CONFIG_ENV) or "no settings file"
        problems = "; ".join(
            f"{e['loc'][0]} (SOIREE_{str(e['loc'][0]).upper()}): {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        return cls(f"invalid settings (environment, {where}): {problems}")


class _TomlFile(TomlConfigSettingsSource):
    """The ``SOIREE_CONFIG`` file, which must exist, parse and name only known settings.

    pydantic-settings skips a missing file and ``extra="ignore"`` drops unknown keys: a typo
    would silently leave the default in force on election night.
    """

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if not path.is_file():
            raise ConfigError(f"settings file {path} ({CONFIG_ENV} or --config) does not exist")
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            data = super()._read_file(file_path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"settings file {file_path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"settings file {file_path} cannot be read: {exc}") from None
        fields = sorted(Settings.model_fields)
        for key in data:
            if key not in Settings.model_fields:
                close = difflib.get_close_matches(key.lower().removeprefix("soiree_"), fields, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"settings: {', '.join(fields)}"
                raise ConfigError(f"settings file {file_path}: unknown setting {key!r}; {hint}")
        return data


class Settings(BaseSettings):
    """Every knob of Soirée. Read once per process; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SOIREE_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, then the ``SOIREE_CONFIG`` file: a variable always beats the file."""
        sources = (init_settings, env_settings, dotenv_settings, file_secret_settings)
        path = os.environ.get(CONFIG_ENV, "").strip()
        return (*sources, _TomlFile(settings_cls, Path(path))) if path else sources

    kafka_bootstrap: str = "localhost:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = Field("", description="CA bundle to verify the brokers (default: system CAs)")
    kafka_ssl_certfile: str = Field("", description="client certificate, for mutual TLS")
    kafka_ssl_keyfile: str = ""
    #: rediss://… for TLS, redis://:password@… or redis://user:password@… for AUTH; query options such
    #: as ?ssl_ca_certs=/path/ca.pem&ssl_cert_reqs=required are passed to redis-py
    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")
    store: str = Field(
        "", description="table store URL; empty: the Redis store at SOIREE_REDIS_URL; memory:// for Faust's"
    )
    app_id: str = Field("soiree", description="Faust app id: consumer group and table namespace")
    partitions: int = Field(4, ge=1, description="partitions of every topic the app creates")
    replication_factor: int = Field(
        0,
        ge=0,
        le=32,
        description="replicas of every topic Soirée creates, the table's changelog too; "
        "0: min(3, brokers of the cluster)",
    )
    min_insync_replicas: int = Field(
        0, ge=0, le=32, description="min.insync.replicas of those topics; 0: min(2, the replication factor)"
    )
    turnout_step: float = Field(
        0.1, gt=0, description="turnout move, in percentage points, that makes an event"
    )
    event_levels: list[str] = Field(default_factory=lambda: list(LEVELS))
    session_timeout: float = Field(10.0, ge=6, description="seconds before a silent worker's partitions move")
    batch_size: int = Field(2000, ge=1, description="max reports routed, or tallied, in one batch")
    batch_window: float = Field(
        0.02,
        gt=0,
        description="seconds routing and the tally wait to fill a batch (the nation: app.NATION_WINDOW)",
    )
    max_message_bytes: int = Field(65536, ge=256, description="larger bureau results are rejected")
    serve_host: str = Field("127.0.0.1", description="`soiree serve` listens here (0.0.0.0: every interface)")
    serve_port: int = Field(8080, ge=1, le=65535, description="`soiree serve`'s port")
    worker_metrics_host: str = Field("127.0.0.1", description="where a worker's /metrics listens")
    worker_metrics_port: int = Field(
        9108, ge=0, le=65535, description="a worker's /metrics (the next free one if taken; 0: none)"
    )
    operators_file: Path = Field(
        Path("config/operators.toml"), description="operators' token hashes (`soiree operator add`)"
    )
    sse_buffer: int = Field(
        20000, ge=100, description="recent events each `serve` keeps for resuming streams"
    )
    sources_file: Path = Field(
        Path("config/sources.toml"), description="who may report what: sources, scopes, token hashes, keys"
    )
    ingest_rate: float = Field(
        10.0, gt=0, description="HTTP ingest: requests per second a source may make (then 429)"
    )
    ingest_burst: int = Field(20, ge=1, description="HTTP ingest: requests a source may make at once")
    audit_topic: str = Field(
        "ingest-audit", description="every refused HTTP ingest request (never its token)"
    )
    home: Path = Field(Path(".soiree"), description="local state: Kafka jars, broker and Redis data, pids")
    results_topic: str = Field("bureau-results", description="where bureaux publish (contract name)")
    turnout_topic: str = Field("turnout-reports", description="turnout at 12:00 and 17:00, before the count")
    rejected_topic: str = Field("bureau-results-rejected", description="dead letters, with reasons")
    updates_topic: str = Field("election-updates", description="change events, keyed by area")
    elections_topic: str = Field(
        "election-definitions", description="durable copy of the definitions (compacted)"
    )
    kafka_version: str = "4.1.1"
    kafka_controller_port: int = 9093
    kafka_advertised_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="port the broker `soiree up` starts tells clients to connect to, for fault proxies "
        "such as Toxiproxy (a proxy there forwards to the listener); node i of --brokers N: this + 2(i-1); "
        "0: the listener's own port",
    )

    def redis_dsn(self) -> str:
        """The Redis URL, secret included; never log it (use ``redis_display``)."""
        return self.redis_url.get_secret_value()

    def store_url(self) -> str:
        return self.store or self.redis_dsn()

    def redis_display(self) -> str:
        """The Redis URL with any password masked, safe to print."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.redis_dsn())
        if parts.password:
            host = parts.hostname or ""
            netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
            parts = parts._replace(netloc=netloc)
        return urlunsplit(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; ``get_settings.cache_clear()`` after changing ``SOIREE_CONFIG``."""
    return Settings()
