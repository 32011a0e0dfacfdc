"""Relative lift with a Katz log 95% interval: known values, zero counts, the interval always
holds the estimate, swapping the arms inverts the ratio, and the interval covers the truth
about 95% of the time."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sme.core.lift import METHOD, METHOD_CORRECTED, Z95, Lift, lift_report, relative_lift


def test_known_values() -> None:
    # 30/100 vs 20/100: RR = 1.5; SE(log RR) = sqrt(1/30 - 1/100 + 1/20 - 1/100) = 0.251661;
    # CI = exp(log 1.5 -/+ 1.959964 * 0.251661) = (0.915961, 2.456437).
    lift = relative_lift(30, 100, 20, 100)
    assert lift.estimate == pytest.approx(0.5)
    assert lift.ci95_low == pytest.approx(-0.084039, abs=1e-6)
    assert lift.ci95_high == pytest.approx(1.456437, abs=1e-6)
    assert lift.method == METHOD


def test_large_arms_give_a_tight_interval_around_the_ratio() -> None:
    lift = relative_lift(1_200, 10_000, 1_000, 10_000)
    assert lift.estimate == pytest.approx(0.2)
    se = math.sqrt(1 / 1200 - 1 / 10_000 + 1 / 1000 - 1 / 10_000)
    assert lift.ci95_low == pytest.approx(1.2 * math.exp(-Z95 * se) - 1)
    assert lift.ci95_high == pytest.approx(1.2 * math.exp(Z95 * se) - 1)
    assert 0.09 < lift.ci95_low < 0.2 < lift.ci95_high < 0.32


def test_equal_rates_give_zero_lift_and_a_symmetric_log_interval() -> None:
    lift = relative_lift(50, 1000, 50, 1000)
    assert lift.estimate == 0.0
    assert math.log1p(lift.ci95_low) == pytest.approx(-math.log1p(lift.ci95_high))


def test_zero_conversions_in_one_arm_use_the_haldane_correction() -> None:
    lift = relative_lift(0, 100, 20, 100)
    assert lift.method == METHOD_CORRECTED
    assert lift.estimate == pytest.approx((0.5 / 101) / (20.5 / 101) - 1)
    assert -1 < lift.ci95_low < lift.estimate < lift.ci95_high < 0
    flipped = relative_lift(20, 100, 0, 100)
    assert math.isfinite(flipped.estimate) and flipped.estimate > 0
    assert flipped.ci95_low > 0


def test_zero_conversions_in_both_arms_say_nothing() -> None:
    lift = relative_lift(0, 500, 0, 500)
    assert lift.estimate == pytest.approx(0.0)
    assert lift.ci95_low < -0.9 and lift.ci95_high > 10


def test_an_arm_without_users_or_with_impossible_counts_is_rejected() -> None:
    with pytest.raises(ValueError, match="no users"):
        relative_lift(0, 0, 5, 100)
    with pytest.raises(ValueError, match="between 0 and n"):
        relative_lift(101, 100, 5, 100)
    with pytest.raises(ValueError, match="between 0 and n"):
        relative_lift(5, 100, -1, 100)


counts = st.integers(min_value=1, max_value=100_000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)


@given(counts, counts)
def test_the_interval_contains_the_estimate(a: tuple[int, int], b: tuple[int, int]) -> None:
    lift = relative_lift(a[0], a[1], b[0], b[1])
    assert -1 <= lift.ci95_low <= lift.estimate <= lift.ci95_high
    assert all(math.isfinite(x) for x in (lift.estimate, lift.ci95_low, lift.ci95_high))


@given(counts, counts)
def test_swapping_the_arms_inverts_the_ratio(a: tuple[int, int], b: tuple[int, int]) -> None:
    ab = relative_lift(a[0], a[1], b[0], b[1])
    ba = relative_lift(b[0], b[1], a[0], a[1])
    assert (1 + ab.estimate) * (1 + ba.estimate) == pytest.approx(1.0)
    assert (1 + ab.ci95_low) * (1 + ba.ci95_high) == pytest.approx(1.0)


def test_the_interval_covers_the_true_lift_about_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    n, p_a, p_b, runs = 2_000, 0.06, 0.05, 400
    truth = p_a / p_b - 1
    covered = 0
    for _ in range(runs):
        x_a = sum(rng.random() < p_a for _ in range(n))
        x_b = sum(rng.random() < p_b for _ in range(n))
        lift = relative_lift(x_a, n, x_b, n)
        covered += lift.ci95_low <= truth <= lift.ci95_high
    assert 0.92 <= covered / runs <= 0.98


def test_lift_report_compares_adaptive_with_baseline_and_holdout() -> None:
    report = lift_report({"adaptive": (60, 1000), "baseline": (50, 1000), "holdout": (40, 1000)})
    assert set(report) == {"vs_baseline", "vs_holdout"}
    vs_baseline, vs_holdout = report["vs_baseline"], report["vs_holdout"]
    assert isinstance(vs_baseline, Lift) and isinstance(vs_holdout, Lift)
    # 60/1000 vs 50/1000: RR = 1.2; SE = sqrt(1/60 - 1/1000 + 1/50 - 1/1000) = 0.186190;
    # z * SE = 1.959964 * 0.186190 = 0.364925; CI = 1.2 * exp(-/+ 0.364925) - 1.
    assert vs_baseline.to_dict() == {
        "estimate": pytest.approx(0.2),
        "ci95_low": pytest.approx(-0.166902, abs=1e-6),
        "ci95_high": pytest.approx(0.728488, abs=1e-6),
        "method": METHOD,
    }
    # 60/1000 vs 40/1000: RR = 1.5; SE = sqrt(1/60 - 1/1000 + 1/40 - 1/1000) = 0.199165;
    # z * SE = 0.390356; CI = 1.5 * exp(-/+ 0.390356) - 1.
    assert vs_holdout.to_dict() == {
        "estimate": pytest.approx(0.5),
        "ci95_low": pytest.approx(0.015224, abs=1e-6),
        "ci95_high": pytest.approx(1.216260, abs=1e-6),
        "method": METHOD,
    }


def test_lift_report_leaves_out_comparisons_without_users() -> None:
    report = lift_report({"adaptive": (60, 1000), "baseline": (50, 1000), "holdout": (0, 0)})
    assert report["vs_holdout"] is None
    vs_baseline = report["vs_baseline"]
    assert vs_baseline is not None and vs_baseline.estimate == pytest.approx(0.2)  # 6% / 5% - 1
    assert lift_report({"baseline": (5, 10)}) == {"vs_baseline": None, "vs_holdout": None}


def test_wilson_interval_matches_a_published_value_and_holds_its_estimate() -> None:
    from sme.core.lift import wilson_interval

    low, high = wilson_interval(81, 263) or (0, 0)  # Wilson (1927) style worked example
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 10) is not None and wilson_interval(0, 10)[0] == 0.0  # type: ignore[index]
    assert wilson_interval(5, 0) is None


@given(st.integers(1, 5000), st.data())
def test_wilson_interval_contains_the_rate(users: int, data: st.DataObject) -> None:
    from sme.core.lift import wilson_interval

    conversions = data.draw(st.integers(0, users))
    interval = wilson_interval(conversions, users)
    assert interval is not None
    assert 0.0 <= interval[0] <= conversions / users <= interval[1] <= 1.0
