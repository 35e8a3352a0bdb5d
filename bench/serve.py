"""Benchmark: ``soiree serve`` under load, during a 2017 replay at 200 reports/s.

One worker and one ``serve`` process (each its own process, as deployed); the 2017 round 1 is
published at ``--rate`` reports/s. Meanwhile:

* ``--clients`` Server-Sent Events clients (default 2,000, in a separate process so that their
  CPU is not the server's) follow the nation's and the regions' events (a TV graphic's view; the
  default turnout step, as on a real night); each event's latency is its receipt time minus its
  ``at`` (when the tally sent it to Kafka): p50/p99/max over every receipt.
  Baseline, same run: aiokafka produce → consume of one topic at the same rate.
* then snapshot GETs of the nation's and all departments' standings with ``If-None-Match`` (the
  ETag each last returned: 304s, what a polling website sends), from ``--connections`` keep-alive
  connections, for ``--get-seconds``: requests per second that one ``serve`` answers. Baseline,
  same run: the same client against a bare aiohttp handler answering 304 in a process of its own.

    python bench/serve.py [--rate 200] [--seconds 60] [--clients 2000] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import baseline, paced, percentiles  # noqa: E402
from replay_2017 import ROUND1, require, start_worker, wait_ready  # noqa: E402

from stream.adapters.kafka.definitions import register_election  # noqa: E402
from stream.adapters.kafka.publisher import Publisher  # noqa: E402
from stream.adapters.kafka.topics import ensure_topics  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.sources.ministry import election_from_ministry, results_from_ministry  # noqa: E402
from stream.testing import forget_run, private_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_serve(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SOIREE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SOIREE_REDIS_URL": settings.redis_dsn(),
        "SOIREE_APP_ID": settings.app_id,
        "SOIREE_UPDATES_TOPIC": settings.updates_topic,
        "SOIREE_REJECTED_TOPIC": settings.rejected_topic,
        "SOIREE_RESULTS_TOPIC": settings.results_topic,
        "SOIREE_TURNOUT_TOPIC": settings.turnout_topic,
        "SOIREE_ELECTIONS_TOPIC": settings.elections_topic,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def wait_http(url: str, timeout: float = 60, status: int = 200) -> None:
    async def poll() -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(url) as response:
                        if response.status == status:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise SystemExit(f"{url} did not answer within {timeout:.0f} s")

    asyncio.run(poll())


# -- the SSE clients, in a process of their own --------------------------------------------------
def sse_clients(url: str, clients: int, until: float, out: Any) -> None:
    """``clients`` streams on ``url`` until the time ``until``; sends back the latencies
    (receipt - at) of the update events they received."""

    async def run() -> list[float]:
        latencies: list[float] = []
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one() -> None:
                async with session.get(url) as response:
                    response.raise_for_status()
                    kind = ""
                    async for raw in response.content:
                        if raw.startswith(b"event: "):
                            kind = raw[7:].strip().decode()
                        elif raw.startswith(b"data: ") and kind == "update":
                            latencies.append(time.time() - _sent_at(raw))

            tasks = [asyncio.create_task(one()) for _ in range(clients)]
            await asyncio.sleep(max(0.0, until - time.time()))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return latencies

    out.send(asyncio.run(run()))


def _sent_at(data: bytes) -> float:
    """The event's ``at``, found in the raw line: parsing every event whole would make the clients'
    process, not the server, the bottleneck."""
    start = data.index(b'"at":"') + 6
    return datetime.fromisoformat(data[start : data.index(b'"', start)].decode()).timestamp()


# -- GETs with If-None-Match -----------------------------------------------------------------
async def conditional_gets(urls: list[str], connections: int, seconds: float) -> dict[str, float]:
    """Requests per second over keep-alive connections, each sending the ETag its URL last had."""
    etags: dict[str, str] = {}
    count = statuses_304 = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in urls:
            async with session.get(url) as response:
                if response.status in (200, 304):  # an area with results (a partial night has fewer)
                    etags[url] = response.headers.get("ETag", "")
        urls = [url for url in urls if url in etags]
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def worker(offset: int) -> None:
            nonlocal count, statuses_304
            i = offset
            while time.perf_counter() < deadline:
                url = urls[i % len(urls)]
                async with session.get(url, headers={"If-None-Match": etags[url]}) as response:
                    await response.read()
                    count += 1
                    statuses_304 += response.status == 304
                    if response.status == 200:
                        etags[url] = response.headers.get("ETag", "")
                i += connections

        await asyncio.gather(*(worker(n) for n in range(connections)))
        elapsed = time.perf_counter() - started
    return {
        "requests": count,
        "per_second": count / elapsed,
        "share_304": statuses_304 / max(count, 1),
        "urls": len(urls),
    }


def bare_server(port: int) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=304, headers={"ETag": '"x"'})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/pres2017")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--get-seconds", type=float, default=15.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/serve.json")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    settings = private_settings(Settings(), f"serve-{tag}")  # events as a real night has them
    require(settings, args.data)
    path = args.data / ROUND1
    election = election_from_ministry(path, f"pres2017-t1-serve-{tag}")
    e = election.election
    count = int(args.rate * args.seconds)
    results = list(results_from_ministry(path, e))[:count]
    register_election(settings, redis.Redis.from_url(settings.redis_dsn()), election)
    asyncio.run(ensure_topics(settings))
    logs = ROOT / ".soiree/logs"
    logs.mkdir(parents=True, exist_ok=True)

    base = asyncio.run(
        baseline(settings, [(r["bureau"].encode(), orjson.dumps(r)) for r in results[:4000]], args.rate)
    )
    worker = start_worker(settings, logs / f"bench-serve-{tag}-worker.log", e)
    port = free_port()
    server = start_serve(settings, port, logs / f"bench-serve-{tag}-serve.log")
    bare_port = free_port()
    bare = multiprocessing.Process(target=bare_server, args=(bare_port,), daemon=True)
    try:
        wait_ready(logs / f"bench-serve-{tag}-worker.log", worker)
        base_url = f"http://127.0.0.1:{port}"
        wait_http(f"{base_url}/healthz")
        stream = f"{base_url}/api/elections/{e}/events?level=nation,region"
        receive, send = multiprocessing.Pipe(duplex=False)
        connecting = 3 + args.clients / 500
        until = time.time() + connecting + args.seconds + 10  # the night, and time to drain
        clients = multiprocessing.Process(target=sse_clients, args=(stream, args.clients, until, send))
        clients.start()
        time.sleep(connecting)  # every client connected before the night starts

        async def publish() -> None:
            async with Publisher(settings) as publisher:
                async for i in paced(args.rate, count):
                    await publisher.result(results[i])

        asyncio.run(publish())
        latencies = receive.recv() if receive.poll(until - time.time() + 120) else []
        clients.join(timeout=30)
        if not latencies:
            raise SystemExit("the SSE clients received nothing: see the serve log in .soiree/logs")
        sse = percentiles(latencies)

        departments = sorted({entry.department for entry in election.bureaux})
        urls = [f"{base_url}/api/elections/{e}/results/nation/FR"] + [
            f"{base_url}/api/elections/{e}/results/department/{code}" for code in departments
        ]
        gets = asyncio.run(conditional_gets(urls, args.connections, args.get_seconds))
        bare.start()
        wait_http(f"http://127.0.0.1:{bare_port}/", status=304)
        bare_urls = [url.replace(f":{port}/", f":{bare_port}/") for url in urls]
        bare_gets = asyncio.run(conditional_gets(bare_urls, args.connections, args.get_seconds))
    finally:
        for process in (server, worker):
            process.terminate()
            process.wait(timeout=30)
        if bare.is_alive():
            bare.terminate()
        forget_run(settings, e)

    cores = os.cpu_count()
    print(
        f"soiree serve, {args.clients:,} SSE clients, 2017 round 1 at {args.rate:g} reports/s, {cores} CPUs"
    )
    print(f"  {'':52}{'p50':>10}{'p99':>10}{'max':>10}")
    print(
        f"  {'baseline: aiokafka produce → consume':52}"
        f"{base['p50_ms']:>8.1f}ms{base['p99_ms']:>8.1f}ms{base['max_ms']:>8.1f}ms"
    )
    print(
        f"  {'SSE: event sent → received by a client':52}"
        f"{sse['p50_ms']:>8.1f}ms{sse['p99_ms']:>8.1f}ms{sse['max_ms']:>8.1f}ms  ({sse['n']:,} receipts)"
    )
    print(
        f"  GETs with If-None-Match: {gets['per_second']:,.0f} requests/s on one serve process "
        f"({gets['share_304']:.0%} 304); baseline, a bare aiohttp 304: "
        f"{bare_gets['per_second']:,.0f} requests/s"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "clients": args.clients,
                "rate": args.rate,
                "baseline": base,
                "sse": sse,
                "gets": gets,
                "bare_gets": bare_gets,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"  written to {args.json}")


if __name__ == "__main__":
    main()
