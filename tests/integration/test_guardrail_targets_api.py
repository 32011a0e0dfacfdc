"""Categories, per-channel quiet hours and transactional steps through the configuration API:
stored and read back as written, and refused with 422 at the field to fix."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sme.settings import Settings
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
SETTINGS_URL = "/api/v1/workspaces/acme/settings"
SEQUENCE: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Orders",
    "entry": {"event_types": ["ordered"]},
    "steps": [
        {"id": "receipt", "template": "receipt", "channels": ["email"], "transactional": True},
        {"id": "tips", "wait": "P1D", "template": "tips", "channels": ["push", "in_app"],
         "category": "tips"},
    ],
    "guardrails": {
        "frequency_caps": [{"max": 1, "per": "P7D", "category": "tips"}],
        "quiet_hours": {"start": "21:00", "end": "08:00"},
        "quiet_hours_overrides": [{"channel": "in_app", "quiet_hours": None}],
    },
}  # fmt: skip


@pytest.fixture
async def api(test_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(test_settings) as http:
        yield http


async def test_a_sequence_with_categories_and_overrides_reads_back_as_written(
    api: httpx.AsyncClient,
) -> None:
    created = await api.post(API, json=SEQUENCE)

    assert created.status_code == 201, created.text
    body = (await api.get(f"{API}/{created.json()['id']}")).json()
    assert [(s["category"], s["transactional"]) for s in body["steps"]] == [
        ("marketing", True),
        ("tips", False),
    ]
    assert body["guardrails"]["frequency_caps"][0]["category"] == "tips"
    assert body["guardrails"]["quiet_hours_overrides"] == [
        {"channel": "in_app", "category": None, "quiet_hours": None}
    ]


async def test_bad_targets_get_422_at_their_fields(api: httpx.AsyncClient) -> None:
    bad = copy.deepcopy(SEQUENCE)
    bad["steps"][1]["category"] = "Not An Id"
    bad["guardrails"]["quiet_hours_overrides"].append({"quiet_hours": None})

    response = await api.post(API, json=bad)

    assert response.status_code == 422
    locs = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert ("body", "steps", 1, "category") in locs
    assert ("body", "guardrails", "quiet_hours_overrides", 1, "channel") in locs


async def test_workspace_settings_take_per_channel_quiet_hours(api: httpx.AsyncClient) -> None:
    overrides = [
        {"channel": "sms", "quiet_hours": {"start": "20:00", "end": "09:00"}},
        {"channel": "sms", "quiet_hours": None},
    ]
    refused = await api.put(SETTINGS_URL, json={"guardrails": {"quiet_hours_overrides": overrides}})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == [
        "body", "guardrails", "quiet_hours_overrides", 1
    ]  # fmt: skip

    put = await api.put(SETTINGS_URL, json={"guardrails": {"quiet_hours_overrides": overrides[:1]}})

    assert put.status_code == 200, put.text
    stored = (await api.get(SETTINGS_URL)).json()["guardrails"]["quiet_hours_overrides"]
    assert stored[0]["quiet_hours"]["start"] == "20:00:00"
