"""The virtual-clock event loop: users sign up, the real core decides, the world answers.

One heap orders everything by virtual time: signups, the core's timers (each user's
`state.next_due_ms()`), and the feedback the world produces for each command (delivered,
opened, clicked, converted, unsubscribed, bounced, carrying the `command_id`), fed back
through `on_event`. The population statistics and the budget ledger are plain dicts updated
from the core's `stat_deltas` and `ledger_deltas`, as the engine's shared stats would be
(immediately: one process, no propagation delay). All randomness, the world's and the
core's, comes from one `random.Random(seed)`, and every tie in the heap is broken by
insertion order, so a seed fixes the result.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sme.contracts.channels import Channel
from sme.contracts.commands import Command
from sme.contracts.events import Event, UserProfile
from sme.core.sequence import Context, Outcome, on_event, on_timer
from sme.core.stats import Counts
from sme.core.timeutil import MS, from_ms, to_ms, zone
from sme.core.user_state import UserState
from sme.simulator.report import LIFT_METHOD, Tally, lift_dict
from sme.simulator.world import (
    CONVERSION_EVENT,
    SIGNUP_EVENT,
    ChannelModel,
    HiddenUser,
    Scenario,
    draw_user,
)

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
_SIGNUP, _TIMER, _FEEDBACK = 0, 1, 2

Feedback = tuple[str, Channel | None, str | None]  # event type, channel, command id


@dataclass(frozen=True, slots=True)
class Result:
    scenario: str
    seed: int
    days: float
    users: int
    tally: Tally
    core_calls: int
    world_conversions: int  # hidden truth, for cross-checks only: never in the report

    def summary(self) -> dict[str, Any]:
        """The `--json` object."""
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "days": self.days,
            "users": self.users,
            "arms": {name: arm.to_dict() for name, arm in self.tally.arms.items()},
            "lift": lift_dict(self.tally.lift()),
            "lift_method": LIFT_METHOD,
            "core_decisions": self.core_calls,
        }


class _Sim:
    def __init__(self, scenario: Scenario, days: float, users: int, seed: int) -> None:
        self.scenario = scenario
        self.rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        self.config = scenario.priced_sequence()
        self.workspace_id = self.config.workspace_id
        self.stats: dict[str, Counts] = {}
        self.ledger: dict[str, float] = {}
        self.ctx = Context(
            configs={self.config.id: self.config},
            workspace=scenario.workspace,
            stats=self.stats,
            ledger=self.ledger,
        )
        self.start_ms = to_ms(scenario.start)
        self.end_ms = self.start_ms + round(days * DAY)
        self.heap: list[tuple[int, int, int, int, Feedback | None]] = []
        self.seq = 0
        self.tally = Tally()
        self.core_calls = 0
        self.world_conversions = 0
        self.fatigue_ms = scenario.fatigue.window // MS
        self.users = [draw_user(scenario, i, f"sim{seed}-{i:06d}", self.rng) for i in range(users)]
        self.states = [UserState.new(self.workspace_id, u.user_id) for u in self.users]
        self.due: list[int | None] = [None] * users
        for user in self.users:
            self._schedule_signup(user)

    # --- scheduling -------------------------------------------------------------------------
    def _push(self, at_ms: int, kind: int, index: int, payload: Feedback | None = None) -> None:
        if at_ms > self.end_ms:
            return
        self.seq += 1
        heapq.heappush(self.heap, (at_ms, self.seq, kind, index, payload))

    def _schedule_signup(self, user: HiddenUser) -> None:
        rng = self.rng
        at = self.start_ms + int(rng.random() * self.scenario.signup_days * DAY)
        if rng.random() < self.scenario.signup_in_active_hours and not self._active(user, at):
            at = self._next_active(user, at) + rng.randrange(HOUR)
        user.signup_ms = at
        self._push(at, _SIGNUP, user.index)
        if user.base_hazard > 0:
            organic = at + int(rng.expovariate(user.base_hazard))
            if organic <= self.end_ms:
                if not self._active(user, organic):
                    organic = self._next_active(user, organic) + rng.randrange(HOUR)
                self._push(organic, _FEEDBACK, user.index, (CONVERSION_EVENT, None, None))

    # --- user clock -------------------------------------------------------------------------
    @staticmethod
    def _local(user: HiddenUser, at_ms: int) -> datetime:
        return from_ms(at_ms).astimezone(zone(user.timezone))

    def _active(self, user: HiddenUser, at_ms: int) -> bool:
        return self._local(user, at_ms).hour in user.active

    def _next_active(self, user: HiddenUser, at_ms: int) -> int:
        """Start of the user's next active local hour after `at_ms`."""
        local = self._local(user, at_ms)
        top = at_ms - (local.minute * MINUTE + local.second * 1000 + local.microsecond // 1000)
        for k in range(1, 25):
            if (local.hour + k) % 24 in user.active:
                return top + k * HOUR
        return at_ms  # unreachable: profiles have at least one hour

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        heap = self.heap
        while heap:
            at, _, kind, index, payload = heapq.heappop(heap)
            user = self.users[index]
            now = from_ms(at)
            if kind == _TIMER:
                if self.due[index] != at:
                    continue  # superseded
                self.due[index] = None
                outcome = on_timer(self.states[index], now, self.rng, self.ctx)
            elif kind == _SIGNUP:
                outcome = on_event(
                    self.states[index], self._signup(user, now), now, self.rng, self.ctx
                )
            else:
                assert payload is not None  # noqa: S101 - feedback always has one
                if payload[0] == CONVERSION_EVENT:
                    if user.converted:
                        continue  # one conversion per user
                    user.converted = True
                    self.world_conversions += 1
                event = self._event(user, now, *payload)
                outcome = on_event(self.states[index], event, now, self.rng, self.ctx)
            self.core_calls += 1
            self._apply(user, outcome, at)

    def _apply(self, user: HiddenUser, outcome: Outcome, at: int) -> None:
        index = user.index
        self.states[index] = state = outcome.state
        stats = self.stats
        for delta in outcome.stat_deltas:
            trials, successes = stats.get(delta.key, (0.0, 0.0))
            stats[delta.key] = (trials + delta.trials, successes + delta.successes)
        for key, amount in outcome.ledger_deltas:
            self.ledger[key] = self.ledger.get(key, 0.0) + amount
        observe = self.tally.observe
        for activity in outcome.activities:
            observe(activity)
        for command in outcome.commands:
            self._respond(user, command, at)
        due = state.next_due_ms()
        if due is not None:
            due = max(due, at + 1)
            if self.due[index] != due:
                self.due[index] = due
                self._push(due, _TIMER, index)

    # --- events -----------------------------------------------------------------------------
    def _event_id(self, user: HiddenUser) -> str:
        self.seq += 1
        return f"e{self.seq}-{user.index}"

    def _signup(self, user: HiddenUser, now: datetime) -> Event:
        return Event(
            event_id=self._event_id(user),
            workspace_id=self.workspace_id,
            user_id=user.user_id,
            type=SIGNUP_EVENT,
            occurred_at=now,
            user=UserProfile(
                timezone=user.timezone,
                attributes=dict(user.attributes),
                consent=dict(user.consent),
            ),
        )

    def _event(
        self,
        user: HiddenUser,
        now: datetime,
        kind: str,
        channel: Channel | None,
        command_id: str | None,
    ) -> Event:
        return Event(
            event_id=self._event_id(user),
            workspace_id=self.workspace_id,
            user_id=user.user_id,
            type=kind,
            occurred_at=now,
            channel=channel,
            command_id=command_id,
        )

    # --- the world's answer to a message ----------------------------------------------------
    def _respond(self, user: HiddenUser, command: Command, at: int) -> None:
        """Schedule what this user does with this message (hidden truth -> feedback events)."""
        rng = self.rng
        channel = command.channel
        model: ChannelModel = self.scenario.channels[channel]
        cid = command.command_id
        index = user.index
        if rng.random() >= model.delivery:
            self._push(at + MINUTE, _FEEDBACK, index, ("bounced", channel, cid))
            return
        delivered = at + rng.randrange(1_000, 30_000)
        self._push(delivered, _FEEDBACK, index, ("delivered", channel, cid))
        horizon = delivered - self.fatigue_ms
        recent = [d for d in user.deliveries if d > horizon]
        user.deliveries = [*recent, delivered]
        fatigue = self.scenario.fatigue
        active = self._active(user, delivered)
        unsubscribe = model.unsubscribe_per_delivery * (
            1 + fatigue.unsubscribe_growth * len(recent)
        )
        if unsubscribe > 0 and rng.random() < unsubscribe:
            when = delivered if active else self._next_active(user, delivered)
            when += rng.randrange(MINUTE, 30 * MINUTE)
            self._push(when, _FEEDBACK, index, ("unsubscribed", channel, cid))
            return
        p_open = user.open_p[channel] * (1 - fatigue.open_decay) ** len(recent)
        if p_open <= 0:
            return
        if not active:
            p_open *= 1 - model.missed_outside_active
        if rng.random() >= p_open:
            return
        opened = delivered + int(rng.expovariate(1 / (model.open_delay_minutes * MINUTE)))
        if not self._active(user, opened):
            opened = self._next_active(user, opened) + rng.randrange(45 * MINUTE)
        self._push(opened, _FEEDBACK, index, ("opened", channel, cid))
        p_click = min(1.0, user.click_p[channel] * user.appeal.get(command.variant, 1.0))
        if rng.random() >= p_click:
            if user.conversion_per_open > 0 and rng.random() < user.conversion_per_open:
                converted = opened + MINUTE + int(rng.expovariate(1 / (60 * MINUTE)))
                self._push(converted, _FEEDBACK, index, (CONVERSION_EVENT, channel, cid))
            return
        clicked = opened + 1_000 + int(rng.expovariate(1 / (model.click_delay_minutes * MINUTE)))
        self._push(clicked, _FEEDBACK, index, ("clicked", channel, cid))
        if rng.random() < user.conversion_per_click:
            converted = clicked + 1_000 + int(rng.expovariate(1 / (20 * MINUTE)))
            self._push(converted, _FEEDBACK, index, (CONVERSION_EVENT, channel, cid))


def simulate(scenario: Scenario, *, days: float = 14, users: int = 20_000, seed: int = 1) -> Result:
    """Run the scenario's sequence for `users` users over `days` virtual days."""
    if users < 1:
        raise ValueError("users must be at least 1")
    if not 0 < days <= 365:
        raise ValueError("days must be in (0, 365]")
    sim = _Sim(scenario, days, users, seed)
    sim.run()
    return Result(
        scenario.name, seed, days, users, sim.tally, sim.core_calls, sim.world_conversions
    )
