"""The in-memory due-index behind durable timers. State is the source of truth (each user's
state carries its next due time); this index only says whom to wake, and is rebuilt from the
table on every partition assignment, so it never needs a full scan per tick."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

RETRY_MS = 5_000
"""A woken user is re-armed this far ahead, so a lost tick is retried, never forgotten."""


@dataclass(frozen=True, slots=True)
class Wakeup:
    key: bytes  # table key
    partition: int
    user: bytes  # topic key (user id) for the tick message
    due_ms: int


class DueIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, bytes]] = []
        self._entries: dict[bytes, Wakeup] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: bytes, partition: int, user: bytes, due_ms: int | None) -> None:
        """Arm (or disarm, with None) a user's wake-up; the latest call wins."""
        if due_ms is None:
            self._entries.pop(key, None)
            return
        self._entries[key] = Wakeup(key, partition, user, due_ms)
        heapq.heappush(self._heap, (due_ms, key))
        if len(self._heap) > 4 * len(self._entries) + 1024:
            self._compact()

    def pop_due(self, now_ms: int, limit: int = 10_000) -> list[Wakeup]:
        """Users due at `now_ms`, earliest first; each is re-armed RETRY_MS ahead."""
        due: list[Wakeup] = []
        while self._heap and self._heap[0][0] <= now_ms and len(due) < limit:
            at, key = heapq.heappop(self._heap)
            entry = self._entries.get(key)
            if entry is None or entry.due_ms != at:
                continue  # superseded
            due.append(entry)
        for entry in due:
            self.put(entry.key, entry.partition, entry.user, now_ms + RETRY_MS)
        return due

    def retain_partitions(self, partitions: set[int]) -> None:
        self._entries = {k: e for k, e in self._entries.items() if e.partition in partitions}
        self._compact()

    def next_due_ms(self) -> int | None:
        while self._heap:
            at, key = self._heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry.due_ms == at:
                return at
            heapq.heappop(self._heap)
        return None

    def _compact(self) -> None:
        self._heap = [(e.due_ms, k) for k, e in self._entries.items()]
        heapq.heapify(self._heap)
