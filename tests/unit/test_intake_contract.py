"""The intake accepts exactly what the published contract accepts: hypothesis-generated hostile
payloads are judged by an oracle built from `schemas/event.schema.json` and I-JSON (see
tests/support/hostile.py), never by the engine's own parser, and the intake must agree with it
on every one, reason included. The named cases are the disagreements this found."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sme.contracts.events import MAX_NESTING, Event
from sme.core.intake import Rejection, parse_event
from tests.support.hostile import Hostile, base_event, expected_rejection, hostile_payloads

LIMIT = 4096
NOW = "2026-11-28T09:15:00+01:00"


def outcome(raw: bytes | None) -> str | None:
    result = parse_event(raw, LIMIT)
    return result.reason.value if isinstance(result, Rejection) else None


def with_fields(**changes: object) -> bytes:
    return orjson.dumps({**base_event(1, NOW), **changes})


@settings(max_examples=1500, derandomize=True, database=None, deadline=None)
@given(hostile_payloads(LIMIT), st.integers(min_value=0, max_value=10**6))
def test_the_intake_agrees_with_the_contract_on_generated_hostile_payloads(
    payload: Hostile, n: int
) -> None:
    raw = payload.render(base_event(n, NOW))

    assert outcome(raw) == expected_rejection(raw, LIMIT), (raw or b"")[:300]


@pytest.mark.parametrize(
    "occurred_at",
    [
        1764321300,  # unix seconds
        1764321300500,  # unix milliseconds
        1764321300.5,
        "1764321300",
        "2026-11-28 09:15:00+01:00",  # space instead of T
        "2026-11-28T09:15+01:00",  # no seconds
        "2026-11-28T09:15:00+0100",  # offset without a colon
        "2026-11-28T09:15:00,5+01:00",  # decimal comma
        "2026-11-28",
    ],
)
def test_occurred_at_must_be_an_rfc_3339_string(occurred_at: object) -> None:
    raw = with_fields(occurred_at=occurred_at)

    assert expected_rejection(raw, LIMIT) == "validation_failed"
    result = parse_event(raw, LIMIT)
    assert isinstance(result, Rejection)
    assert [e.loc for e in result.errors] == ["occurred_at"]


@pytest.mark.parametrize(
    "occurred_at",
    ["2026-11-28T09:15:00Z", "2026-11-28t09:15:00.123456789z", "2026-11-28T09:15:00-00:00"],
)
def test_rfc_3339_variants_are_accepted(occurred_at: str) -> None:
    assert outcome(with_fields(occurred_at=occurred_at)) is None


def test_a_python_datetime_still_builds_an_event() -> None:
    from datetime import UTC, datetime

    event = Event(
        event_id="e",
        workspace_id="w",
        user_id="u",
        type="signed_up",
        occurred_at=datetime(2026, 11, 28, tzinfo=UTC),
    )
    assert event.occurred_at.year == 2026


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "0"])
def test_consent_must_be_a_json_boolean(value: object) -> None:
    raw = with_fields(user={"consent": {"email": value}})

    assert outcome(raw) == expected_rejection(raw, LIMIT) == "validation_failed"


@pytest.mark.parametrize("field", ["event_id", "workspace_id", "user_id", "command_id"])
@pytest.mark.parametrize("blank", [" ", "\t\n"])
def test_a_blank_identifier_is_rejected_by_the_schema_and_the_intake(
    field: str, blank: str
) -> None:
    raw = with_fields(**{field: blank})

    assert outcome(raw) == expected_rejection(raw, LIMIT) == "validation_failed"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"e","workspace_id":"w","user_id":"u","user_id":"v","type":"signed_up",'
        b'"occurred_at":"2026-11-28T09:15:00Z"}',
        b'{"event_id":"e","workspace_id":"w","user_id":"u","type":"signed_up",'
        b'"occurred_at":"2026-11-28T09:15:00Z","properties":{"a":1,"a":1}}',
        b'{"event_id":"e","workspace_id":"w","user_id":"u","type":"signed_up",'
        b'"occurred_at":"2026-11-28T09:15:00Z","user":{"consent":{"sms":true,"sms":false}}}',
    ],
    ids=["top-level", "in-properties", "in-consent"],
)
def test_duplicate_member_names_are_invalid_json(raw: bytes) -> None:
    result = parse_event(raw, LIMIT)

    assert expected_rejection(raw, LIMIT) == "invalid_json"
    assert isinstance(result, Rejection) and result.reason.value == "invalid_json"
    assert [e.type for e in result.errors] == ["duplicate_key"]


def test_padded_identifiers_are_still_trimmed() -> None:
    event = parse_event(with_fields(event_id="  e-1  ", user_id=" u "), LIMIT)

    assert isinstance(event, Event)
    assert (event.event_id, event.user_id) == ("e-1", " u ")


def _nested(depth: int, leaf: str) -> str:
    return '{"n":' * depth + leaf + "}" * depth


@pytest.mark.parametrize(
    ("properties", "duplicate"),
    [
        ('{"a": "x\\":", "b": [":", "\\"", {"c": "\\\\"}]}', False),
        ('{"a": "x\\":", "b": [":", "\\"", {"c": "\\\\", "c": 1}]}', True),
        ('{\n  "a" :\t1,\r\n  "b" : {"a": 1}\n}', False),
        ('{\n  "a" :\t1,\r\n  "a" : {"a": 1}\n}', True),
        (_nested(60, "1"), False),
        (_nested(60, '{"k":1,"k":2}'), True),
    ],
    ids=["escapes", "escapes-dup", "spaced", "spaced-dup", "deep", "deep-dup"],
)
def test_duplicates_are_found_in_any_layout_and_only_there(
    properties: str, duplicate: bool
) -> None:
    base = orjson.dumps(base_event(1, NOW))
    raw = base[:-1] + b', "properties": ' + properties.encode() + b"}"

    expected = "invalid_json" if duplicate else None
    assert outcome(raw) == expected_rejection(raw, LIMIT) == expected


def test_the_published_schema_states_the_nesting_limit() -> None:
    assert f"nested at most {MAX_NESTING} levels deep" in str(Event.__doc__)


@pytest.mark.parametrize(("depth", "accepted"), [(MAX_NESTING, True), (MAX_NESTING + 1, False)])
@pytest.mark.parametrize("container", ["object", "array"])
def test_a_document_nested_past_the_limit_is_invalid_json(
    depth: int, accepted: bool, container: str
) -> None:
    # the event itself is the first level, properties the second
    inner = depth - 2
    nested = (
        '{"n":' * inner + "1" + "}" * inner if container == "object" else "[" * inner + "]" * inner
    )
    raw = orjson.dumps(base_event(1, NOW))[:-1] + b',"properties":{"p":' + nested.encode() + b"}}"
    result = parse_event(raw, 1 << 20)

    assert expected_rejection(raw, 1 << 20) == (None if accepted else "invalid_json")
    if accepted:
        assert isinstance(result, Event)
    else:
        assert isinstance(result, Rejection) and [e.type for e in result.errors] == ["too_deep"]


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(hostile_payloads(LIMIT), st.integers(min_value=0, max_value=10**6))
def test_every_accepted_event_can_be_forwarded_as_json(payload: Hostile, n: int) -> None:
    """The engine re-serialises what the intake accepts (to route it); that must not fail."""
    event = parse_event(payload.render(base_event(n, NOW)), LIMIT)
    if isinstance(event, Event):
        assert Event.model_validate_json(event.model_dump_json()) == event
