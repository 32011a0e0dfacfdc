"""Per-key token buckets (pure: the caller passes the time), so one workspace's burst of
erasure requests is refused with 429 instead of queueing work that delays everyone."""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_TRACKED = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """`rate` requests per second per key, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst = rate, float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float:
        """Spend one token of `key`'s bucket: 0.0 when allowed, otherwise the seconds until a
        token is available (nothing is spent)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """A full bucket is the same as none: drop those when too many keys are tracked, so
        callers inventing keys cannot grow memory without bound."""
        if len(self._buckets) < MAX_TRACKED:
            return
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.at) * self.rate >= self.burst:
                del self._buckets[key]
        if len(self._buckets) >= MAX_TRACKED:  # all busy: drop the oldest (least recent) half
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].at)
            for key in oldest[: len(oldest) // 2]:
                del self._buckets[key]


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def shared_limiter(holder: object, name: str, rate: float, burst: int) -> RateLimiter:
    """The limiter kept on `holder` (an app's state) under `name`, made on first use: one
    per route family and gateway process, so every request of it draws on the same buckets."""
    limiter = getattr(holder, name, None)
    if not isinstance(limiter, RateLimiter):
        limiter = RateLimiter(rate, burst)
        setattr(holder, name, limiter)
    return limiter
