"""The in-memory due-index behind durable timers.

State is the source of truth (each user's state carries each enrollment's due time); this index
only says whom to wake, and is rebuilt from the table when partitions are assigned. A woken user
is *in flight* until its tick has been processed: it is never re-armed on a fixed retry, so one
due step costs one tick however late the engine runs. A tick can only be lost with the engine
that sent it (the rebuild after the rebalance re-arms its users) or by a failed send (re-armed at
once). Users whose only due enrollments belong to paused sequences are *parked* under those
sequences, so resuming one re-arms its users without scanning the table.

Bound: one entry per user with an open enrollment on the partitions this instance owns (the
table's own bound), plus a heap of at most four times that (compacted).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

FAILURE_BACKOFF_MS = (1_000, 5_000, 30_000)
"""After the core raised on a user's tick: wait this long before the next try; past the
last one the tick is dead-lettered and the user is not woken again until an event arrives."""


@dataclass(frozen=True, slots=True)
class Wakeup:
    key: bytes  # table key
    partition: int
    due_ms: int


class DueIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, bytes]] = []
        self._armed: dict[bytes, Wakeup] = {}
        self._in_flight: dict[bytes, Wakeup] = {}
        self._parked: dict[str, dict[bytes, int]] = {}  # config id -> key -> partition
        self._failures: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._armed) + len(self._in_flight)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def put(
        self,
        key: bytes,
        partition: int,
        due_ms: int | None,
        parked: Iterable[str] = (),
    ) -> None:
        """Arm (or disarm, with None) a user's wake-up after their state was decided; the
        latest call wins and ends any in-flight wake-up. `parked`: paused sequences this user
        has an enrollment in (woken again when one resumes)."""
        self._in_flight.pop(key, None)
        for config_id in parked:
            self._parked.setdefault(config_id, {})[key] = partition
        if due_ms is None:
            self._armed.pop(key, None)
            return
        self._arm(Wakeup(key, partition, due_ms))

    def pop_due(self, now_ms: int, limit: int = 10_000) -> list[Wakeup]:
        """Users due at `now_ms`, earliest first; each stays in flight until `put` again."""
        due: list[Wakeup] = []
        while self._heap and self._heap[0][0] <= now_ms and len(due) < limit:
            at, key = heapq.heappop(self._heap)
            entry = self._armed.get(key)
            if entry is None or entry.due_ms != at:
                continue  # superseded
            del self._armed[key]
            self._in_flight[key] = entry
            due.append(entry)
        return due

    def rearm(self, wakeups: Iterable[Wakeup], at_ms: int) -> None:
        """Their tick could not be sent: wake them again at `at_ms`."""
        for wakeup in wakeups:
            if self._in_flight.pop(wakeup.key, None) is not None:
                self._arm(Wakeup(wakeup.key, wakeup.partition, at_ms))

    def failed(self, key: bytes, partition: int, now_ms: int) -> bool:
        """The core raised on this user's tick. Re-arm with backoff and return True, or return
        False when the tries are spent (the caller dead-letters the tick)."""
        tries = self._failures.get(key, 0)
        self._in_flight.pop(key, None)
        if tries >= len(FAILURE_BACKOFF_MS):
            self._failures.pop(key, None)
            self._armed.pop(key, None)
            return False
        self._failures[key] = tries + 1
        self._arm(Wakeup(key, partition, now_ms + FAILURE_BACKOFF_MS[tries]))
        return True

    def succeeded(self, key: bytes) -> None:
        self._failures.pop(key, None)

    def resume(self, config_id: str, now_ms: int) -> int:
        """A paused sequence resumed: wake its parked users now (their tick finds what is due).
        Returns how many were woken."""
        parked = self._parked.pop(config_id, {})
        for key, partition in parked.items():
            if key not in self._in_flight:
                current = self._armed.get(key)
                if current is None or current.due_ms > now_ms:
                    self._arm(Wakeup(key, partition, now_ms))
        return len(parked)

    def retain_partitions(self, partitions: set[int]) -> None:
        """Forget users of partitions this instance no longer owns."""
        self._armed = {k: e for k, e in self._armed.items() if e.partition in partitions}
        self._in_flight = {k: e for k, e in self._in_flight.items() if e.partition in partitions}
        for config_id in list(self._parked):
            kept = {k: p for k, p in self._parked[config_id].items() if p in partitions}
            if kept:
                self._parked[config_id] = kept
            else:
                del self._parked[config_id]
        self._failures = {k: n for k, n in self._failures.items() if k in self._armed}
        self._compact()

    def forget(self, key: bytes) -> None:
        """The user was erased."""
        self._armed.pop(key, None)
        self._in_flight.pop(key, None)
        self._failures.pop(key, None)
        for parked in self._parked.values():
            parked.pop(key, None)

    def next_due_ms(self) -> int | None:
        while self._heap:
            at, key = self._heap[0]
            entry = self._armed.get(key)
            if entry is not None and entry.due_ms == at:
                return at
            heapq.heappop(self._heap)
        return None

    def _arm(self, wakeup: Wakeup) -> None:
        self._armed[wakeup.key] = wakeup
        heapq.heappush(self._heap, (wakeup.due_ms, wakeup.key))
        if len(self._heap) > 4 * len(self._armed) + 1024:
            self._compact()

    def _compact(self) -> None:
        self._heap = [(e.due_ms, k) for k, e in self._armed.items()]
        heapq.heapify(self._heap)
