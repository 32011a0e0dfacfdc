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


def test_a_user_erased_and_enrolled_again_gets_the_ids_of_a_new_life() -> None:
    """Erasure forgets the state, enrollment counts included; the engine tags each new state
    with the input that created it, so the second life's ids differ from the first's."""
    first = Driver.of(_one_step(0, "always"))
    first.state = UserState.new(first.state.workspace_id, first.state.user_id, "life-one")
    first.send("start.0", T0)
    second = Driver.of(_one_step(0, "always"))  # the same user, state erased in between
    second.state = UserState.new(second.state.workspace_id, second.state.user_id, "life-two")
    second.send("start.0", T0 + timedelta(days=1))

    assert [c.command_id for c in first.commands] != [c.command_id for c in second.commands]
    ids = [a.activity_id for d in (first, second) for a in d.activities]
    assert len(set(ids)) == len(ids)
    assert UserState.from_dict(second.state.to_dict()).epoch == "life-two"
