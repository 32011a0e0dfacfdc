"""The sink's fast path (`wire_rows`) against the model's: for the engine's own records it
gives exactly the rows `read_activities` + `activity_row` give, for every activity type and
field value; whatever else it is shown (other spellings, coercions, invalid values, erasures,
huge numbers) it leaves to the model, so the sink accepts, rejects and stores exactly as the
model path does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sme.contracts.activities import Activity, ActivityType, bundle_values, read_activities
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.dead_letters import RejectReason
from sme.contracts.reasons import Reason
from sme.gateway.sink import Batch
from sme.storage.activities import activity_row
from sme.storage.activity_wire import wire_rows

AT = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=UTC)


def model_rows(value: bytes) -> list[list[Any]] | None:
    """What the model path stores of a record; None when it rejects it."""
    try:
        return [activity_row(a) for a in read_activities(value)]
    except ValidationError:
        return None


def record(value: bytes, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, offset, 0, 0, b"k", value, None, 1, len(value), ())


def every_kind_of_activity() -> list[Activity]:
    """Every type, channel, arm and reason, several offsets and precisions, odd details."""
    reasons: list[Any] = ["", *Reason, *RejectReason]
    channels: list[Channel | None] = [None, *Channel]
    arms: list[Arm | None] = [None, *Arm]
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    details: list[dict[str, Any]] = [
        {},
        {"a": 1, "nested": {"list": [1, 2.5, None, True, "é\n\u2028"]}},
        {"big": 2**63 - 1, "neg": -(2**63), "f": 1e-7, "g": 1e16, "z": -0.0},
    ]
    out = []
    for n, kind in enumerate(ActivityType):
        for k in range(3):
            i = n * 3 + k
            out.append(
                Activity(
                    activity_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"wire-{i}")),
                    type=kind,
                    workspace_id=f"w{k}",
                    user_id="" if k == 2 else f"user-{i}",
                    occurred_at=(AT + timedelta(microseconds=i * 777)).astimezone(zones[k]),
                    config_id="c1" if k else "",
                    config_version=[0, 7, 2**32 - 1][k],
                    step_id="s",
                    channel=channels[i % len(channels)],
                    arm=arms[i % len(arms)],
                    command_id=f"cmd-{i}",
                    event_id=f"e-{i}",
                    event_type="opened",
                    reason_code=reasons[i % len(reasons)],
                    value=[0.0, 12.5, 1e300][k],
                    cost=[0.0, 0.003, 7.0][k],
                    details=details[k],
                )
            )
    return out


def test_the_engines_records_give_exactly_the_models_rows_single_and_bundled() -> None:
    activities = [a for a in every_kind_of_activity() if a.type is not ActivityType.USER_ERASED]
    encoded = [a.model_dump_json().encode() for a in activities]
    values = encoded + bundle_values(encoded[:5]) + bundle_values(encoded[5:])
    for value in values:
        rows = wire_rows(value)
        assert rows is not None, value
        assert rows == model_rows(value)


def test_an_erasure_is_left_to_the_model_alone_or_in_a_bundle() -> None:
    erased = next(a for a in every_kind_of_activity() if a.type is ActivityType.USER_ERASED)
    other = every_kind_of_activity()[0].model_dump_json().encode()
    assert wire_rows(erased.model_dump_json().encode()) is None
    assert (
        wire_rows(b'{"activities":[' + other + b"," + erased.model_dump_json().encode() + b"]}")
        is None
    )


def canonical() -> dict[str, Any]:
    return orjson.loads(every_kind_of_activity()[4].model_dump_json())


def variant(**changes: Any) -> bytes:
    item = canonical()
    for key, value in changes.items():
        if value is ...:
            del item[key]
        else:
            item[key] = value
    return orjson.dumps(item)


ODD_RECORDS: list[bytes] = [
    b"not json",
    b"[]",
    b"null",
    b'{"activities": []}',
    b'{"activities": [1]}',
    b'{"activities": {}}',
    b'{"activities":[' + b",".join([variant()] * 501) + b"]}",
    b'{"activities":[' + variant() + b"]," + b'"extra":1}',
    b'{"activities":[' + variant() + b"," + variant(type="nope") + b"]}",
    b'{ "activities" : [' + variant() + b"]}",
    variant(activity_id="not-a-uuid"),
    variant(activity_id=str(uuid.uuid4()).upper()),
    variant(activity_id="{" + str(uuid.uuid4()) + "}"),
    variant(activity_id=uuid.uuid4().hex),
    variant(activity_id=5),
    variant(type="nope"),
    variant(type=None),
    variant(workspace_id=3),
    variant(user_id=None),
    variant(user_id=...),
    variant(details=...),
    variant(extra="field"),
    variant(occurred_at="2026-11-02T09:30:00"),  # naive
    variant(occurred_at="2026-11-02 09:30:00Z"),
    variant(occurred_at="2026-11-02T09:30:00.5+01:00"),
    variant(occurred_at="2026-11-02T09:30:00.1234567Z"),
    variant(occurred_at="2026-02-30T09:30:00Z"),
    variant(occurred_at="2026-11-02T09:30:00+24:00"),
    variant(occurred_at="0001-01-01T00:00:00+01:00"),
    variant(occurred_at=1_700_000_000),
    variant(config_version="7"),
    variant(config_version=7.0),
    variant(config_version=True),
    variant(config_version=-1),
    variant(config_version=2**32),
    variant(channel="fax"),
    variant(channel="EMAIL"),
    variant(arm="treatment"),
    variant(reason_code="made_up"),
    variant(reason_code=None),
    variant(value=3),
    variant(value="3.5"),
    variant(cost=None),
    variant(details=[]),
    variant(details=None),
    variant(details={"n": 1.5e19}),
    variant(details={"deep": [{"n": -1e19}]}),
    variant(details={"n": 2.0}),
    orjson.dumps(canonical(), option=orjson.OPT_INDENT_2),
    b'{"type":"feedback",' + variant()[1:],  # a duplicate key: the last one counts
    b'{"type":"user_erased",' + variant()[1:],
    variant()[:-1] + b',"type":"user_erased"}',
    variant(details=...)[:-1] + b',"details":{"n":123456789012345678901234567890}}',
    variant(details=...)[:-1] + b',"details":{"n":1e400}}',
    variant(details=...)[:-1] + b',"details":{"n":NaN}}',
]


@pytest.mark.parametrize("value", ODD_RECORDS, ids=range(len(ODD_RECORDS)))
def test_a_record_off_the_canonical_shape_is_stored_or_rejected_as_the_model_decides(
    value: bytes,
) -> None:
    fast = wire_rows(value)
    expected = _model_outcome(value)
    if fast is not None:
        assert ("rows", fast) == expected
    batch = Batch()
    batch.add(record(value))  # never raises: a record is stored or dead-lettered
    if batch.rejects:
        assert expected[0] == "rejected"
        [(_, rejection)] = batch.rejects
        assert rejection.reason is RejectReason.VALIDATION_FAILED
        assert batch.rows == []
    else:
        assert ("rows", batch.rows) == expected or expected[0] == "erasure"


def _model_outcome(value: bytes) -> tuple[str, Any]:
    try:
        activities = read_activities(value)
    except ValidationError:
        return ("rejected", None)
    if any(a.type is ActivityType.USER_ERASED for a in activities):
        return ("erasure", None)
    try:
        return ("rows", [activity_row(a) for a in activities])
    except Exception as exc:
        return ("raises", type(exc))


def test_a_rejected_record_carries_the_same_field_errors_as_before() -> None:
    value = b'{"activities":[' + variant() + b"," + variant(type="nope") + b"]}"
    batch = Batch()
    batch.add(record(value))
    [(_, rejection)] = batch.rejects
    assert [e.loc for e in rejection.errors] == ["activities.1.type"]


_TEXT = st.text(max_size=20)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    workspace=_TEXT,
    user=_TEXT,
    event=_TEXT,
    at=st.datetimes(
        min_value=datetime(1971, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
        max_value=datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=13, minutes=45)), timezone(timedelta(hours=-11))]
        ),
    ),
    value=st.floats(allow_nan=False, allow_infinity=False),
    cost=st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    version=st.integers(min_value=0, max_value=2**32 - 1),
    details=st.dictionaries(_TEXT, _JSON, max_size=4),
)
def test_any_engine_record_gives_the_models_rows_or_is_left_to_the_model(
    workspace: str,
    user: str,
    event: str,
    at: datetime,
    value: float,
    cost: float,
    version: int,
    details: dict[str, Any],
) -> None:
    activity = Activity(
        activity_id=str(uuid.uuid4()),
        type=ActivityType.FEEDBACK,
        workspace_id=workspace,
        user_id=user,
        occurred_at=at,
        config_version=version,
        event_id=event,
        value=value,
        cost=cost,
        details=details,
    )
    encoded = activity.model_dump_json().encode()
    rows = wire_rows(encoded)
    if rows is not None:
        assert rows == model_rows(encoded)
    else:  # only numbers in details that orjson may have read from a >64-bit integer
        assert _has_huge_number(details)


def _has_huge_number(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_huge_number(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_huge_number(v) for v in value)
    if type(value) is float:
        return abs(value) >= 2**63
    return type(value) is int and not -(2**63) <= value < 2**64
