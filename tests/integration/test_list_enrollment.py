"""List enrollment end to end on the real broker and ClickHouse engine: users posted to
`POST …/{id}/enrollments` (JSON or NDJSON) each get the sequence's first command through the
engine; the same batch again enrolls nobody twice, even after a gateway restart; other users
under the same batch id are 409; bad ids 422 where they are; too many users 422, too large a
body 413."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest

from sme.contracts.channels import Channel
from sme.contracts.enrollments import MAX_ENROLLMENT_BODY
from sme.gateway.http_guards import MAX_BODY
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
WELCOME: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [
        {"id": "hello", "template": "hello", "channels": ["email"]},
        {"id": "later", "wait": "P1D", "template": "later", "channels": ["email"]},
    ],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


async def post_ndjson(
    api: httpx.AsyncClient, url: str, batch_id: str, lines: list[dict[str, Any]]
) -> httpx.Response:
    body = b"\n".join(orjson.dumps(line) for line in lines)
    return await api.post(
        url,
        params={"batch_id": batch_id},
        content=body,
        headers={"Content-Type": "application/x-ndjson"},
    )


async def declared_status(api: httpx.AsyncClient, path: str, length: int) -> int:
    """The status answered to a request that declares a body of `length` bytes, read before
    sending any of it (the gateway refuses by the declared length)."""
    reader, writer = await asyncio.open_connection(api.base_url.host, api.base_url.port)
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
        return int(line.split(b" ", 2)[1])
    finally:
        writer.close()


async def enrolled_rows(store: ClickHouseStore, config_id: str) -> list[tuple[str, ...]]:
    result = await store.query(
        "SELECT user_id, event_type, arm, JSONExtractString(details, 'batch_id') "
        "FROM {db}.activities FINAL "
        "WHERE config_id = {c:String} AND type = 'enrolled' AND length(user_id) < 250 "
        "ORDER BY user_id",
        {"c": config_id},
    )
    return [tuple(map(str, row)) for row in result.result_rows]


async def holdout_rows(store: ClickHouseStore, config_id: str) -> list[tuple[str, str]]:
    result = await store.query(
        "SELECT user_id, reason_code FROM {db}.activities FINAL "
        "WHERE config_id = {c:String} AND type = 'message_suppressed'",
        {"c": config_id},
    )
    return [(str(u), str(r)) for u, r in result.result_rows]


async def test_listed_users_are_enrolled_once_through_the_engine(test_settings: Settings) -> None:
    s = test_settings
    await ensure_topics(s)
    async with (
        running_engine(s),
        TopicReader(s.kafka_bootstrap_servers, s.command_topic(Channel.EMAIL)) as commands,
    ):
        async with running_gateway(s) as api:
            store: ClickHouseStore = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
            created = await api.post(API, json=WELCOME)
            assert created.status_code == 201
            config_id = created.json()["id"]
            url = f"{API}/{config_id}/enrollments"

            first = await api.post(url, json={"batch_id": "b-1", "user_ids": ["ada", "bob", "ada"]})
            assert first.status_code == 202, first.text
            answer = first.json()
            assert (answer["received"], answer["accepted"], answer["duplicates"]) == (3, 2, 1)
            assert (answer["batch_id"], answer["replayed"]) == ("b-1", False)

            async def hello_to(users: set[str]) -> bool:
                sent = {str(c["user_id"]) for c in await commands.poll() if c["step_id"] == "hello"}
                return users <= sent

            await eventually(lambda: hello_to({"ada", "bob"}), timeout=60, what="both welcomed")

            again = await api.post(url, json={"batch_id": "b-1", "user_ids": ["bob", "ada"]})
            assert again.status_code == 202
            assert again.json() == {**answer, "replayed": True}
            changed = await api.post(url, json={"batch_id": "b-1", "user_ids": ["ada", "cy"]})
            assert changed.status_code == 409

            bad = await api.post(url, json={"batch_id": "b-3", "user_ids": ["ok", "", " "]})
            assert bad.status_code == 422
            assert [e["loc"] for e in bad.json()["detail"]] == [
                ["body", "user_ids", 1],
                ["body", "user_ids", 2],
            ]
            many = [f"user-{i}" for i in range(10_001)]
            over = await api.post(url, json={"batch_id": "b-4", "user_ids": many})
            assert over.status_code == 422
            assert [e["loc"] for e in over.json()["detail"]] == [["body", "user_ids"]]
            assert await declared_status(api, url, MAX_ENROLLMENT_BODY + 1) == 413
            bulk = [f"{i:0>250}" for i in range(4_500)]
            near = {"batch_id": "b-5", "user_ids": bulk}
            assert len(orjson.dumps(near)) > MAX_BODY, "over other routes' limit, not this one's"
            assert (await api.post(url, json=near)).status_code == 202

            uploaded = await post_ndjson(
                api,
                url,
                "b-2",
                [{"user_id": "dan", "attributes": {"plan": "pro"}}, {"user_id": "ada"}],
            )
            assert uploaded.status_code == 202, uploaded.text
            assert uploaded.json()["accepted"] == 2
            bad_line = await post_ndjson(api, url, "b-6", [{"user_id": "eve"}, {"user_id": 7}])
            assert bad_line.status_code == 422
            assert [e["loc"] for e in bad_line.json()["detail"]] == [["body", 1, "user_id"]]

            await eventually(lambda: hello_to({"dan", *bulk}), timeout=60, what="all welcomed")

            async def recorded() -> list[tuple[str, ...]] | None:
                rows = await enrolled_rows(store, config_id)
                return rows if len(rows) >= 3 else None

            rows = await eventually(recorded, timeout=60, what="enrollments in ClickHouse")
            assert rows == [
                ("ada", "list_enrollment", "baseline", "b-1"),
                ("bob", "list_enrollment", "baseline", "b-1"),
                ("dan", "list_enrollment", "baseline", "b-2"),
            ]

            held = await api.post(
                API, json={**WELCOME, "experiment": {"holdout_pct": 100, "baseline_pct": 0}}
            )
            held_url = f"{API}/{held.json()['id']}/enrollments"
            listed = await api.post(held_url, json={"batch_id": "b-1", "user_ids": ["hal"]})
            assert listed.status_code == 202, "a batch id is the sequence's own"

            async def held_out() -> list[tuple[str, str]]:
                return await holdout_rows(store, held.json()["id"])

            suppressed = await eventually(held_out, timeout=60, what="hal held out")
            assert suppressed == [("hal", "holdout")]

        async with running_gateway(s) as restarted:
            replay = await restarted.post(url, json={"batch_id": "b-1", "user_ids": ["ada", "bob"]})
            assert replay.status_code == 202
            assert replay.json() == {**answer, "replayed": True}, "remembered across a restart"

        sent = Counter(str(c["user_id"]) for c in await commands.read_to_end())
        assert sent == {"ada": 1, "bob": 1, "dan": 1} | dict.fromkeys(bulk, 1), (
            "each once; ada was in the sequence already when listed again"
        )
