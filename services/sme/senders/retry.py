"""The retry schedule: exponential backoff with full jitter, bounded in attempts and delay, so
a struggling receiver is not hammered in lock-step by every sender at once."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    """Attempts in all, the first included; after the last a retryable failure is final."""
    base_seconds: float
    cap_seconds: float

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): uniform in
        [0, min(cap, base * 2**(attempt-1))] ("full jitter")."""
        return rng.uniform(0.0, self._ceiling(attempt))

    def may_retry(self, attempt: int) -> bool:
        return attempt < self.max_attempts

    def worst_case_seconds(self, attempt_timeout_s: float) -> float:
        """Longest one command can take: every attempt timing out and every wait at its
        ceiling. The consumer's poll interval must exceed it, or the group would evict a
        sender that is merely retrying."""
        waits = sum(self._ceiling(n) for n in range(1, self.max_attempts))
        return self.max_attempts * attempt_timeout_s + waits

    def _ceiling(self, attempt: int) -> float:
        return min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt - 1, 62))
