"""Experiment arms: a deterministic hash of (config, user), so a user keeps their arm across
restarts and instances, and the population splits in the configured proportions."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sme.contracts.commands import Arm
from sme.contracts.sequences import Experiment
from sme.core.arms import BUCKETS, assign_arm, bucket

USERS = [f"user-{i}" for i in range(20_000)]


def split(config_id: str, experiment: Experiment) -> dict[Arm, float]:
    counts = Counter(assign_arm(config_id, user, experiment) for user in USERS)
    return {arm: counts[arm] / len(USERS) for arm in Arm}


def oracle_arm(config_id: str, user_id: str, holdout_bps: int, baseline_bps: int) -> Arm:
    """The documented assignment, written out independently: SHA-256 of
    "<len(config)>:<config><user>", the first 8 bytes big-endian modulo 10,000 buckets;
    buckets below the holdout's basis points are holdout, the next baseline's are baseline."""
    digest = hashlib.sha256(f"{len(config_id)}:{config_id}{user_id}".encode()).digest()
    b = int.from_bytes(digest[:8], "big") % 10_000
    if b < holdout_bps:
        return Arm.HOLDOUT
    return Arm.BASELINE if b < holdout_bps + baseline_bps else Arm.ADAPTIVE


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_the_same_config_and_user_always_get_the_same_arm(config_id: str, user_id: str) -> None:
    experiment = Experiment(holdout_pct=10, baseline_pct=45)  # 1,000 and 4,500 buckets

    expected = oracle_arm(config_id, user_id, 1_000, 4_500)
    assert assign_arm(config_id, user_id, experiment) is expected
    assert assign_arm(config_id, user_id, experiment) is expected, "and again"
    assert 0 <= bucket(config_id, user_id) < BUCKETS


def test_the_assignment_is_a_fixed_function_of_its_inputs() -> None:
    # Pinned: a change here would silently move every enrolled user to another arm.
    assert bucket("cfg-1", "user-1") == 2085
    assert bucket("onboarding", "alice") == 4833


@pytest.mark.parametrize(
    ("holdout", "baseline"), [(10, 45), (0, 50), (5, 0), (33.3, 33.3), (20, 80)]
)
def test_the_split_matches_the_percentages_over_many_users(holdout: float, baseline: float) -> None:
    shares = split("cfg-split", Experiment(holdout_pct=holdout, baseline_pct=baseline))

    assert shares[Arm.HOLDOUT] == pytest.approx(holdout / 100, abs=0.01)
    assert shares[Arm.BASELINE] == pytest.approx(baseline / 100, abs=0.01)
    assert shares[Arm.ADAPTIVE] == pytest.approx(1 - (holdout + baseline) / 100, abs=0.01)


def test_zero_percent_means_nobody_and_hundred_percent_means_everybody() -> None:
    assert split("c", Experiment(holdout_pct=0, baseline_pct=0))[Arm.ADAPTIVE] == 1.0
    assert split("c", Experiment(holdout_pct=100, baseline_pct=0))[Arm.HOLDOUT] == 1.0
    assert split("c", Experiment(holdout_pct=0, baseline_pct=100))[Arm.BASELINE] == 1.0


def test_arms_in_two_configs_are_independent() -> None:
    experiment = Experiment(holdout_pct=20, baseline_pct=0)

    both = sum(
        assign_arm("cfg-a", u, experiment) is Arm.HOLDOUT
        and assign_arm("cfg-b", u, experiment) is Arm.HOLDOUT
        for u in USERS
    )

    assert both / len(USERS) == pytest.approx(0.2 * 0.2, abs=0.01)


def test_growing_the_holdout_only_moves_users_into_it() -> None:
    small, large = (
        Experiment(holdout_pct=5, baseline_pct=0),
        Experiment(holdout_pct=15, baseline_pct=0),
    )

    in_small = {u for u in USERS[:5000] if assign_arm("cfg", u, small) is Arm.HOLDOUT}
    in_large = {u for u in USERS[:5000] if assign_arm("cfg", u, large) is Arm.HOLDOUT}

    assert len(in_small) == pytest.approx(250, abs=60)  # 5% of 5,000, never vacuous
    assert in_small <= in_large
    assert len(in_large) == pytest.approx(750, abs=90)  # 15% of 5,000


def test_config_and_user_ids_cannot_be_shifted_into_each_other() -> None:
    pairs = [("ab", "c"), ("a", "bc"), ("abc", ""), ("1:a", "b"), ("1", ":ab")]

    assert len({bucket(c, u) for c, u in pairs}) == len(pairs)
