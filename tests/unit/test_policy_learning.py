"""What the policy learns and weighs: empirical-Bayes pooling whose strength follows the
between-group variation, exploration that decays, the net-value objective (message cost and
unsubscribes), send time from the population, and discounted statistics."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, time

import pytest
from pydantic import ValidationError

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.sequences import Adaptive, SendTime
from sme.core.policy import (
    best_send_time,
    choose_channel,
    conversions_per_success,
    exploration_rate,
    pooling_strength,
    population_hours,
    posterior,
)
from sme.core.stats import (
    POOLED,
    bounded_key,
    channel_key,
    conversion_key,
    decay_factor,
    group_counts,
    history_key,
    merge_decayed,
    repeat_key,
    send_hour_deltas,
    send_hour_key,
    sum_decayed,
    unsubscribe_deltas,
    unsubscribe_key,
)
from tests.unit.builders import Driver, at, config, msg_step

EMAIL, SMS, PUSH = Channel.EMAIL, Channel.SMS, Channel.PUSH
CFG, STEP = "cfg-1", "s1"
DAY_MS = 86_400_000


def ckey(channel: Channel, group: str = POOLED) -> str:
    return channel_key(CFG, STEP, channel.value, group)


def kkey(channel: Channel, group: str = POOLED) -> str:
    return conversion_key(CFG, STEP, channel.value, group)


def mean(ab: tuple[float, float]) -> float:
    return ab[0] / (ab[0] + ab[1])


def with_groups(channel: Channel, groups: dict[str, tuple[float, float]]) -> dict:
    """Statistics as the core writes them: every group's counts also in the pooled key."""
    stats = {ckey(channel, g): c for g, c in groups.items()}
    stats[ckey(channel)] = (
        sum(c[0] for c in groups.values()),
        sum(c[1] for c in groups.values()),
    )
    return stats


# --- empirical-Bayes pooling -------------------------------------------------------------------


def test_groups_that_agree_pool_strongly() -> None:
    stats = with_groups(EMAIL, {f"#{i}": (2000.0, 200.0 + i) for i in range(4)})

    rate, strength = pooling_strength(stats, ckey(EMAIL), Adaptive())

    assert rate == pytest.approx(0.1, abs=0.002)
    assert strength == Adaptive().pooling_max_strength


def test_groups_that_differ_pool_weakly_and_follow_their_own_counts() -> None:
    stats = with_groups(EMAIL, {"#0": (2000.0, 40.0), "#1": (2000.0, 400.0), "#2": (2000.0, 200.0)})

    _, strength = pooling_strength(stats, ckey(EMAIL), Adaptive())
    low = mean(posterior(stats, ckey(EMAIL, "#0"), ckey(EMAIL), Adaptive()))

    assert strength < 50
    assert low == pytest.approx(0.02, abs=0.005)


def test_a_new_group_starts_at_the_pooled_rate_whatever_the_spread() -> None:
    stats = with_groups(EMAIL, {"#0": (2000.0, 40.0), "#1": (2000.0, 400.0)})

    a, b = posterior(stats, ckey(EMAIL, "#9"), ckey(EMAIL), Adaptive())

    assert mean((a, b)) == pytest.approx(0.11, abs=0.005)


def test_the_pooling_strength_stays_within_its_configured_bounds() -> None:
    differ = with_groups(EMAIL, {"#0": (5000.0, 50.0), "#1": (5000.0, 4000.0)})
    agree = with_groups(EMAIL, {"#0": (50.0, 5.0), "#1": (50.0, 5.0)})
    bounded = Adaptive(pooling_min_strength=10, pooling_max_strength=300)

    assert pooling_strength(differ, ckey(EMAIL), bounded)[1] == 10
    assert pooling_strength(agree, ckey(EMAIL), bounded)[1] == 300


