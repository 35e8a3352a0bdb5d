"""Placeholder: being written (issue 15)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Add this part's routes to the service."""
