"""The welcome rule: one welcome per user on the first channel not refused, duplicates
dropped, deterministic command ids, and every command mirrored by an activity."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sme.contracts.activities import ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.events import Event, UserProfile
from sme.core.ids import stable_id
from sme.core.user_state import UserState, state_key
from sme.core.welcome_rule import (
    CHANNEL_ORDER,
    WELCOME_CONFIG_ID,
    WELCOME_STEP,
    WELCOME_TRIGGER,
    decide,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=2)


def make_event(
    event_id: str = "evt-1",
    *,
    type: str = WELCOME_TRIGGER,
    consent: dict[Channel, bool] | None = None,
    **overrides: Any,
) -> Event:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "workspace_id": "ws-acme",
        "user_id": "user-1",
        "type": type,
        "occurred_at": T0,
    }
    if consent is not None:
        fields["user"] = UserProfile(consent=consent)
    fields.update(overrides)
    return Event.model_validate(fields)


def fresh(workspace_id: str = "ws-acme", user_id: str = "user-1") -> UserState:
    return UserState.new(workspace_id, user_id)


# --- one welcome ----------------------------------------------------------------------------


def test_a_signup_gets_exactly_one_welcome_on_the_preferred_channel_when_consented() -> None:
    event = make_event(channel=Channel.PUSH, consent={Channel.PUSH: True})

    decision = decide(fresh(), event, NOW)

    assert len(decision.commands) == 1
    command = decision.commands[0]
    assert command.channel is Channel.PUSH
    assert (command.workspace_id, command.user_id) == ("ws-acme", "user-1")
    assert (command.config_id, command.step_id, command.template) == (
        WELCOME_CONFIG_ID,
        WELCOME_STEP,
        "welcome",
    )
    assert command.arm is Arm.BASELINE
    assert command.decided_at == NOW
    assert [a.type for a in decision.activities] == [
        ActivityType.EVENT_RECEIVED,
        ActivityType.COMMAND_EMITTED,
    ]
    assert decision.state.welcomed_at == NOW


def test_a_signup_without_a_preference_or_consent_data_is_welcomed_by_email() -> None:
    decision = decide(fresh(), make_event(), NOW)

    assert [c.channel for c in decision.commands] == [Channel.EMAIL]


@pytest.mark.parametrize(
    ("preferred", "consent", "expected"),
    [
        (Channel.EMAIL, {Channel.EMAIL: False}, Channel.PUSH),
        (None, {Channel.EMAIL: False}, Channel.PUSH),
        (None, {Channel.EMAIL: False, Channel.PUSH: False}, Channel.SMS),
        (
            Channel.SMS,
            {Channel.EMAIL: False, Channel.PUSH: False, Channel.SMS: False},
            Channel.IN_APP,
        ),
        (Channel.IN_APP, {Channel.EMAIL: False}, Channel.IN_APP),
        (Channel.SMS, {Channel.SMS: True, Channel.EMAIL: True}, Channel.SMS),
    ],
    ids=[
        "preferred-refused-next-in-order",
        "email-refused",
        "email-and-push-refused",
        "only-in-app-left",
        "preferred-unknown-is-not-refused",
        "preferred-wins-over-order",
    ],
)
def test_refused_channels_are_skipped_in_channel_order(
    preferred: Channel | None, consent: dict[Channel, bool], expected: Channel
) -> None:
    decision = decide(fresh(), make_event(channel=preferred, consent=consent), NOW)

    assert [c.channel for c in decision.commands] == [expected]


def test_consent_refused_earlier_is_still_honoured_at_signup() -> None:
    state = decide(fresh(), make_event("e0", type="opened", consent={Channel.EMAIL: False}), T0)
    decision = decide(state.state, make_event("e1"), NOW)

    assert [c.channel for c in decision.commands] == [Channel.PUSH]


def test_nobody_is_welcomed_when_every_channel_is_refused() -> None:
    refused = dict.fromkeys(Channel, False)

    decision = decide(fresh(), make_event(channel=Channel.EMAIL, consent=refused), NOW)

    assert decision.commands == ()
    assert [a.type for a in decision.activities] == [ActivityType.EVENT_RECEIVED]
    assert decision.state.welcomed_at is None


def test_a_user_who_refused_everything_is_welcomed_once_consent_arrives() -> None:
    refused = decide(fresh(), make_event("e1", consent=dict.fromkeys(Channel, False)), T0)

    later = decide(refused.state, make_event("e2", consent={Channel.SMS: True}), NOW)

    assert [c.channel for c in later.commands] == [Channel.SMS]


def test_a_second_signup_does_not_send_a_second_welcome() -> None:
    first = decide(fresh(), make_event("evt-1"), T0)

    second = decide(first.state, make_event("evt-2"), NOW)

    assert len(first.commands) == 1
    assert second.commands == ()
    assert [a.type for a in second.activities] == [ActivityType.EVENT_RECEIVED]
    assert second.state.welcomed_at == T0


def test_events_other_than_a_signup_send_nothing() -> None:
    decision = decide(fresh(), make_event(type="clicked"), NOW)

    assert decision.commands == ()
    assert [a.type for a in decision.activities] == [ActivityType.EVENT_RECEIVED]
    assert decision.state.events_seen == 1


# --- duplicates -----------------------------------------------------------------------------


def test_a_duplicate_event_only_yields_a_duplicate_activity_and_leaves_state_unchanged() -> None:
    first = decide(fresh(), make_event("evt-1", type="opened"), T0)

    again = decide(first.state, make_event("evt-1", consent={Channel.EMAIL: False}), NOW)

    assert again.commands == ()
    assert [a.type for a in again.activities] == [ActivityType.EVENT_DUPLICATE]
    assert again.activities[0].event_id == "evt-1"
    assert again.state == first.state


def test_a_duplicate_activity_differs_from_the_received_one_for_the_same_event() -> None:
    first = decide(fresh(), make_event("evt-1"), T0)
    again = decide(first.state, make_event("evt-1"), NOW)

    assert first.activities[0].activity_id != again.activities[0].activity_id


# --- ids ------------------------------------------------------------------------------------


def test_the_same_welcome_gets_the_same_command_id_whatever_the_event_and_time() -> None:
    one = decide(fresh(), make_event("evt-1", channel=Channel.EMAIL), T0)
    two = decide(fresh(), make_event("evt-2", channel=Channel.PUSH), T0 + timedelta(days=3))

    assert one.commands[0].command_id == two.commands[0].command_id


@pytest.mark.parametrize(
    ("workspace_id", "user_id"),
    [("ws-acme", "user-2"), ("ws-other", "user-1")],
    ids=["different-user", "different-workspace"],
)
def test_a_different_user_gets_a_different_command_id(workspace_id: str, user_id: str) -> None:
    mine = decide(fresh(), make_event(), NOW)
    theirs = decide(
        fresh(workspace_id, user_id),
        make_event(workspace_id=workspace_id, user_id=user_id),
        NOW,
    )

    assert mine.commands[0].command_id != theirs.commands[0].command_id


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_distinct_users_never_share_a_command_id(user_a: str, user_b: str) -> None:
    if user_a == user_b:
        return
    a = decide(fresh(user_id=user_a), make_event(user_id=user_a), NOW)
    b = decide(fresh(user_id=user_b), make_event(user_id=user_b), NOW)

    assert a.commands[0].command_id != b.commands[0].command_id


def test_ids_containing_the_separator_do_not_make_two_users_share_a_command_id() -> None:
    assert stable_id("command", "a", "b\x1fc") != stable_id("command", "a\x1fb", "c")


# --- properties over event streams ----------------------------------------------------------

EVENT_TYPES = [WELCOME_TRIGGER, "opened", "clicked", "converted"]
USERS = [("ws-acme", "alice"), ("ws-acme", "bob"), ("ws-other", "alice")]

stream_events = st.builds(
    dict,
    who=st.sampled_from(USERS),
    event_id=st.sampled_from([f"evt-{i}" for i in range(12)]),
    type=st.sampled_from(EVENT_TYPES),
    channel=st.one_of(st.none(), st.sampled_from(Channel)),
    consent=st.one_of(st.none(), st.dictionaries(st.sampled_from(Channel), st.booleans())),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(stream_events, max_size=60))
def test_any_event_stream_welcomes_each_user_at_most_once_and_only_where_consented(
    stream: list[dict[str, Any]],
) -> None:
    states: dict[str, UserState] = {}
    consent_model: dict[str, dict[Channel, bool]] = {}
    seen_model: dict[str, set[str]] = {}
    welcomes: Counter[str] = Counter()

    for step, spec in enumerate(stream):
        workspace_id, user_id = spec["who"]
        key = state_key(workspace_id, user_id)
        event = make_event(
            spec["event_id"],
            type=spec["type"],
            consent=spec["consent"],
            channel=spec["channel"],
            workspace_id=workspace_id,
            user_id=user_id,
            occurred_at=T0 + timedelta(seconds=step),
        )
        duplicate = event.event_id in seen_model.setdefault(key, set())
        if not duplicate:
            seen_model[key].add(event.event_id)
            consent_model.setdefault(key, {}).update(spec["consent"] or {})
        consent = consent_model.get(key, {})

        decision = decide(states.get(key, UserState.new(workspace_id, user_id)), event, NOW)
        states[key] = decision.state

        if duplicate:
            assert decision.commands == ()
            assert [a.type for a in decision.activities] == [ActivityType.EVENT_DUPLICATE]
            continue

        emitted = {
            a.command_id: a for a in decision.activities if a.type is ActivityType.COMMAND_EMITTED
        }
        assert len(emitted) == len(decision.commands)
        for command in decision.commands:
            welcomes[key] += 1
            assert (command.workspace_id, command.user_id) == (workspace_id, user_id)
            assert consent.get(command.channel, True) is True, "sent to a refused channel"
            if event.channel is not None and consent.get(event.channel, True):
                assert command.channel is event.channel, "preferred channel ignored"
            assert command.command_id in emitted
            assert emitted[command.command_id].channel is command.channel
        assert welcomes[key] <= 1, "a user was welcomed twice"

        if event.type == WELCOME_TRIGGER and any(consent.get(ch, True) for ch in CHANNEL_ORDER):
            assert welcomes[key] == 1, "a consenting user who signed up was never welcomed"
