"""List enrollment in the pure core: a listed user enters through the same gate as an
event-triggered entry (status, filters on the profile and an empty event, re-entry, arms),
listed attributes update the profile first, and a redelivered request enrolls nobody twice."""

from __future__ import annotations

import random
from datetime import datetime

from sme.contracts.activities import ActivityType as A
from sme.contracts.commands import Arm
from sme.contracts.enrollments import EnrollRequest
from sme.contracts.reasons import Reason
from sme.contracts.sequences import SequenceConfig, Status
from sme.core.enroll import LIST_ENROLLMENT, enroll_id, on_enroll
from sme.core.sequence import Outcome
from tests.unit.builders import (
    ALL_HOLDOUT,
    T0,
    WS,
    Driver,
    at,
    config,
    msg_step,
    of_type,
    with_status,
)


def request(batch: str = "b-1", user: str = "user-1", **fields: object) -> EnrollRequest:
    return EnrollRequest.model_validate(
        {
            "workspace_id": WS,
            "config_id": "cfg-1",
            "batch_id": batch,
            "user_id": user,
            "requested_at": T0,
            **fields,
        }
    )


def enroll(d: Driver, req: EnrollRequest, now: datetime = T0) -> Outcome:
    outcome = on_enroll(d.state, req, now, random.Random(1), d.ctx())
    d.state = outcome.state
    d.commands.extend(outcome.commands)
    d.activities.extend(outcome.activities)
    return outcome


def skipped_reasons(outcome: Outcome) -> list[str]:
    return [a.reason_code for a in of_type(outcome, A.ENROLLMENT_SKIPPED)]


def test_a_listed_user_is_enrolled_now_and_a_zero_wait_first_step_is_sent_at_once() -> None:
    d = Driver.of(config())

    out = enroll(d, request())

    assert [a.type for a in out.activities] == [
        A.ENROLLED,
        A.EXPOSURE,
        A.COMMAND_EMITTED,
        A.ENROLLMENT_EXITED,
    ]
    (enrolled,) = of_type(out, A.ENROLLED)
    assert enrolled.event_type == LIST_ENROLLMENT
    assert enrolled.event_id == enroll_id(WS, "cfg-1", "b-1", "user-1")
    assert enrolled.details == {"batch_id": "b-1"}
    (command,) = out.commands
    assert (command.step_id, command.decided_at) == ("s1", T0)


def test_a_redelivered_request_enrolls_nobody_twice() -> None:
    d = Driver.of(config(entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}}))

    enroll(d, request())
    again = enroll(d, request(), at(minutes=1))

    assert [a.type for a in again.activities] == [A.EVENT_DUPLICATE]
    assert again.commands == ()
    assert len(of_type(d.activities, A.ENROLLED)) == 1


def test_another_batch_enrolls_the_user_again_only_as_re_entry_allows() -> None:
    never = Driver.of(config())
    always = Driver.of(
        config(entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}})
    )
    for d in (never, always):
        enroll(d, request("b-1"))

    blocked = enroll(never, request("b-2"), at(minutes=1))
    admitted = enroll(always, request("b-2"), at(minutes=1))

    assert skipped_reasons(blocked) == [Reason.REENTRY_BLOCKED]
    assert len(of_type(admitted, A.ENROLLED)) == 1


def test_a_user_already_in_the_sequence_stays_in_their_running_enrollment() -> None:
    d = Driver.of(config(steps=[msg_step("s1"), msg_step("s2", wait="P1D")]))
    d.send("signed_up")

    out = enroll(d, request())

    assert skipped_reasons(out) == [Reason.ALREADY_ENROLLED]
    assert len(of_type(d.activities, A.ENROLLED)) == 1


def test_a_sequence_that_is_not_active_enrolls_nobody_and_says_so() -> None:
    for status in (Status.PAUSED, Status.STOPPED):
        d = Driver.of(with_status(config(), status))

        out = enroll(d, request())

        assert skipped_reasons(out) == [Reason.NOT_ACTIVE]
        assert d.state.enrollments == ()


def test_an_unknown_sequence_enrolls_nobody() -> None:
    d = Driver.of(config())

    out = enroll(d, request(config_id="gone"))

    assert skipped_reasons(out) == [Reason.CONFIG_DELETED]


def _filtered(**entry: object) -> SequenceConfig:
    return config(entry={"event_types": ["signed_up"], **entry})


def test_entry_filters_are_judged_on_the_profile_with_listed_attributes_merged_first() -> None:
    cfg = _filtered(filters=[{"key": "plan", "equals": "pro"}])
    pro, free, unknown = Driver.of(cfg), Driver.of(cfg), Driver.of(cfg)

    admitted = enroll(pro, request(attributes={"plan": "pro"}))
    refused = enroll(free, request(attributes={"plan": "free"}))
    silent = enroll(unknown, request())

    assert len(of_type(admitted, A.ENROLLED)) == 1
    assert pro.state.profile.attributes == {"plan": "pro"}
    assert skipped_reasons(refused) == [Reason.FILTER_NOT_MATCHED]
    assert skipped_reasons(silent) == [Reason.FILTER_NOT_MATCHED]


def test_a_predicate_on_a_trigger_event_property_never_holds_for_a_list_enrollment() -> None:
    on_property = _filtered(filters=[{"source": "property", "key": "total", "min": 0}])
    negated = _filtered(when={"not": {"property": "total", "exists": True}})

    refused = enroll(Driver.of(on_property), request())
    admitted = enroll(Driver.of(negated), request())

    assert skipped_reasons(refused) == [Reason.FILTER_NOT_MATCHED]
    assert len(of_type(admitted, A.ENROLLED)) == 1


def test_the_experiment_assigns_the_arm_as_for_any_entry() -> None:
    d = Driver.of(config(experiment=ALL_HOLDOUT))

    out = enroll(d, request())

    (enrolled,) = of_type(out, A.ENROLLED)
    assert enrolled.arm is Arm.HOLDOUT
    assert out.commands == ()
    assert [a.reason_code for a in of_type(out, A.MESSAGE_SUPPRESSED)] == [Reason.HOLDOUT]


def test_the_enroll_id_names_workspace_sequence_batch_and_user() -> None:
    ids = {
        enroll_id(WS, "cfg-1", "b-1", "u"),
        enroll_id(WS, "cfg-2", "b-1", "u"),
        enroll_id(WS, "cfg-1", "b-2", "u"),
        enroll_id(WS, "cfg-1", "b-1", "v"),
        enroll_id("other", "cfg-1", "b-1", "u"),
    }
    assert len(ids) == 5
    assert enroll_id(WS, "cfg-1", "b-1", "u") == enroll_id(WS, "cfg-1", "b-1", "u")
