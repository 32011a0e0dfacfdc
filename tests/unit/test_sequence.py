"""The sequence state machine, behaviour by behaviour: entry and re-entry, step timing,
conditions, waits and branches, exits and goals, experiment arms, consent and quiet hours,
pause/stop/edit, feedback, and deterministic ids and decisions."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from sme.contracts.activities import ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.reasons import Reason
from sme.contracts.sequences import Status
from sme.core import sequence
from sme.core.stats import (
    POOLED,
    channel_key,
    context_group,
    conversion_key,
    unsubscribe_key,
    variant_key,
)
from sme.core.timeutil import to_ms
from tests.unit.builders import (
    ALL_BASELINE,
    ALL_HOLDOUT,
    T0,
    Driver,
    at,
    config,
    edited,
    event,
    msg_step,
    of_type,
    with_status,
    workspace,
)

A = ActivityType
EMAIL, SMS, PUSH = Channel.EMAIL, Channel.SMS, Channel.PUSH
TWO_STEPS = [msg_step("s1"), msg_step("s2", wait="PT2H")]


def reasons(driver: Driver, kind: ActivityType) -> list[str]:
    return [a.reason_code for a in of_type(driver.activities, kind)]


# --- entry -------------------------------------------------------------------------------------


def test_a_trigger_event_enrolls_the_user_and_a_zero_wait_first_step_is_sent_at_once() -> None:
    d = Driver.of(config())

    out = d.send("signed_up")

    assert [a.type for a in out.activities] == [
        A.EVENT_RECEIVED,
        A.ENROLLED,
        A.EXPOSURE,
        A.COMMAND_EMITTED,
        A.ENROLLMENT_EXITED,  # its only step is done
    ]
    (command,) = out.commands
    assert (command.step_id, command.channel, command.template) == ("s1", EMAIL, "tpl-s1")
    assert command.decided_at == T0


def test_an_event_that_is_not_a_trigger_enrolls_nobody() -> None:
    d = Driver.of(config())

    out = d.send("visited")

    assert of_type(out, A.ENROLLED) == []
    assert d.state.enrollments == ()


def test_an_attribute_filter_admits_matching_users_and_ignores_the_others() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "filters": [{"key": "plan", "equals": "pro"}]}
    )
    pro, free = Driver.of(cfg, user_id="pro"), Driver.of(cfg, user_id="free")

    pro.send("signed_up", user={"attributes": {"plan": "pro"}})
    free.send("signed_up", user={"attributes": {"plan": "free"}})

    assert len(of_type(pro.activities, A.ENROLLED)) == 1
    assert of_type(free.activities, A.ENROLLED) == []
    assert free.commands == []


def test_an_attribute_filter_sees_profile_data_merged_earlier() -> None:
    cfg = config(entry={"event_types": ["signed_up"], "filters": [{"key": "age", "min": 18}]})
    d = Driver.of(cfg)

    d.send("visited", user={"attributes": {"age": 30}})
    d.send("signed_up", at(minutes=1))

    assert len(of_type(d.activities, A.ENROLLED)) == 1


def test_a_property_filter_tests_the_trigger_events_properties() -> None:
    cfg = config(
        entry={
            "event_types": ["signed_up"],
            "filters": [{"source": "property", "key": "source", "one_of": ["ads", "seo"]}],
        }
    )
    d = Driver.of(cfg)

    refused = d.send("signed_up", properties={"source": "referral"})
    admitted = d.send("signed_up", at(minutes=1), properties={"source": "seo"})

    assert of_type(refused, A.ENROLLED) == []
    assert len(of_type(admitted, A.ENROLLED)) == 1


def test_a_second_trigger_while_enrolled_does_not_enroll_again() -> None:
    d = Driver.of(config(steps=TWO_STEPS, entry={"event_types": ["signed_up"]}))

    d.send("signed_up")
    d.send("signed_up", at(minutes=5))

    assert len(of_type(d.activities, A.ENROLLED)) == 1
    assert len(d.commands) == 1


def _reentry(policy: str, cooldown: str = "PT0S") -> Driver:
    return Driver.of(
        config(
            entry={
                "event_types": ["signed_up"],
                "reentry": {"policy": policy, "cooldown": cooldown},
            }
        )
    )


def test_reentry_never_blocks_a_user_who_completed_the_sequence() -> None:
    d = _reentry("never")
    d.send("signed_up")
    assert d.state.enrollments == ()  # one step, sent, completed

    out = d.send("signed_up", at(days=30))

    assert of_type(out, A.ENROLLED) == []
    assert [a.reason_code for a in of_type(out, A.ENROLLMENT_SKIPPED)] == [Reason.REENTRY_BLOCKED]
    assert len(d.commands) == 1


def test_reentry_with_a_cooldown_waits_out_the_cooldown_from_the_last_enrollment() -> None:
    d = _reentry("cooldown", "P1D")
    d.send("signed_up")

    blocked = d.send("signed_up", at(hours=23, minutes=59))
    admitted = d.send("signed_up", at(days=1))

    assert of_type(blocked, A.ENROLLMENT_SKIPPED)
    assert len(of_type(admitted, A.ENROLLED)) == 1
    assert d.state.past["cfg-1"].seq == 2
    assert len(d.commands) == 2
    assert d.commands[0].command_id != d.commands[1].command_id


def test_reentry_always_admits_the_user_again_right_after_completion() -> None:
    d = _reentry("always")

    d.send("signed_up")
    d.send("signed_up", at(seconds=1))

    assert len(of_type(d.activities, A.ENROLLED)) == 2
    assert len(d.commands) == 2


def test_exposure_is_logged_once_per_user_and_config_however_often_they_reenter() -> None:
    d = _reentry("always")

    for minute in range(3):
        d.send("signed_up", at(minutes=minute))

    assert len(of_type(d.activities, A.ENROLLED)) == 3
    assert len(of_type(d.activities, A.EXPOSURE)) == 1


def test_a_paused_or_stopped_config_enrolls_nobody() -> None:
    for status in (Status.PAUSED, Status.STOPPED):
        d = Driver.of(config(status=status.value))

        out = d.send("signed_up")

        assert [a.type for a in out.activities] == [A.EVENT_RECEIVED]
        assert d.state.enrollments == ()


# --- step timing -------------------------------------------------------------------------------


def test_a_step_waits_from_the_previous_step_by_default() -> None:
    d = Driver.of(config(steps=TWO_STEPS))
    d.send("signed_up")

    assert d.due() == at(hours=2)
    assert d.tick(at(hours=1, minutes=59)).commands == ()
    (command,) = d.tick(at(hours=2)).commands
    assert command.step_id == "s2"


def test_a_wait_from_the_previous_step_counts_from_when_that_step_was_actually_sent() -> None:
    # s1 is deferred by quiet hours to 08:00; s2 waits 2h from then, not from entry.
    cfg = config(steps=TWO_STEPS, guardrails={"quiet_hours": {"start": "22:00", "end": "08:00"}})
    d = Driver.of(cfg)
    d.send("signed_up", datetime(2024, 5, 1, 23, 0, tzinfo=UTC))

    d.run_until(datetime(2024, 5, 3, tzinfo=UTC))

    assert [c.decided_at for c in d.commands] == [
        datetime(2024, 5, 2, 8, 0, tzinfo=UTC),
        datetime(2024, 5, 2, 10, 0, tzinfo=UTC),
    ]


def test_a_wait_from_entry_counts_from_the_enrollment_whatever_happened_before() -> None:
    cfg = config(
        steps=[
            msg_step("s1", wait="PT1H"),
            msg_step("s2", wait="PT3H", wait_from="entry"),
            msg_step("s3", wait="PT3H", wait_from="previous"),
        ]
    )
    d = Driver.of(cfg)
    d.send("signed_up")

    d.run_until(at(days=1))

    assert [(c.step_id, c.decided_at) for c in d.commands] == [
        ("s1", at(hours=1)),
        ("s2", at(hours=3)),
        ("s3", at(hours=6)),
    ]


def test_a_wait_from_entry_already_past_makes_the_step_due_at_once() -> None:
    cfg = config(
        steps=[msg_step("s1", wait="PT5H"), msg_step("s2", wait="PT1H", wait_from="entry")]
    )
    d = Driver.of(cfg)
    d.send("signed_up")

    d.run_until(at(days=1))

    assert [(c.step_id, c.decided_at) for c in d.commands] == [
        ("s1", at(hours=5)),
        ("s2", at(hours=5)),
    ]


def test_the_enrollment_ends_as_completed_after_its_last_step() -> None:
    d = Driver.of(config(steps=TWO_STEPS))
    d.send("signed_up")
    d.run_until(at(days=1))

    assert d.state.enrollments == ()
    assert reasons(d, A.ENROLLMENT_EXITED) == [Reason.COMPLETED]
    assert of_type(d.activities, A.ENROLLMENT_EXITED)[0].details == {"sent": 2}


# --- conditions, waits, branches -------------------------------------------------------------


def _no_click_followup() -> Driver:
    return Driver.of(
        config(
            steps=[
                msg_step("s1"),
                msg_step("s2", wait="P1D", condition={"none_of_events": ["clicked"]}),
            ]
        )
    )


def test_no_click_since_the_previous_step_lets_the_follow_up_go_out() -> None:
    d = _no_click_followup()
    d.send("signed_up")
    d.send("opened", at(hours=1))

    d.run_until(at(days=2))

    assert [c.step_id for c in d.commands] == ["s1", "s2"]


def test_a_click_since_the_previous_step_suppresses_the_follow_up() -> None:
    d = _no_click_followup()
    d.send("signed_up")
    d.send("clicked", at(hours=1), channel="email")

    d.run_until(at(days=2))

    assert [c.step_id for c in d.commands] == ["s1"]
    (skipped,) = of_type(d.activities, A.STEP_SKIPPED)
    assert (skipped.step_id, skipped.reason_code) == ("s2", Reason.CONDITION_FALSE)
    assert d.state.enrollments == ()


def test_a_click_before_the_previous_step_does_not_count_for_the_condition() -> None:
    cfg = config(
        steps=[
            msg_step("s1", wait="PT1H"),
            msg_step("s2", wait="P1D", condition={"none_of_events": ["clicked"]}),
        ]
    )
    d = Driver.of(cfg)
    d.send("signed_up")
    d.send("clicked", at(minutes=30))  # before s1 went out

    d.run_until(at(days=2))

    assert [c.step_id for c in d.commands] == ["s1", "s2"]


def test_an_any_of_condition_sends_only_after_one_of_its_events() -> None:
    cfg = config(
        steps=[
            msg_step("s1"),
            msg_step("s2", wait="P1D", condition={"any_of_events": ["visited_pricing"]}),
        ]
    )
    quiet, active = Driver.of(cfg, user_id="quiet"), Driver.of(cfg, user_id="active")
    for d in (quiet, active):
        d.send("signed_up")
    active.send("visited_pricing", at(hours=3))

    for d in (quiet, active):
        d.run_until(at(days=2))

    assert [c.step_id for c in quiet.commands] == ["s1"]
    assert [c.step_id for c in active.commands] == ["s1", "s2"]


def _awaiting_open() -> Driver:
    return Driver.of(
        config(
            steps=[
                msg_step("s1"),
                msg_step(
                    "reminder",
                    channels=["sms"],
                    wait_for={"event_type": "opened", "timeout": "PT1H", "on_event": "thanks"},
                ),
                msg_step("thanks", channels=["push"]),
            ]
        )
    )


def test_an_awaited_event_jumps_to_its_target_at_once() -> None:
    d = _awaiting_open()
    d.send("signed_up")

    out = d.send("opened", at(minutes=20))

    assert [c.step_id for c in out.commands] == ["thanks"]
    (branched,) = of_type(out, A.STEP_BRANCHED)
    assert (branched.step_id, branched.reason_code) == ("reminder", Reason.AWAITED_EVENT)
    assert branched.details == {"goto": "thanks"}
    assert all(c.step_id != "reminder" for c in d.commands)


def test_without_the_awaited_event_the_step_is_sent_at_the_timeout() -> None:
    d = _awaiting_open()
    d.send("signed_up")

    assert d.due() == at(hours=1)
    d.run_until(at(days=1))

    assert [(c.step_id, c.decided_at) for c in d.commands] == [
        ("s1", T0),
        ("reminder", at(hours=1)),
        ("thanks", at(hours=1)),
    ]


def test_the_timeout_adds_to_the_steps_own_wait() -> None:
    cfg = config(
        steps=[
            msg_step("s1"),
            msg_step("s2", wait="PT2H", wait_for={"event_type": "opened", "timeout": "PT1H"}),
        ]
    )
    d = Driver.of(cfg)
    d.send("signed_up")

    assert d.due() == at(hours=3)


def _branching() -> Driver:
    return Driver.of(
        config(
            steps=[
                msg_step("s1"),
                {
                    "id": "route",
                    "kind": "branch",
                    "wait": "P1D",
                    "branches": [
                        {"event_type": "clicked", "goto": "engaged"},
                        {"attribute": {"key": "plan", "equals": "pro"}, "goto": "exit"},
                    ],
                },
                msg_step("nudge"),
                msg_step("engaged", channels=["push"]),
            ]
        )
    )


def test_a_branch_rule_that_holds_jumps_forward_over_the_steps_in_between() -> None:
    d = _branching()
    d.send("signed_up")
    d.send("clicked", at(hours=2))

    d.run_until(at(days=3))

    assert [c.step_id for c in d.commands] == ["s1", "engaged"]
    (branched,) = of_type(d.activities, A.STEP_BRANCHED)
    assert (branched.step_id, branched.details) == ("route", {"goto": "engaged"})


def test_a_branch_with_no_rule_holding_falls_through_to_the_next_step() -> None:
    d = _branching()
    d.send("signed_up")

    d.run_until(at(days=3))

    assert [c.step_id for c in d.commands] == ["s1", "nudge", "engaged"]


def test_a_branch_to_exit_ends_the_enrollment() -> None:
    d = _branching()
    d.send("signed_up", user={"attributes": {"plan": "pro"}})

    d.run_until(at(days=3))

    assert [c.step_id for c in d.commands] == ["s1"]
    assert reasons(d, A.ENROLLMENT_EXITED) == [Reason.BRANCHED]


def test_an_enrollment_only_ever_moves_forward_through_the_steps() -> None:
    d = _branching()
    d.send("signed_up")
    positions = [d.state.enrollments[0].step]
    for hour in range(1, 80, 7):
        d.send("clicked" if hour % 2 else "visited", at(hours=hour))
        d.tick(at(hours=hour, minutes=1))
        if d.state.enrollments:
            positions.append(d.state.enrollments[0].step)

    assert positions == sorted(positions)


# --- exits and goals ---------------------------------------------------------------------------


def test_an_exit_event_ends_the_enrollment_and_nothing_more_is_sent() -> None:
    d = Driver.of(config(steps=TWO_STEPS, exit={"event_types": ["account_deleted"]}))
    d.send("signed_up")

    out = d.send("account_deleted", at(hours=1))
    d.run_until(at(days=1))

    assert [a.reason_code for a in of_type(out, A.ENROLLMENT_EXITED)] == [Reason.EXIT_EVENT]
    assert [c.step_id for c in d.commands] == ["s1"]
    assert d.state.enrollments == ()


def _with_goal(**overrides: object) -> Driver:
    goal = {"event_type": "purchased", "value_property": "amount"}
    return Driver.of(
        config(
            steps=[
                msg_step("s1"),
                msg_step("s2", channels=["sms"], wait="PT1H"),
                msg_step("s3", wait="P1D"),
            ],
            exit={"goal": goal},
            **overrides,
        )
    )


def test_a_goal_event_ends_the_enrollment_and_records_a_conversion_with_its_value() -> None:
    d = _with_goal()
    d.send("signed_up")

    out = d.send("purchased", at(minutes=30), properties={"amount": 42.5})

    (conversion,) = of_type(out, A.CONVERSION)
    assert conversion.value == 42.5
    assert conversion.config_id == "cfg-1"
    assert [a.reason_code for a in of_type(out, A.ENROLLMENT_EXITED)] == [Reason.GOAL_REACHED]
    assert d.state.enrollments == ()


def test_a_conversion_is_attributed_to_the_last_touch() -> None:
    d = _with_goal()
    d.send("signed_up")
    d.run_until(at(hours=2))  # s1 (email) and s2 (sms) went out

    out = d.send("purchased", at(hours=3), properties={"amount": 10})

    (conversion,) = of_type(out, A.CONVERSION)
    assert (conversion.step_id, conversion.channel, conversion.arm) == ("s2", SMS, Arm.ADAPTIVE)
    success = {(s.key, s.successes) for s in out.stat_deltas}
    assert (channel_key("cfg-1", "s2", "sms", POOLED), 1) in success
    assert all(s.key.split("|")[2] == "s2" for s in out.stat_deltas)


def test_a_value_objective_counts_messages_and_the_conversion_per_channel() -> None:
    d = _with_goal(adaptive={"objective": "net_value"})
    sent = d.send("signed_up")
    out = d.send("purchased", at(minutes=30), properties={"amount": 10})

    key = conversion_key("cfg-1", "s1", "email", POOLED)
    assert (key, 1, 0) in {(s.key, s.trials, s.successes) for s in sent.stat_deltas}
    assert (key, 0, 1) in {(s.key, s.trials, s.successes) for s in out.stat_deltas}
    plain = _with_goal()
    assert not any(s.key.startswith("k|") for s in plain.send("signed_up").stat_deltas)


def test_a_conversion_counts_once_per_enrollment() -> None:
    d = _with_goal(entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}})
    d.send("signed_up")

    d.send("purchased", at(minutes=30), properties={"amount": 1})
    d.send("purchased", at(minutes=40), properties={"amount": 2})
    d.send("signed_up", at(hours=1))
    d.send("purchased", at(hours=2), properties={"amount": 3})
    d.send("purchased", at(hours=3), properties={"amount": 4})

    assert [a.value for a in of_type(d.activities, A.CONVERSION)] == [1.0, 3.0]
    ids = [a.activity_id for a in of_type(d.activities, A.CONVERSION)]
    assert len(set(ids)) == 2


def test_a_goal_after_the_enrollment_ended_still_converts_within_the_attribution_window() -> None:
    d = _with_goal()
    d.send("signed_up")
    d.run_until(at(days=2))
    assert d.state.enrollments == ()

    out = d.send("purchased", at(days=5), properties={"amount": 7})

    (conversion,) = of_type(out, A.CONVERSION)
    assert conversion.step_id == "s3"


def test_a_goal_long_after_the_attribution_window_is_not_a_conversion() -> None:
    d = _with_goal()
    d.send("signed_up")
    d.run_until(at(days=2))

    out = d.send("purchased", at(days=30), properties={"amount": 7})

    assert of_type(out, A.CONVERSION) == []


def test_a_holdout_user_converts_too_and_is_attributed_to_the_holdout_arm() -> None:
    d = _with_goal(experiment=ALL_HOLDOUT)
    d.send("signed_up")
    d.run_until(at(hours=2))

    out = d.send("purchased", at(hours=3), properties={"amount": 9.99})

    (conversion,) = of_type(out, A.CONVERSION)
    assert conversion.arm is Arm.HOLDOUT
    assert conversion.value == 9.99
    assert conversion.step_id == "s2"  # the last (suppressed) touch
    assert conversion.channel is None
    assert out.stat_deltas == ()
    assert d.commands == []


# --- experiment arms ---------------------------------------------------------------------------


def test_the_holdout_sends_nothing_but_logs_each_suppressed_message() -> None:
    d = Driver.of(config(steps=TWO_STEPS, experiment=ALL_HOLDOUT))
    d.send("signed_up")

    d.run_until(at(days=1))

    assert d.commands == []
    suppressed = of_type(d.activities, A.MESSAGE_SUPPRESSED)
    assert [(a.step_id, a.reason_code, a.arm) for a in suppressed] == [
        ("s1", Reason.HOLDOUT, Arm.HOLDOUT),
        ("s2", Reason.HOLDOUT, Arm.HOLDOUT),
    ]
    assert of_type(d.activities, A.EXPOSURE)[0].arm is Arm.HOLDOUT
    assert d.outcomes and all(o.ledger_deltas == () and o.stat_deltas == () for o in d.outcomes)


def _multichannel(experiment: Mapping[str, float], *, send_time: bool = False) -> Driver:
    cfg = config(
        steps=[msg_step("s1", channels=["sms", "email", "push"], variants=["a", "b", "c"])],
        experiment=experiment,
        adaptive={"send_time": {"enabled": send_time, "min_observations": 3}},
    )
    return Driver.of(cfg)


def test_the_baseline_uses_the_first_eligible_channel_and_the_first_variant() -> None:
    d = _multichannel(ALL_BASELINE)

    d.send("signed_up", user={"consent": {"sms": False}})

    (command,) = d.commands
    assert (command.channel, command.variant, command.arm) == (EMAIL, "a", Arm.BASELINE)


def test_the_baseline_never_defers_for_send_time_optimisation() -> None:
    baseline, adaptive = (
        _multichannel(ALL_BASELINE, send_time=True),
        _multichannel({"holdout_pct": 0, "baseline_pct": 0}, send_time=True),
    )
    for d in (baseline, adaptive):
        d.state = replace(d.state, hours={15: 20})  # responds at 15:00 local

        d.send("signed_up")  # 10:00 UTC

    assert [c.decided_at for c in baseline.commands] == [T0]
    assert adaptive.commands == []
    (deferred,) = of_type(adaptive.activities, A.STEP_DEFERRED)
    assert deferred.reason_code == Reason.SEND_TIME_OPTIMISED
    adaptive.run_until(at(days=1))
    assert [c.decided_at for c in adaptive.commands] == [at(hours=5)]


def test_arm_assignment_is_recorded_on_every_command_and_activity_of_the_enrollment() -> None:
    d = Driver.of(config(steps=TWO_STEPS, experiment=ALL_BASELINE))
    d.send("signed_up")
    d.run_until(at(days=1))

    assert {c.arm for c in d.commands} == {Arm.BASELINE}
    step_activities = [a for a in d.activities if a.config_id]
    assert {a.arm for a in step_activities} == {Arm.BASELINE}


# --- consent -------------------------------------------------------------------------------------


def test_a_channel_without_consent_hands_over_to_the_next_channel() -> None:
    d = Driver.of(config(steps=[msg_step("s1", channels=["email", "sms"])]))

    d.send("signed_up", user={"consent": {"email": False}})

    assert [c.channel for c in d.commands] == [SMS]
    (emitted,) = of_type(d.activities, A.COMMAND_EMITTED)
    assert emitted.details["dropped"] == {"email": "no_consent"}


def test_unknown_consent_does_not_block_a_channel() -> None:
    d = Driver.of(config())

    d.send("signed_up", user={"consent": {"sms": False}})

    assert [c.channel for c in d.commands] == [EMAIL]


def test_with_no_consented_channel_the_step_is_skipped_for_lack_of_consent() -> None:
    d = Driver.of(
        config(
            steps=[
                msg_step("s1", channels=["email", "sms"]),
                msg_step("s2", channels=["push"], wait="PT1H"),
            ]
        )
    )

    out = d.send("signed_up", user={"consent": {"email": False, "sms": False}})

    assert out.commands == ()
    (skipped,) = of_type(out, A.STEP_SKIPPED)
    assert (skipped.step_id, skipped.reason_code) == ("s1", Reason.NO_CONSENT)
    d.run_until(at(days=1))
    assert [c.step_id for c in d.commands] == ["s2"]


def test_unsubscribing_revokes_that_channels_consent_and_later_steps_skip_it() -> None:
    cfg = config(steps=[msg_step("s1"), msg_step("s2", channels=["email", "sms"], wait="P1D")])
    d = Driver.of(cfg)
    d.send("signed_up")
    first = d.commands[0]

    out = d.send("unsubscribed", at(hours=1), command_id=first.command_id)
    d.run_until(at(days=2))

    (revoked,) = of_type(out, A.CONSENT_REVOKED)
    assert (revoked.channel, revoked.step_id) == (EMAIL, "s1")
    assert d.state.profile.consent == {EMAIL: False}
    assert [c.channel for c in d.commands] == [EMAIL, SMS]


def test_a_later_profile_grant_restores_consent_after_an_unsubscribe() -> None:
    d = Driver.of(config(entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}}))
    d.send("signed_up")
    d.send("unsubscribed", at(hours=1), channel="email")

    d.send("signed_up", at(hours=2))  # no consent: skipped
    d.send("signed_up", at(hours=3), user={"consent": {"email": True}})

    assert [c.decided_at for c in d.commands] == [T0, at(hours=3)]


# --- guardrails inside the machine ---------------------------------------------------------------


def test_quiet_hours_defer_to_the_end_of_the_window_in_the_users_zone_across_spring_dst() -> None:
    # Paris jumps from 02:00 CET to 03:00 CEST on 31 March 2024: 08:00 local is 06:00 UTC.
    cfg = config(guardrails={"quiet_hours": {"start": "22:00", "end": "08:00"}})
    d = Driver.of(cfg)
    signup = datetime(2024, 3, 30, 21, 30, tzinfo=UTC)  # 22:30 CET

    out = d.send("signed_up", signup, user={"timezone": "Europe/Paris"})

    (deferred,) = of_type(out, A.STEP_DEFERRED)
    assert deferred.reason_code == Reason.QUIET_HOURS
    assert d.due() == datetime(2024, 3, 31, 6, 0, tzinfo=UTC)
    assert d.tick(datetime(2024, 3, 31, 5, 59, tzinfo=UTC)).commands == ()
    d.run_until(datetime(2024, 4, 1, tzinfo=UTC))
    assert [c.decided_at for c in d.commands] == [datetime(2024, 3, 31, 6, 0, tzinfo=UTC)]


def test_quiet_hours_defer_to_the_end_of_the_window_in_the_users_zone_across_autumn_dst() -> None:
    # Paris falls back from 03:00 CEST to 02:00 CET on 27 October 2024: 08:00 is 07:00 UTC.
    cfg = config(guardrails={"quiet_hours": {"start": "22:00", "end": "08:00"}})
    d = Driver.of(cfg)

    d.send(
        "signed_up", datetime(2024, 10, 26, 21, 0, tzinfo=UTC), user={"timezone": "Europe/Paris"}
    )
    d.run_until(datetime(2024, 10, 28, tzinfo=UTC))

    assert [c.decided_at for c in d.commands] == [datetime(2024, 10, 27, 7, 0, tzinfo=UTC)]


def test_quiet_hours_use_the_workspace_default_zone_for_a_user_without_one() -> None:
    settings = workspace().model_copy(update={"default_timezone": "Asia/Tokyo"})
    cfg = config(guardrails={"quiet_hours": {"start": "21:00", "end": "09:00"}})
    d = Driver.of(cfg, workspace=settings)

    d.send("signed_up", datetime(2024, 5, 1, 13, 0, tzinfo=UTC))  # 22:00 in Tokyo
    d.run_until(datetime(2024, 5, 3, tzinfo=UTC))

    assert [c.decided_at for c in d.commands] == [datetime(2024, 5, 2, 0, 0, tzinfo=UTC)]


def test_workspace_quiet_hours_apply_to_every_sequence() -> None:
    d = Driver.of(config(), workspace=workspace(quiet_hours={"start": "09:00", "end": "12:00"}))

    d.send("signed_up")  # 10:00 UTC
    d.run_until(at(days=1))

    assert [c.decided_at for c in d.commands] == [at(hours=2)]


def test_a_minimum_gap_defers_the_next_message() -> None:
    cfg = config(
        steps=[msg_step("s1"), msg_step("s2", wait="PT1H")], guardrails={"min_gap": "PT4H"}
    )
    d = Driver.of(cfg)
    d.send("signed_up")

    d.run_until(at(days=1))

    assert [c.decided_at for c in d.commands] == [T0, at(hours=4)]
    assert reasons(d, A.STEP_DEFERRED) == [Reason.MIN_GAP]


def test_a_frequency_cap_with_on_limit_skip_skips_the_step_instead_of_waiting() -> None:
    cfg = config(
        steps=[msg_step("s1"), msg_step("s2", wait="PT1H"), msg_step("s3", wait="PT1H")],
        guardrails={"frequency_caps": [{"max": 1, "per": "PT6H"}], "on_limit": "skip"},
    )
    d = Driver.of(cfg)
    d.send("signed_up")

    d.run_until(at(days=1))

    assert [c.step_id for c in d.commands] == ["s1"]
    assert reasons(d, A.STEP_SKIPPED) == [Reason.FREQUENCY_CAP, Reason.FREQUENCY_CAP]


def test_max_messages_per_enrollment_ends_the_enrollment_at_the_limit() -> None:
    cfg = config(
        steps=[msg_step("s1"), msg_step("s2", wait="PT1H"), msg_step("s3", wait="PT1H")],
        guardrails={"max_messages_per_enrollment": 2},
    )
    d = Driver.of(cfg)
    d.send("signed_up")

    d.run_until(at(days=1))

    assert [c.step_id for c in d.commands] == ["s1", "s2"]
    assert reasons(d, A.ENROLLMENT_EXITED) == [Reason.MAX_MESSAGES]


def test_a_workspace_limit_on_messages_per_enrollment_applies_too() -> None:
    cfg = config(steps=[msg_step("s1"), msg_step("s2", wait="PT1H"), msg_step("s3", wait="PT1H")])
    d = Driver.of(cfg, workspace=workspace(max_messages_per_enrollment=1))
    d.send("signed_up")

    d.run_until(at(days=1))

    assert [c.step_id for c in d.commands] == ["s1"]
    assert reasons(d, A.ENROLLMENT_EXITED) == [Reason.MAX_MESSAGES]


def _budgeted(sequence_rules: dict[str, object], workspace_rules: dict[str, object]) -> Driver:
    cfg = config(
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        guardrails=sequence_rules,
    )
    return Driver.of(cfg, workspace=workspace(**workspace_rules))


def test_a_sequence_cost_budget_counts_the_workspace_price_when_the_sequence_sets_none() -> None:
    d = _budgeted({"daily_cost_budget": 1.0}, {"cost_per_message": {"email": 0.5}})

    for minute in range(5):
        d.send("signed_up", at(minutes=minute))

    assert len(d.commands) == 2
    assert sum(a.cost for a in of_type(d.activities, A.COMMAND_EMITTED)) == 1.0


def test_a_workspace_cost_budget_counts_the_sequence_price() -> None:
    d = _budgeted({"cost_per_message": {"email": 0.5}}, {"daily_cost_budget": 1.0})

    for minute in range(5):
        d.send("signed_up", at(minutes=minute))

    assert len(d.commands) == 2
    assert sum(a.cost for a in of_type(d.activities, A.COMMAND_EMITTED)) == 1.0


def _flooded(victim_rules: dict[str, object], flood_arm: Mapping[str, float]) -> Driver:
    """`victim` sends one e-mail per trigger; `flood` sends (or, in its holdout, suppresses)
    four SMS per trigger, far more than the send log's latest MAX_TOUCHES."""
    victim = config(
        id="victim",
        entry={"event_types": ["victim_go"], "reentry": {"policy": "always"}},
        guardrails={**victim_rules, "on_limit": "skip"},
    )
    flood = config(
        id="flood",
        entry={"event_types": ["flood_go"], "reentry": {"policy": "always"}},
        steps=[msg_step(f"f{i}", channels=["sms"]) for i in range(4)],
        experiment=flood_arm,
    )
    return Driver.of(victim, flood)


