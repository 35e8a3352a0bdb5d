"""Configuration, from environment variables prefixed ``SOIREE_`` (defaults suit a local run)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings", "LEVELS"]

#: The aggregation levels, from the smallest area to the largest.
LEVELS: tuple[str, ...] = ("bureau", "commune", "department", "nation")


class Settings(BaseSettings):
    """Every knob of Soirée. Read once per process; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SOIREE_", extra="ignore")

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
    home: Path = Field(Path(".soiree"), description="local state: Kafka jars, broker and Redis data, pids")
    results_topic: str = Field("bureau-results", description="where bureaux publish (contract name)")
    rejected_topic: str = Field("bureau-results-rejected", description="dead letters, with reasons")
    updates_topic: str = Field("election-updates", description="change events, keyed by area")
    elections_topic: str = Field(
        "election-definitions", description="durable copy of the definitions (compacted)"
    )
    kafka_version: str = "4.1.1"
    kafka_controller_port: int = 9093

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
    return Settings()
