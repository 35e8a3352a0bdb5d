"""What is worth announcing (``stream.changes``): leaders, standings, change events.

Standings and events are plain dicts on the hot path; here every one of them must validate as
``messages.Standings`` / ``messages.UpdateEvent``. Expected leaders, turnouts and event counts come
from independent arithmetic in the tests (integers where possible), not from the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.domain.aggregation import Tally
from stream.domain.changes import detect_changes, leader_of, make_standings, shares_of
from stream.domain.messages import Standings, UpdateEvent

CANDIDATES = ["HAMON", "VALLS"]
STEP = 0.1  # the default turnout step of PRODUCT.md, in percentage points
AT = datetime(2017, 1, 29, 20, 30, tzinfo=UTC)


def expected_leader(votes: dict[str, int]) -> tuple[str | None, list[str] | None, int]:
    """Written independently of ``leader_of``."""
    top = max(votes.values(), default=0)
    if top == 0:
        return None, None, 0
    first = sorted(candidate for candidate, count in votes.items() if count == top)
    if len(first) > 1:
        return None, first, 0
    others = [count for candidate, count in votes.items() if candidate != first[0]]
    return first[0], None, top - max(others, default=0)


# -- leader_of --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "votes, expected",
    [
        ({}, (None, None, 0)),
        ({"HAMON": 0, "VALLS": 0}, (None, None, 0)),
        ({"HAMON": 7}, ("HAMON", None, 7)),
        ({"HAMON": 11089, "VALLS": 7146}, ("HAMON", None, 3943)),
        ({"VALLS": 10, "HAMON": 3, "MONTEBOURG": 9}, ("VALLS", None, 1)),
        ({"VALLS": 5, "HAMON": 5}, (None, ["HAMON", "VALLS"], 0)),
        ({"C": 5, "B": 1, "A": 5, "D": 5}, (None, ["A", "C", "D"], 0)),
        ({"B": 4, "A": 1, "C": 1}, ("B", None, 3)),
        ({"A": 2, "B": 1, "C": 1, "D": 0}, ("A", None, 1)),
    ],
)
def test_leader_of(votes: dict[str, int], expected: tuple[Any, ...]) -> None:
    assert leader_of(votes) == expected


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["A", "B", "C", "D", "LE PEN"]), st.integers(0, 4)))
def test_leader_of_property(votes: dict[str, int]) -> None:
    assert leader_of(votes) == expected_leader(votes)


# -- make_standings --------------------------------------------------------------------------------


def standings_of(total: Tally, bureaux_total: int = 65, candidates: list[str] = CANDIDATES) -> dict[str, Any]:
    return make_standings("primaire-2017-t2", "department", "42", "Loire", bureaux_total, total, candidates)


def test_standings_of_the_loire() -> None:
    # the seed's figures: 18,501 voters, Hamon 11,089, Valls 7,146, so 266 blank or spoiled
    total = Tally(65, 29000, 18501, 200, 66, {"HAMON": 11089, "VALLS": 7146})
    standings = standings_of(total)
    Standings.model_validate(standings)
    Standings.model_validate_json(orjson.dumps(standings))
    assert standings["expressed"] == 18235 == 18501 - 266
    assert standings["votes"] == {"HAMON": 11089, "VALLS": 7146}
    assert standings["shares"] == {"HAMON": 60.81, "VALLS": 39.19}
    assert standings["turnout"] == 63.8  # 18501 / 29000 = 63.7966 %, to 2 decimals
    assert (standings["leader"], standings["tied"], standings["margin"]) == ("HAMON", None, 3943)
    assert (standings["bureaux_reported"], standings["bureaux_total"]) == (65, 65)
    assert (standings["registered"], standings["voters"], standings["blank"], standings["invalid"]) == (
        29000,
        18501,
        200,
        66,
    )
    assert (standings["election"], standings["level"], standings["area"], standings["name"]) == (
        "primaire-2017-t2",
        "department",
        "42",
        "Loire",
    )


def test_standings_before_any_result() -> None:
    standings = standings_of(Tally())
    Standings.model_validate(standings)
    assert standings["turnout"] is None
    assert standings["votes"] == {"HAMON": 0, "VALLS": 0}  # every candidate, even without votes
    assert standings["shares"] == {"HAMON": 0.0, "VALLS": 0.0}
    assert (standings["leader"], standings["tied"], standings["margin"], standings["expressed"]) == (
        None,
        None,
        0,
        0,
    )


def test_standings_on_a_tie() -> None:
    standings = standings_of(Tally(2, 100, 20, 0, 0, {"VALLS": 10, "HAMON": 10}))
    Standings.model_validate(standings)
    assert (standings["leader"], standings["tied"], standings["margin"]) == (None, ["HAMON", "VALLS"], 0)
    assert standings["shares"] == {"HAMON": 50.0, "VALLS": 50.0}


def test_shares_are_what_round_gives_including_ties() -> None:
    """``shares_of`` skips ``round`` away from ties: it must still give ``round``'s float, to the
    bit. Every count of every total up to 1,500 (exact ties such as 1/8 = 12.5 % or 1/40,000 =
    0.0025 % among them), and big totals at random."""
    import random

    rng = random.Random(2017)
    totals = [(expressed, range(expressed + 1)) for expressed in range(1, 1501)]
    totals += [
        (e, [rng.randint(0, e) for _ in range(100)]) for e in (rng.randint(1, 10**8) for _ in range(500))
    ]
    totals += [(40_000, [1, 3, 5]), (20_000, [1, 3]), (4_000, [107]), (8, [1, 3, 5, 7])]
    for expressed, counts in totals:
        votes = {f"C{n}": count for n, count in enumerate(counts)}
        assert shares_of(votes, expressed) == {
            c: round(100.0 * v / expressed, 2) for c, v in votes.items()
        }, expressed
    assert shares_of({"A": 0, "B": 0}, 0) == {"A": 0.0, "B": 0.0}


@settings(max_examples=60, deadline=None)
@given(
    votes=st.dictionaries(st.sampled_from(["A", "B", "C"]), st.integers(0, 10**6), max_size=3),
    blank=st.integers(0, 1000),
    invalid=st.integers(0, 1000),
    abstained=st.integers(0, 10**6),
    reported=st.integers(0, 50),
)
def test_standings_property(
    votes: dict[str, int], blank: int, invalid: int, abstained: int, reported: int
) -> None:
    voters = blank + invalid + sum(votes.values())
    registered = voters + abstained
    total = Tally(reported, registered, voters, blank, invalid, dict(votes))
    standings = standings_of(total, 50, ["A", "B", "C"])
    Standings.model_validate(standings)
    full = {c: votes.get(c, 0) for c in ["A", "B", "C"]}
    expressed = sum(full.values())
    assert standings["votes"] == full and standings["expressed"] == expressed
    if expressed:
        assert abs(sum(standings["shares"].values()) - 100) <= 0.005 * 3 + 1e-9
        for c, count in full.items():
            assert abs(standings["shares"][c] - 100 * count / expressed) <= 0.005 + 1e-9
            assert standings["shares"][c] == round(standings["shares"][c], 2)
    else:
        assert set(standings["shares"].values()) == {0.0}
    if registered:
        assert abs(standings["turnout"] - 100 * voters / registered) <= 0.005 + 1e-9
        assert standings["turnout"] == round(standings["turnout"], 2)
    else:
        assert standings["turnout"] is None
    assert (standings["leader"], standings["tied"], standings["margin"]) == expected_leader(full)


# -- detect_changes ----------------------------------------------------------------------------------


def step(
    announced: dict[str, Any],
    total: Tally,
    bureaux_total: int = 65,
    cause: dict[str, Any] | None = None,
    turnout_step: float = STEP,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One message: standings, events (each validated, also through JSON), the announced state as
    Redis would give it back."""
    standings = standings_of(total, bureaux_total)
    events, now = detect_changes(announced, standings, total, turnout_step, cause, AT)
    for event in events:
        UpdateEvent.model_validate(event)
        parsed = UpdateEvent.model_validate_json(orjson.dumps(event))
        assert parsed.at == AT
        where = (parsed.election, parsed.level, parsed.area, parsed.name)
        assert where == ("primaire-2017-t2", "department", "42", "Loire")
        assert (parsed.bureaux_reported, parsed.bureaux_total) == (total.bureaux, bureaux_total)
    return events, orjson.loads(orjson.dumps(now))


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["kind"] for event in events]


