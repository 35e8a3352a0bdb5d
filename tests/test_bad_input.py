"""Issue 4, item 1: over 10,000 generated malformed messages thrown at a running worker.

What is injected: hypothesis draws, up front and deterministically (``derandomize``, no example
database), 66 chunks of 200 messages: 13,200 messages, 10,296 invalid and 2,904 valid, shuffled
together within each chunk and published in one go to one worker. The invalid ones cover every
way PRODUCT.md's rules can be broken: broken JSON, JSON that is not an object, an
empty message, wrong types, missing fields, negative counts, counts above 10,000,000 or beyond 64
bits, ballots that do not add up, voters above the given or the roll's registered, unknown
election, bureau or candidate, registered differing from the roll, bad ``seq``, payloads above
``SOIREE_MAX_MESSAGE_BYTES``, non-UTF-8 bytes and a message key that is not the bureau id.

What is checked:

* every invalid message lands exactly once in the rejected topic, found by its (key, payload),
  with the reason its kind calls for (built here from the rule it breaks: the exact text, or the
  field and the violated bound), the source topic, partition and offset;
* the rejected topic holds exactly as many messages as were invalid (nothing valid rejected,
  nothing invalid counted);
* every valid one is counted: the standings of every bureau, commune, department and the nation
  equal plain sums over the latest ``seq`` of each bureau, to the vote; areas without a valid
  report have no standings;
* the worker is alive and kept up (everything settles within a deadline);
* ``soiree ingest --dry-run`` gives, for a JSONL file of a sample of those payloads, the same reason
  the worker gave for each line, and the same accepted / rejected counts.

Invalid messages are built from "trap" versions (``seq`` 7 to 9, above every valid one), so any
of them accepted by mistake would also change a bureau's figures.
"""

from __future__ import annotations

import json
import re
import string
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stream.domain.messages import ID_PATTERN, MAX_COUNT, MAX_REJECTED_PAYLOAD, Election

from .harness import ROOT, Stack
from .traffic import bureaux_total, make_election, mismatches, random_counts, read_records, topic_size, truth

CANDIDATES = ["ARTHAUD", "MACRON", "LE PEN", "HAMON"]
DEPARTMENTS = [("42", "Loire", 3, (2, 4)), ("2A", "Corse-du-Sud", 2, (1, 3)), ("75", "Paris", 2, (3, 5))]
VALID_SEQS = (1, 6)  # valid reports use seq 1..6
TRAP_SEQS = (7, 9)  # invalid ones are built from seq 7..9: accepting one would change the figures
MIN_INVALID = 10_000
LIMIT = 65_536  # SOIREE_MAX_MESSAGE_BYTES, default
KEY_SUFFIX = " (all reports of a bureau must share a partition to keep their order)"


@dataclass(frozen=True)
class Msg:
    """One message to publish, and what must become of it."""

    kind: str  # "valid" or the rule it breaks
    key: bytes | None
    payload: bytes
    exact: str | None = None  # the whole expected reason...
    fragments: tuple[str, ...] = ()  # ...or pieces it must contain (the first one: its start)
    report: dict[str, Any] | None = None  # valid ones: what must be counted

    def reason_ok(self, reason: str) -> bool:
        if self.exact is not None:
            return reason == self.exact
        return reason.startswith(self.fragments[0]) and all(f in reason for f in self.fragments[1:])

    def expectation(self) -> str:
        return repr(self.exact) if self.exact is not None else " ... ".join(map(repr, self.fragments))


def _identity(m: Msg) -> tuple[bytes | None, bytes]:
    return (m.key, m.payload)


def dumps(data: Any) -> bytes:
    """ASCII JSON (stdlib: it also writes integers beyond 64 bits)."""
    return json.dumps(data, ensure_ascii=True).encode()


# -- the generators ------------------------------------------------------------------------------


#: One drawn chunk: how many messages of each kind (200 per chunk; 22 % valid). Exact counts, so
#: the invalid total is known up front; the chunk is then shuffled (hypothesis draws the seed).
CHUNK: list[tuple[str, int]] = [
    ("valid", 44),
    ("not_json", 14),
    ("not_object", 7),
    ("empty", 1),
    ("wrong_type", 18),
    ("missing", 10),
    ("negative", 10),
    ("huge", 10),
    ("sum_mismatch", 11),
    ("voters_over_given", 7),
    ("voters_over_roll", 7),
    ("unknown_election", 8),
    ("unknown_bureau", 8),
    ("unknown_candidate", 8),
    ("registered_mismatch", 8),
    ("bad_seq", 8),
    ("oversized", 1),
    ("non_utf8", 10),
    ("wrong_key", 10),
]
CHUNKS = 66

