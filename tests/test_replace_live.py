"""Registering an election again once results exist, through the CLI and a real worker: refused
when the roll changes, unless ``--replace``; then the election is counted again under the new
revision, and a bureau moved to another commune, circonscription, department and region counts
in its new areas only, at every level.

Expected figures are independent sums of the reports over the roll the test writes.
"""

from __future__ import annotations

import uuid
from typing import Any

from stream.adapters.redis.elections import load_election
from stream.domain.messages import Election

from .harness import Stack
from .test_cli import soiree

#: bureau, commune, department, circonscription, registered
ROLL = [
    ("42218-0001", "42218", "42", "42-01", 1000),
    ("42218-0002", "42218", "42", "42-02", 800),
    ("42001-0001", "42001", "42", "42-01", 500),
    ("75056-0001", "75056", "75", "75-01", 900),
]
#: where 42218-0002 goes in the second revision
MOVED = ("42218-0002", "75056", "75", "75-02", 800)
VOTES = {
    "42218-0001": (600, 200),
    "42218-0002": (100, 500),
    "42001-0001": (250, 150),
    "75056-0001": (300, 350),
}


def definition(election: str, roll: list[tuple[str, str, str, str, int]]) -> Election:
    return Election.model_validate(
        {
            "election": election,
            "name": "Replace",
            "candidates": [{"id": "A", "name": "a"}, {"id": "B", "name": "b"}],
            "bureaux": [
                dict(bureau=b, commune=c, department=d, circonscription=circ, registered=r)
                for b, c, d, circ, r in roll
            ],
        }
    )


def expected(roll: list[tuple[str, str, str, str, int]]) -> dict[tuple[str, str], dict[str, Any]]:
    regions = {"42": "84", "75": "11"}
    areas: dict[tuple[str, str], dict[str, Any]] = {}
    for bureau, commune, department, circ, registered in roll:
        a, b = VOTES[bureau]
        for key in (
            ("commune", commune),
            ("circonscription", circ),
            ("department", department),
            ("region", regions[department]),
            ("nation", "FR"),
        ):
            area = areas.setdefault(key, {"votes": {"A": 0, "B": 0}, "registered": 0, "bureaux": 0})
            area["votes"]["A"] += a
            area["votes"]["B"] += b
            area["registered"] += registered
            area["bureaux"] += 1
    return areas


def test_a_changed_roll_is_refused_once_counted_and_replace_counts_again(stack: Any) -> None:
    s: Stack = stack("replace")
    e = f"replace-{uuid.uuid4().hex[:6]}"
    first = definition(e, ROLL)
    created = soiree(s, "election", "create", "-", stdin=first.model_dump_json())
    assert created.returncode == 0, created.stderr
    s.elections.append(e)
    s.start_worker()
    s.publish(
        {
            "election": e,
            "bureau": b,
            "seq": 1,
            "voters": a + v,
            "blank": 0,
            "invalid": 0,
            "votes": {"A": a, "B": v},
        }
        for b, (a, v) in VOTES.items()
    )
    s.wait_until(
        lambda: (n := s.standings(e, "nation", "FR")) is not None and n.bureaux_reported == 4,
        60,
        "the first count",
    )

    roll = [MOVED if entry[0] == MOVED[0] else entry for entry in ROLL]
    second = definition(e, roll)
    refused = soiree(s, "election", "create", "-", stdin=second.model_dump_json())
    assert refused.returncode == 1
    assert f"election {e} already has results, and this definition changes its bureaux" in refused.stderr
    assert "--replace" in refused.stderr
    same = soiree(s, "election", "create", "-", stdin=first.model_dump_json())  # the same roll: fine
    assert same.returncode == 0, same.stderr

    replaced = soiree(s, "election", "create", "-", "--replace", stdin=second.model_dump_json(), timeout=120)
    assert replaced.returncode == 0, replaced.stderr
    assert "revision 2" in replaced.stdout and "4 reports published again" in replaced.stdout
    stored = load_election(s.redis, e)
    assert stored is not None and stored.revision == 2

    truth = expected(roll)

    def recounted() -> bool:
        for (level, area), want in truth.items():
            got = s.standings(e, level, area)
            if got is None or got.votes != want["votes"] or got.bureaux_reported != want["bureaux"]:
                return False
        return True

    s.wait_until(recounted, 90, "every level recounted under the new roll")
    for (level, area), want in truth.items():
        got = s.standings(e, level, area)
        assert got is not None
        assert (got.registered, got.bureaux_total) == (want["registered"], want["bureaux"]), (level, area)
    # the bureau's old circonscription had no other bureau: no standings of the old roll remain
    assert s.standings(e, "circonscription", "42-02") is None
    bureau = s.standings(e, "bureau", MOVED[0])
    assert bureau is not None and bureau.votes == {"A": 100, "B": 500}

    # Redis loses the definition (the durable topic still has revision 2): the roll of revision 1
    # again is still a change, refused without --replace, and never registered as revision 1
    s.redis.delete(f"soiree:election:{e}", f"soiree:revision:{e}")
    again = soiree(s, "election", "create", "-", stdin=first.model_dump_json(), timeout=120)
    assert again.returncode == 1 and "already has results" in again.stderr
    # a recount that did not finish (its mark is still there) is taken up by the next create
    s.redis.set(f"soiree:recount:{e}", 2)
    resumed = soiree(s, "election", "create", "-", stdin=second.model_dump_json(), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "revision 2" in resumed.stdout and "4 reports published again" in resumed.stdout
    assert s.redis.get(f"soiree:recount:{e}") is None
    s.wait_until(recounted, 90, "every level recounted again")


def test_names_and_the_order_of_the_roll_change_nothing_counted() -> None:
    from stream.cli.registration import plan_registration

    first = definition("e", ROLL)
    renamed = Election.model_validate(
        {
            **first.model_dump(),
            "name": "Renamed",
            "candidates": [{"id": "A", "name": "Alice"}, {"id": "B", "name": "b"}],
            "bureaux": [{**b.model_dump(), "commune_name": "X"} for b in reversed(first.bureaux)],
        }
    )
    plan = plan_registration(
        first.model_copy(update={"revision": 2}), renamed, has_results=True, replace=False
    )
    assert (plan.definition.revision, plan.recount) == (2, False)
    moved = definition("e", [MOVED if entry[0] == MOVED[0] else entry for entry in ROLL])
    plan = plan_registration(first, moved, has_results=False, replace=False)
    assert (plan.definition.revision, plan.recount) == (2, False)  # a new revision, nothing to recount
