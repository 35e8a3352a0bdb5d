"""Races, parties and seats, and report status, through the engine's own steps in-process
(``tests.test_levels.Night``): a small législatives night whose every figure is written out
by hand from the reports below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from stream.domain.messages import Election, UpdateEvent
from stream.testing import FixedElections
from tests.test_levels import ROLL, Night

#: race -> its candidates (id, party)
RACES = {
    "42-01": [("42-01-01", "REM"), ("42-01-02", "LR"), ("42-01-03", "FN")],
    "42-02": [("42-02-01", "REM"), ("42-02-02", "FN")],
    "75-01": [("75-01-01", "REM"), ("75-01-02", "LR")],
    "ZZ-01": [("ZZ-01-01", "REM"), ("ZZ-01-02", "SOC")],
}


def legislative(election: str = "leg", round: int = 1) -> dict[str, Any]:
    return {
        "election": election,
        "name": "Législatives",
        "round": round,
        "races": [
            {
                "race": race,
                "name": f"circonscription {race}",
                "area": {"level": "circonscription", "id": race},
                "seats": 1,
                "rules": "legislative",
                "candidates": [{"id": c, "name": c.lower(), "party": p} for c, p in candidates],
            }
            for race, candidates in RACES.items()
        ],
        "bureaux": [
            dict(bureau=b, commune=c, department=d, circonscription=circ, registered=r, race=circ)
            for b, c, d, circ, r in ROLL
        ],
    }


def report(bureau: str, seq: int, votes: dict[str, int], blank: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "election": "leg",
        "bureau": bureau,
        "seq": seq,
        "reported_at": "2017-06-11T20:30:00+02:00",
        "voters": sum(votes.values()) + blank,
        "blank": blank,
        "invalid": 0,
        "votes": votes,
        **extra,
    }


FIRST = report("42218-0001", 1, {"42-01-01": 400, "42-01-02": 100, "42-01-03": 90}, blank=10)
SECOND = report("42001-0001", 1, {"42-01-01": 150, "42-01-02": 100, "42-01-03": 50})
DUEL = report("42218-0002", 1, {"42-02-01": 180, "42-02-02": 170}, blank=50)
ABROAD = report("ZZ001-0001", 1, {"ZZ-01-01": 100, "ZZ-01-02": 50})


def kinds(night: Night, level: str, area: str) -> list[str]:
    return [e["kind"] for e in night.events if (e["level"], e["area"]) == (level, area)]


def test_a_race_shows_its_candidates_and_every_level_above_it_parties() -> None:
    night = Night(legislative())
    night.run("bureau-results", FIRST, SECOND, DUEL, ABROAD)
    circ = night.standings("leg", "circonscription", "42-01")
    assert circ.votes == {"42-01-01": 550, "42-01-02": 200, "42-01-03": 140}
    assert circ.race == "42-01"
    # the Loire: 42-01 and 42-02 by party
    loire = night.standings("leg", "department", "42")
    assert loire.votes == {"REM": 730, "LR": 200, "FN": 310, "SOC": 0}
    assert loire.shares["REM"] == round(100 * 730 / 1240, 2)
    assert loire.race is None and loire.leader == "REM"
    assert night.standings("leg", "region", "84").votes == loire.votes
    nation = night.standings("leg", "nation", "FR")
    assert nation.votes == {"REM": 830, "LR": 200, "FN": 310, "SOC": 50}
    assert nation.expressed == 1390 and nation.bureaux_reported == 4
    # Saint-Étienne is split between 42-01 and 42-02: parties; 42001 lies in 42-01: its candidates
    assert night.standings("leg", "commune", "42218").votes == {"REM": 580, "LR": 100, "FN": 260, "SOC": 0}
    assert night.standings("leg", "commune", "42001").votes == {
        "42-01-01": 150,
        "42-01-02": 100,
        "42-01-03": 50,
    }
    assert night.standings("leg", "bureau", "42218-0002").votes == {"42-02-01": 180, "42-02-02": 170}
    for event in night.events:
        UpdateEvent.model_validate(event)


def test_legislative_round_one_elects_or_sends_to_the_second_round_and_counts_seats() -> None:
    night = Night(legislative())
    night.run("bureau-results", FIRST)
    # 400 of 590 expressed and of 1,500 registered (>= 375): elected on the counts so far, but
    # the 500 registered still out could take the majority away (400 <= (590 + 500) / 2)
    circ = night.standings("leg", "circonscription", "42-01")
    assert not circ.decided and circ.elected == [] and circ.qualified == []
    seats = night.standings("leg", "nation", "FR").seats
    assert seats is not None and seats["REM"].won == 1 and seats["REM"].decided == 0
    night.run("bureau-results", SECOND, DUEL, ABROAD)
    circ = night.standings("leg", "circonscription", "42-01")
    assert circ.decided and circ.elected == ["42-01-01"] and circ.qualified == []
    assert kinds(night, "circonscription", "42-01").count("elected") == 1
    # 42-02: 180 > 350 / 2 but under 25 % of 800 registered: both above 12.5 % go through
    duel = night.standings("leg", "circonscription", "42-02")
    assert duel.decided and duel.elected == [] and duel.qualified == ["42-02-01", "42-02-02"]
    assert "qualified" in kinds(night, "circonscription", "42-02")
    assert "elected" not in kinds(night, "circonscription", "42-02")
    nation = night.standings("leg", "nation", "FR")
    assert nation.seats is not None
    assert {p: (s.won, s.decided) for p, s in nation.seats.items()} == {"REM": (2, 2)}
    loire = night.standings("leg", "department", "42").seats
    assert loire is not None and {p: (s.won, s.decided) for p, s in loire.items()} == {"REM": (1, 1)}


def test_a_correction_that_reopens_a_race_says_undecided_then_the_new_outcome() -> None:
    night = Night(legislative())
    night.run("bureau-results", FIRST, SECOND)
    assert night.standings("leg", "circonscription", "42-01").elected == ["42-01-01"]
    # now 410 of 890 expressed: no majority; 410 and 340 reach 12.5 % of 1,500 (187.5), 140 does not
    night.run("bureau-results", report("42001-0001", 2, {"42-01-01": 10, "42-01-02": 240, "42-01-03": 50}))
    circ = night.standings("leg", "circonscription", "42-01")
    assert circ.decided and circ.elected == [] and circ.qualified == ["42-01-01", "42-01-02"]
    assert kinds(night, "circonscription", "42-01")[-3:] == ["elected", "undecided", "qualified"]
    nation = night.standings("leg", "nation", "FR")
    assert not nation.seats  # no seat won anywhere now


def test_a_second_round_is_plurality() -> None:
    night = Night(legislative(round=2))
    night.run("bureau-results", DUEL)
    duel = night.standings("leg", "circonscription", "42-02")
    assert duel.decided and duel.elected == ["42-02-01"]  # 180 to 170, nothing left to count


def test_a_report_naming_another_race_candidate_is_rejected() -> None:
    night = Night(legislative())
    night.run("bureau-results", report("42218-0001", 1, {"42-01-01": 10, "42-02-01": 5}))
    assert len(night.rejected) == 1
    assert "unknown candidate of race 42-01 42-02-01" in night.rejected[0]["reason"]


def test_definitive_and_annulled_reports_are_counted_by_status() -> None:
    night = Night(legislative())
    night.run("bureau-results", FIRST, DUEL, ABROAD)
    night.run("bureau-results", {**DUEL, "seq": 2, "status": "definitive"})
    night.run("bureau-results", report("ZZ001-0001", 2, {}, status="annulled"))
    nation = night.standings("leg", "nation", "FR")
    # ZZ's 150 votes are gone everywhere; its bureau is annulled, not unreported
    assert nation.votes == {"REM": 580, "LR": 100, "FN": 260, "SOC": 0}
    assert nation.bureaux_reported == 2
    assert nation.bureaux_by_status == {"provisional": 1, "definitive": 1, "annulled": 1}
    abroad = night.standings("leg", "bureau", "ZZ001-0001")
    assert abroad.bureaux_by_status == {"provisional": 0, "definitive": 0, "annulled": 1}
    assert abroad.bureaux_reported == 0 and abroad.voters == 0
    assert night.standings("leg", "circonscription", "ZZ-01").votes == {"ZZ-01-01": 0, "ZZ-01-02": 0}
    assert "undecided" in kinds(night, "circonscription", "ZZ-01")  # its REM seat is gone
    assert night.standings("leg", "commune", "42218").bureaux_by_status == {
        "provisional": 1,
        "definitive": 1,
        "annulled": 0,
    }


def test_same_seq_other_counts_is_a_conflict_with_both_versions() -> None:
    night = Night(legislative())
    night.run("bureau-results", DUEL)
    night.run("bureau-results", {**DUEL, "reported_at": "2017-06-11T21:00:00+02:00"})  # a repeat
    spelled_out = report("ZZ001-0001", 1, {"ZZ-01-01": 100, "ZZ-01-02": 0})
    night.run("bureau-results", spelled_out, {**spelled_out, "votes": {"ZZ-01-01": 100}})  # 0 = left out
    assert night.rejected == []
    other = report("42218-0002", 1, {"42-02-01": 181, "42-02-02": 169}, blank=50)
    night.run("bureau-results", other)
    assert len(night.rejected) == 1
    rejection = night.rejected[0]
    assert rejection["reason"].startswith("bureau 42218-0002: conflict: seq 1 was already applied")
    assert orjson.loads(rejection["payload"])["votes"] == other["votes"]
    assert orjson.loads(rejection["applied"])["votes"] == DUEL["votes"]
    assert night.standings("leg", "circonscription", "42-02").votes == DUEL["votes"]


def test_a_definitive_report_with_the_same_seq_is_a_conflict_too() -> None:
    night = Night(legislative())
    night.run("bureau-results", DUEL)
    night.run("bureau-results", {**DUEL, "status": "definitive"})
    assert [r["reason"].split(": ")[1] for r in night.rejected] == ["conflict"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["bureaux"][0].update(race="42-02"), "is in race 42-02 but not in its area"),
        (lambda d: d["bureaux"][0].pop("race"), "names no race"),
        (lambda d: d["bureaux"][0].update(race="99-01"), "names unknown race '99-01'"),
        (lambda d: d.update(candidates=[{"id": "X", "name": "x"}]), "top-level candidates must be empty"),
        (lambda d: d["races"][0]["candidates"][0].pop("party"), "candidate 42-01-01 has no party"),
        (lambda d: d["races"].append(dict(d["races"][0])), "race '42-01' appears twice"),
        (lambda d: d["races"][0].update(seats=2), "legislative rules elect one seat, not 2"),
        (
            lambda d: d["races"][0]["candidates"][0].update(id="42-02-01"),
            "candidate '42-02-01' appears twice",
        ),
        (lambda d: d["races"][0]["candidates"][0].update(party="42-02-01"), "both a party and a candidate"),
        (lambda d: d["races"].append({**d["races"][0], "race": "x"}), "cover the same circonscription 42-01"),
    ],
)
def test_a_bad_definition_with_races_is_refused_with_its_reason(change: Any, message: str) -> None:
    definition = legislative()
    change(definition)
    with pytest.raises(ValidationError, match=message):
        Election.model_validate(definition)


def test_a_race_over_part_of_its_area_is_refused() -> None:
    definition = legislative()
    # a commune race for Saint-Étienne while its bureaux vote in 42-01 and 42-02
    definition["races"].append(
        {
            "race": "m",
            "name": "m",
            "area": {"level": "commune", "id": "42218"},
            "rules": "plurality",
            "candidates": [{"id": "m1", "name": "m", "party": "DIV"}],
        }
    )
    with pytest.raises(ValidationError, match="the area of race m, but names race 42-01"):
        Election.model_validate(definition)


def races_at(level: str, areas: dict[str, list[str]]) -> dict[str, Any]:
    """One plurality race per area of ``level`` (areas -> their bureaux), candidates X (party P)
    and Y (party Q) in each."""
    roll = {b: (c, d, circ, r) for b, c, d, circ, r in ROLL}
    return {
        "election": "mun",
        "name": "Municipales",
        "races": [
            {
                "race": area,
                "name": area,
                "area": {"level": level, "id": area},
                "rules": "plurality",
                "candidates": [
                    {"id": f"{area}-X", "name": "x", "party": "P"},
                    {"id": f"{area}-Y", "name": "y", "party": "Q"},
                ],
            }
            for area in areas
        ],
        "bureaux": [
            dict(
                bureau=b,
                commune=roll[b][0],
                department=roll[b][1],
                circonscription=roll[b][2],
                registered=roll[b][3],
                race=area,
            )
            for area, bureaux in areas.items()
            for b in bureaux
        ],
    }


def plurality(bureau: str, race: str, x: int, y: int, seq: int = 1) -> dict[str, Any]:
    return {**report(bureau, seq, {f"{race}-X": x, f"{race}-Y": y}), "election": "mun"}


def test_races_of_communes_and_their_seats_in_every_department_and_the_nation() -> None:
    communes = {
        "42218": ["42218-0001", "42218-0002"],
        "42001": ["42001-0001"],
        "75056": ["75056-0001"],
        "ZZ001": ["ZZ001-0001"],
    }
    night = Night(races_at("commune", communes))
    night.run("bureau-results", plurality("42218-0001", "42218", 300, 200))
    # 100 ahead with 800 registered still out in Saint-Étienne: P leads but it is not settled
    seats = night.standings("mun", "department", "42").seats
    assert seats is not None and {p: (s.won, s.decided) for p, s in seats.items()} == {"P": (1, 0)}
    night.run(
        "bureau-results",
        plurality("42218-0002", "42218", 100, 150),
        plurality("42001-0001", "42001", 10, 400),
        plurality("75056-0001", "75056", 500, 100),
    )
    assert night.standings("mun", "commune", "42218").elected == ["42218-X"]  # 400 to 350, all counted
    loire = night.standings("mun", "department", "42").seats
    assert loire is not None and {p: (s.won, s.decided) for p, s in loire.items()} == {
        "P": (1, 1),
        "Q": (1, 1),
    }
    nation = night.standings("mun", "nation", "FR")
    assert nation.seats is not None
    assert {p: (s.won, s.decided) for p, s in nation.seats.items()} == {"P": (2, 2), "Q": (1, 1)}
    assert nation.votes == {"P": 910, "Q": 850}


def test_a_race_over_a_whole_department_counts_its_seat_in_the_same_chunk() -> None:
    departments = {
        "42": ["42218-0001", "42218-0002", "42001-0001"],
        "75": ["75056-0001"],
        "ZZ": ["ZZ001-0001"],
    }
    night = Night(races_at("department", departments))
    night.run(
        "bureau-results",
        plurality("42218-0001", "42", 300, 200),
        plurality("42218-0002", "42", 100, 150),
        plurality("42001-0001", "42", 10, 400),
    )
    loire = night.standings("mun", "department", "42")
    assert loire.race == "42" and loire.elected == ["42-Y"] and loire.votes == {"42-X": 410, "42-Y": 750}
    nation = night.standings("mun", "nation", "FR")
    assert nation.seats is not None and {p: (s.won, s.decided) for p, s in nation.seats.items()} == {
        "Q": (1, 1)
    }


def test_the_legislatives_example_of_config_elects_and_qualifies_as_worked_out_by_hand() -> None:
    """config/elections/legislatives-example.json and its results: in 42-01, 300 of 502 expressed
    and of 1,000 registered (>= 250) elect 42-01-01; in 42-02, 382 of 752 is a majority but under
    400 (25 % of 1,600): both, over 200 (12.5 %), go to the second round."""
    root = Path(__file__).resolve().parents[1] / "config"
    definition = orjson.loads((root / "elections/legislatives-example.json").read_bytes())
    night = Night(definition)
    lines = (root / "results/legislatives-example.jsonl").read_bytes().splitlines()
    night.run("bureau-results", *(orjson.loads(line) for line in lines))
    e = definition["election"]
    first = night.standings(e, "circonscription", "42-01")
    assert first.votes == {"42-01-01": 300, "42-01-02": 130, "42-01-03": 72} and first.elected == ["42-01-01"]
    second = night.standings(e, "circonscription", "42-02")
    assert second.votes == {"42-02-01": 382, "42-02-02": 370}
    assert (second.elected, second.qualified) == ([], ["42-02-01", "42-02-02"])
    nation = night.standings(e, "nation", "FR")
    assert nation.votes == {"REM": 682, "LR": 130, "FN": 72, "FI": 370}
    assert nation.seats is not None and {p: (s.won, s.decided) for p, s in nation.seats.items()} == {
        "REM": (1, 1)
    }
    assert nation.bureaux_by_status == {"provisional": 3, "definitive": 1, "annulled": 0}
    assert night.rejected == []


def test_soiree_results_says_who_is_elected_who_goes_through_and_the_seats() -> None:
    from rich.console import Console

    from stream.cli.views import standings_table

    night = Night(legislative())
    night.run("bureau-results", FIRST, SECOND, DUEL)
    night.run("bureau-results", {**DUEL, "seq": 2, "status": "definitive"})

    def shown(level: str, area: str) -> str:
        console = Console(width=200, record=True)
        console.print(standings_table(night.standings("leg", level, area)))
        return console.export_text()

    assert "elected: 42-01-01" in shown("circonscription", "42-01")
    duel = shown("circonscription", "42-02")
    assert "second round: 42-02-01, 42-02-02" in duel and "definitive 1 · annulled 0 bureaux" in duel
    nation = shown("nation", "FR")
    assert "seats: REM 1 (1 decided)" in nation and "party" in nation.splitlines()[2]


def test_a_second_round_compared_with_the_first_counts_the_first_s_candidates_by_their_party() -> None:
    """Round 1's FN candidate of 42-01 is not in round 2: in the comparison by party, their votes
    still count for FN (the reference's own candidate -> party map), not under their id."""
    second = legislative("leg2", round=2)
    second["compare_to"] = "leg"
    for race in second["races"]:
        race["candidates"] = race["candidates"][:2]
    night = Night(legislative(), second)
    night.run("bureau-results", FIRST, SECOND, DUEL)
    duel = {**report("42218-0001", 1, {"42-01-01": 300, "42-01-02": 200}, blank=90), "election": "leg2"}
    night.run("bureau-results", duel)
    nation = night.standings("leg2", "nation", "FR")
    assert nation.reference is not None and nation.change is not None
    assert nation.reference.votes == {"REM": 400, "LR": 100, "FN": 90}  # 42218-0001 in round 1
    assert nation.change.shares_points == {
        "REM": round(60.0 - 100 * 400 / 590, 2),
        "LR": round(40.0 - 100 * 100 / 590, 2),
    }


def test_a_contribution_routed_under_a_replaced_revision_goes_back_to_routing_once() -> None:
    from stream.domain.roll import ElectionIndex
    from tests.test_levels import definition as single
    from tests.test_levels import result as single_result

    night = Night(single("e"))
    older = ElectionIndex.from_json(orjson.dumps(single("e")))
    newer = ElectionIndex.from_json(orjson.dumps({**single("e"), "revision": 2}))
    night.pipeline.router.elections = FixedElections(older)  # type: ignore[assignment]
    night.pipeline.tallier.elections = FixedElections(newer)  # type: ignore[assignment]
    report_a = single_result("e", "42218-0001", 1, 10, 5)
    night.run("bureau-results", report_a)  # the router is still on revision 1
    sent_back = [orjson.loads(v) for _, _, v in night.producer.take("bureau-results")]
    assert [(r["bureau"], r["seq"], r["votes"]) for r in sent_back] == [("42218-0001", 1, {"A": 10, "B": 5})]
    assert night.rejected == [] and night.pipeline.standings.redis.data == {}  # type: ignore[attr-defined]
    night.run("bureau-results", report_a)  # met again: not sent round and round
    assert night.producer.take("bureau-results") == []
    assert [r["reason"].split(": ")[1] for r in night.rejected] == [
        "routed under a replaced definition of e (e, now revision 2)"
    ]


def test_seats_of_a_department_survive_states_forgotten_in_the_middle_of_a_chunk() -> None:
    """A rebalance clears the races' seats while a chunk waits; the department the chunk holds is
    not rebuilt, so its other races' seats must be counted again, not left out."""
    night = Night(legislative(round=2))
    night.run("bureau-results", DUEL)  # 42-02: 42-02-01 (REM) elected, 180 to 170
    night.one_chunk_forgetting_states_midway(FIRST, SECOND)
    loire = night.standings("leg", "department", "42").seats
    assert loire is not None and {p: (s.won, s.decided) for p, s in loire.items()} == {"REM": (2, 2)}
    nation = night.standings("leg", "nation", "FR").seats
    assert nation is not None and {p: (s.won, s.decided) for p, s in nation.items()} == {"REM": (2, 2)}