def test_new_counts_refit_the_prior() -> None:
    stats = with_groups(EMAIL, {f"#{i}": (2000.0, 200.0) for i in range(3)})
    before = pooling_strength(stats, ckey(EMAIL), Adaptive())[1]
    stats.update(
        with_groups(EMAIL, {"#0": (4000.0, 40.0), "#1": (2000.0, 200.0), "#2": (2000.0, 900.0)})
    )

    after = pooling_strength(stats, ckey(EMAIL), Adaptive())[1]

    assert after < before


def test_the_fitted_prior_of_one_statistics_object_is_never_reused_for_another() -> None:
    agree = with_groups(EMAIL, {"#0": (2000.0, 300.0), "#1": (2000.0, 300.0)})
    differ = with_groups(EMAIL, {"#0": (2000.0, 20.0), "#1": (2000.0, 580.0)})
    assert agree[ckey(EMAIL)] == differ[ckey(EMAIL)]  # the same pooled counts

    strengths = [pooling_strength(s, ckey(EMAIL), Adaptive())[1] for s in (agree, differ, agree)]

    assert strengths[0] == strengths[2] > strengths[1]


def test_min_strength_above_max_strength_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Adaptive(pooling_min_strength=10, pooling_max_strength=5)


# --- exploration -------------------------------------------------------------------------------


def test_the_exploration_floor_decays_with_the_evidence() -> None:
    adaptive = Adaptive(min_exploration=0.05)
    rates = [exploration_rate(adaptive, n) for n in (0, 400, 10_000, 1_000_000)]

    assert rates[0] == 0.05
    assert rates == sorted(rates, reverse=True)
    assert rates[-1] < 0.001


def test_a_fixed_floor_stays_and_none_means_thompson_alone() -> None:
    assert exploration_rate(Adaptive(exploration="fixed", min_exploration=0.2), 1e9) == 0.2
    assert exploration_rate(Adaptive(exploration="none", min_exploration=0.2), 0) == 0.0


def test_a_well_known_choice_almost_never_explores() -> None:
    stats = {ckey(EMAIL): (50_000.0, 500.0), ckey(SMS): (50_000.0, 5000.0)}
    rng = random.Random(4)

    choices = Counter(
        choose_channel(
            [EMAIL, SMS], Arm.ADAPTIVE, Adaptive(), stats, {}, CFG, STEP, POOLED, rng
        ).policy
        for _ in range(2000)
    )

    assert choices["explore"] < 20


# --- objective -----------------------------------------------------------------------------


SMS_SLIGHTLY_BETTER = {
    ckey(EMAIL): (20_000.0, 1000.0),  # successes (clicks, conversions): the conversions objective
    ckey(SMS): (20_000.0, 1100.0),
    kkey(EMAIL): (20_000.0, 1000.0),  # conversions: what the value objectives pay for
    kkey(SMS): (20_000.0, 1100.0),
}
COSTS = {EMAIL: 0.001, SMS: 0.02}


def shares(adaptive: Adaptive, stats: dict, costs: dict | None = None) -> Counter[str]:
    rng = random.Random(7)
    return Counter(
        choose_channel(
            [EMAIL, SMS], Arm.ADAPTIVE, adaptive, stats, {}, CFG, STEP, POOLED, rng, costs
        ).value
        for _ in range(1000)
    )


def test_conversions_ignore_the_price_and_net_value_pays_it() -> None:
    conversions = shares(Adaptive(), SMS_SLIGHTLY_BETTER, COSTS)
    net = shares(Adaptive(objective="net_value", conversion_value=1.0), SMS_SLIGHTLY_BETTER, COSTS)

    assert conversions["sms"] > 900
    assert net["email"] > 900


def test_a_valuable_conversion_pays_for_the_dearer_channel() -> None:
    net = shares(Adaptive(objective="net_value", conversion_value=50.0), SMS_SLIGHTLY_BETTER, COSTS)

    assert net["sms"] > 900


def test_net_value_weighs_the_unsubscribes_a_channel_causes() -> None:
    stats = {
        **SMS_SLIGHTLY_BETTER,
        unsubscribe_key(CFG, STEP, "email", POOLED): (20_000.0, 20.0),
        unsubscribe_key(CFG, STEP, "sms", POOLED): (20_000.0, 400.0),
    }

    free_churn = shares(Adaptive(objective="net_value"), stats)
    dear_churn = shares(Adaptive(objective="net_value", unsubscribe_cost=1.0), stats)

    assert free_churn["sms"] > 900
    assert dear_churn["email"] > 900


