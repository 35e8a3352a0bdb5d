"""Elections and results as JSON, from Redis; health, readiness and metrics.

Definitions are parsed once per process (``ElectionIndex``, by id) and checked again at most
every ``DEFINITION_TTL`` seconds: re-parsed only when Redis's copy changed. The areas of a level
come from the roll, so a level's standings are one MGET per thousand areas, never a SCAN.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import orjson
from aiohttp import web

from stream.adapters.kafka.positions import consumer_group_members
from stream.adapters.redis.reader import RedisReader
from stream.domain.roll import ElectionIndex
from stream.http.embargo import check_access
from stream.http.errors import json_error
from stream.http.metrics import CONTENT_TYPE_LATEST, METRICS
from stream.settings import LEVELS, Settings

__all__ = ["setup", "Definitions", "Definition", "READER", "DEFINITIONS", "SETTINGS", "DEFINITION_TTL"]

#: Seconds a parsed definition is trusted before Redis's copy is compared with it again.
DEFINITION_TTL = 5.0
#: Fields of the elections list.
SUMMARY_FIELDS = ("name", "round", "rehearsal", "publish_after", "compare_to")


@dataclass
class Definition:
    index: ElectionIndex
    digest: bytes
    public: dict[str, Any]  # the definition without its roll
    checked: float = field(default_factory=time.monotonic)

    @property
    def summary(self) -> dict[str, Any]:
        return {
            "id": self.index.election,
            "name": self.public.get("name"),
            "round": self.public.get("round", 1),
            "rehearsal": self.public.get("rehearsal", False),
            "publish_after": self.public.get("publish_after"),
            "compare_to": self.public.get("compare_to"),
        }


def _parse(raw: bytes) -> Definition:
    definition = orjson.loads(raw)
    index = ElectionIndex(definition, raw)
    public = {key: value for key, value in definition.items() if key != "bureaux"}
    return Definition(index, hashlib.sha1(raw).digest(), public)


class Definitions:
    """Parsed definitions by id; a parse runs in a thread (a national roll takes a second)."""

    def __init__(self, reader: RedisReader, ttl: float = DEFINITION_TTL) -> None:
        self._reader = reader
        self._ttl = ttl
        self._known: dict[str, Definition] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, election: str) -> Definition | None:
        known = self._known.get(election)
        if known is not None and time.monotonic() - known.checked < self._ttl:
            return known
        lock = self._locks.setdefault(election, asyncio.Lock())
        async with lock:
            known = self._known.get(election)
            if known is not None and time.monotonic() - known.checked < self._ttl:
                return known  # refreshed while this request waited
            raw = await self._reader.definition(election)
            if raw is None:
                self._known.pop(election, None)
                return None
            if known is not None and hashlib.sha1(raw).digest() == known.digest:
                known.checked = time.monotonic()
                return known
            parsed = await asyncio.to_thread(_parse, raw)
            self._known[election] = parsed
            return parsed


SETTINGS = web.AppKey("soiree_settings", Settings)
READER = web.AppKey("redis_reader", RedisReader)
DEFINITIONS = web.AppKey("definitions", Definitions)


async def definition_or_404(request: web.Request) -> Definition | web.Response:
    election = request.match_info["election"]
    found = await request.app[DEFINITIONS].get(election)
    if found is None:
        return json_error(404, "unknown_election", f"no election {election!r} is registered")
    return found


# -- elections ------------------------------------------------------------------------------
async def elections(request: web.Request) -> web.Response:
    definitions = request.app[DEFINITIONS]
    found = []
    for election in await request.app[READER].election_ids():
        one = await definitions.get(election)
        if one is not None:
            found.append(one.summary)
    return web.json_response(found, dumps=_dumps)


async def election(request: web.Request) -> web.Response:
    found = await definition_or_404(request)
    if isinstance(found, web.Response):
        return found
    if request.query.get("roll") in ("1", "true", "yes"):
        return web.Response(body=found.index.definition_json(), content_type="application/json")
    return web.json_response(found.public, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# -- results --------------------------------------------------------------------------------
def _http_date(value: str | None) -> str | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _not_modified(request: web.Request, etag: str) -> bool:
    given = request.headers.get("If-None-Match")
    if not given:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in given.split(",")}
    return "*" in tags or etag in tags


def _cached(request: web.Request, body: bytes, etag: str, as_of: str | None) -> web.Response:
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    modified = _http_date(as_of)
    if modified:
        headers["Last-Modified"] = modified
    if _not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


def _level_or_404(level: str) -> web.Response | None:
    if level not in LEVELS:
        return json_error(404, "unknown_level", f"unknown level {level!r}; levels: {', '.join(LEVELS)}")
    return None


async def results(request: web.Request) -> web.Response:
    found = await definition_or_404(request)
    if isinstance(found, web.Response):
        return found
    level = request.match_info["level"]
    if (wrong := _level_or_404(level)) is not None:
        return wrong
    if (refused := check_access(request, found.index.publish_after)) is not None:
        return refused
    areas = found.index.areas.of_level(level)
    raws = [
        raw for raw in await request.app[READER].many_standings(found.index.election, level, areas) if raw
    ]
    parsed = [orjson.loads(raw) for raw in raws]
    order = sorted(range(len(parsed)), key=lambda i: parsed[i]["area"])
    body = b"[" + b",".join(raws[i] for i in order) + b"]"
    versions = hashlib.sha1(
        b"|".join(f"{parsed[i]['area']}:{parsed[i].get('version', 0)}".encode() for i in order)
    ).hexdigest()[:20]
    latest = max((p["as_of"] for p in parsed if p.get("as_of")), key=datetime.fromisoformat, default=None)
    return _cached(request, body, f'"l-{versions}-{zlib.crc32(body):08x}"', latest)


async def area_results(request: web.Request) -> web.Response:
    found = await definition_or_404(request)
    if isinstance(found, web.Response):
        return found
    level, area = request.match_info["level"], request.match_info["area"]
    if (wrong := _level_or_404(level)) is not None:
        return wrong
    if (level, area) not in found.index.areas:
        return json_error(404, "unknown_area", f"election {found.index.election} has no {level} {area!r}")
    if (refused := check_access(request, found.index.publish_after)) is not None:
        return refused
    raw = await request.app[READER].standings(found.index.election, level, area)
    if raw is None:
        return json_error(404, "no_results", f"no results yet for {level} {area} (no bureau of it reported)")
    standings = orjson.loads(raw)
    etag = f'"{standings.get("version", 0)}-{zlib.crc32(raw):08x}"'
    return _cached(request, raw, etag, standings.get("as_of"))


# -- health ---------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    problems: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app[READER].ping(), 3)
    except Exception as exc:  # noqa: BLE001  # any failure means not ready; said in the answer
        problems["redis"] = f"not answering ({type(exc).__name__})"
    try:
        members = await asyncio.wait_for(consumer_group_members(settings, settings.app_id), 5)
        if members == 0:
            problems["workers"] = f"no worker in the consumer group {settings.app_id!r}"
    except Exception as exc:  # noqa: BLE001
        problems["kafka"] = f"metadata not reachable ({type(exc).__name__})"
    if problems:
        detail = "; ".join(f"{what}: {why}" for what, why in problems.items())
        return json_error(503, "not_ready", detail, checks=problems)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    """Add this part's routes to the service."""
    routes = app.router
    routes.add_get("/api/elections", elections)
    routes.add_get("/api/elections/{election}", election)
    routes.add_get("/api/elections/{election}/results/{level}", results)
    routes.add_get("/api/elections/{election}/results/{level}/{area}", area_results)
    routes.add_get("/healthz", healthz)
    routes.add_get("/readyz", readyz)
    routes.add_get("/metrics", metrics)
