"""Builders for the sequence-core unit tests: configurations, events, and a tiny driver that
feeds one user's state through the pure machine the way the engine does (events, and timers
at the state's next due time)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.commands import Command
from sme.contracts.events import Event
from sme.contracts.sequences import SequenceConfig, Status, WorkspaceSettings
from sme.core import sequence
from sme.core.sequence import Context, Outcome
from sme.core.timeutil import from_ms
from sme.core.user_state import UserState

WS = "ws-acme"
USER = "user-1"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)  # a Wednesday; 12:00 in Paris

NO_EXPERIMENT = {"holdout_pct": 0, "baseline_pct": 0}  # everyone adaptive
ALL_HOLDOUT = {"holdout_pct": 100, "baseline_pct": 0}
ALL_BASELINE = {"holdout_pct": 0, "baseline_pct": 100}

_ids = itertools.count(1)


def msg_step(step_id: str, **overrides: Any) -> dict[str, Any]:
    step: dict[str, Any] = {"id": step_id, "template": f"tpl-{step_id}", "channels": ["email"]}
    step.update(overrides)
    return step


def config(**overrides: Any) -> SequenceConfig:
    """A valid configuration: one e-mail step on signed_up, everyone in the adaptive arm."""
    data: dict[str, Any] = {
        "id": "cfg-1",
        "workspace_id": WS,
        "name": "Onboarding",
        "entry": {"event_types": ["signed_up"]},
        "steps": [msg_step("s1")],
        "experiment": NO_EXPERIMENT,
    }
    data.update(overrides)
    return SequenceConfig.model_validate(data)


def edited(cfg: SequenceConfig, **changes: Any) -> SequenceConfig:
    """The configuration after an edit: new fields, next version, revalidated."""
    data = cfg.model_dump(mode="json")
    data.update(changes)
    data["version"] = cfg.version + 1
    return SequenceConfig.model_validate(data)


def with_status(cfg: SequenceConfig, status: Status) -> SequenceConfig:
    return edited(cfg, status=status.value)


def workspace(**guardrails: Any) -> WorkspaceSettings:
    return WorkspaceSettings.model_validate({"workspace_id": WS, "guardrails": guardrails})


def event(
    type_: str,
    at: datetime = T0,
    *,
    user_id: str = USER,
    event_id: str | None = None,
    **fields: Any,
) -> Event:
    data: dict[str, Any] = {
        "event_id": event_id or f"evt-{next(_ids)}",
        "workspace_id": WS,
        "user_id": user_id,
        "type": type_,
        "occurred_at": at,
    }
    data.update(fields)
    return Event.model_validate(data)


def of_type(outcome: Outcome | Iterable[Activity], kind: ActivityType) -> list[Activity]:
    activities = outcome.activities if isinstance(outcome, Outcome) else outcome
    return [a for a in activities if a.type is kind]


@dataclass
class Driver:
    """One user's state driven through the machine; keeps every output."""

    configs: dict[str, SequenceConfig]
    workspace: WorkspaceSettings | None = None
    user_id: str = USER
    seed: int = 7
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    ledger: dict[str, float] = field(default_factory=dict)
    state: UserState = field(init=False)
    rng: random.Random = field(init=False)
    commands: list[Command] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = UserState.new(WS, self.user_id)
        self.rng = random.Random(self.seed)

    @classmethod
    def of(cls, *configs: SequenceConfig, **kw: Any) -> Driver:
        return cls({c.id: c for c in configs}, **kw)

    def ctx(self) -> Context:
        return Context(self.configs, self.workspace, self.stats, self.ledger)

    def set_config(self, cfg: SequenceConfig) -> None:
        self.configs = {**self.configs, cfg.id: cfg}

    def _apply(self, outcome: Outcome) -> Outcome:
        self.state = outcome.state
        self.commands.extend(outcome.commands)
        self.activities.extend(outcome.activities)
        self.outcomes.append(outcome)
        for delta in outcome.stat_deltas:
            trials, successes = self.stats.get(delta.key, (0.0, 0.0))
            self.stats[delta.key] = (trials + delta.trials, successes + delta.successes)
        for key, amount in outcome.ledger_deltas:
            self.ledger[key] = self.ledger.get(key, 0.0) + amount
        return outcome

    def send(self, type_: str, at: datetime = T0, **fields: Any) -> Outcome:
        ev = event(type_, at, user_id=self.user_id, **fields)
        return self.feed(ev, at)

    def feed(self, ev: Event, now: datetime | None = None) -> Outcome:
        return self._apply(
            sequence.on_event(self.state, ev, now or ev.occurred_at, self.rng, self.ctx())
        )

    def tick(self, now: datetime) -> Outcome:
        return self._apply(sequence.on_timer(self.state, now, self.rng, self.ctx()))

    def due(self) -> datetime | None:
        ms = self.state.next_due_ms()
        return None if ms is None else from_ms(ms)

    def run_until(self, until: datetime, max_ticks: int = 200) -> list[Outcome]:
        """Fire timers at every due time up to `until` (as the engine's timers would)."""
        fired: list[Outcome] = []
        last: datetime | None = None
        for _ in range(max_ticks):
            due = self.due()
            if due is None or due > until:
                break
            now = max(due, last) if last else due
            if last is not None and now <= last:
                break  # due but not advancing (e.g. paused): stop
            fired.append(self.tick(now))
            last = now
        return fired


def at(base: datetime = T0, **delta: float) -> datetime:
    return base + timedelta(**delta)
