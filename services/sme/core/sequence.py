"""The sequence state machine: `(state, input, now, rng, context) -> Outcome`.

Two inputs drive it: an event (`on_event`) and a timer (`on_timer`, "something of this user
may be due"). Both end by advancing every due enrollment, so a zero wait fires at once and an
overdue step fires exactly once after a pause. Every loop is bounded: steps only jump forward,
so one enrollment visits at most `len(steps)` steps per call.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.contracts.events import Event
from sme.contracts.reasons import Reason
from sme.contracts.sequences import (
    AttributeFilter,
    Guardrails,
    SequenceConfig,
    Status,
    Step,
    WorkspaceSettings,
)
from sme.core import guardrails, policy
from sme.core.arms import arm_of_record
from sme.core.evolve import evolve
from sme.core.guardrails import Ledger, Level
from sme.core.ids import stable_id
from sme.core.stats import StatDelta, StatsView, context_group, deltas
from sme.core.timeutil import MS, local_hour, to_ms
from sme.core.user_state import (
    MAX_ENROLLMENTS,
    MAX_TOUCHES,
    Enrollment,
    Past,
    Touch,
    UserState,
    short_command_id,
)

FEEDBACK_TYPES = frozenset(
    {"delivered", "opened", "clicked", "bounced", "unsubscribed", "converted"}
)
REWARD_TYPES = frozenset({"clicked", "converted"})
ENGAGEMENT_TYPES = frozenset({"opened", "clicked", "converted"})
TOUCH_RETENTION = timedelta(days=400)
CALENDAR_DAY_SPAN = timedelta(days=2)
"""Covers any local calendar day (at most 25 hours) that contains `now`."""
MAX_HOUR_COUNT = 1000


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


def on_event(
    state: UserState, event: Event, now: datetime, rng: random.Random, ctx: Context
) -> Outcome:
    """Apply one validated event: dedupe, profile, feedback, goals and exits, entries, due steps."""
    if state.has_seen(event.event_id):
        return Outcome(state, activities=(_event_activity(event, ActivityType.EVENT_DUPLICATE),))
    run = _Run(state.observe(event, _profile_keys(state, event, ctx)), now, rng, ctx)
    run.add(_event_activity(event, ActivityType.EVENT_RECEIVED))
    if event.type in FEEDBACK_TYPES:
        run.feedback(event)
    run.goals(event)
    run.credit()
    run.exits_and_waits(event)
    run.entries(event)
    run.advance_due()
    return run.outcome()


def on_timer(state: UserState, now: datetime, rng: random.Random, ctx: Context) -> Outcome:
    """Advance whatever of this user is due at `now`."""
    run = _Run(state, now, rng, ctx)
    run.advance_due()
    return run.outcome()


class _Run:
    """One decision's working set; collects outputs, produces one Outcome."""

    def __init__(self, state: UserState, now: datetime, rng: random.Random, ctx: Context) -> None:
        self.state = state
        self.now = now
        self.now_ms = to_ms(now)
        self.rng = rng
        self.ctx = ctx
        self.commands: list[Command] = []
        self.activities: list[Activity] = []
        self.stat_deltas: list[StatDelta] = []
        self.ledger_deltas: list[tuple[str, float]] = []
        self._ledger_pending: dict[str, float] = {}
        self._offers: list[Touch] = []  # touches this event may credit; `credit` picks one
        # Ids of a state from before incarnations existed keep their old form.
        self._life: tuple[str, ...] = (state.epoch,) if state.epoch else ()
        ws = ctx.workspace
        self.tz = state.profile.timezone or (ws.default_timezone if ws else "UTC")

    def outcome(self) -> Outcome:
        return Outcome(
            self.state,
            tuple(self.commands),
            tuple(self.activities),
            tuple(self.stat_deltas),
            tuple(self.ledger_deltas),
        )

    def add(self, activity: Activity) -> None:
        self.activities.append(activity)

    # --- feedback ---------------------------------------------------------------------------
    def feedback(self, event: Event) -> None:
        touch = self._feedback_touch(event)
        channel = event.channel or (touch.channel if touch else None)
        self.add(
            self._activity(
                ActivityType.FEEDBACK,
                touch.config_id if touch else "",
                _attribution(touch),
                discriminator=event.event_id,
                reason=self._unknown_command(event, touch),
                event=event,
                channel=channel,
            )
        )
        state = self.state
        if event.type in ENGAGEMENT_TYPES:
            hour = local_hour(event.occurred_at, self.tz)
            hours = dict(state.hours)
            hours[hour] = hours.get(hour, 0) + 1
            if hours[hour] > MAX_HOUR_COUNT:  # keep counts bounded, shape intact
                hours = {h: n // 2 for h, n in hours.items() if n // 2}
            state = evolve(state, hours=hours)
        self.state = state
        if touch is not None and event.type in REWARD_TYPES:
            self._offers.append(touch)
        if event.type == "unsubscribed" and channel is not None:
            consent = {**self.state.profile.consent, channel: False}
            self.state = evolve(self.state, profile=evolve(self.state.profile, consent=consent))
            self.add(
                self._activity(
                    ActivityType.CONSENT_REVOKED,
                    touch.config_id if touch else "",
                    _attribution(touch),
                    discriminator=event.event_id,
                    event=event,
                    channel=channel,
                )
            )

    def _feedback_touch(self, event: Event) -> Touch | None:
        """The message feedback answers: the command it names (an unknown one answers none),
        else the latest message on its channel."""
        if event.command_id:
            return self._named_touch(event)
        if event.channel is not None:
            return next(
                (t for t in reversed(self.state.touches) if t.channel == event.channel), None
            )
        return None

    def _named_touch(self, event: Event) -> Touch | None:
        """The touch of the command the event names; None if it names none or an unknown one
        (never sent to this user, or forgotten): such an event is never credited by guess."""
        short = short_command_id(event.command_id) if event.command_id else ""
        if not short:
            return None
        return next((t for t in reversed(self.state.touches) if t.command == short), None)

    @staticmethod
    def _unknown_command(event: Event, touch: Touch | None) -> Reason | None:
        return Reason.UNKNOWN_COMMAND if event.command_id and touch is None else None

    def credit(self) -> None:
        """One event, at most one credited message: the command the event names, else the
        latest of the touches the feedback and the goals attributed it to (last touch)."""
        if self._offers:
            self._reward(max(self._offers, key=lambda t: t.at_ms))
        self._offers = []

    def _reward(self, touch: Touch) -> None:
        """Credit a message's success once: user affinity and population statistics."""
        if touch.rewarded or touch.channel is None:
            return
        touches = tuple(evolve(t, rewarded=True) if t is touch else t for t in self.state.touches)
        affinity = dict(self.state.affinity)
        sent, engaged = affinity.get(touch.channel, (0, 0))
        affinity[touch.channel] = (sent, min(engaged + 1, sent))
        self.state = evolve(self.state, touches=touches, affinity=affinity)
        self.stat_deltas.extend(
            deltas(
                touch.config_id,
                touch.step_id,
                touch.channel.value,
                touch.variant,
                touch.group,
                0,
                1,
            )
        )

    # --- goals, exits, waits ----------------------------------------------------------------
    def goals(self, event: Event) -> None:
        """A goal event converts each sequence whose goal it is (once per enrollment), in the
        arm of record. Attribution: the command the event names if it is this sequence's and in
        the window (a command named but unknown, or another sequence's: no message), else this
        sequence's last touch in the window. The credit is settled once, by `credit`."""
        for config in self.ctx.configs.values():
            goal = config.exit.goal
            if goal is None or goal.event_type != event.type:
                continue
            window_start = self.now_ms - goal.attribution_window // MS
            enrollment = self.state.enrollment(config.id)
            past = self.state.past.get(config.id)
            if past is None or past.converted:
                continue
            if event.command_id:
                touch = self._named_touch(event)
                if touch is not None and touch.config_id != config.id:
                    touch = None
            else:
                touch = self._last_touch(config.id)
            if touch is not None and touch.at_ms < window_start:
                touch = None
            if enrollment is None and touch is None and past.enrolled_ms < window_start:
                continue
            arm = enrollment.arm if enrollment else self._exposed_arm(config, past)
            value = (
                _numeric(event.properties.get(goal.value_property)) if goal.value_property else 0.0
            )
            self.add(
                self._activity(
                    ActivityType.CONVERSION,
                    config.id,
                    {
                        **_attribution(touch),
                        "arm": arm,
                        "command_id": (event.command_id or "") if touch is not None else "",
                    },
                    discriminator=f"{past.seq}",
                    reason=self._unknown_command(event, self._named_touch(event)),
                    event=event,
                    value=value,
                    seq=past.seq,
                )
            )
            self.state = evolve(
                self.state, past={**self.state.past, config.id: evolve(past, converted=True)}
            )
            if touch is not None:
                self._offers.append(touch)
            if enrollment is not None:
                self._exit(enrollment, config, Reason.GOAL_REACHED)

    def _exposed_arm(self, config: SequenceConfig, past: Past) -> Arm:
        """The arm of record of a past enrollment (never today's split, which a PATCH may have
        changed since); a state stored before `past` kept it falls back to its touches."""
        if past.arm is not None:
            return past.arm
        touch = self._last_touch(config.id)
        exposed = touch.arm if touch is not None else None
        return arm_of_record(config.id, self.state.user_id, config.experiment, exposed)

    def exits_and_waits(self, event: Event) -> None:
        for enrollment in list(self.state.enrollments):
            config = self.ctx.configs.get(enrollment.config_id)
            if config is None:
                continue
            if event.type in config.exit.event_types:
                self._exit(enrollment, config, Reason.EXIT_EVENT)
                continue
            if event.type not in _watched_types(config):
                continue
            enrollment = _see(enrollment, event.type)
            self._put(enrollment)
            step = _current_step(config, enrollment)
            if (
                self._status(config) is Status.ACTIVE
                and step is not None
                and step.wait_for is not None
                and step.wait_for.event_type == event.type
            ):
                self._jump(enrollment, config, step.wait_for.on_event, Reason.AWAITED_EVENT)

    # --- entries ----------------------------------------------------------------------------
    def entries(self, event: Event) -> None:
        for config in self.ctx.configs.values():
            if self._status(config) is not Status.ACTIVE:
                continue
            if event.type not in config.entry.event_types:
                continue
            if self.state.enrollment(config.id) is not None:
                continue
            if not all(_filter_holds(f, self.state, event) for f in config.entry.filters):
                continue
            past = self.state.past.get(config.id)
            if past is not None and not _reentry_allowed(config, past, self.now_ms):
                self.add(
                    self._activity(
                        ActivityType.ENROLLMENT_SKIPPED,
                        config.id,
                        {},
                        discriminator=event.event_id,
                        reason=Reason.REENTRY_BLOCKED,
                        seq=past.seq,
                    )
                )
                continue
            if len(self.state.enrollments) >= MAX_ENROLLMENTS:
                self.add(
                    self._activity(
                        ActivityType.ENROLLMENT_SKIPPED,
                        config.id,
                        {},
                        discriminator=event.event_id,
                        reason=Reason.TOO_MANY_ENROLLMENTS,
                    )
                )
                continue
            self._enroll(config, past, event)

    def _enroll(self, config: SequenceConfig, past: Past | None, event: Event) -> None:
        seq = past.seq + 1 if past else 1
        exposed = self._exposed_arm(config, past) if past else None
        arm = arm_of_record(config.id, self.state.user_id, config.experiment, exposed)
        first = config.steps[0]
        enrollment = Enrollment(
            config_id=config.id,
            version=config.version,
            arm=arm,
            seq=seq,
            enrolled_ms=self.now_ms,
            step=0,
            step_id=first.id,
            step_ms=self.now_ms,
            due_ms=_due_ms(first, self.now_ms, self.now_ms),
        )
        # Never evicted: `seq` is part of every id of the enrollment, and `never` must hold.
        pasts = {**self.state.past, config.id: Past(self.now_ms, seq, arm=arm)}
        self.state = evolve(self.state, past=pasts).with_enrollment(enrollment)
        info = {"arm": arm, "step_id": first.id}
        self.add(
            self._activity(
                ActivityType.ENROLLED, config.id, info, discriminator="", seq=seq, event=event
            )
        )
        if seq == 1:
            self.add(
                self._activity(ActivityType.EXPOSURE, config.id, info, discriminator="", seq=seq)
            )

    # --- due steps --------------------------------------------------------------------------
    def advance_due(self) -> None:
        for config_id in [e.config_id for e in self.state.enrollments]:
            config = self.ctx.configs.get(config_id)
            for _ in range(len(config.steps) + 2 if config else 1):
                enrollment = self.state.enrollment(config_id)
                if enrollment is None or enrollment.due_ms > self.now_ms:
                    break
                if not self._fire(enrollment, config):
                    break

    def _status(self, config: SequenceConfig) -> Status:
        """The status a decision acts on. An engaged kill switch holds every sequence of the
        workspace like a pause, whatever its own status says (created or resumed while the
        switch was engaged, published around the API): nothing enrols or sends until release.
        STOPPED stays final."""
        ws = self.ctx.workspace
        if config.status is Status.ACTIVE and ws is not None and ws.kill_switch.engaged:
            return Status.PAUSED
        return config.status

    def _fire(self, enrollment: Enrollment, config: SequenceConfig | None) -> bool:
        """Process one due step; True if the enrollment moved on and may be due again."""
        if config is None:
            self._exit(enrollment, None, Reason.CONFIG_DELETED)
            return False
        status = self._status(config)
        if status is Status.STOPPED:
            self._exit(enrollment, config, Reason.CONFIG_STOPPED)
            return False
        if status is Status.PAUSED:
            return False  # stays due; fires once on resume (or on the kill switch's release)
        if enrollment.version != config.version:
            remapped = _remap(enrollment, config)
            if remapped is None:
                self._exit(enrollment, config, Reason.STEP_REMOVED)
                return False
            enrollment = remapped
            self._put(enrollment)
        step = config.steps[enrollment.step]
        if step.kind == "branch":
            target = next(
                (
                    r.goto
                    for r in step.branches
                    if _rule_holds(r.event_type, r.attribute, enrollment, self.state)
                ),
                "next",
            )
            return self._jump(enrollment, config, target, Reason.BRANCHED)
        if step.wait_for is not None and step.wait_for.event_type in enrollment.seen:
            return self._jump(enrollment, config, step.wait_for.on_event, Reason.AWAITED_EVENT)
        if step.condition is not None and not _condition_holds(step, enrollment, self.state):
            self.add(
                self._step_activity(ActivityType.STEP_SKIPPED, enrollment, Reason.CONDITION_FALSE)
            )
            return self._jump(enrollment, config, "next", None)
        return self._send(enrollment, config, step)

    def _send(self, enrollment: Enrollment, config: SequenceConfig, step: Step) -> bool:
        levels = self._levels(config)
        limits = [lv.rules.max_messages_per_enrollment for lv in levels]
        if any(limit is not None and enrollment.sent >= limit for limit in limits):
            self._exit(enrollment, config, Reason.MAX_MESSAGES)
            return False
        verdict = guardrails.evaluate(
            step.channels,
            self.state.profile.consent,
            levels,
            self.now,
            self.tz,
            _LedgerView(self.ctx.ledger, self._ledger_pending),
            self.ctx.partition,
            self.ctx.partitions,
        )
        if verdict.skip:
            self.add(
                self._step_activity(
                    ActivityType.STEP_SKIPPED,
                    enrollment,
                    verdict.reason,
                    {"dropped": verdict.dropped},
                )
            )
            return self._jump(enrollment, config, "next", None)
        deadline = _deferral_deadline(enrollment, config, step, levels)
        if verdict.defer_until is not None:
            if to_ms(verdict.defer_until) > deadline:
                self._exit(enrollment, config, Reason.DEFERRAL_EXPIRED)
                return False
            self._defer(enrollment, verdict.defer_until, verdict.reason)
            return False
        group = context_group(self.state.profile, config.adaptive.context_attributes)
        if enrollment.arm is Arm.HOLDOUT:
            self._remember(
                Touch(
                    self.now_ms, config.id, step.id, None, "", Arm.HOLDOUT, step.variants[0], group
                )
            )
            self.add(
                self._step_activity(
                    ActivityType.MESSAGE_SUPPRESSED,
                    enrollment,
                    Reason.HOLDOUT,
                    {"channel": verdict.channels[0].value},
                )
            )
            enrollment = evolve(enrollment, sent=enrollment.sent + 1)  # walk the steps like a send
            self._put(enrollment)
            return self._jump(enrollment, config, "next", None)
        if enrollment.arm is Arm.ADAPTIVE and not enrollment.timed:
            quiet = [lv.rules.quiet_hours for lv in levels if lv.rules.quiet_hours is not None]
            best = policy.best_send_time(
                self.now, self.tz, self.state.hours, config.adaptive.send_time, quiet
            )
            if best is not None and to_ms(best) <= deadline:
                self._defer(enrollment, best, Reason.SEND_TIME_OPTIMISED)
                return False
        channel_choice = policy.choose_channel(
            verdict.channels,
            enrollment.arm,
            config.adaptive,
            self.ctx.stats,
            self.state.affinity,
            config.id,
            step.id,
            group,
            self.rng,
        )
        variant_choice = policy.choose_variant(
            step.variants,
            enrollment.arm,
            config.adaptive,
            self.ctx.stats,
            config.id,
            step.id,
            group,
            self.rng,
        )
        channel = Channel(channel_choice.value)
        command = self._command(enrollment, config, step, channel, variant_choice.value)
        self.commands.append(command)
        cost = guardrails.message_cost(levels, channel)
        self.add(
            self._step_activity(
                ActivityType.COMMAND_EMITTED,
                enrollment,
                None,
                {
                    "policy": channel_choice.policy,
                    "scores": channel_choice.scores,
                    "variant_policy": variant_choice.policy,
                    "variant_scores": variant_choice.scores,
                    "variant": variant_choice.value,
                    "template": step.template,
                    "group": group,
                    "dropped": verdict.dropped,
                },
                channel=channel,
                command_id=command.command_id,
                cost=cost,
            )
        )
        self._remember(
            Touch(
                self.now_ms,
                config.id,
                step.id,
                channel,
                short_command_id(command.command_id),
                enrollment.arm,
                variant_choice.value,
                group,
            )
        )
        affinity = dict(self.state.affinity)
        sent, engaged = affinity.get(channel, (0, 0))
        affinity[channel] = (sent + 1, engaged)
        self.state = evolve(self.state, affinity=affinity)
        self.stat_deltas.extend(
            deltas(config.id, step.id, channel.value, variant_choice.value, group, 1, 0)
        )
        for key, amount in guardrails.spend(levels, channel, self.now):
            self.ledger_deltas.append((key, amount))
            self._ledger_pending[key] = self._ledger_pending.get(key, 0.0) + amount
        enrollment = evolve(enrollment, sent=enrollment.sent + 1)
        self._put(enrollment)
        return self._jump(enrollment, config, "next", None)

    def _levels(self, config: SequenceConfig) -> list[Level]:
        sent = [t for t in self.state.touches if t.channel is not None]
        levels = [
            Level(
                f"c:{config.id}", config.guardrails, [t for t in sent if t.config_id == config.id]
            )
        ]
        if self.ctx.workspace is not None:
            levels.append(Level(f"w:{config.workspace_id}", self.ctx.workspace.guardrails, sent))
        return levels

    def _command(
        self, e: Enrollment, config: SequenceConfig, step: Step, channel: Channel, variant: str
    ) -> Command:
        return Command.model_validate(
            {
                "command_id": stable_id(
                    "command",
                    config.workspace_id,
                    config.id,
                    self.state.user_id,
                    e.seq,
                    step.id,
                    *self._life,
                ),
                "workspace_id": config.workspace_id,
                "config_id": config.id,
                "config_version": config.version,
                "user_id": self.state.user_id,
                "step_id": step.id,
                "channel": channel,
                "template": step.template or "",
                "variant": variant,
                "arm": e.arm,
                "decided_at": self.now,
            },
        )

    # --- transitions ------------------------------------------------------------------------
    def _jump(
        self, enrollment: Enrollment, config: SequenceConfig, target: str, reason: Reason | None
    ) -> bool:
        if reason is not None and target != "exit":
            kind = ActivityType.STEP_BRANCHED if target != "next" else ActivityType.STEP_SKIPPED
            self.add(self._step_activity(kind, enrollment, reason, {"goto": target}))
        if target == "exit":
            self._exit(enrollment, config, reason or Reason.BRANCHED)
            return False
        index = enrollment.step + 1 if target == "next" else config.step_index(target)
        if index is None or index >= len(config.steps):
            self._exit(enrollment, config, Reason.COMPLETED)
            return False
        step = config.steps[index]
        self._put(
            evolve(
                enrollment,
                step=index,
                step_id=step.id,
                step_ms=self.now_ms,
                seen=(),
                deferrals=0,
                timed=False,
                due_ms=_due_ms(step, enrollment.enrolled_ms, self.now_ms),
            )
        )
        return True

    def _defer(self, enrollment: Enrollment, until: datetime, reason: Reason | None) -> None:
        """Wait until `until`; send-time optimisation is applied at most once per step."""
        self.add(
            self._step_activity(
                ActivityType.STEP_DEFERRED,
                enrollment,
                reason,
                {"until": until.isoformat(), "deferral": enrollment.deferrals + 1},
            )
        )
        self._put(
            evolve(
                enrollment,
                due_ms=max(to_ms(until), self.now_ms + 1),
                deferrals=enrollment.deferrals + 1,
                timed=enrollment.timed or reason is Reason.SEND_TIME_OPTIMISED,
            )
        )

    def _exit(self, enrollment: Enrollment, config: SequenceConfig | None, reason: Reason) -> None:
        self.state = self.state.without_enrollment(enrollment.config_id)
        self.add(
            self._step_activity(
                ActivityType.ENROLLMENT_EXITED, enrollment, reason, {"sent": enrollment.sent}
            )
        )

    def _put(self, enrollment: Enrollment) -> None:
        self.state = self.state.with_enrollment(enrollment)

    def _remember(self, touch: Touch) -> None:
        horizon = self.now_ms - TOUCH_RETENTION // MS
        touches = (*(t for t in self.state.touches if t.at_ms >= horizon), touch)
        if len(touches) > MAX_TOUCHES:
            touches = self._still_needed(touches)
        self.state = evolve(self.state, touches=touches)

    def _still_needed(self, touches: tuple[Touch, ...]) -> tuple[Touch, ...]:
        """The latest MAX_TOUCHES touches plus every older send a guardrail still counts.
        Other sequences' sends and holdout suppressions can push a sequence's own sends out of
        the latest, so each cap keeps its last `max` sends in its window, each gap its last."""
        keep = set(range(len(touches) - MAX_TOUCHES, len(touches)))
        every: list[int] = []
        by_config: dict[str, list[int]] = {}
        for i, t in enumerate(touches):
            if t.channel is not None:
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
                    if touches[i].at_ms > since and cap.channel in (None, touches[i].channel)
                ]
                keep.update(counted[-cap.max :])
        return tuple(t for i, t in enumerate(touches) if i in keep)

    def _last_touch(self, config_id: str) -> Touch | None:
        return next((t for t in reversed(self.state.touches) if t.config_id == config_id), None)

    # --- activities -------------------------------------------------------------------------
    def _step_activity(
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
        return self._activity(
            kind,
            e.config_id,
            {"arm": e.arm, "step_id": e.step_id, **extra},
            discriminator=discriminator,
            reason=reason,
            details=details,
            seq=e.seq,
        )

    def _activity(
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
                kind.value,
                state.workspace_id,
                config_id,
                state.user_id,
                seq,
                discriminator,
                *self._life,
            ),
            "type": kind,
            "workspace_id": state.workspace_id,
            "user_id": state.user_id,
            "occurred_at": self.now,
            "config_id": config_id,
            "config_version": config.version if config else 0,
            "reason_code": reason or "",
            "details": details or {},
            "value": value,
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
        return Activity.model_validate(values)


class _LedgerView(Mapping[str, float]):
    """The partition's ledger plus what this decision already spent."""

    def __init__(self, base: Ledger, pending: Mapping[str, float]) -> None:
        self.base, self.pending = base, pending

    def __getitem__(self, key: str) -> float:
        return self.base.get(key, 0.0) + self.pending.get(key, 0.0)

    def __iter__(self) -> Iterator[str]:
        return iter({*self.base, *self.pending})

    def __len__(self) -> int:
        return len({*self.base, *self.pending})


def _event_activity(event: Event, kind: ActivityType) -> Activity:
    return Activity.model_validate(
        {
            "activity_id": stable_id("activity", kind.value, event.workspace_id, event.event_id),
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


def _attribution(touch: Touch | None) -> dict[str, Any]:
    if touch is None:
        return {}
    return {"step_id": touch.step_id, "channel": touch.channel, "arm": touch.arm}


def _numeric(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _due_ms(step: Step, enrolled_ms: int, now_ms: int) -> int:
    start = enrolled_ms if step.wait_from == "entry" else now_ms
    due = start + step.wait // MS
    if step.wait_for is not None:
        due += step.wait_for.timeout // MS
    return max(due, now_ms)


def _deferral_deadline(
    enrollment: Enrollment, config: SequenceConfig, step: Step, levels: list[Level]
) -> int:
    """The last instant (epoch ms) a due step may still go out: `max_deferral` (the shorter of
    both levels) after it came due, or after the sequence's last change (a resume, a raised
    budget) if that is later. A deferral past it ends the enrollment instead."""
    came_due = _due_ms(step, enrollment.enrolled_ms, enrollment.step_ms)
    changed = to_ms(config.updated_at) if config.updated_at is not None else came_due
    allowed = min(level.rules.max_deferral for level in levels)
    return max(came_due, changed) + allowed // MS


def _current_step(config: SequenceConfig, enrollment: Enrollment) -> Step | None:
    index = config.step_index(enrollment.step_id)
    return None if index is None else config.steps[index]


def _remap(enrollment: Enrollment, config: SequenceConfig) -> Enrollment | None:
    """An edit applies to in-flight enrollments by step id; a removed step hands over to the
    step now at its position (the next remaining one), or ends the enrollment."""
    index = config.step_index(enrollment.step_id)
    if index is None:
        index = enrollment.step
        if index >= len(config.steps):
            return None
    return evolve(enrollment, version=config.version, step=index, step_id=config.steps[index].id)


def _profile_keys(state: UserState, event: Event, ctx: Context) -> frozenset[str] | None:
    """The attribute keys the workspace's sequences can ask about (entry filters on the
    profile, conditions, branch rules, context attributes): all the profile needs to keep."""
    if not state.profile.attributes and (event.user is None or not event.user.attributes):
        return None  # nothing to keep or drop
    keys: set[str] = set()
    for config in ctx.configs.values():
        keys.update(f.key for f in config.entry.filters if f.source == "attribute")
        keys.update(config.adaptive.context_attributes)
        for step in config.steps:
            if step.condition is not None:
                keys.update(f.key for f in step.condition.attributes)
            keys.update(r.attribute.key for r in step.branches if r.attribute is not None)
    return frozenset(keys)


def _watched_types(config: SequenceConfig) -> set[str]:
    types: set[str] = set()
    for step in config.steps:
        if step.condition is not None:
            types.update(step.condition.none_of_events, step.condition.any_of_events)
        if step.wait_for is not None:
            types.add(step.wait_for.event_type)
        types.update(r.event_type for r in step.branches if r.event_type)
    return types


def _see(enrollment: Enrollment, event_type: str) -> Enrollment:
    """Remember a watched type (the caller passes only `_watched_types` of the sequence):
    bounded by the configuration, so nothing a condition can ask about is ever forgotten."""
    if event_type in enrollment.seen:
        return enrollment
    return evolve(enrollment, seen=(*enrollment.seen, event_type))


def _condition_holds(step: Step, enrollment: Enrollment, state: UserState) -> bool:
    condition = step.condition
    assert condition is not None  # noqa: S101 - caller checked
    seen = set(enrollment.seen)
    if seen.intersection(condition.none_of_events):
        return False
    if condition.any_of_events and not seen.intersection(condition.any_of_events):
        return False
    return all(
        _attribute_holds(f, state.profile.attributes.get(f.key)) for f in condition.attributes
    )


def _rule_holds(
    event_type: str | None, attribute: AttributeFilter | None, e: Enrollment, state: UserState
) -> bool:
    if event_type is not None:
        return event_type in e.seen
    assert attribute is not None  # noqa: S101 - the model guarantees one of the two
    return _attribute_holds(attribute, state.profile.attributes.get(attribute.key))


def _filter_holds(flt: AttributeFilter, state: UserState, event: Event) -> bool:
    source = event.properties if flt.source == "property" else state.profile.attributes
    return _attribute_holds(flt, source.get(flt.key))


def _attribute_holds(flt: AttributeFilter, value: object) -> bool:
    if flt.one_of is not None:
        return value in flt.one_of
    if flt.min is not None or flt.max is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return (flt.min is None or value >= flt.min) and (flt.max is None or value <= flt.max)
    return value == flt.equals


def _reentry_allowed(config: SequenceConfig, past: Past, now_ms: int) -> bool:
    policy_ = config.entry.reentry
    if policy_.policy == "always":
        return True
    if policy_.policy == "never":
        return False
    return now_ms - past.enrolled_ms >= policy_.cooldown // MS
