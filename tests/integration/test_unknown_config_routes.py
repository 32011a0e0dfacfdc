"""Every per-configuration route answers 404 for an id that names no sequence, whoever asks:
no keys configured, and the admin key (a workspace key's 404 is tested in test_api_auth)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from sme.settings import Settings
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
ADMIN = "Admin-key-for-unknown-routes-0123456789"
ROUTES = ("activities", "metrics", "report", "dashboard", "versions")


@pytest.mark.parametrize("with_admin_key", [False, True], ids=["no keys", "admin key"])
async def test_every_per_config_route_of_an_unknown_sequence_answers_404(
    test_settings: Settings, with_admin_key: bool
) -> None:
    settings, headers = test_settings, None
    if with_admin_key:
        settings = test_settings.model_copy(update={"admin_api_key": SecretStr(ADMIN)})
        headers = {"Authorization": f"Bearer {ADMIN}"}
    async with running_gateway(settings, headers=headers) as api:
        for route in ROUTES:
            response = await api.get(f"{API}/no-such-sequence/{route}")
            assert response.status_code == 404, (route, response.status_code, response.text)
