"""The aiohttp application of ``soiree serve``: its parts, and what they share."""

from __future__ import annotations

from aiohttp import web

from stream.adapters.redis.reader import RedisReader
from stream.http import api, events, ingest, page
from stream.http.api import DEFINITIONS, READER, SETTINGS, Definitions
from stream.http.embargo import TOKENS, OperatorTokens, SafeAccessLogger
from stream.http.errors import error_middleware
from stream.http.events import HUB, Hub
from stream.http.metrics import METRICS, ServeMetrics
from stream.settings import Settings

__all__ = ["create_web_app", "SafeAccessLogger"]


def create_web_app(settings: Settings) -> web.Application:
    """The whole service: the API, the event stream, health and metrics, and the page.

    On startup it connects to Redis and starts the event hub (which reads Kafka); run it with
    ``access_log_class=SafeAccessLogger`` so that no operator token reaches the access log."""
    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = settings
    metrics = app[METRICS] = ServeMetrics()
    reader = app[READER] = RedisReader(settings.redis_dsn())
    app[DEFINITIONS] = Definitions(reader)
    app[TOKENS] = OperatorTokens(settings.operators_file)
    app[HUB] = Hub(settings, metrics)

    async def start_hub(app: web.Application) -> None:
        await app[HUB].start()

    async def stop_streams(app: web.Application) -> None:
        await app[HUB].stop()  # open event streams end with it

    async def close_redis(app: web.Application) -> None:
        await app[READER].close()

    app.on_startup.append(start_hub)
    app.on_shutdown.append(stop_streams)
    app.on_cleanup.append(close_redis)
    api.setup(app)  # elections, results, health, metrics
    events.setup(app)  # the Server-Sent Events stream
    ingest.setup(app)  # reports from authenticated sources
    page.setup(app)  # the live page and its static files
    return app
