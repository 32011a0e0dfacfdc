"""Guardrails: may this user be sent a message now, on which channels, and if not, why and
until when. Both levels apply: the sequence's own guardrails and the workspace's, which count
every sequence's sends. Each level's `on_limit` decides for its own caps and budgets.

A deferral is to the earliest moment every rule of both levels allows on some channel: each
rule (quiet hours, minimum gap, each frequency cap, each budget) answers "the first instant at
or after t when I allow a send on this channel", and these are iterated to a fixed point per
channel. A channel no moment allows (a budget of zero, quiet hours covering the whole day) is
never waited for.

Caps and quiet hours can target a channel and a message category (`targeting`). A
transactional send meets no cap, quiet hours or minimum gap, and no cap or gap counts it; the
rest binds it as any send: allowed channels, consent, and the budgets, which are spending
ceilings (a transactional step at a budget follows its level's `on_limit`).

Daily budgets are split across partitions into quotas whose sum is the budget, so the total is
never exceeded. The remainder of an integral budget rotates with the UTC day, so over any
`partitions` consecutive days every partition gets its turn (a budget of 5 over 6 partitions
gives each partition one message on five days out of six).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

from sme.contracts.channels import Channel
from sme.contracts.reasons import Reason
from sme.contracts.sequences import FrequencyCap, Guardrails
from sme.core.targeting import MARKETING, SendKind, cap_counts, cap_limits, quiet_hours_for
from sme.core.timeutil import (
    from_ms,
    local_date,
    next_local_midnight,
    next_time_outside,
    to_ms,
    utc_day,
)
from sme.core.user_state import Touch

Ledger = Mapping[str, float]
MAX_ROUNDS = 64
"""Rounds of the fixed point; rules that never agree (quiet hours covering the day) give up."""
BUDGET_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Level:
    """One level of guardrails and the sends it counts."""

    scope: str  # ledger scope: "c:<config id>" or "w:<workspace id>"
    rules: Guardrails
    touches: Sequence[Touch]  # real, non-transactional sends (not holdout suppressions)


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


def quota(
    budget: float, partition: int, partitions: int, integral: bool, day: date | None = None
) -> float:
    """This partition's share of a daily budget on `day`; the shares sum to the budget exactly.
    An integral budget's remainder goes to `budget % partitions` partitions that rotate with
    the day, so every partition has a non-zero quota on some day of any `partitions` days."""
    if not integral:
        return budget / partitions
    whole = int(budget)
    turn = day.toordinal() if day is not None else 0
    return whole // partitions + (1 if (partition - turn) % partitions < whole % partitions else 0)


def budget_key(scope: str, day: str, item: str) -> str:
    return f"{scope}|{day}|{item}"


NextOk = Callable[[datetime], datetime | None]
"""The first instant at or after t that a rule allows (None: no instant ever)."""


class _Rule(NamedTuple):
    next_ok: NextOk
    reason: Reason
    skips: bool  # a cap or budget of a level with on_limit "skip": never waited for


def evaluate(
    candidates: Sequence[Channel],
    consent: Mapping[Channel, bool],
    levels: Sequence[Level],
    now: datetime,
    tz: str,
    ledger: Ledger,
    partition: int,
    partitions: int,
    kind: SendKind = MARKETING,
) -> Verdict:
    """Check every guardrail of every level for a message of `kind` that could go on
    `candidates`."""
    dropped: dict[str, str] = {}
    channels = list(candidates)
    for level in levels:
        allowed = level.rules.allowed_channels
        if allowed is not None:
            channels = _drop(
                channels, lambda ch, a=allowed: ch not in a, Reason.CHANNEL_NOT_ALLOWED, dropped
            )
    if consent and any(consent.get(ch) is False for ch in channels):
        channels = _drop(channels, lambda ch: consent.get(ch) is False, Reason.NO_CONSENT, dropped)
    if not channels:
        no_consent = Reason.NO_CONSENT.value in dropped.values()
        return Verdict(
            skip=True,
            reason=Reason.NO_CONSENT if no_consent else Reason.NO_ELIGIBLE_CHANNEL,
            dropped=dropped,
        )

    if _all_allow_now(channels, levels, now, tz, ledger, partition, partitions, kind):
        return Verdict(tuple(channels), dropped=dropped)  # the common case, without the search
    sendable: list[Channel] = []
    waits: list[tuple[datetime, Channel, Reason | None]] = []
    skipped: list[tuple[Channel, Reason]] = []
    by_channel = _rules(channels, levels, tz, ledger, partition, partitions, kind)
    for channel in channels:
        rules = by_channel[channel]
        moment, reason = earliest(rules, now)
        if moment == now:
            sendable.append(channel)
            continue
        patient, _ = earliest([r for r in rules if not r.skips], now)
        if moment is None or (patient is not None and moment > patient):
            why = _skip_reason(rules, patient) if patient is not None else reason
            skipped.append((channel, why or Reason.NO_ELIGIBLE_CHANNEL))
        else:
            waits.append((moment, channel, reason))
        dropped.setdefault(channel.value, _blocker(rules, now).value)
    if sendable:
        return Verdict(tuple(sendable), dropped=dropped)
    if waits:
        until, _, reason = min(waits, key=lambda w: w[0])
        return Verdict(
            tuple(ch for _, ch, _ in waits), defer_until=until, reason=reason, dropped=dropped
        )
    return Verdict(skip=True, reason=skipped[0][1], dropped=dropped)


def _all_allow_now(
    channels: Sequence[Channel],
    levels: Sequence[Level],
    now: datetime,
    tz: str,
    ledger: Ledger,
    partition: int,
    partitions: int,
    kind: SendKind,
) -> bool:
    """Whether every rule `_rules` would list for every channel allows `now` itself (each
    rule's `next_ok(now) == now`): then every channel is sendable and the earliest-moment
    search has nothing to find. Checked directly, without building the rules; any rule that
    does not allow `now` sends the caller to the full search, which decides as before."""
    today: date | None = None
    for level in levels:
        rules = level.rules
        touches = level.touches
        timing_ok = kind.transactional or _timing_allows_now(
            rules, channels, touches, now, tz, kind
        )
        if not timing_ok:
            return False
        for cap in rules.frequency_caps:
            if not cap_limits(cap, kind):
                continue
            if cap.channel is None:
                if _cap_full(cap, touches, tz, now, None):
                    return False
            elif cap.channel in channels and _cap_full(cap, touches, tz, now, cap.channel):
                return False
        send_budget = rules.daily_send_budget
        cost_budget = rules.daily_cost_budget
        if not send_budget and cost_budget is None:
            continue
        if today is None:
            today = (now if now.tzinfo is UTC else now.astimezone(UTC)).date()
        day = today.isoformat()
        if send_budget:
            for channel in channels:
                limit = send_budget.get(channel)
                if limit is not None:
                    spent = ledger.get(budget_key(level.scope, day, channel.value), 0.0)
                    share = quota(limit, partition, partitions, True, today)
                    if not spent + 1.0 <= share + BUDGET_EPSILON:
                        return False
        if cost_budget is not None:
            cost_spent = ledger.get(budget_key(level.scope, day, "cost"), 0.0)
            room = quota(cost_budget, partition, partitions, False, today) + BUDGET_EPSILON
            for channel in channels:
                if not cost_spent + message_cost(levels, channel) <= room:
                    return False
    return True


def _timing_allows_now(
    rules: Guardrails,
    channels: Sequence[Channel],
    touches: Sequence[Touch],
    now: datetime,
    tz: str,
    kind: SendKind,
) -> bool:
    """Quiet hours (each channel's own, with overrides) and the minimum gap allow `now`."""
    if rules.quiet_hours_overrides:
        windows = {quiet_hours_for(rules, channel, kind) for channel in channels}
    else:
        windows = {rules.quiet_hours}
    for quiet in windows:
        if quiet is not None and next_time_outside(now, tz, quiet.start, quiet.end) != now:
            return False
    gap = rules.min_gap
    return not (gap is not None and touches and from_ms(max(t.at_ms for t in touches)) + gap > now)


def _cap_full(
    cap: FrequencyCap, touches: Sequence[Touch], tz: str, now: datetime, channel: Channel | None
) -> bool:
    """Whether `cap` (on `channel`, or on every channel) holds back a send at `now`: the
    same count as `_cap`'s rule at `now`."""
    per = cap.per
    if per is not None:
        start = to_ms(now - per)
        count = sum(1 for t in touches if t.at_ms > start and cap_counts(cap, t, channel))
        return count >= cap.max
    today = local_date(now, tz)
    count = sum(
        1
        for t in touches
        if cap_counts(cap, t, channel) and local_date(from_ms(t.at_ms), tz) == today
    )
    return count >= cap.max


def earliest(rules: Sequence[_Rule], now: datetime) -> tuple[datetime | None, Reason | None]:
    """The first instant at or after `now` every rule allows, and the rule that set it last
    (None if no instant does). Each rule only moves time forward, to its own next allowed
    instant, so no instant every rule allows is ever passed over."""
    moment = now
    reason: Reason | None = None
    for _ in range(MAX_ROUNDS):
        moved = False
        for rule in rules:
            later = rule.next_ok(moment)
            if later is None:
                return None, rule.reason
            if later > moment:
                moment, reason, moved = later, rule.reason, True
        if not moved:
            return moment, reason
    return None, reason


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


def _rules(
    channels: Sequence[Channel],
    levels: Sequence[Level],
    tz: str,
    ledger: Ledger,
    partition: int,
    partitions: int,
    kind: SendKind = MARKETING,
) -> dict[Channel, list[_Rule]]:
    """Every rule of every level that applies to a message of `kind` on each channel: timing
    first (quiet hours, gaps), then caps, then budgets. Rules that apply to every channel (and
    quiet hours shared by channels) are built once and remember their answers, so several
    channels cost little more than one."""
    timing: list[_Rule] = []
    shared: list[_Rule] = []
    quiet_rules: dict[tuple[time, time], _Rule] = {}
    quiet_by_channel: dict[Channel, list[_Rule]] = {channel: [] for channel in channels}
    for level in levels:
        rules = level.rules
        skips = rules.on_limit == "skip"
        if kind.transactional:
            continue  # no quiet hours, gap or cap for it: budgets only, below
        for channel in channels:
            quiet = quiet_hours_for(rules, channel, kind)
            if quiet is not None:
                window = (quiet.start, quiet.end)
                if window not in quiet_rules:
                    rule = _outside(tz, quiet.start, quiet.end)
                    quiet_rules[window] = _Rule(_memo(rule), Reason.QUIET_HOURS, skips=False)
                quiet_by_channel[channel].append(quiet_rules[window])
        if rules.min_gap is not None and level.touches:
            free = from_ms(max(t.at_ms for t in level.touches)) + rules.min_gap
            timing.append(_Rule(_not_before(free), Reason.MIN_GAP, skips=False))
        for cap in rules.frequency_caps:
            if cap.channel is None and cap_limits(cap, kind):
                rule = _cap(cap, level.touches, tz)
                shared.append(_Rule(_memo(rule), Reason.FREQUENCY_CAP, skips))
    # A level's cost spend is the same whatever the channel: read once per day asked about.
    cost_spent = [
        _spent(ledger, level.scope, "cost") if level.rules.daily_cost_budget is not None else None
        for level in levels
    ]
    out: dict[Channel, list[_Rule]] = {}
    for channel in channels:
        limits = quiet_by_channel[channel] + timing + shared
        for level, level_cost in zip(levels, cost_spent, strict=True):
            rules = level.rules
            skips = rules.on_limit == "skip"
            for cap in rules.frequency_caps:
                if cap.channel == channel and cap_limits(cap, kind):
                    rule = _cap(cap, level.touches, tz)
                    limits.append(_Rule(rule, Reason.FREQUENCY_CAP, skips))
            limit = rules.daily_send_budget.get(channel)
            if limit is not None:
                spent = _spent(ledger, level.scope, channel.value)
                room = _budget(limit, True, 1.0, spent, partition, partitions)
                limits.append(_Rule(room, Reason.CHANNEL_BUDGET, skips))
            if rules.daily_cost_budget is not None and level_cost is not None:
                cost = message_cost(levels, channel)
                room = _budget(
                    rules.daily_cost_budget, False, cost, level_cost, partition, partitions
                )
                limits.append(_Rule(room, Reason.COST_BUDGET, skips))
        out[channel] = limits
    return out


def _memo(next_ok: NextOk) -> NextOk:
    answers: dict[datetime, datetime | None] = {}

    def remembered(t: datetime) -> datetime | None:
        if t not in answers:
            answers[t] = next_ok(t)
        return answers[t]

    return remembered


def _skip_reason(rules: Sequence[_Rule], moment: datetime) -> Reason | None:
    """The skip-level limit that blocks at `moment` (the earliest instant the others allow)."""
    return next((r.reason for r in rules if r.skips and r.next_ok(moment) != moment), None)


def _blocker(rules: Sequence[_Rule], now: datetime) -> Reason:
    return next((r.reason for r in rules if r.next_ok(now) != now), Reason.NO_ELIGIBLE_CHANNEL)


def _outside(tz: str, start: time, end: time) -> NextOk:
    return lambda t: next_time_outside(t, tz, start, end)


def _not_before(free: datetime) -> NextOk:
    return lambda t: max(t, free)


def _spent(ledger: Ledger, scope: str, item: str) -> Callable[[date], float]:
    """What the ledger says was spent on a day (read once per day: the ledger does not change
    during one evaluation)."""
    known: dict[date, float] = {}

    def spent(day: date) -> float:
        amount = known.get(day)
        if amount is None:
            amount = known[day] = ledger.get(budget_key(scope, day.isoformat(), item), 0.0)
        return amount

    return spent


def _budget(
    budget: float,
    integral: bool,
    need: float,
    spent: Callable[[date], float],
    partition: int,
    partitions: int,
) -> NextOk:
    """Room for `need` more in this partition's quota: today, or from the next UTC midnight
    whose quota has it. Quotas repeat every `partitions` days, so that far is enough."""

    def next_ok(t: datetime) -> datetime | None:
        today = (t if t.tzinfo is UTC else t.astimezone(UTC)).date()
        if spent(today) + need <= quota(budget, partition, partitions, integral, today) + (
            BUDGET_EPSILON
        ):
            return t  # room today: the common case
        for ahead in range(1, partitions + 1):
            day = today + timedelta(days=ahead)
            share = quota(budget, partition, partitions, integral, day)
            if spent(day) + need <= share + BUDGET_EPSILON:
                return datetime.combine(day, time.min, tzinfo=UTC)
        return None

    return next_ok


def _cap(cap: FrequencyCap, touches: Sequence[Touch], tz: str) -> NextOk:
    """A cap counts sends already made (all at or before now), so once free it stays free."""
    relevant = sorted(t.at_ms for t in touches if cap_counts(cap, t, cap.channel))
    per = cap.per

    if per is not None:

        def rolling(t: datetime) -> datetime | None:
            start = to_ms(t - per)
            in_window = [ms for ms in relevant if ms > start]
            if len(in_window) < cap.max:
                return t
            # The send that must age out for one more to fit.
            return from_ms(in_window[len(in_window) - cap.max]) + per

        return rolling

    def calendar_day(t: datetime) -> datetime | None:
        today = local_date(t, tz)
        count = sum(1 for ms in relevant if local_date(from_ms(ms), tz) == today)
        return t if count < cap.max else next_local_midnight(t, tz)

    return calendar_day
