"""A clock the test moves: the engine's `clock` seam, so a wait in a sequence elapses when the
test says so instead of when the wall clock (and a loaded machine) gets there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class ShiftableClock:
    """Wall-clock UTC time plus an offset that only `advance` changes: time still flows (so
    whatever polls it keeps working), but a due time an hour away is reached only when the
    test advances the clock by an hour."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta
