"""Preview and test send through HTTP on the real broker: a preview's trace written out by
hand, drafts, field-level refusals, and a test send read back from the command topic and
counted nowhere."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sme.contracts.channels import Channel
from sme.gateway.auth import add_key
from sme.settings import Settings
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
T0 = "2026-03-04T10:00:00Z"
SEQUENCE: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [
        {"id": "welcome", "template": "tpl-welcome", "channels": ["email"]},
        {
            "id": "check",
            "kind": "branch",
            "wait": "P1D",
            "branches": [{"event_type": "clicked", "goto": "tips"}],
        },
        {"id": "nudge", "template": "tpl-nudge", "channels": ["email"]},
        {"id": "tips", "wait": "P2D", "template": "tpl-tips", "channels": ["email", "push"]},
    ],
    "exit": {"goal": {"event_type": "purchased", "value_property": "amount"}},
    "experiment": {"holdout_pct": 0, "baseline_pct": 0},
}


@pytest.fixture
async def api(test_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(test_settings) as http:
        yield http


async def create(api: httpx.AsyncClient) -> str:
    response = await api.post(API, json=copy.deepcopy(SEQUENCE))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def brief(trace: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [(e["type"], e["at"], e["step_id"], e["reason_code"]) for e in trace]


async def test_a_preview_traces_every_decision_in_time_order(api: httpx.AsyncClient) -> None:
    config_id = await create(api)
    body = {
        "user_id": "anna",
        "profile": {"timezone": "Europe/Paris", "attributes": {"plan": "pro"}},
        "timeline": [
            {
                "type": "purchased",
                "occurred_at": "2026-03-05T11:00:00Z",
                "properties": {"amount": 30},
            },
            {"type": "signed_up", "occurred_at": T0},
            {"type": "clicked", "occurred_at": "2026-03-04T12:00:00Z", "channel": "email"},
        ],
    }
    response = await api.post(f"{API}/{config_id}/preview", json=body)
    assert response.status_code == 200, response.text
    preview = response.json()
    assert brief(preview["trace"]) == [
        ("event_received", "2026-03-04T10:00:00Z", "", ""),
        ("enrolled", "2026-03-04T10:00:00Z", "welcome", ""),
        ("exposure", "2026-03-04T10:00:00Z", "welcome", ""),
        ("command_emitted", "2026-03-04T10:00:00Z", "welcome", ""),
        ("event_received", "2026-03-04T12:00:00Z", "", ""),
        ("feedback", "2026-03-04T12:00:00Z", "welcome", ""),
        ("step_branched", "2026-03-05T10:00:00Z", "check", "branched"),
        ("event_received", "2026-03-05T11:00:00Z", "", ""),
        ("conversion", "2026-03-05T11:00:00Z", "welcome", ""),
        ("enrollment_exited", "2026-03-05T11:00:00Z", "tips", "goal_reached"),
    ]
    command = preview["trace"][3]["command"]
    assert {k: command[k] for k in ("user_id", "step_id", "channel", "template", "variant")} == {
        "user_id": "anna",
        "step_id": "welcome",
        "channel": "email",
        "template": "tpl-welcome",
        "variant": "default",
    }
    assert preview["trace"][6]["details"] == {"goto": "tips"}
    assert preview["trace"][8]["value"] == 30.0
    assert preview["outcome"] == {
        "enrolled": True,
        "arm": "adaptive",
        "active": False,
        "step_id": None,
        "due_at": None,
        "messages": 1,
        "converted": True,
        "ended_at": "2026-03-05T11:00:00Z",
        "horizon_reached": False,
        "truncated": False,
    }
    assert (preview["start"], preview["config_id"], preview["statistics"]) == (
        T0,
        config_id,
        "none",
    )
    again = await api.post(f"{API}/{config_id}/preview", json=body)
    assert again.json() == preview


async def test_a_draft_is_previewed_without_being_saved(api: httpx.AsyncClient) -> None:
    draft = copy.deepcopy(SEQUENCE)
    draft["steps"] = [{"id": "only", "template": "tpl-only", "channels": ["sms"]}]
    body = {"user_id": "bo", "start": T0, "arm": "holdout", "config": draft}
    response = await api.post(f"{API}/preview", json=body)
    assert response.status_code == 200, response.text
    assert brief(response.json()["trace"])[3:] == [
        ("message_suppressed", "2026-03-04T10:00:00Z", "only", "holdout"),
        ("enrollment_exited", "2026-03-04T10:00:00Z", "only", "completed"),
    ]
    config_id = await create(api)
    edited = await api.post(f"{API}/{config_id}/preview", json=body)
    assert edited.json()["trace"][3]["step_id"] == "only"
    assert edited.json()["config_version"] == 2
    listed = (await api.get(API, params={"workspace_id": "acme"})).json()["items"]
    assert [c["id"] for c in listed] == [config_id]
    assert listed[0]["version"] == 1, "a previewed draft is never stored"


async def test_invalid_previews_get_422_naming_each_field(api: httpx.AsyncClient) -> None:
    config_id = await create(api)
    cases: list[tuple[str, dict[str, Any], list[Any]]] = [
        (
            config_id,
            {
                "user_id": "u",
                "start": T0,
                "horizon": "P1D",
                "timeline": [{"type": "clicked", "occurred_at": "2026-03-09T10:00:00Z"}],
            },
            ["body", "timeline", 0, "occurred_at"],
        ),
        (
            config_id,
            {"user_id": "u", "timeline": [{"type": "Bad Type", "occurred_at": T0}]},
            ["body", "timeline", 0, "type"],
        ),
        (config_id, {"user_id": "u", "seed": "7"}, ["body", "seed"]),
        (config_id, {"user_id": "u", "horizon": "P999D"}, ["body", "horizon"]),
        (config_id, {"user_id": "u", "bogus": 1}, ["body", "bogus"]),
        ("", {"user_id": "u"}, ["body", "config"]),
        (
            "",
            {"user_id": "u", "config": {**SEQUENCE, "steps": [{"id": "x", "channels": ["sms"]}]}},
            ["body", "config", "steps", 0, "template"],
        ),
        ("", {"user_id": "u", "config": {**SEQUENCE, "id": "mine"}}, ["body", "config", "id"]),
    ]
    for target, body, loc in cases:
        path = f"{API}/{target}/preview" if target else f"{API}/preview"
        response = await api.post(path, json=body)
        assert response.status_code == 422, (body, response.text)
        assert loc in [e["loc"] for e in response.json()["detail"]], (body, response.text)
    missing = await api.post(f"{API}/no-such-sequence/preview", json={"user_id": "u"})
    assert missing.status_code == 404


async def test_a_test_send_reaches_the_command_topic_marked_test_and_counts_nowhere(
    api: httpx.AsyncClient, test_settings: Settings
) -> None:
    config_id = await create(api)
    settings = await api.put("/api/v1/workspaces/acme/settings", json={"test_users": ["qa-anna"]})
    assert settings.status_code == 200, settings.text
    send = {"user_id": "qa-anna", "step_id": "tips", "channel": "push"}
    refused = await api.post(f"{API}/{config_id}/test-send", json={**send, "user_id": "customer"})
    assert refused.status_code == 403
    for body, loc in (
        ({**send, "step_id": "check"}, ["body", "step_id"]),
        ({**send, "channel": "sms"}, ["body", "channel"]),
        ({**send, "variant": "zzz"}, ["body", "variant"]),
    ):
        invalid = await api.post(f"{API}/{config_id}/test-send", json=body)
        assert invalid.status_code == 422, invalid.text
        assert invalid.json()["detail"][0]["loc"] == loc
    response = await api.post(f"{API}/{config_id}/test-send", json=send)
    assert response.status_code == 200, response.text
    sent = response.json()
    topic = test_settings.command_topic(Channel.PUSH)
    assert sent["topic"] == topic
    command = sent["command"]
    assert (command["test"], command["template"], command["step_id"]) == (True, "tpl-tips", "tips")

    async with TopicReader(test_settings.kafka_bootstrap_servers, topic) as commands:

        async def published() -> bool:
            return any(c["command_id"] == command["command_id"] for c in await commands.poll())

        await eventually(published, timeout=30, what="the test command on its topic")
        assert [c for c in commands.seen if c["command_id"] == command["command_id"]] == [command]

    async with TopicReader(
        test_settings.kafka_bootstrap_servers, test_settings.topic_activities
    ) as activities:
        recorded = await activities.read_to_end()
    assert recorded, "the sequence's creation is recorded"
    assert not [a for a in recorded if a.get("command_id") == command["command_id"]]
    assert not [a for a in recorded if a.get("type") == "command_emitted"]
    metrics = (await api.get(f"{API}/{config_id}/metrics")).json()
    assert sum(arm["sent"] for arm in metrics["arms"].values()) == 0


async def test_test_sends_are_rate_limited_per_workspace(api: httpx.AsyncClient) -> None:
    config_id = await create(api)
    await api.put("/api/v1/workspaces/acme/settings", json={"test_users": ["qa-bo"]})
    send = {"user_id": "qa-bo", "step_id": "welcome"}
    statuses = [
        (await api.post(f"{API}/{config_id}/test-send", json=send)).status_code for _ in range(12)
    ]
    assert statuses[:10] == [200] * 10
    assert 429 in statuses[10:]


async def test_a_workspace_key_previews_and_test_sends_only_its_own_workspace(
    test_settings: Settings, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    acme, globex = add_key(keys_file, "acme-ci", "acme"), add_key(keys_file, "globex-ci", "globex")
    settings = test_settings.model_copy(update={"api_keys_file": keys_file})
    async with running_gateway(settings, headers={"Authorization": f"Bearer {acme}"}) as api:
        unknown = {"Authorization": "Bearer not-a-key"}
        anonymous = await api.post(f"{API}/preview", json={"user_id": "u"}, headers=unknown)
        assert anonymous.status_code == 401
        config_id = await create(api)
        await api.put("/api/v1/workspaces/acme/settings", json={"test_users": ["qa-anna"]})
        other = {"Authorization": f"Bearer {globex}"}
        preview = await api.post(f"{API}/{config_id}/preview", json={"user_id": "u"}, headers=other)
        assert preview.status_code == 404
        send = {"user_id": "qa-anna", "step_id": "welcome"}
        sent = await api.post(f"{API}/{config_id}/test-send", json=send, headers=other)
        assert sent.status_code == 404
        draft = {"user_id": "u", "config": copy.deepcopy(SEQUENCE)}
        assert (await api.post(f"{API}/preview", json=draft, headers=other)).status_code == 404
        assert (await api.post(f"{API}/preview", json=draft)).status_code == 200
