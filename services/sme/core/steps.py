"""Due steps: one small handler per step kind, each returning what happened to the enrollment.

`advance_due` fires every due enrollment until it is no longer due: a handler that moved the
enrollment on (sent, skipped, branched) lets the loop look again, so a zero wait fires at once;
every other result (deferred, waiting, exited) ends its turn. Steps only jump forward, so an
enrollment visits at most `len(steps)` steps per call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from sme.contracts.activities import ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.reasons import Reason
from sme.contracts.sequences import AttributeFilter, BranchRule, SequenceConfig, Status, Step
from sme.core import guardrails, policy
from sme.core.conditions import holds
from sme.core.decision import Decision, due_ms
from sme.core.evolve import evolve
from sme.core.guardrails import Level, Verdict
from sme.core.splits import split_path
from sme.core.stats import (
    context_group,
    conversion_deltas,
    deltas,
    repeat_deltas,
    send_hour_deltas,
    unsubscribe_deltas,
)
from sme.core.targeting import kind_of, quiet_windows
from sme.core.timeutil import MS, local_hour, to_ms
from sme.core.user_state import Enrollment, Touch, short_command_id
from sme.core.working import Working

_CHANNELS = {channel.value: channel for channel in Channel}
SUPPRESSED_ARMS: Mapping[Arm, Reason] = {
    Arm.HOLDOUT: Reason.HOLDOUT,
    Arm.GLOBAL_CONTROL: Reason.GLOBAL_CONTROL,
}
"""Arms that walk the steps without a message, and the reason each suppression records."""


class StepResult(Enum):
    SENT = "sent"  # a message decided (or suppressed for the holdout); moved on
    SKIPPED = "skipped"  # the step was passed over (condition false, no channel); moved on
    BRANCHED = "branched"  # a branch rule or an awaited event chose the next step
    DEFERRED = "deferred"  # due again later (guardrails, send-time optimisation)
    WAITING = "waiting"  # paused: stays due, fires once on resume
    EXITED = "exited"  # the enrollment ended

    @property
    def moved_on(self) -> bool:
        return self in _MOVED_ON


_MOVED_ON = frozenset({StepResult.SENT, StepResult.SKIPPED, StepResult.BRANCHED})


def advance_due(d: Decision) -> None:
    for config_id in list(d.state.enrollments):
        config = d.ctx.configs.get(config_id)
        for _ in range(len(config.steps) + 2 if config else 1):
            enrollment = d.state.enrollment(config_id)
            if enrollment is None or enrollment.due_ms > d.now_ms:
                break
            if not fire(d, enrollment, config).moved_on:
                break


def fire(d: Decision, enrollment: Enrollment, config: SequenceConfig | None) -> StepResult:
    """Process one due step: the sequence's lifecycle first, then the step's own handler."""
    if config is None:
        d.exit(enrollment, Reason.CONFIG_DELETED)
        return StepResult.EXITED
    status = d.status(config)
    if status is Status.STOPPED:
        d.exit(enrollment, Reason.CONFIG_STOPPED)
        return StepResult.EXITED
    if status is Status.PAUSED:
        return StepResult.WAITING  # fires once on resume (or on the kill switch's release)
    if enrollment.version != config.version:
        remapped = _remap(enrollment, config)
        if remapped is None:
            d.exit(enrollment, Reason.STEP_REMOVED)
            return StepResult.EXITED
        enrollment = remapped
        d.put(enrollment)
    step = config.steps[enrollment.step]
    if step.kind == "branch":
        return branch(d, enrollment, config, step)
    if step.kind == "split":
        return split(d, enrollment, config, step)
    if step.wait_for is not None and was_awaited(step, enrollment):
        return awaited(d, enrollment, config, step)
    if step.condition is not None and not condition_holds(step, enrollment, d.state, d.now):
        return condition_false(d, enrollment, config)
    return message(d, enrollment, config, step)


def _moved(d: Decision, enrollment: Enrollment, config: SequenceConfig, target: str,
           reason: Reason | None, result: StepResult, sent: int | None = None,
           details: Mapping[str, Any] | None = None) -> StepResult:  # fmt: skip
    moved = d.jump(enrollment, config, target, reason, sent, details)
    return result if moved else StepResult.EXITED


def branch(d: Decision, enrollment: Enrollment, config: SequenceConfig, step: Step) -> StepResult:
    """The first rule that holds names the next step; none holds: the next one."""
    target = next(
        (r.goto for r in step.branches if rule_holds(r, enrollment, d.state, d.now)),
        "next",
    )
    return _moved(d, enrollment, config, target, Reason.BRANCHED, StepResult.BRANCHED)


def split(d: Decision, enrollment: Enrollment, config: SequenceConfig, step: Step) -> StepResult:
    """The user's sticky weighted path (every arm alike: the split is the campaign's design)."""
    weights = [p.weight for p in step.paths]
    index = split_path(weights, config.id, step.id, d.state.user_id)
    target = step.paths[index].goto
    details = {"path": index, "weight": round(weights[index] / sum(weights), 6)}
    return _moved(d, enrollment, config, target, Reason.SPLIT, StepResult.BRANCHED, details=details)


def awaited(d: Decision, enrollment: Enrollment, config: SequenceConfig, step: Step) -> StepResult:
    """The awaited event came before the timeout: go where it says."""
    assert step.wait_for is not None  # noqa: S101 - the dispatcher checked
    target = step.wait_for.on_event
    return _moved(d, enrollment, config, target, Reason.AWAITED_EVENT, StepResult.BRANCHED)


def condition_false(d: Decision, enrollment: Enrollment, config: SequenceConfig) -> StepResult:
    d.add(d.step_activity(ActivityType.STEP_SKIPPED, enrollment, Reason.CONDITION_FALSE))
    return _moved(d, enrollment, config, "next", None, StepResult.SKIPPED)


def message(d: Decision, enrollment: Enrollment, config: SequenceConfig, step: Step) -> StepResult:
    """A message step: guardrails (skip, defer or allow), then the holdout's suppression,
    send-time optimisation (never for a `wait_until` step: its time is the campaign's), or
    the send itself on the chosen channel and variant."""
    levels = d.levels(config)
    limits = [lv.rules.max_messages_per_enrollment for lv in levels]
    if any(limit is not None and enrollment.sent >= limit for limit in limits):
        d.exit(enrollment, Reason.MAX_MESSAGES)
        return StepResult.EXITED
    verdict = guardrails.evaluate(
        step.channels,
        d.state.profile.consent,
        levels,
        d.now,
        d.tz,
        d.ledger(),
        d.ctx.partition,
        d.ctx.partitions,
        kind_of(step),
    )
    if verdict.skip:
        details = {"dropped": verdict.dropped, **_transactional(step)}
        d.add(d.step_activity(ActivityType.STEP_SKIPPED, enrollment, verdict.reason, details))
        return _moved(d, enrollment, config, "next", None, StepResult.SKIPPED)
    deadline = _deferral_deadline(enrollment, config, step, levels, d.tz)
    if verdict.defer_until is not None:
        return _deferred(d, enrollment, verdict.defer_until, verdict.reason, deadline)
    group = context_group(d.state.profile, config.adaptive.context_attributes)
    if enrollment.arm in SUPPRESSED_ARMS:
        return _suppressed(d, enrollment, config, step, verdict, group)
    timed_by_config = step.transactional or step.wait_until is not None
    if enrollment.arm is Arm.ADAPTIVE and not enrollment.timed and not timed_by_config:
        rules = [lv.rules for lv in levels]
        quiet = quiet_windows(rules, verdict.channels, kind_of(step))
        send_time = config.adaptive.send_time
        population = (
            policy.population_hours(d.ctx.stats, config.id, group)
            if send_time.enabled and send_time.population_weight > 0
            else None
        )
        best = policy.best_send_time(d.now, d.tz, d.state.hours, send_time, quiet, population)
        if best is not None and to_ms(best) <= deadline:
            d.defer(enrollment, best, Reason.SEND_TIME_OPTIMISED)
            return StepResult.DEFERRED
    return _send(d, enrollment, config, step, verdict, levels, group)


def _transactional(step: Step) -> dict[str, bool]:
    """Marks the activities of a transactional step that did not go out (a budget, consent,
    the holdout), so a missing receipt is explained as one."""
    return {"transactional": True} if step.transactional else {}


def _deferred(
    d: Decision, enrollment: Enrollment, until: datetime, reason: Reason | None, deadline: int
) -> StepResult:
    if to_ms(until) > deadline:
        d.exit(enrollment, Reason.DEFERRAL_EXPIRED)
        return StepResult.EXITED
    d.defer(enrollment, until, reason)
    return StepResult.DEFERRED


def _suppressed(
    d: Decision,
    enrollment: Enrollment,
    config: SequenceConfig,
    step: Step,
    verdict: Verdict,
    group: str,
) -> StepResult:
    """The holdout (and the global control) walks the steps like a send, without a message."""
    arm = enrollment.arm
    d.remember(Touch(d.now_ms, config.id, step.id, None, "", arm, step.variants[0], group))
    d.add(
        d.step_activity(
            ActivityType.MESSAGE_SUPPRESSED,
            enrollment,
            SUPPRESSED_ARMS[arm],
            {"channel": verdict.channels[0].value, **_transactional(step)},
        )
    )
    return _moved(d, enrollment, config, "next", None, StepResult.SENT, enrollment.sent + 1)


def _send(
    d: Decision,
    enrollment: Enrollment,
    config: SequenceConfig,
    step: Step,
    verdict: Verdict,
    levels: list[Level],
    group: str,
) -> StepResult:
    stats = d.ctx.stats
    channel_choice = policy.choose_channel(
        verdict.channels,
        enrollment.arm,
        config.adaptive,
        stats,
        d.state.affinity,
        config.id,
        step.id,
        group,
        d.rng,
        _costs(levels, verdict.channels) if config.adaptive.objective == "net_value" else None,
    )
    variant_choice = policy.choose_variant(
        step.variants,
        enrollment.arm,
        config.adaptive,
        stats,
        config.id,
        step.id,
        group,
        d.rng,
        user_id=d.state.user_id,
        weights=step.variant_weights,
    )
    channel = _CHANNELS[channel_choice.value]
    command = d.command(enrollment, config, step, channel, variant_choice.value)
    d.commands.append(command)
    cost = guardrails.message_cost(levels, channel)
    d.add(
        d.step_activity(
            ActivityType.COMMAND_EMITTED,
            enrollment,
            None,
            {
                "policy": channel_choice.policy,
                "scores": channel_choice.scores,
                "variant_policy": variant_choice.policy,
                "variant_scores": variant_choice.scores,
                "variant": variant_choice.value,
                "template": command.template,
                "group": group,
                "dropped": verdict.dropped,
                "category": step.category,
                "transactional": step.transactional,
                **({"data_omitted": command.data.omitted} if command.data.omitted else {}),
            },
            channel=channel,
            command_id=command.command_id,
            cost=cost,
        )
    )
    d.remember(
        Touch(
            d.now_ms,
            config.id,
            step.id,
            channel,
            short_command_id(command.command_id),
            enrollment.arm,
            variant_choice.value,
            group,
            category=step.category,
            transactional=step.transactional,
        )
    )
    affinity = d.state.affinity
    sent, engaged = affinity.get(channel, (0, 0))
    affinity[channel] = (sent + 1, engaged)
    d.stat_deltas.extend(repeat_deltas(config.id, channel.value, sent, engaged, success=False))
    d.stat_deltas.extend(
        deltas(config.id, step.id, channel.value, variant_choice.value, group, 1, 0)
    )
    d.stat_deltas.extend(unsubscribe_deltas(config.id, step.id, channel.value, group, 1, 0))
    if config.adaptive.objective != "conversions":
        d.stat_deltas.extend(conversion_deltas(config.id, step.id, channel.value, group, 1, 0))
    if config.adaptive.send_time.enabled and config.adaptive.send_time.population_weight > 0:
        hour = local_hour(d.now, d.tz)
        d.stat_deltas.extend(send_hour_deltas(config.id, hour, group, 1, 0))
    for key, amount in guardrails.spend(levels, channel, d.now):
        d.ledger_deltas.append((key, amount))
        d.ledger_pending[key] = d.ledger_pending.get(key, 0.0) + amount
    return _moved(d, enrollment, config, "next", None, StepResult.SENT, enrollment.sent + 1)


def _costs(levels: list[Level], channels: Sequence[Channel]) -> dict[Channel, float]:
    """Price per message of each eligible channel (the net-value objective weighs it)."""
    return {channel: guardrails.message_cost(levels, channel) for channel in channels}


def _deferral_deadline(
    enrollment: Enrollment, config: SequenceConfig, step: Step, levels: list[Level], tz: str
) -> int:
    """The last instant (epoch ms) a due step may still go out: `max_deferral` (the shorter of
    both levels) after it came due, or after the sequence's last change (a resume, a raised
    budget) if that is later. A deferral past it ends the enrollment instead."""
    came_due = due_ms(step, enrollment.enrolled_ms, enrollment.step_ms, tz)
    changed = to_ms(config.updated_at) if config.updated_at is not None else came_due
    allowed = min(level.rules.max_deferral for level in levels)
    return max(came_due, changed) + allowed // MS


def _remap(enrollment: Enrollment, config: SequenceConfig) -> Enrollment | None:
    """An edit applies to in-flight enrollments by step id; a removed step hands over to the
    step now at its position (the next remaining one), or ends the enrollment."""
    index = config.step_index(enrollment.step_id)
    if index is None:
        index = enrollment.step
        if index >= len(config.steps):
            return None
    return evolve(enrollment, version=config.version, step=index, step_id=config.steps[index].id)


AWAITED = "~awaited"
"""Marks in `Enrollment.seen` that the current step's awaited event came and its `when` held
(never an event type: those start with a letter)."""


def was_awaited(step: Step, enrollment: Enrollment) -> bool:
    """The awaited event came while the step could not jump (paused): it jumps when it fires."""
    wait_for = step.wait_for
    if wait_for is None:
        return False
    if wait_for.when is None and wait_for.event_type in enrollment.seen:
        return True
    return AWAITED in enrollment.seen


def condition_holds(step: Step, enrollment: Enrollment, state: Working, now: datetime) -> bool:
    condition = step.condition
    assert condition is not None  # noqa: S101 - caller checked
    seen = set(enrollment.seen)
    if seen.intersection(condition.none_of_events):
        return False
    if condition.any_of_events and not seen.intersection(condition.any_of_events):
        return False
    attributes = state.profile.attributes
    if condition.when is not None and not holds(condition.when, attributes, None, now):
        return False
    return all(attribute_holds(f, attributes.get(f.key)) for f in condition.attributes)


def rule_holds(rule: BranchRule, e: Enrollment, state: Working, now: datetime) -> bool:
    if rule.event_type is not None:
        return rule.event_type in e.seen
    if rule.when is not None:
        return holds(rule.when, state.profile.attributes, None, now)
    assert rule.attribute is not None  # noqa: S101 - the model guarantees one of the three
    return attribute_holds(rule.attribute, state.profile.attributes.get(rule.attribute.key))


def attribute_holds(flt: AttributeFilter, value: object) -> bool:
    if flt.one_of is not None:
        return value in flt.one_of
    if flt.min is not None or flt.max is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return (flt.min is None or value >= flt.min) and (flt.max is None or value <= flt.max)
    return value == flt.equals
