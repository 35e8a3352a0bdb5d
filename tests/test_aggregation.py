"""Exact, idempotent totals (``stream.aggregation``): arithmetic, versions, round trips.

Expected totals are computed independently in the tests (plain sums over the winning
contribution of each child), never by calling the code under test.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.domain.aggregation import AreaState, Tally, area_key, split_area_key
from stream.domain.messages import BureauResult

CANDIDATES = ["MACRON", "LE PEN", "HAMON"]


def fields(tally: Tally) -> tuple[int, int, int, int, int, dict[str, int]]:
    """A tally's numbers, votes without zero entries (a candidate at 0 and an absent one are equal)."""
    votes = {candidate: count for candidate, count in tally.votes.items() if count != 0}
    return (tally.bureaux, tally.registered, tally.voters, tally.blank, tally.invalid, votes)


def via_json(data: Any) -> Any:
    return orjson.loads(orjson.dumps(data))


# -- Tally ------------------------------------------------------------------------------------


def test_of_result_takes_registered_from_the_roll() -> None:
    result = BureauResult.model_validate(
        {
            "election": "e",
            "bureau": "42218-0001",
            "seq": 3,
            "voters": 640,
            "blank": 9,
            "invalid": 4,
            "votes": {"MACRON": 170, "LE PEN": 150, "HAMON": 307},
        }
    )
    tally = Tally.of_result(result, 812)
    assert fields(tally) == (1, 812, 640, 9, 4, {"MACRON": 170, "LE PEN": 150, "HAMON": 307})
    assert tally.expressed == 627
    tally.votes["MACRON"] = 0
    assert result.votes["MACRON"] == 170  # the tally owns its votes


def test_add_and_subtract() -> None:
    a = Tally(1, 812, 640, 9, 4, {"MACRON": 170, "LE PEN": 150, "HAMON": 307})
    b = Tally(1, 700, 500, 10, 5, {"MACRON": 100, "FILLON": 385})
    total = Tally()
    total.add(a)
    total.add(b)
    assert fields(total) == (
        2,
        1512,
        1140,
        19,
        9,
        {"MACRON": 270, "LE PEN": 150, "HAMON": 307, "FILLON": 385},
    )
    assert total.expressed == 270 + 150 + 307 + 385
    total.add(a, -1)
    assert fields(total) == (1, 700, 500, 10, 5, {"MACRON": 100, "FILLON": 385})
    total.add(b, -1)
    assert fields(total) == (0, 0, 0, 0, 0, {})
    # the operands are untouched
    assert fields(a) == (1, 812, 640, 9, 4, {"MACRON": 170, "LE PEN": 150, "HAMON": 307})
    assert fields(b) == (1, 700, 500, 10, 5, {"MACRON": 100, "FILLON": 385})


tallies = st.builds(
    Tally,
    st.integers(0, 10),
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.integers(0, 10**5),
    st.integers(0, 10**5),
    st.dictionaries(st.sampled_from(CANDIDATES + ["Benoît Hamon", "a b"]), st.integers(0, 10**7), max_size=4),
)


@settings(max_examples=50, deadline=None)
@given(tallies)
def test_tally_json_round_trip(tally: Tally) -> None:
    back = Tally.from_json(via_json(tally.to_json()))
    assert back == tally
    back.votes["NEW"] = 1
    assert "NEW" not in tally.votes


@settings(max_examples=50, deadline=None)
@given(tallies, tallies)
def test_add_matches_field_by_field_sums(a: Tally, b: Tally) -> None:
    total = Tally.from_json(a.to_json())
    total.add(b)
    votes = {c: a.votes.get(c, 0) + b.votes.get(c, 0) for c in set(a.votes) | set(b.votes)}
    assert fields(total) == (
        a.bureaux + b.bureaux,
        a.registered + b.registered,
        a.voters + b.voters,
        a.blank + b.blank,
        a.invalid + b.invalid,
        {c: v for c, v in votes.items() if v},
    )
    total.add(b, -1)
    assert fields(total) == fields(a)


# -- AreaState.apply ------------------------------------------------------------------------------


def bureau(registered: int, voters: int, blank: int, invalid: int, **votes: int) -> Tally:
    return Tally(1, registered, voters, blank, invalid, dict(votes))


