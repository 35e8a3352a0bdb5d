"""The message rules of PRODUCT.md, as enforced by ``stream.models`` (pure: no Kafka, no Redis).

Every rejection must be an ``InvalidResult`` whose text names the bureau (when there is one) and
the numbers or field at fault; nothing else may escape ``parse_result`` / ``validate_result``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from stream.domain.messages import (
    ID_PATTERN,
    MAX_COUNT,
    NATION,
    BureauResult,
    Election,
    InvalidResult,
    Rejection,
    Standings,
    UpdateEvent,
    check_against_election,
    parse_result,
    validate_result,
)

BUREAU = "42218-0001"

ELECTION_DEF: dict[str, Any] = {
    "election": "pres2017-t1",
    "name": "Présidentielle 2017, 1er tour",
    "candidates": [
        {"id": "MACRON", "name": "Emmanuel Macron"},
        {"id": "LE PEN", "name": "Marine Le Pen"},
        {"id": "HAMON", "name": "Benoît Hamon"},
    ],
    "bureaux": [
        {
            "bureau": "42218-0001",
            "commune": "42218",
            "commune_name": "Saint-Étienne",
            "department": "42",
            "department_name": "Loire",
            "registered": 812,
        },
        {
            "bureau": "42218-0002",
            "commune": "42218",
            "commune_name": "Saint-Étienne",
            "department": "42",
            "department_name": "Loire",
            "registered": 700,
        },
        {
            "bureau": "42001-0001",
            "commune": "42001",
            "commune_name": "",
            "department": "42",
            "department_name": "Loire",
            "registered": 300,
        },
        {
            "bureau": "2A004-0001",
            "commune": "2A004",
            "commune_name": "Ajaccio",
            "department": "2A",
            "department_name": "",
            "registered": 500,
        },
    ],
}
ELECTION = Election.model_validate(ELECTION_DEF)
ELECTIONS = {ELECTION.election: ELECTION}


def result(**changes: Any) -> dict[str, Any]:
    """PRODUCT.md's example result (170 + 150 + 307 + 9 + 4 = 640 voters), with ``changes``."""
    data: dict[str, Any] = {
        "election": "pres2017-t1",
        "bureau": BUREAU,
        "seq": 1,
        "reported_at": "2017-04-23T20:14:00+02:00",
        "registered": 812,
        "voters": 640,
        "blank": 9,
        "invalid": 4,
        "votes": {"MACRON": 170, "LE PEN": 150, "HAMON": 307},
    }
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key, None)
        else:
            data[key] = value
    return data


_DROP = object()


