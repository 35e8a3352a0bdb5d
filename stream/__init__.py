"""Soirée: exact election-night totals and change events over Kafka (Faust) and Redis."""

__version__ = "0.1.0"
