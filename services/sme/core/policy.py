"""Adaptive choices: Thompson sampling over channels and content variants, and send-time
optimisation.

Context groups borrow from the pooled statistics through an empirical-Bayes Beta prior per arm
whose strength is fitted to how much the groups' rates really differ (method of moments): where
groups agree a thin group follows the pool, where they differ each group soon follows its own
counts. Exploration beyond Thompson sampling decays with the evidence. A choice maximises the
configured objective per message (success rate, its value, or value minus the message's cost
and the expected cost of the unsubscribes it causes). The user's own channel affinity is mixed
in by its weight."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.sequences import Adaptive, QuietHours, SendTime
from sme.core.splits import fixed_variant
from sme.core.stats import (
    POOLED,
    StatsView,
    channel_key,
    conversion_key,
    group_keys,
    history_key,
    repeat_key,
    send_hour_key,
    unsubscribe_key,
    variant_key,
)
from sme.core.timeutil import in_window, local_hour, next_local_hour_start

MIN_REPEAT_EVIDENCE = 200.0
"""Earlier messages (summed) a channel's repeat statistics need before the spread between
users is taken from them; until then users count as alike (`user_prior_strength`)."""
UNSUBSCRIBE_PRIOR = (0.5, 0.5)
"""Jeffreys prior of a channel's unsubscribe rate, once it has any messages counted."""
HOUR_PRIOR_STRENGTH = 20.0
"""Pseudo-observations of the group's all-hours success rate in each send hour's rate, so an
hour nobody was sent at is taken as average, neither best nor worst."""
_ZERO = (0.0, 0.0)


class _FitCache:
    """Fitted priors of the statistics object last seen, by arm and its pooled counts. Every
    delta updates an arm's pooled counts along with its group's, so unchanged pooled counts
    mean unchanged groups: a hit is exactly what a refit would give. Holding the object keeps
    its identity from being reused by another; a different object starts afresh."""

    __slots__ = ("entries", "owner")

    def __init__(self) -> None:
        self.owner: object = None
        self.entries: dict[tuple[str, float, float, float, float], float] = {}


_fits = _FitCache()
_FIT_CACHE_SIZE = 50_000


@dataclass(frozen=True, slots=True)
class Choice:
    value: str
    policy: str  # "fixed", "thompson" or "explore"
    scores: dict[str, float] = field(default_factory=dict)


