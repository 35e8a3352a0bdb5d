"""Every Redis client Soirée opens, with connect and socket timeouts.

A Redis that stops answering (a network that drops packets, a frozen host) instead of refusing
would otherwise hold a call forever: the worker's event loop, or a command, with it. With these,
a call fails within ``CONNECT_TIMEOUT`` or ``SOCKET_TIMEOUT`` and the caller's outage handling
takes over (``runtime.outages``: wait, retry). The socket timeout is long enough for the largest
single command we send (a wiped Redis's 30,000 waiting standings in one MSET, a 10 MB definition).
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

__all__ = ["CONNECT_TIMEOUT", "SOCKET_TIMEOUT", "sync_client", "async_client"]

CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 10.0
#: seconds between PINGs on an idle connection, so a dead one is noticed before a command uses it
HEALTH_CHECK_INTERVAL = 30


def sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        health_check_interval=HEALTH_CHECK_INTERVAL,
    )


def async_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        health_check_interval=HEALTH_CHECK_INTERVAL,
    )
