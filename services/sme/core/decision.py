"""One decision's working set: the user's mutable working state, the outputs collected so far,
and the transitions every path shares (move to a step, defer, exit, remember a touch) with
the records they emit. The event side (`sequence`) and the due-step handlers (`steps`) act
through it; it produces one immutable `Outcome`."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Command
from sme.contracts.events import Event
from sme.contracts.reasons import Reason
from sme.contracts.sequences import (
    RUNNING,
    Guardrails,
    SequenceConfig,
    Status,
    Step,
    WorkspaceSettings,
)
from sme.core.content import allow_list, command_data, resolve_template
from sme.core.evolve import evolve
from sme.core.guardrails import Ledger, Level
from sme.core.ids import stable_id
from sme.core.records import build
from sme.core.stats import StatDelta, StatsView
from sme.core.targeting import cap_counts
from sme.core.timeutil import MS, from_ms, next_wall_time, to_ms
from sme.core.user_state import MAX_TOUCHES, Enrollment, Touch, UserState
from sme.core.working import Working

TOUCH_RETENTION = timedelta(days=400)
CALENDAR_DAY_SPAN = timedelta(days=2)
"""Covers any local calendar day (at most 25 hours) that contains `now`."""


@dataclass(frozen=True, slots=True)
class Context:
    """What the decision may read besides the user's state; all plain data."""

    configs: Mapping[str, SequenceConfig]  # this workspace's configurations by id
    workspace: WorkspaceSettings | None = None
    stats: StatsView = field(default_factory=dict)
    ledger: Ledger = field(default_factory=dict)  # this partition's budget spend
    partition: int = 0
    partitions: int = 1


@dataclass(frozen=True, slots=True)
class Outcome:
    state: UserState
    commands: tuple[Command, ...] = ()
    activities: tuple[Activity, ...] = ()
    stat_deltas: tuple[StatDelta, ...] = ()
    ledger_deltas: tuple[tuple[str, float], ...] = ()


