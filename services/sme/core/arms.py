"""Experiment arm assignment: a deterministic hash of (config id, user id), so a user keeps
their arm across restarts, rebalances and engine instances."""

from __future__ import annotations

import hashlib

from sme.contracts.commands import Arm
from sme.contracts.sequences import Experiment

BUCKETS = 10_000


def bucket(config_id: str, user_id: str) -> int:
    digest = hashlib.sha256(f"{len(config_id)}:{config_id}{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign_arm(config_id: str, user_id: str, experiment: Experiment) -> Arm:
    b = bucket(config_id, user_id)
    holdout = round(experiment.holdout_pct * BUCKETS / 100)
    baseline = round(experiment.baseline_pct * BUCKETS / 100)
    if b < holdout:
        return Arm.HOLDOUT
    if b < holdout + baseline:
        return Arm.BASELINE
    return Arm.ADAPTIVE
