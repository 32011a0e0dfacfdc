"""The config registry's own logic: records applied by version whatever their key or order,
tombstones, listeners, one workspace per configuration id, and the kill switch as a pause
(with the due-index un-parking a released workspace's users the way it does on resume)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from sme.config_mirror import ConfigRegistry
from sme.contracts.config_records import SequenceRecord, WorkspaceRecord, record_key
from sme.contracts.sequences import KillSwitch, SequenceConfig, Status, WorkspaceSettings
from sme.engine.app import Engine
from sme.engine.timers import DueIndex

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
LEGACY = "sequence:onboarding"  # the key before it carried the workspace


def seq(version: int = 1, workspace: str = "acme", config_id: str = "onboarding", **kw: Any):
    document: dict[str, Any] = {
        "id": config_id,
        "workspace_id": workspace,
        "name": kw.pop("name", "Onboarding"),
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "hello", "template": "welcome", "channels": ["email"]}],
        "version": version,
        "updated_at": T0 + timedelta(minutes=version),
        **kw,
    }
    return SequenceConfig.model_validate(document)


def ws(version: int = 1, workspace: str = "acme", engaged: bool = False, **kw: Any):
    return WorkspaceSettings(
        workspace_id=workspace,
        version=version,
        updated_at=T0 + timedelta(minutes=version),
        kill_switch=KillSwitch(engaged=engaged),
        **kw,
    )


def put(registry: ConfigRegistry, item: SequenceConfig | WorkspaceSettings, key: str = "") -> None:
    record = (
        SequenceRecord(config=item)
        if isinstance(item, SequenceConfig)
        else WorkspaceRecord(settings=item)
    )
    registry.apply(key or record_key(record), record.model_dump_json().encode())


def recording(registry: ConfigRegistry) -> list[tuple[Any, Any]]:
    changes: list[tuple[Any, Any]] = []
    registry.on_change(lambda old, new: changes.append((old, new)))
    return changes


# --- keys ------------------------------------------------------------------------------------
def test_a_sequence_record_key_carries_its_workspace_length_prefixed() -> None:
    key = record_key(SequenceRecord(config=seq(workspace="acme", config_id="x")))
    assert key == "sequence:4:acme/x"
    other = record_key(SequenceRecord(config=seq(workspace="acme/x", config_id="y")))
    assert other != key and other.startswith("sequence:6:acme/x/")


# --- versions -------------------------------------------------------------------------------
def test_an_older_sequence_version_never_overwrites_a_newer_one() -> None:
    registry = ConfigRegistry()
    put(registry, seq(3, name="v3"))
    put(registry, seq(2, name="lagging v2"))
    current = registry.get("onboarding")
    assert current is not None and (current.version, current.name) == (3, "v3")


def test_older_workspace_settings_never_overwrite_newer_ones() -> None:
    registry = ConfigRegistry()
    put(registry, ws(5, engaged=True))
    put(registry, ws(4, engaged=False))
    settings = registry.workspace("acme")
    assert settings is not None and settings.version == 5 and settings.kill_switch.engaged


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_equal_versions_with_different_content_converge_whatever_the_reading_order(
    order: tuple[int, ...],
) -> None:
    later = seq(2, name="later", updated_at=T0 + timedelta(hours=1))
    earlier = seq(2, name="earlier", updated_at=T0)
    same_time = seq(2, name="same time, larger JSON", updated_at=T0 + timedelta(hours=1))
    records = [later, earlier, same_time]
    registry = ConfigRegistry()
    for index in order:
        put(registry, records[index])
    current = registry.get("onboarding")
    assert current is not None and current.name == "same time, larger JSON"


def test_the_same_record_read_again_is_not_a_change() -> None:
    registry = ConfigRegistry()
    changes = recording(registry)
    put(registry, seq(1))
    put(registry, seq(1))  # e.g. the gateway applies its write, then its mirror reads it
    assert len(changes) == 1


def test_listeners_see_each_applied_change_with_old_and_new_and_nothing_dropped() -> None:
    registry = ConfigRegistry()
    changes = recording(registry)
    put(registry, seq(1))
    put(registry, seq(2))
    put(registry, seq(1))  # stale: dropped, no listener call
    assert [(o and o.version, n and n.version) for o, n in changes] == [(None, 1), (1, 2)]


# --- tombstones and legacy keys -------------------------------------------------------------
def test_a_tombstone_deletes_the_sequence_and_tells_the_listeners() -> None:
    registry = ConfigRegistry()
    changes = recording(registry)
    put(registry, seq(1))
    registry.apply(record_key(SequenceRecord(config=seq(1))), None)
    assert registry.get("onboarding") is None
    assert dict(registry.configs_for("acme")) == {}
    assert changes[-1][0] is not None and changes[-1][1] is None


def test_a_workspace_tombstone_deletes_its_settings() -> None:
    registry = ConfigRegistry()
    put(registry, ws(2))
    registry.apply("workspace:acme", None)
    assert registry.workspace("acme") is None


def test_a_legacy_key_record_is_still_read() -> None:
    registry = ConfigRegistry()
    put(registry, seq(1), key=LEGACY)
    assert registry.get("onboarding") is not None
    assert list(registry.configs_for("acme")) == ["onboarding"]


def test_the_newer_record_wins_whatever_its_key() -> None:
    registry = ConfigRegistry()
    put(registry, seq(4, name="legacy v4"), key=LEGACY)
    put(registry, seq(3, name="current-key v3"))
    current = registry.get("onboarding")
    assert current is not None and current.name == "legacy v4"
    put(registry, seq(5, name="current-key v5"))
    current = registry.get("onboarding")
    assert current is not None and current.name == "current-key v5"


def test_a_tombstone_of_a_key_that_no_longer_holds_the_configuration_deletes_nothing() -> None:
    registry = ConfigRegistry()
    put(registry, seq(1), key=LEGACY)
    put(registry, seq(2))  # the newer record, under the current key
    registry.apply(LEGACY, None)  # compaction of the old key
    current = registry.get("onboarding")
    assert current is not None and current.version == 2


def test_a_record_whose_key_names_another_configuration_is_ignored() -> None:
    registry = ConfigRegistry()
    put(registry, seq(1, workspace="beta"), key="sequence:4:acme/onboarding")
    assert registry.get("onboarding") is None


# --- one workspace per configuration id ------------------------------------------------------
def test_a_record_for_an_id_of_another_workspace_is_ignored_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = ConfigRegistry()
    put(registry, seq(1, workspace="acme", name="acme's"))
    put(registry, seq(9, workspace="beta", name="beta's, same id"))
    current = registry.get("onboarding")
    assert current is not None and current.workspace_id == "acme" and current.name == "acme's"
    assert dict(registry.configs_for("beta")) == {}
    assert "belongs to workspace acme" in caplog.text


# --- the kill switch as a pause --------------------------------------------------------------
def test_an_active_sequence_is_paused_while_its_workspace_kill_switch_is_engaged() -> None:
    registry = ConfigRegistry()
    put(registry, seq(1))
    put(registry, seq(1, workspace="beta", config_id="other"))
    put(registry, seq(1, config_id="ended", status=Status.STOPPED))
    assert not registry.paused("onboarding")
    put(registry, ws(2, engaged=True))
    assert registry.paused("onboarding")
    assert not registry.paused("other"), "another workspace's sequence is not held"
    assert not registry.paused("ended"), "STOPPED stays final: its enrollments end when woken"
    put(registry, ws(3, engaged=False))
    assert not registry.paused("onboarding")


def _engine(registry: ConfigRegistry, due: DueIndex, now: datetime) -> Any:
    """The engine's due-index wiring (its `_arm` and its registry listener), without Faust."""
    engine = SimpleNamespace(configs=registry, due=due, clock=lambda: now)
    registry.on_change(lambda old, new: Engine._config_changed(engine, old, new))  # type: ignore[arg-type]
    return engine


