"""Calls that are never wrong (``decided``/``undecided``), the comparison with a reference
election, turnout before the count, and the v2 fields of standings and events (pure domain).

Expected values come from arithmetic written here, never from the code under test: the bound
is the registered voters of the bureaux not yet reported, summed from the test's own roll.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.domain.aggregation import AreaState, Comparison, Tally
from stream.domain.changes import decision_of, detect_changes, make_standings, report_event
from stream.domain.messages import Standings, UpdateEvent

STEP = 0.1
AT = "2017-05-07T20:00:00+00:00"


def standings(total: Tally, registered_total: int, candidates: list[str], **extra: Any) -> dict[str, Any]:
    return make_standings(
        "e", "department", "42", "Loire", 3, total, candidates, registered_total=registered_total, **extra
    )


# -- the bound --------------------------------------------------------------------------------


def test_decided_needs_a_margin_larger_than_the_registered_still_out() -> None:
    votes = {"A": 600, "B": 400}  # margin 200
    assert decision_of(votes, 199, None) == (True, None)
    assert decision_of(votes, 200, None) == (False, None)  # all 200 for B: a tie is still possible
    assert decision_of({"A": 5, "B": 5}, 0, None) == (False, None)  # a tie is never decided
    assert decision_of({"A": 0, "B": 0}, 0, None) == (False, None)


def test_qualify_decides_the_set_of_the_first_n() -> None:
    votes = {"A": 500, "B": 300, "C": 100, "D": 50}  # the 2nd leads the 3rd by 200
    assert decision_of(votes, 199, 2) == (True, ["A", "B"])
    assert decision_of(votes, 200, 2) == (False, None)
    assert decision_of({"A": 10, "B": 10, "C": 1}, 8, 2) == (True, ["A", "B"])  # a tie inside the set
    assert decision_of({"A": 10, "B": 1}, 0, 2) == (False, None)  # nobody to leave out


def test_standings_carry_the_v2_fields_and_validate() -> None:
    total = Tally(2, 1000, 700, 10, 5, {"A": 500, "B": 185}, as_of="2017-05-07T18:14:00Z")
    shown = standings(total, 1100, ["A", "B"], version=42)  # 100 registered still out, margin 315
    assert (shown["decided"], shown["qualified"], shown["version"]) == (True, None, 42)
    parsed = Standings.model_validate(shown)
    assert parsed.as_of is not None and parsed.as_of.isoformat() == "2017-05-07T18:14:00+00:00"
    assert parsed.reference is None and parsed.change is None and parsed.turnout_at is None


# -- decided / undecided: the property --------------------------------------------------------

ROLL = {"b1": 100, "b2": 80, "b3": 60, "b4": 40, "b5": 20}
CANDIDATES = ["A", "B", "C"]


@st.composite
def reports(draw: st.DrawFn) -> list[tuple[str, int, dict[str, int]]]:
    """A night of reports, some bureaux corrected (a higher seq), some never reporting."""
    night: list[tuple[str, int, dict[str, int]]] = []
    seqs: dict[str, int] = {}
    for _ in range(draw(st.integers(1, 12))):
        bureau = draw(st.sampled_from(sorted(ROLL)))
        seqs[bureau] = seqs.get(bureau, 0) + 1
        left = ROLL[bureau]
        votes = {}
        for candidate in CANDIDATES:
            votes[candidate] = draw(st.integers(0, left))
            left -= votes[candidate]
        night.append((bureau, seqs[bureau], votes))
    return night


@settings(max_examples=300, deadline=None)
@given(reports(), st.sampled_from([None, 2]))
def test_a_decided_call_is_never_wrong_unless_a_correction_reopens_it(
    night: list[tuple[str, int, dict[str, int]]], qualify: int | None
) -> None:
    state = AreaState()
    announced: dict[str, Any] = {}
    story: list[dict[str, Any]] = []
    registered_total = sum(ROLL.values())
    for bureau, seq, votes in night:
        tally = Tally(1, ROLL[bureau], sum(votes.values()), 0, 0, votes)
        state.apply(bureau, seq, tally)
        shown = standings(state.total, registered_total, CANDIDATES, qualify=qualify)
        events, announced = detect_changes(
            announced, shown, state.total, STEP, {"bureau": bureau, "seq": seq}, AT
        )
        for event in events:
            UpdateEvent.model_validate(event)
        story += events
    final_votes = {
        c: sum(v[c] for _, (_, t) in state.children.items() for v in [t.votes]) for c in CANDIDATES
    }
    ranked = sorted(CANDIDATES, key=lambda c: -final_votes[c])
    for i, event in enumerate(story):
        if event["kind"] != "decided":
            continue
        called = event["qualified"] if qualify else event["leader"]
        # the bound itself, from the test's roll: registered of the bureaux not yet in
        out = registered_total - event["registered"]
        counts = sorted(event["votes"].values(), reverse=True)
        lead = counts[0] - counts[1] if qualify is None else counts[qualify - 1] - counts[qualify]
        assert lead > out, event
        final = sorted(ranked[:qualify]) if qualify else ranked[0]
        if called != final or (qualify is None and final_votes[ranked[0]] == final_votes[ranked[1]]):
            later = story[i + 1 :]
            reopened = [e for e in later if e["kind"] == "undecided"]
            assert reopened, f"decided {called}, the end says {final}, never reopened: {story}"
            assert reopened[0]["cause"]["seq"] > 1, "only a correction may reopen a call"


def test_a_correction_reopens_and_the_new_leader_is_called_again() -> None:
    state, announced = AreaState(), {}
    roll_registered = 200
    kinds: list[list[str]] = []
    for bureau, seq, votes in (
        ("b1", 1, {"A": 90, "B": 5}),  # b2 (100) out: margin 85, not decided
        ("b2", 1, {"A": 90, "B": 5}),  # all in: A decided
        ("b2", 2, {"A": 5, "B": 95}),  # corrected: 95 vs 100, B leads by 5, all in
    ):
        state.apply(bureau, seq, Tally(1, 100, sum(votes.values()), 0, 0, votes))
        shown = standings(state.total, roll_registered, ["A", "B"])
        events, announced = detect_changes(
            announced, shown, state.total, STEP, {"bureau": bureau, "seq": seq}, AT
        )
        kinds.append([e["kind"] for e in events if e["kind"] in ("decided", "undecided")])
    assert kinds == [[], ["decided"], ["undecided", "decided"]]
    assert announced["decided"] == "B"


# -- bureau events ---------------------------------------------------------------------------


def test_a_bureau_has_one_event_per_report_with_its_figures() -> None:
    tally = Tally(1, 100, 80, 2, 1, {"A": 50, "B": 27}, as_of="2017-05-07T18:02:00Z")
    shown = make_standings(
        "e", "bureau", "42218-0001", "x", 1, tally, ["A", "B"], version=2, registered_total=100
    )
    event = UpdateEvent.model_validate(report_event(shown, True, {"bureau": "42218-0001", "seq": 2}, AT))
    assert (event.kind, event.votes, event.voters, event.expressed, event.version) == (
        "corrected",
        {"A": 50, "B": 27},
        80,
        77,
        2,
    )
    assert event.decided  # every ballot of the bureau is in
    first = report_event(shown, False, {"bureau": "42218-0001", "seq": 1}, AT)
    assert first["kind"] == "reported"


# -- comparison -------------------------------------------------------------------------------


def test_reference_and_change_over_the_bureaux_in_both() -> None:
    total = Tally()
    # bureau 1 in both rounds; bureau 2 only now (no reference: not in the comparison)
    before1 = Tally(1, 1000, 600, 0, 0, {"A": 360, "B": 240, "C": 0})
    now1 = Tally(1, 1000, 750, 0, 0, {"A": 450, "B": 300})
    now1.comparison = Comparison(before1, now1.copy())
    total.add(now1)
    total.add(Tally(1, 500, 400, 0, 0, {"A": 100, "B": 300}))
    shown = make_standings("e2", "nation", "FR", "France", 2, total, ["A", "B"], compare_to="e1")
    parsed = Standings.model_validate(shown)
    assert parsed.reference is not None and parsed.change is not None
    assert (parsed.reference.voters, parsed.reference.bureaux, parsed.reference.election) == (600, 1, "e1")
    assert parsed.reference.shares == {"A": 60.0, "B": 40.0, "C": 0.0}
    assert parsed.change.voters_pct == 25.0  # 750 against 600, the second bureau left out
    assert parsed.change.turnout_points == 15.0  # 75 % against 60 %
    assert parsed.change.shares_points == {"A": 0.0, "B": 0.0}  # C is not in this election
    assert parsed.voters == 1150  # the standings themselves count every bureau


def test_no_reference_shown_over_no_bureau_in_both() -> None:
    """A correction can take a bureau's comparison out again: an empty reference is no reference."""
    total = Tally()
    now = Tally(1, 1000, 750, 0, 0, {"A": 450, "B": 300})
    now.comparison = Comparison(Tally(1, 1000, 600, 0, 0, {"A": 360, "B": 240}), now.copy())
    total.add(now)
    total.add(now, -1)
    assert total.comparison is not None and total.comparison.reference.bureaux == 0
    shown = make_standings("e2", "nation", "FR", "France", 2, total, ["A", "B"], compare_to="e1")
    assert shown["reference"] is None and shown["change"] is None


