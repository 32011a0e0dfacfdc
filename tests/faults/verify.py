"""What each user should have received, against what the command topics hold. Pure: the
scenarios hand it the deliveries the observer read.

- lost: an expected (user, step) without any command. Must be 0.
- duplicate deliveries: records beyond the first of one command_id. Allowed (senders dedupe
  on command_id, which is deterministic), counted.
- distinct-key duplicates: two different command_ids for one (workspace, user, config, step):
  the user would get that message twice. Must be 0.
- over cap: users whose distinct commands, by decided_at, break a frequency cap of the
  sequence. Must be 0 (the caps never bind when the engine keeps each user's send log).
- unexpected: commands for users or steps nobody asked for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tests.faults.observer import Delivery

SAMPLE = 10


@dataclass(frozen=True, slots=True)
class Expectation:
    users: frozenset[str]
    config_id: str
    steps: tuple[str, ...]
    caps: tuple[tuple[int, timedelta], ...]

    @property
    def expected(self) -> int:
        return len(self.users) * len(self.steps)


@dataclass
class Verdict:
    users: int
    expected: int
    delivered: int
    lost: int
    deliveries: int
    duplicate_deliveries: int
    distinct_key_duplicates: int
    over_cap_users: int
    unexpected: int
    lost_sample: list[str] = field(default_factory=list)
    distinct_key_sample: list[str] = field(default_factory=list)
    over_cap_sample: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.distinct_key_duplicates == 0 and self.over_cap_users == 0


def over_cap(times: list[datetime], caps: Iterable[tuple[int, timedelta]]) -> bool:
    """True if some `cap + 1` sends fall inside one rolling window (the engine counts the
    sends of the last `window`, so send j breaks it when t[j] - t[j - cap] < window)."""
    ordered = sorted(times)
    return any(
        ordered[j] - ordered[j - cap] < window
        for cap, window in caps
        for j in range(cap, len(ordered))
    )


def verify(expect: Expectation, deliveries: Iterable[Delivery]) -> Verdict:
    first: dict[str, Delivery] = {}  # command_id -> first delivery
    total = 0
    ids_by_key: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    for delivery in deliveries:
        total += 1
        first.setdefault(delivery.command_id, delivery)
        ids_by_key[delivery.distinct_key].add(delivery.command_id)

    steps = set(expect.steps)
    seen = {(d.user_id, d.step_id) for d in first.values() if d.config_id == expect.config_id}
    missing = sorted(
        f"{user}/{step}"
        for user in expect.users
        for step in expect.steps
        if (user, step) not in seen
    )
    unexpected = sum(
        1
        for d in first.values()
        if d.user_id not in expect.users
        or d.config_id != expect.config_id
        or d.step_id not in steps
    )
    split = sorted("/".join(key[1:]) for key, ids in ids_by_key.items() if len(ids) > 1)
    times_by_user: dict[str, list[datetime]] = defaultdict(list)
    for d in first.values():
        if d.config_id == expect.config_id:
            times_by_user[d.user_id].append(d.decided_at)
    capped = sorted(u for u, times in times_by_user.items() if over_cap(times, expect.caps))
    delivered = expect.expected - len(missing)
    return Verdict(
        users=len(expect.users),
        expected=expect.expected,
        delivered=delivered,
        lost=len(missing),
        deliveries=total,
        duplicate_deliveries=total - len(first),
        distinct_key_duplicates=sum(len(ids) - 1 for ids in ids_by_key.values() if len(ids) > 1),
        over_cap_users=len(capped),
        unexpected=unexpected,
        lost_sample=missing[:SAMPLE],
        distinct_key_sample=split[:SAMPLE],
        over_cap_sample=capped[:SAMPLE],
    )
