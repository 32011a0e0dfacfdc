"""The core's speed-ups keep what they replace: ids are the same as ever (senders and the sink
dedupe on them across deploys), answers remembered per configuration object are never served
for another object, and the remembered answers stay bounded."""

from __future__ import annotations

from sme.contracts.activities import ActivityType
from sme.core.evolve import PerObject
from sme.core.ids import incarnation, stable_id


def test_ids_are_the_same_as_before_the_speedups() -> None:
    # Pinned from the implementation before issue 12's changes: ids must never drift.
    assert stable_id("command", "ws-acme", "cfg-1", "user-1", 1, "s1") == (
        "2ce6f10f-8fd5-81d8-89f4-0f36d24be631"
    )
    assert stable_id(
        "activity", "step_deferred", "ws-acme", "cfg-1", "user-1", 2, "s1|0", "ep1"
    ) == ("24f41002-910f-8a69-80a8-f2008480081a")
    assert stable_id("activity", "event_received", "ws", "é—:1") == (
        "6b9a5392-277e-8203-8fe4-e042e527da95"
    )
    assert incarnation("p", 3, 17) == "e46fa10e493c"


def test_an_activity_kind_gives_the_same_id_as_its_value() -> None:
    kind = ActivityType.STEP_DEFERRED
    assert stable_id("activity", kind, "w", "u") == stable_id("activity", kind.value, "w", "u")


class _Config:
    """Stands for a frozen configuration: equal by value, distinct objects."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Config) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def test_an_answer_is_derived_once_per_object_and_never_served_for_another() -> None:
    calls: list[str] = []

    def derive(config: _Config) -> str:
        calls.append(config.name)
        return config.name.upper()

    per = PerObject(derive)
    first, twin = _Config("a"), _Config("a")
    assert per(first) == "A"
    assert per(first) == "A"
    assert per(twin) == "A"  # an equal but different object is derived again
    assert calls == ["a", "a"]


def test_remembered_answers_are_bounded() -> None:
    per: PerObject[_Config, str] = PerObject(lambda c: c.name, size=4)
    configs = [_Config(str(i)) for i in range(50)]
    for config in configs:
        assert per(config) == config.name
    assert len(per._memo) <= 4
