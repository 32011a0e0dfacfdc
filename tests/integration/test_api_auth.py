"""API keys through HTTP: 401 without a key, a workspace key never sees or changes another
workspace (404, like a missing resource), the admin key sees all, keys are stored hashed, and
without keys the gateway refuses to listen beyond loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sme.errors import ConfigurationError
from sme.gateway.app import create_app
from sme.gateway.auth import add_key
from sme.settings import Settings
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
ADMIN = "admin-secret-for-tests-0123456789"


def sequence(workspace: str) -> dict[str, Any]:
    return {
        "workspace_id": workspace,
        "name": f"{workspace} onboarding",
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
    }


@pytest.fixture
async def keyed(
    test_settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    keys_file = tmp_path / "keys.json"
    keys = {
        "acme": add_key(keys_file, "acme-ci", "acme"),
        "globex": add_key(keys_file, "globex-ci", "globex"),
    }
    settings = test_settings.model_copy(
        update={"api_keys_file": keys_file, "admin_api_key": SecretStr(ADMIN)}
    )
    async with running_gateway(settings, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        yield http, keys


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_keys_are_stored_only_as_hashes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = add_key(path, "k1", "acme")
    assert key not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600


async def test_requests_without_a_valid_key_get_401(
    keyed: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, _ = keyed
    for headers in ({"Authorization": ""}, bearer("sme_not-a-key"), {"Authorization": "Basic abc"}):
        response = await http.get(API, params={"workspace_id": "acme"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert (await http.get("/healthz", headers={"Authorization": ""})).status_code == 200


async def test_two_workspaces_two_keys_every_cross_workspace_call_is_refused(
    keyed: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, keys = keyed
    acme, globex = bearer(keys["acme"]), bearer(keys["globex"])
    mine = await http.post(API, json=sequence("acme"), headers=acme)
    assert mine.status_code == 201
    theirs = (await http.post(API, json=sequence("globex"), headers=globex)).json()
    url = f"{API}/{theirs['id']}"
    refused = [
        await http.get(url, headers=acme),
        await http.patch(url, json={"name": "hijack"}, headers=acme),
        await http.delete(url, headers=acme),
        await http.get(f"{url}/versions", headers=acme),
        await http.get(f"{url}/activities", headers=acme),
        await http.get(API, params={"workspace_id": "globex"}, headers=acme),
        await http.post(API, json=sequence("globex"), headers=acme),
        await http.get("/api/v1/workspaces/globex/settings", headers=acme),
        await http.put("/api/v1/workspaces/globex/settings", json={}, headers=acme),
        await http.put(
            "/api/v1/workspaces/globex/kill-switch", json={"engaged": True}, headers=acme
        ),
        await http.get(f"{url}/dashboard", headers=acme),
        await http.get(f"{url}/metrics", headers=acme),
        await http.get(f"{url}/report", headers=acme),
        await http.post(
            f"{url}/enrollments", json={"batch_id": "b", "user_ids": ["u"]}, headers=acme
        ),
    ]
    assert [r.status_code for r in refused] == [404] * len(refused)
    missing = (await http.get(f"{API}/nonexistent", headers=acme)).json()
    foreign = (await http.get(url, headers=acme)).json()
    assert (missing, foreign) == (
        {"detail": "no configuration nonexistent"},
        {"detail": f"no configuration {theirs['id']}"},
    ), "a foreign configuration reads exactly like a missing one"
    unchanged = (await http.get(url, headers=globex)).json()
    assert (unchanged["name"], unchanged["status"], unchanged["version"]) == (
        "globex onboarding",
        "ACTIVE",
        1,
    )
    own = (await http.get(API, params={"workspace_id": "acme"}, headers=acme)).json()["items"]
    assert [c["workspace_id"] for c in own] == ["acme"]
    everything = [
        (await http.get(f"{API}/{mine.json()['id']}")).status_code,
        (await http.get(url)).status_code,
    ]
    assert everything == [200, 200], "the admin key sees every workspace"


async def test_without_keys_the_gateway_refuses_to_listen_beyond_loopback(
    test_settings: Settings,
) -> None:
    exposed = test_settings.model_copy(update={"http_host": "0.0.0.0"})  # noqa: S104 - the point
    with pytest.raises(ConfigurationError, match="loopback"):
        create_app(exposed)
    create_app(test_settings.model_copy(update={"http_host": "127.0.0.1"}))
