"""Calling a race (``stream.domain.races``): hand-computed figures for each rule, and the safety property.

The property test brute-forces every way the unreported bureaux could still vote and judges each
final count with ``final_reference`` below, written from the law independently of ``race_outcome``
(ranks by counting who has strictly more votes, percentages as exact fractions): a race that
``race_outcome`` calls must end the same way in every one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.domain.races import RULES, Outcome, Rules, outcome_if_final, race_outcome

UNDECIDED = Outcome(False, [], [])


def elected(*ids: str) -> Outcome:
    return Outcome(True, sorted(ids), [])


def qualified(*ids: str) -> Outcome:
    return Outcome(True, [], sorted(ids))


# --- the reference: the law, applied to a final count -------------------------------------------


def _first(votes: dict[str, int], k: int) -> list[str] | None:
    """The k with most votes, or None when a tie at the k-th place leaves them unsettled."""
    if len(votes) <= k:
        return sorted(votes)
    # A candidate is among the first k iff fewer than k candidates have strictly more votes.
    top = [c for c, v in votes.items() if sum(1 for w in votes.values() if w > v) < k]
    return sorted(top) if len(top) == k else None


def final_reference(
    votes: dict[str, int], registered: int, rules: Rules, round: int, seats: int
) -> tuple[list[str], list[str]] | None:
    """``(elected, qualified)`` of a final count, or None when a tie leaves it to the candidates' ages."""
    if rules == "plurality" or round == 2:
        top = _first(votes, seats)
        return None if top is None else (top, [])
    expressed = sum(votes.values())
    for c, v in votes.items():
        # A deputy needs more than half the expressed votes and a quarter of the roll (code
        # électoral, L. 126); the president, the first only (Constitution, art. 7).
        majority = v > Fraction(expressed, 2)
        quarter = v >= Fraction(registered, 4)
        if majority and (rules == "presidential" or quarter):
            return [c], []
    if rules == "legislative":
        # Round 2 is open to those with at least 12.5 % of the roll (L. 162), else the first two.
        reaching = sorted(c for c, v in votes.items() if v >= Fraction(registered * 125, 1000))
        if len(reaching) >= 2:
            return [], reaching
    top = _first(votes, 2)
    return None if top is None else ([], top)


def completions(votes: dict[str, int], remaining: int) -> Iterator[dict[str, int]]:
    """Every final count: up to ``remaining`` more ballots for the candidates, in every split.

    The ballots left over are blank, invalid or never cast; those three look alike to every rule
    (none is expressed and the roll is fixed), so one final count stands for all of their mixes.
    """
    ids = list(votes)

    def splits(i: int, left: int) -> Iterator[tuple[int, ...]]:
        if i == len(ids):
            yield ()
            return
        for x in range(left + 1):
            for rest in splits(i + 1, left - x):
                yield (x, *rest)

    for extra in splits(0, remaining):
        yield {c: votes[c] + x for c, x in zip(ids, extra)}


# --- hand-computed cases ---------------------------------------------------------------------------


def test_legislative_majority_without_a_quarter_of_the_roll_goes_to_round_2() -> None:
    # a: 240 of 460 expressed = 52.2 % but 240 of 1000 registered = 24 % (< 25 %): not elected.
    # 12.5 % of 1000 = 125: a (240) and b (140) reach it, c (80) does not.
    votes = {"a": 240, "b": 140, "c": 80}
    assert race_outcome(votes, 1000, 0, "legislative", 1) == qualified("a", "b")
    # 9 more ballots: a can reach 249 (< 250, still no quarter), c at most 89 (< 125): same pair.
    assert race_outcome(votes, 1000, 9, "legislative", 1) == qualified("a", "b")
    # 10 more: a could reach 250 = 25 % with 250 of 470 > 50 %, and be elected.
    assert race_outcome(votes, 1000, 10, "legislative", 1) == UNDECIDED


def test_legislative_elected() -> None:
    # a: 300 of 550 expressed (54.5 %) and 30 % of 1000 registered.
    assert race_outcome({"a": 300, "b": 200, "c": 50}, 1000, 0, "legislative", 1) == elected("a")
    # Exactly 25 % of the roll is enough: 250 of 450 expressed, 250 of 1000 registered.
    assert race_outcome({"a": 250, "b": 100, "c": 100}, 1000, 0, "legislative", 1) == elected("a")
    # 249 of 1000 is not: nobody elected; only a reaches 125, so a and the next (b, 100 > 99).
    assert race_outcome({"a": 249, "b": 100, "c": 99}, 1000, 0, "legislative", 1) == qualified("a", "b")


def test_legislative_majority_against_remaining_ballots() -> None:
    # a: 300 of 400. Even if all 199 remaining go to b: 300 of 599 > 50 %; 30 % of 1000.
    assert race_outcome({"a": 300, "b": 100}, 1000, 199, "legislative", 1) == elected("a")
    # 200 remaining to b: 300 of 600 is exactly 50 %, not more.
    assert race_outcome({"a": 300, "b": 100}, 1000, 200, "legislative", 1) == UNDECIDED


