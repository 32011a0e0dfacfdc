"""Conversion credit: the arm of record is the one the user was exposed to, one event credits
at most one message, and an event that names a command credits exactly that command (or
nothing when the command is unknown)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sme.contracts.activities import ActivityType
from sme.contracts.channels import Channel
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
EMAIL_CHANNEL = Channel.EMAIL
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


# --- item 5: one event, one credit -------------------------------------------------------------


def _credited(outcome: Any) -> set[tuple[str, str, str]]:
    """(config, step, channel) of every message the outcome counted a success for."""
    return {
        tuple(s.key.split("|")[1:4])  # type: ignore[misc]
        for s in outcome.stat_deltas
        if s.successes and s.key.startswith("c|")
    }


def test_a_converted_event_that_is_feedback_and_a_goal_credits_one_message_only() -> None:
    d = Driver.of(_goal_config("converted"))
    d.send("signed_up")
    d.run_until(at(hours=2))  # s1 by e-mail, s2 by SMS

    out = d.send("converted", at(hours=3), channel="email")

    assert len(of_type(out, A.CONVERSION)) == 1
    assert _credited(out) == {("cfg-1", "s2", "sms")}  # the last touch, once
    assert sum(engaged for _, engaged in d.state.affinity.values()) == 1


def test_a_converted_event_that_is_the_goal_of_two_sequences_credits_one_message_only() -> None:
    first = _goal_config("converted")
    second = _goal_config("converted", id="cfg-2", steps=[msg_step("t1", channels=["push"])])
    d = Driver.of(first, second)
    d.send("signed_up")
    d.run_until(at(hours=2))

    out = d.send("converted", at(hours=3))

    assert {a.config_id for a in of_type(out, A.CONVERSION)} == {"cfg-1", "cfg-2"}
    assert _credited(out) == {("cfg-1", "s2", "sms")}  # the later of the two last touches


# --- item 6: the named command, and only a known one -------------------------------------------


def test_a_conversion_naming_a_command_is_attributed_to_that_command_not_the_last_touch() -> None:
    d = Driver.of(_goal_config())
    d.send("signed_up")
    d.run_until(at(hours=2))
    first, _second = d.commands

    out = d.send("purchased", at(hours=3), command_id=first.command_id, properties={"amount": 3})

    (conversion,) = of_type(out, A.CONVERSION)
    assert (conversion.step_id, conversion.channel, conversion.command_id) == (
        "s1",
        first.channel,
        first.command_id,
    )
    assert _credited(out) == {("cfg-1", "s1", "email")}


def test_a_click_naming_an_unknown_command_credits_no_message() -> None:
    d = Driver.of(_goal_config())
    d.send("signed_up")

    out = d.send("clicked", at(minutes=30), channel="email", command_id="never-sent-to-this-user")

    (feedback,) = of_type(out, A.FEEDBACK)
    assert (feedback.config_id, feedback.step_id, feedback.reason_code) == (
        "",
        "",
        "unknown_command",
    )
    assert feedback.command_id == "never-sent-to-this-user"
    assert out.stat_deltas == ()
    assert d.state.affinity[EMAIL_CHANNEL] == (1, 0)


def test_a_conversion_naming_an_unknown_command_is_logged_unattributed_and_credits_nothing() -> (
    None
):
    d = Driver.of(_goal_config())
    d.send("signed_up")
    d.run_until(at(hours=2))

    out = d.send(
        "purchased", at(hours=3), command_id="never-sent-to-this-user", properties={"amount": 4}
    )

    (conversion,) = of_type(out, A.CONVERSION)
    assert conversion.value == 4.0
    assert conversion.arm is Arm.ADAPTIVE
    assert (conversion.step_id, conversion.channel, conversion.command_id) == ("", None, "")
    assert conversion.reason_code == "unknown_command"
    assert out.stat_deltas == ()
    assert d.state.past["cfg-1"].converted  # the sequence's goal is reached all the same


# --- the invariant ------------------------------------------------------------------------------

SPLITS = [NO_EXPERIMENT, ALL_HOLDOUT, {"holdout_pct": 0, "baseline_pct": 100}, {"holdout_pct": 50}]
STEPS_OF = {
    "cfg-0": [msg_step("s1"), msg_step("s2", channels=["sms"], wait="PT1H")],
    "cfg-1": [msg_step("t1", channels=["push"]), msg_step("t2", wait="PT2H")],
}


@settings(max_examples=200, deadline=None)
@given(
    goals=st.lists(st.sampled_from(["converted", "purchased"]), min_size=1, max_size=2),
    splits=st.lists(st.sampled_from(SPLITS), min_size=2, max_size=2),
    minutes=st.integers(0, 200),
    changed_split=st.sampled_from([None, *SPLITS]),
    event_type=st.sampled_from(["converted", "purchased", "clicked"]),
    names=st.sampled_from(["nothing", "a sent command", "an unknown command"]),
    pick=st.integers(0, 10),
    channel=st.sampled_from([None, "email", "sms", "push"]),
)
def test_every_conversion_event_credits_at_most_one_message_the_named_one_in_the_exposed_arm(
    goals: list[str],
    splits: list[dict[str, Any]],
    minutes: int,
    changed_split: dict[str, Any] | None,
    event_type: str,
    names: str,
    pick: int,
    channel: str | None,
) -> None:
    configs = [
        _goal_config(goal, id=f"cfg-{i}", steps=STEPS_OF[f"cfg-{i}"], experiment=splits[i])
        for i, goal in enumerate(goals)
    ]
    goal_of = {c.id: goal for c, goal in zip(configs, goals, strict=True)}
    d = Driver.of(*configs)
    d.send("signed_up")
    d.run_until(at(minutes=minutes))
    exposed = {a.config_id: a.arm for a in of_type(d.activities, A.EXPOSURE)}
    if changed_split is not None:  # e.g. a PATCH of holdout_pct before the conversion
        for c in configs:
            d.set_config(edited(d.configs[c.id], experiment=changed_split))
    named = None
    if names == "a sent command" and d.commands:
        named = d.commands[pick % len(d.commands)]
    command_id = {"nothing": None, "an unknown command": "no-such-command"}.get(
        names, named.command_id if named else None
    )
    fields: dict[str, Any] = {"properties": {"amount": 1}}
    if channel is not None:
        fields["channel"] = channel
    if command_id is not None:
        fields["command_id"] = command_id

    out = d.send(event_type, at(minutes=minutes + 1), **fields)

    credited = _credited(out)
    assert len(credited) <= 1  # one event, at most one credit
    if command_id is not None and named is None:  # unknown: nothing credited, nothing attributed
        assert credited == set()
        for row in of_type(out, A.CONVERSION) + of_type(out, A.FEEDBACK):
            assert (row.step_id, row.reason_code) == ("", "unknown_command")
    if named is not None:  # exactly the named command, if the event is feedback or its goal
        expected = (named.config_id, named.step_id, named.channel.value)
        earns = event_type in ("clicked", "converted") or goal_of[named.config_id] == event_type
        assert credited == ({expected} if earns else set())
    conversions = of_type(out, A.CONVERSION)
    assert sorted(a.config_id for a in conversions) == sorted(
        cid for cid, goal in goal_of.items() if goal == event_type
    )
    for conversion in conversions:
        assert conversion.arm is exposed[conversion.config_id]
        if named is not None and conversion.config_id == named.config_id:
            assert (conversion.step_id, conversion.command_id) == (
                named.step_id,
                named.command_id,
            )
        elif command_id is not None:
            assert (conversion.step_id, conversion.command_id) == ("", "")
