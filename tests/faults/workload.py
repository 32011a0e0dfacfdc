"""The issue's workload: users entering a 3-step sequence (waits 0, 5 and 10 s, one channel per
step, `reentry: never`, frequency caps), with events whose Kafka keys vary on purpose.

Every user gets one signup. Some also get a redelivery of that very event (same event_id) or a
second signup (new event_id, which `reentry: never` must ignore), and some a neutral
`page_viewed`; those extra events carry a different key than the signup. Keys are the user id,
no key at all, or another user's id: the engine must route by (workspace, user) itself, so
whatever the key, each user must end with exactly one command per step.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

WORKSPACE = "acme"
CONFIG_ID = "faults"
STEPS: tuple[tuple[str, int, str], ...] = (
    ("welcome", 0, "email"),
    ("nudge", 5, "sms"),
    ("last", 10, "push"),
)
"""(step id, wait after the previous step in seconds, channel)."""

SEQUENCE_SPAN_S = sum(wait for _, wait, _ in STEPS)
CAPS: tuple[tuple[int, timedelta], ...] = ((3, timedelta(days=1)), (2, timedelta(seconds=9)))
"""(max sends, rolling window). Never binding when the engine is right (3 steps a day; any
9 s window holds at most 2 of steps at 0, 5 and 15 s); a user over one lost their send log."""


FOLLOW_UPS: tuple[tuple[int, int, float, str, str, str], ...] = (
    # (every n-th user, remainder, seconds after the signup, kind, event id suffix, type)
    (4, 0, 1.0, "redelivery", "", "signed_up"),  # the same event again: deduped
    (5, 1, 2.0, "second_signup", "-again", "signed_up"),  # reentry never: ignored
    (2, 0, 3.0, "page_view", "-view", "page_viewed"),  # neutral: touches the user's state
)


class KeyMode(StrEnum):
    USER = "user"  # key = user id (what the contract asks of producers)
    NONE = "none"  # no key: the producer picks a partition
    WRONG = "wrong"  # another user's id: lands on someone else's partition


def _iso(delta: timedelta) -> str:
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"P{delta.days}D" if delta.days else f"PT{hours}H{minutes}M{seconds}S"


def sequence_config() -> dict[str, Any]:
    """The sequence under test, in the format `sme configs apply` takes."""
    return {
        "id": CONFIG_ID,
        "workspace_id": WORKSPACE,
        "name": "Fault suite: three steps",
        "entry": {"event_types": ["signed_up"], "reentry": {"policy": "never"}},
        "steps": [
            {
                "id": step_id,
                "wait": f"PT{wait}S",
                "template": f"t-{step_id}",
                "channels": [channel],
            }
            for step_id, wait, channel in STEPS
        ],
        "guardrails": {
            "frequency_caps": [{"max": cap, "per": _iso(window)} for cap, window in CAPS],
            "on_limit": "defer",
        },
        "experiment": {"holdout_pct": 0, "baseline_pct": 0},
    }


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One message to publish `at` seconds after the workload starts. `body` lacks
    `occurred_at`: the publisher stamps it when the event id is first sent."""

    at: float
    user: str
    kind: str  # "signup", "redelivery", "second_signup", "page_view"
    key_mode: KeyMode
    key: bytes | None
    event_id: str
    body: dict[str, Any]
    resent: bool = False  # a later planned event repeats this event id (a redelivery)


@dataclass(frozen=True, slots=True)
class Workload:
    users: int
    rate: float  # signups per second
    tag: str  # makes user and event ids unique to one scenario
    seed: int = 0

    def user(self, i: int) -> str:
        return f"{self.tag}-u{i}"

    @property
    def user_ids(self) -> list[str]:
        return [self.user(i) for i in range(self.users)]

    @property
    def duration_s(self) -> float:
        return self.users / self.rate

    def plan(self) -> Iterator[PlannedEvent]:
        """Every message of the workload in publishing order, generated lazily (a soak has
        hundreds of thousands): follow-ups wait in a heap until their time comes."""
        rng = random.Random(self.seed)
        modes = list(KeyMode)
        later: list[tuple[float, int, PlannedEvent]] = []
        order = itertools.count()  # ties keep planning order
        for i in range(self.users):
            at = i / self.rate
            while later and later[0][0] <= at:
                yield heapq.heappop(later)[2]
            signup = self._planned(
                at, i, "signup", modes[i % 3], f"{self.tag}-e{i}", "signed_up", rng
            )
            resent = any(i % n == r and not suffix for n, r, _, _, suffix, _ in FOLLOW_UPS)
            yield dataclasses.replace(signup, resent=resent)
            for every, remainder, after, kind, suffix, event_type in FOLLOW_UPS:
                if i % every == remainder:
                    other = modes[(i + 1 + rng.randrange(2)) % 3]  # never the signup's key mode
                    event_id = f"{self.tag}-e{i}{suffix}"
                    event = self._planned(at + after, i, kind, other, event_id, event_type, rng)
                    heapq.heappush(later, (event.at, next(order), event))
        while later:
            yield heapq.heappop(later)[2]

    def _planned(
        self,
        at: float,
        i: int,
        kind: str,
        mode: KeyMode,
        event_id: str,
        event_type: str,
        rng: random.Random,
    ) -> PlannedEvent:
        user = self.user(i)
        key: bytes | None = None
        if mode is KeyMode.USER:
            key = user.encode()
        elif mode is KeyMode.WRONG:
            other = self.user((i + 1 + rng.randrange(max(self.users - 1, 1))) % self.users)
            key = (other if other != user else f"{self.tag}-nobody").encode()
        body = {
            "event_id": event_id,
            "workspace_id": WORKSPACE,
            "user_id": user,
            "type": event_type,
            "user": {"timezone": "UTC", "consent": {"email": True, "sms": True, "push": True}},
        }
        return PlannedEvent(at, user, kind, mode, key, event_id, body)


def event_bytes(body: dict[str, Any]) -> bytes:
    """The wire form of a planned event, occurring now."""
    return orjson.dumps({**body, "occurred_at": datetime.now(UTC).isoformat()})