def test_legislative_exactly_half_is_not_elected() -> None:
    # a: 500 of 1000 expressed = 50 %, not more; 12.5 % of 1500 = 187.5: a, b and c reach it.
    votes = {"a": 500, "b": 300, "c": 200, "d": 0}
    assert race_outcome(votes, 1500, 0, "legislative", 1) == qualified("a", "b", "c")


def test_legislative_twelve_and_a_half_percent_boundary() -> None:
    # 12.5 % of 800 = 100: b with exactly 100 reaches it, c with 99 does not. a: 300 of 649 < 50 %.
    votes = {"a": 300, "b": 100, "c": 99, "d": 150}
    assert race_outcome(votes, 800, 0, "legislative", 1) == qualified("a", "b", "d")
    # One more ballot to come: c could reach 100, so the set going to round 2 is open.
    assert race_outcome(votes, 800, 1, "legislative", 1) == UNDECIDED


def test_legislative_triangulaire() -> None:
    # 12.5 % of 2000 = 250; a 600, b 500, c 300 of 1500 expressed: nobody above 50 %, three reach it.
    votes = {"a": 600, "b": 500, "c": 300, "d": 100}
    assert race_outcome(votes, 2000, 0, "legislative", 1) == qualified("a", "b", "c")
    # 49 more ballots: d at most 149 (< 250), c at least 300; a at most 649 of 1549 (< 50 %).
    assert race_outcome(votes, 2000, 49, "legislative", 1) == qualified("a", "b", "c")
    # The triangulaire's round 2 is plurality: a leads b by 100.
    assert race_outcome({"a": 600, "b": 500, "c": 300}, 2000, 99, "legislative", 2) == elected("a")
    assert race_outcome({"a": 600, "b": 500, "c": 300}, 2000, 100, "legislative", 2) == UNDECIDED


def test_legislative_one_reaching_twelve_and_a_half_percent_takes_the_runner_up() -> None:
    # 12.5 % of 1000 = 125: only a (200) reaches it; a has 200 of 530 (< 50 %). a and b go on.
    votes = {"a": 200, "b": 120, "c": 110, "d": 100}
    assert race_outcome(votes, 1000, 0, "legislative", 1) == qualified("a", "b")
    # 9 more ballots: c can't catch b (lead 10); b may reach 125, c and d can't (119, 109): if b
    # does, a and b reach it, else a and the runner-up b go on, the same pair either way.
    assert race_outcome(votes, 1000, 9, "legislative", 1) == qualified("a", "b")
    # 10 more: c could tie b for second place.
    assert race_outcome(votes, 1000, 10, "legislative", 1) == UNDECIDED


def test_legislative_nobody_reaching_twelve_and_a_half_percent() -> None:
    # Low turnout: 12.5 % of 1000 = 125, nobody has it; the first two go on.
    assert race_outcome({"a": 100, "b": 90, "c": 80}, 1000, 0, "legislative", 1) == qualified("a", "b")


def test_tie_for_the_last_place_is_never_decided() -> None:
    # Only a reaches 125; b and c tie for second: the law picks the elder, which we don't know.
    assert race_outcome({"a": 200, "b": 100, "c": 100}, 1000, 0, "legislative", 1) == UNDECIDED
    assert race_outcome({"a": 50, "b": 50}, 1000, 0, "presidential", 2) == UNDECIDED
    assert race_outcome({"a": 9, "b": 7, "c": 7}, 100, 0, "plurality", 1, seats=2) == UNDECIDED


def test_presidential_round_1() -> None:
    # a: 510 of 1000 expressed. The roll does not matter for the presidential election.
    assert race_outcome({"a": 510, "b": 300, "c": 190}, 10_000, 0, "presidential", 1) == elected("a")
    # Exactly 50 %: a and b go to round 2.
    assert race_outcome({"a": 500, "b": 300, "c": 200}, 10_000, 0, "presidential", 1) == qualified("a", "b")
    # a: 600 of 1000; with 199 more for b, 600 of 1199 > 50 %; with 200, 600 of 1200 is not.
    assert race_outcome({"a": 600, "b": 300, "c": 100}, 10_000, 199, "presidential", 1) == elected("a")
    assert race_outcome({"a": 600, "b": 300, "c": 100}, 10_000, 200, "presidential", 1) == UNDECIDED
    # a at most 450 of 1050 with 50 more: nobody can pass 50 %, and b leads c by 100 > 50.
    votes = {"a": 400, "b": 350, "c": 250}
    assert race_outcome(votes, 10_000, 50, "presidential", 1) == qualified("a", "b")
    # 100 more: c could tie b.
    assert race_outcome(votes, 10_000, 100, "presidential", 1) == UNDECIDED
    # 201 more: a could have 601 of 1201.
    assert race_outcome({"a": 400, "b": 350, "c": 250}, 10_000, 201, "presidential", 1) == UNDECIDED