def raw(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def rejected(payload: bytes | str, max_bytes: int = 65536) -> str:
    """The reason ``validate_result`` gives; fails the test if it accepts or raises anything else."""
    with pytest.raises(InvalidResult) as info:
        validate_result(payload, ELECTIONS, max_bytes)
    reason = str(info.value)
    assert reason and "Traceback" not in reason and "\n" not in reason
    return reason


# -- accepted ---------------------------------------------------------------------------------


def test_the_product_example_is_accepted_from_bytes_and_str() -> None:
    for payload in (raw(result()), raw(result()).decode()):
        parsed = validate_result(payload, ELECTIONS)
        assert parsed.bureau == BUREAU and parsed.seq == 1
        assert (parsed.registered, parsed.voters, parsed.blank, parsed.invalid) == (812, 640, 9, 4)
        assert parsed.votes == {"MACRON": 170, "LE PEN": 150, "HAMON": 307}
        assert parsed.reported_at is not None
        assert parsed.reported_at.isoformat() == "2017-04-23T20:14:00+02:00"


def test_optional_fields_missing_candidates_and_extra_fields() -> None:
    # registered and reported_at are optional; a missing candidate counts 0; unknown fields are ignored
    data = result(registered=_DROP, reported_at=_DROP, votes={"MACRON": 627}, comment="late")
    parsed = validate_result(raw(data), ELECTIONS)
    assert parsed.registered is None and parsed.reported_at is None
    assert parsed.votes == {"MACRON": 627}


def test_boundaries_are_accepted() -> None:
    # voters == registered (roll), zero everywhere, MAX_COUNT itself
    validate_result(raw(result(voters=812, blank=9 + 172, invalid=4)), ELECTIONS)
    validate_result(raw(result(voters=0, blank=0, invalid=0, votes={})), ELECTIONS)
    parse_result(raw(result(registered=MAX_COUNT, voters=MAX_COUNT, blank=MAX_COUNT, invalid=0, votes={})))
    parse_result(raw(result(seq=2**62)))


# -- blank + invalid + sum(votes) == voters ---------------------------------------------------


def test_ballots_not_adding_up_are_named_with_the_numbers() -> None:
    assert rejected(raw(result(blank=10))) == "bureau 42218-0001: blank + invalid + votes = 641, voters = 640"
    assert (
        rejected(raw(result(voters=641))) == "bureau 42218-0001: blank + invalid + votes = 640, voters = 641"
    )


@settings(max_examples=80, deadline=None)
@given(
    blank=st.integers(0, 5000),
    invalid=st.integers(0, 5000),
    votes=st.lists(st.integers(0, 100_000), max_size=3),
    delta=st.integers(-300, 300),
)
def test_sum_rule_property(blank: int, invalid: int, votes: list[int], delta: int) -> None:
    ids = ["MACRON", "LE PEN", "HAMON"][: len(votes)]
    ballots = blank + invalid + sum(votes)
    voters = ballots + delta
    data = result(registered=_DROP, voters=voters, blank=blank, invalid=invalid, votes=dict(zip(ids, votes)))
    if voters < 0:
        with pytest.raises(InvalidResult, match=r"field 'voters'.*greater than or equal to 0"):
            parse_result(raw(data))
    elif delta == 0:
        assert parse_result(raw(data)).voters == ballots
    else:
        with pytest.raises(InvalidResult) as info:
            parse_result(raw(data))
        assert str(info.value) == f"bureau {BUREAU}: blank + invalid + votes = {ballots}, voters = {voters}"


# -- voters <= registered ----------------------------------------------------------------------


def test_voters_above_the_given_registered() -> None:
    data = result(registered=600)
    assert rejected(raw(data)) == "bureau 42218-0001: voters = 640 exceeds registered = 600"


def test_voters_above_the_rolls_registered_when_not_given() -> None:
    data = result(registered=_DROP, voters=813, blank=9 + 173)
    assert rejected(raw(data)) == "bureau 42218-0001: voters = 813 exceeds the roll's registered = 812"


def test_registered_must_equal_the_roll() -> None:
    assert rejected(raw(result(registered=811))) == "bureau 42218-0001: registered = 811, the roll says 812"
    # bigger than the roll, even with voters under it
    assert rejected(raw(result(registered=900))) == "bureau 42218-0001: registered = 900, the roll says 812"


# -- non-negative integers up to MAX_COUNT ------------------------------------------------------

COUNT_FIELDS = ["registered", "voters", "blank", "invalid"]


def with_value(field: str, value: Any) -> dict[str, Any]:
    if field.startswith("votes."):
        candidate = field.split(".", 1)[1]
        return result(votes={**result()["votes"], candidate: value})
    return result(**{field: value})


WRONG_TYPES = {
    "str": "9",
    "float-int": 9.0,
    "float": 9.5,
    "true": True,
    "false": False,
    "null": None,
    "list": [9],
    "object": {"n": 9},
    "empty-str": "",
    "big-float": 1e20,
}


@pytest.mark.parametrize(
    "field, value",
    [
        pytest.param(field, value, id=f"{field}-{name}")
        for field in COUNT_FIELDS + ["votes.MACRON", "seq"]
        for name, value in WRONG_TYPES.items()
        if not (field == "registered" and value is None)  # registered: null means "not given"
    ],
)
def test_counts_of_the_wrong_type(field: str, value: Any) -> None:
    reason = rejected(raw(with_value(field, value)))
    assert reason.startswith(f"bureau {BUREAU}: field '{field}': "), reason
    assert "integer" in reason or "valid" in reason, reason


@pytest.mark.parametrize("field", COUNT_FIELDS + ["votes.MACRON"])
def test_negative_counts(field: str) -> None:
    reason = rejected(raw(with_value(field, -1)))
    assert reason.startswith(f"bureau {BUREAU}: field '{field}': "), reason
    assert "greater than or equal to 0" in reason and "(got -1)" in reason


@pytest.mark.parametrize("field", COUNT_FIELDS + ["votes.MACRON"])
def test_counts_above_max_count(field: str) -> None:
    reason = rejected(raw(with_value(field, MAX_COUNT + 1)))
    assert reason.startswith(f"bureau {BUREAU}: field '{field}': "), reason
    assert f"(got {MAX_COUNT + 1})" in reason


def test_integers_beyond_64_bits_are_rejected_not_crashing() -> None:
    payload = raw(result()).replace(b'"voters": 640', b'"voters": 123456789012345678901234567890')
    assert b"123456789012345678901234567890" in payload
    reason = rejected(payload)
    assert "'voters'" in reason


@pytest.mark.parametrize("seq", [0, -1, 2**62 + 1])
def test_seq_must_be_at_least_one(seq: int) -> None:
    reason = rejected(raw(result(seq=seq)))
    assert reason.startswith(f"bureau {BUREAU}: field 'seq': "), reason
    assert f"(got {seq})" in reason


# -- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "MAC|RON", "x" * 65])
def test_bad_candidate_keys(key: str) -> None:
    data = result(votes={key: 627})
    reason = rejected(raw(data))
    assert reason.startswith(f"bureau {BUREAU}: field 'votes"), reason


def test_bureau_id_with_a_pipe() -> None:
    reason = rejected(raw(result(bureau="42218|0001")))
    assert "'bureau'" in reason and "42218|0001" in reason


# -- missing fields -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["election", "seq", "voters", "blank", "invalid", "votes"])
def test_missing_fields_are_named(field: str) -> None:
    assert rejected(raw(result(**{field: _DROP}))) == f"bureau {BUREAU}: missing field '{field}'"


def test_missing_bureau_is_named() -> None:
    assert rejected(raw(result(bureau=_DROP))) == "missing field 'bureau'"


def test_several_problems_are_all_listed() -> None:
    reason = rejected(raw(result(voters=_DROP, blank="9", seq=0)))
    assert reason.startswith(f"bureau {BUREAU}: ")
    assert "missing field 'voters'" in reason and "field 'blank'" in reason and "field 'seq'" in reason
    assert reason.count(f"bureau {BUREAU}") == 1


# -- payload-level problems ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"{", b'{"bureau": "42218-0001",}', b"{'bureau': 1}", b'{"voters": NaN}', b"   ", b"\x00", b"{}{}"],
)
def test_broken_json(payload: bytes) -> None:
    assert rejected(payload).startswith("payload is not valid JSON")