def _victim_sends(d: Driver) -> list[datetime]:
    d.send("victim_go")
    for minute in range(1, 11):
        d.send("flood_go", at(minutes=minute))
    d.send("victim_go", at(hours=1))
    return [c.decided_at for c in d.commands if c.config_id == "victim"]


def test_a_sequence_cap_still_counts_sends_that_other_sequences_pushed_out_of_the_log() -> None:
    for arm in (ALL_HOLDOUT, {"holdout_pct": 0, "baseline_pct": 0}):
        d = _flooded({"frequency_caps": [{"max": 1, "per": "P3D"}]}, arm)

        assert _victim_sends(d) == [T0]


def test_a_sequence_gap_still_counts_a_send_that_other_sequences_pushed_out_of_the_log() -> None:
    d = _flooded({"min_gap": "P1D"}, ALL_HOLDOUT)

    assert _victim_sends(d) == [T0]
    assert reasons(d, A.STEP_SKIPPED) == []  # deferred, not skipped: a gap is not a limit


def test_a_workspace_channel_cap_still_counts_sends_pushed_out_of_the_log() -> None:
    d = _flooded({}, {"holdout_pct": 0, "baseline_pct": 0})
    d.workspace = workspace(frequency_caps=[{"max": 1, "per": "P1D", "channel": "email"}])

    assert _victim_sends(d) == [T0]