def test_presidential_round_2() -> None:
    assert race_outcome({"a": 600, "b": 400}, 10_000, 199, "presidential", 2) == elected("a")
    assert race_outcome({"a": 600, "b": 400}, 10_000, 200, "presidential", 2) == UNDECIDED


def test_plurality_three_seats() -> None:
    votes = {"a": 50, "b": 40, "c": 30, "d": 20, "e": 10}
    # c leads d by 10: 9 more ballots can't change the first three, 10 could tie them.
    assert race_outcome(votes, 500, 9, "plurality", 1, seats=3) == elected("a", "b", "c")
    assert race_outcome(votes, 500, 10, "plurality", 1, seats=3) == UNDECIDED
    # A tie inside the first three doesn't matter.
    assert race_outcome({"a": 40, "b": 40, "c": 40, "d": 0}, 500, 39, "plurality", 1, seats=3) == elected(
        "a", "b", "c"
    )


def test_plurality_with_no_more_candidates_than_seats() -> None:
    # All are elected; announced once anything is counted or nothing remains.
    assert race_outcome({"a": 0, "b": 0}, 100, 5, "plurality", 2, seats=3) == UNDECIDED
    assert race_outcome({"a": 1, "b": 0}, 100, 5, "plurality", 2, seats=3) == elected("a", "b")
    assert race_outcome({"a": 0, "b": 0}, 100, 0, "plurality", 2, seats=3) == elected("a", "b")


def test_outcome_if_final_is_the_count_so_far() -> None:
    # 52 % of expressed with a quarter of the roll: elected if counting stopped now.
    votes = {"a": 260, "b": 240}
    assert outcome_if_final(votes, 1000, "legislative", 1) == elected("a")
    assert race_outcome(votes, 1000, 100, "legislative", 1) == UNDECIDED
    assert outcome_if_final({"a": 3, "b": 2, "c": 1}, 10, "plurality", 1, seats=2) == elected("a", "b")


@pytest.mark.parametrize(
    ("rules", "round", "seats"),
    [
        ("proportional", 1, 1),
        ("legislative", 3, 1),
        ("legislative", 0, 1),
        ("plurality", 1, 0),
        ("legislative", 1, 2),
        ("presidential", 2, 2),
    ],
)
def test_refused(rules: str, round: int, seats: int) -> None:
    with pytest.raises(ValueError):
        race_outcome({"a": 1, "b": 2}, 10, 0, rules, round, seats)  # type: ignore[arg-type]


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        race_outcome({"a": -1, "b": 2}, 10, 0, "plurality", 1)
    with pytest.raises(ValueError):
        race_outcome({"a": 1, "b": 2}, 10, -1, "plurality", 1)


# --- the property: a called race stays called -----------------------------------------------------


#: votes, registered_total, remaining, rules, round, seats
Race = tuple[dict[str, int], int, int, Rules, int, int]


@st.composite
def races(draw: st.DrawFn) -> Race:
    n = draw(st.integers(2, 5))
    votes = {f"c{i}": draw(st.integers(0, 30)) for i in range(n)}
    remaining = draw(st.integers(0, 12))
    blank_or_abstaining = draw(st.integers(0, 40))
    registered = sum(votes.values()) + blank_or_abstaining + remaining
    rules: Rules = draw(st.sampled_from(["legislative", "presidential", "plurality"]))
    round = draw(st.sampled_from([1, 2]))
    seats = draw(st.integers(1, 3)) if rules == "plurality" else 1
    return votes, registered, remaining, rules, round, seats


@settings(max_examples=400, deadline=None)
@given(races())
def test_a_called_race_holds_for_every_completion(race: Race) -> None:
    votes, registered, remaining, rules, round, seats = race
    outcome = race_outcome(votes, registered, remaining, rules, round, seats)
    if not outcome.decided:
        assert outcome == UNDECIDED
        return
    for final in completions(votes, remaining):
        # Stronger than "equal where unambiguous": a called race can't end in an unsettled tie either.
        expected = (outcome.elected, outcome.qualified)
        assert final_reference(final, registered, rules, round, seats) == expected, final


@settings(max_examples=400, deadline=None)
@given(races())
def test_a_full_count_is_called_unless_tied(race: Race) -> None:
    votes, registered, _, rules, round, seats = race
    expected = final_reference(votes, registered, rules, round, seats)
    outcome = race_outcome(votes, registered, 0, rules, round, seats)
    assert outcome == outcome_if_final(votes, registered, rules, round, seats)
    if expected is None:
        assert outcome == UNDECIDED
    else:
        assert outcome == Outcome(True, *expected)


def test_rules_are_the_literal() -> None:
    assert RULES == ("legislative", "presidential", "plurality")
