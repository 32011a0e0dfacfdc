"""Erasure through the API on the real broker and ClickHouse engine: after
DELETE /api/v1/workspaces/{ws}/users/{user}, nothing about the user is left in the engine's
state or in ClickHouse, other users are untouched, and the erasure is logged without the id."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from sme.core.user_state import state_key
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader, publish
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


ODD_IDS = ("a/b", "x/erasure", "50% off", " spaced ", "ü?#&=+", "..", "%2F")


async def test_ids_with_any_character_are_erased_and_the_progress_is_visible(
    test_settings: Settings,
) -> None:
    """Each id is sent percent-encoded as one path segment (the documented encoding); `/`
    sent as is works too. The erasure's progress goes from requested to completed, with the
    rows it deleted, and the gateway's metrics count it."""
    s = test_settings
    await ensure_topics(s)
    welcome = {
        "workspace_id": "acme",
        "name": "Welcome",
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
        "experiment": {"holdout_pct": 0, "baseline_pct": 100},
    }
    async with running_gateway(s) as api, running_engine(s) as engine:
        store: ClickHouseStore = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
        assert (await api.post(API, json=welcome)).status_code == 201
        await publish(s.kafka_bootstrap_servers, s.topic_events, [signup(u) for u in ODD_IDS])

        async def recorded() -> bool:
            return all([await rows_of(store, u) >= 2 for u in ODD_IDS])

        await eventually(recorded, timeout=60, what="every odd id's activities")
        erasures = {}
        for user in ODD_IDS:
            # Percent-encoded, dots too; a raw `/` is fine as well.
            path = user if user == "a/b" else quote(user, safe="").replace(".", "%2E")
            if user == " spaced ":
                response = await api.post(
                    "/api/v1/workspaces/acme/erasures", json={"user_id": user}
                )
            else:
                response = await api.delete(f"/api/v1/workspaces/acme/users/{path}")
            assert response.status_code == 202, (user, response.text)
            erasures[user] = response.json()
            status = await api.get(response.json()["status_url"])
            assert status.status_code == 200, status.text
            assert status.json()["state"] in ("requested", "completed")

        async def completed() -> bool:
            states = [(await api.get(e["status_url"])).json() for e in erasures.values()]
            return all(st["state"] == "completed" for st in states)

        await eventually(completed, timeout=60, what="every erasure completed")
        for user, accepted in erasures.items():
            assert await rows_of(store, user) == 0, user
            assert engine.users.get(state_key("acme", user).encode()) is None, user
            done = (await api.get(accepted["status_url"])).json()
            assert done["rows_deleted"] >= 2 and done["seconds"] >= 0, done
        metrics = (await api.get("/metrics")).text
        assert f"sme_erasures_completed_total {float(len(ODD_IDS))}" in metrics
        assert f"sme_erasures_requested_total {float(len(ODD_IDS))}" in metrics
        nobody = "00000000-0000-0000-0000-000000000000"
        unknown = await api.get(f"/api/v1/workspaces/acme/erasures/{nobody}")
        assert unknown.status_code == 404
        foreign = await api.get(erasures["a/b"]["status_url"].replace("/acme/", "/other/"))
        assert foreign.status_code == 404, "another workspace's erasure is not visible"


async def test_rows_that_arrive_after_an_erasure_are_kept_and_ids_are_not_reused(
    test_settings: Settings,
) -> None:
    """A user erased and signing up again right away: the erasure deletes what preceded it,
    and the new sign-up's rows and state stay (whether or not they reach the sink in the
    erasure's batch). Their new life has new ids: the welcome command of the second sign-up
    is not the first one's id (a sender deduping by id would drop it)."""
    s = test_settings.model_copy(update={"sink_flush_seconds": 2.0})
    await ensure_topics(s)
    welcome = {
        "workspace_id": "acme",
        "name": "Welcome",
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
        "experiment": {"holdout_pct": 0, "baseline_pct": 100},
    }
    async with (
        running_gateway(s) as api,
        running_engine(s) as engine,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
    ):
        store: ClickHouseStore = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
        assert (await api.post(API, json=welcome)).status_code == 201
        await publish(s.kafka_bootstrap_servers, s.topic_events, [signup("ada")])

        async def first() -> bool:
            return await rows_of(store, "ada") >= 3

        await eventually(first, timeout=60, what="ada's first sign-up stored")
        before = await store.query("SELECT activity_id FROM {db}.activities WHERE user_id = 'ada'")
        response = await api.delete("/api/v1/workspaces/acme/users/ada")
        assert response.status_code == 202
        again = orjson.loads(signup("ada")[1]) | {"event_id": "s-ada-again"}
        await publish(s.kafka_bootstrap_servers, s.topic_events, [(b"ada", orjson.dumps(again))])

        async def done() -> bool:
            status = (await api.get(response.json()["status_url"])).json()
            return status["state"] == "completed" and await rows_of(store, "ada") >= 3

        await eventually(done, timeout=60, what="erasure completed and the new sign-up stored")
        kept = await store.query(
            "SELECT activity_id, event_id, type FROM {db}.activities WHERE user_id = 'ada'"
        )
        old_ids = {r[0] for r in before.result_rows}
        assert kept.result_rows and all(r[0] not in old_ids for r in kept.result_rows)
        assert {r[1] for r in kept.result_rows} <= {"s-ada-again", ""}
        assert "command_emitted" in {r[2] for r in kept.result_rows}
        assert engine.users.get(state_key("acme", "ada").encode()) is not None

        async def both_commands() -> list[dict[str, object]]:
            mine = [c for c in await emails.poll() if c["user_id"] == "ada"]
            return mine if len({c["command_id"] for c in mine}) >= 2 else []

        # On the old code the second life's command repeats the first's id: never two ids.
        commands = await eventually(both_commands, timeout=30, what="two welcome command ids")
        assert len({c["decided_at"] for c in commands}) == 2


async def test_erasure_requests_are_rate_limited_per_workspace(test_settings: Settings) -> None:
    s = test_settings.model_copy(update={"erasure_burst": 3, "erasure_rate_per_second": 0.01})
    await ensure_topics(s)
    async with running_gateway(s) as api:
        codes = [
            (await api.delete(f"/api/v1/workspaces/acme/users/u{n}")).status_code for n in range(3)
        ]
        assert codes == [202, 202, 202]
        refused = await api.delete("/api/v1/workspaces/acme/users/u3")
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        other = await api.delete("/api/v1/workspaces/beta/users/u3")
        assert other.status_code == 202, "another workspace has its own budget"
        assert "sme_erasures_rate_limited_total 1.0" in (await api.get("/metrics")).text
