"""Per-variant results: the probability that each variant is best (numerical integration)
against known cases and a fixed-seed Monte Carlo, and the Wilson interval per variant."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sme.core.lift import wilson_interval
from sme.core.variants import prob_best, variant_results


def _monte_carlo(counts: list[tuple[int, int]], draws: int = 100_000) -> list[float]:
    rng = random.Random(1)
    wins = [0] * len(counts)
    for _ in range(draws):
        samples = [rng.betavariate(1 + c, 1 + n - c) for n, c in counts]
        wins[samples.index(max(samples))] += 1
    return [w / draws for w in wins]


def test_two_equal_variants_are_even() -> None:
    assert prob_best([(1000, 100), (1000, 100)]) == pytest.approx([0.5, 0.5], abs=1e-9)
    assert prob_best([(0, 0)] * 3) == pytest.approx([1 / 3] * 3, abs=1e-9)


def test_a_clearly_better_variant_is_almost_surely_best() -> None:
    best = prob_best([(1000, 100), (1000, 200)])
    assert best[1] > 0.99
    assert sum(best) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "counts",
    [
        [(1000, 110), (1000, 100)],
        [(50, 5), (60, 9), (40, 2)],
        [(100_000, 1000), (20, 1), (5000, 60)],
        [(10, 0), (10, 1)],
    ],
)
def test_it_agrees_with_a_monte_carlo_estimate(counts: list[tuple[int, int]]) -> None:
    for exact, sampled in zip(prob_best(counts), _monte_carlo(counts), strict=True):
        assert exact == pytest.approx(sampled, abs=0.005)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.integers(0, 10_000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))),
        min_size=1,
        max_size=10,
    )
)
def test_shares_are_probabilities_that_sum_to_one(counts: list[tuple[int, int]]) -> None:
    best = prob_best(counts)
    assert all(0.0 <= p <= 1.0 for p in best)
    assert sum(best) == pytest.approx(1.0)


def test_variant_results_carry_rates_intervals_and_skip_unsent_variants() -> None:
    a, b, c = variant_results([(200, 20), (200, 40), (0, 0)])
    assert (a.sent, a.conversions, a.conversion_rate) == (200, 20, 0.1)
    assert a.conversion_rate_ci95 == wilson_interval(20, 200)
    assert b.prob_best is not None and b.prob_best > 0.99
    assert (c.conversion_rate, c.conversion_rate_ci95, c.prob_best) == (None, None, None)
