"""Incremental conversions, revenue and ROI over the holdout; an arm's net value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sme.contracts.sequences import SequenceConfig
from sme.core.roi import ArmTotals, Economics, incremental, incremental_report, net_value


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


def _sequence(goal: dict[str, object], adaptive: dict[str, object]) -> SequenceConfig:
    return SequenceConfig.model_validate(
        {
            "id": "s",
            "workspace_id": "w",
            "name": "Priced",
            "entry": {"event_types": ["signed_up"]},
            "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
            "exit": {"goal": goal},
            "adaptive": adaptive,
        }
    )


ARM = {"enrolled": 40, "conversions": 3, "revenue": 27.5, "cost": 1.2, "unsubscribed": 2}


def test_net_value_counts_recorded_revenue_when_conversions_carry_values() -> None:
    config = _sequence(
        {"event_type": "purchased", "value_property": "amount"},
        {"conversion_value": 100.0, "unsubscribe_cost": 0.5},
    )
    economics = Economics.of(config)
    assert economics == Economics(valued=True, conversion_value=100.0, unsubscribe_cost=0.5)
    got = net_value(ARM, economics)
    assert got["net_value"] == pytest.approx(27.5 - 1.2 - 2 * 0.5)  # 25.3
    assert got["net_value_per_enrolled"] == pytest.approx(25.3 / 40)


def test_net_value_prices_conversions_at_conversion_value_without_a_value_property() -> None:
    config = _sequence({"event_type": "purchased"}, {"conversion_value": 10.0})
    economics = Economics.of(config)
    assert economics == Economics(valued=False, conversion_value=10.0, unsubscribe_cost=0.0)
    got = net_value(ARM, economics)  # the recorded revenue is ignored
    assert got["net_value"] == pytest.approx(3 * 10.0 - 1.2)
    assert got["net_value_per_enrolled"] == pytest.approx(28.8 / 40)
    unpriced = Economics.of(_sequence({"event_type": "purchased"}, {}))
    assert net_value(ARM, unpriced)["net_value"] == pytest.approx(3 * 1.0 - 1.2)


def test_net_value_per_enrolled_is_none_with_no_one_enrolled() -> None:
    economics = Economics(valued=False, conversion_value=5.0, unsubscribe_cost=2.0)
    empty = {"enrolled": 0, "conversions": 0, "revenue": 0.0, "cost": 0.0, "unsubscribed": 0}
    assert net_value(empty, economics) == {"net_value": 0.0, "net_value_per_enrolled": None}
    late = {**empty, "conversions": 1, "cost": 0.5, "unsubscribed": 1}  # enrolled before
    assert net_value(late, economics) == {
        "net_value": 5.0 - 0.5 - 2.0,
        "net_value_per_enrolled": None,
    }
