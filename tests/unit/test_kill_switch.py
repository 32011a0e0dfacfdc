"""The workspace kill switch in the core: while it is engaged nothing of the workspace enrols or
sends, whatever the sequences' own statuses say; on release what is due fires once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sme.contracts.activities import ActivityType
from sme.contracts.sequences import Status, WorkspaceSettings
from tests.unit.builders import WS, Driver, at, config, msg_step, of_type, with_status

A = ActivityType
TWO_STEPS = [msg_step("s1"), msg_step("s2", wait="PT2H")]


def switch(engaged: bool) -> WorkspaceSettings:
    return WorkspaceSettings.model_validate(
        {"workspace_id": WS, "kill_switch": {"engaged": engaged}}
    )


def test_an_active_sequence_sends_nothing_while_the_kill_switch_is_engaged() -> None:
    d = Driver.of(config(steps=TWO_STEPS), workspace=switch(False))
    d.send("signed_up")
    assert [c.step_id for c in d.commands] == ["s1"]
    d.workspace = switch(True)  # engaged; the sequence's own status is still ACTIVE

    d.tick(at(hours=3))
    d.send("clicked", at(hours=4))  # an event advances due steps too

    assert [c.step_id for c in d.commands] == ["s1"]
    d.workspace = switch(False)
    d.tick(at(hours=5))
    assert [c.step_id for c in d.commands] == ["s1", "s2"]  # the held step fires once


def test_a_sequence_created_while_the_kill_switch_is_engaged_enrols_and_sends_nothing() -> None:
    d = Driver.of(config(), workspace=switch(True))

    d.send("signed_up")
    d.tick(at(hours=1))

    assert d.commands == []
    assert of_type(d.activities, A.ENROLLED) == []


def test_a_sequence_resumed_while_the_kill_switch_is_engaged_sends_nothing_until_release() -> None:
    cfg = config(steps=TWO_STEPS)
    d = Driver.of(cfg, workspace=switch(False))
    d.send("signed_up")
    paused = with_status(cfg, Status.PAUSED)
    d.set_config(paused)
    d.workspace = switch(True)
    d.set_config(with_status(paused, Status.ACTIVE))  # resumed while engaged

    d.tick(at(hours=3))

    assert [c.step_id for c in d.commands] == ["s1"]
    d.workspace = switch(False)
    d.tick(at(hours=3, minutes=1))
    assert [c.step_id for c in d.commands] == ["s1", "s2"]


@settings(max_examples=100, deadline=None)
@given(
    history=st.lists(
        st.tuples(
            st.sampled_from([None, Status.ACTIVE, Status.PAUSED]),  # a status change, or none
            st.sampled_from(["signed_up", "clicked", "timer"]),
            st.integers(1, 180),  # minutes later
        ),
        min_size=1,
        max_size=12,
    ),
    enrolled_before=st.booleans(),
)
def test_while_the_kill_switch_is_engaged_nothing_sends_whatever_the_status_history(
    history: list[tuple[Status | None, str, int]], enrolled_before: bool
) -> None:
    cfg = config(
        steps=[msg_step("s1"), msg_step("s2", wait="PT1H"), msg_step("s3", wait="PT1H")],
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
    )
    d = Driver.of(cfg, workspace=switch(False))
    if enrolled_before:
        d.send("signed_up")
    before = len(d.commands)
    d.workspace = switch(True)
    now = at(minutes=1)
    for status, what, minutes in history:
        now = at(now, minutes=minutes)
        if status is not None:
            d.set_config(with_status(d.configs["cfg-1"], status))
        if what == "timer":
            d.tick(now)
        else:
            d.send(what, now)

    assert len(d.commands) == before
    assert all(o.commands == () and o.ledger_deltas == () for o in d.outcomes[-len(history) :])