WRONG_COUNTS: list[Any] = ["9", 9.0, 9.5, True, False, None, [9], {"n": 9}, "", 1e20, "nine"]
WRONG_REGISTERED = [v for v in WRONG_COUNTS if v is not None]  # registered: null means "not given"
WRONG_IDS: list[Any] = [42, None, [], {}, True, 4.2, "", "a|b", "x" * 65]
WRONG_VOTES: list[Any] = [[1, 2], "MACRON", 3, None, True]
BAD_CANDIDATE_IDS = ["", "LE|PEN", "|", "X" * 65]
WRONG_DATES: list[Any] = ["tonight", "23/04/2017 20h", [2017, 4, 23], {"h": 20}, True]
TYPED_FIELDS = [
    "seq",
    "voters",
    "blank",
    "invalid",
    "registered",
    "votes.",
    "votes",
    "votes-key",
    "election",
    "bureau",
    "reported_at",
]
REQUIRED = ["election", "bureau", "seq", "voters", "blank", "invalid", "votes"]
COUNT_FIELDS = ["registered", "voters", "blank", "invalid", *[f"votes.{c}" for c in CANDIDATES]]
BAD_BYTES = [
    b"\xff",
    b"\xfe",
    b"\xc3(",
    b"\xe9",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xe2\x82",
    b"\x80",
    b"\xf8\x88\x80\x80\x80",
]
JSON_TAILS = [b",", b"}", b"]", b"x", b"{}", b" 1"]
NOT_JSON = [b" ", b"  \t ", b"\x00", b"{}{}", b"{,}", b'{"a" 1}', b"nul", b"tru"]
NOT_FINITE = [b"NaN", b"Infinity", b"-Infinity"]
NUMERIC_FIELDS = ["voters", "blank", "invalid", "seq"]