def test_the_send_log_stays_bounded_by_what_the_caps_need() -> None:
    d = _flooded({"frequency_caps": [{"max": 3, "per": "P3D"}]}, ALL_HOLDOUT)
    for hour in range(0, 48, 4):
        d.send("victim_go", at(hours=hour))
        d.send("flood_go", at(hours=hour, minutes=1))

    assert len(d.state.touches) <= 30 + 3


# --- pause, stop, edit -------------------------------------------------------------------------


def test_nothing_is_emitted_while_paused_and_the_overdue_step_fires_once_after_resume() -> None:
    cfg = config(steps=[msg_step("s1"), msg_step("s2", wait="PT1H"), msg_step("s3", wait="PT1H")])
    d = Driver.of(cfg)
    d.send("signed_up")
    d.set_config(with_status(cfg, Status.PAUSED))

    for hours in (1, 2, 5):
        paused = d.tick(at(hours=hours))
        assert (paused.commands, paused.activities) == ((), ())
    d.set_config(with_status(d.configs["cfg-1"], Status.ACTIVE))
    resumed = d.tick(at(hours=6))
    again = d.tick(at(hours=6, minutes=1))

    assert [c.step_id for c in resumed.commands] == ["s2"]
    assert again.commands == ()
    assert d.due() == at(hours=7)  # s3 waits its hour from s2, not from the original plan
    d.run_until(at(days=1))
    assert [(c.step_id, c.decided_at) for c in d.commands] == [
        ("s1", T0),
        ("s2", at(hours=6)),
        ("s3", at(hours=7)),
    ]