@pytest.mark.parametrize(
    "payload",
    [
        raw(result(note="x")).replace(b'"x"', b'"\xff"'),  # inside a string
        '{"bureau": "Saint-Étienne"}'.encode("latin-1"),
        b"\xff\xfe{\x00}\x00",
        b"\xc3",
    ],
)
def test_non_utf8(payload: bytes) -> None:
    assert rejected(payload) == "payload is not valid UTF-8"


@pytest.mark.parametrize(
    "payload, kind",
    [
        (b"[]", "list"),
        (b"[1, 2]", "list"),
        (b"1", "int"),
        (b'"x"', "str"),
        (b"true", "bool"),
        (b"1.5", "float"),
    ],
)
def test_non_object_json(payload: bytes, kind: str) -> None:
    assert rejected(payload) == f"payload must be a JSON object, got {kind}"


def test_json_null() -> None:
    reason = rejected(b"null")
    assert reason.startswith("payload must be a JSON object")


@pytest.mark.parametrize("payload", [b"", ""])
def test_empty_payload(payload: bytes | str) -> None:
    assert rejected(payload) == "empty message"


def test_oversized_payload_is_rejected_before_parsing() -> None:
    body = raw(result())
    limit = 1024
    exact = body + b" " * (limit - len(body))  # trailing whitespace is valid JSON
    assert len(exact) == limit
    assert validate_result(exact, ELECTIONS, max_bytes=limit).voters == 640
    too_big = exact + b" "
    assert rejected(too_big, max_bytes=limit) == f"payload of {limit + 1} bytes exceeds the limit of {limit}"
    # even broken JSON that is too long is refused for its size
    assert rejected(b"x" * 5000, max_bytes=limit) == f"payload of 5000 bytes exceeds the limit of {limit}"


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    text = raw(result(note="é" * 600)).decode()
    size = len(text.encode())
    assert len(text) < 1024 < size
    assert rejected(text, max_bytes=1024) == f"payload of {size} bytes exceeds the limit of 1024"


