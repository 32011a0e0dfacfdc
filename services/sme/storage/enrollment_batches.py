"""Accepted list-enrollment batches in ClickHouse (`enrollment_batches`): what makes a batch id
idempotent across gateway restarts. No user ids are stored, only a digest of the batch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sme.storage.clickhouse import ClickHouseStore

COLUMNS = (
    "workspace_id",
    "config_id",
    "batch_id",
    "digest",
    "received",
    "accepted",
    "duplicates",
    "accepted_at",
)
FIRST = """
SELECT argMin(digest, accepted_at), argMin(received, accepted_at),
       argMin(accepted, accepted_at), argMin(duplicates, accepted_at), min(accepted_at)
FROM {db}.enrollment_batches
WHERE workspace_id = {w:String} AND config_id = {c:String} AND batch_id = {b:String}
HAVING count() > 0
"""


@dataclass(frozen=True, slots=True)
class BatchRecord:
    workspace_id: str
    config_id: str
    batch_id: str
    digest: str
    received: int
    accepted: int
    duplicates: int
    accepted_at: datetime


async def find_batch(
    store: ClickHouseStore, workspace_id: str, config_id: str, batch_id: str
) -> BatchRecord | None:
    """The first acceptance of this batch id for the sequence, or None."""
    result = await store.query(FIRST, {"w": workspace_id, "c": config_id, "b": batch_id})
    if not result.result_rows:
        return None
    digest, received, accepted, duplicates, accepted_at = result.result_rows[0]
    return BatchRecord(
        workspace_id,
        config_id,
        batch_id,
        str(digest),
        int(received),
        int(accepted),
        int(duplicates),
        accepted_at,
    )


async def record_batch(store: ClickHouseStore, record: BatchRecord) -> None:
    row = [
        record.workspace_id,
        record.config_id,
        record.batch_id,
        record.digest,
        record.received,
        record.accepted,
        record.duplicates,
        record.accepted_at,
    ]
    await store.insert("enrollment_batches", [row], COLUMNS)