def test_an_event_while_paused_sends_nothing_for_the_paused_config() -> None:
    cfg = config(steps=TWO_STEPS)
    d = Driver.of(cfg)
    d.send("signed_up")
    d.set_config(with_status(cfg, Status.PAUSED))

    out = d.send("visited", at(hours=3))

    assert out.commands == ()
    assert [a.type for a in out.activities] == [A.EVENT_RECEIVED]


def test_a_stopped_config_ends_its_enrollments_and_sends_nothing_more() -> None:
    cfg = config(steps=TWO_STEPS)
    d = Driver.of(cfg)
    d.send("signed_up")
    d.set_config(with_status(cfg, Status.STOPPED))

    out = d.tick(at(hours=2))
    later = [d.tick(at(hours=3)), d.send("signed_up", at(hours=4)), d.tick(at(days=3))]

    assert out.commands == ()
    assert [a.reason_code for a in of_type(out, A.ENROLLMENT_EXITED)] == [Reason.CONFIG_STOPPED]
    assert d.state.enrollments == ()
    assert all(o.commands == () for o in later)
    assert [a.type for o in later for a in o.activities] == [A.EVENT_RECEIVED]


def test_a_deleted_config_ends_its_enrollments_when_they_fall_due() -> None:
    d = Driver.of(config(steps=TWO_STEPS))
    d.send("signed_up")
    d.configs = {}

    out = d.tick(at(hours=2))

    assert out.commands == ()
    assert [a.reason_code for a in of_type(out, A.ENROLLMENT_EXITED)] == [Reason.CONFIG_DELETED]


