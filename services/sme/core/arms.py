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


def arm_of_record(config_id: str, user_id: str, experiment: Experiment, exposed: Arm | None) -> Arm:
    """The arm a user is in for a sequence: the one of their first exposure, always (a later
    change of the split moves nobody who was already exposed, so a conversion, a re-entry
    and the exposure agree). The split decides only for a user never exposed (or a state
    stored before the arm was kept)."""
    return exposed if exposed is not None else assign_arm(config_id, user_id, experiment)
