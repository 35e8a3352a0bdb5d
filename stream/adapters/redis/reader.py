"""Asynchronous reads of what the workers keep in Redis, for ``soiree serve`` (never a write).

The raw JSON is returned as stored: the service passes it on without parsing it again.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from stream.adapters.redis.clients import async_client
from stream.adapters.redis.keys import ELECTIONS, election_key, results_key

__all__ = ["RedisReader", "MGET_CHUNK"]

#: Keys per MGET: a national level of bureaux (69,242) is read in chunks, not in one reply.
MGET_CHUNK = 1000


def _bytes(raw: bytes | str) -> bytes:
    """redis-py types replies as ``bytes | str``; without ``decode_responses`` they are bytes."""
    return raw if isinstance(raw, bytes) else raw.encode()


class RedisReader:
    """Definitions and standings, read with ``redis.asyncio`` (no SCAN: the areas come from the roll)."""

    def __init__(self, url: str) -> None:
        self.client: aioredis.Redis = async_client(url)

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def election_ids(self) -> list[str]:
        members = await self.client.smembers(ELECTIONS)
        return sorted(_bytes(member).decode() for member in members)

    async def definition(self, election: str) -> bytes | None:
        raw = await self.client.get(election_key(election))
        return None if raw is None else _bytes(raw)

    async def standings(self, election: str, level: str, area: str) -> bytes | None:
        raw = await self.client.get(results_key(election, level, area))
        return None if raw is None else _bytes(raw)

    async def many_standings(self, election: str, level: str, areas: Sequence[str]) -> list[bytes | None]:
        """The standings of ``areas`` in their order (None where an area has none yet)."""
        found: list[bytes | None] = []
        for start in range(0, len(areas), MGET_CHUNK):
            keys = [results_key(election, level, area) for area in areas[start : start + MGET_CHUNK]]
            found.extend(None if raw is None else _bytes(raw) for raw in await self.client.mget(keys))
        return found
