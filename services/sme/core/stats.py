"""Population statistics keys. Counts are (trials, successes) per (config, step, channel) and
per (config, step, variant), split by context group; "*" is the pooled group. A success is a
click or conversion attributed to the message (at most one per message). Two more kinds share
the format, for the engine to count when it wires them (see `unsubscribe_deltas`,
`send_hour_deltas`): unsubscribes per (config, step, channel) message, and successes per
message by the user's local send hour (config, hour).

Keys are bounded by the configuration: a context group is one of `CONTEXT_GROUPS` buckets (a
hash of the user's values of the configured attributes), never the raw values, so a million
distinct values make at most `CONTEXT_GROUPS + 1` groups per (config, step, channel/variant)."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

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


def unsubscribe_key(config_id: str, step_id: str, channel: str, group: str) -> str:
    """(messages, unsubscribes they caused) of one channel at one step."""
    return f"u|{config_id}|{step_id}|{channel}|{group}"


def conversion_key(config_id: str, step_id: str, channel: str, group: str) -> str:
    """(messages, conversions credited to them) of one channel at one step: what the value
    objectives pay for (a click is a success, not a conversion). Counted only for sequences
    whose objective is revenue or net_value."""
    return f"k|{config_id}|{step_id}|{channel}|{group}"


def send_hour_key(config_id: str, hour: int, group: str) -> str:
    """(messages, successes) of messages sent at one local hour of the user (0-23)."""
    return f"t|{config_id}|{hour}|{group}"


@lru_cache(maxsize=4096)
def group_keys(pooled_key: str) -> tuple[str, ...]:
    """Every context-group key of the arm whose pooled key is given (bounded: the buckets)."""
    prefix = pooled_key[: -len(POOLED)]
    return tuple(f"{prefix}#{i}" for i in range(CONTEXT_GROUPS))


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


_KINDS = frozenset({"c", "v", "u", "k", "t", "r", "w"})


def bounded_key(stat_key: str) -> bool:
    """Whether a statistics key has a group this version produces (the pooled group or a
    bucket); keys written by older versions with raw context values are not."""
    kind, _, rest = stat_key.partition("|")
    if kind not in _KINDS:
        return False
    group = rest.rpartition("|")[2]
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


def unsubscribe_deltas(
    config_id: str, step_id: str, channel: str, group: str, messages: int, unsubscribes: int
) -> tuple[StatDelta, ...]:
    """A message (1, 0) or the unsubscribe it caused (0, 1), in its group and pooled: the
    evidence the net-value objective weighs against a channel's success rate."""
    groups = (group,) if group == POOLED else (group, POOLED)
    return tuple(
        StatDelta(unsubscribe_key(config_id, step_id, channel, g), messages, unsubscribes)
        for g in groups
    )


def conversion_deltas(
    config_id: str, step_id: str, channel: str, group: str, messages: int, conversions: int
) -> tuple[StatDelta, ...]:
    """A message (1, 0) or the conversion credited to it (0, 1), in its group and pooled."""
    groups = (group,) if group == POOLED else (group, POOLED)
    return tuple(
        StatDelta(conversion_key(config_id, step_id, channel, g), messages, conversions)
        for g in groups
    )


def repeat_key(config_id: str, channel: str) -> str:
    """Pooled over groups and steps: (earlier messages on the channel, summed over messages,
    earlier successes on it, summed over successes): E[p^2] of the users' success rates,
    weighted by their history (see `repeat_deltas`)."""
    return f"r|{config_id}|{channel}|{POOLED}"


def history_key(config_id: str, channel: str) -> str:
    """Pooled: (earlier messages, summed over messages; earlier messages, summed over
    successes): E[p] of the users' success rates under the same weighting as `repeat_key`."""
    return f"w|{config_id}|{channel}|{POOLED}"


