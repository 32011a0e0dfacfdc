"""When a sequence takes new entries: its `starts_at` / `ends_at` window and the DRAINING status
refuse new entries with a reason, and never touch users already enrolled: they finish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sme.config_mirror import ConfigRegistry
from sme.contracts.activities import ActivityType as A
from sme.contracts.config_records import SequenceRecord, WorkspaceRecord, record_key
from sme.contracts.reasons import Reason
from sme.contracts.sequences import SequenceConfig, Status, WorkspaceSettings
from sme.core.entry_window import entry_closed
from tests.unit.builders import T0, WS, Driver, at, config, msg_step, of_type, with_status

TWO_STEPS = [msg_step("s1"), msg_step("s2", wait="P1D")]
WAIT_THEN_SEND = [
    msg_step("s1"),
    msg_step("s2", wait_for={"event_type": "purchased", "timeout": "P2D", "on_event": "s3"}),
    msg_step("s3"),
]


def skipped(d: Driver) -> list[str]:
    return [a.reason_code for a in of_type(d.activities, A.ENROLLMENT_SKIPPED)]


def switch(engaged: bool) -> WorkspaceSettings:
    return WorkspaceSettings.model_validate(
        {"workspace_id": WS, "kill_switch": {"engaged": engaged}}
    )


# --- starts_at / ends_at -----------------------------------------------------------------------


def test_no_entry_before_starts_at_and_entry_from_starts_at_on() -> None:
    d = Driver.of(config(starts_at=at(hours=1).isoformat()))

    d.send("signed_up", at(minutes=59))
    assert skipped(d) == [Reason.SEQUENCE_NOT_STARTED]
    assert d.commands == []

    d.send("signed_up", at(hours=1))
    assert [c.step_id for c in d.commands] == ["s1"]


def test_no_entry_at_or_after_ends_at() -> None:
    cfg = config(ends_at=at(hours=1).isoformat())
    for when in (at(hours=1), at(days=3)):
        d = Driver.of(cfg)
        d.send("signed_up", when)
        assert skipped(d) == [Reason.SEQUENCE_ENDED]
        assert of_type(d.activities, A.ENROLLED) == []


def test_a_user_enrolled_before_ends_at_finishes_the_sequence_after_it() -> None:
    d = Driver.of(config(steps=TWO_STEPS, ends_at=at(hours=1).isoformat()))

    d.send("signed_up", at(minutes=30))
    d.run_until(at(days=3))

    assert [c.step_id for c in d.commands] == ["s1", "s2"]
    (exited,) = of_type(d.activities, A.ENROLLMENT_EXITED)
    assert exited.reason_code == Reason.COMPLETED


def test_events_that_would_not_enroll_anyway_record_no_refusal() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "filters": [{"key": "plan", "equals": "pro"}]},
        ends_at=T0.isoformat(),
    )
    d = Driver.of(cfg)

    d.send("visited", at(hours=1))
    d.send("signed_up", at(hours=2), user={"attributes": {"plan": "free"}})

    assert skipped(d) == []


def test_ends_at_must_be_after_starts_at_and_both_need_an_offset() -> None:
    with pytest.raises(ValidationError) as caught:
        config(starts_at=T0.isoformat(), ends_at=T0.isoformat())
    assert [e["loc"] for e in caught.value.errors()] == [("ends_at",)]
    with pytest.raises(ValidationError) as naive:
        config(starts_at="2024-05-01T10:00:00")
    assert [e["loc"] for e in naive.value.errors()] == [("starts_at",)]
    window = config(starts_at=T0.isoformat(), ends_at=at(days=1).isoformat())
    assert (window.starts_at, window.ends_at) == (T0, at(days=1))


def test_a_configuration_without_a_window_or_new_status_is_as_before() -> None:
    cfg = config()
    assert (cfg.starts_at, cfg.ends_at, cfg.status) == (None, None, Status.ACTIVE)
    assert entry_closed(cfg, Status.ACTIVE, datetime(1990, 1, 1, tzinfo=UTC)) is None


# --- DRAINING ----------------------------------------------------------------------------------


def test_a_draining_sequence_refuses_new_entries_with_a_reason() -> None:
    d = Driver.of(with_status(config(), Status.DRAINING))

    d.send("signed_up")

    assert skipped(d) == [Reason.SEQUENCE_DRAINING]
    assert d.commands == []


def test_users_enrolled_before_draining_continue_and_finish() -> None:
    cfg = config(
        steps=TWO_STEPS, entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}}
    )
    d = Driver.of(cfg)
    d.send("signed_up")
    d.set_config(with_status(cfg, Status.DRAINING))

    d.run_until(at(days=3))

    assert [c.step_id for c in d.commands] == ["s1", "s2"]
    assert [a.reason_code for a in of_type(d.activities, A.ENROLLMENT_EXITED)] == [Reason.COMPLETED]
    d.send("signed_up", at(days=4))  # re-entry would be allowed, but the sequence drains
    assert skipped(d) == [Reason.SEQUENCE_DRAINING]
    assert len(d.commands) == 2


def test_an_awaited_event_still_moves_a_draining_enrollment_on() -> None:
    cfg = config(steps=WAIT_THEN_SEND)
    d = Driver.of(cfg)
    d.send("signed_up")
    d.set_config(with_status(cfg, Status.DRAINING))

    d.send("purchased", at(hours=1))

    assert [c.step_id for c in d.commands] == ["s1", "s3"]


def test_the_kill_switch_holds_a_draining_sequence_and_its_release_lets_it_finish() -> None:
    cfg = with_status(config(steps=TWO_STEPS), Status.ACTIVE)
    d = Driver.of(cfg, workspace=switch(False))
    d.send("signed_up")
    d.set_config(with_status(cfg, Status.DRAINING))
    d.workspace = switch(True)

    newcomer = Driver.of(with_status(cfg, Status.DRAINING), workspace=switch(True), user_id="u2")

    d.tick(at(days=2))
    newcomer.send("signed_up", at(days=2))

    assert [c.step_id for c in d.commands] == ["s1"]
    assert skipped(newcomer) == []  # held like a pause: no decision at all
    d.workspace = switch(False)
    d.tick(at(days=2, hours=2))
    assert [c.step_id for c in d.commands] == ["s1", "s2"]


def test_the_registry_holds_a_draining_sequence_as_paused_while_the_switch_is_engaged() -> None:
    registry = ConfigRegistry()
    draining: SequenceConfig = with_status(config(), Status.DRAINING)
    registry.apply(
        record_key(SequenceRecord(config=draining)),
        SequenceRecord(config=draining).model_dump_json().encode(),
    )
    changes: list[tuple[Status | None, Status | None]] = []
    registry.on_change(lambda old, new: changes.append((old and old.status, new and new.status)))
    assert not registry.paused(draining.id)

    engaged = WorkspaceRecord(settings=switch(True))
    registry.apply(record_key(engaged), engaged.model_dump_json().encode())

    assert registry.paused(draining.id)
    assert changes == [(Status.DRAINING, Status.PAUSED)]


def test_paused_and_stopped_sequences_still_enrol_nobody_silently() -> None:
    for status in (Status.PAUSED, Status.STOPPED):
        d = Driver.of(with_status(config(), status))
        d.send("signed_up", T0 + timedelta(hours=1))
        assert skipped(d) == [] and d.commands == []
