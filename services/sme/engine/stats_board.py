"""Population statistics shared by all engine instances, eventually consistent.

Each partition's owner keeps that partition's cumulative counts in a Faust table (durable by
its changelog) and publishes changed counts to the compacted stats topic, keyed
`<partition>|<stat key>`. Every instance mirrors that topic and sums over partitions, so the
totals are exact once the topic is read, whoever owned which partition when."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import orjson

from sme.core.stats import Counts


class StatsBoard(Mapping[str, Counts]):
    """The summed view (a read-only Mapping the core takes as `StatsView`)."""

    def __init__(self) -> None:
        self._per_partition: dict[str, Counts] = {}
        self._totals: dict[str, Counts] = {}

    def apply(self, key: str, value: bytes | None) -> None:
        partition_key, _, stat_key = key.partition("|")
        if not stat_key or not partition_key.isdigit():
            return
        new: Counts = (0.0, 0.0)
        if value is not None:
            trials, successes = orjson.loads(value)
            new = (float(trials), float(successes))
        old = self._per_partition.get(key, (0.0, 0.0))
        self._per_partition[key] = new
        total = self._totals.get(stat_key, (0.0, 0.0))
        self._totals[stat_key] = (total[0] + new[0] - old[0], total[1] + new[1] - old[1])

    def __getitem__(self, key: str) -> Counts:
        return self._totals[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._totals)

    def __len__(self) -> int:
        return len(self._totals)
