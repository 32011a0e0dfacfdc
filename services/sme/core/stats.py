"""Population statistics keys. Counts are (trials, successes) per (config, step, channel) and
per (config, step, variant), split by context group; "*" is the pooled group. A success is a
click or conversion attributed to the message (at most one per message).

Keys are bounded by the configuration: a context group is one of `CONTEXT_GROUPS` buckets (a
hash of the user's values of the configured attributes), never the raw values, so a million
distinct values make at most `CONTEXT_GROUPS + 1` groups per (config, step, channel/variant)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sme.core.user_state import Profile

POOLED = "*"
CONTEXT_GROUPS = 32
"""Context buckets per (config, step, channel or variant), besides the pooled group."""
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
    """The user's context group: a bucket of their values of the configured attributes, or
    pooled. Users with equal values share a bucket; a bucket may hold several contexts."""
    if not attributes:
        return POOLED
    material = "".join(
        f"{len(text)}:{text}"
        for name in attributes
        for text in (name, repr(profile.attributes.get(name)))
    )
    digest = hashlib.blake2b(material.encode(), digest_size=4).digest()
    return f"#{int.from_bytes(digest, 'big') % CONTEXT_GROUPS}"


def bounded_key(stat_key: str) -> bool:
    """Whether a statistics key has a group this version produces (the pooled group or a
    bucket); keys written by older versions with raw context values are not."""
    group = stat_key.rpartition("|")[2]
    if group == POOLED:
        return True
    return group[:1] == "#" and group[1:].isdigit() and int(group[1:]) < CONTEXT_GROUPS


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
