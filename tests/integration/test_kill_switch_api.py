"""The kill switch through HTTP and the engine, on the real broker: while it is engaged no
sequence of the workspace may become ACTIVE through the API (a resume is refused with 409, a
new sequence is created PAUSED and held for the release), and the engine sends nothing for the
workspace whatever a sequence's status says (e.g. one published ACTIVE around the API)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from sme.settings import Settings
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader, publish, publish_config
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
SWITCH = "/api/v1/workspaces/acme/kill-switch"
SEQUENCE: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"], "reentry": {"policy": "always"}},
    "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


@pytest.fixture
async def api(test_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(test_settings) as http:
        yield http


async def create(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.post(API, json=copy.deepcopy(SEQUENCE))
    assert response.status_code == 201, response.text
    return dict(response.json())


async def status(api: httpx.AsyncClient, config_id: str) -> str:
    return str((await api.get(f"{API}/{config_id}")).json()["status"])


async def test_a_sequence_created_while_the_switch_is_engaged_is_held_paused_until_release(
    api: httpx.AsyncClient,
) -> None:
    assert (await api.put(SWITCH, json={"engaged": True})).status_code == 200
    dry = await api.post(API, params={"dry_run": "true"}, json=SEQUENCE)
    assert dry.status_code == 200 and dry.json()["status"] == "PAUSED", "as it would be stored"

    created = await create(api)

    assert created["status"] == "PAUSED"
    settings = (await api.get("/api/v1/workspaces/acme/settings")).json()
    assert settings["kill_switch"]["paused_configs"] == [created["id"]]
    released = await api.put(SWITCH, json={"engaged": False})
    assert released.json() == {"engaged": False, "paused_configs": [], "draining_configs": []}
    assert await status(api, created["id"]) == "ACTIVE"


async def test_a_draining_sequence_created_while_engaged_is_held_and_released_draining(
    api: httpx.AsyncClient,
) -> None:
    assert (await api.put(SWITCH, json={"engaged": True})).status_code == 200

    response = await api.post(API, json={**copy.deepcopy(SEQUENCE), "status": "DRAINING"})

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "PAUSED"
    switch = (await api.get("/api/v1/workspaces/acme/settings")).json()["kill_switch"]
    assert switch["draining_configs"] == [created["id"]]
    await api.put(SWITCH, json={"engaged": False})
    assert await status(api, created["id"]) == "DRAINING"


async def test_resuming_a_sequence_while_the_switch_is_engaged_is_refused_with_409(
    api: httpx.AsyncClient,
) -> None:
    held, manual = await create(api), await create(api)
    await api.patch(f"{API}/{manual['id']}", json={"status": "PAUSED"})
    await api.put(SWITCH, json={"engaged": True})

    for config in (held, manual):
        response = await api.patch(f"{API}/{config['id']}", json={"status": "ACTIVE"})
        assert response.status_code == 409, response.text
        assert "kill switch" in response.json()["detail"]
        assert await status(api, config["id"]) == "PAUSED"

    renamed = await api.patch(f"{API}/{held['id']}", json={"name": "Renamed"})
    assert renamed.status_code == 200  # other edits are fine; it stays held
    await api.put(SWITCH, json={"engaged": False})
    assert await status(api, held["id"]) == "ACTIVE"
    assert await status(api, manual["id"]) == "PAUSED"
    resumed = await api.patch(f"{API}/{manual['id']}", json={"status": "ACTIVE"})
    assert resumed.status_code == 200


async def test_a_sequence_active_while_the_switch_is_engaged_sends_nothing_until_release(
    test_settings: Settings,
) -> None:
    s = test_settings
    async with (
        running_gateway(s) as api,
        running_engine(s) as engine,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
        TopicReader(s.kafka_bootstrap_servers, s.topic_activities) as activities,
    ):
        created = await create(api)
        await api.put(SWITCH, json={"engaged": True})
        # Around the API (as `sme configs apply` would): the sequence ACTIVE again, engaged.
        active = {**(await api.get(f"{API}/{created['id']}")).json(), "status": "ACTIVE"}
        active["version"] += 1
        await publish_config(s, active)

        async def engine_sees_it() -> bool:
            config, ws = engine.configs.get(created["id"]), engine.configs.workspace("acme")
            return (
                config is not None
                and config.version == active["version"]
                and ws is not None
                and ws.kill_switch.engaged
            )

        await eventually(engine_sees_it, timeout=30, what="the engine's view: ACTIVE, engaged")

        await signup(s, "held-user")
        await eventually(
            lambda: _decided(activities, "held-user"), timeout=60, what="held-user decided"
        )
        assert [c for c in await emails.poll() if c["user_id"] == "held-user"] == []

        await api.put(SWITCH, json={"engaged": False})
        await eventually(
            lambda: _released(engine), timeout=30, what="the engine's view: switch released"
        )
        await signup(s, "later-user")
        sent = await eventually(
            lambda: _sent_to(emails, "later-user"), timeout=60, what="a send after the release"
        )
        assert [c["config_id"] for c in sent] == [created["id"]]
        assert [c for c in emails.seen if c["user_id"] == "held-user"] == []


async def signup(s: Settings, user_id: str) -> None:
    body = {
        "event_id": f"e-{user_id}",
        "workspace_id": "acme",
        "user_id": user_id,
        "type": "signed_up",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    await publish(
        s.kafka_bootstrap_servers, s.topic_events, [(user_id.encode(), orjson.dumps(body))]
    )


async def _decided(reader: TopicReader, user_id: str) -> bool:
    return any(
        a["user_id"] == user_id and a["type"] == "event_received" for a in await reader.poll()
    )


async def _released(engine: Any) -> bool:
    ws = engine.configs.workspace("acme")
    return ws is not None and not ws.kill_switch.engaged


async def _sent_to(reader: TopicReader, user_id: str) -> list[dict[str, object]]:
    return [c for c in await reader.poll() if c["user_id"] == user_id]