def test_an_edit_that_removes_the_current_step_moves_to_the_step_now_at_its_position() -> None:
    cfg = config(steps=[msg_step("s1"), msg_step("s2", wait="PT1H"), msg_step("s3", wait="PT1H")])
    d = Driver.of(cfg)
    d.send("signed_up")
    assert d.state.enrollments[0].step_id == "s2"

    d.set_config(edited(cfg, steps=[msg_step("s1"), msg_step("s3", wait="PT1H")]))
    d.run_until(at(days=1))

    assert [c.step_id for c in d.commands] == ["s1", "s3"]
    assert d.commands[1].config_version == 2


def test_an_edit_that_removes_the_last_steps_ends_the_enrollment() -> None:
    cfg = config(steps=TWO_STEPS)
    d = Driver.of(cfg)
    d.send("signed_up")

    d.set_config(edited(cfg, steps=[msg_step("s1")]))
    d.run_until(at(days=1))

    assert [c.step_id for c in d.commands] == ["s1"]
    assert reasons(d, A.ENROLLMENT_EXITED) == [Reason.STEP_REMOVED]


def test_an_edit_applies_to_in_flight_enrollments_by_step_id() -> None:
    cfg = config(steps=TWO_STEPS)
    d = Driver.of(cfg)
    d.send("signed_up")

    new_s2 = msg_step("s2", wait="PT2H", template="tpl-s2-v2", channels=["push"])
    d.set_config(edited(cfg, steps=[msg_step("s0"), msg_step("s1"), new_s2]))
    d.run_until(at(days=1))

    assert [(c.step_id, c.template, c.channel) for c in d.commands] == [
        ("s1", "tpl-s1", EMAIL),
        ("s2", "tpl-s2-v2", PUSH),
    ]