def test_apply_new_duplicate_stale_and_correction() -> None:
    state = AreaState()
    first = bureau(812, 640, 9, 4, MACRON=170, HAMON=457)
    assert state.apply("42218-0001", 1, first) is True
    assert state.apply("42218-0002", 1, bureau(700, 500, 0, 0, MACRON=200, HAMON=300)) is True
    assert fields(state.total) == (2, 1512, 1140, 9, 4, {"MACRON": 370, "HAMON": 757})

    # the same report again, and an equal version with other content: nothing changes
    assert state.apply("42218-0001", 1, first) is False
    assert state.apply("42218-0001", 1, bureau(812, 800, 0, 0, MACRON=800)) is False
    assert fields(state.total) == (2, 1512, 1140, 9, 4, {"MACRON": 370, "HAMON": 757})

    # a correction replaces the bureau's contribution
    assert state.apply("42218-0001", 3, bureau(812, 641, 9, 4, MACRON=171, HAMON=457)) is True
    assert fields(state.total) == (2, 1512, 1141, 9, 4, {"MACRON": 371, "HAMON": 757})

    # an older report arriving late changes nothing
    assert state.apply("42218-0001", 2, bureau(812, 10, 0, 0, MACRON=10)) is False
    assert fields(state.total) == (2, 1512, 1141, 9, 4, {"MACRON": 371, "HAMON": 757})
    assert set(state.children) == {"42218-0001", "42218-0002"}
    assert state.children["42218-0001"][0] == 3


def test_correction_to_zero() -> None:
    state = AreaState()
    state.apply("b1", 1, bureau(812, 640, 9, 4, MACRON=170, HAMON=457))
    state.apply("b2", 1, bureau(700, 500, 0, 0, MACRON=200, HAMON=300))
    # b1 was entered by mistake: corrected to an empty count (still a reported bureau)
    assert state.apply("b1", 2, bureau(812, 0, 0, 0)) is True
    assert fields(state.total) == (2, 1512, 500, 0, 0, {"MACRON": 200, "HAMON": 300})
    # and b2 too: every count is zero, nothing negative
    assert state.apply("b2", 5, bureau(700, 0, 0, 0, MACRON=0, HAMON=0)) is True
    assert fields(state.total) == (2, 1512, 0, 0, 0, {})
    assert all(count == 0 for count in state.total.votes.values())
    # a correction back up
    assert state.apply("b2", 6, bureau(700, 1, 1, 0)) is True
    assert fields(state.total) == (2, 1512, 1, 1, 0, {})


def test_a_candidate_dropped_by_a_correction_leaves_the_total() -> None:
    state = AreaState()
    state.apply("b1", 1, bureau(100, 10, 0, 0, FILLON=10))
    state.apply("b1", 2, bureau(100, 10, 0, 0, MACRON=10))
    assert fields(state.total) == (1, 100, 10, 0, 0, {"MACRON": 10})


def test_apply_keeps_a_private_total() -> None:
    """The state's total is never one of the contributions (mutating it must not corrupt a child)."""
    state = AreaState()
    tally = bureau(100, 10, 1, 1, MACRON=8)
    state.apply("b1", 1, tally)
    assert state.total is not tally
    state.apply("b2", 1, bureau(100, 20, 0, 0, MACRON=20))
    assert fields(tally) == (1, 100, 10, 1, 1, {"MACRON": 8})


CHILDREN = ["42218-0001", "42218-0002", "42001-0001", "2A004-0001"]


def content_of(seed: int, child: str, version: int) -> Tally:
    """The tally a (child, version) carries: a function of them (the same version always carries
    the same content, as the system guarantees), varied by ``seed``."""
    rng = random.Random(f"{seed}|{child}|{version}")
    votes = {c: rng.randrange(0, 1000) for c in CANDIDATES if rng.random() < 0.8}
    blank, invalid = rng.randrange(0, 50), rng.randrange(0, 50)
    voters = blank + invalid + sum(votes.values())
    return Tally(1, voters + rng.randrange(0, 500), voters, blank, invalid, votes)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[tuple[str, int]], dict[tuple[str, int], Tally]]:
    """A delivery order of (child, version) with duplicates, gaps and disorder, and the tally
    of each (child, version)."""
    keys = draw(st.lists(st.tuples(st.sampled_from(CHILDREN), st.integers(1, 6)), min_size=1, max_size=30))
    seed = draw(st.integers(0, 2**32))
    return keys, {key: content_of(seed, *key) for key in set(keys)}


