"""An erasure's progress answers `requested` from the gateway's memory until its row is in
ClickHouse, even when the flush lands while the progress query is under way (the row was not
yet visible to the query, and the flush dropped the memory entry)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sme.gateway.auth import LOCAL
from sme.gateway.users_api import ErasureRecorder, erasure_progress


class FlushingStore:
    """The progress query runs while the recorder's flush completes: it sees no row."""

    def __init__(self) -> None:
        self.recorder: ErasureRecorder | None = None
        self.inserted: list[Any] = []

    async def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        assert self.recorder is not None
        await self.recorder.flush()
        return SimpleNamespace(result_rows=[])

    async def insert(self, table: str, rows: Sequence[Any], columns: Sequence[str]) -> None:
        self.inserted.extend(rows)


async def test_progress_is_requested_when_the_flush_lands_during_the_query() -> None:
    store = FlushingStore()
    recorder = store.recorder = ErasureRecorder(store)  # type: ignore[arg-type]
    recorder.record("acme", "0f0e", datetime(2026, 12, 1, 12, tzinfo=UTC))
    request = SimpleNamespace(
        app=SimpleNamespace(
            state=SimpleNamespace(gw=SimpleNamespace(store=store, erasures=recorder))
        )
    )

    progress = await erasure_progress(request, LOCAL, "acme", "0f0e")  # type: ignore[arg-type]

    assert progress.state == "requested"
    assert store.inserted and not recorder.pending, "the flush did land meanwhile"