def of_kind(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [event for event in events if event["kind"] == kind]
    return found


def test_first_leader_and_first_turnout() -> None:
    cause = {"bureau": "42218-0001", "seq": 1}
    events, announced = step({}, Tally(1, 1000, 500, 0, 0, {"HAMON": 300, "VALLS": 200}), cause=cause)
    assert kinds(events) == ["leader_changed", "turnout_changed"]
    leader = of_kind(events, "leader_changed")
    assert (leader["leader"], leader["previous_leader"], leader["tied"], leader["margin"]) == (
        "HAMON",
        None,
        None,
        100,
    )
    assert leader["cause"] == cause
    turnout = of_kind(events, "turnout_changed")
    assert (turnout["turnout"], turnout["previous_turnout"]) == (50.0, None)
    assert announced["leader"] == "HAMON" and announced["tied"] is None
    assert announced["turnout"] == pytest.approx(50.0)

    # the same standings again: nothing to say
    again, same = step(announced, Tally(1, 1000, 500, 0, 0, {"HAMON": 300, "VALLS": 200}))
    assert again == [] and same == announced


def test_nothing_before_the_first_vote() -> None:
    events, announced = step({}, Tally())
    assert events == []
    # a bureau with voters but no expressed votes: a turnout, still no leader
    events, announced = step(announced, Tally(1, 100, 5, 5, 0, {}))
    assert kinds(events) == ["turnout_changed"]
    assert announced.get("leader") is None


def test_change_of_leader_tie_and_back() -> None:
    announced: dict[str, Any] = {}
    _, announced = step(announced, Tally(1, 1000, 500, 0, 0, {"HAMON": 300, "VALLS": 200}))

    # a tie: no leader, the tied candidates sorted, margin 0, previous leader named
    events, announced = step(announced, Tally(2, 2000, 1000, 0, 0, {"HAMON": 500, "VALLS": 500}))
    tie = of_kind(events, "leader_changed")
    assert (tie["leader"], tie["tied"], tie["margin"], tie["previous_leader"]) == (
        None,
        ["HAMON", "VALLS"],
        0,
        "HAMON",
    )

    # the tie broken the other way
    events, announced = step(announced, Tally(3, 3000, 1500, 0, 0, {"HAMON": 700, "VALLS": 800}))
    change = of_kind(events, "leader_changed")
    assert (change["leader"], change["tied"], change["margin"], change["previous_leader"]) == (
        "VALLS",
        None,
        100,
        None,
    )

    # a bigger margin for the same leader is not a change of leader
    events, announced = step(announced, Tally(4, 4000, 2000, 0, 0, {"HAMON": 700, "VALLS": 1300}))
    assert "leader_changed" not in kinds(events)

    # VALLS -> HAMON directly
    events, announced = step(announced, Tally(5, 5000, 2500, 0, 0, {"HAMON": 1400, "VALLS": 1100}))
    change = of_kind(events, "leader_changed")
    assert (change["leader"], change["previous_leader"], change["margin"]) == ("HAMON", "VALLS", 300)


def test_a_correction_back_to_no_votes_is_announced() -> None:
    _, announced = step({}, Tally(1, 1000, 500, 0, 0, {"HAMON": 300, "VALLS": 200}))
    events, announced = step(announced, Tally(1, 1000, 500, 500, 0, {"HAMON": 0, "VALLS": 0}))
    change = of_kind(events, "leader_changed")
    assert (change["leader"], change["tied"], change["previous_leader"]) == (None, None, "HAMON")


def test_turnout_creeping_by_a_hundredth_fires_once_per_tenth() -> None:
    # 10,000 registered: one more voter is 0.01 point; 100 messages move the turnout 1 point
    announced: dict[str, Any] = {}
    fired: list[tuple[float | None, float]] = []
    for voters in range(5000, 5101):
        events, announced = step(announced, Tally(10, 10000, voters, 0, 0, {"HAMON": voters}))
        fired += [(e["previous_turnout"], e["turnout"]) for e in events if e["kind"] == "turnout_changed"]
    assert fired == [(None, 50.0)] + [(round(50 + i / 10, 2), round(50.1 + i / 10, 2)) for i in range(10)]


def test_turnout_moves_below_the_step_are_held_back_and_accumulate() -> None:
    announced: dict[str, Any] = {}
    _, announced = step(announced, Tally(1, 10000, 5000, 0, 0, {"HAMON": 5000}))  # 50.00
    # measured from the last announced turnout (in voters: 10 = 0.1 point), not from the last message
    for voters, fires in [
        (5009, False),
        (4991, False),
        (5000, False),
        (4990, True),  # announced 49.90
        (4999, False),
        (4981, False),
        (4980, True),  # announced 49.80
        (4989, False),
        (4971, False),
        (5100, True),  # announced 51.00
        (5091, False),
        (5109, False),
        (5090, True),
    ]:
        events, announced = step(announced, Tally(1, 10000, voters, 0, 0, {"HAMON": voters}))
        assert ("turnout_changed" in kinds(events)) is fires, voters


def test_turnout_step_is_configurable() -> None:
    _, announced = step({}, Tally(1, 10000, 5000, 0, 0, {"HAMON": 5000}), turnout_step=0.5)
    events, announced = step(announced, Tally(1, 10000, 5049, 0, 0, {"HAMON": 5049}), turnout_step=0.5)
    assert events == []
    events, announced = step(announced, Tally(1, 10000, 5050, 0, 0, {"HAMON": 5050}), turnout_step=0.5)
    assert kinds(events) == ["turnout_changed"]
    assert (events[0]["previous_turnout"], events[0]["turnout"]) == (50.0, 50.5)


def test_complete_exactly_once() -> None:
    announced: dict[str, Any] = {}
    complete = 0
    for reported, voters in [(1, 100), (2, 200), (3, 300), (3, 301), (3, 400), (3, 300)]:
        events, announced = step(
            announced, Tally(reported, 3000, voters, 0, 0, {"HAMON": voters}), bureaux_total=3
        )
        if "complete" in kinds(events):
            complete += 1
            event = of_kind(events, "complete")
            assert (reported, event["bureaux_reported"], event["bureaux_total"]) == (3, 3, 3)
    assert complete == 1
    assert announced["complete"] is True


def test_an_area_without_bureaux_is_never_complete() -> None:
    events, _ = step({}, Tally(), bureaux_total=0)
    assert events == []


# -- properties over random nights ------------------------------------------------------------------

nights = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(["HAMON", "VALLS"]), st.integers(0, 3)),  # small: ties are common
        st.integers(0, 4),  # bureaux reported, of 3
        st.integers(0, 40),  # voters beyond the expressed votes
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=80, deadline=None)
@given(nights)
def test_leader_events_form_a_chain(night: list[tuple[dict[str, int], int, int]]) -> None:
    announced: dict[str, Any] = {}
    said: tuple[str | None, list[str] | None] = (None, None)  # what the subscribers know, by hand
    chain: list[dict[str, Any]] = []
    completes = 0
    for votes, reported, extra in night:
        voters = sum(votes.values()) + extra
        total = Tally(reported, 1000, voters, extra, 0, dict(votes))
        events, announced = step(announced, total, bureaux_total=3)
        leader, tied, margin = expected_leader({c: votes.get(c, 0) for c in CANDIDATES})
        changes = [e for e in events if e["kind"] == "leader_changed"]
        if (leader, tied) != said:
            assert len(changes) == 1
            assert (changes[0]["leader"], changes[0]["tied"], changes[0]["margin"]) == (leader, tied, margin)
            said = (leader, tied)
        else:
            assert changes == []
        chain += changes
        completes += kinds(events).count("complete")

    previous = None
    for event in chain:
        assert event["previous_leader"] == previous
        previous = event["leader"]
    final_leader, final_tied, _ = expected_leader({c: night[-1][0].get(c, 0) for c in CANDIDATES})
    assert announced.get("leader") == final_leader and announced.get("tied") == final_tied
    if chain:
        assert (chain[-1]["leader"], chain[-1]["tied"]) == (final_leader, final_tied)
    else:
        assert (final_leader, final_tied) == (None, None)
    assert completes == (1 if any(reported >= 3 for _, reported, _ in night) else 0)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 10000), min_size=1, max_size=40))
def test_turnout_events_follow_the_last_announced_turnout(walk: list[int]) -> None:
    # registered 10,000: 10 voters are exactly the 0.1 point step,
    # so the expected events are integer arithmetic
    announced: dict[str, Any] = {}
    last: int | None = None
    for voters in walk:
        events, announced = step(announced, Tally(1, 10000, voters, voters, 0, {}))
        turnouts = [e for e in events if e["kind"] == "turnout_changed"]
        if last is None or abs(voters - last) >= 10:
            assert len(turnouts) == 1
            assert turnouts[0]["turnout"] == voters / 100
            assert turnouts[0]["previous_turnout"] == (None if last is None else last / 100)
            last = voters
        else:
            assert turnouts == []
