"""The storage adapter's fault seam: while it is on, every write fails like a lost connection
before it reaches ClickHouse, reads are untouched, and healing (or a count running out)
lets writes through again."""

from __future__ import annotations

from typing import Any

import pytest

from sme.errors import StorageUnavailableError
from sme.storage.clickhouse import ClickHouseStore, WriteFaults


class RecordingClient:
    """Stands in for a clickhouse-connect client: records what reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def insert(self, table: str, rows: Any, **_: Any) -> None:
        self.calls.append(f"insert {table}")

    def command(self, statement: str, **_: Any) -> None:
        self.calls.append("command")

    def query(self, statement: str, **_: Any) -> str:
        self.calls.append("query")
        return "rows"

    def close(self) -> None:
        pass


@pytest.fixture
async def store() -> Any:
    store = ClickHouseStore("http://localhost:8123/", "unit_faults")
    store._writer = RecordingClient()  # type: ignore[assignment]
    store._reader = RecordingClient()  # type: ignore[assignment]
    yield store
    await store.aclose()


def test_the_switch_is_off_until_turned_on() -> None:
    faults = WriteFaults()
    faults.check("insert")
    assert not faults.active and faults.refused == 0


def test_a_count_of_failures_heals_by_itself() -> None:
    faults = WriteFaults()
    faults.fail(times=2)
    for _ in range(2):
        with pytest.raises(StorageUnavailableError, match="injected fault"):
            faults.check("insert")
    faults.check("insert")
    assert faults.refused == 2 and not faults.active


def test_a_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WriteFaults().fail(times=0)


async def test_while_on_no_write_reaches_clickhouse_and_reads_still_do(store: Any) -> None:
    store.write_faults.fail("connection refused")

    with pytest.raises(StorageUnavailableError, match="insert into activities"):
        await store.insert("activities", [[1]], ["x"])
    with pytest.raises(StorageUnavailableError):
        await store.execute("ALTER TABLE {db}.t DELETE WHERE 1", {})
    with pytest.raises(StorageUnavailableError):
        await store.erase_users([("w1", "u1")])
    assert store._writer.calls == []
    assert await store.query("SELECT 1") == "rows"
    assert store.write_faults.refused == 3


async def test_after_healing_writes_go_through(store: Any) -> None:
    store.write_faults.fail()
    with pytest.raises(StorageUnavailableError):
        await store.insert("activities", [[1]], ["x"])
    store.write_faults.heal()

    await store.insert("activities", [[1]], ["x"])

    assert store._writer.calls == ["insert activities"]
