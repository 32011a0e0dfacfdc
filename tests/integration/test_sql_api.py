"""Ad-hoc SQL through the gateway: a sandbox (one SELECT over the SME tables, nothing that
reaches files, hosts or other databases), row- and time-limited, isolated from the service's
own ClickHouse handles, admin only; and `sme sql` on top of it."""

# ruff: noqa: S608  # SQL built from strings is the very subject of these tests

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sme.cli import main as sme
from sme.contracts.activities import Activity, ActivityType
from sme.gateway.auth import add_key
from sme.settings import Settings
from sme.storage import clickhouse
from tests.support.gateway import running_gateway
from tests.support.kafka_io import publish
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
SECRET = "secret-line-7f3a9c"
ADMIN_KEY = "sql-tests-admin-key-2f9b6d1e8a7c"  # long enough for the key-strength check


async def sql(api: httpx.AsyncClient, query: str, max_rows: int = 1000) -> httpx.Response:
    return await api.post("/api/v1/sql", json={"query": query, "max_rows": max_rows})


async def test_sql_is_read_only_limited_and_leaves_the_service_writable(
    test_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_gateway(test_settings) as api:
        counted = await sql(api, "SELECT count() AS n FROM activities")
        assert counted.status_code == 200, counted.text
        assert counted.json()["columns"] == ["n"]
        limited = (await sql(api, "SELECT number FROM numbers(100000)", max_rows=10)).json()
        assert (len(limited["rows"]), limited["truncated"]) == (10, True)
        exact = (await sql(api, "SELECT number FROM numbers(10)", max_rows=10)).json()
        assert (len(exact["rows"]), exact["truncated"]) == (10, False)
        for statement in (
            "DROP TABLE activities",
            "INSERT INTO configs (id) VALUES ('x')",
            "SET readonly = 0",
        ):
            refused = await sql(api, statement)
            assert refused.status_code == 400
            assert "only a SELECT query is allowed" in refused.json()["detail"]
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


async def test_analyst_queries_over_the_sme_tables_run_as_written(
    test_settings: Settings,
) -> None:
    async with running_gateway(test_settings) as api:
        for query in (
            "SELECT toStartOfDay(occurred_at) AS d, countIf(type = 'command_emitted') AS sent, "
            "uniqExact(user_id) AS users FROM activities GROUP BY d ORDER BY d",
            "WITH firsts AS (SELECT user_id, min(occurred_at) AS first FROM activities "
            "GROUP BY user_id) SELECT count() AS n FROM firsts",
            "SELECT count() AS n FROM activities AS a INNER JOIN decision_log AS d "
            "ON a.user_id = d.user_id",
            "SELECT user_id, row_number() OVER (PARTITION BY workspace_id ORDER BY "
            f"occurred_at) AS rn FROM {test_settings.clickhouse_database}.activities",
            "SELECT quantile(0.9)(value) AS q, median(cost) AS m FROM activities",
            "SELECT * FROM `035_sequential_messaging_engine_metrics` LIMIT 1",
        ):
            response = await sql(api, query)
            assert response.status_code == 200, (query, response.text)
        # string literals that look like code come back as the very same strings
        texts = ["it's", "back\\slash", "{x:String}", "%s %(a)s", "é\u200b", "-- #", "/* */"]
        literals = ", ".join(
            "'" + t.replace("\\", "\\\\").replace("'", "''") + f"' AS s{i}"
            for i, t in enumerate(texts)
        )
        echoed = await sql(api, f"SELECT {literals}")
        assert echoed.status_code == 200, echoed.text
        assert echoed.json()["rows"] == [texts]
        odd = (await sql(api, "SELECT nan AS a, inf AS b, [now()] AS c")).json()
        assert odd["rows"][0][:2] == ["NaN", "Infinity"], "JSON has no NaN: no 500 either"


@asynccontextmanager
async def listener() -> AsyncIterator[list[bytes]]:
    """A local TCP server that records every connection's first bytes: an SSRF witness."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(4096))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        seen.append(str(server.sockets[0].getsockname()[1]).encode())  # [0] is the port
        yield seen
    finally:
        server.close()
        await server.wait_closed()


async def test_attacks_are_refused_and_leave_no_trace_on_the_host(
    test_settings: Settings, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text(f"{SECRET}\n", encoding="utf-8")
    outfile = tmp_path / "written.txt"
    async with running_gateway(test_settings) as api, listener() as seen:
        port = int(seen[0])
        target = f"http://127.0.0.1:{port}/steal"
        attacks: list[tuple[str, str]] = [
            (f"SELECT * FROM file('{victim}', 'LineAsString')", "table function file"),
            (f"SELECT file('{victim}') AS f", "function file"),
            (f"SELECT * FROM activities WHERE user_id IN (SELECT file('{victim}'))", "file"),
            (
                f"INSERT INTO FUNCTION file('{victim}', 'LineAsString') SELECT 'pwned'",
                "only a SELECT",
            ),
            (f"SELECT 1 INTO OUTFILE '{outfile}'", "could not parse"),
            (f"SELECT * FROM url('{target}', 'LineAsString')", "table function url"),
            (
                f"SELECT * FROM url('{target}', 'LineAsString', headers('X-Injected'='1'))",
                "table function url",
            ),
            (
                f"SELECT count() FROM activities WHERE user_id IN "
                f"(SELECT * FROM url('{target}', 'LineAsString'))",
                "table function url",
            ),
            (
                f"INSERT INTO FUNCTION url('{target}', 'LineAsString') SELECT 'x'",
                "only a SELECT",
            ),
            (f"WITH u AS (SELECT * FROM url('{target}', 'CSV')) SELECT * FROM u", "url"),
            ("SELECT * FROM remote('127.0.0.1', system.one)", "table function remote"),
            ("SELECT * FROM executable('cat /etc/passwd', 'TSV', 'x String')", "executable"),
            ("SELECT * FROM system.tables", "database system"),
            ("SELECT * FROM `system`.`processes`", "database system"),
            ("SELECT name FROM system.settings", "database system"),
            ("SELECT dictGet('d', 'a', toUInt64(1))", "function dictGet"),
            ("SELECT getSetting('max_execution_time') AS s", "function getSetting"),
            ("SELECT 1 SETTINGS max_execution_time = 0", "SETTINGS"),
            ("SELECT 1 FORMAT JSON", "FORMAT"),
            ("SELECT getSetting('readonly'); SELECT 1", "exactly one statement"),
            ("SELECT 1; DROP TABLE activities", "exactly one statement"),
            ("SELECT \"file\"('/etc/passwd')", "function file"),
            ("SELECT \uff46\uff49\uff4c\uff45('/etc/passwd')", "not allowed"),
            ("KILL QUERY WHERE 1", "could not parse"),
            ("SYSTEM STOP MERGES", "only a SELECT"),
            ("OPTIMIZE TABLE activities FINAL", "only a SELECT"),
        ]
        for query, named in attacks:
            refused = await sql(api, query)
            assert refused.status_code == 400, (query, refused.text)
            detail = refused.json()["detail"]
            assert named.lower() in detail.lower(), (query, detail)
            assert SECRET not in refused.text
        assert victim.read_text(encoding="utf-8") == f"{SECRET}\n", "never modified"
        assert not outfile.exists(), "INTO OUTFILE wrote nothing"
        assert seen[1:] == [], "the local listener got no connection (no SSRF)"


async def test_the_sink_still_inserts_after_a_kill_attempt(test_settings: Settings) -> None:
    async with running_gateway(test_settings) as api:
        for kill in ("KILL QUERY WHERE 1", "KILL QUERY WHERE 1 SYNC", "KILL MUTATION WHERE 1"):
            assert (await sql(api, kill)).status_code == 400
        user = f"after-kill-{uuid.uuid4().hex[:6]}"
        activity = Activity(
            activity_id=str(uuid.uuid4()),
            type=ActivityType.EVENT_RECEIVED,
            workspace_id="acme",
            user_id=user,
            occurred_at=datetime.now(UTC),
            event_type="clicked",
        )
        await publish(
            test_settings.kafka_bootstrap_servers,
            test_settings.topic_activities,
            [(user.encode(), activity.model_dump_json().encode())],
        )

        async def stored() -> bool:
            found = await sql(api, f"SELECT count() AS n FROM activities WHERE user_id = '{user}'")
            return found.status_code == 200 and found.json()["rows"] == [[1]]

        await eventually(stored, timeout=30, what="the sink's insert after KILL attempts")


async def test_a_timed_out_query_leaves_nothing_for_the_next(test_settings: Settings) -> None:
    settings = test_settings.model_copy(update={"sql_max_seconds": 0.5})
    slow = (
        "SELECT count() AS n FROM numbers(100000) AS a, numbers(100000) AS b "
        "WHERE (a.number * b.number) % 7 = 3"
    )
    async with running_gateway(settings) as api:
        for attempt in range(3):
            timed_out = await sql(api, slow)
            assert timed_out.status_code == 400, timed_out.text
            assert "timeout" in timed_out.json()["detail"].lower()
            mine = await sql(api, f"SELECT number * {attempt + 2} AS n FROM numbers(3)")
            assert mine.status_code == 200, mine.text
            assert mine.json()["columns"] == ["n"]
            assert mine.json()["rows"] == [[0], [attempt + 2], [2 * (attempt + 2)]]


async def test_the_engine_limits_hold_even_without_the_sandbox(
    test_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Admin-internal check of the second layer: with the parser check bypassed, the one
    statement that runs still carries readonly=1 and the limits, in every position."""
    victim = tmp_path / "victim.txt"
    victim.write_text(f"{SECRET}\n", encoding="utf-8")

    def bypass(query: str, database: str, tables: frozenset[str]) -> str:
        return query

    monkeypatch.setattr(clickhouse, "sandboxed", bypass)
    async with running_gateway(test_settings) as api:
        store: Any = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
        probe = (
            "SELECT getSetting('readonly') AS r, getSetting('max_execution_time') AS t, "
            "(SELECT getSetting('max_result_rows')) AS m, getSetting('allow_ddl') AS d "
            "UNION ALL SELECT 9, 9, 9, 9"
        )
        result = await store.analyst_query(probe, 5, 7.0)
        first = sorted(result.result_rows)[0]
        assert (int(first[0]), float(first[1]), int(first[2]), bool(first[3])) == (
            1,
            7.0,
            6,
            False,
        )
        for attack in (
            f"SELECT * FROM file('{victim}', 'LineAsString')",
            "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
            "SELECT 1 SETTINGS max_execution_time = 0",
            "SELECT 1 SETTINGS readonly = 0",
        ):
            with pytest.raises(Exception, match=r"(?i)readonly") as failed:
                await store.analyst_query(attack, 5, 7.0)
            assert SECRET not in str(failed.value)
        # the service's own reader is untouched by the analyst's settings
        own = await store.query("SELECT getSetting('readonly') AS r")
        assert int(own.result_rows[0][0]) == 0


async def test_only_the_admin_key_runs_sql(test_settings: Settings, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    workspace_key = add_key(keys_file, "acme-ci", "acme")
    settings = test_settings.model_copy(
        update={"api_keys_file": keys_file, "admin_api_key": SecretStr(ADMIN_KEY)}
    )
    async with running_gateway(settings) as api:
        query = {"query": "SELECT 1"}
        as_workspace = await api.post(
            "/api/v1/sql", json=query, headers={"Authorization": f"Bearer {workspace_key}"}
        )
        assert as_workspace.status_code == 404
        refused = await api.post(
            "/api/v1/sql",
            json={"query": "SELECT * FROM file('/etc/passwd')"},
            headers={"Authorization": f"Bearer {workspace_key}"},
        )
        assert refused.status_code == 404, "a workspace key learns nothing, not even a refusal"
        assert (await api.post("/api/v1/sql", json=query)).status_code == 401
        as_admin = await api.post(
            "/api/v1/sql", json=query, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert as_admin.status_code == 200
