"""Erasure through the API on the real broker and ClickHouse engine: after
DELETE /api/v1/workspaces/{ws}/users/{user}, nothing about the user is left in the engine's
state or in ClickHouse, other users are untouched, and the erasure is logged without the id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pytest

from sme.core.user_state import state_key
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.gateway import running_gateway
from tests.support.kafka_io import publish
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"


def signup(user: str) -> tuple[bytes, bytes]:
    body = {
        "event_id": f"s-{user}",
        "workspace_id": "acme",
        "user_id": user,
        "type": "signed_up",
        "occurred_at": datetime.now().astimezone().isoformat(),
        "user": {"attributes": {"plan": "pro"}, "consent": {"email": True}},
    }
    return user.encode(), orjson.dumps(body)


async def rows_of(store: ClickHouseStore, user: str) -> int:
    result = await store.query(
        "SELECT count() FROM {db}.activities WHERE user_id = {u:String}", {"u": user}
    )
    return int(result.result_rows[0][0])


async def test_after_erasure_nothing_about_the_user_is_left(test_settings: Settings) -> None:
    s = test_settings
    await ensure_topics(s)
    sequence: dict[str, Any] = {
        "workspace_id": "acme",
        "name": "Onboarding",
        "entry": {"event_types": ["signed_up"]},
        "steps": [
            {"id": "hello", "template": "hello", "channels": ["email"]},
            {"id": "later", "wait": "P1D", "template": "later", "channels": ["email"]},
        ],
        "experiment": {"holdout_pct": 0, "baseline_pct": 100},
    }
    async with running_gateway(s) as api, running_engine(s) as engine:
        store: ClickHouseStore = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
        created = await api.post(API, json=sequence)
        assert created.status_code == 201
        metrics_url = f"{API}/{created.json()['id']}/metrics"
        await publish(s.kafka_bootstrap_servers, s.topic_events, [signup("ada"), signup("bob")])

        async def both_recorded() -> bool:
            return await rows_of(store, "ada") >= 4 and await rows_of(store, "bob") >= 4

        await eventually(both_recorded, timeout=60, what="both users' activities in ClickHouse")
        ada_key = state_key("acme", "ada").encode()
        assert engine.users.get(ada_key) is not None

        response = await api.delete("/api/v1/workspaces/acme/users/ada")
        assert response.status_code == 202
        erasure_id = response.json()["erasure_id"]

        async def erased() -> bool:
            return await rows_of(store, "ada") == 0 and engine.users.get(ada_key) is None

        await eventually(erased, timeout=30, what="ada gone from ClickHouse and the engine")
        assert await rows_of(store, "bob") >= 4, "other users are untouched"
        enrolled = (await api.get(metrics_url)).json()["arms"]["baseline"]["enrolled"]
        assert enrolled == 1, "the rollup was recomputed without the erased user"
        assert engine.users.get(state_key("acme", "bob").encode()) is not None
        logged = await store.query(
            "SELECT user_id, details FROM {db}.activities FINAL WHERE type = 'user_erased'"
        )
        assert [(u, orjson.loads(d)["erasure_id"]) for u, d in logged.result_rows] == [
            ("", erasure_id)
        ]
        everything = await store.query(
            "SELECT count() FROM {db}.activities WHERE positionCaseInsensitive(details, 'ada') > 0 "
            "OR user_id = 'ada' OR event_id = 's-ada'"
        )
        assert everything.result_rows == [(0,)]
        assert (await api.delete("/api/v1/workspaces/other/users/ada")).status_code == 202
