"""The sequence state machine: `(state, input, now, rng, context) -> Outcome`.

Two inputs drive it: an event (`on_event`) and a timer (`on_timer`, "something of this user
may be due"). Both end by advancing every due enrollment (`steps.advance_due`: one handler per
step kind), so a zero wait fires at once and an overdue step fires exactly once after a pause.
Every loop is bounded: steps only jump forward, so one enrollment visits at most `len(steps)`
steps per call. A decision works on a mutable copy of the user's state (`decision.Decision`);
the state in and the state out are immutable.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from sme.contracts.activities import ActivityType
from sme.contracts.commands import Arm
from sme.contracts.conditions import Node, attribute_names
from sme.contracts.events import Event
from sme.contracts.reasons import Reason
from sme.contracts.sequences import RUNNING, AttributeFilter, SequenceConfig, Step
from sme.core.arms import arm_of_record
from sme.core.conditions import holds
from sme.core.content import data_attributes, remember_trigger
from sme.core.decision import Context, Decision, Outcome, due_ms, event_activity
from sme.core.entry_window import entry_closed
from sme.core.evolve import PerObject, evolve
from sme.core.global_control import enrollment_arm
from sme.core.stats import (
    conversion_deltas,
    deltas,
    repeat_deltas,
    send_hour_deltas,
    unsubscribe_deltas,
)
from sme.core.steps import AWAITED, advance_due, attribute_holds
from sme.core.timeutil import MS, from_ms, local_hour
from sme.core.user_state import (
    MAX_ENROLLMENTS,
    Enrollment,
    Past,
    Touch,
    UserState,
    short_command_id,
)
from sme.core.working import Working

__all__ = ["Context", "Outcome", "on_event", "on_timer"]

FEEDBACK_TYPES = frozenset(
    {"delivered", "opened", "clicked", "bounced", "unsubscribed", "converted"}
)
REWARD_TYPES = frozenset({"clicked", "converted"})
ENGAGEMENT_TYPES = frozenset({"opened", "clicked", "converted"})
MAX_HOUR_COUNT = 1000


def on_event(
    state: UserState, event: Event, now: datetime, rng: random.Random, ctx: Context
) -> Outcome:
    """Apply one validated event: dedupe, profile, feedback, goals and exits, entries, due steps."""
    if state.has_seen(event.event_id):
        return Outcome(state, activities=(event_activity(event, ActivityType.EVENT_DUPLICATE),))
    run = _EventDecision(state.observe(event, _profile_keys(state, event, ctx)), now, rng, ctx)
    run.add(event_activity(event, ActivityType.EVENT_RECEIVED))
    if event.type in FEEDBACK_TYPES:
        run.feedback(event)
    run.goals(event)
    run.credit()
    run.exits_and_waits(event)
    run.entries(event)
    advance_due(run)
    return run.outcome()


def on_timer(state: UserState, now: datetime, rng: random.Random, ctx: Context) -> Outcome:
    """Advance whatever of this user is due at `now`."""
    run = Decision(state, now, rng, ctx)
    advance_due(run)
    return run.outcome()


class _EventDecision(Decision):
    """What an event does besides firing due steps: feedback, credit, goals, exits, entries."""

    # --- feedback ---------------------------------------------------------------------------
    def feedback(self, event: Event) -> None:
        touch = self._feedback_touch(event)
        channel = event.channel or (touch.channel if touch else None)
        self.add(
            self.activity(
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
            hours = state.hours
            hours[hour] = hours.get(hour, 0) + 1
            if hours[hour] > MAX_HOUR_COUNT:  # keep counts bounded, shape intact
                state.hours = {h: n // 2 for h, n in hours.items() if n // 2}
        if touch is not None and event.type in REWARD_TYPES:
            self.offers.append(touch)
        if event.type == "unsubscribed" and channel is not None:
            if touch is not None and touch.channel is not None:
                self.stat_deltas.extend(
                    unsubscribe_deltas(
                        touch.config_id, touch.step_id, touch.channel.value, touch.group, 0, 1
                    )
                )
            consent = {**state.profile.consent, channel: False}
            state.profile = evolve(state.profile, consent=consent)
            self.add(
                self.activity(
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
        if self.offers:
            self._reward(max(self.offers, key=lambda t: t.at_ms))
        self.offers = []

    def _reward(self, touch: Touch) -> None:
        """Credit a message's success once: user affinity and population statistics."""
        if touch.rewarded or touch.channel is None:
            return
        touches = self.state.touches
        for i, t in enumerate(touches):
            if t is touch:
                touches[i] = evolve(t, rewarded=True)
        affinity = self.state.affinity
        sent, engaged = affinity.get(touch.channel, (0, 0))
        affinity[touch.channel] = (sent, min(engaged + 1, sent))
        earlier = max(sent - 1, 0)  # messages before the credited one (its latest, mostly)
        self.stat_deltas.extend(
            repeat_deltas(
                touch.config_id, touch.channel.value, earlier, min(engaged, earlier), success=True
            )
        )
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
        config = self.ctx.configs.get(touch.config_id)
        if config is not None and config.adaptive.send_time.population_weight > 0:
            hour = local_hour(from_ms(touch.at_ms), self.tz)
            self.stat_deltas.extend(send_hour_deltas(touch.config_id, hour, touch.group, 0, 1))

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
            if goal.when is not None and not self._holds_on(goal.when, event):
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
                touch = self.last_touch(config.id)
            if touch is not None and touch.at_ms < window_start:
                touch = None
            if enrollment is None and touch is None and past.enrolled_ms < window_start:
                continue
            arm = enrollment.arm if enrollment else self._exposed_arm(config, past)
            value = (
                _numeric(event.properties.get(goal.value_property)) if goal.value_property else 0.0
            )
            self.add(
                self.activity(
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
            self.state.past[config.id] = evolve(past, converted=True)
            if touch is not None:
                self.offers.append(touch)
                if config.adaptive.objective != "conversions" and touch.channel is not None:
                    self.stat_deltas.extend(
                        conversion_deltas(
                            config.id, touch.step_id, touch.channel.value, touch.group, 0, 1
                        )
                    )
            if enrollment is not None:
                self.exit(enrollment, Reason.GOAL_REACHED)

    def _exposed_arm(self, config: SequenceConfig, past: Past) -> Arm:
        """The arm of record of a past enrollment (never today's split, which a PATCH may have
        changed since); a state stored before `past` kept it falls back to its touches."""
        if past.arm is not None:
            return past.arm
        touch = self.last_touch(config.id)
        exposed = touch.arm if touch is not None else None
        return arm_of_record(config.id, self.state.user_id, config.experiment, exposed)

    def exits_and_waits(self, event: Event) -> None:
        for enrollment in list(self.state.enrollments.values()):
            config = self.ctx.configs.get(enrollment.config_id)
            if config is None:
                continue
            if self._exits(config, event):
                self.exit(enrollment, Reason.EXIT_EVENT)
                continue
            if event.type not in _watched_types(config):
                continue
            enrollment = _see(enrollment, event.type)
            step = _current_step(config, enrollment)
            wait_for = step.wait_for if step is not None else None
            if (
                wait_for is None
                or wait_for.event_type != event.type
                or (wait_for.when is not None and not self._holds_on(wait_for.when, event))
            ):
                self.put(enrollment)
                continue
            if wait_for.when is not None:  # remembered for a paused step: it jumps on resume
                enrollment = _see(enrollment, AWAITED)
            self.put(enrollment)
            if self.status(config) in RUNNING:
                self.jump(enrollment, config, wait_for.on_event, Reason.AWAITED_EVENT)

    def _exits(self, config: SequenceConfig, event: Event) -> bool:
        exit_ = config.exit
        if event.type in exit_.event_types:
            return True
        return any(
            event.type in rule.event_types and self._holds_on(rule.when, event)
            for rule in exit_.rules
        )

    def _holds_on(self, expr: Node, event: Event) -> bool:
        """An expression on the profile and the event at hand."""
        return holds(expr, self.state.profile.attributes, event.properties, self.now)

    # --- entries ----------------------------------------------------------------------------
    def entries(self, event: Event) -> None:
        for config in self.ctx.configs.values():
            if event.type in config.entry.event_types:
                self.enter(config, event)

    def enter(self, config: SequenceConfig, event: Event) -> Reason | None:
        """Enroll the user if the sequence admits them on this event (None), else why not. The
        event path is silent on a sequence not ACTIVE, an enrollment already running and an
        unmet filter; a list enrollment (`core.enroll`) records those reasons itself."""
        status = self.status(config)
        if status not in RUNNING:
            return Reason.NOT_ACTIVE
        if self.state.enrollment(config.id) is not None:
            return Reason.ALREADY_ENROLLED
        if not all(_filter_holds(f, self.state, event) for f in config.entry.filters):
            return Reason.FILTER_NOT_MATCHED
        if config.entry.when is not None and not self._holds_on(config.entry.when, event):
            return Reason.FILTER_NOT_MATCHED
        past = self.state.past.get(config.id)
        closed = entry_closed(config, status, self.now)
        if closed is not None:
            self.add(
                self.activity(
                    ActivityType.ENROLLMENT_SKIPPED,
                    config.id,
                    {},
                    discriminator=event.event_id,
                    reason=closed,
                    seq=past.seq if past else 0,
                )
            )
            return closed
        if past is not None and not _reentry_allowed(config, past, self.now_ms):
            self.add(
                self.activity(
                    ActivityType.ENROLLMENT_SKIPPED,
                    config.id,
                    {},
                    discriminator=event.event_id,
                    reason=Reason.REENTRY_BLOCKED,
                    seq=past.seq,
                )
            )
            return Reason.REENTRY_BLOCKED
        if len(self.state.enrollments) >= MAX_ENROLLMENTS:
            self.add(
                self.activity(
                    ActivityType.ENROLLMENT_SKIPPED,
                    config.id,
                    {},
                    discriminator=event.event_id,
                    reason=Reason.TOO_MANY_ENROLLMENTS,
                )
            )
            return Reason.TOO_MANY_ENROLLMENTS
        self._enroll(config, past, event)
        return None

    def _enroll(self, config: SequenceConfig, past: Past | None, event: Event) -> None:
        seq = past.seq + 1 if past else 1
        exposed = self._exposed_arm(config, past) if past else None
        arm = enrollment_arm(self.ctx.workspace, config, self.state.user_id, exposed)
        first = config.steps[0]
        trigger, trigger_omitted = remember_trigger(config, event.properties)
        enrollment = Enrollment(
            config_id=config.id,
            version=config.version,
            arm=arm,
            seq=seq,
            enrolled_ms=self.now_ms,
            step=0,
            step_id=first.id,
            step_ms=self.now_ms,
            due_ms=due_ms(first, self.now_ms, self.now_ms, self.tz),
            trigger=trigger,
            trigger_omitted=trigger_omitted,
        )
        # Never evicted: `seq` is part of every id of the enrollment, and `never` must hold.
        self.state.past[config.id] = Past(self.now_ms, seq, arm=arm)
        self.put(enrollment)
        info = {"arm": arm, "step_id": first.id}
        self.add(
            self.activity(
                ActivityType.ENROLLED, config.id, info, discriminator="", seq=seq, event=event
            )
        )
        if seq == 1:
            self.add(
                self.activity(ActivityType.EXPOSURE, config.id, info, discriminator="", seq=seq)
            )


def _attribution(touch: Touch | None) -> dict[str, Any]:
    if touch is None:
        return {}
    return {"step_id": touch.step_id, "channel": touch.channel, "arm": touch.arm}


def _numeric(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _current_step(config: SequenceConfig, enrollment: Enrollment) -> Step | None:
    index = config.step_index(enrollment.step_id)
    return None if index is None else config.steps[index]


def _profile_keys(state: UserState, event: Event, ctx: Context) -> frozenset[str] | None:
    """The attribute keys the workspace's sequences can ask about (entry filters on the
    profile, conditions, branch rules, context attributes) or carry on commands (data
    allow-lists): all the profile needs to keep."""
    if not state.profile.attributes and (event.user is None or not event.user.attributes):
        return None  # nothing to keep or drop
    configs = list(ctx.configs.values())
    if len(configs) == 1:
        return _asked_keys(configs[0])
    return frozenset().union(*map(_asked_keys, configs))


def _config_keys(config: SequenceConfig) -> frozenset[str]:
    """The attribute keys one sequence can ask about."""
    keys: set[str] = set()
    keys.update(f.key for f in config.entry.filters if f.source == "attribute")
    keys.update(config.adaptive.context_attributes)
    keys.update(data_attributes(config))
    expressions = [config.entry.when, *(rule.when for rule in config.exit.rules)]
    if config.exit.goal is not None:
        expressions.append(config.exit.goal.when)
    for step in config.steps:
        if step.condition is not None:
            keys.update(f.key for f in step.condition.attributes)
            expressions.append(step.condition.when)
        keys.update(r.attribute.key for r in step.branches if r.attribute is not None)
        expressions.extend(r.when for r in step.branches)
        if step.wait_for is not None:
            expressions.append(step.wait_for.when)
    for expression in expressions:
        keys.update(attribute_names(expression))
    return frozenset(keys)


def _config_watched_types(config: SequenceConfig) -> frozenset[str]:
    types: set[str] = set()
    for step in config.steps:
        if step.condition is not None:
            types.update(step.condition.none_of_events, step.condition.any_of_events)
        if step.wait_for is not None:
            types.add(step.wait_for.event_type)
        types.update(r.event_type for r in step.branches if r.event_type)
    return frozenset(types)


# Derived once per (immutable) configuration object, not per event.
_asked_keys = PerObject(_config_keys)
_watched_types = PerObject(_config_watched_types)


def _see(enrollment: Enrollment, event_type: str) -> Enrollment:
    """Remember a watched type (the caller passes only `_watched_types` of the sequence):
    bounded by the configuration, so nothing a condition can ask about is ever forgotten."""
    if event_type in enrollment.seen:
        return enrollment
    return evolve(enrollment, seen=(*enrollment.seen, event_type))


def _filter_holds(flt: AttributeFilter, state: Working, event: Event) -> bool:
    source = event.properties if flt.source == "property" else state.profile.attributes
    return attribute_holds(flt, source.get(flt.key))


def _reentry_allowed(config: SequenceConfig, past: Past, now_ms: int) -> bool:
    policy_ = config.entry.reentry
    if policy_.policy == "always":
        return True
    if policy_.policy == "never":
        return False
    return now_ms - past.enrolled_ms >= policy_.cooldown // MS