def test_str_payload_with_lone_surrogate_is_rejected() -> None:
    # parse_result is typed ``bytes | str``; a str that cannot be UTF-8 is an InvalidResult.
    with pytest.raises(InvalidResult, match="not valid UTF-8"):
        parse_result('{"bureau": "\ud800"}')


def test_result_checked_against_another_election_is_rejected() -> None:
    elsewhere = BureauResult.model_validate(result(election="somewhere-else"))
    with pytest.raises(InvalidResult, match="unknown election 'somewhere-else'"):
        check_against_election(elsewhere, ELECTION)


# -- fuzz: nothing but InvalidResult ever escapes --------------------------------------------------


def outcome(payload: bytes | str) -> BureauResult | str:
    try:
        return validate_result(payload, ELECTIONS, 4096)
    except InvalidResult as exc:
        reason = str(exc)
        assert reason and "Traceback" not in reason
        return reason


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes(payload: bytes) -> None:
    outcome(payload)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


FIELDS = ["election", "bureau", "seq", "reported_at", "registered", "voters", "blank", "invalid", "votes"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
    st.sets(st.sampled_from(FIELDS), max_size=2),
)
def test_fuzz_fields(replaced: dict[str, Any], dropped: set[str]) -> None:
    data = {**result(), **replaced}
    for key in dropped:
        data.pop(key, None)
    got = outcome(raw(data))
    if isinstance(got, str) and isinstance(data.get("bureau"), str) and data["bureau"]:
        # a result that names its bureau is rejected with that bureau in the reason (unless the
        # payload failed before field checks, i.e. size); a bureau that is no id (a control
        # character, a ':') is never written raw: the reason names the field, the value quoted
        bureau = data["bureau"]
        if len(bureau) <= 64 and re.fullmatch(ID_PATTERN, bureau):
            assert bureau in got or got.startswith("payload of"), got
        else:
            assert "field 'bureau'" in got or got.startswith("payload of"), got


# -- the rules that need the roll ---------------------------------------------------------------


def test_unknown_election() -> None:
    assert (
        rejected(raw(result(election="pres2022-t1"))) == "bureau 42218-0001: unknown election 'pres2022-t1'"
    )
    parsed = parse_result(raw(result()))
    with pytest.raises(InvalidResult, match="^bureau 42218-0001: unknown election 'pres2017-t1'$"):
        check_against_election(parsed, None)


def test_bureau_not_in_the_roll() -> None:
    assert (
        rejected(raw(result(bureau="42218-0099")))
        == "bureau 42218-0099: not in the roll of election pres2017-t1"
    )


def test_unknown_candidates_are_listed_sorted() -> None:
    one = result(votes={"MACRON": 170, "FILLON": 457})
    assert rejected(raw(one)) == "bureau 42218-0001: unknown candidate FILLON"
    many = result(
        votes={
            "MACRON": 170,
            "ZEMMOUR": 400,
            "FILLON": 50,
            "ARTHAUD": 1,
            "POUTOU": 2,
            "CHEMINADE": 3,
            "LASSALLE": 1,
        }
    )
    assert rejected(raw(many)) == (
        "bureau 42218-0001: unknown candidates ARTHAUD, CHEMINADE, FILLON, LASSALLE, POUTOU, ZEMMOUR"
    )


def test_candidate_ids_are_case_sensitive() -> None:
    assert rejected(raw(result(votes={"macron": 627}))) == "bureau 42218-0001: unknown candidate macron"


def test_roll_check_passes_for_a_valid_result_of_another_bureau() -> None:
    data = result(bureau="2A004-0001", registered=500, voters=500, blank=0, invalid=0, votes={"HAMON": 500})
    assert validate_result(raw(data), ELECTIONS).voters == 500


# -- the election definition ---------------------------------------------------------------------


def election_with(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(ELECTION_DEF))
    data.update(changes)
    return data