def test_value_objectives_pay_for_conversions_not_clicks() -> None:
    clicky_sms = {
        ckey(EMAIL): (20_000.0, 1000.0),
        ckey(SMS): (20_000.0, 4000.0),  # four times the clicks...
        kkey(EMAIL): (20_000.0, 400.0),
        kkey(SMS): (20_000.0, 400.0),  # ...and the same conversions
    }
    value = shares(Adaptive(objective="net_value", conversion_value=10.0), clicky_sms, COSTS)
    assert value["email"] > 900


def test_a_dear_channel_tried_a_few_hundred_times_is_dismissed_by_its_success_rate() -> None:
    """300 SMS messages with 1 conversion cannot tell a conversion rate of 0.3% from 1%, but
    their 9 successes pin the success rate near email's: at the step's share of successes that
    convert, SMS cannot pay for a price 20x email's, so Thompson sampling stops trying it."""
    stats = {
        ckey(EMAIL): (20_000.0, 500.0),
        kkey(EMAIL): (20_000.0, 80.0),
        ckey(SMS): (300.0, 9.0),
        kkey(SMS): (300.0, 1.0),
    }
    adaptive = Adaptive(objective="net_value", conversion_value=10.0, exploration="none")

    assert shares(adaptive, stats, COSTS)["sms"] < 50


def test_a_channel_without_conversions_of_its_own_borrows_the_steps_share() -> None:
    stats = {
        ckey(EMAIL): (20_000.0, 1000.0),
        kkey(EMAIL): (20_000.0, 200.0),
        ckey(SMS): (100.0, 5.0),
    }

    shares_ = conversions_per_success(stats, CFG, STEP, ["email", "sms"], Adaptive())

    assert mean(shares_["email"]) == pytest.approx(0.2, abs=0.01)
    assert mean(shares_["sms"]) == pytest.approx(0.2, abs=0.03)


# --- send time from the population ---------------------------------------------------------


NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
STO = SendTime(
    enabled=True,
    window_start=time(8),
    window_end=time(21),
    min_observations=3,
    population_weight=5,  # opt-in (default 0)
)


def evening_population() -> dict[str, tuple[float, float]]:
    stats: dict[str, tuple[float, float]] = {}
    for h in range(8, 21):
        rate = 0.3 if h == 19 else 0.05
        stats[send_hour_key(CFG, h, POOLED)] = (1000.0, 1000.0 * rate)
    return stats


def test_a_new_user_is_sent_at_the_populations_best_hour() -> None:
    population = population_hours(evening_population(), CFG, POOLED)

    assert best_send_time(NOW, "UTC", {}, STO, [], population) == datetime(
        2024, 5, 1, 19, tzinfo=UTC
    )


def test_the_users_own_engagements_override_the_population() -> None:
    population = population_hours(evening_population(), CFG, POOLED)

    assert best_send_time(NOW, "UTC", {14: 12}, STO, [], population) == datetime(
        2024, 5, 1, 14, tzinfo=UTC
    )


def test_a_group_differing_from_the_pool_gets_its_own_hour() -> None:
    stats = evening_population()
    stats[send_hour_key(CFG, 9, "#1")] = (500.0, 200.0)
    stats[send_hour_key(CFG, 19, "#1")] = (500.0, 10.0)

    rates = population_hours(stats, CFG, "#1")

    assert max(rates, key=rates.__getitem__) == 9


def test_no_population_counts_means_the_users_own_hours_decide() -> None:
    assert population_hours({}, CFG, POOLED) == {}
    assert best_send_time(NOW, "UTC", {15: 10}, STO, [], {}) == datetime(2024, 5, 1, 15, tzinfo=UTC)


# --- statistics records ------------------------------------------------------------------------


