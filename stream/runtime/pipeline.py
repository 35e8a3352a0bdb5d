"""What the agents do, assembled: routing, the tally, standings, dead letters, Redis's watch.

Two hops, so that a whole night is a few thousand internal messages, not hundreds of thousands:

1. ``route_results`` (``runtime.routing``): validate each report (results and turnout), reject
   the invalid, and send the valid ones, one message per department per batch, to the
   contributions topic.
2. ``tally_areas`` and ``tally_nation`` (``runtime.tally``): bureaux into communes and
   circonscriptions, communes into departments, departments into the nation and their regions;
   each chunk committed as an ``AreaTransaction`` (``runtime.transaction``).

Around them: standings written to Redis (``runtime.standings``), dead letters
(``runtime.dead_letters``), outages waited out (``runtime.outages``) and a wiped Redis
noticed and refilled (``runtime.redis_watch``). ``app.create_app`` builds one ``Pipeline``
per worker; ``stream.testing.offline_pipeline`` builds one on in-process stand-ins.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import redis.asyncio as aioredis
from faust.types import EventT, ProducerT, TableT

from stream.adapters.redis.elections import ElectionCache
from stream.auth.registry import Sources
from stream.domain.aggregation import AreaState
from stream.runtime.dead_letters import DeadLetters, Record
from stream.runtime.redis_watch import RedisWatch
from stream.runtime.routing import Router
from stream.runtime.standings import StandingsWriter
from stream.runtime.tally import Tallier
from stream.settings import Settings

__all__ = ["Pipeline"]


class Pipeline:
    """The state and outlets the agents share."""

    def __init__(
        self,
        settings: Settings,
        elections: ElectionCache,
        areas: TableT,
        producer: ProducerT,
        contributions: str,
        nation: str,
        redis: aioredis.Redis,
        marker: str,
    ) -> None:
        self.settings = settings
        self.elections = elections
        self.areas = areas
        self.contributions = contributions
        self.nation = nation
        self.redis = redis
        self.dead_letters = DeadLetters(producer, settings.rejected_topic)
        self.standings = StandingsWriter(redis)
        self.router = Router(
            elections,
            producer,
            contributions,
            self.dead_letters,
            settings.max_message_bytes,
            settings.turnout_topic,
            Sources(settings.sources_file),
        )
        self.tallier = Tallier(
            settings, elections, areas, producer, nation, self.dead_letters, self.standings
        )
        self.redis_watch = RedisWatch(
            settings, redis, marker, elections, areas, lambda: self.tallier.derived, self.standings
        )

    async def on_results(self, records: list[Record]) -> None:
        """Hop 1: validate and route a batch of reports."""
        await self.router.on_results(records)

    async def on_contributions(self, events: list[EventT]) -> None:
        """Hop 2: tally contributions (departments' or the nation's)."""
        await self.tallier.on_contributions(events)

    def forget_states(self, *args: Any, **kwargs: Any) -> None:
        """Partitions moved: drop every state kept in memory (``Tallier.forget_states``)."""
        self.tallier.forget_states()

    async def check_redis(self) -> None:
        """Every second: waiting standings, and a Redis that lost its data (``RedisWatch``)."""
        await self.redis_watch.check()

    async def write_views(self, views: dict[str, bytes]) -> None:
        await self.standings.write(views)

    @property
    def held(self) -> OrderedDict[bytes, AreaState]:
        return self.tallier.held

    @property
    def pending_views(self) -> dict[str, bytes]:
        return self.standings.pending
