"""The sink's batch on its own (no store, no broker): it commits exactly one past the last
record of each partition it was given, bad records included; a record that is not an activity
becomes a reject with its field errors and never a row; an erasure becomes a row without the
user id plus an erasure that says whom, which and since when; and a user's rows after their
erasure are kept apart (scoped by workspace)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from sme.contracts.activities import Activity, ActivityType
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


def aid(n: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"batch-{n}")


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