def expected_total(keys: list[tuple[str, int]], content: dict[tuple[str, int], Tally]) -> tuple[Any, ...]:
    """The sum, over children, of the tally with the highest version (computed by hand)."""
    best: dict[str, int] = {}
    for child, version in keys:
        best[child] = max(best.get(child, 0), version)
    winners = [content[(child, version)] for child, version in best.items()]
    votes: dict[str, int] = {}
    for tally in winners:
        for candidate, count in tally.votes.items():
            votes[candidate] = votes.get(candidate, 0) + count
    return (
        len(best),
        sum(t.registered for t in winners),
        sum(t.voters for t in winners),
        sum(t.blank for t in winners),
        sum(t.invalid for t in winners),
        {c: v for c, v in votes.items() if v},
    )


def copy(tally: Tally) -> Tally:
    return Tally(tally.bureaux, tally.registered, tally.voters, tally.blank, tally.invalid, dict(tally.votes))


@settings(max_examples=80, deadline=None)
@given(deliveries(), st.randoms(use_true_random=False), st.lists(st.booleans(), min_size=30, max_size=30))
def test_apply_is_idempotent_and_order_free(
    case: tuple[list[tuple[str, int]], dict[tuple[str, int], Tally]],
    rng: random.Random,
    restarts: list[bool],
) -> None:
    keys, content = case
    expected = expected_total(keys, content)

    # in the drawn order; the state is sometimes restored from its JSON (a worker restart)
    state = AreaState()
    seen: dict[str, int] = {}
    for index, (child, version) in enumerate(keys):
        changed = state.apply(child, version, copy(content[(child, version)]))
        assert changed is (version > seen.get(child, 0))
        seen[child] = max(seen.get(child, 0), version)
        if restarts[index]:
            state = AreaState.from_json(via_json(state.to_json()))
    assert fields(state.total) == expected
    assert state.total.bureaux == len({child for child, _ in keys})
    assert {child: version for child, (version, _) in state.children.items()} == seen

    # any other order, with every message re-delivered once more at a random point
    shuffled = keys + keys
    rng.shuffle(shuffled)
    other = AreaState()
    for child, version in shuffled:
        other.apply(child, version, copy(content[(child, version)]))
    assert fields(other.total) == expected

    # re-delivering everything after the fact changes nothing
    for child, version in keys:
        assert other.apply(child, version, copy(content[(child, version)])) is False
    assert fields(other.total) == expected


def test_area_state_json_round_trip() -> None:
    state = AreaState(version=41)
    state.apply("42218-0001", 2, bureau(812, 640, 9, 4, MACRON=170, **{"LE PEN": 457}))
    state.apply("42218-0002", 7, bureau(700, 0, 0, 0))
    state.announced = {"leader": "MACRON", "tied": None, "turnout": 42.3, "complete": False}
    data = via_json(state.to_json())
    back = AreaState.from_json(data)
    assert back == state
    assert back.version == 41
    assert back.children["42218-0001"] == (2, Tally(1, 812, 640, 9, 4, {"MACRON": 170, "LE PEN": 457}))
    # and it keeps working after the round trip: duplicate ignored, correction applied
    assert back.apply("42218-0002", 7, bureau(700, 700, 700, 0)) is False
    assert back.apply("42218-0002", 8, bureau(700, 10, 10, 0)) is True
    assert fields(back.total) == (2, 1512, 650, 19, 4, {"MACRON": 170, "LE PEN": 457})


def test_area_state_from_json_without_announcements() -> None:
    back = AreaState.from_json({"v": 3, "t": [0, 0, 0, 0, 0, {}], "c": {}})
    assert back == AreaState(version=3)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CHILDREN), st.integers(1, 5), tallies), max_size=8))
def test_area_state_round_trip_property(contributions: list[tuple[str, int, Tally]]) -> None:
    state = AreaState(version=len(contributions))
    for child, version, tally in contributions:
        state.apply(child, version, tally)
    assert AreaState.from_json(via_json(state.to_json())) == state


def test_area_keys() -> None:
    key = area_key("pres2017-t1", "commune", "42218")
    assert key == "pres2017-t1|commune|42218"
    assert split_area_key(key) == ("pres2017-t1", "commune", "42218")
    assert split_area_key(area_key("e", "bureau", "Saint-Étienne 0001")) == (
        "e",
        "bureau",
        "Saint-Étienne 0001",
    )