def test_turnout_before_the_count_and_its_events() -> None:
    total = Tally(turnout_at={"12:00": [1000, 194]})
    shown = make_standings("e", "commune", "42218", "Saint-Étienne", 3, total, ["A"], registered_total=1500)
    assert shown["turnout_at"] == {"12:00": 19.4}
    events, announced = detect_changes({}, shown, total, STEP, None, AT)
    assert [(e["kind"], e["hour"]) for e in events] == [("turnout_reported", "12:00")]
    total.add(Tally(turnout_at={"12:00": [500, 100], "17:00": [1000, 651]}))
    shown = make_standings("e", "commune", "42218", "Saint-Étienne", 3, total, ["A"], registered_total=1500)
    assert shown["turnout_at"] == {"12:00": 19.6, "17:00": 65.1}  # 294 of 1500; 651 of 1000
    events, announced = detect_changes(announced, shown, total, STEP, None, AT)
    assert sorted((e["kind"], e["hour"]) for e in events) == [
        ("turnout_reported", "12:00"),
        ("turnout_reported", "17:00"),
    ]
    for event in events:
        UpdateEvent.model_validate(event)


def test_tally_round_trips_with_comparison_time_and_turnout() -> None:
    tally = Tally(1, 10, 8, 0, 0, {"A": 8}, "2017-05-07T18:00:00Z", None, {"17:00": [10, 6]})
    tally.comparison = Comparison(Tally(1, 10, 5, 0, 0, {"A": 5}), tally.copy())
    again = Tally.from_json(tally.to_json())
    assert again == tally
    assert Tally.from_json([1, 2, 1, 0, 0, {"A": 1}]) == Tally(1, 2, 1, 0, 0, {"A": 1})  # stored by v1
