"""Every error Soirée raises on purpose, under one base, ``SoireeError``.

A caller that only wants to say "this went wrong, here is why" catches ``SoireeError`` and
prints ``str(exc)``: each message names what failed and, where there is one, what to do.
The subclasses keep the built-in base they had (``ValueError`` for bad input, ``RuntimeError``
for a service in the wrong state), so code catching those still works. Nothing here imports
anything: the pure domain raises these too.
"""

from __future__ import annotations

__all__ = [
    "SoireeError",
    "InvalidResult",
    "MinistryFormatError",
    "ScenarioError",
    "DefinitionTooLarge",
    "ElectionsUnavailable",
    "TopicsMisconfigured",
    "TopicCreationFailed",
    "InfraError",
    "FaustVersionMismatch",
]


class SoireeError(Exception):
    """Base of every error Soirée raises on purpose; ``str(exc)`` is meant for a person."""


# -- bad input --------------------------------------------------------------------------------
class InvalidResult(SoireeError, ValueError):
    """A bureau result that must be rejected; ``str(exc)`` is the human-readable reason."""


class MinistryFormatError(SoireeError, ValueError):
    """A ministry per-bureau file that cannot be read (the message names the line and column)."""


class ScenarioError(SoireeError, ValueError):
    """A night file (scenario) that cannot be replayed."""


class DefinitionTooLarge(SoireeError, ValueError):
    """A definition that would not fit in one Kafka message, even compressed."""


# -- services in the wrong state ----------------------------------------------------------------
class ElectionsUnavailable(SoireeError, RuntimeError):
    """Redis cannot be asked for a definition right now (the caller should wait, not reject)."""


class TopicsMisconfigured(SoireeError, RuntimeError):
    """A topic exists with a partition count the tables cannot be co-partitioned with."""


class TopicCreationFailed(SoireeError, RuntimeError):
    """The broker refused to create a topic (its error code and message are in the text)."""


class InfraError(SoireeError, RuntimeError):
    """Local Kafka or Redis could not be started or stopped (``soiree up`` / ``down``)."""


class FaustVersionMismatch(SoireeError, RuntimeError):
    """faust-streaming, mode-streaming or aiokafka are not the versions the Faust patches were written for."""
