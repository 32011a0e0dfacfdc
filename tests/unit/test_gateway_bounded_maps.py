"""The gateway's in-memory maps are bounded: automation remembers one warning per active rule,
and the configuration service holds a lock only for a configuration with a write in flight."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from sme.config_mirror import ConfigRegistry
from sme.contracts.sequences import SequenceConfig
from sme.errors import SmeError
from sme.gateway.automation import AutomationMonitor
from sme.gateway.config_service import ConfigService
from sme.settings import Settings
from tests.unit.test_automation_windows import (
    NOW,
    FakeConfigs,
    FakeCounter,
    FakeProducer,
    FakeStore,
)


def _warning_sequence() -> SequenceConfig:
    return SequenceConfig.model_validate(
        {
            "id": "c",
            "workspace_id": "w",
            "name": "n",
            "entry": {"event_types": ["signed_up"]},
            "steps": [{"id": "s", "template": "t", "channels": ["email"]}],
            "automation_rules": [
                {
                    "id": "unsub-warn",
                    "metric": "unsubscribe_rate",
                    "threshold": 0.5,
                    "warn_at": 0.1,
                    "min_volume": 10,
                    "window": "PT1H",
                }
            ],
        }
    )


async def test_automation_remembers_one_warning_per_rule_however_many_windows_pass() -> None:
    always = NOW + timedelta(days=3650)  # inside every window the fake store is asked about
    rows = [(always, "command_emitted", "")] * 100 + [(always, "feedback", "unsubscribed")] * 10
    producer = FakeProducer()
    monitor = AutomationMonitor(
        Settings(),
        FakeStore(rows),  # type: ignore[arg-type]
        FakeConfigs(),  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        FakeCounter(),  # type: ignore[arg-type]
    )
    config = _warning_sequence()

    for hour in range(300):
        await monitor.check(config, NOW + timedelta(hours=hour))
        await monitor.check(config, NOW + timedelta(hours=hour, minutes=30))  # same window

    assert len(producer.sent) == 300  # one warning per window
    assert len(monitor._warned) == 1


async def test_config_locks_are_released_after_writes_to_many_distinct_ids() -> None:
    service = ConfigService(Settings(), ConfigRegistry(), FakeProducer())  # type: ignore[arg-type]

    for i in range(1000):
        with pytest.raises(SmeError):
            await service.patch(f"missing-{i}", {"name": "x"}, None, "test")

    assert service._locks == {}


async def test_writes_to_one_config_still_take_turns() -> None:
    service = ConfigService(Settings(), ConfigRegistry(), FakeProducer())  # type: ignore[arg-type]
    order: list[str] = []

    async def write(name: str) -> None:
        async with service._lock("cfg"):
            order.append(f"{name}-in")
            await asyncio.sleep(0)
            order.append(f"{name}-out")

    await asyncio.gather(write("a"), write("b"))

    assert order == ["a-in", "a-out", "b-in", "b-out"]
    assert service._locks == {}
