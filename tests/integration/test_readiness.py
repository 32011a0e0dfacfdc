"""Readiness and supervision of the services' background workers on the real broker and the
embedded store: the gateway's rollup worker outlives ClickHouse write faults (restarted with
backoff, counted) and `/readyz` names it while it is down; the engine answers `/readyz` once
it owns its partitions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.channels import Channel
from sme.settings import Settings
from sme.storage.activities import ACTIVITY_COLUMNS, activity_row
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.gateway import running_gateway
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def _sends(count: int) -> list[list[Any]]:
    return [
        activity_row(
            Activity(
                activity_id=str(uuid.uuid4()),
                type=ActivityType.COMMAND_EMITTED,
                workspace_id="acme",
                user_id=f"u-{n}",
                occurred_at=datetime.now(UTC),
                config_id="welcome",
                step_id="hello",
                channel=Channel.EMAIL,
                arm="baseline",
                cost=0.01,
            )
        )
        for n in range(count)
    ]


async def _rolled_up_sends(store: ClickHouseStore) -> int:
    rows = (
        await store.query(
            "SELECT sum(sent) FROM {db}.daily_rollup FINAL WHERE config_id = 'welcome'"
        )
    ).result_rows
    return int(rows[0][0] or 0)


async def test_the_rollup_worker_keeps_refreshing_after_clickhouse_write_faults_and_readyz_names_it(
    test_settings: Settings,
) -> None:
    async with running_gateway(test_settings) as api:
        gw = api.gateway_app.state.gw  # type: ignore[attr-defined]
        store: ClickHouseStore = gw.store
        # Rows arrive and writes fail before the rollup worker's next refresh sees them (its
        # lock holds that refresh back), so that refresh is the one that meets the fault.
        async with gw.rollup._lock:
            await store.insert("activities", _sends(3), ACTIVITY_COLUMNS)
            store.write_faults.fail("connection refused")

        async def rollup_down() -> dict[str, Any] | None:
            response = await api.get("/readyz")
            body: dict[str, Any] = response.json()
            worker = body.get("workers", {}).get("rollup", {})
            return body if response.status_code == 503 and worker.get("failures") else None

        body = await eventually(rollup_down, timeout=30, what="/readyz naming the rollup down")
        assert body["ready"] is False
        assert "worker:rollup" in body["not_ready"]
        assert body["workers"]["rollup"] == {
            "ready": False,
            "failures": body["workers"]["rollup"]["failures"],
            "last_error": "StorageUnavailableError",
        }
        assert body["checks"]["clickhouse"] is True  # reads still answer
        metrics = (await api.get("/metrics")).text
        assert 'sme_worker_up{worker="rollup"} 0.0' in metrics
        assert 'sme_worker_restarts_total{worker="rollup"}' in metrics

        store.write_faults.heal()

        # No read refreshes it here: the supervised worker itself recovers and rolls up.
        async def rolled_up() -> bool:
            return await _rolled_up_sends(store) == 3

        await eventually(rolled_up, timeout=60, what="the rollup worker refreshing again")

        async def ready() -> bool:
            return (await api.get("/readyz")).status_code == 200

        await eventually(ready, timeout=30, what="the gateway ready again")
        body = (await api.get("/readyz")).json()
        assert body["workers"]["rollup"]["ready"] is True and body["not_ready"] == []
        assert set(body["workers"]) == {
            "activity-sink",
            "config-mirror",
            "config-history",
            "rollup",
            "automation",
            "erasure-recorder",
        }
        assert 'sme_worker_up{worker="rollup"} 1.0' in (await api.get("/metrics")).text


async def test_the_engine_answers_readyz_once_it_owns_its_partitions(
    test_settings: Settings,
) -> None:
    await ensure_topics(test_settings)
    async with running_engine(test_settings) as engine:
        url = f"http://127.0.0.1:{engine.settings.engine_web_port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:

            async def alive() -> httpx.Response | None:
                response = await http.get("/healthz")
                return response if response.status_code == 200 else None

            live = await eventually(alive, timeout=60, what="the engine's /healthz 200")
            assert live.json() == {"status": "ok"}

            async def ready() -> httpx.Response | None:
                response = await http.get("/readyz")
                return response if response.status_code == 200 else None

            response = await eventually(ready, timeout=60, what="the engine's /readyz 200")
            body = response.json()
            assert body["ready"] is True and body["not_ready"] == []
            assert body["checks"] == {"partitions": True, "configs": True}
            assert set(body["workers"]) == {
                "intake",
                "configs-mirror",
                "stats-mirror",
                "timers",
                "stats-publish",
                "lag",
                "positions-audit",
            }
            metrics = (await http.get("/metrics")).text
            assert 'sme_worker_up{worker="timers"} 1.0' in metrics