class Generator:
    """Hypothesis strategies for one election; valid versions are fixed per (bureau, seq)."""

    def __init__(self, election: Election) -> None:
        self.election = election
        self.e = election.election
        self.bureaux = [entry.bureau for entry in election.bureaux]
        self.registered = {entry.bureau: entry.registered for entry in election.bureaux}
        self._versions: dict[tuple[str, int], dict[str, Any]] = {}
        # strategies are built once: building them per draw costs more than drawing
        self.bureau = st.sampled_from(self.bureaux)
        self.trap = st.builds(self.base, self.bureau, st.integers(*TRAP_SEQS))
        self.seed = st.integers(0, 2**32)
        taken_bureaux = set(self.bureaux)
        # ids the contract allows (messages.ID_PATTERN): made-up ones are unknown, not malformed
        made_up = st.from_regex(r"[A-Za-z0-9éèàçÉÈÀ._'-]+( [A-Za-z0-9éèàçÉÈÀ._'-]+)*", fullmatch=True)
        self.new_bureau = st.one_of(
            made_up.filter(lambda b: len(b) <= 24 and b not in taken_bureaux),
            st.builds(
                lambda d, c, k: f"{d}{c:03d}-{k:04d}",
                st.sampled_from(["42", "2A", "75", "ZZ"]),
                st.integers(0, 999),
                st.integers(1, 9999),
            ).filter(lambda b: b not in taken_bureaux),
        )
        self.new_candidates = st.lists(
            made_up.filter(lambda c: len(c) <= 20 and c not in CANDIDATES),
            min_size=1,
            max_size=3,
            unique=True,
        )
        scalars = (
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=20)
        )
        self.not_objects = scalars | st.lists(scalars, max_size=4)
        self.kinds = {name: getattr(self, name)() for name, _ in CHUNK}

    def counts(self, bureau: str, seq: int) -> dict[str, Any]:
        """The counts of a bureau's version ``seq``: the same whenever it is sent (duplicates are exact)."""
        found = self._versions.get((bureau, seq))
        if found is None:
            rng = Random(f"{bureau}/{seq}")
            found = self._versions[(bureau, seq)] = random_counts(rng, self.registered[bureau], CANDIDATES)
        return {**found, "votes": dict(found["votes"])}

    def base(self, bureau: str, seq: int) -> dict[str, Any]:
        return {"election": self.e, "bureau": bureau, "seq": seq, **self.counts(bureau, seq)}

    def chunk(self) -> st.SearchStrategy[list[Msg]]:
        """CHUNK's kinds in their exact numbers, shuffled."""
        parts = [st.lists(self.kinds[name], min_size=n, max_size=n, unique_by=_identity) for name, n in CHUNK]

        @st.composite
        def make(draw: st.DrawFn) -> list[Msg]:
            messages = [m for part in parts for m in draw(part)]
            Random(draw(self.seed)).shuffle(messages)
            return messages

        return make()

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _prefix(data: dict[str, Any]) -> str:
        """A reason starts with the bureau when it is an id the contract allows (never raw otherwise)."""
        bureau = data.get("bureau")
        valid = isinstance(bureau, str) and len(bureau) <= 64 and re.fullmatch(ID_PATTERN, bureau)
        return f"bureau {bureau}: " if valid else ""

    @staticmethod
    def _key(draw: st.DrawFn, bureau: str) -> bytes | None:
        return None if draw(st.integers(0, 2)) == 2 else bureau.encode()

    @staticmethod
    def _set(data: dict[str, Any], field: str, value: Any) -> None:
        if field.startswith("votes."):
            data["votes"][field[6:]] = value
        else:
            data[field] = value

    @staticmethod
    def _with_voters(data: dict[str, Any], voters: int, rng: Random) -> None:
        """Counts adding up to ``voters``."""
        data.update(random_counts(rng, voters, CANDIDATES, keep_zero=True))
        data["blank"] += voters - data["voters"]
        data["voters"] = voters

    # -- one strategy per kind ------------------------------------------------------------------
    def valid(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            bureau = draw(self.bureau)
            seq = draw(st.integers(*VALID_SEQS))
            data = self.base(bureau, seq)
            report = {**data, "votes": dict(data["votes"])}
            if draw(st.booleans()):
                data["registered"] = self.registered[bureau]  # optional, equal to the roll
            if draw(st.booleans()):
                data["reported_at"] = "2017-04-23T20:14:00+02:00"
            if draw(st.booleans()):
                data["comment"] = draw(st.text(max_size=20))  # unknown fields are ignored
            for candidate in CANDIDATES:  # a missing candidate has 0 votes; an explicit 0 is the same
                if data["votes"].get(candidate) == 0 and draw(st.booleans()):
                    del data["votes"][candidate]
            return Msg("valid", bureau.encode(), dumps(data), report=report)

        return make()

    def not_json(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            text = dumps(data)
            variant = draw(st.integers(0, 6))
            if variant == 0:  # cut short (the payload is ASCII: every cut is still UTF-8)
                payload = text[: draw(st.integers(1, len(text) - 1))]
            elif variant == 1:  # something after the object
                payload = text + draw(st.sampled_from(JSON_TAILS))
            elif variant == 2:  # Python's repr instead of JSON
                payload = text.replace(b'"', b"'")
            elif variant == 3:  # NaN and infinities are not JSON
                field = draw(st.sampled_from(NUMERIC_FIELDS))
                literal = draw(st.sampled_from(NOT_FINITE))
                payload = re.sub(
                    rf'"{field}": -?\d+'.encode(), f'"{field}": '.encode() + literal, text, count=1
                )
            elif variant == 4:  # trailing comma
                payload = text[:-1] + b",}"
            elif variant == 5:  # an HTML error page, a log line
                payload = b"<" + draw(st.text(string.printable, max_size=60)).encode()
            else:
                payload = draw(st.sampled_from(NOT_JSON))
            return Msg(
                "not_json",
                self._key(draw, data["bureau"]),
                payload,
                fragments=("payload is not valid JSON: ",),
            )

        return make()

    def not_object(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            value = draw(self.not_objects)
            kind = type(value).__name__
            key = self._key(draw, draw(self.bureau))
            return Msg("not_object", key, dumps(value), exact=f"payload must be a JSON object, got {kind}")

        return make()

    def empty(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            return Msg("empty", self._key(draw, draw(self.bureau)), b"", exact="empty message")

        return make()

    def wrong_type(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            field = draw(st.sampled_from(TYPED_FIELDS))
            if field in ("seq", "voters", "blank", "invalid"):
                data[field] = draw(st.sampled_from(WRONG_COUNTS))
                loc = field
            elif field == "registered":
                data[field] = draw(st.sampled_from(WRONG_REGISTERED))
                loc = field
            elif field == "votes.":
                candidate = draw(st.sampled_from(CANDIDATES))
                data["votes"][candidate] = draw(st.sampled_from(WRONG_COUNTS))
                loc = f"votes.{candidate}"
            elif field == "votes":
                data["votes"] = draw(st.sampled_from(WRONG_VOTES))
                loc = "votes"
            elif field == "votes-key":
                key = draw(st.sampled_from(BAD_CANDIDATE_IDS))
                data["votes"] = {key: 0, **data["votes"]}
                loc = f"votes.{key}.[key]"
            elif field in ("election", "bureau"):
                data[field] = draw(st.sampled_from(WRONG_IDS))
                loc = field
            else:
                data["reported_at"] = draw(st.sampled_from(WRONG_DATES))
                loc = "reported_at"
            key = draw(self.bureau).encode()
            return Msg("wrong_type", key, dumps(data), fragments=(f"{self._prefix(data)}field '{loc}': ",))

        return make()

    def missing(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            dropped = draw(st.lists(st.sampled_from(REQUIRED), min_size=1, max_size=3, unique=True))
            key = data["bureau"].encode()
            for name in dropped:
                del data[name]
            first, *rest = [f"missing field '{name}'" for name in REQUIRED if name in dropped]
            return Msg("missing", key, dumps(data), fragments=(self._prefix(data) + first, *rest))

        return make()

    def negative(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            field = draw(st.sampled_from(COUNT_FIELDS))
            value = -draw(st.integers(1, 10**12))
            self._set(data, field, value)
            fragments = (
                f"{self._prefix(data)}field '{field}': ",
                "greater than or equal to 0",
                f"(got {value})",
            )
            return Msg("negative", data["bureau"].encode(), dumps(data), fragments=fragments)

        return make()

    def huge(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            field = draw(st.sampled_from(COUNT_FIELDS))
            if draw(st.booleans()):
                value = draw(st.integers(MAX_COUNT + 1, 2**63 - 1))
                fragments = (
                    f"{self._prefix(data)}field '{field}': ",
                    f"less than or equal to {MAX_COUNT}",
                    f"(got {value})",
                )
            else:  # beyond 64 bits
                value = draw(st.integers(2**64, 10**40))
                fragments = (f"{self._prefix(data)}field '{field}': ", "valid integer")
            self._set(data, field, value)
            return Msg("huge", data["bureau"].encode(), dumps(data), fragments=fragments)

        return make()

    def sum_mismatch(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            ballots = data["blank"] + data["invalid"] + sum(data["votes"].values())
            delta = draw(st.integers(1, 500)) * (1 if draw(st.booleans()) else -1)
            if ballots + delta < 0:
                delta = -delta
            data["voters"] = ballots + delta
            reason = (
                f"bureau {data['bureau']}: blank + invalid + votes = {ballots}, voters = {ballots + delta}"
            )
            return Msg("sum_mismatch", data["bureau"].encode(), dumps(data), exact=reason)

        return make()

    def voters_over_given(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            roll = self.registered[data["bureau"]]
            given_registered = draw(st.integers(0, roll))
            voters = given_registered + draw(st.integers(1, 600))
            self._with_voters(data, voters, Random(draw(self.seed)))
            data["registered"] = given_registered
            reason = f"bureau {data['bureau']}: voters = {voters} exceeds registered = {given_registered}"
            return Msg("voters_over_given", data["bureau"].encode(), dumps(data), exact=reason)

        return make()

    def voters_over_roll(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            roll = self.registered[data["bureau"]]
            voters = roll + draw(st.integers(1, 2000))
            self._with_voters(data, voters, Random(draw(self.seed)))
            reason = f"bureau {data['bureau']}: voters = {voters} exceeds the roll's registered = {roll}"
            return Msg("voters_over_roll", data["bureau"].encode(), dumps(data), exact=reason)

        return make()

    def unknown_election(self) -> st.SearchStrategy[Msg]:
        ids = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=20)

        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            data["election"] = "zz-" + draw(ids)
            reason = f"bureau {data['bureau']}: unknown election {data['election']!r}"
            return Msg("unknown_election", data["bureau"].encode(), dumps(data), exact=reason)

        return make()

    def unknown_bureau(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            bureau = draw(self.new_bureau)
            data["bureau"] = bureau
            reason = f"bureau {bureau}: not in the roll of election {self.e}"
            return Msg("unknown_bureau", bureau.encode("utf-8"), dumps(data), exact=reason)

        return make()

    def unknown_candidate(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            unknown = draw(self.new_candidates)
            room = self.registered[data["bureau"]] - data["voters"]
            for name in unknown:
                count = draw(st.integers(0, max(0, min(room, 50))))
                room -= count
                data["votes"][name] = count
                data["voters"] += count
            names = sorted(unknown)
            reason = (
                f"bureau {data['bureau']}: unknown candidate{'s' if len(names) > 1 else ''} "
                f"{', '.join(names)}"
            )
            return Msg("unknown_candidate", data["bureau"].encode(), dumps(data), exact=reason)

        return make()

    def registered_mismatch(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            roll = self.registered[data["bureau"]]
            given_registered = draw(st.integers(0, MAX_COUNT))
            if given_registered == roll:
                given_registered += 1
            if data["voters"] > given_registered:
                self._with_voters(data, draw(st.integers(0, given_registered)), Random(draw(self.seed)))
            data["registered"] = given_registered
            reason = f"bureau {data['bureau']}: registered = {given_registered}, the roll says {roll}"
            return Msg("registered_mismatch", data["bureau"].encode(), dumps(data), exact=reason)

        return make()

    def bad_seq(self) -> st.SearchStrategy[Msg]:
        seqs = st.sampled_from([0, 0, 0, -1]) | st.integers(-(2**63), -1) | st.integers(2**62 + 1, 2**63 - 1)

        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            seq = draw(seqs)
            data["seq"] = seq
            fragments = (f"bureau {data['bureau']}: field 'seq': ", f"(got {seq})")
            return Msg("bad_seq", data["bureau"].encode(), dumps(data), fragments=fragments)

        return make()

    def oversized(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            size = draw(st.integers(LIMIT + 1, LIMIT + 3000))
            data = draw(self.trap)
            variant = draw(st.integers(0, 3))
            if variant == 0:  # a valid result with a long extra field: only its size is wrong
                data["comment"] = ""
                data["comment"] = "x" * (size - len(dumps(data)))
                payload = dumps(data)
            elif variant == 1:  # valid JSON padded with whitespace
                payload = dumps(data)
                payload += b" " * (size - len(payload))
            elif variant == 2:
                payload = (draw(st.sampled_from([b"x", b"{", b"[1,", b"0"])) * size)[:size]
            else:  # big and not UTF-8 either: the size is what is reported
                payload = b"\xff" * size
            assert len(payload) == size
            return Msg(
                "oversized",
                data["bureau"].encode(),
                payload,
                exact=f"payload of {size} bytes exceeds the limit of {LIMIT}",
            )

        return make()

    def non_utf8(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            bad = draw(st.sampled_from(BAD_BYTES))
            variant = draw(st.integers(0, 2))
            if variant == 0:  # inside a string of an otherwise valid result
                data["comment"] = "@@"
                payload = dumps(data).replace(b"@@", b"Saint-" + bad + b"tienne")
            elif variant == 1:  # a Latin-1 file
                data["bureau_name"] = "@@"
                payload = dumps(data).replace(b"@@", "Saint-Étienne".encode("latin-1"))
            else:  # binary noise
                noise = draw(st.binary(max_size=120))
                at = draw(st.integers(0, len(noise)))
                payload = noise[:at] + bad + noise[at:]
                if _is_utf8(payload):  # the noise completed the sequence (b"\xe2\x82" + b"\xac" is "€")
                    payload += b"\xff"
            return Msg("non_utf8", data["bureau"].encode(), payload, exact="payload is not valid UTF-8")

        return make()

    def wrong_key(self) -> st.SearchStrategy[Msg]:
        @st.composite
        def make(draw: st.DrawFn) -> Msg:
            data = draw(self.trap)
            bureau = data["bureau"]
            variant = draw(st.integers(0, 6))
            if variant == 6:
                key: bytes | None = draw(self.bureau.filter(lambda b: b != bureau)).encode()  # another bureau
            else:
                key = [
                    None,
                    b"",
                    bureau.lower().encode() + b" ",
                    bureau.encode() + b"\xff",
                    b"42",
                    b"\xff\xfe",
                ][variant]
            shown = None if key is None else key.decode("utf-8", "replace")
            return Msg(
                "wrong_key",
                key,
                dumps(data),
                exact=f"bureau {bureau}: message key {shown!r} must be the bureau id{KEY_SUFFIX}",
            )

        return make()


def draw_messages(election: Election) -> list[Msg]:
    """CHUNKS chunks of CHUNK, the same ones every run (derandomized, no example database)."""
    drawn: list[Msg] = []

    @settings(
        max_examples=CHUNKS,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(Generator(election).chunk())
    def collect(chunk: list[Msg]) -> None:
        drawn.extend(chunk)

    collect()
    return drawn


# -- the test ---------------------------------------------------------------------------------------


def make_bad_input_election() -> Election:
    return make_election(Random(4), f"bad-{uuid.uuid4().hex[:8]}", CANDIDATES, DEPARTMENTS)


def test_generated_malformed_messages_are_all_rejected_with_their_reason(stack: Any, tmp_path: Path) -> None:
    started = time.monotonic()
    election = make_bad_input_election()
    e = election.election
    messages = draw_messages(election)
    drawn_in = time.monotonic() - started
    invalid = [m for m in messages if m.kind != "valid"]
    valid = [m for m in messages if m.kind == "valid"]
    kinds = Counter(m.kind for m in messages)
    print(
        f"\n{len(messages)} messages drawn in {drawn_in:.1f} s: "
        f"{len(invalid)} invalid, {len(valid)} valid; {dict(kinds)}"
    )
    assert len(invalid) >= MIN_INVALID, kinds
    assert all(kinds[k] >= 30 for k in kinds if k not in ("empty", "oversized")), kinds
    assert kinds["oversized"] >= 10 and kinds["empty"] >= 3, kinds

    s: Stack = stack("badinput")
    s.register(election)
    ingested = ingest_dry_run(s, election, messages, tmp_path)  # before anything is published

    s.start_worker()
    s.publish([], raw=[(m.key, m.payload) for m in messages])
    published = time.monotonic()

    expected = truth(election, [m.report for m in valid if m.report is not None])
    deadline = 110 - (published - started)
    s.wait_until(
        lambda: not mismatches(s, election, expected), max(deadline / 2, 30), "the totals of every area"
    )
    s.wait_until(
        lambda: topic_size(s, s.settings.rejected_topic) >= len(invalid),
        max(deadline / 2, 30),
        f"{len(invalid)} rejections",
    )
    settled = time.monotonic()
    time.sleep(2)  # anything extra would show up now
    s.assert_workers_alive()

    # every valid one counted, to the vote, at every level; nothing where nothing valid came
    assert mismatches(s, election, expected) == []
    untouched = [area for area in bureaux_total(election) if area not in expected]
    assert [a for a in untouched if s.standings(e, *a) is not None] == []
    ghost_bureaux = {orjson.loads(m.payload)["bureau"] for m in invalid if m.kind == "unknown_bureau"}
    assert [b for b in sorted(ghost_bureaux)[:200] if s.standings(e, "bureau", b) is not None] == []

    # every invalid one rejected once, with its payload and the reason of its kind
    records = read_records(s, s.settings.rejected_topic)
    assert len(records) == len(invalid), f"{len(records)} rejections for {len(invalid)} invalid messages"
    pending: dict[tuple[str | None, str], list[Msg]] = defaultdict(list)
    for m in invalid:  # a rejection keeps the payload's first MAX_REJECTED_PAYLOAD characters
        pending[(_text(m.key), (_text(m.payload) or "")[:MAX_REJECTED_PAYLOAD])].append(m)
    wrong: list[str] = []
    sources: set[tuple[int, int]] = set()
    worker_reasons: dict[bytes, str] = {}
    for record in records:
        rejection = orjson.loads(record.value)
        assert record.key == (None if rejection["key"] is None else record.key)
        found = pending.get((rejection["key"], rejection["payload"]))
        if not found:
            wrong.append(f"unexpected rejection {rejection['reason']!r} of {rejection['payload'][:80]!r}")
            continue
        if rejection["payload_bytes"] != len(found[0].payload):
            wrong.append(
                f"payload_bytes {rejection['payload_bytes']} for a payload of {len(found[0].payload)} bytes"
            )
        if rejection["payload_truncated"] != (len(_text(found[0].payload) or "") > MAX_REJECTED_PAYLOAD):
            wrong.append(f"payload_truncated wrong for a payload of {len(found[0].payload)} bytes")
        match = next((m for m in found if m.reason_ok(rejection["reason"])), None)
        if match is None:
            m = found[0]
            wrong.append(
                f"{m.kind}: reason {rejection['reason']!r}, expected {m.expectation()} "
                f"for {rejection['payload'][:100]!r}"
            )
            found.pop(0)
            continue
        found.remove(match)
        worker_reasons[match.payload] = rejection["reason"]
        assert rejection["payload_utf8"] == _is_utf8(match.payload), rejection
        assert rejection["topic"] == s.settings.results_topic, rejection
        assert rejection["partition"] is not None and rejection["offset"] is not None, rejection
        sources.add((rejection["partition"], rejection["offset"]))
    missing = [m for group in pending.values() for m in group]
    assert not wrong, f"{len(wrong)} wrong rejections, e.g.:\n" + "\n".join(wrong[:20])
    assert not missing, (
        f"{len(missing)} invalid messages never rejected, "
        f"e.g. {[(m.kind, m.payload[:80]) for m in missing[:10]]}"
    )
    assert len(sources) == len(records)  # one rejection per input message

    # soiree ingest --dry-run gave each line the worker's reason, to the character
    differ = [
        f"{m.kind}: ingest said {said!r}, the worker {worker_reasons.get(m.payload)!r}"
        for m, said in ingested
        if said != _file_reason(m, worker_reasons.get(m.payload), e)
    ]
    assert not differ, f"{len(differ)} of {len(ingested)} lines, e.g.:\n" + "\n".join(differ[:20])
    s.assert_workers_alive()
    print(
        f"settled {settled - published:.1f} s after publishing; test took {time.monotonic() - started:.1f} s"
    )


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "backslashreplace")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- soiree ingest --dry-run ------------------------------------------------------------------


def _fits_a_file(m: Msg) -> bool:
    """Payloads that survive being a line of a JSONL file (ingest strips lines and skips blank ones;
    it fills in a missing election id; keys do not exist in a file)."""
    if m.kind == "wrong_key" or not m.payload.strip() or m.payload != m.payload.strip():
        return False
    if b"\n" in m.payload or b"\r" in m.payload:
        return False
    try:
        data = orjson.loads(m.payload)
    except orjson.JSONDecodeError:
        return True
    return not (isinstance(data, dict) and "election" not in data)


def _file_reason(m: Msg, worker_reason: str | None, election: str) -> str | None:
    """What ingest must say: the worker's reason, except that a file ingested for an election
    names the foreign election id instead of calling it unknown."""
    if m.kind != "unknown_election" or worker_reason is None:
        return worker_reason
    data = orjson.loads(m.payload)
    return f"bureau {data['bureau']}: election {data['election']!r} in a file ingested as {election!r}"


def run_ingest(s: Stack, path: Path, election: str) -> tuple[int, str]:
    env = {**s.env(), "COLUMNS": "100000", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [str(ROOT / ".venv/bin/soiree"), "ingest", str(path), "--election", election, "--dry-run"],
        env=env,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode in (0, 1, 2), done.stderr.decode(errors="replace")[-3000:]
    return done.returncode, done.stdout.decode("utf-8", "replace")


SUMMARY = re.compile(
    r"^([\d,]+) accepted \(validated\)(?:, ([\d,]+) already applied \(skipped\))?, ([\d,]+) rejected$", re.M
)
EXAMPLE = re.compile(r"^  line (\d+): (.*)$", re.M)
MARKUP = re.compile(r"\[[a-z#/@]")  # what Rich takes for a tag


def ingest_dry_run(
    s: Stack, election: Election, messages: list[Msg], tmp_path: Path
) -> list[tuple[Msg, str | None]]:
    """The same payloads as a JSONL file through ``soiree ingest --dry-run``: the accepted / rejected
    counts of a 1,500-line sample, and the reason printed for each of a few lines of every kind
    (returned, to be compared with the worker's). Nothing may be published."""
    e = election.election
    # (reasons that Rich would read as markup, "[key]", "[/x]", are test_ingest_prints_reasons_verbatim's)
    sample = [m for m in messages if _fits_a_file(m) and not MARKUP.search(m.expectation())][:1500]
    whole = tmp_path / "sample.jsonl"
    whole.write_bytes(b"".join(m.payload + b"\n" for m in sample))
    _, out = run_ingest(s, whole, e)
    summary = SUMMARY.search(out)
    assert summary, out[-2000:]
    accepted = sum(1 for m in sample if m.kind == "valid")
    number = lambda text: int((text or "0").replace(",", ""))  # noqa: E731
    # a valid line repeating an earlier one of the file (same seq, same counts) is skipped
    got = (number(summary[1]) + number(summary[2]), number(summary[3]))
    assert got == (accepted, len(sample) - accepted), out[-2000:]

    per_kind: dict[str, list[Msg]] = defaultdict(list)
    for m in sample:
        if m.kind != "valid" and len(per_kind[m.kind]) < 6:
            per_kind[m.kind].append(m)
    lines = [m for group in per_kind.values() for m in group]
    said: list[tuple[Msg, str | None]] = []
    for start in range(0, len(lines), 5):  # five lines per run: ingest prints the first five reasons
        chunk = lines[start : start + 5]
        path = tmp_path / f"chunk-{start}.jsonl"
        path.write_bytes(b"".join(m.payload + b"\n" for m in chunk))
        _, out = run_ingest(s, path, e)
        reasons = {int(n): reason for n, reason in EXAMPLE.findall(out)}
        said.extend((m, reasons.get(n)) for n, m in enumerate(chunk, 1))
    assert (
        topic_size(s, s.settings.rejected_topic) == 0 and topic_size(s, s.settings.results_topic) == 0
    )  # dry run
    return said


# -- edges found on the way ----------------------------------------------------------------------


NOT_AN_ID = "not an id (letters, digits, '.', '_', an apostrophe or '-', words separated by single spaces)"


def test_ingest_prints_reasons_verbatim(stack: Any, tmp_path: Path) -> None:
    """Reasons quote the input (candidate and bureau ids, pydantic's ``[key]``); ingest must print
    them as they are, not as Rich markup: "[key]" vanished from the output, and "[/x]" crashed it."""
    s: Stack = stack("ingestmarkup")
    election = make_bad_input_election()
    s.register(election)
    e, bureau = election.election, election.bureaux[0].bureau
    lines = [
        (
            {"votes": {"": 1}},
            f"bureau {bureau}: field 'votes..[key]': String should have at least 1 character (got '')",
        ),
        (
            {"votes": {"[bold]X": 1}},
            f"bureau {bureau}: field 'votes.[bold]X.[key]': {NOT_AN_ID} (got '[bold]X')",
        ),
        ({"votes": {"[/x]": 1}}, f"bureau {bureau}: field 'votes.[/x].[key]': {NOT_AN_ID} (got '[/x]')"),
        ({"bureau": "[red]42-1"}, f"field 'bureau': {NOT_AN_ID} (got '[red]42-1')"),
    ]
    path = tmp_path / "markup.jsonl"
    base = {
        "election": e,
        "bureau": bureau,
        "seq": 1,
        "voters": 1,
        "blank": 0,
        "invalid": 0,
        "votes": {"MACRON": 1},
    }
    path.write_bytes(b"".join(dumps({**base, **change}) + b"\n" for change, _ in lines))
    env = {**s.env(), "COLUMNS": "100000", "NO_COLOR": "1", "TERM": "dumb"}
    for dry_run in (["--dry-run"], []):
        done = subprocess.run(
            [str(ROOT / ".venv/bin/soiree"), "ingest", str(path), "--election", e, *dry_run],
            env=env,
            capture_output=True,
            cwd=ROOT,
            timeout=120,
        )
        out = done.stdout.decode("utf-8", "replace")
        assert done.returncode == 2, (
            done.returncode,
            out[-1000:],
            done.stderr.decode(errors="replace")[-3000:],
        )
        verb = "validated" if dry_run else "published"
        assert f"0 accepted ({verb}), {len(lines)} rejected" in out, out
        printed = {int(n): reason for n, reason in EXAMPLE.findall(out)}
        assert printed == {n: reason for n, (_, reason) in enumerate(lines, 1)}, out
    sent = sorted(orjson.loads(r.value)["reason"] for r in read_records(s, s.settings.rejected_topic))
    assert sent == sorted(reason for _, reason in lines)


def test_rejections_too_big_for_the_broker_are_not_lost(stack: Any) -> None:
    """A rejection carries its payload, escaped: an oversized payload of 300,000 non-UTF-8 bytes
    becomes a 1.5 MB rejection, 600,000 quotes a 1.2 MB one, over Kafka's default 1 MB limit.
    Such a rejection must still reach the dead-letter topic (with the payload cut if need be),
    the worker must go on, and the valid report behind them must be counted."""
    s: Stack = stack("bigreject")
    election = make_bad_input_election()
    s.register(election)
    e, bureau = election.election, election.bureaux[0].bureau
    big = [b"\xff" * 300_000, b'"' * 600_000, b"x" * 1_040_000]
    valid = {
        "election": e,
        "bureau": bureau,
        "seq": 1,
        "voters": 10,
        "blank": 0,
        "invalid": 0,
        "votes": {"MACRON": 10},
    }
    s.start_worker()
    s.publish([], raw=[(bureau.encode(), payload) for payload in big] + [(bureau.encode(), dumps(valid))])
    counted = lambda: (nation := s.standings(e, "nation", "FR")) is not None and nation.voters == 10  # noqa: E731
    s.wait_until(counted, 60, "the valid report behind the big ones")
    time.sleep(3)
    s.assert_workers_alive()
    rejections = [orjson.loads(r.value) for r in read_records(s, s.settings.rejected_topic)]
    by_offset = {r["offset"]: r for r in rejections}
    assert sorted(by_offset) == [0, 1, 2], (
        f"rejections of offsets {sorted(by_offset)}: {[r['reason'] for r in rejections]}"
    )
    for offset, payload in enumerate(big):
        rejection = by_offset[offset]
        assert rejection["reason"] == f"payload of {len(payload)} bytes exceeds the limit of {LIMIT}"
        text = payload.decode("utf-8", "backslashreplace")
        assert rejection["payload"] and text.startswith(rejection["payload"]), offset
        assert rejection["payload_utf8"] == _is_utf8(payload)
