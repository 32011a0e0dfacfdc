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
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from sme.contracts.activities import ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.contracts.events import Event, UserProfile
from sme.core.sequence import Context, Outcome, on_event, on_timer
from sme.core.stats import Counts, add_decayed, config_of
from sme.core.timeutil import MS, from_ms, to_ms, zone
from sme.core.user_state import UserState
from sme.simulator.oracle import OBJECTIVES, ContextTable, Knowledge, Objective, message_value
from sme.simulator.report import LIFT_METHOD, Tally, lift_dict, share_of_oracle
from sme.simulator.response import respond
from sme.simulator.world import (
    CONVERSION_EVENT,
    SIGNUP_EVENT,
    Economics,
    HiddenUser,
    Regime,
    Scenario,
    draw_user,
    regimes,
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
    economics: Economics = field(default_factory=Economics)
    objective: Objective = "conversions"
    oracle: Tally | None = None  # the oracle run's tally (its adaptive arm is the oracle)
    oracle_objective: Objective | None = None
    context_oracle: Tally | None = None  # the context oracle run's tally

    def summary(self) -> dict[str, Any]:
        """The `--json` object."""
        days = math.ceil(self.days)
        econ = self.economics
        arms = {name: arm.to_dict(econ, days) for name, arm in self.tally.arms.items()}
        lift = lift_dict(self.tally.lift())
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "seed": self.seed,
            "days": self.days,
            "users": self.users,
            "objective": self.objective,
            "economics": econ.model_dump(),
            "arms": arms,
            "lift": lift,
            "lift_method": LIFT_METHOD,
            "core_decisions": self.core_calls,
        }
        if self.oracle is not None:
            arms["oracle"] = self.oracle.arms[Arm.ADAPTIVE.value].to_dict(
                econ, days, world_view=True
            )
            oracle_lift = self.oracle.lift()["vs_baseline"]
            lift["oracle_vs_baseline"] = oracle_lift.to_dict() if oracle_lift else None
            out["oracle_objective"] = self.oracle_objective
            out["oracle_baseline"] = self.oracle.arms[Arm.BASELINE.value].to_dict(econ, days)
            out["lift_share_of_oracle"] = share_of_oracle(
                self.tally.lift()["vs_baseline"], oracle_lift
            )
        if self.context_oracle is not None:
            arms["context_oracle"] = self.context_oracle.arms[Arm.ADAPTIVE.value].to_dict(
                econ, days, world_view=True
            )
            context_lift = self.context_oracle.lift()["vs_baseline"]
            lift["context_oracle_vs_baseline"] = context_lift.to_dict() if context_lift else None
            out["lift_share_of_context_oracle"] = share_of_oracle(
                self.tally.lift()["vs_baseline"], context_lift
            )
        return out


def objective_of(scenario: Scenario) -> Objective:
    """The sequence's `adaptive.objective` where the contract has it, else conversions (the
    policy's objective today): the oracle optimises what the policy is asked to."""
    value = getattr(scenario.sequence.adaptive, "objective", "conversions")
    return value if value in OBJECTIVES else "conversions"


