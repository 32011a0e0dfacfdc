"""A bounded memory of commands already settled, so a redelivered command is not sent again.

Limits, by design: it is per process and in memory (a restarted sender remembers nothing and
may resend what it sent but had not committed yet), it forgets the oldest ids beyond its
capacity, and two sender processes do not share it (a rebalance can hand an uncommitted
command to another one). Kafka commits after each batch's outcomes keep that window small;
receivers that must never see a repeat dedupe on the `X-SME-Command-Id` header."""

from __future__ import annotations

from collections import OrderedDict


class SettledCommands:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, command_id: str) -> None:
        self._ids[command_id] = None
        self._ids.move_to_end(command_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
