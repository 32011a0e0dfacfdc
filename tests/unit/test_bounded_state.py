"""Bounded state that still answers every question the configuration can ask: what a
collection keeps is bounded by the configuration (or by a stated size), never by traffic."""

from __future__ import annotations

from datetime import timedelta

from sme.contracts.activities import ActivityType as A
from sme.contracts.reasons import Reason
from tests.unit.builders import T0, Driver, config, msg_step, of_type

OTHER_WATCHED = [f"viewed.page{i}" for i in range(9)]


def test_none_of_events_still_fails_after_more_than_eight_other_watched_types_arrived() -> None:
    cfg = config(
        steps=[
            msg_step("s1"),
            msg_step(
                "s2",
                wait="P1D",
                condition={"none_of_events": ["purchased"], "any_of_events": OTHER_WATCHED},
            ),
        ]
    )
    d = Driver.of(cfg)
    d.send("signed_up")
    d.send("purchased", T0 + timedelta(minutes=1))
    for i, type_ in enumerate(OTHER_WATCHED):
        d.send(type_, T0 + timedelta(minutes=2 + i))

    d.run_until(T0 + timedelta(days=2))

    assert [c.step_id for c in d.commands] == ["s1"]
    (skipped,) = of_type(d.activities, A.STEP_SKIPPED)
    assert (skipped.step_id, skipped.reason_code) == ("s2", Reason.CONDITION_FALSE)


def test_an_enrollment_remembers_only_the_event_types_its_sequence_asks_about() -> None:
    cfg = config(
        steps=[msg_step("s1"), msg_step("s2", wait="P1D", condition={"none_of_events": ["a"]})]
    )
    d = Driver.of(cfg)
    d.send("signed_up")
    for i in range(50):
        d.send(f"noise.{i}", T0 + timedelta(minutes=i))
    d.send("a", T0 + timedelta(hours=2))

    (enrollment,) = d.state.enrollments
    assert enrollment.seen == ("a",)
