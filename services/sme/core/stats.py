"""Population statistics keys. Counts are (trials, successes) per (config, step, channel) and
per (config, step, variant), split by context group; "*" is the pooled group. A success is a
click or conversion attributed to the message (at most one per message)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sme.core.user_state import Profile

POOLED = "*"
Counts = tuple[float, float]
StatsView = Mapping[str, Counts]


@dataclass(frozen=True, slots=True)
class StatDelta:
    key: str
    trials: int
    successes: int


def channel_key(config_id: str, step_id: str, channel: str, group: str) -> str:
    return f"c|{config_id}|{step_id}|{channel}|{group}"


def variant_key(config_id: str, step_id: str, variant: str, group: str) -> str:
    return f"v|{config_id}|{step_id}|{variant}|{group}"


def context_group(profile: Profile, attributes: Sequence[str]) -> str:
    """The user's context group: their values of the configured attributes, or pooled."""
    if not attributes:
        return POOLED
    return ";".join(f"{name}={profile.attributes.get(name)}" for name in attributes)


def deltas(
    config_id: str,
    step_id: str,
    channel: str,
    variant: str,
    group: str,
    trials: int,
    successes: int,
) -> tuple[StatDelta, ...]:
    """The same observation counted in its group and in the pooled statistics."""
    groups = (group,) if group == POOLED else (group, POOLED)
    return tuple(
        StatDelta(key(config_id, step_id, arm_value, g), trials, successes)
        for g in groups
        for key, arm_value in ((channel_key, channel), (variant_key, variant))
    )