def repeat_deltas(
    config_id: str, channel: str, earlier_messages: int, earlier_successes: int, success: bool
) -> tuple[StatDelta, ...]:
    """How a user's successes repeat on a channel, for the spread of success rates between
    users (`policy.user_prior_strength`). A message to a user with n earlier messages on the
    channel adds n trials to both keys; its success adds the user's x earlier successes to
    `repeat_key` and n to `history_key`. For a user with rate p, E[x * success] = n p^2 and
    E[n * success] = n p, so the keys' ratios estimate E[p^2] and E[p] over users."""
    if earlier_messages <= 0:
        return ()
    if not success:
        return (
            StatDelta(repeat_key(config_id, channel), earlier_messages, 0),
            StatDelta(history_key(config_id, channel), earlier_messages, 0),
        )
    return (
        StatDelta(repeat_key(config_id, channel), 0, earlier_successes),
        StatDelta(history_key(config_id, channel), 0, earlier_messages),
    )


def send_hour_deltas(
    config_id: str, hour: int, group: str, messages: int, successes: int
) -> tuple[StatDelta, ...]:
    """A message sent at the user's local `hour` (1, 0) or its success (0, 1), in its group
    and pooled: the population's response by send hour that send-time choice starts from."""
    groups = (group,) if group == POOLED else (group, POOLED)
    return tuple(StatDelta(send_hour_key(config_id, hour, g), messages, successes) for g in groups)


# --- discounting -----------------------------------------------------------------------------

DecayedCounts = tuple[float, float, int]
"""(trials, successes, as_of_ms): counts discounted to the time they were last updated."""

DAY_MS = 86_400_000


def decay_factor(elapsed_ms: int, half_life_days: float | None) -> float:
    """The weight of an observation `elapsed_ms` old: halves every `half_life_days`."""
    if half_life_days is None or elapsed_ms <= 0:
        return 1.0
    return math.exp(-math.log(2) * elapsed_ms / (half_life_days * DAY_MS))


def merge_decayed(
    current: DecayedCounts | None,
    trials: float,
    successes: float,
    now_ms: int,
    half_life_days: float | None,
) -> DecayedCounts:
    """Discount the stored counts to `now_ms`, then add the delta: the exponentially weighted
    counts a non-stationary world needs, kept in O(1) per key. Counts from the future (a
    clock behind another instance's) are not inflated: the later time is kept."""
    if current is None:
        return (float(trials), float(successes), now_ms)
    t, s, at = current
    f = decay_factor(now_ms - at, half_life_days)
    return (t * f + trials, s * f + successes, max(at, now_ms))


def config_of(stat_key: str) -> str:
    """The sequence a statistics key belongs to (`<kind>|<config>|…`): its `adaptive`
    settings (half-life) apply."""
    return stat_key.split("|", 2)[1] if stat_key.count("|") >= 2 else ""


def add_decayed(
    counts: list[float], trials: float, successes: float, now_ms: int, half_life: float | None
) -> None:
    """`merge_decayed` in place on a `[trials, successes, as_of_ms]` list (the engine's and
    the simulator's running counts): discount to `now_ms`, then add."""
    if half_life is not None and now_ms > counts[2]:
        f = decay_factor(int(now_ms - counts[2]), half_life)
        counts[0] *= f
        counts[1] *= f
    counts[0] += trials
    counts[1] += successes
    counts[2] = max(counts[2], now_ms)


def sum_decayed(
    parts: Iterable[DecayedCounts], now_ms: int, half_life_days: float | None
) -> tuple[float, float]:
    """Partitions' decayed counts summed at `now_ms` (each discounted from its own time)."""
    trials = successes = 0.0
    for t, s, at in parts:
        f = decay_factor(now_ms - at, half_life_days)
        trials += t * f
        successes += s * f
    return trials, successes


# --- metrics ---------------------------------------------------------------------------------


def group_counts(keys: Iterable[str]) -> dict[tuple[str, str, str], int]:
    """Context groups (pooled excluded) per (kind, config, step) among the statistics keys:
    what the engine exports as a gauge so a runaway attribute is visible. Kinds: c channel,
    v variant, u unsubscribe, k conversion, t send hour (step "*": its groups span the hours)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    seen: set[tuple[str, str, str, str]] = set()
    for key in keys:
        parts = key.split("|")
        if len(parts) < 4 or parts[-1] == POOLED:
            continue
        kind, config_id, step_id, group = parts[0], parts[1], parts[2], parts[-1]
        if kind == "t":
            step_id = "*"
        ident = (kind, config_id, step_id, group)
        if ident not in seen:
            seen.add(ident)
            counts[(kind, config_id, step_id)] += 1
    return dict(counts)
