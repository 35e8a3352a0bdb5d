"""``soiree serve`` against the real Kafka, Redis and workers: the API, the resumable event
stream, the embargo, health and metrics. Expected values come from the reports themselves or
from reading the topics directly, never from the service."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientResponse, ClientSession, ClientTimeout
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer

from stream.adapters.redis.standings import list_standings
from stream.domain.messages import Election
from stream.http.app import create_web_app
from stream.http.embargo import SafeAccessLogger, add_operator
from stream.settings import Settings

from .harness import ROOT, Stack
from .test_pipeline import expected_by_area, mini_election, result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    server = TestServer(create_web_app(settings), access_log_class=SafeAccessLogger)
    client = TestClient(server)
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def sse_events(response: ClientResponse, count: int, timeout: float = 30) -> list[dict[str, str]]:
    """The next ``count`` events (comments skipped) of an SSE response."""
    found: list[dict[str, str]] = []
    event: dict[str, str] = {}

    async def read() -> None:
        nonlocal event
        while len(found) < count:
            line = (await response.content.readline()).decode()
            if not line:
                raise AssertionError(f"the stream ended after {len(found)} events")
            line = line.rstrip("\n")
            if not line:
                if "data" in event:
                    found.append(event)
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                event[name] = value

    await asyncio.wait_for(read(), timeout)
    return found


async def no_more_events(response: ClientResponse, wait: float = 2.5) -> None:
    try:
        extra = await sse_events(response, 1, timeout=wait)
    except TimeoutError:
        return
    raise AssertionError(f"an event too many: {extra}")


async def topic_records(settings: Settings) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every event of the updates topic, read directly."""
    consumer = AIOKafkaConsumer(
        settings.updates_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: list[tuple[int, int, bytes]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch:
                return found
            for tp, messages in batch.items():
                found.extend((tp.partition, m.offset, m.value or b"") for m in messages)
    finally:
        await consumer.stop()


def parse_id(text: str) -> dict[int, int]:
    return {int(p): int(o) for p, o in (part.split("-") for part in text.split("."))}


def after(records: list[tuple[int, int, bytes]], position: dict[int, int]) -> Counter[bytes]:
    return Counter(value for partition, offset, value in records if offset >= position.get(partition, 0))


def with_embargo(election: Election, publish_after: datetime) -> Election:
    return election.model_copy(update={"publish_after": publish_after})


def figures(standings: dict[str, Any]) -> dict[str, Any]:
    return {k: standings[k] for k in ("voters", "blank", "invalid", "registered", "bureaux_reported")} | {
        "votes": {c: v for c, v in standings["votes"].items() if v}
    }


def expected_figures(
    election: Election, results: list[dict[str, Any]], level: str, area: str
) -> dict[str, Any]:
    total = expected_by_area(election, results)[(level, area)]
    return {
        "voters": total["voters"],
        "blank": total["blank"],
        "invalid": total["invalid"],
        "registered": total["registered"],
        "bureaux_reported": total["bureaux"],
        "votes": {c: v for c, v in total["votes"].items() if v},
    }


REPORTS = [
    ("42218-0001", 1, {"A": 40, "B": 10}),
    ("42218-0002", 1, {"A": 10, "B": 30}),
    ("75056-0001", 1, {"C": 70}),
]


def test_api_results_etag_errors_health_and_metrics(stack: Any) -> None:
    s: Stack = stack("serve-api")
    election = mini_election()
    e = election.election
    s.register(election)
    reports = [
        result(e, b, seq, votes, reported_at=f"2017-04-23T20:1{i}:00+02:00")
        for i, (b, seq, votes) in enumerate(REPORTS)
    ]

    async def run() -> None:
        async with served(s.settings) as client:
            # no worker yet: not ready, and says why
            response = await client.get("/readyz")
            assert response.status == 503
            body = await response.json()
            assert "workers" in body["checks"] and body["error"] == "not_ready"
            assert (await (await client.get("/healthz")).json()) == {"status": "ok"}

            s.start_worker()
            deadline = time.monotonic() + 60
            while (response := await client.get("/readyz")).status != 200:
                assert time.monotonic() < deadline, await response.text()
                await asyncio.sleep(0.5)
            assert await response.json() == {"status": "ready"}

            # elections
            listed = await (await client.get("/api/elections")).json()
            mine = next(one for one in listed if one["id"] == e)
            assert mine == {
                "id": e,
                "name": "Mini",
                "round": 1,
                "rehearsal": False,
                "publish_after": None,
                "compare_to": None,
            }
            one = await (await client.get(f"/api/elections/{e}")).json()
            assert "bureaux" not in one and [c["id"] for c in one["candidates"]] == ["A", "B", "C"]
            roll = await (await client.get(f"/api/elections/{e}?roll=1")).json()
            assert sorted(b["bureau"] for b in roll["bureaux"]) == sorted(election.roll)

            # nothing reported yet: a known area says so, a level answers an empty list
            response = await client.get(f"/api/elections/{e}/results/department/42")
            assert response.status == 404 and (await response.json())["error"] == "no_results"
            assert await (await client.get(f"/api/elections/{e}/results/department")).json() == []

            await asyncio.to_thread(s.publish, reports)
            await asyncio.to_thread(
                s.publish, [], [(b"42218-0001", b'{"election": "' + e.encode() + b'", "bureau": "x"}')]
            )
            await asyncio.to_thread(
                s.wait_until,
                lambda: (n := s.standings(e, "nation", "FR")) is not None and n.bureaux_reported == 3,
                60,
                "the nation",
            )

            # results: the nation and each department against independent sums and `soiree results`
            response = await client.get(f"/api/elections/{e}/results/nation/FR")
            assert response.status == 200
            nation = await response.json()
            assert figures(nation) == expected_figures(election, reports, "nation", "FR")
            departments = await (await client.get(f"/api/elections/{e}/results/department")).json()
            assert [d["area"] for d in departments] == ["42", "75"]
            for department in departments:
                assert figures(department) == expected_figures(
                    election, reports, "department", department["area"]
                )
            cli = subprocess.run(
                [sys.executable, "-m", "stream.cli", "results", "department", "--election", e, "--json"],
                capture_output=True,
                text=True,
                env=s.env(),
                cwd=ROOT,
                check=True,
            )
            assert departments == json.loads(cli.stdout)
            assert departments == [
                x.model_dump(mode="json") for x in list_standings(s.redis, e, "department")
            ]

            # caching: ETag, Last-Modified, 304, and a new ETag after a correction
            etag = response.headers["ETag"]
            assert response.headers["Cache-Control"] == "no-cache"
            assert response.headers["Last-Modified"] == "Sun, 23 Apr 2017 18:12:00 GMT"
            again = await client.get(f"/api/elections/{e}/results/nation/FR", headers={"If-None-Match": etag})
            assert again.status == 304 and await again.read() == b""
            level = await client.get(f"/api/elections/{e}/results/department")
            level_etag = level.headers["ETag"]
            assert (
                await client.get(
                    f"/api/elections/{e}/results/department", headers={"If-None-Match": level_etag}
                )
            ).status == 304
            correction = result(
                e, "42218-0002", 2, {"A": 11, "B": 30}, reported_at="2017-04-23T20:30:00+02:00"
            )
            await asyncio.to_thread(s.publish, [correction])
            await asyncio.to_thread(
                s.wait_until,
                lambda: s.standings(e, "nation", "FR").voters == 161,
                60,
                "the correction",  # type: ignore[union-attr]
            )
            changed = await client.get(
                f"/api/elections/{e}/results/nation/FR", headers={"If-None-Match": etag}
            )
            assert changed.status == 200 and changed.headers["ETag"] != etag
            assert changed.headers["Last-Modified"] == "Sun, 23 Apr 2017 18:30:00 GMT"
            assert figures(await changed.json()) == expected_figures(
                election, [*reports, correction], "nation", "FR"
            )
            assert (
                await client.get(
                    f"/api/elections/{e}/results/department", headers={"If-None-Match": level_etag}
                )
            ).status == 200

            # errors are JSON
            for path, status, error in [
                ("/api/elections/nope", 404, "unknown_election"),
                ("/api/elections/nope/results/nation", 404, "unknown_election"),
                (f"/api/elections/{e}/results/canton", 404, "unknown_level"),
                (f"/api/elections/{e}/results/department/99", 404, "unknown_area"),
                (f"/api/elections/{e}/results/commune/42001", 404, "no_results"),
                ("/api/nothing/here", 404, "not_found"),
            ]:
                response = await client.get(path)
                assert response.status == status, path
                assert response.content_type == "application/json"
                body = await response.json()
                assert body["error"] == error and body["detail"], path
            response = await client.post("/api/elections")
            assert response.status == 405 and (await response.json())["error"] == "method_not_allowed"

            # metrics: counted by the hub from the topics, read here independently
            records = await topic_records(s.settings)
            kinds = Counter((orjson.loads(v)["kind"], orjson.loads(v)["level"]) for _, _, v in records)
            deadline = time.monotonic() + 20
            while True:
                text = await (await client.get("/metrics")).text()
                if "soiree_reports_rejected_total{reason=" in text or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            for (kind, lvl), n in kinds.items():
                assert f'soiree_events_total{{kind="{kind}",level="{lvl}"}} {float(n)}' in text
            accepted = kinds["reported", "bureau"] + kinds["corrected", "bureau"]
            assert f"soiree_reports_accepted_total {float(accepted)}" in text
            assert kinds["reported", "bureau"] == 3 and kinds["corrected", "bureau"] == 1
            assert re.search(r'soiree_reports_rejected_total\{reason="[^"]+"\} 1\.0', text), text
            assert "soiree_sse_clients 0.0" in text
            for status in ("503", "200"):  # asked until a worker joined
                assert re.search(
                    rf'soiree_http_requests_total{{route="/readyz",status="{status}"}} [1-9]', text
                )
            assert (
                'soiree_http_request_seconds_count{route="/api/elections/{election}/results/{level}/{area}"}'
                in text
            )

    asyncio.run(run())


def test_event_stream_snapshot_live_resume_and_replay(stack: Any) -> None:
    s: Stack = stack("serve-sse")
    election = mini_election()
    e = election.election
    s.register(election)
    s.start_worker()
    first = [result(e, b, seq, votes) for b, seq, votes in REPORTS[:2]]
    s.publish(first)
    s.wait_until(
        lambda: (n := s.standings(e, "nation", "FR")) is not None and n.bureaux_reported == 2, 60, "nation"
    )

    async def run() -> None:
        async with served(s.settings) as client:
            url = f"/api/elections/{e}/events"
            live = await client.get(url, params={"level": "nation,department"})
            assert live.status == 200 and live.headers["Content-Type"] == "text/event-stream"
            snapshot = await sse_events(live, 2)
            assert [ev["event"] for ev in snapshot] == ["snapshot", "snapshot"]
            assert sorted((d := orjson.loads(ev["data"]))["level"] + d["area"] for ev in snapshot) == [
                "department42",
                "nationFR",
            ]
            everything = await client.get(url)  # every level, snapshot of the nation only
            assert [ev["event"] for ev in await sse_events(everything, 1)] == ["snapshot"]

            # a report published now arrives as updates (Paris: its department, then the nation)
            await asyncio.to_thread(s.publish, [result(e, *REPORTS[2])])
            updates = await sse_events(live, 2)
            assert {ev["event"] for ev in updates} == {"update"}
            assert {(d := orjson.loads(ev["data"]))["level"] for ev in updates} <= {"nation", "department"}
            assert any(orjson.loads(ev["data"])["area"] == "75" for ev in updates)
            await asyncio.to_thread(s.publish, [result(e, "42001-0001", 1, {"B": 20})])
            await asyncio.to_thread(
                s.wait_until,
                lambda: s.standings(e, "nation", "FR").bureaux_reported == 4,
                60,
                "all",  # type: ignore[union-attr]
            )
            await asyncio.sleep(2)
            records = await topic_records(s.settings)
            assert len(records) > 10

            # from=beginning replays the night: exactly the topic, each once
            replay = await client.get(url, params={"from": "beginning"})
            replayed = await sse_events(replay, len(records))
            assert Counter(ev["data"].encode() for ev in replayed) == Counter(v for _, _, v in records)
            await no_more_events(replay)
            last = parse_id(replayed[-1]["id"])
            assert last == {p: max(o for q, o, _ in records if q == p) + 1 for p, _, _ in records} | {
                p: last[p] for p in last if p not in {q for q, _, _ in records}
            }

            # resuming from the middle gives exactly the rest: from the ring (this process read them)
            # and from Kafka (a process started afterwards has none of them in its ring)
            middle = replayed[len(replayed) // 2]["id"]
            expected = after(records, parse_id(middle))
            assert 0 < sum(expected.values()) < len(records)
            for resume in (
                client.get(url, headers={"Last-Event-ID": middle}),
                client.get(url, params={"last_event_id": middle}),
            ):
                response = await resume
                got = await sse_events(response, sum(expected.values()))
                assert Counter(ev["data"].encode() for ev in got) == expected
                await no_more_events(response, 1.5)
        async with served(s.settings) as fresh:
            response = await fresh.get(url, headers={"Last-Event-ID": middle})
            got = await sse_events(response, sum(expected.values()))
            assert Counter(ev["data"].encode() for ev in got) == expected
            await no_more_events(response)
            bad = await fresh.get(url, headers={"Last-Event-ID": "garbage"})
            assert bad.status == 400 and (await bad.json())["error"] == "bad_event_id"

    asyncio.run(run())


def test_serve_command_restart_resume_and_embargo(stack: Any, tmp_path: Path) -> None:
    s: Stack = stack("serve-cli")
    election = mini_election()
    e = election.election
    embargoed = with_embargo(mini_election(), datetime.now(UTC) + timedelta(hours=1))
    s.register(election)
    s.register(embargoed)
    s.start_worker()
    operators = tmp_path / "operators.toml"
    token = add_operator(operators, "newsroom")
    env = {**s.env(), "SOIREE_OPERATORS_FILE": str(operators)}
    port = free_port()
    log = tmp_path / "serve.log"

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "serve", "--port", str(port)],
            env={**env, "COLUMNS": "200"},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while f"http://127.0.0.1:{port}/" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()  # never left behind
                process.wait(timeout=10)
                raise AssertionError(f"serve did not start: {log.read_text()}")
            time.sleep(0.2)
        return process

    s.publish([result(e, b, seq, votes) for b, seq, votes in REPORTS])
    s.publish([result(embargoed.election, "42218-0001", 1, {"A": 5})])
    s.wait_until(
        lambda: (n := s.standings(e, "nation", "FR")) is not None and n.bureaux_reported == 3, 60, "e"
    )
    s.wait_until(lambda: s.standings(embargoed.election, "nation", "FR") is not None, 60, "embargoed")
    base = f"http://127.0.0.1:{port}"
    server = start()
    try:

        async def before_restart() -> tuple[str, list[tuple[int, int, bytes]]]:
            async with ClientSession(timeout=ClientTimeout(total=60)) as http:
                records = await topic_records(s.settings)
                replay = await http.get(f"{base}/api/elections/{e}/events", params={"from": "beginning"})
                events = await sse_events(
                    replay, len([r for r in records if orjson.loads(r[2])["election"] == e])
                )
                replay.close()

                # the embargo: anonymous 403 with the time, an operator sees everything, a bad token 401
                where = f"{base}/api/elections/{embargoed.election}"
                listed = await (await http.get(f"{base}/api/elections/{embargoed.election}")).json()
                assert datetime.fromisoformat(listed["publish_after"]) == embargoed.publish_after
                for path in ("/results/nation/FR", "/results/department", "/events"):
                    refused = await http.get(where + path)
                    assert refused.status == 403, path
                    body = await refused.json()
                    assert body["error"] == "embargoed" and "results are published at" in body["detail"]
                    assert datetime.fromisoformat(body["embargoed_until"]) == embargoed.publish_after
                    assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
                    ok = await http.get(
                        where + "/results/nation/FR", headers={"Authorization": f"Bearer {token}"}
                    )
                    assert ok.status == 200 and (await ok.json())["voters"] == 5
                ok = await http.get(where + "/results/nation/FR", params={"token": token})
                assert ok.status == 200
                stream = await http.get(where + "/events", params={"token": token})
                assert stream.status == 200 and (await sse_events(stream, 1))[0]["event"] == "snapshot"
                stream.close()
                wrong = await http.get(where + "/results/nation/FR", params={"token": token + "x"})
                assert wrong.status == 401 and (await wrong.json())["error"] == "unauthorized"
                # the other election has no embargo
                assert (await http.get(f"{base}/api/elections/{e}/results/nation/FR")).status == 200
                return events[1]["id"], records

        resume_from, _ = asyncio.run(before_restart())
        server.terminate()
        assert server.wait(timeout=30) == 0 or server.returncode == -15
        s.publish([result(e, "42001-0001", 1, {"B": 20}), result(e, "42218-0001", 2, {"A": 41, "B": 10})])
        s.wait_until(lambda: s.standings(e, "nation", "FR").bureaux_reported == 4, 60, "after")  # type: ignore[union-attr]
        time.sleep(2)
        server = start()

        async def after_restart() -> None:
            records = [r for r in await topic_records(s.settings) if orjson.loads(r[2])["election"] == e]
            expected = after(records, parse_id(resume_from))
            async with ClientSession(timeout=ClientTimeout(total=60)) as http:
                response = await http.get(
                    f"{base}/api/elections/{e}/events", headers={"Last-Event-ID": resume_from}
                )
                got = await sse_events(response, sum(expected.values()))
                assert Counter(ev["data"].encode() for ev in got) == expected
                await no_more_events(response)
                response.close()

        asyncio.run(after_restart())
    finally:
        server.terminate()
        server.wait(timeout=30)
    output = log.read_text()
    assert "GET /api/elections" in output  # the access log is there…
    assert token not in output and token[:12] not in output  # …without the token
    refused = subprocess.run(
        [sys.executable, "-m", "stream.cli", "serve", "--port", str(port)],
        env={**env, "SOIREE_REDIS_URL": "redis://127.0.0.1:1/0"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert refused.returncode == 1 and "Redis is not reachable" in refused.stderr


def test_operator_add_stores_only_a_hash(tmp_path: Path) -> None:
    path = tmp_path / "operators.toml"
    env = {**os.environ, "SOIREE_OPERATORS_FILE": str(path)}
    made = subprocess.run(
        [sys.executable, "-m", "stream.cli", "operator", "add", "newsroom"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    token = made.stdout.strip()
    assert len(token) >= 40 and token not in path.read_text()
    import hashlib
    import tomllib

    stored = tomllib.loads(path.read_text())["operators"]["newsroom"]
    assert stored["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert path.stat().st_mode & 0o077 == 0
    again = subprocess.run(
        [sys.executable, "-m", "stream.cli", "operator", "add", "newsroom"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    replaced = subprocess.run(
        [sys.executable, "-m", "stream.cli", "operator", "add", "newsroom", "--replace"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    assert replaced.stdout.strip() != token