# --- feedback ----------------------------------------------------------------------------------


def test_a_click_on_a_command_updates_affinity_and_counts_one_success() -> None:
    d = Driver.of(config())
    d.send("signed_up")
    (command,) = d.commands
    assert d.state.affinity == {EMAIL: (1, 0)}

    first = d.send("clicked", at(hours=1), command_id=command.command_id)
    second = d.send("clicked", at(hours=2), command_id=command.command_id)

    assert d.state.affinity == {EMAIL: (1, 1)}
    assert {(s.key, s.trials, s.successes) for s in first.stat_deltas} == {
        (channel_key("cfg-1", "s1", "email", POOLED), 0, 1),
        (variant_key("cfg-1", "s1", "default", POOLED), 0, 1),
    }
    assert second.stat_deltas == ()
    (feedback,) = of_type(first, A.FEEDBACK)
    assert (feedback.step_id, feedback.channel, feedback.command_id) == (
        "s1",
        EMAIL,
        command.command_id,
    )


def test_an_open_is_feedback_but_not_a_success() -> None:
    d = Driver.of(config())
    d.send("signed_up")

    out = d.send("opened", at(hours=1), command_id=d.commands[0].command_id)

    assert len(of_type(out, A.FEEDBACK)) == 1
    assert out.stat_deltas == ()
    assert d.state.affinity == {EMAIL: (1, 0)}
    assert d.state.hours == {11: 1}  # engagement hour (UTC user) for send-time optimisation


