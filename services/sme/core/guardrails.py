"""Guardrails: may this user be sent a message now, on which channels, and if not, why and
until when. Both levels apply: the sequence's own guardrails and the workspace's, which count
every sequence's sends. Daily budgets are split across partitions into quotas whose sum is the
budget, so the total is never exceeded (a quota may go unused: safety over utilisation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sme.contracts.channels import Channel
from sme.contracts.reasons import Reason
from sme.contracts.sequences import FrequencyCap, Guardrails, QuietHours
from sme.core.timeutil import (
    from_ms,
    local_date,
    next_local_midnight,
    next_time_outside,
    next_utc_midnight,
    to_ms,
    utc_day,
)
from sme.core.user_state import Touch

Ledger = Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Level:
    """One level of guardrails and the sends it counts."""

    scope: str  # ledger scope: "c:<config id>" or "w:<workspace id>"
    rules: Guardrails
    touches: Sequence[Touch]  # real sends this level counts (not holdout suppressions)


@dataclass(frozen=True, slots=True)
class Verdict:
    channels: tuple[Channel, ...] = ()
    defer_until: datetime | None = None
    skip: bool = False
    reason: Reason | None = None
    dropped: dict[str, str] = field(default_factory=dict)  # channel -> reason

    @property
    def allowed(self) -> bool:
        return bool(self.channels) and self.defer_until is None and not self.skip


def quota(budget: float, partition: int, partitions: int, integral: bool) -> float:
    """This partition's share of a daily budget; the shares sum to the budget exactly."""
    if not integral:
        return budget / partitions
    whole = int(budget)
    return whole // partitions + (1 if partition < whole % partitions else 0)


def budget_key(scope: str, day: str, item: str) -> str:
    return f"{scope}|{day}|{item}"


def evaluate(
    candidates: Sequence[Channel],
    consent: Mapping[Channel, bool],
    levels: Sequence[Level],
    now: datetime,
    tz: str,
    ledger: Ledger,
    partition: int,
    partitions: int,
) -> Verdict:
    """Check every guardrail of every level for a message that could go on `candidates`."""
    dropped: dict[str, str] = {}
    channels = list(candidates)
    for level in levels:
        allowed = level.rules.allowed_channels
        if allowed is not None:
            channels = _drop(
                channels, lambda ch, a=allowed: ch not in a, Reason.CHANNEL_NOT_ALLOWED, dropped
            )
    channels = _drop(channels, lambda ch: consent.get(ch) is False, Reason.NO_CONSENT, dropped)
    if not channels:
        no_consent = Reason.NO_CONSENT.value in dropped.values()
        return Verdict(
            skip=True,
            reason=Reason.NO_CONSENT if no_consent else Reason.NO_ELIGIBLE_CHANNEL,
            dropped=dropped,
        )

    moment, timing_reason = _earliest_timing_ok(now, tz, levels)
    if moment > now:
        return Verdict(tuple(channels), defer_until=moment, reason=timing_reason, dropped=dropped)

    # Frequency caps: a channel-less cap blocks the message, a channel cap drops its channel.
    for level in levels:
        for cap in level.rules.frequency_caps:
            free_at = _cap_free_at(cap, level.touches, now, tz)
            if free_at is None:
                continue
            if cap.channel is None:
                return _limited(level.rules, free_at, Reason.FREQUENCY_CAP, channels, dropped)
            channels = _drop(
                channels, lambda ch, c=cap.channel: ch == c, Reason.FREQUENCY_CAP, dropped
            )
    if not channels:
        return _limited(
            levels[0].rules, next_utc_midnight(now), Reason.FREQUENCY_CAP, channels, dropped
        )

    # Daily budgets (UTC day), per partition quota.
    day = utc_day(now)
    budget_reason: Reason | None = None
    for level in levels:
        rules = level.rules
        for channel in list(channels):
            limit = rules.daily_send_budget.get(channel)
            if limit is not None:
                spent = ledger.get(budget_key(level.scope, day, channel.value), 0.0)
                if spent + 1 > quota(limit, partition, partitions, integral=True):
                    channels.remove(channel)
                    dropped[channel.value] = budget_reason = Reason.CHANNEL_BUDGET
                    continue
            if rules.daily_cost_budget is not None:
                cost = message_cost(levels, channel)
                spent = ledger.get(budget_key(level.scope, day, "cost"), 0.0)
                if (
                    spent + cost
                    > quota(rules.daily_cost_budget, partition, partitions, integral=False) + 1e-9
                ):
                    channels.remove(channel)
                    dropped[channel.value] = budget_reason = Reason.COST_BUDGET
    if not channels:
        return _limited(
            levels[0].rules,
            next_utc_midnight(now),
            budget_reason or Reason.CHANNEL_BUDGET,
            channels,
            dropped,
        )
    return Verdict(tuple(channels), dropped=dropped)


