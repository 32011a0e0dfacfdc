"""Intake: raw topic bytes become a validated Event, or a Rejection with field-level reasons
that turns into a dead letter and a payload-free `event_rejected` activity."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from sme.contracts.activities import ActivityType
from sme.contracts.channels import Channel
from sme.contracts.dead_letters import MAX_ORIGINAL_BYTES, FieldError, RejectReason, SourcePosition
from sme.contracts.events import Event
from sme.core.intake import Rejection, dead_letter, parse_event, rejected_activity

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SOURCE = SourcePosition(topic="sme.events", partition=3, offset=1234, key="user-1")
LIMIT = 64 * 1024


def event_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "evt-1",
        "workspace_id": "ws-acme",
        "user_id": "user-1",
        "type": "signed_up",
        "occurred_at": "2024-05-01T11:59:00+02:00",
    }
    doc.update(overrides)
    return doc


def encode(doc: object) -> bytes:
    return orjson.dumps(doc)


def rejection_of(raw: bytes | None, max_bytes: int = LIMIT) -> Rejection:
    result = parse_event(raw, max_bytes)
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    return result


def locs(rejection: Rejection) -> list[str]:
    return [error.loc for error in rejection.errors]


# --- size -----------------------------------------------------------------------------------


def test_an_event_exactly_at_the_limit_is_accepted() -> None:
    raw = encode(event_doc())
    limit = len(raw) + 40
    padded = raw + b" " * (limit - len(raw))
    assert len(padded) == limit

    assert isinstance(parse_event(padded, limit), Event)


def test_an_event_one_byte_over_the_limit_is_dead_lettered_as_too_large() -> None:
    raw = encode(event_doc())
    limit = len(raw) + 40
    padded = raw + b" " * (limit + 1 - len(raw))

    rejection = rejection_of(padded, limit)

    assert rejection.reason is RejectReason.TOO_LARGE
    assert [e.type for e in rejection.errors] == ["too_large"]
    assert str(limit + 1) in rejection.errors[0].message
    assert str(limit) in rejection.errors[0].message


def test_an_oversized_message_is_rejected_for_size_before_any_parsing() -> None:
    not_json = b"{" * 101

    assert rejection_of(not_json, max_bytes=100).reason is RejectReason.TOO_LARGE
    assert rejection_of(not_json[:100], max_bytes=100).reason is RejectReason.INVALID_JSON


def test_an_oversized_message_is_never_handed_to_the_json_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(_: bytes) -> object:
        raise AssertionError("the parser must not see an oversized message")

    monkeypatch.setattr("sme.core.intake.orjson.loads", explode)

    assert rejection_of(b"x" * 300, max_bytes=256).reason is RejectReason.TOO_LARGE


# --- JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b'{"event_id": "e1",}', b"\xff\xfe\x00", b"[" * 2000 + b"]" * 2000],
    ids=["empty", "unterminated", "bare-word", "trailing-comma", "not-utf8", "too-deep"],
)
def test_bytes_that_are_not_json_are_rejected_as_invalid_json(raw: bytes) -> None:
    rejection = rejection_of(raw)

    assert rejection.reason is RejectReason.INVALID_JSON
    assert [(e.loc, e.type) for e in rejection.errors] == [("", "json_invalid")]
    assert rejection.workspace_hint == ""


def test_a_missing_message_value_is_rejected_as_invalid_json() -> None:
    rejection = rejection_of(None)

    assert rejection.reason is RejectReason.INVALID_JSON
    assert [e.type for e in rejection.errors] == ["empty"]


# --- validation -----------------------------------------------------------------------------


def test_a_json_array_is_rejected_as_a_whole_message_validation_failure() -> None:
    rejection = rejection_of(encode([event_doc()]))

    assert rejection.reason is RejectReason.VALIDATION_FAILED
    assert [(e.loc, e.type) for e in rejection.errors] == [("", "model_type")]
    assert rejection.workspace_hint == ""


@pytest.mark.parametrize(
    ("doc", "expected_loc", "expected_type"),
    [
        (
            {k: v for k, v in event_doc().items() if k != "user_id"},
            "user_id",
            "missing",
        ),
        (event_doc(occurred_at="2024-05-01T11:59:00"), "occurred_at", "timezone_aware"),
        (event_doc(occurred_at="1999-12-31T23:59:59Z"), "occurred_at", "value_error"),
        (event_doc(surprise="field"), "surprise", "extra_forbidden"),
        (event_doc(channel="fax"), "channel", "enum"),
        (event_doc(user={"timezone": "Mars/Olympus_Mons"}), "user.timezone", "value_error"),
        (event_doc(user={"timezone": "../../etc/passwd"}), "user.timezone", "value_error"),
        (event_doc(user={"consent": {"fax": True}}), "user.consent.fax.[key]", "enum"),
        (event_doc(type="Signed Up"), "type", "string_pattern_mismatch"),
        (event_doc(event_id="   "), "event_id", "string_too_short"),
    ],
    ids=[
        "missing-user-id",
        "naive-timestamp",
        "timestamp-out-of-range",
        "unknown-field",
        "unknown-channel",
        "unknown-timezone",
        "timezone-path-traversal",
        "unknown-consent-channel",
        "bad-event-type",
        "blank-event-id",
    ],
)
def test_an_invalid_event_is_rejected_with_the_failing_field_path(
    doc: dict[str, Any], expected_loc: str, expected_type: str
) -> None:
    rejection = rejection_of(encode(doc))

    assert rejection.reason is RejectReason.VALIDATION_FAILED
    assert [(e.loc, e.type) for e in rejection.errors] == [(expected_loc, expected_type)]
    assert all(e.message for e in rejection.errors)


@pytest.mark.parametrize("zone", ["America", "Z" * 300], ids=["tz-directory", "tz-too-long"])
def test_a_timezone_that_is_not_a_zone_file_is_a_validation_failure_not_a_crash(
    zone: str,
) -> None:
    rejection = rejection_of(encode(event_doc(user={"timezone": zone})))

    assert rejection.reason is RejectReason.VALIDATION_FAILED
    assert locs(rejection) == ["user.timezone"]


def test_every_failing_field_is_reported_not_just_the_first() -> None:
    doc = event_doc(channel="fax", surprise=1, occurred_at="2024-05-01T11:59:00")

    assert sorted(locs(rejection_of(encode(doc)))) == ["channel", "occurred_at", "surprise"]


def test_the_workspace_of_an_invalid_event_is_kept_as_a_hint() -> None:
    rejection = rejection_of(encode(event_doc(channel="fax")))

    assert rejection.workspace_hint == "ws-acme"


@pytest.mark.parametrize(
    "workspace",
    [None, 42, "", "w" * 129, ["ws-acme"]],
    ids=["absent", "number", "empty", "too-long", "list"],
)
def test_no_workspace_hint_is_taken_from_a_missing_or_implausible_workspace(
    workspace: object,
) -> None:
    doc = event_doc(channel="fax")
    if workspace is None:
        del doc["workspace_id"]
    else:
        doc["workspace_id"] = workspace

    assert rejection_of(encode(doc)).workspace_hint == ""


def test_a_valid_event_parses_into_the_event_model() -> None:
    doc = event_doc(
        channel="push",
        command_id="cmd-9",
        properties={"plan": "pro", "seats": 3},
        user={
            "timezone": "Europe/Paris",
            "attributes": {"country": "FR", "vip": True},
            "consent": {"email": False, "push": True},
        },
    )

    event = parse_event(encode(doc), LIMIT)

    assert isinstance(event, Event)
    assert (event.event_id, event.workspace_id, event.user_id, event.type) == (
        "evt-1",
        "ws-acme",
        "user-1",
        "signed_up",
    )
    assert event.occurred_at == datetime(2024, 5, 1, 9, 59, tzinfo=UTC)
    assert event.channel is Channel.PUSH
    assert event.command_id == "cmd-9"
    assert event.properties == {"plan": "pro", "seats": 3}
    assert event.user is not None
    assert event.user.timezone == "Europe/Paris"
    assert event.user.consent == {Channel.EMAIL: False, Channel.PUSH: True}


# --- dead letters ---------------------------------------------------------------------------


def test_a_dead_letter_keeps_reason_errors_position_and_the_original_bytes() -> None:
    raw = encode(event_doc(channel="fax"))
    rejection = rejection_of(raw)

    letter = dead_letter(rejection, raw, SOURCE, NOW, "engine")

    assert letter.reason_code is RejectReason.VALIDATION_FAILED
    assert letter.errors == list(rejection.errors)
    assert letter.source == SOURCE
    assert letter.original_size == len(raw)
    assert base64.b64decode(letter.original_base64) == raw
    assert letter.original_truncated is False
    assert letter.dead_lettered_at == NOW
    assert letter.service == "engine"


def test_a_dead_letter_of_exactly_64_kib_keeps_every_byte_untruncated() -> None:
    raw = bytes(range(256)) * (MAX_ORIGINAL_BYTES // 256)
    assert len(raw) == MAX_ORIGINAL_BYTES

    letter = dead_letter(rejection_of(raw, LIMIT - 1), raw, SOURCE, NOW, "engine")

    assert letter.reason_code is RejectReason.TOO_LARGE
    assert base64.b64decode(letter.original_base64) == raw
    assert letter.original_truncated is False


def test_a_dead_letter_of_a_huge_message_keeps_only_the_first_64_kib_and_says_so() -> None:
    raw = b"a" * MAX_ORIGINAL_BYTES + b"b" * 10_000

    letter = dead_letter(rejection_of(raw), raw, SOURCE, NOW, "gateway")

    assert letter.original_size == len(raw)
    assert base64.b64decode(letter.original_base64) == raw[:MAX_ORIGINAL_BYTES]
    assert letter.original_truncated is True


def test_a_dead_letter_of_a_missing_value_records_zero_bytes() -> None:
    letter = dead_letter(rejection_of(None), None, SOURCE, NOW, "engine")

    assert letter.original_size == 0
    assert letter.original_base64 == ""
    assert letter.original_truncated is False


# --- rejected activities --------------------------------------------------------------------


def test_the_rejected_activity_id_depends_only_on_the_source_position() -> None:
    first = rejected_activity(rejection_of(b"nope"), SOURCE, NOW)
    replayed = rejected_activity(
        rejection_of(encode(event_doc(channel="fax"))), SOURCE, datetime(2030, 1, 1, tzinfo=UTC)
    )

    assert first.activity_id == replayed.activity_id


@pytest.mark.parametrize(
    "other",
    [
        SOURCE.model_copy(update={"offset": SOURCE.offset + 1}),
        SOURCE.model_copy(update={"partition": SOURCE.partition + 1}),
        SOURCE.model_copy(update={"topic": "sme.other"}),
    ],
    ids=["offset", "partition", "topic"],
)
def test_rejections_at_different_source_positions_get_different_activity_ids(
    other: SourcePosition,
) -> None:
    rejection = rejection_of(b"nope")

    assert (
        rejected_activity(rejection, SOURCE, NOW).activity_id
        != rejected_activity(rejection, other, NOW).activity_id
    )


def test_a_rejected_activity_carries_the_reason_and_field_paths_but_no_payload() -> None:
    secret = "jane.doe@example.com"
    raw = encode(event_doc(channel="fax", properties={"email": secret}, surprise=secret))
    rejection = rejection_of(raw)

    activity = rejected_activity(rejection, SOURCE, NOW)

    assert activity.type is ActivityType.EVENT_REJECTED
    assert activity.reason_code == "validation_failed"
    assert activity.workspace_id == "ws-acme"
    assert activity.occurred_at == NOW
    assert activity.details == {"fields": locs(rejection)}
    assert set(locs(rejection)) == {"channel", "surprise"}
    assert secret not in activity.model_dump_json()


def test_a_rejected_activity_lists_at_most_twenty_field_paths() -> None:
    errors = tuple(FieldError(loc=f"f{i}", message="bad", type="x") for i in range(30))
    rejection = Rejection(RejectReason.VALIDATION_FAILED, errors, "ws-acme")

    fields = rejected_activity(rejection, SOURCE, NOW).details["fields"]

    assert fields == [f"f{i}" for i in range(20)]
