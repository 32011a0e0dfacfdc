"""`dry_run=true` on the configuration writes (what the editor validates with): the very
checks of the write, answered the same way (422 with field paths, 409 for a stale version),
behind the same keys and body limit, and nothing stored, published or logged; against a
gateway on the real broker and ClickHouse engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sme.gateway.auth import add_key
from sme.settings import Settings
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
DRY = {"dry_run": "true"}


def sequence(**changes: Any) -> dict[str, Any]:
    return {
        "workspace_id": "acme",
        "name": "Onboarding",
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
        **changes,
    }


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_dry_run_checks_as_the_write_does_and_writes_nothing(
    test_settings: Settings, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    acme = add_key(keys_file, "acme-editor", "acme")
    globex = add_key(keys_file, "globex-editor", "globex")
    settings = test_settings.model_copy(update={"api_keys_file": keys_file})
    async with running_gateway(settings, headers=bearer(acme)) as api:
        # the write's keys: none → 401, another workspace's → 404 (as if missing)
        anonymous = await api.post(API, params=DRY, json=sequence(), headers={"Authorization": ""})
        assert anonymous.status_code == 401
        foreign = await api.post(API, params=DRY, json=sequence(), headers=bearer(globex))
        assert foreign.status_code == 404

        valid = await api.post(API, params=DRY, json=sequence())
        assert valid.status_code == 200, valid.text
        assert (valid.json()["name"], valid.json()["version"]) == ("Onboarding", 1)
        assert (await api.get(API, params={"workspace_id": "acme"})).json()["items"] == []

        no_channel = sequence(steps=[{"id": "hello", "template": "hello"}])
        refused = await api.post(API, params=DRY, json=no_channel)
        assert refused.status_code == 422
        assert ["body", "steps", 0, "channels"] in [e["loc"] for e in refused.json()["detail"]]
        written = await api.post(API, json=no_channel)
        assert written.json() == refused.json(), "one validation, whichever way it is asked"
        server_field = await api.post(API, params=DRY, json=sequence(id="mine"))
        assert server_field.status_code == 422
        assert server_field.json()["detail"][0]["loc"] == ["body", "id"]
        too_big = await api.post(
            API, params=DRY, content=b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
        )
        assert too_big.status_code == 413

        created = await api.post(API, json=sequence())
        assert created.status_code == 201, created.text
        config_id = created.json()["id"]
        url = f"{API}/{config_id}"
        patched = await api.patch(
            url, params=DRY, json={"name": "Renamed"}, headers={"If-Match": '"1"'}
        )
        assert patched.status_code == 200, patched.text
        assert (patched.json()["name"], patched.json()["version"]) == ("Renamed", 2)
        assert "etag" not in patched.headers, "no version was written"
        stale = await api.patch(url, params=DRY, json={"name": "R"}, headers={"If-Match": '"7"'})
        assert stale.status_code == 409
        assert stale.json()["detail"] == "version 7 is stale; the current version is 1"
        emptied = await api.patch(url, params=DRY, json={"steps": []})
        assert emptied.status_code == 422
        assert emptied.json()["detail"][0]["loc"] == ["body", "steps"]
        assert (await api.patch(url, params=DRY, json={}, headers=bearer(globex))).status_code == (
            404
        )
        anonymous_patch = await api.patch(url, params=DRY, json={}, headers={"Authorization": ""})
        assert anonymous_patch.status_code == 401
        stored = (await api.get(url)).json()
        assert (stored["name"], stored["version"]) == ("Onboarding", 1)

        # on the broker: the one real create, and its one change activity
        async with TopicReader(settings.kafka_bootstrap_servers, settings.topic_configs) as topic:
            records = await topic.read_to_end()
        sequences = [r for r in records if r.get("kind") == "sequence"]
        assert [(r["config"]["id"], r["config"]["version"]) for r in sequences] == [  # type: ignore[index]
            (config_id, 1)
        ]
        async with TopicReader(
            settings.kafka_bootstrap_servers, settings.topic_activities
        ) as topic:
            activities = await topic.read_to_end()
        changes = [a for a in activities if a.get("type") == "config_changed"]
        assert [(a["config_id"], a["config_version"]) for a in changes] == [(config_id, 1)]

        # a null status removes it, i.e. ACTIVE: while the kill switch holds the sequence
        # that is a resume, refused like one (it used to slip past the check)
        engaged = await api.put("/api/v1/workspaces/acme/kill-switch", json={"engaged": True})
        assert engaged.status_code == 200, engaged.text
        for params in (DRY, {}):
            resumed = await api.patch(url, params=params, json={"status": None})
            assert resumed.status_code == 409, resumed.text
        assert (await api.get(url)).json()["status"] == "PAUSED"
