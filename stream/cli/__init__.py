"""The ``soiree`` command line: typer commands (``main``), rich views, the demo and replays."""

from stream.cli.commands import main

__all__ = ["main"]
