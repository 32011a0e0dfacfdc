"""The walking skeleton's decision rule: a `signed_up` event gets one welcome message on the
first channel the user has not refused. The sequence state machine replaces it; the shape
`(state, event, now) -> Decision` stays."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.contracts.events import Event
from sme.core.ids import stable_id
from sme.core.user_state import UserState

WELCOME_CONFIG_ID = "builtin-welcome"
WELCOME_CONFIG_VERSION = 1
WELCOME_STEP = "welcome"
WELCOME_TRIGGER = "signed_up"
CHANNEL_ORDER = (Channel.EMAIL, Channel.PUSH, Channel.SMS, Channel.IN_APP)


@dataclass(frozen=True, slots=True)
class Decision:
    state: UserState
    commands: tuple[Command, ...] = ()
    activities: tuple[Activity, ...] = ()


def decide(state: UserState, event: Event, now: datetime) -> Decision:
    """Apply one validated event to a user's state."""
    if state.has_seen(event.event_id):
        return Decision(state, activities=(_observed(event, ActivityType.EVENT_DUPLICATE),))
    state = state.observe(event)
    activities = [_observed(event, ActivityType.EVENT_RECEIVED)]
    commands: list[Command] = []
    if event.type == WELCOME_TRIGGER and state.welcomed_at is None:
        channel = pick_channel(state, event.channel)
        if channel is not None:
            command = _welcome_command(state, event, channel, now)
            commands.append(command)
            activities.append(_emitted(command))
            state = replace(state, welcomed_at=now)
    return Decision(state, tuple(commands), tuple(activities))


def pick_channel(state: UserState, preferred: Channel | None) -> Channel | None:
    """The preferred channel if not refused, else the first channel not refused."""
    consent = state.profile.consent
    candidates = ((preferred,) if preferred else ()) + CHANNEL_ORDER
    return next((ch for ch in candidates if consent.get(ch, True)), None)


def _welcome_command(state: UserState, event: Event, channel: Channel, now: datetime) -> Command:
    return Command(
        command_id=stable_id(
            "command", state.workspace_id, WELCOME_CONFIG_ID, state.user_id, WELCOME_STEP
        ),
        workspace_id=state.workspace_id,
        config_id=WELCOME_CONFIG_ID,
        config_version=WELCOME_CONFIG_VERSION,
        user_id=state.user_id,
        step_id=WELCOME_STEP,
        channel=channel,
        template="welcome",
        variant="default",
        arm=Arm.BASELINE,
        decided_at=now,
    )


def _observed(event: Event, kind: ActivityType) -> Activity:
    return Activity(
        activity_id=stable_id("activity", kind.value, event.workspace_id, event.event_id),
        type=kind,
        workspace_id=event.workspace_id,
        user_id=event.user_id,
        occurred_at=event.occurred_at,
        channel=event.channel,
        command_id=event.command_id or "",
        event_id=event.event_id,
        event_type=event.type,
    )


def _emitted(command: Command) -> Activity:
    return Activity(
        activity_id=stable_id("activity", ActivityType.COMMAND_EMITTED.value, command.command_id),
        type=ActivityType.COMMAND_EMITTED,
        workspace_id=command.workspace_id,
        user_id=command.user_id,
        occurred_at=command.decided_at,
        config_id=command.config_id,
        config_version=command.config_version,
        step_id=command.step_id,
        channel=command.channel,
        arm=command.arm,
        command_id=command.command_id,
        details={"template": command.template, "variant": command.variant},
    )