def spend(
    levels: Sequence[Level], channel: Channel, now: datetime
) -> tuple[tuple[str, float], ...]:
    """Ledger increments for one send on `channel`, for every level that budgets it."""
    day = utc_day(now)
    out: list[tuple[str, float]] = []
    for level in levels:
        rules = level.rules
        if channel in rules.daily_send_budget:
            out.append((budget_key(level.scope, day, channel.value), 1.0))
        if rules.daily_cost_budget is not None:
            out.append((budget_key(level.scope, day, "cost"), message_cost(levels, channel)))
    return tuple(out)


def message_cost(levels: Sequence[Level], channel: Channel) -> float:
    """Cost of one message: the sequence's price if set, else the workspace's. Every level's
    cost budget counts this one price, the same that is reported on the command activity."""
    for level in levels:
        if channel in level.rules.cost_per_message:
            return level.rules.cost_per_message[channel]
    return 0.0


def _drop(
    channels: list[Channel], test: object, reason: Reason, dropped: dict[str, str]
) -> list[Channel]:
    kept = []
    for channel in channels:
        if test(channel):  # type: ignore[operator]
            dropped.setdefault(channel.value, reason.value)
        else:
            kept.append(channel)
    return kept


def _limited(
    rules: Guardrails,
    free_at: datetime,
    reason: Reason,
    channels: list[Channel],
    dropped: dict[str, str],
) -> Verdict:
    if rules.on_limit == "skip":
        return Verdict(skip=True, reason=reason, dropped=dropped)
    return Verdict(tuple(channels), defer_until=free_at, reason=reason, dropped=dropped)


def _earliest_timing_ok(
    now: datetime, tz: str, levels: Sequence[Level]
) -> tuple[datetime, Reason | None]:
    """The first instant at or after `now` outside every quiet window and past every minimum
    gap. Iterates to a fixed point (a gap can end inside quiet hours and vice versa); each
    rule only moves time forward, so a few rounds suffice."""
    windows: list[QuietHours] = [lv.rules.quiet_hours for lv in levels if lv.rules.quiet_hours]
    gaps_free = [
        from_ms(max(t.at_ms for t in lv.touches)) + lv.rules.min_gap
        for lv in levels
        if lv.rules.min_gap is not None and lv.touches
    ]
    moment: datetime = max([now, *gaps_free])
    reason: Reason | None = Reason.MIN_GAP if moment > now else None
    for _ in range(2 * len(windows) + 2):
        moved = False
        for window in windows:
            later = next_time_outside(moment, tz, window.start, window.end)
            if later > moment:
                moment, reason, moved = later, Reason.QUIET_HOURS, True
        if not moved:
            break
    return moment, reason


def _cap_free_at(
    cap: FrequencyCap, touches: Sequence[Touch], now: datetime, tz: str
) -> datetime | None:
    """None if one more send fits the cap; else the earliest time it will."""
    relevant = [t for t in touches if cap.channel is None or t.channel == cap.channel]
    if cap.per is not None:
        start = to_ms(now - cap.per)
        in_window = sorted(t.at_ms for t in relevant if t.at_ms > start)
        if len(in_window) < cap.max:
            return None
        # The send that must age out for one more to fit.
        return from_ms(in_window[len(in_window) - cap.max]) + cap.per + timedelta(milliseconds=1)
    today = local_date(now, tz)
    count = sum(1 for t in relevant if local_date(from_ms(t.at_ms), tz) == today)
    return None if count < cap.max else next_local_midnight(now, tz)
