"""The real 2017 presidential rounds, all 69,242 bureaux each, through the running pipeline.

Round 1, then round 2 compared to it (``compare_to``). At every level the official tables have
(the nation, 107 departments, 577 circonscriptions, 18 regions) both rounds must equal them to
the vote. Round 2's ``reference`` and ``change`` must equal sums of the two bureau files computed
here. The official figures and the bureau sums are read with plain ``csv``, independently of
the code under test.
"""

from __future__ import annotations

import csv
import gzip
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from stream.domain.messages import Standings
from stream.sources.ministry import election_from_ministry, results_from_ministry

from .harness import ROUND_FILES, Stack

FIELDS = {
    "inscrits": "registered",
    "votants": "voters",
    "blancs": "blank",
    "nuls": "invalid",
    "exprimes": "expressed",
}
BUREAUX = 69_242
#: When the polls closed (every report is stamped with it): standings' as_of, in UTC
CLOSING = {
    1: datetime(2017, 4, 23, 20, 0, tzinfo=timezone(timedelta(hours=2))),
    2: datetime(2017, 5, 7, 20, 0, tzinfo=timezone(timedelta(hours=2))),
}


def _official_table(path: Path, key_columns: tuple[str, ...]) -> dict[str, dict[str, int]]:
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    figures = [c for c in rows[0] if not c.startswith(("Code ", "Libellé ")) and c != "abstentions"]
    return {"-".join(row[c] for c in key_columns): {c: int(row[c]) for c in figures} for row in rows}


def official_departments(data_dir: Path, round_: int) -> dict[str, dict[str, int]]:
    path = data_dir / f"official/off_T{round_}_definitif_departement.csv"
    return _official_table(path, ("Code du département",))


def official_circonscriptions(data_dir: Path, round_: int) -> dict[str, dict[str, int]]:
    path = data_dir / f"official/off_T{round_}_definitif_circonscription.csv"
    return _official_table(path, ("Code du département", "Code de la circonscription"))


def official_regions(data_dir: Path, round_: int) -> dict[str, dict[str, int]]:
    path = data_dir / f"official/off_T{round_}_definitif_region.csv"
    return _official_table(path, ("Code de la région",))


def official_nation(data_dir: Path, round_: int) -> dict[str, int]:
    with (data_dir / "official/france_entiere_conseil_constitutionnel.csv").open(encoding="utf-8") as handle:
        return {
            row["item"]: int(row["value"]) for row in csv.DictReader(handle) if row["tour"] == str(round_)
        }


