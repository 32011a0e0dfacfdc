"""Discounted population statistics: a world that changes is followed because old evidence
fades (half-life per sequence); without a half-life nothing fades."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sme.core.stats import DAY_MS, add_decayed, config_of


def test_counts_halve_every_half_life_before_the_new_evidence_is_added() -> None:
    counts = [100.0, 40.0, 0.0]
    add_decayed(counts, 1, 1, 2 * DAY_MS, half_life=2.0)
    assert counts == [pytest.approx(51.0), pytest.approx(21.0), 2 * DAY_MS]


def test_no_half_life_is_plain_counting() -> None:
    counts = [100.0, 40.0, 0.0]
    add_decayed(counts, 1, 0, 30 * DAY_MS, half_life=None)
    assert counts == [101.0, 40.0, 30 * DAY_MS]


@given(
    steps=st.lists(
        st.tuples(st.integers(0, 10 * DAY_MS), st.integers(0, 3), st.integers(0, 3)), max_size=30
    ),
    half_life=st.floats(0.1, 100),
)
def test_discounted_counts_never_exceed_the_plain_counts_nor_go_negative(
    steps: list[tuple[int, int, int]], half_life: float
) -> None:
    discounted, plain, now = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 0
    for gap, trials, successes in steps:
        now += gap
        add_decayed(discounted, trials, min(successes, trials), now, half_life)
        add_decayed(plain, trials, min(successes, trials), now, None)
    assert 0 <= discounted[0] <= plain[0] + 1e-9
    assert 0 <= discounted[1] <= discounted[0] + 1e-9


def test_a_key_names_its_sequence() -> None:
    assert config_of("c|welcome|s1|email|*") == "welcome"
    assert config_of("garbage") == ""
