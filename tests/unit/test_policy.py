"""Adaptive choices: the fixed posterior back-off of context groups (pooling: fixed), Thompson
sampling with a fixed exploration floor, the fixed/baseline policies, the user's own affinity,
and send-time optimisation inside the allowed window and outside quiet hours."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, time

import pytest

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.sequences import Adaptive, QuietHours, SendTime
from sme.core.policy import (
    best_send_time,
    choose_channel,
    choose_variant,
    posterior,
    user_prior_strength,
)
from sme.core.stats import POOLED, channel_key, history_key, repeat_key, variant_key

EMAIL, SMS, PUSH = Channel.EMAIL, Channel.SMS, Channel.PUSH
CFG, STEP = "cfg-1", "s1"
GROUP = "plan=pro"


def mean(ab: tuple[float, float]) -> float:
    a, b = ab
    return a / (a + b)


def ckey(channel: Channel, group: str = POOLED) -> str:
    return channel_key(CFG, STEP, channel.value, group)


def picks(
    n: int,
    eligible: list[Channel],
    stats: dict[str, tuple[float, float]],
    adaptive: Adaptive,
    *,
    arm: Arm = Arm.ADAPTIVE,
    group: str = POOLED,
    affinity: dict[Channel, tuple[int, int]] | None = None,
    seed: int = 11,
) -> Counter[str]:
    rng = random.Random(seed)
    return Counter(
        choose_channel(eligible, arm, adaptive, stats, affinity or {}, CFG, STEP, group, rng).value
        for _ in range(n)
    )


# --- posterior back-off ------------------------------------------------------------------------


POOLED_STATS = {ckey(EMAIL): (1000.0, 300.0)}  # the population converts 30%
FIXED_POOLING = Adaptive(pooling="fixed")
FIXED_FLOOR = Adaptive(exploration="fixed", min_exploration=0.3)


def test_the_pooled_posterior_is_the_prior_plus_the_pooled_counts() -> None:
    adaptive = Adaptive(prior_alpha=2, prior_beta=3)

    assert posterior(POOLED_STATS, ckey(EMAIL), ckey(EMAIL), adaptive) == (302.0, 703.0)


def test_a_group_without_data_starts_at_the_pooled_estimate() -> None:
    a, b = posterior(POOLED_STATS, ckey(EMAIL, GROUP), ckey(EMAIL), FIXED_POOLING)

    assert mean((a, b)) == pytest.approx(0.30, abs=0.01)
    assert a + b == pytest.approx(2 + 50)  # prior + the configured pseudo-observations


def test_a_group_moves_from_the_pooled_estimate_towards_its_own_rate_as_data_arrives() -> None:
    adaptive = FIXED_POOLING
    distances = []
    for trials in (0, 10, 100, 1000, 10_000):
        stats = {**POOLED_STATS, ckey(EMAIL, GROUP): (float(trials), 0.9 * trials)}
        distances.append(
            abs(mean(posterior(stats, ckey(EMAIL, GROUP), ckey(EMAIL), adaptive)) - 0.9)
        )

    assert distances == sorted(distances, reverse=True)
    assert distances[0] > 0.55
    assert distances[-1] < 0.01


def test_more_backoff_observations_hold_a_thin_group_closer_to_the_pool() -> None:
    stats = {**POOLED_STATS, ckey(EMAIL, GROUP): (20.0, 18.0)}

    weak_backoff = Adaptive(pooling="fixed", group_backoff_observations=5)
    strong_backoff = Adaptive(pooling="fixed", group_backoff_observations=500)

    weak = mean(posterior(stats, ckey(EMAIL, GROUP), ckey(EMAIL), weak_backoff))
    strong = mean(posterior(stats, ckey(EMAIL, GROUP), ckey(EMAIL), strong_backoff))

    assert 0.3 < strong < weak < 0.9
    assert strong == pytest.approx(0.3, abs=0.05)


def test_without_backoff_a_group_ignores_the_pool() -> None:
    adaptive = Adaptive(pooling="fixed", group_backoff_observations=0)

    assert posterior(POOLED_STATS, ckey(EMAIL, GROUP), ckey(EMAIL), adaptive) == (1.0, 1.0)


def test_a_thin_group_follows_the_pooled_winner_and_a_rich_group_its_own() -> None:
    adaptive = Adaptive(min_exploration=0)
    pooled = {ckey(EMAIL): (5000.0, 500.0), ckey(SMS): (5000.0, 2500.0)}
    rich = {**pooled, ckey(EMAIL, GROUP): (5000.0, 4000.0), ckey(SMS, GROUP): (5000.0, 100.0)}

    thin_choices = picks(500, [EMAIL, SMS], pooled, adaptive, group=GROUP)
    rich_choices = picks(500, [EMAIL, SMS], rich, adaptive, group=GROUP)

    assert thin_choices["sms"] > 490
    assert rich_choices["email"] > 490


# --- Thompson sampling -------------------------------------------------------------------------


def test_thompson_sampling_chooses_the_clearly_better_channel_most_of_the_time() -> None:
    stats = {ckey(EMAIL): (1000.0, 100.0), ckey(SMS): (1000.0, 300.0), ckey(PUSH): (1000.0, 120.0)}

    choices = picks(2000, [EMAIL, SMS, PUSH], stats, Adaptive(min_exploration=0))

    assert choices["sms"] / 2000 > 0.98


def test_thompson_sampling_explores_arms_it_knows_little_about() -> None:
    stats = {ckey(EMAIL): (1000.0, 300.0)}  # sms: no data at all, Beta(1, 1)
    adaptive = Adaptive(min_exploration=0, pooling="fixed")

    choices = picks(2000, [EMAIL, SMS], stats, adaptive)

    assert 0.5 < choices["sms"] / 2000 < 0.85  # P(Beta(1,1) > 0.3) = 0.7


@pytest.mark.parametrize("k", [2, 3, 4])
def test_the_exploration_floor_sends_its_share_to_the_other_channels(k: int) -> None:
    channels = list(Channel)[:k]
    best = channels[-1]
    stats = {ckey(ch): (10_000.0, 5000.0 if ch is best else 100.0) for ch in channels}
    n = 6000

    choices = picks(n, channels, stats, Adaptive(exploration="fixed", min_exploration=0.3))

    others = (n - choices[best.value]) / n
    assert others == pytest.approx(0.3 * (k - 1) / k, abs=0.025)
    assert all(choices[ch.value] > 0 for ch in channels)


def test_the_exploration_floor_applies_to_variants_too() -> None:
    variants = ["a", "b", "c"]
    stats = {
        variant_key(CFG, STEP, v, POOLED): (10_000.0, 5000.0 if v == "c" else 100.0)
        for v in variants
    }
    rng = random.Random(3)
    n = 6000

    choices = Counter(
        choose_variant(variants, Arm.ADAPTIVE, FIXED_FLOOR, stats, CFG, STEP, POOLED, rng).value
        for _ in range(n)
    )

    assert (n - choices["c"]) / n == pytest.approx(0.3 * 2 / 3, abs=0.025)


def test_a_choice_reports_its_policy_and_its_sampled_scores() -> None:
    stats = {ckey(EMAIL): (1000.0, 100.0), ckey(SMS): (1000.0, 300.0)}

    choice = choose_channel(
        [EMAIL, SMS],
        Arm.ADAPTIVE,
        Adaptive(min_exploration=0),
        stats,
        {},
        CFG,
        STEP,
        POOLED,
        random.Random(1),
    )

    assert choice.policy == "thompson"
    assert set(choice.scores) == {"email", "sms"}
    assert choice.value == max(choice.scores, key=choice.scores.__getitem__)


def users_differ(channel: Channel, mean: float, variance: float, earlier: float = 10_000.0) -> dict:
    """Repeat statistics of a population whose users' success rates on `channel` have this
    mean and variance (what `stats.repeat_deltas` accumulates)."""
    return {
        repeat_key(CFG, channel.value): (earlier, earlier * (variance + mean * mean)),
        history_key(CFG, channel.value): (earlier, earlier * mean),
    }


def test_the_users_own_affinity_tips_a_choice_between_equal_channels() -> None:
    """Users differ a lot (a Beta(1, 4) spread of rates: 5 pseudo-observations): a user who
    answered 27 of 30 SMS and none of 30 emails is an SMS user."""
    spread = {**users_differ(EMAIL, 0.2, 0.0267), **users_differ(SMS, 0.2, 0.0267)}
    stats = {ckey(EMAIL): (1000.0, 200.0), ckey(SMS): (1000.0, 200.0), **spread}
    adaptive = Adaptive(min_exploration=0, user_affinity_weight=1.0)

    fan = picks(1000, [EMAIL, SMS], stats, adaptive, affinity={SMS: (30, 27), EMAIL: (30, 0)})
    neutral = picks(1000, [EMAIL, SMS], stats, adaptive)

    assert user_prior_strength(stats, CFG, "sms", adaptive) == pytest.approx(5.0, rel=0.01)
    assert fan["sms"] > 950
    assert 400 < neutral["sms"] < 600


def test_where_users_are_alike_a_few_unanswered_messages_do_not_turn_a_user_away() -> None:
    """Email suits the group better (3% vs 2%); the user has not answered 3 emails, which at
    3% is what nearly everyone does. With users alike (repeats no likelier than chance) or no
    repeat evidence yet, the user stays with email."""
    stats = {ckey(EMAIL): (20_000.0, 600.0), ckey(PUSH): (20_000.0, 400.0)}
    alike = {**stats, **users_differ(EMAIL, 0.03, 0.0), **users_differ(PUSH, 0.02, 0.0)}
    adaptive = Adaptive(exploration="none")

    for world in (stats, alike):
        choices = picks(500, [EMAIL, PUSH], world, adaptive, affinity={EMAIL: (3, 0)})
        assert choices["email"] > 490
    assert user_prior_strength(alike, CFG, "email", adaptive) == adaptive.pooling_max_strength


def test_affinity_is_ignored_at_weight_zero() -> None:
    stats = {ckey(EMAIL): (1000.0, 300.0), ckey(SMS): (1000.0, 100.0)}
    adaptive = Adaptive(min_exploration=0, user_affinity_weight=0)

    choices = picks(500, [EMAIL, SMS], stats, adaptive, affinity={SMS: (30, 30)})

    assert choices["email"] > 490


# --- fixed policies ----------------------------------------------------------------------------


STRONG_SMS = {ckey(EMAIL): (1000.0, 10.0), ckey(SMS): (1000.0, 900.0)}


@pytest.mark.parametrize(
    ("arm", "adaptive"),
    [
        (Arm.BASELINE, Adaptive(min_exploration=0.5)),
        (Arm.HOLDOUT, Adaptive()),
        (Arm.ADAPTIVE, Adaptive(channel_policy="fixed", variant_policy="fixed")),
    ],
)
def test_the_fixed_policy_and_the_baseline_arm_always_pick_the_first(
    arm: Arm, adaptive: Adaptive
) -> None:
    rng = random.Random(0)
    variant_stats = {variant_key(CFG, STEP, "b", POOLED): (1000.0, 900.0)}
    for _ in range(200):
        channel = choose_channel(
            [EMAIL, SMS], arm, adaptive, STRONG_SMS, {}, CFG, STEP, POOLED, rng
        )
        variant = choose_variant(["a", "b"], arm, adaptive, variant_stats, CFG, STEP, POOLED, rng)

        assert (channel.value, channel.policy) == ("email", "fixed")
        assert (variant.value, variant.policy) == ("a", "fixed")


def test_a_single_eligible_channel_is_chosen_without_drawing_randomness() -> None:
    rng = random.Random(0)
    state = rng.getstate()

    choice = choose_channel([SMS], Arm.ADAPTIVE, Adaptive(), {}, {}, CFG, STEP, POOLED, rng)

    assert (choice.value, choice.policy) == ("sms", "fixed")
    assert rng.getstate() == state


def test_the_same_seed_gives_the_same_choices() -> None:
    def run(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [
            choose_channel(
                [EMAIL, SMS, PUSH],
                Arm.ADAPTIVE,
                Adaptive(min_exploration=0.2),
                {},
                {},
                CFG,
                STEP,
                POOLED,
                rng,
            ).value
            for _ in range(50)
        ]

    assert run(5) == run(5)
    assert run(5) != run(6)


# --- send-time optimisation --------------------------------------------------------------------


NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)  # a Wednesday, 10:00 UTC, 12:00 in Paris
STO = SendTime(enabled=True, window_start=time(8), window_end=time(21), min_observations=3)


def utc(hour: int, day: int = 1) -> datetime:
    return datetime(2024, 5, day, hour, 0, tzinfo=UTC)


def test_the_most_responsive_hour_in_the_window_is_chosen() -> None:
    assert best_send_time(NOW, "UTC", {15: 10, 9: 2, 12: 4}, STO, []) == utc(15)


def test_the_hour_is_the_users_local_hour() -> None:
    # 15:00 in Paris (CEST, UTC+2) is 13:00 UTC.
    assert best_send_time(NOW, "Europe/Paris", {15: 10}, STO, []) == utc(13)


def test_too_little_data_means_send_now() -> None:
    assert best_send_time(NOW, "UTC", {15: 2}, STO, []) is None
    assert best_send_time(NOW, "UTC", {}, STO, []) is None


def test_optimisation_disabled_means_send_now() -> None:
    disabled = STO.model_copy(update={"enabled": False})

    assert best_send_time(NOW, "UTC", {15: 50}, disabled, []) is None


def test_hours_outside_the_allowed_window_are_never_chosen() -> None:
    hours = {22: 100, 6: 90, 18: 3}

    assert best_send_time(NOW, "UTC", hours, STO, []) == utc(18)


def test_hours_inside_quiet_hours_are_never_chosen() -> None:
    hours = {19: 100, 14: 10}
    quiet = [QuietHours(start=time(18), end=time(20))]

    assert best_send_time(NOW, "UTC", hours, STO, quiet) == utc(14)


def test_quiet_hours_wrapping_midnight_are_respected() -> None:
    window = SendTime(enabled=True, window_start=time(0), window_end=time(23, 59))
    quiet = [QuietHours(start=time(22), end=time(9))]

    assert best_send_time(NOW, "UTC", {23: 100, 2: 90, 8: 80, 20: 5}, window, quiet) == utc(20)


def test_a_best_hour_already_past_today_is_taken_tomorrow() -> None:
    assert best_send_time(NOW, "UTC", {9: 10, 11: 1}, STO, []) == utc(9, day=2)


def test_the_current_hour_being_the_best_means_send_now() -> None:
    assert best_send_time(NOW, "UTC", {10: 10, 15: 3}, STO, []) is None


def test_the_current_hour_as_good_as_the_best_means_send_now() -> None:
    assert best_send_time(NOW, "UTC", {10: 5, 15: 5}, STO, []) is None


def test_a_tie_between_later_hours_goes_to_the_soonest() -> None:
    assert best_send_time(NOW, "UTC", {16: 5, 13: 5, 11: 1}, STO, []) == utc(13)


def test_no_allowed_hour_means_send_now() -> None:
    quiet = [QuietHours(start=time(7), end=time(22))]

    assert best_send_time(NOW, "UTC", {12: 10}, STO, quiet) is None
