"""What the gateway stored: it owns the embedded ClickHouse store, so the suite asks it over
HTTP (POST /api/v1/sql; auth is off on loopback when no keys are configured)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx


class StoreUnavailableError(RuntimeError):
    """The gateway did not answer the query."""


@dataclass(frozen=True, slots=True)
class StoreCounts:
    rows: int  # physical rows (a redelivered activity may sit twice until merges)
    distinct_ids: int


async def ready(base_url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=3) as http:
            return (await http.get("/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


async def wait_ready(base_url: str, timeout_s: float) -> float | None:
    """Wall-clock time the gateway first answered ready, None if it did not in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await ready(base_url):
            return time.time()
        await asyncio.sleep(0.25)
    return None


async def counts(base_url: str) -> StoreCounts:
    query = "SELECT count(), uniqExact(activity_id) FROM activities"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=40) as http:
            response = await http.post("/api/v1/sql", json={"query": query, "max_rows": 1})
    except httpx.HTTPError as exc:
        raise StoreUnavailableError(f"gateway did not answer: {exc!r}") from exc
    if response.status_code != 200:
        raise StoreUnavailableError(f"HTTP {response.status_code}: {response.text[:500]}")
    rows, distinct = response.json()["rows"][0]
    return StoreCounts(int(rows), int(distinct))
