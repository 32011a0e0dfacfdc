"""One batch of decisions, before anything of it is written.

The adapter hands each input of a batch to `Batch`; each user's state is read once, threaded
through every decision of the batch about them, and the outputs are collected in order. Nothing
is written here: the adapter sends `outputs`, waits for the broker to acknowledge them, and only
then writes `writes` and `ledger` to the tables. So no state is ever durable before the outputs
that it records, and a crash anywhere before that replays the inputs and decides again with the
same ids (the RNG is seeded by the input's position)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sme.contracts.activities import Activity
from sme.contracts.commands import Command
from sme.core import sequence
from sme.core.user_state import UserState

StoredState = dict[str, Any]
ReadState = Callable[[bytes], StoredState | None]
ReadLedger = Callable[[str], float | None]


def rng_for(*parts: object) -> random.Random:
    """A decision's RNG, seeded by its input: a replayed input makes the same choices."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))  # noqa: S311 - sampling, not secrets


@dataclass(slots=True)
class Write:
    """The state to store for one user (None: erase), and the partition that owns it."""

    partition: int
    stored: StoredState | None
    state: UserState | None


@dataclass(slots=True)
class Batch:
    read_state: ReadState
    read_ledger: ReadLedger
    commands: list[tuple[bytes, Command]] = field(default_factory=list)
    activities: list[tuple[bytes, Activity]] = field(default_factory=list)
    writes: dict[bytes, Write] = field(default_factory=dict)
    ledger: dict[str, float] = field(default_factory=dict)  # full ledger key -> new total
    _read: dict[bytes, UserState | None] = field(default_factory=dict)

    def state(self, key: bytes) -> UserState | None:
        """The user's state as this batch has decided it so far (None: unknown or erased)."""
        if key in self.writes:
            return self.writes[key].state
        if key not in self._read:
            stored = self.read_state(key)
            self._read[key] = UserState.from_dict(stored) if stored else None
        return self._read[key]

    def partition_ledger(self, partition: int) -> Mapping[str, float]:
        return _BatchLedger(self, f"{partition}|")

    def record(
        self, key: bytes, user: bytes, partition: int, outcome: sequence.Outcome, *, before: Any
    ) -> bool:
        """Keep a decision's outputs and new state. Returns False (and writes nothing) when the
        decision changed nothing, so a tick that finds nothing due costs no state write."""
        for command in outcome.commands:
            self.commands.append((user, command))
        for activity in outcome.activities:
            self.activities.append((user, activity))
        for budget_key, amount in outcome.ledger_deltas:
            full = f"{partition}|{budget_key}"
            self.ledger[full] = self._ledger_value(full) + amount
        unchanged = outcome.state is before or outcome.state == before
        if unchanged and not outcome.commands and not outcome.activities:
            return False
        stored = outcome.state.to_dict()
        stored["p"] = partition  # where this user lives, for rebuilding the due-index
        self.writes[key] = Write(partition, stored, outcome.state)
        return True

    def activities_by_user(self) -> dict[bytes, list[Activity]]:
        """The batch's activities per record key (user id), each user's in decision order:
        they travel as one `ActivityBatch` per user, so a user's `user_erased` still comes
        after every earlier activity of theirs, and inside the bundle in the same order."""
        by_user: dict[bytes, list[Activity]] = {}
        for user, activity in self.activities:
            by_user.setdefault(user, []).append(activity)
        return by_user

    def erase(self, key: bytes, partition: int) -> None:
        self.writes[key] = Write(partition, None, None)

    def _ledger_value(self, full_key: str) -> float:
        if full_key in self.ledger:
            return self.ledger[full_key]
        return float(self.read_ledger(full_key) or 0.0)


class _BatchLedger(Mapping[str, float]):
    """One partition's budget spend as this batch sees it (the table plus pending spend)."""

    def __init__(self, batch: Batch, prefix: str) -> None:
        self.batch, self.prefix = batch, prefix

    def __getitem__(self, key: str) -> float:
        full = self.prefix + key
        if full in self.batch.ledger:
            return self.batch.ledger[full]
        value = self.batch.read_ledger(full)
        if value is None:
            raise KeyError(key)
        return float(value)

    def __iter__(self) -> Iterator[str]:
        return iter(())  # the core only looks keys up

    def __len__(self) -> int:
        return 0
