"""``soiree ingest``'s checks against what is applied (``stream.cli.ingest.applied_verdict``) and
its options, without services; the command itself runs against the real ones in test_cli."""

from __future__ import annotations

from typing import Any

import pytest

from stream.cli.ingest import IngestOptions, _overridden, applied_verdict

APPLIED = {
    "seq": 1,
    "voters": 100,
    "blank": 2,
    "invalid": 1,
    "votes": {"A": 60, "B": 37, "C": 0},
    "bureaux_by_status": {"provisional": 1, "definitive": 0, "annulled": 0},
}


def report(seq: int = 1, **change: Any) -> dict[str, Any]:
    base = {
        "bureau": "42218-0001",
        "seq": seq,
        "voters": 100,
        "blank": 2,
        "invalid": 1,
        "votes": {"A": 60, "B": 37},
    }
    return {**base, **change}


def test_a_new_seq_or_a_bureau_not_yet_counted_is_published() -> None:
    assert applied_verdict(report(), None) is None
    assert applied_verdict(report(2, votes={"A": 61, "B": 36}), APPLIED) is None


def test_the_same_report_again_is_a_repeat_whatever_zeros_it_spells_out() -> None:
    verdict = applied_verdict(report(votes={"A": 60, "B": 37, "C": 0}), APPLIED)
    assert verdict == ("repeat", "bureau 42218-0001: seq 1 is already applied with these counts")


@pytest.mark.parametrize(
    "change",
    [
        {"votes": {"A": 61, "B": 36}},
        {"blank": 3, "invalid": 0},
        {"status": "definitive"},
        {"votes": {"A": 60, "B": 36, "C": 1}},
    ],
)
def test_the_same_seq_with_other_content_is_refused_as_a_conflict_naming_the_seq_to_use(
    change: dict[str, Any],
) -> None:
    verdict = applied_verdict(report(**change), APPLIED)
    assert verdict is not None and verdict[0] == "refuse"
    assert verdict[1] == (
        "bureau 42218-0001: conflict: seq 1 is already applied with other counts; "
        "send the right ones with --seq 2 or more"
    )


def test_an_older_seq_is_refused_as_stale() -> None:
    verdict = applied_verdict(report(1), {**APPLIED, "seq": 3})
    assert (
        verdict is not None
        and verdict[0] == "refuse"
        and "older than the report applied (seq 3)" in verdict[1]
    )


def test_seq_and_status_for_a_whole_file_replace_each_report_s() -> None:
    options = IngestOptions(seq=2, status="definitive")
    assert (
        _overridden(b'{"bureau": "x", "seq": 1}', options) == b'{"bureau":"x","seq":2,"status":"definitive"}'
    )
    assert _overridden(b"not json", options) == b"not json"  # left for the validator to reject


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (IngestOptions(format="xml"), "unknown format 'xml'"),
        (IngestOptions(status="final"), "unknown status 'final'; use provisional, definitive, annulled"),
        (IngestOptions(seq=0), "--seq must be 1 or more"),
        (IngestOptions(format="turnout", status="definitive"), "--status is for results"),
    ],
)
def test_options_that_cannot_work_are_refused(options: IngestOptions, problem: str) -> None:
    said = options.check()
    assert said is not None and said.startswith(problem)


def test_two_lines_of_one_file_with_the_same_seq_are_a_repeat_or_a_conflict() -> None:
    from types import SimpleNamespace

    from stream.cli.ingest import Ingest
    from stream.domain.messages import Election

    election = Election.model_validate(
        {
            "election": "e",
            "name": "e",
            "candidates": [{"id": "A", "name": "a"}, {"id": "B", "name": "b"}],
            "bureaux": [{"bureau": "42218-0001", "commune": "42218", "department": "42", "registered": 200}],
        }
    )
    nothing_applied = SimpleNamespace(mget=lambda keys: [None] * len(keys))
    run = Ingest(election, IngestOptions(), nothing_applied)  # type: ignore[arg-type]
    lines = [report(), report(), report(votes={"A": 61, "B": 36}), report(2, votes={"A": 61, "B": 36})]
    batch = [(f"line {i}", b"", {**line, "election": "e"}) for i, line in enumerate(lines, 1)]
    publish, refused = run.against_applied(batch)
    assert [(r["seq"], r["votes"]) for r in publish] == [(1, {"A": 60, "B": 37}), (2, {"A": 61, "B": 36})]
    assert run.report.repeats == 1
    assert [where for where, _, _ in refused] == ["line 3"] and "conflict" in refused[0][2]