def test_a_send_counts_one_trial_in_the_group_and_the_pooled_statistics() -> None:
    cfg = config(adaptive={"context_attributes": ["plan"]})
    d = Driver.of(cfg)

    out = d.send("signed_up", user={"attributes": {"plan": "pro"}})

    group = context_group(d.state.profile, ["plan"])
    assert group != POOLED
    assert {(s.key, s.trials, s.successes) for s in out.stat_deltas} == {
        (channel_key("cfg-1", "s1", "email", group), 1, 0),
        (channel_key("cfg-1", "s1", "email", POOLED), 1, 0),
        (variant_key("cfg-1", "s1", "default", group), 1, 0),
        (variant_key("cfg-1", "s1", "default", POOLED), 1, 0),
        (unsubscribe_key("cfg-1", "s1", "email", group), 1, 0),
        (unsubscribe_key("cfg-1", "s1", "email", POOLED), 1, 0),
    }


def test_an_unsubscribe_answering_a_command_counts_against_its_channel() -> None:
    cfg = config(adaptive={"context_attributes": ["plan"]})
    d = Driver.of(cfg)
    d.send("signed_up", user={"attributes": {"plan": "pro"}})
    group = context_group(d.state.profile, ["plan"])

    out = d.send("unsubscribed", channel="email", command_id=d.commands[0].command_id)

    assert {(s.key, s.trials, s.successes) for s in out.stat_deltas} == {
        (unsubscribe_key("cfg-1", "s1", "email", group), 0, 1),
        (unsubscribe_key("cfg-1", "s1", "email", POOLED), 0, 1),
    }