def bureau_figures(path: Path) -> dict[str, dict[str, Any]]:
    """Per bureau id: its department and its figures, straight from the ministry file."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        candidates = reader.fieldnames[reader.fieldnames.index("exprimes") + 1 :]  # type: ignore[union-attr]
        bureaux = {}
        for row in reader:
            bureaux[f"{row['departement']}{row['commune']}-{row['bureau']}"] = {
                "department": row["departement"],
                "registered": int(row["inscrits"]),
                "voters": int(row["votants"]),
                "votes": {c: int(row[c]) for c in candidates},
            }
    return bureaux


def assert_equal_to_official(got: Standings | None, official: dict[str, int], where: str) -> None:
    assert got is not None, f"no standings for {where}"
    for french, field in FIELDS.items():
        assert getattr(got, field) == official[french], (
            f"{where}: {field} {getattr(got, field)} != {official[french]}"
        )
    candidates = {k: v for k, v in official.items() if k not in FIELDS}
    assert got.votes == candidates, f"{where}: votes differ"


def replay_round(s: Stack, data_dir: Path, round_: int, compare_to: str | None = None) -> str:
    path = data_dir / ROUND_FILES[round_]
    election = election_from_ministry(path, f"pres2017-t{round_}-{uuid.uuid4().hex[:6]}")
    election = election.model_copy(update={"compare_to": compare_to, "round": round_})
    e = election.election
    s.register(election)
    s.publish(results_from_ministry(path, e, reported_at=CLOSING[round_]))

    def nation_complete() -> bool:
        nation = s.standings(e, "nation", "FR")
        return nation is not None and nation.bureaux_reported == BUREAUX

    s.wait_until(nation_complete, 900, f"all {BUREAUX:,} bureaux of round {round_} in the nation's total")
    return e


def check_every_official_level(s: Stack, e: str, data_dir: Path, round_: int) -> None:
    assert_equal_to_official(s.standings(e, "nation", "FR"), official_nation(data_dir, round_), "nation")
    tables = {
        "department": official_departments(data_dir, round_),
        "circonscription": official_circonscriptions(data_dir, round_),
        "region": official_regions(data_dir, round_),
    }
    assert [len(table) for table in tables.values()] == [107, 577, 18]
    for level, table in tables.items():
        for code, official in table.items():
            assert_equal_to_official(s.standings(e, level, code), official, f"round {round_} {level} {code}")
    loire = s.standings(e, "department", "42")
    assert loire is not None and (loire.bureaux_reported, loire.bureaux_total) == (671, 671)
    assert loire.decided and loire.version > 0
    assert loire.as_of == CLOSING[round_] and loire.as_of.utcoffset() == timedelta(0)  # 18:00Z


def _rounded_share(count: int, expressed: int) -> float:
    return round(100.0 * count / expressed, 2)


def check_comparison(s: Stack, e2: str, e1: str, data_dir: Path) -> None:
    """Round 2's reference and change, for the nation and every department, against sums over
    the bureaux present in both files."""
    first, second = bureau_figures(data_dir / ROUND_FILES[1]), bureau_figures(data_dir / ROUND_FILES[2])
    both = [bureau for bureau in second if bureau in first]
    assert len(both) > 69_000
    sums: dict[str, dict[int, dict[str, Any]]] = defaultdict(
        lambda: {r: {"registered": 0, "voters": 0, "votes": defaultdict(int), "bureaux": 0} for r in (1, 2)}
    )
    for bureau in both:
        for round_, files in ((1, first), (2, second)):
            figures = files[bureau]
            for area in ("FR", figures["department"]):
                total = sums[area][round_]
                total["registered"] += figures["registered"]
                total["voters"] += figures["voters"]
                total["bureaux"] += 1
                for candidate, votes in figures["votes"].items():
                    total["votes"][candidate] += votes
    for area, by_round in sums.items():
        level = "nation" if area == "FR" else "department"
        got = s.standings(e2, level, area)
        assert got is not None and got.reference is not None and got.change is not None, area
        before, now = by_round[1], by_round[2]
        reference = got.reference
        assert reference.election == e1
        assert (reference.registered, reference.voters, reference.bureaux) == (
            before["registered"],
            before["voters"],
            before["bureaux"],
        ), area
        assert reference.votes == dict(before["votes"]), area
        assert got.change.voters_pct == round(
            100.0 * (now["voters"] - before["voters"]) / before["voters"], 2
        )
        turnout_points = (
            100.0 * now["voters"] / now["registered"] - 100.0 * before["voters"] / before["registered"]
        )
        assert got.change.turnout_points is not None
        assert abs(got.change.turnout_points - turnout_points) <= 0.011, area
        expressed_before = sum(before["votes"].values())
        expressed_now = sum(now["votes"].values())
        assert set(got.change.shares_points) == {"LE PEN", "MACRON"}, area  # the two in both rounds
        for candidate, points in got.change.shares_points.items():
            expected = _rounded_share(now["votes"][candidate], expressed_now) - _rounded_share(
                before["votes"][candidate], expressed_before
            )
            assert abs(points - expected) <= 1e-6, (area, candidate, points, expected)


def test_both_rounds_equal_the_official_tables_and_round_2_compares_with_round_1(
    stack: Any, data_dir: Path
) -> None:
    s: Stack = stack("pres2017")
    s.start_worker()
    e1 = replay_round(s, data_dir, 1)
    e2 = replay_round(s, data_dir, 2, compare_to=e1)
    check_every_official_level(s, e1, data_dir, 1)
    check_every_official_level(s, e2, data_dir, 2)
    check_comparison(s, e2, e1, data_dir)
    nation = s.standings(e2, "nation", "FR")
    assert nation is not None and nation.leader == "MACRON" and nation.decided
    assert s.read_topic(s.settings.rejected_topic, idle=1.0) == []
