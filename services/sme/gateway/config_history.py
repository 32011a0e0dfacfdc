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

    def record(self, old: SequenceConfig | None, new: SequenceConfig | None) -> None:
        """A ConfigRegistry listener: queue every new version."""
        if new is not None and (old is None or old.version != new.version):
            self.queue.put_nowait(new)

    async def run(self) -> None:
        """Insert queued versions in batches until cancelled; retry while ClickHouse is down."""
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 500:
                batch.append(self.queue.get_nowait())
            rows = [_row(c) for c in batch]
            delay = 0.2
            while True:
                try:
                    await self.store.insert("configs", rows, COLUMNS)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("config history insert failed (%s); retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)

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
