"""The worker's compact roll (``ElectionIndex``) must say exactly what the validated ``Election`` says."""

from __future__ import annotations

import random
import tracemalloc

import orjson

from stream.domain.messages import NATION, BureauResult, Election, InvalidResult, check_against_election
from stream.domain.roll import ElectionIndex


def _election(size: int, seed: int = 7) -> Election:
    rng = random.Random(seed)
    bureaux = []
    for i in range(size):
        department = f"{i % 13:02d}"
        commune = f"{department}{i // 40:03d}"
        bureaux.append(
            {
                "bureau": f"{commune}-{i:05d}",
                "commune": commune,
                # some communes and departments without names: the ids stand in for them
                "commune_name": "" if i // 40 % 7 == 0 else f"Commune {commune}",
                "department": department,
                "department_name": "" if department == "05" else f"Département {department}",
                "registered": rng.randint(0, 1500),
            }
        )
    rng.shuffle(bureaux)
    return Election.model_validate(
        {
            "election": "t",
            "name": "Test",
            "candidates": [{"id": c, "name": c} for c in "ABC"],
            "bureaux": bureaux,
        }
    )


def test_index_agrees_with_the_validated_election() -> None:
    election = _election(2_000)
    raw = election.model_dump_json().encode()
    index = ElectionIndex.from_json(raw)
    assert index.election == election.election and index.name == election.name
    assert index.candidate_list == election.candidate_list and index.candidate_ids == election.candidate_ids
    assert index.roll_by_commune == election.roll_by_commune
    assert index.communes_of_department == election.communes_of_department
    assert len(index.roll) == len(election.roll)
    for bureau, entry in election.roll.items():
        placement = index.roll[bureau]
        assert (placement.commune, placement.department, placement.registered) == (
            entry.commune,
            entry.department,
            entry.registered,
        )
    for key, expected in election.areas.items():
        assert index.areas[key] == expected, key
    assert index.areas[("nation", NATION)][:2] == ("France", 2_000)
    assert index.areas[("nation", NATION)][2] == sum(entry.registered for entry in election.bureaux)
    assert orjson.loads(index.definition_json()) == orjson.loads(raw)


def test_roll_checks_read_the_index_like_the_election() -> None:
    election = _election(200)
    index = ElectionIndex.from_json(election.model_dump_json().encode())
    entry = election.bureaux[0]
    cases = [
        {"bureau": entry.bureau, "voters": 0, "blank": 0, "invalid": 0, "votes": {}},
        {"bureau": entry.bureau, "voters": 0, "blank": 0, "invalid": 0, "votes": {"Z": 0}},
        {"bureau": "nowhere", "voters": 0, "blank": 0, "invalid": 0, "votes": {}},
        {
            "bureau": entry.bureau,
            "registered": entry.registered + 1,
            "voters": 0,
            "blank": 0,
            "invalid": 0,
            "votes": {},
        },
        {
            "bureau": entry.bureau,
            "voters": entry.registered + 1,
            "blank": entry.registered + 1,
            "invalid": 0,
            "votes": {},
        },
    ]
    for case in cases:
        result = BureauResult.model_validate({"election": "t", "seq": 1, **case})
        outcomes = []
        for known in (election, index):
            try:
                check_against_election(result, known)
                outcomes.append(None)
            except InvalidResult as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1], case


def test_index_is_a_fraction_of_the_validated_election() -> None:
    raw = _election(20_000).model_dump_json().encode()

    def allocated(build):  # noqa: ANN001, ANN202
        tracemalloc.start()
        kept = build()
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del kept
        return size

    full = allocated(lambda: Election.model_validate_json(raw))
    compact = allocated(lambda: ElectionIndex.from_json(raw))
    assert compact * 3 < full, (compact, full)