def _state(*enrollments: tuple[str, int]) -> Any:
    return SimpleNamespace(
        enrollments=[SimpleNamespace(config_id=c, due_ms=d) for c, d in enrollments]
    )


def test_users_of_a_kill_switched_workspace_are_parked_and_its_release_wakes_them() -> None:
    registry, due = ConfigRegistry(), DueIndex()
    now = T0 + timedelta(hours=1)
    now_ms = int(now.timestamp() * 1000)
    engine = _engine(registry, due, now)
    put(registry, seq(1))
    put(registry, seq(1, workspace="beta", config_id="other"))
    put(registry, ws(2, engaged=True))
    user, bystander = b"4:acme/ada", b"4:beta/bob"
    Engine._arm(engine, user, 0, _state(("onboarding", now_ms - 1_000)))
    Engine._arm(engine, bystander, 1, _state(("other", now_ms - 1_000)))
    assert [w.key for w in due.pop_due(now_ms)] == [bystander], "ada is parked, not woken"
    put(registry, ws(3, engaged=False))  # released
    assert [w.key for w in due.pop_due(now_ms)] == [user]


def test_a_release_tells_listeners_each_active_sequence_left_its_pause() -> None:
    registry = ConfigRegistry()
    put(registry, seq(1))
    put(registry, seq(1, config_id="by-hand", status=Status.PAUSED))
    changes = recording(registry)
    put(registry, ws(2, engaged=True))
    put(registry, ws(3, engaged=False))
    summary = [(o.id, o.status, n.status) for o, n in changes]
    assert summary == [
        ("onboarding", Status.ACTIVE, Status.PAUSED),
        ("onboarding", Status.PAUSED, Status.ACTIVE),
    ]
    assert all(o.version == n.version for o, n in changes)
    put(registry, ws(4, engaged=False, default_timezone="Europe/Paris"))
    assert len(changes) == 2, "settings that leave the switch as it was notify nobody"
