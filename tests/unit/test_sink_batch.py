"""The sink's batch on its own (no store, no broker): it commits exactly one past the last
record of each partition it was given, bad records included; a record that is not an activity
becomes a reject with its field errors and never a row; an erasure becomes a row without the
user id plus an erasure that says whom, which and since when; and a user's rows after their
erasure are kept apart (scoped by workspace). A bundle (ActivityBatch) is its activities, in
order, exactly as separate records would be; a malformed one is rejected whole."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from sme.contracts.activities import (
    MAX_BUNDLE_ACTIVITIES,
    MAX_BUNDLE_BYTES,
    Activity,
    ActivityType,
    bundle_values,
    read_activities,
)
from sme.contracts.dead_letters import RejectReason
from sme.gateway.sink import Batch, Erasure

AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
ID, TYPE, WS, USER = 0, 1, 2, 3  # positions in ACTIVITY_COLUMNS


def record(
    value: bytes, offset: int, partition: int = 0, topic: str = "t.activities"
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


def activity(
    n: int,
    kind: ActivityType = ActivityType.EVENT_RECEIVED,
    user: str = "ada",
    workspace: str = "w1",
    details: dict[str, Any] | None = None,
) -> bytes:
    return (
        Activity(
            activity_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"batch-{n}")),
            type=kind,
            workspace_id=workspace,
            user_id=user,
            occurred_at=AT,
            details=details or {},
        )
        .model_dump_json()
        .encode()
    )


def aid(n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"batch-{n}"))


def test_next_offsets_are_one_past_the_last_record_of_each_partition() -> None:
    batch = Batch()
    for value, offset, partition in [
        (activity(1), 40, 0),
        (activity(2), 7, 1),
        (activity(3), 41, 0),
        (b"not json", 42, 0),  # a bad record is consumed too
        (activity(4), 8, 1),
    ]:
        batch.add(record(value, offset, partition))
    batch.add(record(activity(5), 3, 0, topic="t.other"))

    assert batch.next_offsets == {
        TopicPartition("t.activities", 0): 43,
        TopicPartition("t.activities", 1): 9,
        TopicPartition("t.other", 0): 4,
    }
    assert len(batch) == 6  # 5 rows + 1 reject


def test_a_record_that_is_not_an_activity_is_a_reject_with_its_field_errors() -> None:
    batch = Batch()
    bad_json = record(b"not json", 1)
    missing = record(b'{"type": "event_received"}', 2)
    batch.add(bad_json)
    batch.add(missing)
    batch.add(record(activity(1), 3))

    assert [r[ID] for r in batch.rows] == [aid(1)]
    assert [rec for rec, _ in batch.rejects] == [bad_json, missing]
    assert {rej.reason for _, rej in batch.rejects} == {RejectReason.VALIDATION_FAILED}
    json_error, fields_error = (rej.errors for _, rej in batch.rejects)
    assert [e.type for e in json_error] == ["json_invalid"]
    assert {e.loc for e in fields_error} >= {"activity_id", "workspace_id", "occurred_at"}
    assert all(e.type == "missing" for e in fields_error)


def test_an_erasure_is_a_row_without_the_user_and_an_erasure_naming_them() -> None:
    batch = Batch()
    requested = "2026-11-02T10:00:00+01:00"  # 09:00 UTC
    batch.add(
        record(
            activity(
                1,
                ActivityType.USER_ERASED,
                details={"erasure_id": "er-1", "requested_at": requested},
            ),
            0,
        )
    )

    assert [(r[ID], r[TYPE], r[WS], r[USER]) for r in batch.rows] == [
        (aid(1), "user_erased", "w1", "")
    ]
    assert batch.erasures == [Erasure("w1", "ada", "er-1", datetime(2026, 11, 2, 9, 0, tzinfo=UTC))]
    assert batch.erasures[0].requested_at.utcoffset() == timedelta(0)


def test_an_erasure_without_its_details_falls_back_to_its_own_id_and_time() -> None:
    batch = Batch()
    batch.add(record(activity(1, ActivityType.USER_ERASED), 0))
    batch.add(
        record(activity(2, ActivityType.USER_ERASED, "bob", details={"requested_at": "soon"}), 1)
    )

    assert batch.erasures == [
        Erasure("w1", "ada", str(aid(1)), AT),
        Erasure("w1", "bob", str(aid(2)), AT),
    ]
    assert all(e.requested_at.utcoffset() == timedelta(0) for e in batch.erasures)


def test_rows_after_an_erasure_are_kept_apart_only_for_that_workspace_and_user() -> None:
    batch = Batch()
    for offset, value in enumerate(
        [
            activity(1, user="ada"),
            activity(2, ActivityType.USER_ERASED, user="ada"),
            activity(3, user="ada"),  # ada again, after her erasure
            activity(4, user="ada", workspace="w2"),  # another workspace's ada
            activity(5, user="bob"),
        ]
    ):
        batch.add(record(value, offset))

    assert [r[ID] for r in batch.rows] == [aid(1), aid(2), aid(4), aid(5)]
    assert [r[ID] for r in batch.later_rows] == [aid(3)]
    assert batch.erased_users == {("w1", "ada")}
    assert len(batch) == 5


def test_a_second_erasure_of_a_user_drops_what_arrived_since_the_first() -> None:
    batch = Batch()
    for offset, value in enumerate(
        [
            activity(1, ActivityType.USER_ERASED, user="ada"),
            activity(2, user="ada"),
            activity(3, user="bob"),
            activity(4, ActivityType.USER_ERASED, user="ada"),
            activity(5, user="ada"),
        ]
    ):
        batch.add(record(value, offset))

    assert [r[ID] for r in batch.later_rows] == [aid(5)]
    assert [(r[ID], r[USER]) for r in batch.rows] == [(aid(1), ""), (aid(3), "bob"), (aid(4), "")]
    assert [e.erasure_id for e in batch.erasures] == [str(aid(1)), str(aid(4))]


def bundle(*activities: bytes) -> bytes:
    """An ActivityBatch as the engine writes it (see `bundle_values`)."""
    values = bundle_values(list(activities))
    assert len(values) == 1
    return values[0]


def test_a_bundle_is_stored_as_its_activities_in_order_one_offset_for_all() -> None:
    batch = Batch()
    batch.add(record(activity(1), 10))
    batch.add(record(bundle(activity(2), activity(3), activity(4, user="bob")), 11))

    assert [(r[ID], r[USER]) for r in batch.rows] == [
        (aid(1), "ada"),
        (aid(2), "ada"),
        (aid(3), "ada"),
        (aid(4), "bob"),
    ]
    assert batch.next_offsets == {TopicPartition("t.activities", 0): 12}
    assert batch.rejects == []


def test_an_erasure_inside_a_bundle_splits_its_rows_as_separate_records_would() -> None:
    values = [
        activity(1, user="ada"),
        activity(2, ActivityType.USER_ERASED, user="ada", details={"erasure_id": "er-1"}),
        activity(3, user="ada"),  # after the erasure (signed up again): kept
        activity(4, user="ada", workspace="w2"),  # another workspace's ada: not erased
    ]
    bundled, separate = Batch(), Batch()
    bundled.add(record(activity(0, user="ada"), 0))  # an earlier record of hers: erased too
    bundled.add(record(bundle(*values), 1))
    separate.add(record(activity(0, user="ada"), 0))
    for offset, value in enumerate(values, start=1):
        separate.add(record(value, offset))

    assert [(r[ID], r[USER]) for r in bundled.rows] == [
        (aid(0), "ada"),
        (aid(1), "ada"),
        (aid(2), ""),
        (aid(4), "ada"),
    ]
    assert [r[ID] for r in bundled.later_rows] == [aid(3)]
    assert [e.erasure_id for e in bundled.erasures] == ["er-1"]
    assert bundled.erased_users == {("w1", "ada")}
    assert (bundled.rows, bundled.later_rows, bundled.erasures) == (
        separate.rows,
        separate.later_rows,
        separate.erasures,
    )


def test_a_malformed_bundle_is_dead_lettered_whole_with_the_reason_and_where() -> None:
    batch = Batch()
    broken = record(
        b'{"activities":[' + activity(1) + b',{"type":"enrolled"},' + activity(3) + b"]}", 5
    )
    empty = record(b'{"activities": []}', 6)
    stray = record(b'{"activities": [' + activity(7) + b'], "extra": 1}', 7)
    for rec in (broken, empty, stray):
        batch.add(rec)
    batch.add(record(activity(8), 8))

    assert [r[ID] for r in batch.rows] == [aid(8)], "nothing of a malformed bundle is stored"
    assert [rec for rec, _ in batch.rejects] == [broken, empty, stray]
    assert {rej.reason for _, rej in batch.rejects} == {RejectReason.VALIDATION_FAILED}
    broken_errors, empty_errors, stray_errors = (rej.errors for _, rej in batch.rejects)
    assert {e.loc for e in broken_errors} >= {
        "activities.1.activity_id",
        "activities.1.workspace_id",
    }
    assert [(e.loc, e.type) for e in empty_errors] == [("activities", "too_short")]
    assert [(e.loc, e.type) for e in stray_errors] == [("extra", "extra_forbidden")]
    assert batch.next_offsets == {TopicPartition("t.activities", 0): 9}


def test_bundles_are_split_by_count_and_size_and_a_lone_activity_travels_as_is() -> None:
    many = [activity(n) for n in range(MAX_BUNDLE_ACTIVITIES + 1)]
    values = bundle_values(many)
    assert [len(read_activities(v)) for v in values] == [MAX_BUNDLE_ACTIVITIES, 1]
    assert values[1] == many[-1]
    big = [activity(n, details={"pad": "x" * (MAX_BUNDLE_BYTES // 3)}) for n in range(4)]
    assert [len(read_activities(v)) for v in bundle_values(big)] == [2, 2]
    assert all(len(v) <= MAX_BUNDLE_BYTES + 64 for v in bundle_values(big))
    assert [a.activity_id for v in bundle_values(many) for a in read_activities(v)] == [
        str(aid(n)) for n in range(MAX_BUNDLE_ACTIVITIES + 1)
    ]
