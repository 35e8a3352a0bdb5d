"""Reports over HTTP from authenticated sources, and signed reports, against the real broker,
Redis and a worker: every refusal with its status and reason, none of a refused request counted,
the totals exact (sums of the accepted reports, computed here), the audit topic, and no token in
any answer, log line, audit record or metric.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream.auth.registry import add_source
from stream.auth.signatures import load_private_key, sign, write_key_pair
from stream.domain.messages import Election
from stream.http import ingest as http_ingest

from .harness import ROOT, Stack
from .test_pipeline import mini_election, result
from .test_serve import served


def sums(reports: list[dict[str, Any]]) -> dict[str, int]:
    votes: dict[str, int] = {"A": 0, "B": 0, "C": 0}
    for report in reports:
        for candidate, count in report["votes"].items():
            votes[candidate] += count
    return votes


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def slow_upload(port: int, path: str, token: str) -> bytes:
    """Headers announcing 1,000 bytes, then 10 of them, then nothing: a slow-loris upload."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{"a": 1,'.encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    return answer


def test_http_ingest_refuses_what_it_must_and_counts_exactly_the_rest(
    stack: Any, tmp_path: Path, caplog: Any, monkeypatch: Any
) -> None:
    sources_file = tmp_path / "sources.toml"
    s: Stack = stack("httpingest", sources_file=sources_file, ingest_rate=5.0, ingest_burst=8)
    election = mini_election()
    e = election.election
    s.register(election)
    loire = add_source(sources_file, "loire", "department:42", election=e)
    paris = add_source(sources_file, "paris", "department:75")
    elsewhere = add_source(sources_file, "elsewhere", "nation:FR", election="another-election")
    tokens = [loire, paris, elsewhere]
    s.start_worker()
    monkeypatch.setattr(http_ingest, "BODY_TIMEOUT", 1.0)
    caplog.set_level(logging.INFO)
    url = f"/api/elections/{e}/reports"
    accepted: list[dict[str, Any]] = []
    statuses: list[tuple[str, int]] = []

    async def run() -> None:
        async with served(s.settings) as client:

            async def post(what: str, token: str | None, body: Any, raw: bytes | None = None) -> Any:
                data = raw if raw is not None else orjson.dumps(body)
                response = await client.post(url, data=data, headers=auth(token) if token else {})
                statuses.append((what, response.status))
                answer = await response.json()
                for secret in tokens:
                    assert secret.split(":")[1] not in orjson.dumps(answer).decode()
                return response.status, answer

            good = [
                result(e, "42218-0001", 1, {"A": 40, "B": 10}),
                result(e, "42218-0002", 1, {"A": 5, "B": 30}),
            ]
            assert (await post("no token", None, good))[0] == 401
            assert (await post("forged", "loire:" + "x" * 43, good))[0] == 401
            assert (await post("a made-up source", "nobody:" + "x" * 43, good))[0] == 401
            status, answer = await post("another election's source", elsewhere, good)
            assert status == 403 and answer["detail"] == f"source elsewhere may not report election {e}"
            status, answer = await post(
                "one outside the scope", loire, [*good, result(e, "75056-0001", 1, {"C": 70})]
            )
            assert status == 403 and answer["reports"] == [
                {"index": 2, "reason": f"bureau 75056-0001 of {e} is not in the scope of source loire"}
            ]
            status, answer = await post(
                "another election in the body", loire, [{**good[0], "election": "other"}]
            )
            assert status == 403 and "election 'other' is not in the scope" in answer["reports"][0]["reason"]
            bad = {**result(e, "42001-0001", 1, {"A": 2}), "voters": 3}
            status, answer = await post("one invalid", loire, [*good, bad])
            assert status == 422 and answer["reports"] == [
                {"index": 2, "reason": "bureau 42001-0001: blank + invalid + votes = 2, voters = 3"}
            ]
            status, _ = await post("too large", loire, None, raw=b"[" + b" " * (10 * 2**20) + b"]")
            assert status == 413
            status, answer = await post("too many", loire, [good[0]] * 10_001)
            assert status == 413 and "at most 10,000" in answer["detail"]
            slow = await slow_upload(client.server.port or 0, url, loire)
            assert slow.startswith(b"HTTP/1.1 408"), slow[:200]

            status, answer = await post("valid", loire, good)
            assert (status, answer["accepted"]) == (202, 2)
            accepted.extend(good)
            jsonl = b"\n".join(orjson.dumps(r) for r in [result(e, "75056-0001", 1, {"C": 70})])
            status, answer = await post("JSON Lines", paris, None, raw=jsonl + b"\n")
            assert (status, answer["accepted"]) == (202, 1)
            accepted.append(result(e, "75056-0001", 1, {"C": 70}))
            assert (await post("replayed", loire, good))[0] == 202  # counted once: same seq, same counts
            conflict = result(e, "42218-0001", 1, {"A": 41, "B": 9})
            assert (await post("a conflict", loire, [conflict]))[0] == 202  # the worker refuses it

            limited = [await post("rate", paris, [accepted[2]]) for _ in range(12)]
            refused = [answer for status, answer in limited if status == 429]
            assert refused and all(a["error"] == "rate_limited" for a in refused)

            # guessing the token of a source: 40 forged tokens in a row, each a new secret; the
            # source's bucket (burst 8, 5 per second) bounds the scrypt checks a guesser can cost
            began = time.monotonic()
            guesses = [
                (await post("guess", f"loire:{secrets.token_urlsafe(32)}", good))[0] for _ in range(40)
            ]
            refills = 5 * (time.monotonic() - began)
            assert set(guesses) == {401, 429} and guesses.count(401) <= 8 + refills + 1
            # ... and they do not lock the real source out: its own token has its own bucket
            assert (await post("the real one, after the guesses", loire, good))[0] == 202
            response = await client.post(url, data=b"[]", headers={"Authorization": "Bearer loire:\xff\xfe"})
            assert response.status == 401  # not a token of ours (not printable ASCII), not a 500
            statuses.append(("not ASCII", 401))

            metrics = await (await client.get("/metrics")).text()
            assert all(secret.split(":")[1] not in metrics for secret in tokens)

    asyncio.run(run())

    s.wait_until(
        lambda: (n := s.standings(e, "nation", "FR")) is not None and n.bureaux_reported == 3,
        60,
        "the accepted",
    )
    rejected = s.read_topic(s.settings.rejected_topic)
    assert [(r["source"], r["reason"].split(": ")[1]) for _, r in rejected] == [("loire", "conflict")]
    nation = s.standings(e, "nation", "FR")
    assert nation is not None and nation.votes == sums(accepted)

    audit = s.read_topic(s.settings.audit_topic)
    refusals = [status for what, status in statuses if status not in (202,)]
    assert sorted(r["status"] for _, r in audit) == sorted(refusals + [408])
    text = orjson.dumps([r for _, r in audit]).decode() + caplog.text
    assert all(secret.split(":")[1] not in text for secret in tokens)
    assert {r["source"] for _, r in audit if r["status"] == 403} == {"elsewhere", "loire"}


