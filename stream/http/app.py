"""The aiohttp application of ``soiree serve``: its parts, and what they share."""

from __future__ import annotations

from aiohttp import web

from stream.http import api, events, page
from stream.settings import Settings

__all__ = ["create_web_app"]


def create_web_app(settings: Settings) -> web.Application:
    """The whole service: the API, the event stream, health and metrics, and the page."""
    app = web.Application()
    app["settings"] = settings
    api.setup(app)  # elections, results, health, metrics
    events.setup(app)  # the Server-Sent Events stream
    page.setup(app)  # the live page and its static files
    return app
