"""Sources, scopes and signatures without services: the sources file and its token hashes, the
canonical bytes a signature covers, and the workers' check of signed reports through the
engine's own steps (``tests.test_levels.Night``)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.auth.registry import SourceExists, Sources, add_source, read_sources
from stream.auth.signatures import (
    canonical,
    load_private_key,
    sign,
    signature_matches,
    write_key_pair,
)
from stream.auth.tokens import hash_token, token_matches
from stream.domain.scopes import ScopeEntry, covers, parse_scope
from tests.harness import ROOT
from tests.test_levels import ROLL, Night, definition


def test_a_token_is_kept_only_as_an_scrypt_hash_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    token = add_source(path, "prefecture-42", "department:42", election="e")
    text = path.read_text()
    secret = token.split(":", 1)[1]
    assert token.startswith("prefecture-42:") and secret not in text and token not in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    (source,) = read_sources(path).values()
    assert source.token_hash.startswith("scrypt$16384$8$1$")
    assert source.scope == (ScopeEntry("department", "42"),) and source.election == "e"
    sources = Sources(path)
    assert sources.authenticate(token) is not None
    assert sources.authenticate(token + "x") is None
    assert sources.authenticate("prefecture-42:" + "A" * 43) is None  # forged
    assert sources.authenticate(secret) is None  # no source named
    with pytest.raises(SourceExists):
        add_source(path, "prefecture-42", "department:42")
    renewed = add_source(path, "prefecture-42", "department:42", replace=True)
    assert Sources(path).authenticate(token) is None and Sources(path).authenticate(renewed) is not None


def test_token_hashes_differ_for_the_same_token_and_check_in_constant_form() -> None:
    first, second = hash_token("s:abc"), hash_token("s:abc")
    assert first != second  # salted
    assert token_matches("s:abc", first) and token_matches("s:abc", second)
    assert not token_matches("s:abd", first) and not token_matches("s:abc", "md5$whatever")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("departement:42", "scope 'departement:42': expected LEVEL:AREA"),
        ("42", "scope '42': expected LEVEL:AREA"),
        ("", "an empty scope"),
        ("commune:", "scope 'commune:'"),
    ],
)
def test_a_bad_scope_is_refused_with_its_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_scope(text)


def test_what_a_scope_covers() -> None:
    place = dict(commune="42218", department="42", circonscription="42-01", region="84")
    assert covers(parse_scope("department:42"), bureau="42218-0001", **place)
    assert covers(parse_scope("region:84"), bureau="42218-0001", **place)
    assert covers(parse_scope("circonscription:42-01"), bureau="42218-0001", **place)
    assert covers(parse_scope("bureau:42218-0001"), bureau="42218-0001", **place)
    assert covers(parse_scope("nation:FR"), bureau="42218-0001", **place)
    assert not covers(parse_scope("department:69,bureau:42218-0002"), bureau="42218-0001", **place)
    # a whole commune's report: not covered by one of its circonscriptions or bureaux
    assert not covers(parse_scope("circonscription:42-01"), bureau=None, **place)
    assert covers(parse_scope("commune:42218"), bureau=None, **place)


REPORTS = [
    {
        "election": "e",
        "bureau": "42218-0001",
        "seq": 1,
        "voters": 5,
        "blank": 0,
        "invalid": 0,
        "votes": {"B": 2, "A": 3},
    },
    {
        "election": "présidentielle",
        "bureau": "2A004-0001",
        "seq": 2,
        "reported_at": "2017-04-23T20:14:00+02:00",
        "voters": 1,
        "blank": 1,
        "invalid": 0,
        "votes": {"LE PEN": 0, "MÉLENCHON": 0},
        "source": 'préfecture "2A"',
    },
]


@pytest.mark.parametrize("report", REPORTS)
def test_the_signed_bytes_are_the_documented_canonical_json(report: dict[str, Any]) -> None:
    expected = json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical(report) == expected
    assert canonical({**report, "signature": "whatever"}) == expected


def test_a_signature_verifies_with_its_key_only_and_not_after_a_change(tmp_path: Path) -> None:
    private, public = write_key_pair(tmp_path / "one")
    other, _ = write_key_pair(tmp_path / "two")
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    key = load_private_key(private)
    report = {**REPORTS[0], "source": "s"}
    report["signature"] = sign(report, key)
    assert len(base64.b64decode(report["signature"])) == 64
    assert signature_matches(report, key.public_key())
    assert not signature_matches(report, load_private_key(other).public_key())
    assert not signature_matches({**report, "votes": {"A": 4, "B": 1}}, key.public_key())
    assert not signature_matches({**report, "signature": "not base64!"}, key.public_key())
    assert not signature_matches({k: v for k, v in report.items() if k != "signature"}, key.public_key())


# -- the workers' check, in-process -----------------------------------------------------------------
def signed_night(tmp_path: Path) -> tuple[Night, Any, Any]:
    """An election requiring signatures; source 'loire' (department 42) and 'paris' (75) with keys."""
    path = tmp_path / "sources.toml"
    keys = {}
    for name, scope in (("loire", "department:42"), ("paris", "department:75")):
        private, public = write_key_pair(tmp_path / name)
        add_source(path, name, scope, public_key=public)
        keys[name] = load_private_key(private)
    night = Night(definition("e", require_signature=True))
    night.pipeline.router.sources = Sources(path)
    return night, keys["loire"], keys["paris"]


def report(bureau: str, a: int, **extra: Any) -> dict[str, Any]:
    return {
        "election": "e",
        "bureau": bureau,
        "seq": 1,
        "voters": a,
        "blank": 0,
        "invalid": 0,
        "votes": {"A": a},
        **extra,
    }


def signed(data: dict[str, Any], source: str, key: Any) -> dict[str, Any]:
    data = {**data, "source": source}
    data["signature"] = sign(data, key)
    return data


def test_workers_count_only_reports_signed_by_a_source_whose_scope_holds_them(tmp_path: Path) -> None:
    night, loire, paris = signed_night(tmp_path)
    forged = signed(report("42218-0002", 9), "loire", loire)
    forged["votes"] = {"A": 8, "B": 1}  # altered after signing
    night.run(
        "bureau-results",
        signed(report("42218-0001", 10), "loire", loire),  # counted
        report("42001-0001", 20),  # unsigned
        forged,
        signed(report("75056-0001", 30), "loire", loire),  # Paris is not the Loire's
        signed(report("ZZ001-0001", 40), "paris", loire),  # paris's name, the Loire's key... and scope
        signed(report("ZZ001-0001", 40), "nobody", loire),
    )
    reasons = sorted(r["reason"] for r in night.rejected)
    assert reasons == [
        "bureau 42001-0001: unsigned: the election requires reports signed by their source "
        "(source and signature)",
        "bureau 42218-0002: bad signature: not signed by source loire's key (or altered after signing)",
        "bureau 75056-0001: out of scope: bureau 75056-0001 of e is not in the scope of source loire",
        "bureau ZZ001-0001: out of scope: bureau ZZ001-0001 of e is not in the scope of source paris",
        "bureau ZZ001-0001: unknown source 'nobody'",
    ]
    nation = night.standings("e", "nation", "FR")
    assert nation.votes == {"A": 10, "B": 0} and nation.bureaux_reported == 1
    night.run("bureau-results", signed(report("75056-0001", 30), "paris", paris))
    assert night.standings("e", "nation", "FR").votes == {"A": 40, "B": 0}


def test_an_election_without_signatures_ignores_them() -> None:
    night = Night(definition("e"))
    night.run("bureau-results", report("42218-0001", 10, source="whoever", signature="nonsense"))
    assert night.rejected == [] and night.standings("e", "nation", "FR").votes == {"A": 10, "B": 0}
    assert len(ROLL) == 5


def test_source_add_prints_the_token_once_and_help_never_shows_one(tmp_path: Path) -> None:
    env = {**os.environ, "SOIREE_SOURCES_FILE": str(tmp_path / "sources.toml"), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "stream.cli", "source", "add", "mairie-42218", "--scope", "commune:42218"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("mairie-42218:") and len(token) > 40
    assert token not in (tmp_path / "sources.toml").read_text() and token not in done.stderr
    for args in (["source", "add", "--help"], ["--help"], ["ingest", "--help"], ["serve", "--help"]):
        shown = subprocess.run(
            [sys.executable, "-m", "stream.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
        assert token.split(":")[1] not in shown.stdout + shown.stderr
    again = subprocess.run(
        [sys.executable, "-m", "stream.cli", "source", "add", "mairie-42218", "--scope", "commune:42218"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    assert orjson.dumps(again.stdout) and token not in again.stdout + again.stderr


@pytest.mark.parametrize(
    "text",
    [
        "[sources.a]\nscope = [75]\n",
        '[sources.a]\nscope = ["department:42"]\npublic_key = 5\n',
        'sources = "x"\n',
        "not toml [",
    ],
)
def test_a_broken_sources_file_keeps_the_last_good_sources_and_crashes_nothing(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "sources.toml"
    token = add_source(path, "loire", "department:42")
    sources = Sources(path)
    assert sources.authenticate(token) is not None
    path.write_text(text)
    os.utime(path, ns=(1, 1))  # another mtime and size: read again
    assert sources.get("loire") is not None and sources.authenticate(token) is not None


@pytest.mark.parametrize(
    ("source_id", "scope", "message"),
    [("a|b", "department:42", "source id 'a|b': not an id"), ("a", "department:4\x7f2", "is not an id")],
)
def test_source_add_refuses_what_the_contract_does_not_allow(
    tmp_path: Path, source_id: str, scope: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        add_source(tmp_path / "sources.toml", source_id, scope)
    assert not (tmp_path / "sources.toml").exists()
