"""Conversion credit: the arm of record is the one the user was exposed to, one event credits
at most one message, and an event that names a command credits exactly that command (or
nothing when the command is unknown)."""

from __future__ import annotations

from typing import Any

from sme.contracts.activities import ActivityType
from sme.contracts.commands import Arm
from sme.core.user_state import Past, UserState
from tests.unit.builders import (
    ALL_HOLDOUT,
    NO_EXPERIMENT,
    Driver,
    at,
    config,
    edited,
    msg_step,
    of_type,
)

A = ActivityType
STEPS = [msg_step("s1"), msg_step("s2", channels=["sms"], wait="PT1H")]


def _goal_config(goal_type: str = "purchased", **overrides: Any) -> Any:
    data: dict[str, Any] = {
        "steps": STEPS,
        "exit": {"goal": {"event_type": goal_type, "value_property": "amount"}},
        "experiment": NO_EXPERIMENT,
    }
    data.update(overrides)
    return config(**data)


# --- item 4: the arm of record -----------------------------------------------------------------


def test_a_conversion_after_the_enrollment_ended_keeps_the_arm_the_user_was_exposed_to() -> None:
    d = Driver.of(_goal_config())
    d.send("signed_up")
    d.run_until(at(hours=2))
    assert d.state.enrollments == ()  # completed, both messages went out
    (exposure,) = of_type(d.activities, A.EXPOSURE)
    assert exposure.arm is Arm.ADAPTIVE
    d.set_config(edited(d.configs["cfg-1"], experiment=ALL_HOLDOUT))  # PATCH holdout_pct

    out = d.send("purchased", at(hours=3), properties={"amount": 5})

    (conversion,) = of_type(out, A.CONVERSION)
    assert conversion.arm is Arm.ADAPTIVE


def test_a_user_who_reenters_after_the_split_changed_stays_in_the_arm_of_their_exposure() -> None:
    d = Driver.of(
        _goal_config(entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}})
    )
    d.send("signed_up")
    d.run_until(at(hours=2))
    d.set_config(edited(d.configs["cfg-1"], experiment=ALL_HOLDOUT))
    sent_before = len(d.commands)

    d.send("signed_up", at(hours=3))
    d.run_until(at(hours=5))

    assert [a.arm for a in of_type(d.activities, A.ENROLLED)] == [Arm.ADAPTIVE, Arm.ADAPTIVE]
    assert len(d.commands) == sent_before + 2
    assert of_type(d.activities, A.MESSAGE_SUPPRESSED) == []


def test_the_arm_of_record_survives_the_stored_form_and_old_rows_load_without_it() -> None:
    state = UserState(
        "ws", "u", past={"a": Past(1, 2, True, Arm.BASELINE), "b": Past(3, 1, False, None)}
    )

    stored = state.to_dict()

    assert UserState.from_dict(stored) == state
    old = {**stored, "pa": {"c": [5, 1, 0]}}
    assert UserState.from_dict(old).past == {"c": Past(5, 1, False, None)}
