"""Sticky weighted draws: a hash of (kind, sequence id, step id, user id) picks one of several
weighted options, so a user always lands on the same split path or A/B variant, across
re-entries, redeliveries, replays and engine instances, with no state to keep."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_SCALE = float(2**64)


def unit(kind: str, config_id: str, step_id: str, user_id: str) -> float:
    """A uniform number in [0, 1) fixed by its inputs (length-prefixed, so no ids collide)."""
    material = "".join(f"{len(p)}:{p}" for p in (kind, config_id, step_id, user_id))
    digest = hashlib.sha256(material.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def pick(weights: Sequence[float], u: float) -> int:
    """The index whose share of the cumulative weights holds `u` (weights are positive)."""
    total = sum(weights)
    point = u * total
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        if point < acc:
            return i
    return len(weights) - 1  # rounding at the top end


def split_path(weights: Sequence[float], config_id: str, step_id: str, user_id: str) -> int:
    """The split path a user takes (independent of their variant draw: another kind)."""
    return pick(weights, unit("split", config_id, step_id, user_id))


def fixed_variant(weights: Sequence[float], config_id: str, step_id: str, user_id: str) -> int:
    """The A/B variant a user gets under the fixed_weights policy."""
    return pick(weights, unit("variant", config_id, step_id, user_id))
