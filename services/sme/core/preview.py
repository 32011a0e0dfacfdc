"""Preview and test send, driven through the real core (`sequence.on_event` / `on_timer`).

`run_preview` plays one made-up user's timeline on a virtual clock: each input is the earlier
of the user's next due time and the next timeline event, exactly as the engine's timers and
intake would feed them, until nothing is due and no event is left, or the horizon passes. The
trace is the core's own output (its activities, with the command of each send), so a preview
can never disagree with the engine about a decision. Pure: the caller passes the start, the
seed and the statistics; nothing is published or stored.

What differs from the live engine, by design: the sequence is run as if ACTIVE and the kill
switch released (a preview is for a sequence before or outside its live status); only this
sequence is in the workspace (other sequences' sends do not count against the workspace
caps); the budgets' ledgers start empty; the statistics are whatever the caller passes (the
gateway passes none)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.contracts.events import Event, UserProfile
from sme.contracts.preview import PreviewEvent, PreviewOutcome, TraceEntry
from sme.contracts.sequences import (
    Experiment,
    KillSwitch,
    SequenceConfig,
    Status,
    Step,
    WorkspaceSettings,
)
from sme.core.decision import Context, Decision
from sme.core.sequence import on_event, on_timer
from sme.core.stats import StatsView
from sme.core.timeutil import from_ms, to_ms
from sme.core.user_state import Enrollment, Profile, UserState

MAX_DECISIONS = 5_000
"""Inputs one preview feeds the core at most (timeline events plus due times): far above what
200 events and 50 steps with their deferrals need, so a preview always ends."""
ENTRY_EVENT_ID = "preview-entry"
PREVIEW_EPOCH = "preview"
TRACED = {
    "type",
    "step_id",
    "channel",
    "arm",
    "reason_code",
    "event_id",
    "event_type",
    "value",
    "cost",
    "details",
}
"""The activity fields a trace entry keeps (ids, workspace and user are the request's)."""
FORCED: dict[Arm, Experiment] = {
    Arm.HOLDOUT: Experiment(holdout_pct=100, baseline_pct=0),
    Arm.BASELINE: Experiment(holdout_pct=0, baseline_pct=100),
    Arm.ADAPTIVE: Experiment(holdout_pct=0, baseline_pct=0),
}


@dataclass(frozen=True, slots=True)
class Preview:
    trace: tuple[TraceEntry, ...]
    outcome: PreviewOutcome


def run_preview(
    config: SequenceConfig,
    workspace: WorkspaceSettings | None,
    user_id: str,
    profile: UserProfile,
    timeline: Sequence[PreviewEvent],
    start: datetime,
    horizon_end: datetime,
    seed: int,
    arm: Arm | None = None,
    stats: StatsView | None = None,
) -> Preview:
    """The decision trace of `user_id` in `config` from `start` to at most `horizon_end`."""
    live = _as_live(config, arm)
    ctx = Context(
        configs={live.id: live},
        workspace=workspace.model_copy(update={"kill_switch": KillSwitch()}) if workspace else None,
        stats=stats if stats is not None else {},
    )
    state = UserState(
        workspace_id=live.workspace_id,
        user_id=user_id,
        profile=Profile(profile.timezone, dict(profile.attributes), dict(profile.consent)),
        epoch=PREVIEW_EPOCH,
    )
    events = _events(live, user_id, timeline, start)
    rng = random.Random(seed)
    trace: list[TraceEntry] = []
    now, pending, horizon_reached, truncated = start, 0, False, False
    for _ in range(MAX_DECISIONS):
        due = state.next_due_ms()
        event = events[pending] if pending < len(events) else None
        if due is not None and (event is None or due <= to_ms(event.occurred_at)):
            at = max(from_ms(due), now)
            if at > horizon_end:
                horizon_reached = True
                break
            outcome = on_timer(state, at, rng, ctx)
            if not outcome.activities and outcome.state.next_due_ms() == due:
                truncated = True  # held (never, while run as ACTIVE): stop, not spin
                break
        elif event is not None:
            at = max(event.occurred_at, now)
            outcome = on_event(state, event, at, rng, ctx)
            pending += 1
        else:
            break
        now, state = at, outcome.state
        trace.extend(_entries(outcome.activities, outcome.commands))
    else:
        truncated = True
    summary = _outcome(live, state, trace, now, horizon_reached)
    return Preview(tuple(trace), summary.model_copy(update={"truncated": truncated}))


def _as_live(config: SequenceConfig, arm: Arm | None) -> SequenceConfig:
    """The configuration as the preview runs it: ACTIVE, with the forced arm if any."""
    update: dict[str, object] = {"status": Status.ACTIVE}
    if arm is not None:
        update["experiment"] = FORCED[arm]
    return config.model_copy(update=update)


def _events(
    config: SequenceConfig, user_id: str, timeline: Sequence[PreviewEvent], start: datetime
) -> list[Event]:
    """The timeline as the engine's events, in time order (stable for equal times); with no
    event of an entry type, a synthetic one of the first entry type at `start` comes first."""
    events = [
        Event(
            event_id=item.event_id or f"preview-{i}",
            workspace_id=config.workspace_id,
            user_id=user_id,
            type=item.type,
            occurred_at=item.occurred_at,
            properties=item.properties,
            channel=item.channel,
            command_id=item.command_id,
            user=item.user,
        )
        for i, item in enumerate(timeline)
    ]
    events.sort(key=lambda e: e.occurred_at)
    if not any(e.type in config.entry.event_types for e in events):
        entry = Event(
            event_id=ENTRY_EVENT_ID,
            workspace_id=config.workspace_id,
            user_id=user_id,
            type=config.entry.event_types[0],
            occurred_at=start,
        )
        events.insert(0, entry)
    return events


def _entries(activities: Sequence[Activity], commands: Sequence[Command]) -> list[TraceEntry]:
    """The activities as trace entries; a send carries its command."""
    by_id = {c.command_id: c for c in commands}
    return [
        TraceEntry(
            at=a.occurred_at,
            command=by_id.get(a.command_id) if a.type is ActivityType.COMMAND_EMITTED else None,
            **a.model_dump(include=TRACED),
        )
        for a in activities
    ]


def _outcome(
    config: SequenceConfig,
    state: UserState,
    trace: list[TraceEntry],
    now: datetime,
    horizon_reached: bool,
) -> PreviewOutcome:
    enrollment = state.enrollment(config.id)
    past = state.past.get(config.id)
    arm = enrollment.arm if enrollment else (past.arm if past else None)
    return PreviewOutcome(
        enrolled=past is not None,
        arm=arm,
        active=enrollment is not None,
        step_id=enrollment.step_id if enrollment else None,
        due_at=from_ms(enrollment.due_ms) if enrollment else None,
        messages=sum(1 for e in trace if e.command is not None),
        converted=bool(past and past.converted),
        ended_at=now,
        horizon_reached=horizon_reached and enrollment is not None,
    )


def command_for_test_send(
    config: SequenceConfig,
    workspace: WorkspaceSettings | None,
    user_id: str,
    profile: UserProfile,
    step: Step,
    channel: Channel,
    variant: str,
    now: datetime,
    send_id: str,
) -> Command:
    """The command a send of `step` would carry for `user_id`, built by the core's own command
    builder, marked `test`. `send_id` (unique per request) makes its id unique: a sender never
    takes a second test send for a retry of the first."""
    state = UserState(
        workspace_id=config.workspace_id,
        user_id=user_id,
        profile=Profile(profile.timezone, dict(profile.attributes), dict(profile.consent)),
        epoch=f"test:{send_id}",
    )
    decision = Decision(
        state, now, random.Random(0), Context(configs={config.id: config}, workspace=workspace)
    )
    index = config.step_index(step.id) or 0
    now_ms = to_ms(now)
    enrollment = Enrollment(
        config.id, config.version, Arm.ADAPTIVE, 0, now_ms, index, step.id, now_ms, now_ms
    )
    command = decision.command(enrollment, config, step, channel, variant)
    return command.model_copy(update={"test": True})