def test_signed_reports_from_http_the_cli_and_straight_to_the_topic(stack: Any, tmp_path: Path) -> None:
    sources_file = tmp_path / "sources.toml"
    s: Stack = stack("signed", sources_file=sources_file)
    base = mini_election()
    election = Election.model_validate({**base.model_dump(), "require_signature": True})
    e = election.election
    s.register(election)
    loire_key, loire_pub = write_key_pair(tmp_path / "loire")
    paris_key, paris_pub = write_key_pair(tmp_path / "paris")
    loire = add_source(sources_file, "loire", "department:42", public_key=loire_pub)
    add_source(sources_file, "paris", "department:75", public_key=paris_pub)
    key = load_private_key(loire_key)
    s.start_worker()

    def signed(report: dict[str, Any], source: str = "loire", signer: Any = key) -> dict[str, Any]:
        report = {**report, "source": source}
        report["signature"] = sign(report, signer)
        return report

    first = result(e, "42218-0001", 1, {"A": 40, "B": 10})

    async def run() -> None:
        async with served(s.settings) as client:
            url = f"/api/elections/{e}/reports"
            response = await client.post(url, data=orjson.dumps([first]), headers=auth(loire))
            answer = await response.json()
            assert response.status == 422 and "unsigned" in answer["reports"][0]["reason"]
            forged = signed(first, signer=load_private_key(paris_key))
            response = await client.post(url, data=orjson.dumps([forged]), headers=auth(loire))
            answer = await response.json()
            assert response.status == 422 and "bad signature" in answer["reports"][0]["reason"]
            unnamed = signed({k: v for k, v in first.items() if k != "election"})
            response = await client.post(url, data=orjson.dumps([unnamed]), headers=auth(loire))
            answer = await response.json()
            assert (
                response.status == 422
                and "a signed report carries its election" in answer["reports"][0]["reason"]
            )
            response = await client.post(url, data=orjson.dumps([signed(first)]), headers=auth(loire))
            assert response.status == 202
        producer = AIOKafkaProducer(bootstrap_servers=s.settings.kafka_bootstrap)
        await producer.start()
        try:  # a producer with write access to the topic, forging results
            for report in (
                result(e, "42218-0002", 1, {"A": 1, "B": 99}),  # unsigned
                {**signed(result(e, "42001-0001", 1, {"A": 50})), "votes": {"B": 50}},  # altered
                signed(result(e, "75056-0001", 1, {"C": 70})),  # the Loire's key, Paris's bureau
            ):
                await producer.send_and_wait(
                    s.settings.results_topic, orjson.dumps(report), key=report["bureau"].encode()
                )
        finally:
            await producer.stop()

    asyncio.run(run())
    lines = tmp_path / "second.jsonl"
    lines.write_bytes(orjson.dumps(result(e, "42218-0002", 1, {"A": 5, "B": 30})) + b"\n")
    env = s.env()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "ingest",
            str(lines),
            "--election",
            e,
            "--sign-with",
            str(loire_key),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    unsigned = subprocess.run(
        [sys.executable, "-m", "stream.cli", "ingest", str(lines), "--election", e],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert unsigned.returncode == 1 and "requires signed reports" in unsigned.stderr

    s.wait_until(
        lambda: (n := s.standings(e, "nation", "FR")) is not None and n.bureaux_reported == 2,
        60,
        "the signed",
    )
    nation = s.standings(e, "nation", "FR")
    assert nation is not None and nation.votes == {"A": 45, "B": 40, "C": 0}
    s.wait_until(
        lambda: len(s.read_topic(s.settings.rejected_topic, idle=0.5)) >= 3, 30, "three dead letters"
    )
    rejected = [r for _, r in s.read_topic(s.settings.rejected_topic)]
    kinds = sorted(r["reason"].split(": ")[1] for r in rejected)
    assert kinds == ["bad signature", "out of scope", "unsigned"]

    letters = tmp_path / "rejected.jsonl"
    letters.write_bytes(b"\n".join(orjson.dumps(r) for r in rejected) + b"\n")
    checked = subprocess.run(
        [sys.executable, "-m", "stream.cli", "verify", str(letters)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert checked.returncode == 1
    assert "1 signed correctly, 2 not" in checked.stdout  # the out-of-scope one is well signed
    assert "unsigned (42218-0002)" in checked.stdout and "bad signature" in checked.stdout
