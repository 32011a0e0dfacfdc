"""The ClickHouse mirror of configuration versions. The gateway's config mirror sees every
version published by any gateway; each is queued and inserted here (idempotent by
(workspace, id, version)), so analysts and the version-history endpoint see them all."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from sme.contracts.sequences import SequenceConfig
from sme.storage.clickhouse import ClickHouseStore

log = logging.getLogger(__name__)
COLUMNS = (
    "id",
    "workspace_id",
    "campaign_id",
    "name",
    "status",
    "version",
    "created_at",
    "updated_at",
    "config",
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ConfigHistory:
    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self.queue: asyncio.Queue[SequenceConfig] = asyncio.Queue()
        self._batch: list[SequenceConfig] = []  # taken from the queue, not yet stored

    def record(self, old: SequenceConfig | None, new: SequenceConfig | None) -> None:
        """A ConfigRegistry listener: queue every new version."""
        if new is not None and (old is None or old.version != new.version):
            self.queue.put_nowait(new)

    async def run(self) -> None:
        """Insert queued versions in batches until cancelled. A failed insert raises (the
        gateway's supervisor counts it and runs this again after a backoff) and its batch is
        kept for that next run, so no version is lost while ClickHouse is down."""
        while True:
            if not self._batch:
                self._batch = [await self.queue.get()]
                while not self.queue.empty() and len(self._batch) < 500:
                    self._batch.append(self.queue.get_nowait())
            await self.store.insert("configs", [_row(c) for c in self._batch], COLUMNS)
            self._batch = []

    async def versions(self, config_id: str) -> list[dict[str, Any]]:
        result = await self.store.query(
            "SELECT version, status, updated_at, config FROM {db}.configs FINAL "
            "WHERE id = {id:String} ORDER BY version",
            {"id": config_id},
        )
        return [
            {"version": int(v), "status": str(s), "updated_at": _iso(u), "config": c}
            for v, s, u, c in result.result_rows
        ]


def _row(config: SequenceConfig) -> list[Any]:
    return [
        config.id,
        config.workspace_id,
        config.campaign_id or "",
        config.name,
        config.status.value,
        config.version,
        config.created_at or EPOCH,
        config.updated_at or EPOCH,
        config.model_dump_json(),
    ]


def _iso(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
