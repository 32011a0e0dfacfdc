"""DRAINING through the configuration service (broker-free): the kill switch holds a draining
sequence like an active one and its release returns it to DRAINING; no sequence may start
draining while the switch is engaged; settings written before `draining_configs` existed
still repeat the switch."""

from __future__ import annotations

from typing import Any

import pytest

from sme.config_mirror import ConfigRegistry
from sme.contracts.sequences import Status
from sme.gateway.config_service import ConfigConflictError, ConfigService, InvalidConfigError
from sme.settings import Settings
from tests.unit.test_automation_windows import FakeProducer

SEQUENCE: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
}


def service() -> ConfigService:
    return ConfigService(Settings(), ConfigRegistry(), FakeProducer())  # type: ignore[arg-type]


async def test_the_kill_switch_pauses_a_draining_sequence_and_release_returns_it_to_draining() -> (
    None
):
    configs = service()
    active = await configs.create(dict(SEQUENCE), "test")
    draining = await configs.create({**SEQUENCE, "status": "DRAINING"}, "test")
    paused = await configs.create({**SEQUENCE, "status": "PAUSED"}, "test")

    engaged = await configs.kill_switch("acme", True, "test")

    assert engaged.kill_switch.paused_configs == sorted([active.id, draining.id])
    assert engaged.kill_switch.draining_configs == [draining.id]
    assert {configs.get(c.id).status for c in (active, draining, paused)} == {Status.PAUSED}
    with pytest.raises(ConfigConflictError):
        await configs.patch(paused.id, {"status": "DRAINING"}, None, "test")

    await configs.kill_switch("acme", False, "test")

    statuses = [configs.get(c.id).status for c in (active, draining, paused)]
    assert statuses == [Status.ACTIVE, Status.DRAINING, Status.PAUSED]
    assert configs.workspace("acme").kill_switch.draining_configs == []


async def test_a_draining_sequence_created_while_engaged_is_held_and_released_draining() -> None:
    configs = service()
    await configs.kill_switch("acme", True, "test")

    held = await configs.create({**SEQUENCE, "status": "DRAINING"}, "test")

    assert held.status is Status.PAUSED
    assert configs.workspace("acme").kill_switch.draining_configs == [held.id]
    await configs.kill_switch("acme", False, "test")
    assert configs.get(held.id).status is Status.DRAINING


async def test_settings_repeating_the_switch_in_its_older_form_are_unchanged() -> None:
    configs = service()
    await configs.put_workspace("acme", {"default_timezone": "Europe/Paris"}, "test")
    older = {
        "workspace_id": "acme",
        "default_timezone": "Europe/Paris",
        "kill_switch": {"engaged": False, "paused_configs": []},  # before draining_configs
    }

    settings, what = await configs.apply_workspace(older, "test")

    assert what == "unchanged"
    assert settings.version == 1


async def test_a_status_of_any_json_type_is_refused_as_invalid_not_as_an_error() -> None:
    configs = service()
    created = await configs.create(dict(SEQUENCE), "test")

    for hostile in (["DRAINING"], {"DRAINING": 1}, 1):
        with pytest.raises(InvalidConfigError) as caught:
            await configs.patch(created.id, {"status": hostile}, None, "test")
        assert caught.value.errors[0]["loc"] == ["body", "status"]
