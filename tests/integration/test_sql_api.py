"""Ad-hoc SQL through the gateway: read-only, row-limited, isolated from the service's own
ClickHouse handles, admin only; and `sme sql` on top of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from sme.cli import main as sme
from sme.gateway.auth import add_key
from sme.settings import Settings
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"


async def test_sql_is_read_only_limited_and_leaves_the_service_writable(
    test_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_gateway(test_settings) as api:
        counted = await api.post(
            "/api/v1/sql", json={"query": "SELECT count() AS n FROM activities"}
        )
        assert counted.status_code == 200, counted.text
        assert counted.json()["columns"] == ["n"]
        limited = (
            await api.post(
                "/api/v1/sql",
                json={
                    "query": "SELECT number FROM numbers(100000)",
                    "max_rows": 10,
                },
            )
        ).json()
        assert (len(limited["rows"]), limited["truncated"]) == (10, True)
        for statement in (
            "DROP TABLE activities",
            "INSERT INTO configs (id) VALUES ('x')",
            "SET readonly = 0",
        ):
            refused = await api.post("/api/v1/sql", json={"query": statement})
            assert refused.status_code == 400
            assert "readonly" in refused.json()["detail"].lower()
        assert (
            await api.post("/api/v1/sql", json={"query": "SELECT", "bogus": 1})
        ).status_code == 422
        created = await api.post(
            API,
            json={
                "workspace_id": "acme",
                "name": "after sql",
                "entry": {"event_types": ["signed_up"]},
                "steps": [{"id": "s", "template": "t", "channels": ["email"]}],
            },
        )
        assert created.status_code == 201, "the service's own handles stay writable"
        versions = await api.get(f"{API}/{created.json()['id']}/versions")
        assert versions.status_code == 200

        code = await asyncio.to_thread(
            sme,
            [
                "sql",
                "SELECT 1 AS one, 'two' AS two",
                "--gateway",
                str(api.base_url).rstrip("/"),
            ],
        )
        assert code == 0
        assert capsys.readouterr().out.splitlines() == ["one\ttwo", "1\ttwo"]


async def test_only_the_admin_key_runs_sql(test_settings: Settings, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    workspace_key = add_key(keys_file, "acme-ci", "acme")
    settings = test_settings.model_copy(
        update={"api_keys_file": keys_file, "admin_api_key": SecretStr("the-admin")}
    )
    async with running_gateway(settings) as api:
        query = {"query": "SELECT 1"}
        as_workspace = await api.post(
            "/api/v1/sql", json=query, headers={"Authorization": f"Bearer {workspace_key}"}
        )
        assert as_workspace.status_code == 404
        assert (await api.post("/api/v1/sql", json=query)).status_code == 401
        as_admin = await api.post(
            "/api/v1/sql", json=query, headers={"Authorization": "Bearer the-admin"}
        )
        assert as_admin.status_code == 200
