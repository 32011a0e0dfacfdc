"""Adaptive choices: Thompson sampling over channels and content variants, and send-time
optimisation. Population posteriors per context group back off to the pooled statistics
(empirical-Bayes shrinkage); the user's own channel affinity is mixed in by its weight."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.sequences import Adaptive, QuietHours, SendTime
from sme.core.stats import POOLED, StatsView, channel_key, variant_key
from sme.core.timeutil import in_window, local_hour, next_local_hour_start

USER_PRIOR_STRENGTH = 2.0
"""Pseudo-observations of the population mean in each user's own channel posterior."""


@dataclass(frozen=True, slots=True)
class Choice:
    value: str
    policy: str  # "fixed", "thompson" or "explore"
    scores: dict[str, float] = field(default_factory=dict)


def posterior(
    stats: StatsView, group_key: str, pooled_key: str, adaptive: Adaptive
) -> tuple[float, float]:
    """Beta(a, b) for one arm of a bandit: the group's counts plus `k` pseudo-observations at
    the pooled rate, so a thin group starts at the pooled estimate and moves as data arrives."""
    prior_a, prior_b = adaptive.prior_alpha, adaptive.prior_beta
    trials_p, succ_p = stats.get(pooled_key, (0.0, 0.0))
    if group_key == pooled_key:
        return prior_a + succ_p, prior_b + max(trials_p - succ_p, 0.0)
    trials_g, succ_g = stats.get(group_key, (0.0, 0.0))
    pooled_rate = (prior_a + succ_p) / (prior_a + prior_b + trials_p)
    k = adaptive.group_backoff_observations
    return (
        prior_a + succ_g + k * pooled_rate,
        prior_b + max(trials_g - succ_g, 0.0) + k * (1 - pooled_rate),
    )


def choose_channel(
    eligible: Sequence[Channel],
    arm: Arm,
    adaptive: Adaptive,
    stats: StatsView,
    affinity: Mapping[Channel, tuple[int, int]],
    config_id: str,
    step_id: str,
    group: str,
    rng: random.Random,
) -> Choice:
    if arm is not Arm.ADAPTIVE or adaptive.channel_policy == "fixed" or len(eligible) == 1:
        return Choice(eligible[0].value, "fixed")
    if rng.random() < adaptive.min_exploration:
        return Choice(rng.choice(list(eligible)).value, "explore")
    scores: dict[str, float] = {}
    for channel in eligible:
        a, b = posterior(
            stats,
            channel_key(config_id, step_id, channel.value, group),
            channel_key(config_id, step_id, channel.value, POOLED),
            adaptive,
        )
        theta = rng.betavariate(a, b)
        sent, engaged = affinity.get(channel, (0, 0))
        if sent and adaptive.user_affinity_weight:
            mean = a / (a + b)
            own = rng.betavariate(
                mean * USER_PRIOR_STRENGTH + engaged,
                (1 - mean) * USER_PRIOR_STRENGTH + max(sent - engaged, 0),
            )
            weight = adaptive.user_affinity_weight * sent / (sent + USER_PRIOR_STRENGTH)
            theta = (1 - weight) * theta + weight * own
        scores[channel.value] = round(theta, 4)
    best = max(eligible, key=lambda ch: scores[ch.value])
    return Choice(best.value, "thompson", scores)


def choose_variant(
    variants: Sequence[str],
    arm: Arm,
    adaptive: Adaptive,
    stats: StatsView,
    config_id: str,
    step_id: str,
    group: str,
    rng: random.Random,
) -> Choice:
    if arm is not Arm.ADAPTIVE or adaptive.variant_policy == "fixed" or len(variants) == 1:
        return Choice(variants[0], "fixed")
    if rng.random() < adaptive.min_exploration:
        return Choice(rng.choice(list(variants)), "explore")
    scores = {
        v: round(
            rng.betavariate(
                *posterior(
                    stats,
                    variant_key(config_id, step_id, v, group),
                    variant_key(config_id, step_id, v, POOLED),
                    adaptive,
                )
            ),
            4,
        )
        for v in variants
    }
    return Choice(max(variants, key=lambda v: scores[v]), "thompson", scores)


def best_send_time(
    now: datetime,
    tz: str,
    hours: Mapping[int, int],
    send_time: SendTime,
    quiet: Sequence[QuietHours],
) -> datetime | None:
    """The start of the user's most responsive local hour inside the allowed window and
    outside quiet hours, within the next day; None means "now is as good" (or too little data)."""
    if not send_time.enabled or sum(hours.values()) < send_time.min_observations:
        return None
    allowed = [
        h
        for h in range(24)
        if in_window(time(h), send_time.window_start, send_time.window_end)
        and not any(in_window(time(h), q.start, q.end) for q in quiet)
    ]
    if not allowed:
        return None
    current = local_hour(now, tz)
    best = max(allowed, key=lambda h: (hours.get(h, 0), -((h - current) % 24)))
    if best == current or (hours.get(best, 0) <= hours.get(current, 0) and current in allowed):
        return None
    return next_local_hour_start(now, tz, best)
