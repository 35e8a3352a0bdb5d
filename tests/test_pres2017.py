"""The real 2017 presidential round 1, all 69,242 bureaux, through the running pipeline.

The nation and all 107 departments must equal the official tables to the vote. The official
figures are read here with plain ``csv`` from ``official/``, independently of the code under test.
"""

from __future__ import annotations

import csv
import uuid
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


def official_departments(data_dir: Path, round_: int) -> dict[str, dict[str, int]]:
    with (data_dir / f"official/off_T{round_}_definitif_departement.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    skip = {"Code du département", "Libellé du département", "abstentions"}
    return {row["Code du département"]: {k: int(v) for k, v in row.items() if k not in skip} for row in rows}


def official_nation(data_dir: Path, round_: int) -> dict[str, int]:
    with (data_dir / "official/france_entiere_conseil_constitutionnel.csv").open(encoding="utf-8") as handle:
        return {
            row["item"]: int(row["value"]) for row in csv.DictReader(handle) if row["tour"] == str(round_)
        }


def assert_equal_to_official(got: Standings | None, official: dict[str, int], where: str) -> None:
    assert got is not None, f"no standings for {where}"
    for french, field in FIELDS.items():
        assert getattr(got, field) == official[french], (
            f"{where}: {field} {getattr(got, field)} != {official[french]}"
        )
    candidates = {k: v for k, v in official.items() if k not in FIELDS}
    assert got.votes == candidates, f"{where}: votes differ"


def test_round1_replay_equals_official_tables(stack: Any, data_dir: Path) -> None:
    s: Stack = stack("pres2017")
    path = data_dir / ROUND_FILES[1]
    election = election_from_ministry(path, f"pres2017-t1-{uuid.uuid4().hex[:6]}")
    e = election.election
    s.register(election)
    s.start_worker()
    s.publish(results_from_ministry(path, e))

    def nation_complete() -> bool:
        nation = s.standings(e, "nation", "FR")
        return nation is not None and nation.bureaux_reported == 69_242

    s.wait_until(nation_complete, 900, "all 69,242 bureaux in the nation's total")
    assert_equal_to_official(s.standings(e, "nation", "FR"), official_nation(data_dir, 1), "nation")
    departments = official_departments(data_dir, 1)
    assert len(departments) == 107
    for code, official in departments.items():
        assert_equal_to_official(s.standings(e, "department", code), official, f"department {code}")
    loire = s.standings(e, "department", "42")
    assert loire is not None and (loire.bureaux_reported, loire.bureaux_total) == (671, 671)
    assert s.read_topic(s.settings.rejected_topic, idle=1.0) == []
