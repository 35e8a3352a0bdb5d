"""Noticing that Redis lost its data, and putting back what readers need from it.

A worker keeps a marker key in Redis (renewed every second). When it is gone, Redis was
restarted without persistence (or flushed): the election definitions come back from their
durable topic and this worker's memory, and every standing it holds is written again. The
table store rebuilds its own keys the same way (``runtime.store``), and tells which partitions
lost their standings with them (``RedisStore.standings_owed``): it keeps their offsets out of
Redis until the standings are written again, so a worker killed before that leaves them owed to
the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from faust.types import TableT
from redis.exceptions import RedisError

from stream.adapters.kafka.definitions import restore_from_log
from stream.adapters.redis.elections import ElectionCache
from stream.adapters.redis.keys import ELECTIONS, election_key
from stream.domain.aggregation import AreaState, split_area_key
from stream.domain.encoding import dumps
from stream.errors import ElectionsUnavailable
from stream.runtime.standings import StandingsWriter, standings_of
from stream.runtime.transaction import DERIVED_LEVELS
from stream.settings import Settings

__all__ = ["RedisWatch"]

log = logging.getLogger(__name__)

#: Seconds a worker's marker outlives the worker (renewed every second while it runs).
MARKER_TTL = 3600


class RedisWatch:
    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        marker: str,
        elections: ElectionCache,
        areas: TableT,
        derived: Callable[[], dict[bytes, AreaState]],
        standings: StandingsWriter,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.marker = marker
        self.marker_set = False
        self.elections = elections
        self.areas = areas
        #: the tally's in-memory departments and circonscriptions (their newest totals)
        self.derived = derived
        self.standings = standings

    async def check(self) -> None:
        """Called every second: retry waiting standings; if Redis lost everything, or the table
        store owes standings, ``restore``."""
        store = self.areas.data
        try:
            if not self.marker_set:
                self.marker_set = bool(await self.redis.set(self.marker, "1", ex=MARKER_TTL))
            elif self.areas.app.in_recovery:
                # Standings of a half-replayed table would be old ones, and SET NX keeps them for
                # good: restore once the table is whole (the marker stays missing until then).
                pass
            else:
                # Redis lost partitions (seen by the store's flush, or by a replay into a partition
                # loaded without an offset, before this worker's marker existed): their standings
                # come back from the table. Only a restore that went through settles them.
                owed = store.standings_owed() if hasattr(store, "standings_owed") else {}
                if not await self.redis.set(self.marker, "1", ex=MARKER_TTL, xx=True):
                    await self.restore()
                    await self.redis.set(self.marker, "1", ex=MARKER_TTL)
                elif owed:
                    await self.restore(f"table partitions {sorted(owed)} came back without their standings")
                if owed:
                    store.standings_restored(owed)  # type: ignore[attr-defined]
        except (RedisError, OSError, ElectionsUnavailable) as exc:
            log.warning("Redis unreachable: %s", exc)
            return
        except KafkaError as exc:  # the marker stays missing: tried again in a second
            log.warning("Redis lost its data and the election definitions cannot be read from Kafka: %s", exc)
            return
        await self.standings.write({})

    async def restore(self, why: str = "Redis had lost its data") -> None:
        """Elections (from the durable log, and this worker's memory) and standings back into a
        wiped Redis. Until the marker is back, reports of elections Redis lacks wait.

        Written with SET NX: the agents keep running meanwhile, and a standing they wrote since
        the wipe is newer than the one computed here."""
        from_log = await restore_from_log(self.settings, self.redis)
        # every election the table holds, not only those this worker met since it started
        await self.elections.fetch(split_area_key(key.decode())[0] for key in list(self.areas.data.keys()))
        restored = 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for known in self.elections.known():
                pipe.set(election_key(known.election), known.definition_json(), nx=True)
                pipe.sadd(ELECTIONS, known.election)
            for count, (key, raw) in enumerate(list(self.areas.data.items())):
                if count % 1000 == 999:
                    await asyncio.sleep(0)  # a national night is ~100,000 standings: let the agents run
                election_id, level, area = split_area_key(key.decode())
                election = self.elections.get(election_id)  # None: in no log, in no memory
                if election is None or raw is None or election.tally_id != election_id:  # gone, or replaced
                    continue
                state = self.derived().get(key) if level in DERIVED_LEVELS else None
                state = state or AreaState.from_json(orjson.loads(raw))
                for view_key, standings in standings_of(election, level, area, state):
                    pipe.set(view_key, dumps(standings), nx=True)
                    restored += 1
            await pipe.execute()
        log.warning(
            "%s: restored %d elections from the log, %d from memory, and %d standings",
            why,
            len(from_log),
            len(self.elections.known()),
            restored,
        )
