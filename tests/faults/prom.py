"""The few engine metrics the soak reports, read from its Prometheus endpoint. The engine is
being rewritten: a metric that is missing is reported as None ("n/a"), never an error."""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

LAG = "sme_engine_consumer_lag"
LATENESS = "sme_timer_lateness_seconds"


async def scrape(url: str, timeout_s: float = 3.0) -> str | None:
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            response = await http.get(url)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def gauge_sum(text: str | None, name: str = LAG) -> float | None:
    """Sum over the labels of a gauge (e.g. lag over partitions); None if absent."""
    if not text:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return float(sum(sample.value for sample in family.samples))
    return None


@dataclass(frozen=True, slots=True)
class Histogram:
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending
    count: float
    total: float

    def minus(self, earlier: Histogram | None) -> Histogram:
        """Observations since `earlier` (both cumulative since the process started; a
        restarted process starts again from zero, so then this one is all there is)."""
        if earlier is None or earlier.count > self.count:
            return self
        before = dict(earlier.buckets)
        return Histogram(
            tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
            self.count - earlier.count,
            self.total - earlier.total,
        )

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket, as Prometheus' histogram_quantile does."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(le):
                    return lower  # past the last finite bound: that bound is all we know
                inside = cumulative - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = le, cumulative
        return lower


def histogram(text: str | None, name: str = LATENESS) -> Histogram | None:
    if not text:
        return None
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        buckets: dict[float, float] = {}
        count = total = 0.0
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
            elif sample.name.endswith("_sum"):
                total += sample.value
        return Histogram(tuple(sorted(buckets.items())), count, total)
    return None