# --- dedupe, ids, determinism --------------------------------------------------------------------


def test_a_repeated_event_id_is_logged_as_a_duplicate_and_changes_nothing() -> None:
    d = Driver.of(config())
    d.feed(event("signed_up", event_id="evt-dup"))
    before = d.state

    out = d.feed(event("signed_up", at(minutes=5), event_id="evt-dup"))

    assert [a.type for a in out.activities] == [A.EVENT_DUPLICATE]
    assert out.commands == ()
    assert out.state == before


def test_the_same_due_step_always_gets_the_same_command_id() -> None:
    runs = []
    for seed in (1, 2):
        d = Driver.of(config(steps=TWO_STEPS), seed=seed)
        d.send("signed_up")
        d.run_until(at(days=1))
        runs.append([c.command_id for c in d.commands])

    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 2


def test_replaying_a_timer_from_the_same_state_reproduces_the_command_and_activity_ids() -> None:
    d = Driver.of(config(steps=TWO_STEPS))
    d.send("signed_up")
    state, ctx = d.state, d.ctx()

    first = sequence.on_timer(state, at(hours=2), random.Random(1), ctx)
    retry = sequence.on_timer(state, at(hours=2, seconds=30), random.Random(2), ctx)

    assert [c.command_id for c in first.commands] == [c.command_id for c in retry.commands]
    assert [a.activity_id for a in first.activities] == [a.activity_id for a in retry.activities]


def test_command_ids_differ_between_users_and_between_enrollments() -> None:
    cfg = config(entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}})
    a, b = Driver.of(cfg, user_id="a"), Driver.of(cfg, user_id="b")

    a.send("signed_up")
    a.send("signed_up", at(minutes=1))
    b.send("signed_up")

    ids = [c.command_id for c in a.commands + b.commands]
    assert len(ids) == len(set(ids)) == 3


def test_a_decision_is_determined_by_the_state_the_input_and_the_rng_seed() -> None:
    cfg = config(
        steps=[msg_step("s1", channels=["email", "sms", "push"], variants=["a", "b", "c"])]
    )
    d = Driver.of(cfg)
    ev = event("signed_up")
    choices = set()
    for seed in range(40):
        one = sequence.on_event(d.state, ev, T0, random.Random(seed), d.ctx())
        two = sequence.on_event(d.state, ev, T0, random.Random(seed), d.ctx())
        assert one == two
        choices.add((one.commands[0].channel, one.commands[0].variant))

    assert len(choices) > 1  # the rng really is what varies the choice


def test_a_decision_never_mutates_its_input_state() -> None:
    d = Driver.of(config(steps=TWO_STEPS))
    d.send("signed_up")
    snapshot = d.state.to_dict()

    sequence.on_timer(d.state, at(hours=2), random.Random(0), d.ctx())

    assert d.state.to_dict() == snapshot
    assert to_ms(d.due() or T0) == d.state.next_due_ms()


def test_ledger_deltas_record_every_budgeted_send_at_both_levels() -> None:
    cfg = config(guardrails={"daily_send_budget": {"email": 10}})
    settings = workspace(daily_cost_budget=5.0, cost_per_message={"email": 0.25})
    d = Driver.of(cfg, workspace=settings)

    out = d.send("signed_up")

    assert sorted(out.ledger_deltas) == [
        ("c:cfg-1|2024-05-01|email", 1.0),
        ("w:ws-acme|2024-05-01|cost", 0.25),
    ]
    assert of_type(out, A.COMMAND_EMITTED)[0].cost == 0.25