def invalid_election(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        Election.model_validate(data)
    return str(info.value)


def test_duplicate_candidate() -> None:
    data = election_with(candidates=ELECTION_DEF["candidates"] + [{"id": "HAMON", "name": "again"}])
    assert "election pres2017-t1: candidate 'HAMON' appears twice" in invalid_election(data)


def test_duplicate_bureau() -> None:
    data = election_with(bureaux=ELECTION_DEF["bureaux"] + [dict(ELECTION_DEF["bureaux"][2])])
    assert "election pres2017-t1: bureau '42001-0001' appears twice" in invalid_election(data)


def test_commune_must_start_with_its_department() -> None:
    entry = {**ELECTION_DEF["bureaux"][0], "bureau": "69123-0001", "commune": "69123"}
    message = invalid_election(election_with(bureaux=[entry]))
    assert "bureau 69123-0001: commune id '69123' must start with its department code '42'" in message


def test_commune_in_two_departments() -> None:
    # "42218" starts with both "4" and "42": each entry alone is fine, together they are not
    first = ELECTION_DEF["bureaux"][0]
    second = {**first, "bureau": "42218-0009", "department": "4"}
    Election.model_validate(election_with(bureaux=[first]))
    Election.model_validate(election_with(bureaux=[second]))
    assert "election pres2017-t1: commune 42218 is in two departments" in invalid_election(
        election_with(bureaux=[first, second])
    )


@pytest.mark.parametrize(
    "where",
    ["election", "candidate", "bureau", "commune", "department"],
)
def test_ids_may_not_contain_a_pipe(where: str) -> None:
    data = election_with()
    if where == "election":
        data["election"] = "pres|2017"
    elif where == "candidate":
        data["candidates"][0]["id"] = "MAC|RON"
    elif where == "bureau":
        data["bureaux"][0]["bureau"] = "42218|0001"
    elif where == "commune":
        data["bureaux"][0]["commune"] = "42|218"
        data["bureaux"][1]["commune"] = "42|218"
    else:
        for entry in data["bureaux"][:3]:
            entry["department"] = "4|"
    assert "pattern" in invalid_election(data)


@pytest.mark.parametrize("field", ["candidates", "bureaux"])
def test_election_needs_candidates_and_bureaux(field: str) -> None:
    assert field in invalid_election(election_with(**{field: []}))


@pytest.mark.parametrize("registered", [-1, MAX_COUNT + 1, "812", 812.0, True])
def test_roll_registered_is_a_count(registered: Any) -> None:
    data = election_with()
    data["bureaux"][0]["registered"] = registered
    assert "registered" in invalid_election(data)


def test_roll_and_candidate_ids() -> None:
    assert set(ELECTION.roll) == {b["bureau"] for b in ELECTION_DEF["bureaux"]}
    assert ELECTION.roll["2A004-0001"].registered == 500
    assert ELECTION.roll is ELECTION.roll  # cached
    assert ELECTION.candidate_ids == {"MACRON", "LE PEN", "HAMON"}


def test_areas_names_and_totals() -> None:
    regions = {"42": "84", "75": "11", "2A": "94"}  # INSEE: Auvergne-Rhône-Alpes, Île-de-France, Corse
    expected_totals: Counter[tuple[str, str]] = Counter()
    expected_registered: Counter[tuple[str, str]] = Counter()
    for entry in ELECTION_DEF["bureaux"]:
        places = [
            ("bureau", entry["bureau"]),
            ("commune", entry["commune"]),
            ("department", entry["department"]),
            ("region", regions[entry["department"]]),
            ("nation", NATION),
        ]
        for place in places:
            expected_totals[place] += 1
            expected_registered[place] += entry["registered"]
    areas = ELECTION.areas
    assert {key: total for key, (_, total, _) in areas.items()} == dict(expected_totals)
    assert {key: registered for key, (_, _, registered) in areas.items()} == dict(expected_registered)
    assert areas[("nation", "FR")][:2] == ("France", 4)
    assert areas[("department", "42")][:2] == ("Loire", 3)
    assert areas[("region", "84")][:2] == ("Auvergne-Rhône-Alpes", 3)
    assert areas[("department", "2A")][:2] == ("2A", 1)  # no name: the code
    assert areas[("commune", "42218")][:2] == ("Saint-Étienne", 2)
    assert areas[("commune", "42001")][:2] == ("42001", 1)  # no name: the id
    assert areas[("bureau", "42218-0001")][:2] == ("Saint-Étienne 42218-0001", 1)
    assert areas[("bureau", "42001-0001")][:2] == ("42001-0001", 1)
    assert ELECTION.areas is areas


def test_parent_of_walks_up_to_the_nation() -> None:
    chain = [("bureau", "2A004-0001")]
    while (parent := ELECTION.parent_of(*chain[-1])) is not None:
        chain.append(parent)
    assert chain == [("bureau", "2A004-0001"), ("commune", "2A004"), ("department", "2A"), ("nation", "FR")]
    assert ELECTION.parent_of("commune", "42001") == ("department", "42")


def test_election_is_frozen_and_cached_properties_stay_out_of_its_data() -> None:
    election = Election.model_validate(ELECTION_DEF)
    _ = election.roll, election.areas, election.candidate_ids, election.roll_by_commune
    with pytest.raises(ValidationError):
        election.name = "other"  # type: ignore[misc]
    assert set(election.model_dump()) == {
        "election",
        "name",
        "candidates",
        "bureaux",
        "compare_to",
        "round",
        "qualify",
        "publish_after",
        "rehearsal",
        "races",
        "revision",
        "require_signature",
    }
    assert election == Election.model_validate_json(election.model_dump_json())


# -- JSON schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [Standings, UpdateEvent, BureauResult, Election, Rejection])
def test_json_schemas_export(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    json.dumps(schema)
    assert schema["type"] == "object" and schema["properties"]


def test_update_event_and_standings_schemas_have_the_product_fields() -> None:
    event = UpdateEvent.model_json_schema()
    assert {
        "election",
        "kind",
        "level",
        "area",
        "name",
        "leader",
        "previous_leader",
        "margin",
        "turnout",
        "previous_turnout",
        "bureaux_reported",
        "bureaux_total",
        "at",
        "cause",
    } <= set(event["properties"])
    assert set(event["properties"]["kind"]["enum"]) >= {"leader_changed", "turnout_changed", "complete"}
    standings = Standings.model_json_schema()
    assert {
        "election",
        "level",
        "area",
        "name",
        "registered",
        "voters",
        "blank",
        "invalid",
        "expressed",
        "votes",
        "shares",
        "turnout",
        "leader",
        "margin",
        "bureaux_reported",
        "bureaux_total",
    } <= set(standings["properties"])
    assert orjson.loads(orjson.dumps(standings)) == standings


def test_publish_after_needs_its_time_zone() -> None:
    """20:00 in Paris is not 20:00 in Nouméa: an embargo without a zone is refused."""
    with_zone = Election.model_validate({**ELECTION_DEF, "publish_after": "2017-05-07T20:00:00+02:00"})
    assert with_zone.publish_after is not None and with_zone.publish_after.utcoffset() is not None
    with pytest.raises(ValidationError, match="timezone"):
        Election.model_validate({**ELECTION_DEF, "publish_after": "2017-05-07T20:00:00"})
    assert Election.model_validate(ELECTION_DEF).rehearsal is False


@pytest.mark.parametrize(
    "good",
    ["42218-0001", "MÉLENCHON", "LE PEN", "d'Estaing", "ZZ001-BV01", "Saint-Étienne", "42-01-03", "a.b_c"],
)
def test_ids_of_the_contract_are_accepted(good: str) -> None:
    parse_result(orjson.dumps(result(bureau=good, votes={good: 640 - 13}, registered=None)))


@pytest.mark.parametrize(
    "bad", ["42:1", "a|b", "x*", "{x}", "LE  PEN", " LE", "LE ", "a\nb", "a\x00b", "é/è"]
)
def test_ids_outside_the_contract_are_refused_without_echoing_them_raw(bad: str) -> None:
    with pytest.raises(InvalidResult) as refused:
        parse_result(orjson.dumps(result(bureau=bad)))
    reason = str(refused.value)
    assert reason.startswith("field 'bureau': not an id (letters, digits, '.', '_', an apostrophe or '-'")
    assert "\n" not in reason and "\x00" not in reason  # the value is shown quoted (repr)
