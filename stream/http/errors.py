"""Every error of ``soiree serve`` is JSON ``{"error": …, "detail": …}``: a middleware turns
aiohttp's own 404/405 and any unexpected exception into that shape (never a traceback in a body),
and counts every request for the metrics."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from stream.http.metrics import METRICS

__all__ = ["json_error", "error_middleware", "STREAMING"]

log = logging.getLogger("stream.http")

#: Set by a handler whose request lasts as long as a stream: its latency is not a request's.
STREAMING = web.RequestKey("streaming", bool)


def json_error(
    status: int, error: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return web.json_response({"error": error, "detail": detail, **extra}, status=status, headers=headers)


_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


def _route(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    route = _route(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return json_error(
            exc.status, _NAMES.get(exc.status, exc.reason.lower().replace(" ", "_")), detail or exc.reason
        )
    except Exception:
        log.exception("%s %s failed", request.method, route)
        return json_error(500, "internal", "the server failed to answer; the error is in its log")
    finally:
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.requests.labels(route=route, status=str(status)).inc()
            if not request.get(STREAMING):
                metrics.latency.labels(route=route).observe(time.perf_counter() - started)
