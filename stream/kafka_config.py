"""Connection options shared by every Kafka client of Soirée (producers, consumers, admin, Faust)."""

from __future__ import annotations

from typing import Any

from .settings import Settings

__all__ = ["client_options"]


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments: bootstrap servers (and, later, security settings)."""
    return {"bootstrap_servers": settings.kafka_bootstrap}
