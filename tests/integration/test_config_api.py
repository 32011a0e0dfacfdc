"""The configuration API through HTTP, on the real broker and ClickHouse engine: the spec's
endpoints, workspace settings and the kill switch, each success and each error class."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sme.settings import Settings
from tests.support.gateway import running_gateway
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
SEQUENCE: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Onboarding",
    "entry": {"event_types": ["signed_up"]},
    "steps": [
        {"id": "hello", "template": "hello", "channels": ["email", "push"]},
        {"id": "nudge", "wait": "P1D", "template": "nudge", "channels": ["sms"]},
    ],
}


@pytest.fixture
async def api(test_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(test_settings) as http:
        yield http


async def create(api: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    response = await api.post(API, json={**copy.deepcopy(SEQUENCE), **changes})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_created_sequence_is_active_versioned_and_readable(api: httpx.AsyncClient) -> None:
    created = await create(api)
    assert created["status"] == "ACTIVE"
    assert created["version"] == 1
    fetched = await api.get(f"{API}/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created
    assert fetched.headers["etag"] == '"1"'
    listed = (await api.get(API, params={"workspace_id": "acme"})).json()
    assert created["id"] in [item["id"] for item in listed["items"]]
    assert (await api.get(API, params={"workspace_id": "other"})).json()["items"] == []


async def test_invalid_configurations_get_422_naming_each_field(api: httpx.AsyncClient) -> None:
    bad = copy.deepcopy(SEQUENCE)
    bad["steps"][0]["channels"] = ["fax"]
    bad["experiment"] = {"holdout_pct": 60, "baseline_pct": 50}
    bad["bogus"] = 1
    response = await api.post(API, json=bad)
    assert response.status_code == 422
    locs = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert ("body", "steps", 0, "channels", 0) in locs
    assert ("body", "bogus") in locs
    server_field = await api.post(API, json={**SEQUENCE, "id": "mine"})
    assert server_field.status_code == 422
    assert server_field.json()["detail"][0]["loc"] == ["body", "id"]
    not_an_object = await api.post(API, json=[1, 2])
    assert not_an_object.status_code == 422
    listed = (await api.get(API, params={"workspace_id": "acme"})).json()
    assert listed["items"] == [], "nothing partial is stored on error"


async def test_a_body_over_one_mebibyte_gets_413(api: httpx.AsyncClient) -> None:
    huge = {**SEQUENCE, "name": "x" * (1024 * 1024 + 1)}
    response = await api.post(API, json=huge)
    assert response.status_code == 413


async def test_patch_merges_bumps_the_version_and_refuses_stale_writes(
    api: httpx.AsyncClient,
) -> None:
    created = await create(api)
    url = f"{API}/{created['id']}"
    patched = await api.patch(
        url,
        json={"name": "Renamed", "experiment": {"holdout_pct": 20}},
        headers={"If-Match": '"1"'},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["version"], body["experiment"]["holdout_pct"]) == ("Renamed", 2, 20)
    assert body["steps"] == created["steps"], "merge patch keeps what it does not name"
    stale = await api.patch(url, json={"name": "Late"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409
    stale_body = await api.patch(url, json={"name": "Late", "version": 1})
    assert stale_body.status_code == 409
    invalid = await api.patch(url, json={"steps": []})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"][:2] == ["body", "steps"]
    immutable = await api.patch(url, json={"workspace_id": "other"})
    assert immutable.status_code == 422
    assert (await api.get(url)).json()["version"] == 2


async def test_pause_resume_and_delete_change_the_status_and_stopped_is_final(
    api: httpx.AsyncClient,
) -> None:
    created = await create(api)
    url = f"{API}/{created['id']}"
    assert (await api.patch(url, json={"status": "PAUSED"})).json()["status"] == "PAUSED"
    assert (await api.patch(url, json={"status": "ACTIVE"})).json()["status"] == "ACTIVE"
    deleted = await api.delete(url)
    assert deleted.status_code == 204
    assert (await api.get(url)).json()["status"] == "STOPPED"
    assert (await api.patch(url, json={"status": "ACTIVE"})).status_code == 409
    assert (await api.delete(url)).status_code == 204


async def test_draining_through_patch_and_an_unknown_status_gets_422(
    api: httpx.AsyncClient,
) -> None:
    created = await create(api)
    url = f"{API}/{created['id']}"
    drained = await api.patch(url, json={"status": "DRAINING"})
    assert drained.status_code == 200, drained.text
    assert drained.json()["status"] == "DRAINING"
    assert (await api.get(url)).json()["status"] == "DRAINING"
    bad = await api.patch(url, json={"status": "SLEEPING"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "status"]
    assert (await api.patch(url, json={"status": "ACTIVE"})).json()["status"] == "ACTIVE"


async def test_timing_fields_are_validated_with_field_paths(api: httpx.AsyncClient) -> None:
    timed = copy.deepcopy(SEQUENCE)
    timed["steps"][1]["wait_until"] = {"time": "10:00", "weekdays": ["mon", "fri"]}
    timed.update(starts_at="2030-01-01T00:00:00Z", ends_at="2030-02-01T00:00:00+01:00")
    created = await create(api, **timed)
    assert created["steps"][1]["wait_until"] == {"time": "10:00:00", "weekdays": ["mon", "fri"]}
    assert created["starts_at"] == "2030-01-01T00:00:00Z"
    bad = copy.deepcopy(SEQUENCE)
    bad["steps"][1]["wait_until"] = {"time": "10:00", "weekdays": ["mon", "mon"]}
    bad.update(starts_at="2030-01-01T00:00:00Z", ends_at="2029-01-01T00:00:00Z")
    response = await api.post(API, json=bad)
    assert response.status_code == 422
    locs = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert ("body", "steps", 1, "wait_until", "weekdays") in locs


async def test_unknown_configurations_are_404(api: httpx.AsyncClient) -> None:
    assert (await api.get(f"{API}/nope")).status_code == 404
    assert (await api.patch(f"{API}/nope", json={"name": "x"})).status_code == 404
    assert (await api.delete(f"{API}/nope")).status_code == 404


async def test_workspace_settings_are_validated_and_versioned(api: httpx.AsyncClient) -> None:
    url = "/api/v1/workspaces/acme/settings"
    assert (await api.get(url)).json()["version"] == 1
    put = await api.put(
        url,
        json={
            "default_timezone": "Europe/Paris",
            "guardrails": {"quiet_hours": {"start": "21:00", "end": "08:00"}},
        },
    )
    assert put.status_code == 200, put.text
    assert put.json()["default_timezone"] == "Europe/Paris"
    assert (await api.get(url)).json()["guardrails"]["quiet_hours"]["start"] == "21:00:00"
    bad = await api.put(url, json={"default_timezone": "Mars/Olympus"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "default_timezone"]


async def test_the_kill_switch_pauses_every_sequence_and_restores_the_prior_statuses(
    api: httpx.AsyncClient,
) -> None:
    first, second, manual = await create(api), await create(api), await create(api)
    draining = await create(api)
    await api.patch(f"{API}/{manual['id']}", json={"status": "PAUSED"})
    await api.patch(f"{API}/{draining['id']}", json={"status": "DRAINING"})
    engaged = await api.put("/api/v1/workspaces/acme/kill-switch", json={"engaged": True})
    assert engaged.status_code == 200
    held = [first["id"], second["id"], draining["id"]]
    assert sorted(engaged.json()["paused_configs"]) == sorted(held)
    assert engaged.json()["draining_configs"] == [draining["id"]]
    for config in (first, second, manual, draining):
        assert (await api.get(f"{API}/{config['id']}")).json()["status"] == "PAUSED"
    refused = await api.patch(f"{API}/{manual['id']}", json={"status": "DRAINING"})
    assert refused.status_code == 409  # draining sends: no resuming while engaged
    released = await api.put("/api/v1/workspaces/acme/kill-switch", json={"engaged": False})
    assert released.json() == {"engaged": False, "paused_configs": [], "draining_configs": []}
    assert (await api.get(f"{API}/{first['id']}")).json()["status"] == "ACTIVE"
    assert (await api.get(f"{API}/{second['id']}")).json()["status"] == "ACTIVE"
    assert (await api.get(f"{API}/{manual['id']}")).json()["status"] == "PAUSED"
    assert (await api.get(f"{API}/{draining['id']}")).json()["status"] == "DRAINING"
    bad = await api.put("/api/v1/workspaces/acme/kill-switch", json={"engaged": "maybe"})
    assert bad.status_code == 422


async def test_every_change_is_an_activity_with_old_and_new_version(api: httpx.AsyncClient) -> None:
    created = await create(api)
    await api.patch(f"{API}/{created['id']}", json={"name": "Second"})

    async def changes() -> list[dict[str, Any]]:
        response = await api.get(
            f"{API}/{created['id']}/activities", params={"type": "config_changed"}
        )
        items = response.json()["items"]
        return list(items) if len(items) >= 2 else []

    items = await eventually(changes, timeout=30, what="two config_changed activities")
    versions = sorted(
        (i["details"]["old_version"] or 0, i["details"]["new_version"]) for i in items
    )
    assert versions == [(0, 1), (1, 2)]
    assert all(i["details"]["actor"] == "local" for i in items)


async def test_a_pause_stops_commands_within_a_second_under_a_steady_stream(
    test_settings: Settings,
) -> None:
    import asyncio
    import contextlib
    from datetime import datetime, timedelta

    import orjson
    from aiokafka import AIOKafkaProducer

    from tests.support.kafka_io import TopicReader
    from tests.support.runtime import running_engine

    grace = timedelta(seconds=1)
    s = test_settings
    steady = {**copy.deepcopy(SEQUENCE), "experiment": {"holdout_pct": 0, "baseline_pct": 100}}
    steady["steps"] = [{"id": "now", "template": "now", "channels": ["email"]}]
    async with (
        running_gateway(s) as api,
        running_engine(s) as engine,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
    ):
        config = await create(api, **steady)
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers)
        await producer.start()
        stop = asyncio.Event()
        published: list[datetime] = []  # when each signup was handed to the broker

        async def stream_signups() -> None:
            while not stop.is_set():
                n = len(published) + 1
                body = {
                    "event_id": f"p{n}",
                    "workspace_id": "acme",
                    "user_id": f"u{n}",
                    "type": "signed_up",
                    "occurred_at": datetime.now().astimezone().isoformat(),
                }
                await producer.send_and_wait(
                    s.topic_events, orjson.dumps(body), key=f"u{n}".encode()
                )
                published.append(datetime.now().astimezone())
                with contextlib.suppress(TimeoutError):  # paced, and ends as soon as asked
                    await asyncio.wait_for(stop.wait(), timeout=0.02)

        streaming = asyncio.create_task(stream_signups())
        try:
            await eventually(
                lambda: _at_least(emails, 20), timeout=60, what="a steady flow of sends"
            )
            response = await api.patch(f"{API}/{config['id']}", json={"status": "PAUSED"})
            assert response.status_code == 200
            acknowledged = datetime.now().astimezone()  # the response has arrived

            async def stream_past_the_grace() -> bool:  # signups decided after it, surely
                return sum(at > acknowledged + grace for at in published) >= 10

            await eventually(stream_past_the_grace, timeout=60, what="signups after the grace")
        finally:
            stop.set()
            await streaming
            await producer.stop()

        def counted(name: str, labels: dict[str, str]) -> float:
            return engine.metrics.registry.get_sample_value(name, labels) or 0.0

        async def all_decided() -> bool:
            return counted("sme_events_in_total", {"type": "signed_up"}) >= len(published)

        await eventually(all_decided, timeout=60, what="every signup decided")

        async def all_read() -> bool:  # every command decided is on the topic and read
            decided = counted("sme_commands_out_total", {"channel": "email"})
            return len(await emails.poll()) >= decided

        await eventually(all_read, timeout=60, what="every command read")
        late = [
            c
            for c in emails.seen
            if datetime.fromisoformat(str(c["decided_at"])) > acknowledged + grace
        ]
        assert late == [], f"{len(late)} commands decided more than 1 s after the pause"


async def _at_least(reader: Any, n: int) -> list[dict[str, Any]]:
    seen = await reader.poll()
    return list(seen) if len(seen) >= n else []


async def test_every_version_is_kept_for_analysts_and_the_history_endpoint(
    api: httpx.AsyncClient,
) -> None:
    created = await create(api)
    url = f"{API}/{created['id']}"
    await api.patch(url, json={"name": "Two"})
    await api.patch(url, json={"status": "PAUSED"})

    async def history() -> list[dict[str, Any]]:
        items = (await api.get(f"{url}/versions")).json()["items"]
        return list(items) if len(items) >= 3 else []

    items = await eventually(history, timeout=30, what="three versions")
    assert [(i["version"], i["status"]) for i in items] == [
        (1, "ACTIVE"),
        (2, "ACTIVE"),
        (3, "PAUSED"),
    ]
    assert items[1]["config"]["name"] == "Two"
    assert (await api.get(f"{API}/nope/versions")).status_code == 404


async def test_concurrent_patches_through_one_gateway_never_lose_an_update(
    api: httpx.AsyncClient,
) -> None:
    import asyncio

    created = await create(api)
    url = f"{API}/{created['id']}"
    responses = await asyncio.gather(*(api.patch(url, json={"name": f"n{i}"}) for i in range(8)))
    assert sorted(r.json()["version"] for r in responses) == list(range(2, 10))
    assert (await api.get(url)).json()["version"] == 9
