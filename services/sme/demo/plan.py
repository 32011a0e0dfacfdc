"""The demo's world and sequence: the simulator's `demo` scenario (its population, channel
models and the sequence it runs), the body that creates the sequence through the API, and
which existing sequence a second run reuses. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sme.contracts.sequences import SequenceConfig, Status
from sme.simulator.world import Scenario, load_scenario

SCENARIO = "demo"
SERVER_FIELDS = ("id", "version", "created_at", "updated_at", "status_reason", "status")
"""Set by the server on create (the status: a new sequence is ACTIVE)."""


def demo_world() -> Scenario:
    """The shipped `demo` scenario (services/sme/simulator/scenarios/demo.json)."""
    return load_scenario(SCENARIO)


def create_body(sequence: SequenceConfig) -> dict[str, Any]:
    """`POST …/035-sequential-messaging-engine` body: the sequence as the scenario spells it
    (only the fields it sets), without the fields the server assigns."""
    body = sequence.model_dump(mode="json", exclude_unset=True)
    return {k: v for k, v in body.items() if k not in SERVER_FIELDS}


def reusable(existing: Iterable[SequenceConfig], name: str) -> SequenceConfig | None:
    """The sequence an earlier demo run created and a new run goes on with: the most recently
    updated one with the demo's name that is not STOPPED (STOPPED is final: a new one then)."""
    candidates = [c for c in existing if c.name == name and c.status is not Status.STOPPED]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c.updated_at is not None, c.updated_at, c.version))