def test_unsubscribe_and_send_hour_deltas_count_in_the_group_and_the_pool() -> None:
    unsub = unsubscribe_deltas(CFG, STEP, "sms", "#3", 0, 1)
    hour = send_hour_deltas(CFG, 19, "#3", 1, 0)

    assert [d.key for d in unsub] == [
        unsubscribe_key(CFG, STEP, "sms", "#3"),
        unsubscribe_key(CFG, STEP, "sms", POOLED),
    ]
    assert [d.key for d in hour] == [send_hour_key(CFG, 19, "#3"), send_hour_key(CFG, 19, POOLED)]
    assert all(bounded_key(d.key) for d in (*unsub, *hour))


def test_keys_of_unknown_kinds_or_raw_groups_are_not_bounded() -> None:
    assert not bounded_key("x|cfg|s|email|*")
    assert not bounded_key(channel_key(CFG, STEP, "email", "plan=pro"))
    assert not bounded_key(channel_key(CFG, STEP, "email", "#32"))


def test_discounted_counts_halve_every_half_life() -> None:
    start = merge_decayed(None, 100, 10, 0, 7.0)
    later = merge_decayed(start, 0, 0, 7 * DAY_MS, 7.0)

    assert later == pytest.approx((50.0, 5.0, 7 * DAY_MS))
    assert decay_factor(14 * DAY_MS, 7.0) == pytest.approx(0.25)
    assert merge_decayed(start, 1, 1, 30 * DAY_MS, None)[:2] == (101.0, 11.0)


def test_partitions_discounted_from_their_own_times_sum_at_one_time() -> None:
    parts = [(100.0, 10.0, 0), (100.0, 10.0, 7 * DAY_MS)]

    assert sum_decayed(parts, 7 * DAY_MS, 7.0) == pytest.approx((150.0, 15.0))


def test_an_older_update_does_not_move_the_record_back_in_time() -> None:
    assert merge_decayed((10.0, 1.0, 5 * DAY_MS), 1, 0, 4 * DAY_MS, 7.0) == (11.0, 1.0, 5 * DAY_MS)


def test_group_counts_per_config_and_step_exclude_the_pool() -> None:
    keys = [
        ckey(EMAIL),
        ckey(EMAIL, "#1"),
        ckey(SMS, "#1"),
        ckey(SMS, "#2"),
        send_hour_key(CFG, 9, "#1"),
        send_hour_key(CFG, 10, "#1"),
    ]

    assert group_counts(keys) == {("c", CFG, STEP): 2, ("t", CFG, "*"): 1}


# --- how successes repeat for the same user ------------------------------------------------------


def test_the_core_counts_how_a_users_successes_repeat_on_a_channel() -> None:
    """Three e-mails to one user, the second and third clicked: each message adds the user's
    earlier e-mails to both repeat keys' trials; each click adds the earlier clicks (repeat)
    and the earlier e-mails (history) to their successes."""
    cfg = config(steps=[msg_step("s1"), msg_step("s2", wait="PT1H"), msg_step("s3", wait="PT1H")])
    d = Driver.of(cfg)
    d.send("signed_up")
    d.run_until(at(minutes=30))
    d.run_until(at(minutes=90))
    second = d.commands[-1]
    d.send("clicked", at(minutes=100), channel="email", command_id=second.command_id)
    d.run_until(at(minutes=160))
    third = d.commands[-1]
    d.send("clicked", at(minutes=170), channel="email", command_id=third.command_id)

    totals: dict[str, list[int]] = {}
    for outcome in d.outcomes:
        for delta in outcome.stat_deltas:
            if delta.key in (repeat_key("cfg-1", "email"), history_key("cfg-1", "email")):
                t = totals.setdefault(delta.key[0], [0, 0])
                t[0] += delta.trials
                t[1] += delta.successes
    # Sends: 0, 1 and 2 earlier e-mails. Clicks: on the 2nd (1 earlier e-mail, 0 earlier
    # clicks) and the 3rd (2 earlier e-mails, 1 earlier click).
    assert totals == {"r": [3, 1], "w": [3, 3]}