def pooling_strength(
    stats: StatsView,
    pooled_key: str,
    adaptive: Adaptive,
    arm_prior: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """(prior mean, prior strength) of one arm's context groups: the arm's pooled posterior
    mean (on `arm_prior`, else the configured prior), and as many pseudo-observations as the
    between-group variance of the rates implies (`fitted_strength`)."""
    trials_p, succ_p = stats.get(pooled_key, _ZERO)
    a0, b0 = arm_prior or (adaptive.prior_alpha, adaptive.prior_beta)
    lo, hi = adaptive.pooling_min_strength, adaptive.pooling_max_strength
    if _fits.owner is not stats:
        _fits.owner = stats
        _fits.entries.clear()
    elif len(_fits.entries) > _FIT_CACHE_SIZE:
        _fits.entries.clear()
    ident = (pooled_key, trials_p, succ_p, lo, hi)
    strength = _fits.entries.get(ident)
    if strength is None:
        groups = [c for k in group_keys(pooled_key) if (c := stats.get(k)) is not None]
        strength = _fits.entries[ident] = fitted_strength(groups, lo, hi)
    return (a0 + succ_p) / (a0 + b0 + trials_p), strength


def fitted_strength(counts: Sequence[tuple[float, float]], lo: float, hi: float) -> float:
    """Method of moments for a Beta prior shared by several (trials, successes): a prior with
    variance tau^2 around the mean m has m(1-m)/tau^2 - 1 pseudo-observations, where tau^2 is
    the variance of the rates beyond what sampling noise explains. Bounded by [lo, hi]; no
    spread beyond noise (or fewer than two with data) means `hi`, the strongest pooling."""
    counts = [c for c in counts if c[0] > 0]
    if len(counts) < 2:
        return hi
    n = sum(t for t, _ in counts)
    m = sum(s for _, s in counts) / n
    spread = m * (1 - m)
    if spread <= 0:
        return hi
    q = sum((s / t - m) ** 2 * t for t, s in counts)
    denominator = n - sum(t * t for t, _ in counts) / n
    tau2 = (q - (len(counts) - 1) * spread) / denominator if denominator > 0 else 0.0
    if tau2 <= 0:
        return hi
    return min(max(spread / tau2 - 1, lo), hi)


def arm_prior(
    stats: StatsView, pooled_keys: Sequence[str], adaptive: Adaptive
) -> tuple[float, float]:
    """Beta prior of each arm of one choice (empirical_bayes): centred on the rate of all its
    arms together, as strong as the spread between the arms implies. A rare success (a click
    rate of 1%) is then not started at Beta(1, 1)'s 50%, which would cost every new arm
    hundreds of trials before its estimate means anything. Fixed pooling: the configured
    prior."""
    a0, b0 = adaptive.prior_alpha, adaptive.prior_beta
    if adaptive.pooling == "fixed":
        return a0, b0
    counts = [stats.get(k, _ZERO) for k in pooled_keys]
    trials = sum(t for t, _ in counts)
    if trials <= 0:
        return a0, b0
    mean = (a0 + sum(s for _, s in counts)) / (a0 + b0 + trials)
    k = fitted_strength(counts, adaptive.pooling_min_strength, adaptive.pooling_max_strength)
    k = max(k, a0 + b0)
    return k * mean, k * (1 - mean)


def posterior(
    stats: StatsView,
    group_key: str,
    pooled_key: str,
    adaptive: Adaptive,
    prior: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Beta(a, b) for one arm of a bandit in one context group: the group's counts on a prior
    centred on the arm's pooled rate, whose strength is fitted (empirical_bayes) or fixed.
    `prior` is the arm's own prior (`arm_prior`), else the configured one."""
    prior_a, prior_b = prior or (adaptive.prior_alpha, adaptive.prior_beta)
    if group_key == pooled_key:
        trials_p, succ_p = stats.get(pooled_key, _ZERO)
        return prior_a + succ_p, prior_b + max(trials_p - succ_p, 0.0)
    trials_g, succ_g = stats.get(group_key, _ZERO)
    if adaptive.pooling == "fixed":
        trials_p, succ_p = stats.get(pooled_key, _ZERO)
        pooled_rate = (prior_a + succ_p) / (prior_a + prior_b + trials_p)
        k = float(adaptive.group_backoff_observations)
        return (
            prior_a + succ_g + k * pooled_rate,
            prior_b + max(trials_g - succ_g, 0.0) + k * (1 - pooled_rate),
        )
    pooled_rate, k = pooling_strength(stats, pooled_key, adaptive, prior)
    return (
        succ_g + k * pooled_rate,
        max(trials_g - succ_g, 0.0) + k * (1 - pooled_rate),
    )


def exploration_rate(adaptive: Adaptive, trials: float) -> float:
    """The chance of a uniformly random arm: fixed, none, or a floor that decays as
    1/sqrt(trials) of the choice so that exploration stops costing once the arms are known."""
    if adaptive.exploration == "none":
        return 0.0
    if adaptive.exploration == "fixed":
        return adaptive.min_exploration
    return min(adaptive.min_exploration, 1.0 / math.sqrt(1.0 + trials))


def _value(adaptive: Adaptive, theta: float) -> float:
    return theta if adaptive.objective == "conversions" else adaptive.conversion_value * theta


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
    costs: Mapping[Channel, float] | None = None,
) -> Choice:
    """The channel with the best sampled objective. Conversions: the success rate (a click or
    a conversion) with the user's own affinity. Revenue and net_value pay `conversion_value`
    per conversion: the success rate times the share of the channel's successes that convert
    (`conversions_per_success`), so a click earns only what clicks on that channel convert
    into; under net_value `costs` (price per message, from the guardrails' cost_per_message)
    and the sampled unsubscribe rate times `unsubscribe_cost` are subtracted."""
    if arm is not Arm.ADAPTIVE or adaptive.channel_policy == "fixed" or len(eligible) == 1:
        return Choice(eligible[0].value, "fixed")
    keys = [
        (
            ch,
            channel_key(config_id, step_id, ch.value, group),
            channel_key(config_id, step_id, ch.value, POOLED),
        )
        for ch in eligible
    ]
    trials = sum(stats.get(pooled, _ZERO)[0] for _, _, pooled in keys)
    if rng.random() < exploration_rate(adaptive, trials):
        return Choice(rng.choice(list(eligible)).value, "explore")
    net = adaptive.objective == "net_value"
    prior = arm_prior(stats, [pooled for _, _, pooled in keys], adaptive)
    converting = (
        None
        if adaptive.objective == "conversions"
        else conversions_per_success(
            stats, config_id, step_id, [ch.value for ch in eligible], adaptive
        )
    )
    scores: dict[str, float] = {}
    for channel, key, pooled in keys:
        a, b = posterior(stats, key, pooled, adaptive, prior)
        theta = rng.betavariate(a, b)
        sent, engaged = affinity.get(channel, (0, 0))
        if sent and adaptive.user_affinity_weight:
            k = user_prior_strength(stats, config_id, channel.value, adaptive)
            k /= adaptive.user_affinity_weight
            theta = (k * theta + engaged) / (k + sent)
        if converting is not None:
            theta *= rng.betavariate(*converting[channel.value])
        score = _value(adaptive, theta)
        if net:
            score -= (costs or {}).get(channel, 0.0)
            score -= adaptive.unsubscribe_cost * _unsubscribe_draw(
                stats, config_id, step_id, channel.value, adaptive, rng
            )
        scores[channel.value] = round(score, 6)
    best = max(eligible, key=lambda ch: scores[ch.value])
    return Choice(best.value, "thompson", scores)


def conversions_per_success(
    stats: StatsView,
    config_id: str,
    step_id: str,
    channels: Sequence[str],
    adaptive: Adaptive,
) -> dict[str, tuple[float, float]]:
    """Beta posterior, per channel, of the share of its successes (clicks and conversions)
    that are conversions, on a prior centred on that share over all the step's channels and
    as strong as the spread between channels implies (`fitted_strength`).

    Why not the conversions per message directly: conversions are several times rarer than
    successes, so a channel tried a few hundred times has a conversion rate too uncertain to
    rule out, and Thompson sampling keeps paying for a dear channel it cannot yet dismiss.
    Successes per message are learned several times faster, per context group; what share of
    them convert varies less between channels and is learned from the step's pooled counts."""
    counts = []
    for ch in channels:
        _, successes = stats.get(channel_key(config_id, step_id, ch, POOLED), _ZERO)
        _, conversions = stats.get(conversion_key(config_id, step_id, ch, POOLED), _ZERO)
        counts.append((successes, min(conversions, successes)))
    mean = (1.0 + sum(c for _, c in counts)) / (2.0 + sum(t for t, _ in counts))
    k = max(
        fitted_strength(counts, adaptive.pooling_min_strength, adaptive.pooling_max_strength),
        2.0,
    )
    return {
        ch: (k * mean + c, k * (1 - mean) + max(t - c, 0.0))
        for ch, (t, c) in zip(channels, counts, strict=True)
    }


def user_prior_strength(
    stats: StatsView, config_id: str, channel: str, adaptive: Adaptive
) -> float:
    """Pseudo-observations of the population's success rate in one user's posterior on a
    channel: how much a user's own messages and successes move their rate away from their
    group's. Method of moments on the population's repeat statistics (`stats.repeat_deltas`):
    E[p] and E[p^2] of users' rates give their variance beyond the binomial noise, and a Beta
    prior with that variance holds m(1-m)/var - 1 pseudo-observations. Where users are alike
    (no variance, or too little evidence yet) the strongest pooling applies, so a few
    unanswered messages, the common case at a click rate of a few percent, do not turn a user
    away from the channel that suits their group."""
    hi = adaptive.pooling_max_strength
    earlier, repeats = stats.get(repeat_key(config_id, channel), _ZERO)
    _, history = stats.get(history_key(config_id, channel), _ZERO)
    if earlier < MIN_REPEAT_EVIDENCE or history <= 0:
        return hi
    mean = history / earlier
    variance = repeats / earlier - mean * mean
    if variance <= 0 or mean >= 1:
        return hi
    return min(max(mean * (1 - mean) / variance - 1, adaptive.pooling_min_strength), hi)


def _unsubscribe_draw(
    stats: StatsView,
    config_id: str,
    step_id: str,
    channel: str,
    adaptive: Adaptive,
    rng: random.Random,
) -> float:
    """A sampled unsubscribe rate per message of the channel at this step (pooled: unsubscribes
    are too rare to split by group); 0 where none are counted or they cost nothing."""
    if not adaptive.unsubscribe_cost:
        return 0.0
    messages, unsubscribes = stats.get(unsubscribe_key(config_id, step_id, channel, POOLED), _ZERO)
    if messages <= 0:
        return 0.0
    a, b = UNSUBSCRIBE_PRIOR
    return rng.betavariate(a + unsubscribes, b + max(messages - unsubscribes, 0.0))


def choose_variant(
    variants: Sequence[str],
    arm: Arm,
    adaptive: Adaptive,
    stats: StatsView,
    config_id: str,
    step_id: str,
    group: str,
    rng: random.Random,
    *,
    user_id: str = "",
    weights: Sequence[float] | None = None,
) -> Choice:
    """The variant with the best sampled success rate (a variant's cost and unsubscribes are
    its channel's, so every objective ranks variants by their rate). Under fixed_weights the
    user's sticky draw with the step's weights (equal if none), in every arm alike, so an A/B
    test is not confounded by arm."""
    if adaptive.variant_policy == "fixed_weights":
        chosen = fixed_variant(weights or [1.0] * len(variants), config_id, step_id, user_id)
        return Choice(variants[chosen], "fixed_weights")
    if arm is not Arm.ADAPTIVE or adaptive.variant_policy == "fixed" or len(variants) == 1:
        return Choice(variants[0], "fixed")
    keys = [
        (v, variant_key(config_id, step_id, v, group), variant_key(config_id, step_id, v, POOLED))
        for v in variants
    ]
    trials = sum(stats.get(pooled, _ZERO)[0] for _, _, pooled in keys)
    if rng.random() < exploration_rate(adaptive, trials):
        return Choice(rng.choice(list(variants)), "explore")
    prior = arm_prior(stats, [pooled for _, _, pooled in keys], adaptive)
    scores = {
        v: round(
            _value(adaptive, rng.betavariate(*posterior(stats, key, pooled, adaptive, prior))), 6
        )
        for v, key, pooled in keys
    }
    return Choice(max(variants, key=lambda v: scores[v]), "thompson", scores)


def population_hours(stats: StatsView, config_id: str, group: str) -> dict[int, float]:
    """The context group's expected success rate per message by the user's local send hour:
    each hour's counts shrunk towards the pooled rate of that hour, itself shrunk towards the
    pooled all-hours rate (HOUR_PRIOR_STRENGTH pseudo-observations at each level), so an hour
    nobody was sent at counts as average. Empty when nothing is counted: the population
    evidence `best_send_time` starts from."""
    pooled = [stats.get(send_hour_key(config_id, h, POOLED), _ZERO) for h in range(24)]
    trials = sum(t for t, _ in pooled)
    if trials <= 0:
        return {}
    overall = sum(s for _, s in pooled) / trials
    k = HOUR_PRIOR_STRENGTH
    rates = {}
    for h, (t_p, s_p) in enumerate(pooled):
        rate = (s_p + k * overall) / (t_p + k)
        if group != POOLED:
            t_g, s_g = stats.get(send_hour_key(config_id, h, group), _ZERO)
            rate = (s_g + k * rate) / (t_g + k)
        rates[h] = rate
    return rates


def best_send_time(
    now: datetime,
    tz: str,
    hours: Mapping[int, int],
    send_time: SendTime,
    quiet: Sequence[QuietHours],
    population: Mapping[int, float] | None = None,
) -> datetime | None:
    """The start of the most responsive local hour inside the allowed window and outside quiet
    hours, within the next day; None means "now is as good" (or too little data).

    Responsiveness is the user's share of engagements by hour, a Dirichlet posterior whose
    prior is the population's response by send hour (`population_hours`) with
    `population_weight` pseudo-observations: the population decides for a new user, the user's
    own engagements take over as they accumulate. Without population evidence, the user's own
    counts decide once there are `min_observations` of them."""
    if not send_time.enabled:
        return None
    own = sum(hours.values())
    use_population = bool(population) and send_time.population_weight > 0
    if not use_population and own < send_time.min_observations:
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
    if use_population and population is not None:
        rate_sum = sum(population.get(h, 0.0) for h in allowed) or 1.0
        w = send_time.population_weight
        user_weight = own >= send_time.min_observations
        scores = {
            h: w * population.get(h, 0.0) / rate_sum + (hours.get(h, 0) if user_weight else 0)
            for h in range(24)
        }
    else:
        scores = {h: float(hours.get(h, 0)) for h in range(24)}
    best = max(allowed, key=lambda h: (scores[h], -((h - current) % 24)))
    if best == current or (scores[best] <= scores[current] and current in allowed):
        return None
    return next_local_hour_start(now, tz, best)
