"""Identity for the life of a user: however many sequences a user goes through, `reentry:
never` holds and no command or activity id is ever produced twice (senders dedupe on command
ids, ClickHouse's replacing merge on activity ids: a repeated id loses a real message)."""

from __future__ import annotations

from datetime import timedelta

from sme.contracts.activities import ActivityType as A
from sme.contracts.reasons import Reason
from sme.contracts.sequences import SequenceConfig
from sme.core.user_state import UserState
from tests.unit.builders import T0, Driver, config, msg_step, of_type

MANY = 40  # more sequences than any per-user detail window


def _one_step(i: int, reentry: str) -> SequenceConfig:
    return config(
        id=f"cfg-{i}",
        entry={"event_types": [f"start.{i}"], "reentry": {"policy": reentry}},
        steps=[msg_step("s1")],
    )


def _through_many_sequences(reentry: str) -> Driver:
    """The user enters cfg-0, then every other sequence once (each completes at once)."""
    d = Driver.of(*(_one_step(i, reentry) for i in range(MANY)))
    for i in range(MANY):
        d.send(f"start.{i}", T0 + timedelta(minutes=i))
    assert len(d.commands) == MANY
    return d


def test_reentry_never_still_blocks_after_the_user_went_through_more_than_32_sequences() -> None:
    d = _through_many_sequences("never")

    out = d.send("start.0", T0 + timedelta(days=1))

    assert of_type(out, A.ENROLLED) == []
    assert [a.reason_code for a in of_type(out, A.ENROLLMENT_SKIPPED)] == [Reason.REENTRY_BLOCKED]
    assert len(d.commands) == MANY


def test_command_and_activity_ids_never_repeat_after_more_than_32_sequences() -> None:
    d = _through_many_sequences("always")

    d.send("start.0", T0 + timedelta(days=1))

    command_ids = [c.command_id for c in d.commands]
    assert len(command_ids) == MANY + 1
    assert len(set(command_ids)) == len(command_ids)
    decisions = [a.activity_id for a in d.activities if a.type is not A.EVENT_RECEIVED]
    assert len(set(decisions)) == len(decisions)


def test_the_enrollment_count_per_sequence_survives_the_storage_round_trip() -> None:
    d = _through_many_sequences("always")
    d.send("start.0", T0 + timedelta(days=1))

    stored = UserState.from_dict(d.state.to_dict())

    assert stored.past["cfg-0"].seq == 2
    assert {f"cfg-{i}" for i in range(MANY)} <= set(stored.past)