class _Sim:
    def __init__(
        self,
        scenario: Scenario,
        days: float,
        users: int,
        seed: int,
        *,
        oracle: bool = False,
        objective: Objective | None = None,
        knowledge: Knowledge = "user",
    ) -> None:
        self.scenario = scenario
        self.oracle = oracle  # the adaptive arm's choices are the oracle's
        self.knowledge = knowledge
        self.objective = objective or objective_of(scenario)
        self.steps = {step.id: step for step in scenario.sequence.steps}
        self.quiet = scenario.sequence.guardrails.quiet_hours
        self.rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        self.config = scenario.priced_sequence()
        self.workspace_id = self.config.workspace_id
        self.stats: dict[str, Counts] = {}
        self._stats_at: dict[str, int] = {}  # stat key -> as_of_ms of its discounted counts
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
        self.regimes = regimes(scenario)
        self.regime_starts = [self.start_ms + round(r.start_day * DAY) for r in self.regimes]
        self.users = [draw_user(scenario, i, f"sim{seed}-{i:06d}", self.rng) for i in range(users)]
        self.states = [UserState.new(self.workspace_id, u.user_id) for u in self.users]
        self.due: list[int | None] = [None] * users
        for user in self.users:
            self._schedule_signup(user)
        self.context_table = (
            ContextTable(
                self.users,
                scenario.sequence.adaptive.context_attributes,
                scenario.fatigue,
                scenario.economics,
                self.objective,
            )
            if oracle and knowledge == "context"
            else None
        )

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

    def _quiet(self, hour: int) -> bool:
        quiet = self.quiet
        if quiet is None:
            return False
        t = time(hour)
        if quiet.start < quiet.end:
            return quiet.start <= t < quiet.end
        return t >= quiet.start or t < quiet.end

    def _next_sendable_active(self, user: HiddenUser, at_ms: int) -> int | None:
        """Start of the user's next active hour outside quiet hours, within a day."""
        local = self._local(user, at_ms)
        top = at_ms - (local.minute * MINUTE + local.second * 1000 + local.microsecond // 1000)
        for k in range(1, 25):
            hour = (local.hour + k) % 24
            if hour in user.active and not self._quiet(hour):
                return top + k * HOUR
        return None

    def _regime(self, at_ms: int) -> Regime:
        return self.regimes[self._regime_index(at_ms)]

    def _regime_index(self, at_ms: int) -> int:
        starts = self.regime_starts
        i = len(starts) - 1
        while starts[i] > at_ms:
            i -= 1
        return i

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
            config = self.ctx.configs.get(config_of(delta.key))
            half_life = config.adaptive.half_life_days if config is not None else None
            if half_life is None:
                stats[delta.key] = (trials + delta.trials, successes + delta.successes)
                continue
            counts = [trials, successes, self._stats_at.get(delta.key, at)]
            add_decayed(counts, delta.trials, delta.successes, at, half_life)  # as the engine
            stats[delta.key] = (counts[0], counts[1])
            self._stats_at[delta.key] = int(counts[2])
        for key, amount in outcome.ledger_deltas:
            self.ledger[key] = self.ledger.get(key, 0.0) + amount
        observe = self.tally.observe
        day = (at - self.start_ms) // DAY
        for activity in outcome.activities:
            observe(activity, day)
            if activity.type is ActivityType.CONVERSION and activity.arm is not None:
                value = self._regime(at).segments[user.segment].conversion_value
                self.tally.arms[activity.arm.value].value += value
        for command in outcome.commands:
            if self.context_table is not None and command.arm is Arm.ADAPTIVE:
                channel, variant = self._context_choice(user, command, at, self.context_table)
                send_at = at
            elif self.oracle and command.arm is Arm.ADAPTIVE:
                channel, variant, send_at = self._oracle_choice(user, command, at)
            else:
                channel, variant, send_at = command.channel, command.variant, at
            self._respond(user, command, channel, variant, send_at)
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

    # --- the oracle -------------------------------------------------------------------------
    def _options(self, user: HiddenUser, command: Command) -> tuple[list[Channel], list[str]]:
        """What an oracle may choose from: the step's channels the user consents to and has
        not unsubscribed from (else the core's own), and the step's variants."""
        step = self.steps[command.step_id]
        channels = [
            ch
            for ch in step.channels
            if user.consent.get(ch, False) and ch not in user.unsubscribed
        ] or [command.channel]
        variants = step.variants if command.variant in step.variants else [command.variant]
        return channels, list(variants)

    def _oracle_choice(
        self, user: HiddenUser, command: Command, at: int
    ) -> tuple[Channel, str, int]:
        """The channel, variant and delivery time of the highest true expected value among
        the step's consented channels and variants, now or at the next active hour."""
        channels, variants = self._options(user, command)
        times = [at]
        if not self._active(user, at):
            later = self._next_sendable_active(user, at)
            if later is not None and later <= self.end_ms:
                times.append(later)
        best: tuple[float, Channel, str, int] = (-math.inf, command.channel, command.variant, at)
        fatigue = self.scenario.fatigue
        for when in times:
            regime = self._regime(when)
            recent = sum(1 for d in user.deliveries if d > when - self.fatigue_ms)
            active = self._active(user, when)
            for channel in channels:
                for variant in variants:
                    value = message_value(
                        user,
                        regime,
                        channel,
                        variant,
                        active=active,
                        recent=recent,
                        fatigue=fatigue,
                        economics=self.scenario.economics,
                        objective=self.objective,
                    )
                    if value > best[0]:
                        best = (value, channel, variant, when)
        return best[1], best[2], best[3]

    def _context_choice(
        self, user: HiddenUser, command: Command, at: int, table: ContextTable
    ) -> tuple[Channel, str]:
        """The channel and variant of the highest mean value for the user's context at the
        user's local hour (`ContextTable`), among the step's consented channels; the time is
        the core's own."""
        channels, variants = self._options(user, command)
        index = self._regime_index(at)
        regime = self.regimes[index]
        hour = self._local(user, at).hour
        options = [(ch, v) for ch in channels for v in variants]
        return max(options, key=lambda o: table.value(user, regime, index, o[0], o[1], hour))

    # --- the world's answer to a message ----------------------------------------------------
    def _respond(
        self, user: HiddenUser, command: Command, channel: Channel, variant: str, at: int
    ) -> None:
        """Schedule what this user does with this message (hidden truth -> feedback events)."""
        regime = self._regime(at)
        truth = regime.segments[user.segment]
        arm = self.tally.arms[command.arm.value]
        arm.sent[channel.value] += 1
        arm.spend += truth.cost[channel]
        horizon = self.fatigue_ms
        responses = respond(
            user,
            regime,
            self.scenario.fatigue,
            channel,
            variant,
            at,
            self.rng,
            recent=lambda d: sum(1 for x in user.deliveries if x > d - horizon),
            active=lambda ms: self._active(user, ms),
            next_active=lambda ms: self._next_active(user, ms),
        )
        for kind, when in responses:
            if kind == "delivered":
                user.deliveries = [*(x for x in user.deliveries if x > when - horizon), when]
            elif kind == "unsubscribed":
                user.unsubscribed.add(channel)
            self._push(when, _FEEDBACK, user.index, (kind, channel, command.command_id))


def simulate(
    scenario: Scenario,
    *,
    days: float = 14,
    users: int = 20_000,
    seed: int = 1,
    oracle: bool = False,
    oracle_objective: Objective | None = None,
    context_oracle: bool = False,
) -> Result:
    """Run the scenario's sequence for `users` users over `days` virtual days. With `oracle`,
    a second run on the same population (same seed, same arms) lets the oracle make the
    adaptive arm's choices, and the report gains its lift and the adaptive share of it. The
    oracle optimises the sequence's objective unless `oracle_objective` names another (e.g.
    net value as a campaign manager's ceiling while the policy still counts conversions).
    With `context_oracle`, a third run's oracle knows only its context groups' true mean
    rates (`ContextTable`): the ceiling of what the policy could learn from what it sees."""
    if users < 1:
        raise ValueError("users must be at least 1")
    if not 0 < days <= 365:
        raise ValueError("days must be in (0, 365]")
    sim = _Sim(scenario, days, users, seed)
    sim.run()
    oracle_tally, used = None, None
    if oracle:
        ceiling = _Sim(scenario, days, users, seed, oracle=True, objective=oracle_objective)
        ceiling.run()
        oracle_tally, used = ceiling.tally, ceiling.objective
    context_tally = None
    if context_oracle:
        learnable = _Sim(
            scenario,
            days,
            users,
            seed,
            oracle=True,
            objective=oracle_objective,
            knowledge="context",
        )
        learnable.run()
        context_tally = learnable.tally
    return Result(
        scenario.name,
        seed,
        days,
        users,
        sim.tally,
        sim.core_calls,
        sim.world_conversions,
        scenario.economics,
        sim.objective,
        oracle_tally,
        used,
        context_tally,
    )
