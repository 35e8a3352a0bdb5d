"""The ministry's own TXT from end to end, through the command line and a real worker: a
législatives file (the Loire's 6 circonscriptions and Lozère's one, invented candidates)
registered with ``election create --from-ministry``, ingested with ``--format ministry-txt``;
the same file again changes nothing; a corrected file is refused as a conflict until it comes
with ``--seq 2 --status definitive``.

Expected figures are sums over the rows the test writes.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from stream.sources.legislative import legislative_scenario
from stream.sources.ministry import election_from_ministry

from .harness import ROUND_FILES, Stack, pres2017_dir
from .ministry_files import TxtBureau, TxtCandidate, write_ministry_txt
from .test_cli import soiree

DEPARTMENTS = {"42", "48"}


def night_rows() -> list[TxtBureau]:
    """A législatives night on the Loire's and Lozère's bureaux, as the ministry's TXT rows."""
    full = election_from_ministry(pres2017_dir() / ROUND_FILES[1], "roll")
    roll = full.model_copy(update={"bureaux": [b for b in full.bureaux if b.department in DEPARTMENTS]})
    night = legislative_scenario(roll, "leg", round=1)
    assert night.election.races is not None
    candidates = {c.id: c for race in night.election.races for c in race.candidates}
    last = {report.result.bureau: report.result for report in night.reports}  # in time order: the last
    rows = []
    for entry in night.election.bureaux:
        result = last[entry.bureau]
        commune = entry.commune.removeprefix(entry.department)
        number = entry.bureau.rsplit("-", 1)[1]
        row_candidates = []
        for candidate_id, votes in result.votes.items():
            candidate = candidates[candidate_id]
            first, _, surname = candidate.name.partition(" ")
            panel = int(candidate_id.rsplit("-", 1)[1])
            row_candidates.append(TxtCandidate(panel, "M", surname, first, votes, candidate.party or ""))
        rows.append(
            TxtBureau(
                entry.department,
                entry.department_name,
                int(entry.race.rsplit("-", 1)[1]),  # type: ignore[union-attr]
                entry.circonscription_name,
                commune,
                entry.commune_name,
                number,
                entry.registered,
                result.voters,
                result.blank,
                result.invalid,
                sorted(row_candidates, key=lambda c: c.panel),
            )
        )
    return rows


def test_a_ministry_txt_legislative_file_end_to_end(stack: Any, tmp_path: Path) -> None:
    s: Stack = stack("txt")
    e = f"leg-txt-{uuid.uuid4().hex[:6]}"
    rows = night_rows()
    path = write_ministry_txt(rows, tmp_path / "leg.txt", legislative=True)

    created = soiree(s, "election", "create", "--from-ministry", str(path), "--election", e, timeout=120)
    assert created.returncode == 0, created.stderr
    assert "7 races" in created.stdout and f"{len(rows):,} bureaux" in created.stdout
    s.elections.append(e)
    s.start_worker()
    ingested = soiree(s, "ingest", str(path), "--election", e, "--format", "ministry-txt", timeout=120)
    assert ingested.returncode == 0, ingested.stderr
    assert f"{len(rows):,} accepted (published), 0 rejected" in ingested.stdout

    def race_votes(data: list[TxtBureau]) -> dict[str, dict[str, int]]:
        races: dict[str, Counter[str]] = defaultdict(Counter)
        for row in data:
            race = f"{row.department}-{int(row.circonscription):02d}"
            for c in row.candidates:
                races[race][f"{race}-{c.panel:02d}"] += c.votes
        return {race: dict(votes) for race, votes in races.items()}

    def counted(expected: dict[str, dict[str, int]], definitive: int = 0) -> bool:
        nation = s.standings(e, "nation", "FR")
        if nation is None or nation.bureaux_reported != len(rows):
            return False
        if (nation.bureaux_by_status or {}).get("definitive") != definitive:
            return False
        for race, votes in expected.items():
            got = s.standings(e, "circonscription", race)
            if got is None or {c: n for c, n in got.votes.items() if n} != {
                c: n for c, n in votes.items() if n
            }:
                return False
        return True

    s.wait_until(lambda: counted(race_votes(rows)), 120, "every race counted from the TXT")
    parties: Counter[str] = Counter(c.nuance for row in rows for c in row.candidates for _ in range(c.votes))
    nation = s.standings(e, "nation", "FR")
    assert nation is not None and {p: n for p, n in nation.votes.items() if n} == {
        p: n for p, n in parties.items() if n
    }

    again = soiree(s, "ingest", str(path), "--election", e, "--format", "ministry-txt", timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"0 accepted (published), {len(rows):,} already applied (skipped), 0 rejected" in again.stdout

    rows[0].candidates[0].votes += 1
    rows[0].voters += 1
    fixed = write_ministry_txt(rows, tmp_path / "leg-definitive.txt", legislative=True)
    refused = soiree(s, "ingest", str(fixed), "--election", e, "--format", "ministry-txt", timeout=120)
    assert refused.returncode == 1
    assert "conflict: seq 1 is already applied with other counts; send the right ones with --seq 2" in (
        refused.stdout
    )
    definitive = soiree(
        s,
        "ingest",
        str(fixed),
        "--election",
        e,
        "--format",
        "ministry-txt",
        "--seq",
        "2",
        "--status",
        "definitive",
        timeout=120,
    )
    assert definitive.returncode == 0, definitive.stderr
    assert f"{len(rows):,} accepted (published)" in definitive.stdout
    s.wait_until(lambda: counted(race_votes(rows), definitive=len(rows)), 120, "the definitive file counted")