class Decision:
    """One decision's working set; collects outputs, produces one Outcome."""

    def __init__(self, state: UserState, now: datetime, rng: random.Random, ctx: Context) -> None:
        self.before = state
        self.state = Working(state)
        self.now = now
        self.now_ms = to_ms(now)
        self.rng = rng
        self.ctx = ctx
        self.commands: list[Command] = []
        self.activities: list[Activity] = []
        self.stat_deltas: list[StatDelta] = []
        self.ledger_deltas: list[tuple[str, float]] = []
        self.ledger_pending: dict[str, float] = {}
        self.offers: list[Touch] = []  # touches this event may credit; `credit` picks one
        # Ids of a state from before incarnations existed keep their old form.
        self.life: tuple[str, ...] = (state.epoch,) if state.epoch else ()
        ws = ctx.workspace
        self.tz = state.profile.timezone or (ws.default_timezone if ws else "UTC")

    def outcome(self) -> Outcome:
        state = self.state.freeze()
        if not self.activities and state == self.before:
            state = self.before  # nothing happened: the same state, so nothing to write
        return Outcome(
            state,
            tuple(self.commands),
            tuple(self.activities),
            tuple(self.stat_deltas),
            tuple(self.ledger_deltas),
        )

    def add(self, activity: Activity) -> None:
        self.activities.append(activity)

    def status(self, config: SequenceConfig) -> Status:
        """The status a decision acts on. An engaged kill switch holds every sequence of the
        workspace like a pause, whatever its own status says (created or resumed while the
        switch was engaged, published around the API): nothing enrols or sends until release.
        A DRAINING sequence is held alike. STOPPED stays final."""
        ws = self.ctx.workspace
        if config.status in RUNNING and ws is not None and ws.kill_switch.engaged:
            return Status.PAUSED
        return config.status

    # --- transitions ------------------------------------------------------------------------
    def jump(
        self,
        enrollment: Enrollment,
        config: SequenceConfig,
        target: str,
        reason: Reason | None,
        sent: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move to `target` ("next", a step id or "exit"); False if the enrollment ended.
        `sent`, if given, is the enrollment's new message count, set in the same new form (a
        send moves on at once: one copy of the enrollment, not two). `details` go on the
        branched activity (a split's path)."""
        if reason is not None and (target != "exit" or details is not None):
            kind = ActivityType.STEP_BRANCHED if target != "next" else ActivityType.STEP_SKIPPED
            if reason is Reason.SPLIT:
                kind = ActivityType.STEP_BRANCHED  # a split's path is a branch, even to "next"
            self.add(
                self.step_activity(kind, enrollment, reason, {"goto": target, **(details or {})})
            )
        index: int | None = None
        if target == "next":
            index = enrollment.step + 1
        elif target != "exit":
            index = config.step_index(target)
        if index is None or index >= len(config.steps):
            if sent is not None:
                enrollment = evolve(enrollment, sent=sent)
            if target == "exit":
                self.exit(enrollment, reason or Reason.BRANCHED)
            else:
                self.exit(enrollment, Reason.COMPLETED)
            return False
        step = config.steps[index]
        self.put(
            evolve(
                enrollment,
                step=index,
                step_id=step.id,
                step_ms=self.now_ms,
                seen=(),
                deferrals=0,
                timed=False,
                due_ms=due_ms(step, enrollment.enrolled_ms, self.now_ms, self.tz),
                sent=enrollment.sent if sent is None else sent,
            )
        )
        return True

    def defer(self, enrollment: Enrollment, until: datetime, reason: Reason | None) -> None:
        """Wait until `until`; send-time optimisation is applied at most once per step."""
        self.add(
            self.step_activity(
                ActivityType.STEP_DEFERRED,
                enrollment,
                reason,
                {"until": until.isoformat(), "deferral": enrollment.deferrals + 1},
            )
        )
        self.put(
            evolve(
                enrollment,
                due_ms=max(to_ms(until), self.now_ms + 1),
                deferrals=enrollment.deferrals + 1,
                timed=enrollment.timed or reason is Reason.SEND_TIME_OPTIMISED,
            )
        )

    def exit(self, enrollment: Enrollment, reason: Reason) -> None:
        self.state.drop(enrollment.config_id)
        self.add(
            self.step_activity(
                ActivityType.ENROLLMENT_EXITED, enrollment, reason, {"sent": enrollment.sent}
            )
        )

    def put(self, enrollment: Enrollment) -> None:
        self.state.put(enrollment)

    def remember(self, touch: Touch) -> None:
        touches = self.state.touches
        horizon = self.now_ms - TOUCH_RETENTION // MS
        if any(t.at_ms < horizon for t in touches):
            touches[:] = [t for t in touches if t.at_ms >= horizon]
        touches.append(touch)
        if len(touches) > MAX_TOUCHES:
            touches[:] = self._still_needed(touches)

    def _still_needed(self, touches: list[Touch]) -> list[Touch]:
        """The latest MAX_TOUCHES touches plus every older send a guardrail still counts.
        Other sequences' sends and holdout suppressions can push a sequence's own sends out of
        the latest, so each cap keeps its last `max` sends in its window, each gap its last."""
        keep = set(range(len(touches) - MAX_TOUCHES, len(touches)))
        every: list[int] = []
        by_config: dict[str, list[int]] = {}
        for i, t in enumerate(touches):
            if t.channel is not None and not t.transactional:  # what guardrails count
                every.append(i)
                by_config.setdefault(t.config_id, []).append(i)
        levels: list[tuple[Guardrails, list[int]]] = [
            (config.guardrails, sends)
            for config_id, sends in by_config.items()
            if (config := self.ctx.configs.get(config_id)) is not None
        ]
        if self.ctx.workspace is not None:
            levels.append((self.ctx.workspace.guardrails, every))
        for rules, sends in levels:
            if rules.min_gap is not None:
                keep.update(sends[-1:])
            for cap in rules.frequency_caps:
                since = self.now_ms - (cap.per or CALENDAR_DAY_SPAN) // MS
                counted = [
                    i
                    for i in sends
                    if touches[i].at_ms > since and cap_counts(cap, touches[i], cap.channel)
                ]
                keep.update(counted[-cap.max :])
        return [t for i, t in enumerate(touches) if i in keep]

    def last_touch(self, config_id: str) -> Touch | None:
        return next((t for t in reversed(self.state.touches) if t.config_id == config_id), None)

    def levels(self, config: SequenceConfig) -> list[Level]:
        """Both levels, each with the sends its caps and gap count: no holdout suppression
        and no transactional send."""
        sent = [t for t in self.state.touches if t.channel is not None and not t.transactional]
        levels = [
            Level(
                f"c:{config.id}", config.guardrails, [t for t in sent if t.config_id == config.id]
            )
        ]
        if self.ctx.workspace is not None:
            levels.append(Level(f"w:{config.workspace_id}", self.ctx.workspace.guardrails, sent))
        return levels

    def ledger(self) -> Ledger:
        return _LedgerView(self.ctx.ledger, self.ledger_pending)

    # --- records ----------------------------------------------------------------------------
    def command(
        self,
        e: Enrollment,
        config: SequenceConfig,
        step: Step,
        channel: Channel,
        variant: str,
    ) -> Command:
        return build(
            Command,
            {
                "command_id": stable_id(
                    "command",
                    config.workspace_id,
                    config.id,
                    self.state.user_id,
                    e.seq,
                    step.id,
                    *self.life,
                ),
                "workspace_id": config.workspace_id,
                "config_id": config.id,
                "config_version": config.version,
                "user_id": self.state.user_id,
                "step_id": step.id,
                "channel": channel,
                "template": resolve_template(step, channel, variant),
                "variant": variant,
                "arm": e.arm,
                "decided_at": self.now,
                "data": command_data(
                    allow_list(config, step),
                    self.state.profile.attributes,
                    e.trigger,
                    e.trigger_omitted,
                ),
                "timezone": self.tz,
            },
        )

    def step_activity(
        self,
        kind: ActivityType,
        e: Enrollment,
        reason: Reason | None,
        details: dict[str, Any] | None = None,
        **extra: Any,
    ) -> Activity:
        discriminator = (
            f"{e.step_id}|{e.deferrals}" if kind is ActivityType.STEP_DEFERRED else e.step_id
        )
        return self.activity(
            kind,
            e.config_id,
            {"arm": e.arm, "step_id": e.step_id, **extra},
            discriminator=discriminator,
            reason=reason,
            details=details,
            seq=e.seq,
        )

    def activity(
        self,
        kind: ActivityType,
        config_id: str,
        fields: Mapping[str, Any],
        *,
        discriminator: str,
        reason: Reason | None = None,
        details: dict[str, Any] | None = None,
        event: Event | None = None,
        seq: int = 0,
        channel: Channel | None = None,
        value: float = 0.0,
    ) -> Activity:
        state = self.state
        config = self.ctx.configs.get(config_id)
        values: dict[str, Any] = {
            "activity_id": stable_id(
                "activity",
                kind,  # a StrEnum: its str() is its value
                state.workspace_id,
                config_id,
                state.user_id,
                seq,
                discriminator,
                *self.life,
            ),
            "type": kind,
            "workspace_id": state.workspace_id,
            "user_id": state.user_id,
            "occurred_at": self.now,
            "config_id": config_id,
            "config_version": config.version if config else 0,
            "reason_code": reason or "",
            "details": details or {},
            "value": float(value),
            "step_id": "",
            "channel": channel,
            "arm": None,
            "command_id": "",
            "event_id": "",
            "event_type": "",
            "cost": 0.0,
        }
        values.update(fields)
        if event is not None:
            values.update(event_id=event.event_id, event_type=event.type)
            if event.command_id and "command_id" not in fields:
                values["command_id"] = event.command_id
        return build(Activity, values)


def event_activity(event: Event, kind: ActivityType) -> Activity:
    return build(
        Activity,
        {
            "activity_id": stable_id("activity", kind, event.workspace_id, event.event_id),
            "type": kind,
            "workspace_id": event.workspace_id,
            "user_id": event.user_id,
            "occurred_at": event.occurred_at,
            "config_id": "",
            "config_version": 0,
            "step_id": "",
            "channel": event.channel,
            "arm": None,
            "command_id": event.command_id or "",
            "event_id": event.event_id,
            "event_type": event.type,
            "reason_code": "",
            "value": 0.0,
            "cost": 0.0,
            "details": {},
        },
    )


class _LedgerView(Mapping[str, float]):
    """The partition's ledger plus what this decision already spent."""

    def __init__(self, base: Ledger, pending: Mapping[str, float]) -> None:
        self.base, self.pending = base, pending

    def __getitem__(self, key: str) -> float:
        return self.base.get(key, 0.0) + self.pending.get(key, 0.0)

    def get(self, key: str, default: Any = None) -> Any:  # the hot lookup, without KeyError
        return self.base.get(key, 0.0) + self.pending.get(key, 0.0)

    def __iter__(self) -> Iterator[str]:
        return iter({*self.base, *self.pending})

    def __len__(self) -> int:
        return len({*self.base, *self.pending})


def due_ms(step: Step, enrolled_ms: int, now_ms: int, tz: str) -> int:
    """When a step reached at `now_ms` is due: its wait (from the previous step or the
    entry), any wait-for timeout, then the next `wait_until` wall-clock time in `tz`."""
    start = enrolled_ms if step.wait_from == "entry" else now_ms
    due = start + step.wait // MS
    if step.wait_for is not None:
        due += step.wait_for.timeout // MS
    due = max(due, now_ms)
    until = step.wait_until
    if until is None:
        return due
    return to_ms(next_wall_time(from_ms(due), tz, until.time, until.weekday_numbers()))
