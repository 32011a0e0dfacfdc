"""Population statistics shared by all engine instances, eventually consistent.

Each partition's owner keeps that partition's cumulative counts in memory, continuing from the
last value in the compacted stats topic (keyed `<partition>|<stat key>`), and publishes
changed counts there every `SME_STATS_PUBLISH_SECONDS`. Every instance mirrors that topic and
sums over partitions, so totals are exact once the topic is read, whoever owned which
partition when (a crash loses at most one publish interval of counts). A value is
`[trials, successes, as_of_ms]` (`[trials, successes]` from older versions): for a sequence
with a half-life the counts are discounted to `as_of_ms`, and the totals sum each partition's
counts as last published (a partition discounts its own counts whenever it updates them).

Bounded: only keys the core produces (context groups are buckets, `core.stats`) are kept;
keys with raw context values written by older versions are ignored, and a deleted key
(tombstone) is forgotten."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from sme.core.stats import Counts, bounded_key


class StatsBoard(Mapping[str, Counts]):
    """The summed view (a read-only Mapping the core takes as `StatsView`)."""

    def __init__(self) -> None:
        self._per_partition: dict[str, Counts] = {}
        self._as_of: dict[str, int] = {}  # <partition>|<stat key> -> as_of_ms, when published
        self._totals: dict[str, Counts] = {}
        self._holders: dict[str, int] = {}  # stat key -> partitions holding it

    def apply(self, key: str, value: bytes | None) -> None:
        partition_key, _, stat_key = key.partition("|")
        if not stat_key or not partition_key.isdigit() or not bounded_key(stat_key):
            return
        new: Counts = (0.0, 0.0)
        if value is not None:
            trials, successes, *as_of = orjson.loads(value)
            new = (float(trials), float(successes))
            if as_of:
                self._as_of[key] = int(as_of[0])
            else:
                self._as_of.pop(key, None)
        else:
            self._as_of.pop(key, None)
        held = key in self._per_partition
        old = self._per_partition.pop(key, (0.0, 0.0))
        holders = self._holders.get(stat_key, 0) - held
        if value is not None:
            self._per_partition[key] = new
            holders += 1
        if holders == 0:  # no partition publishes it any more
            self._holders.pop(stat_key, None)
            self._totals.pop(stat_key, None)
            return
        self._holders[stat_key] = holders
        total = self._totals.get(stat_key, (0.0, 0.0))
        self._totals[stat_key] = (total[0] + new[0] - old[0], total[1] + new[1] - old[1])

    def partition_counts(self, key: str) -> Counts:
        """The last published counts of one `<partition>|<stat key>`."""
        return self._per_partition.get(key, (0.0, 0.0))

    def partition_record(self, key: str, now_ms: int) -> tuple[float, float, int]:
        """`[trials, successes, as_of_ms]` to continue counting from; counts published without
        a time (older versions) are taken as of `now_ms` (not discounted for the past)."""
        trials, successes = self._per_partition.get(key, (0.0, 0.0))
        return trials, successes, self._as_of.get(key, now_ms)

    def __getitem__(self, key: str) -> Counts:
        return self._totals[key]

    def get(self, key: str, default: Any = None) -> Any:
        """A plain dict look-up: Mapping's default raises and catches KeyError on every miss,
        and the policy's prior fit looks up every group key of an arm, most of them absent."""
        return self._totals.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._totals)

    def __len__(self) -> int:
        return len(self._totals)
