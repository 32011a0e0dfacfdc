"""Incremental conversions, revenue and ROI over the holdout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sme.core.roi import ArmTotals, incremental, incremental_report


def test_incremental_figures_scale_the_holdout_to_the_treated_arm() -> None:
    treated = ArmTotals(users=1000, conversions=60, revenue=1500.0, cost=100.0)
    holdout = ArmTotals(users=250, conversions=10, revenue=250.0, cost=0.0)
    result = incremental(treated, holdout)
    assert result.conversions == pytest.approx(60 - 40)
    assert result.revenue == pytest.approx(1500 - 1000)
    assert result.roi == pytest.approx((500 - 100) / 100)
    assert result.method == "holdout-scaled difference"


def test_roi_is_undefined_without_cost_and_arms_without_users_are_refused() -> None:
    free = incremental(ArmTotals(10, 2, 20.0, 0.0), ArmTotals(10, 1, 10.0, 0.0))
    assert free.roi is None and free.revenue == pytest.approx(10.0)
    with pytest.raises(ValueError, match="users"):
        incremental(ArmTotals(0, 0, 0.0, 0.0), ArmTotals(10, 1, 10.0, 0.0))


def test_the_report_covers_each_treatment_and_both_together() -> None:
    arms = {
        "adaptive": ArmTotals(100, 10, 100.0, 5.0),
        "baseline": ArmTotals(100, 6, 60.0, 5.0),
        "holdout": ArmTotals(50, 2, 20.0, 0.0),
    }
    report = incremental_report(arms)
    assert report["adaptive"] is not None and report["adaptive"].conversions == pytest.approx(6)
    assert report["baseline"] is not None and report["baseline"].conversions == pytest.approx(2)
    both = report["messaged"]
    assert both is not None and both.conversions == pytest.approx(8)
    assert both.roi == pytest.approx((160 - 80 - 10) / 10)
    assert incremental_report({"adaptive": arms["adaptive"]}) == {
        "adaptive": None,
        "baseline": None,
        "messaged": None,
    }


counts = st.integers(min_value=1, max_value=10_000)


@given(counts, counts, st.floats(0, 100))
def test_identical_rates_give_no_increment(n_t: int, n_h: int, value: float) -> None:
    """A treated arm converting exactly like the holdout earns nothing extra."""
    treated = ArmTotals(n_t, 0, n_t * value, 1.0)
    holdout = ArmTotals(n_h, 0, n_h * value, 0.0)
    result = incremental(treated, holdout)
    assert result.revenue == pytest.approx(0.0, abs=1e-6)
    assert result.roi == pytest.approx(-1.0, abs=1e-6)
