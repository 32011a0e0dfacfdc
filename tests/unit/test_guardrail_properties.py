"""Guardrails hold over whole runs, whatever the configuration and the traffic.

Hypothesis draws random sequences (random guardrails at the sequence and the workspace level,
random steps, arms, pauses and stops), a workspace, several users in several partitions (each
partition with its own budget ledger, as in the engine), and a random stream of events and
stray timer ticks over up to ten days that cross the spring DST changes of Europe and Lord
Howe. The simulation drives time forward like the engine: every user's timer fires at the
state's next due time, events and ticks in between. Each test then checks one family of
invariants over everything that was emitted, from its own model of the world (consent, time
zones, statuses, prices), not from the core's state. A focus ("caps", "budgets", "busy") makes
one family of limits common and the others rare, so that random traffic actually reaches them.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sme.contracts.activities import ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.contracts.events import Event
from sme.contracts.reasons import Reason
from sme.contracts.sequences import Guardrails, SequenceConfig, Status, WorkspaceSettings
from sme.core import sequence
from sme.core.sequence import Context, Outcome
from sme.core.timeutil import from_ms, in_window, local_date, to_ms, utc_day, zone
from sme.core.user_state import Profile, UserState

WS = "ws-prop"
START = datetime(2024, 3, 28, 9, 0, tzinfo=UTC)
HORIZON_MIN = 10 * 24 * 60
END_MS = to_ms(START + timedelta(minutes=HORIZON_MIN, days=2))  # timers run two days longer
FOCUS_DAYS = {"all": 10, "caps": 4, "busy": 4, "budgets": 2}
"""Traffic spans ten days (both DST changes) or, to meet the limits under test, fewer."""
CHANNELS = list(Channel)
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
EVENT_KINDS = [
    "signed_up",
    "signed_up",
    "signed_up",
    "visited",
    "visited",
    "opened",
    "clicked",
    "unsubscribed",
    "purchased",
    "churned",
    "consent",
    "tick",
]
# Passing runs take seconds; shrinking a counterexample (whole simulations) can take minutes.
pytestmark = pytest.mark.timeout(900)
SETTINGS = settings(
    max_examples=140,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DECISIONS = {
    ActivityType.ENROLLED,
    ActivityType.EXPOSURE,
    ActivityType.COMMAND_EMITTED,
    ActivityType.MESSAGE_SUPPRESSED,
    ActivityType.STEP_DEFERRED,
    ActivityType.STEP_SKIPPED,
    ActivityType.STEP_BRANCHED,
    ActivityType.ENROLLMENT_SKIPPED,
}
USER_EXITS = {Reason.EXIT_EVENT, Reason.GOAL_REACHED}  # the user's own doing, not a decision


# --- strategies --------------------------------------------------------------------------------


def clock(minutes: int) -> str:
    return time(minutes // 60, minutes % 60).isoformat(timespec="minutes")


def channels_for(focus: str) -> list[Channel]:
    """Under the caps focus, two channels only, so per-channel caps meet traffic."""
    return CHANNELS[:2] if focus == "caps" else CHANNELS


@st.composite
def caps(draw: st.DrawFn, focus: str) -> dict[str, Any]:
    small = st.integers(1, 3)
    cap: dict[str, Any] = {
        "max": draw(
            small | small | st.integers(25, 30) if focus == "busy" else small | st.integers(1, 4)
        ),
        "channel": draw(st.none() | st.sampled_from(channels_for(focus))),
    }
    if draw(st.booleans()):
        cap["calendar_day"] = True
    else:
        short = ["PT1H", "PT6H"] if focus != "busy" else []  # busy: windows that outlast a flood
        cap["per"] = draw(st.sampled_from([*short, "P1D", "P3D", "P30D"]))
    return cap


@st.composite
def guardrails(draw: st.DrawFn, focus: str) -> dict[str, Any]:
    """Random guardrails; a focus makes one family frequent and the others rare, so the
    traffic reaches the limits under test instead of stopping at unrelated ones."""
    # A skipped step lets the next re-entry try again (while a deferral waits out the cap).
    limits = ["skip", "skip", "defer"] if focus == "busy" else ["defer", "skip"]
    g: dict[str, Any] = {"on_limit": draw(st.sampled_from(limits))}
    other = focus == "all" or draw(st.integers(0, 3)) == 0
    g["frequency_caps"] = draw(
        st.lists(caps(focus), min_size=int(focus == "caps"), max_size=3)
        if focus != "budgets"
        else st.just([])
    )
    if other and draw(st.booleans()):
        start = draw(st.integers(0, 47)) * 30
        end = draw(st.integers(0, 47).map(lambda h: h * 30).filter(lambda m: m != start))
        g["quiet_hours"] = {"start": clock(start), "end": clock(end)}
    if other:
        g["min_gap"] = draw(st.none() | st.sampled_from(["PT30M", "PT2H", "PT12H"]))
    if focus in ("all", "budgets"):
        # Under the budgets focus budgets admit some traffic (zero budgets block it all).
        focused = focus == "budgets"
        g["daily_send_budget"] = draw(
            st.dictionaries(
                st.sampled_from(CHANNELS),
                st.integers(1, 4) if focused else st.integers(0, 6),
                min_size=int(focused),
                max_size=3,
            )
        )
        cost_budgets = [1.0, 2.5, 4.0] if focused else [0.0, 0.5, 1.0, 2.5, 6.0]
        g["daily_cost_budget"] = draw(st.none() | st.sampled_from(cost_budgets))
        prices = st.sampled_from([0.0, 0.25, 0.5, 1.0])
        g["cost_per_message"] = draw(  # often priced at one level only
            st.just({})
            | st.fixed_dictionaries({ch: prices for ch in CHANNELS})
            | st.dictionaries(st.sampled_from(CHANNELS), prices, max_size=2)
        )
    if other:
        g["max_messages_per_enrollment"] = draw(st.none() | st.integers(1, 3))
    if other and draw(st.booleans()):
        g["allowed_channels"] = draw(st.lists(st.sampled_from(CHANNELS), unique=True))
    return g


@st.composite
def steps(draw: st.DrawFn, focus: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    count = draw(st.integers(1, 4))
    for i in range(count):
        channels = draw(st.permutations(channels_for(focus)))[: draw(st.integers(1, 4))]
        step: dict[str, Any] = {
            "id": f"s{i}",
            "template": f"t{i}",
            "channels": channels,
            "variants": draw(st.sampled_from([["a"], ["a", "b"]])),
            "wait": draw(st.sampled_from(["PT0S", "PT20M", "PT2H", "P1D"])),
            "wait_from": draw(st.sampled_from(["previous", "entry"])),
        }
        if draw(st.integers(0, 4)) == 0:
            step["condition"] = {"none_of_events": ["clicked"]}
        if draw(st.integers(0, 4)) == 0:
            target = draw(
                st.sampled_from(["next", "exit", *[f"s{j}" for j in range(i + 1, count)]])
            )
            step["wait_for"] = {"event_type": "opened", "timeout": "PT1H", "on_event": target}
        out.append(step)
    return out


@st.composite
def configs(draw: st.DrawFn, index: int, focus: str) -> SequenceConfig:
    focused = focus != "all"  # more traffic: re-entry, few holdouts
    holdout = draw(st.sampled_from([0, 0, 0, 20] if focused else [0, 0, 20, 100]))
    always = {"policy": "always"}
    cooldown = {"policy": "cooldown", "cooldown": "PT6H"}
    data: dict[str, Any] = {
        "id": f"c{index}",
        "workspace_id": WS,
        "name": f"config {index}",
        "entry": {
            "event_types": draw(st.sampled_from([["signed_up"], ["signed_up", "visited"]])),
            "reentry": draw(
                st.sampled_from(
                    [always, always, cooldown]
                    if focused
                    else [{"policy": "never"}, always, cooldown]
                )
            ),
        },
        "steps": draw(steps(focus)),
        "exit": {
            "event_types": draw(st.sampled_from([[], ["churned"]])),
            "goal": draw(st.sampled_from([None, {"event_type": "purchased"}])),
        },
        "adaptive": {
            "send_time": {"enabled": draw(st.booleans()), "min_observations": 2},
            "min_exploration": draw(st.sampled_from([0.0, 0.2])),
        },
        "guardrails": draw(guardrails(focus)),
        "experiment": {
            "holdout_pct": holdout,
            "baseline_pct": draw(st.sampled_from([0, min(50, 100 - holdout), 100 - holdout])),
        },
    }
    return SequenceConfig.model_validate(data)


@st.composite
def floods(draw: st.DrawFn, index: int) -> SequenceConfig:
    """Re-entered at every signup, four messages at once, no guardrails of its own."""
    return SequenceConfig.model_validate(
        {
            "id": f"c{index}",
            "workspace_id": WS,
            "name": "flood",
            "entry": {"event_types": ["signed_up"], "reentry": {"policy": "always"}},
            "steps": [
                {"id": f"f{i}", "template": "f", "channels": draw(st.permutations(CHANNELS))}
                for i in range(4)
            ],
            "experiment": {"holdout_pct": draw(st.sampled_from([0, 100])), "baseline_pct": 0},
        }
    )


@dataclass(frozen=True)
class UserSpec:
    user_id: str
    timezone: str | None
    partition: int
    consent: dict[Channel, bool]


@dataclass(frozen=True)
class Item:
    minute: int
    user: int
    kind: str  # an event type, "consent", "tick", or "status"
    channel: Channel | None = None
    answer: bool = False  # carry the user's latest command id
    consent: dict[Channel, bool] = field(default_factory=dict)
    config: int = 0
    status: Status = Status.ACTIVE


@dataclass(frozen=True)
class World:
    configs: list[SequenceConfig]
    workspace: WorkspaceSettings
    users: list[UserSpec]
    partitions: int
    items: list[Item]


consents = st.dictionaries(st.sampled_from(CHANNELS), st.booleans(), max_size=4)
grants = st.dictionaries(st.sampled_from(CHANNELS), st.just(True), max_size=4)


def consent_of(code: int) -> dict[Channel, bool]:
    """A consent update from base-3 digits, one per channel: absent, granted, withdrawn."""
    out: dict[Channel, bool] = {}
    for channel in CHANNELS:
        code, digit = divmod(code, 3)
        if digit:
            out[channel] = digit == 1
    return out


@st.composite
def worlds(draw: st.DrawFn, focus: str = "all") -> World:
    busy = focus == "busy"
    horizon = FOCUS_DAYS[focus] * 24 * 60
    n_configs = draw(st.integers(1, 3))
    cfgs = [draw(configs(i, focus)) for i in range(n_configs)]
    if busy:  # a sequence that floods the user's send log (maybe in its holdout)
        cfgs.append(draw(floods(n_configs)))
        n_configs += 1
    ws = WorkspaceSettings.model_validate(
        {
            "workspace_id": WS,
            "default_timezone": draw(st.sampled_from(ZONES if focus != "caps" else ZONES[1:])),
            "guardrails": (
                {} if focus in ("caps", "busy") and draw(st.booleans()) else draw(guardrails(focus))
            ),
        }
    )
    partitions = draw(st.integers(2 if focus == "budgets" else 1, 3))
    users = [
        UserSpec(
            f"u{i}",
            draw(st.none() | st.sampled_from(ZONES if focus != "caps" else ZONES[1:])),
            draw(st.integers(0, partitions - 1)),
            draw(consents if focus == "all" else grants),
        )
        for i in range(draw(st.integers(1, 4 if focus in ("all", "budgets") else 2)))
    ]
    kinds = EVENT_KINDS + ["signed_up"] * 6 if busy else EVENT_KINDS
    raw = st.tuples(  # plain integers draw fast; up to 80 items are drawn per example
        st.integers(0, horizon),
        st.integers(0, len(users) - 1),
        st.integers(0, len(kinds) - 1),
        st.integers(0, len(CHANNELS)),
        st.integers(0, 3**4 - 1),
    )
    items = [
        Item(
            minute,
            user,
            kinds[kind],
            channel=CHANNELS[channel] if channel < len(CHANNELS) else None,
            answer=code % 2 == 0,
            consent=consent_of(code),
        )
        for minute, user, kind, channel, code in draw(
            st.lists(raw, min_size=40 if busy else 15, max_size=80 if busy else 50)
        )
    ]
    for i in range(n_configs):  # a pause (maybe resumed), maybe a stop
        if draw(st.integers(0, 2)) == 0:
            paused = draw(st.integers(0, horizon))
            items.append(Item(paused, 0, "status", config=i, status=Status.PAUSED))
            if draw(st.booleans()):
                resumed = draw(st.integers(paused, horizon))
                items.append(Item(resumed, 0, "status", config=i, status=Status.ACTIVE))
        if draw(st.integers(0, 3)) == 0:
            stopped = draw(st.integers(0, horizon))
            items.append(Item(stopped, 0, "status", config=i, status=Status.STOPPED))
    items.sort(key=lambda it: it.minute)  # stable: draw order breaks ties
    return World(cfgs, ws, users, partitions, items)


# --- simulation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    at_ms: int
    user: str
    config_id: str
    channel: Channel
    cost: float
    enrollment: int  # the user's n-th enrollment in the config, as the test counted them


@dataclass
class Record:
    world: World
    sends: list[Send] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    command_ids: set[str] = field(default_factory=set)


def tz_of(world: World, user: UserSpec) -> str:
    return user.timezone or world.workspace.default_timezone


def expected_cost(world: World, config: SequenceConfig, channel: Channel) -> float:
    """A message's price: the sequence's if it sets one, else the workspace's, else free."""
    own = config.guardrails.cost_per_message
    return own.get(channel, world.workspace.guardrails.cost_per_message.get(channel, 0.0))


def simulate(world: World, seed: int = 0) -> Record:
    rec = Record(world)
    configs = {c.id: c for c in world.configs}
    stopped: set[str] = set()
    stats: dict[str, tuple[float, float]] = {}
    ledgers: list[dict[str, float]] = [{} for _ in range(world.partitions)]
    states = {  # what earlier traffic told the engine about each user
        u.user_id: UserState(WS, u.user_id, Profile(u.timezone, {}, dict(u.consent)))
        for u in world.users
    }
    consent = {u.user_id: dict(u.consent) for u in world.users}
    enrollment_no: Counter[tuple[str, str]] = Counter()
    last_commands: dict[str, str] = {}
    last_call = dict.fromkeys(states, -1)  # ms of the user's last decision
    rng = random.Random(seed)
    now_ms = to_ms(START)
    event_no = 0

    def ctx(user: UserSpec) -> Context:
        return Context(
            configs,
            world.workspace,
            stats,
            ledgers[user.partition],
            user.partition,
            world.partitions,
        )

    def apply(user: UserSpec, outcome: Outcome) -> None:
        states[user.user_id] = outcome.state
        last_call[user.user_id] = now_ms
        for delta in outcome.stat_deltas:
            trials, successes = stats.get(delta.key, (0.0, 0.0))
            stats[delta.key] = (trials + delta.trials, successes + delta.successes)
        ledger = ledgers[user.partition]
        for key, amount in outcome.ledger_deltas:
            ledger[key] = ledger.get(key, 0.0) + amount
        check_decision(rec, user, outcome, configs, stopped, consent, enrollment_no, now_ms)
        for command in outcome.commands:
            last_commands[user.user_id] = command.command_id

    def next_due() -> tuple[int, UserSpec] | None:
        best: tuple[int, UserSpec] | None = None
        for user in world.users:
            # A due time already offered to the user (at their last decision) and still due
            # is parked (paused config): it is offered again after the next status change.
            dues = [
                e.due_ms
                for e in states[user.user_id].enrollments
                if e.due_ms > last_call[user.user_id]
            ]
            if dues and (best is None or max(min(dues), now_ms) < best[0]):
                best = (max(min(dues), now_ms), user)
        return best

    items = list(world.items)
    index = 0
    for _ in range(10_000):
        item_ms = (
            to_ms(START + timedelta(minutes=items[index].minute)) if index < len(items) else None
        )
        due = next_due()
        if due is not None and due[0] > END_MS:
            due = None  # a step that can never go out (a budget below one message) defers forever
        if due is not None and (item_ms is None or due[0] <= item_ms):
            now_ms, user = due
            apply(user, sequence.on_timer(states[user.user_id], from_ms(now_ms), rng, ctx(user)))
            continue
        if item_ms is None:
            break
        item = items[index]
        index += 1
        now_ms = max(now_ms, item_ms)
        now = from_ms(now_ms)
        if item.kind == "status":
            cfg = world.configs[item.config]
            if cfg.id in stopped:
                continue  # STOPPED is final
            configs[cfg.id] = cfg.model_copy(
                update={"status": item.status, "version": configs[cfg.id].version + 1}
            )
            if item.status is Status.STOPPED:
                stopped.add(cfg.id)
            for user_id in last_call:
                last_call[user_id] = -1  # the engine re-offers parked timers on a change
            continue
        user = world.users[item.user]
        state = states[user.user_id]
        if item.kind == "tick":
            apply(user, sequence.on_timer(state, now, rng, ctx(user)))
            continue
        event_no += 1
        ev = make_event(world, user, item, now, event_no, last_commands.get(user.user_id))
        if ev.user is not None:
            consent[user.user_id].update(ev.user.consent)
        if ev.type == "unsubscribed" and ev.channel is not None:
            consent[user.user_id][ev.channel] = False
        apply(user, sequence.on_event(state, ev, now, rng, ctx(user)))
    else:
        raise AssertionError("the simulation did not finish")
    return rec


def make_event(
    world: World, user: UserSpec, item: Item, now: datetime, n: int, last_command: str | None
) -> Event:
    kind = "visited" if item.kind == "consent" else item.kind
    data: dict[str, Any] = {
        "event_id": f"e{n}",
        "workspace_id": WS,
        "user_id": user.user_id,
        "type": kind,
        "occurred_at": now,
        "user": {
            "timezone": user.timezone,
            "consent": item.consent if item.kind == "consent" else {},
        },
    }
    if kind in ("opened", "clicked", "unsubscribed"):
        data["channel"] = item.channel or Channel.EMAIL
        if item.answer and last_command:
            data["command_id"] = last_command
    if kind == "purchased":
        data["properties"] = {"amount": 10}
    return Event.model_validate(data)


def check_decision(
    rec: Record,
    user: UserSpec,
    outcome: Outcome,
    configs: dict[str, SequenceConfig],
    stopped: set[str],
    consent: dict[str, dict[Channel, bool]],
    enrollment_no: Counter[tuple[str, str]],
    now_ms: int,
) -> None:
    """Invariants at decision time: status, channels, consent, quiet hours; record sends."""
    world, now = rec.world, from_ms(now_ms)
    tz = tz_of(world, user)
    local = now.astimezone(zone(tz)).time()
    commands: dict[str, Command] = {c.command_id: c for c in outcome.commands}
    emitted = 0
    for activity in outcome.activities:
        cfg = configs.get(activity.config_id)
        if activity.type is ActivityType.ENROLLED:
            enrollment_no[(user.user_id, activity.config_id)] += 1
        if cfg is not None and cfg.status is not Status.ACTIVE:
            allowed_exit = activity.type is ActivityType.ENROLLMENT_EXITED and (
                activity.reason_code in USER_EXITS
                or (cfg.id in stopped and activity.reason_code == Reason.CONFIG_STOPPED)
            )
            if activity.type in DECISIONS or (
                activity.type is ActivityType.ENROLLMENT_EXITED and not allowed_exit
            ):
                rec.violations.append(
                    f"{activity.type} {activity.reason_code} for {cfg.status} {cfg.id} at {now}"
                )
        if activity.type is not ActivityType.COMMAND_EMITTED:
            continue
        emitted += 1
        assert cfg is not None
        command = commands[activity.command_id]
        channel = command.channel
        levels = [cfg.guardrails, world.workspace.guardrails]
        for rules in levels:
            if rules.allowed_channels is not None and channel not in rules.allowed_channels:
                rec.violations.append(f"{channel} not allowed for {cfg.id} at {now}")
            quiet = rules.quiet_hours
            if quiet is not None and in_window(local, quiet.start, quiet.end):
                rec.violations.append(f"send at {local} ({tz}) in quiet hours {quiet}")
        if consent[user.user_id].get(channel) is False:
            rec.violations.append(f"{channel} without consent to {user.user_id} at {now}")
        if command.command_id in rec.command_ids:
            rec.violations.append(f"command emitted twice: {command}")
        rec.command_ids.add(command.command_id)
        if command.arm is Arm.HOLDOUT:
            rec.violations.append(f"command to a holdout user: {command}")
        if activity.cost != expected_cost(world, cfg, channel):
            rec.violations.append(f"cost {activity.cost} != {expected_cost(world, cfg, channel)}")
        rec.sends.append(
            Send(
                now_ms,
                user.user_id,
                cfg.id,
                channel,
                expected_cost(world, cfg, channel),
                enrollment_no[(user.user_id, cfg.id)],
            )
        )
    if emitted != len(outcome.commands):
        rec.violations.append("commands and command_emitted activities disagree")


# --- invariants over the whole run ----------------------------------------------------------


def levels_of(world: World) -> list[tuple[str, Guardrails, Callable[[Send], bool]]]:
    """(scope, rules, which sends the level counts) for the workspace and every config."""

    def of_config(config_id: str) -> Callable[[Send], bool]:
        return lambda send: send.config_id == config_id

    out: list[tuple[str, Guardrails, Callable[[Send], bool]]] = [
        ("workspace", world.workspace.guardrails, lambda send: True)
    ]
    out += [(cfg.id, cfg.guardrails, of_config(cfg.id)) for cfg in world.configs]
    return out


def cap_violations(rec: Record) -> list[str]:
    world, found = rec.world, []
    by_user: dict[str, list[Send]] = defaultdict(list)
    for send in rec.sends:
        by_user[send.user].append(send)
    for user in world.users:
        sends = sorted(by_user[user.user_id], key=lambda s: s.at_ms)
        tz = tz_of(world, user)
        for scope, rules, counts in levels_of(world):
            for cap in rules.frequency_caps:
                times = [
                    s.at_ms
                    for s in sends
                    if counts(s) and (cap.channel is None or s.channel == cap.channel)
                ]
                if cap.per is not None:
                    per_ms = cap.per // timedelta(milliseconds=1)
                    for first, last in zip(times, times[cap.max :], strict=False):
                        if last - first < per_ms:
                            found.append(
                                f"{scope} cap {cap}: {cap.max + 1} sends to {user.user_id} "
                                f"within {from_ms(first)}..{from_ms(last)}"
                            )
                else:
                    days = Counter(local_date(from_ms(t), tz) for t in times)
                    found += [
                        f"{scope} cap {cap}: {n} sends to {user.user_id} on {day} ({tz})"
                        for day, n in days.items()
                        if n > cap.max
                    ]
    return found


def gap_violations(rec: Record) -> list[str]:
    world, found = rec.world, []
    for user in world.users:
        mine = sorted((s for s in rec.sends if s.user == user.user_id), key=lambda s: s.at_ms)
        for scope, rules, counts in levels_of(world):
            if rules.min_gap is None:
                continue
            times = [s.at_ms for s in mine if counts(s)]
            gap_ms = rules.min_gap // timedelta(milliseconds=1)
            found += [
                f"{scope} min gap {rules.min_gap}: {from_ms(a)} then {from_ms(b)}"
                for a, b in itertools.pairwise(times)
                if b - a < gap_ms
            ]
    return found


def budget_violations(rec: Record) -> list[str]:
    found = []
    for scope, rules, counts in levels_of(rec.world):
        sent: Counter[tuple[str, Channel]] = Counter()
        cost: defaultdict[str, float] = defaultdict(float)
        for s in rec.sends:
            if counts(s):
                day = utc_day(from_ms(s.at_ms))
                sent[(day, s.channel)] += 1
                cost[day] += s.cost
        for (day, channel), n in sent.items():
            limit = rules.daily_send_budget.get(channel)
            if limit is not None and n > limit:
                found.append(f"{scope}: {n} {channel} sends on {day}, budget {limit}")
        if rules.daily_cost_budget is not None:
            found += [
                f"{scope}: cost {total} on {day}, budget {rules.daily_cost_budget}"
                for day, total in cost.items()
                if total > rules.daily_cost_budget + 1e-6
            ]
    return found


def enrollment_violations(rec: Record) -> list[str]:
    limits = {
        c.id: [
            x
            for x in (
                c.guardrails.max_messages_per_enrollment,
                rec.world.workspace.guardrails.max_messages_per_enrollment,
            )
            if x is not None
        ]
        for c in rec.world.configs
    }
    per_enrollment = Counter((s.user, s.config_id, s.enrollment) for s in rec.sends)
    return [
        f"{n} messages in enrollment {key}, limit {min(limits[key[1]])}"
        for key, n in per_enrollment.items()
        if limits[key[1]] and n > min(limits[key[1]])
    ]


def decision_violations(rec: Record, words: tuple[str, ...]) -> list[str]:
    return [v for v in rec.violations if any(w in v for w in words)]


# --- the properties ---------------------------------------------------------------------------


@settings(SETTINGS, max_examples=220)
@given(worlds("caps"), st.integers(0, 3))
def test_no_frequency_cap_is_ever_exceeded_at_either_level(world: World, seed: int) -> None:
    rec = simulate(world, seed)

    assert cap_violations(rec) == []


@settings(SETTINGS, max_examples=100)
@given(worlds("busy"), st.integers(0, 3))
def test_no_frequency_cap_is_exceeded_by_a_busy_user_with_large_caps(
    world: World, seed: int
) -> None:
    rec = simulate(world, seed)

    assert cap_violations(rec) == []


@SETTINGS
@given(worlds(), st.integers(0, 3))
def test_no_message_goes_out_in_quiet_hours_or_within_the_minimum_gap(
    world: World, seed: int
) -> None:
    rec = simulate(world, seed)

    assert decision_violations(rec, ("quiet hours",)) == []
    assert gap_violations(rec) == []


@settings(SETTINGS, max_examples=220)
@given(worlds("budgets"), st.integers(0, 3))
def test_daily_budgets_are_never_exceeded_in_total_across_partitions(
    world: World, seed: int
) -> None:
    rec = simulate(world, seed)

    assert budget_violations(rec) == []
    assert decision_violations(rec, ("cost ",)) == []


@SETTINGS
@given(worlds(), st.integers(0, 3))
def test_no_enrollment_gets_more_messages_than_either_level_allows(world: World, seed: int) -> None:
    rec = simulate(world, seed)

    assert enrollment_violations(rec) == []


@SETTINGS
@given(worlds(), st.integers(0, 3))
def test_no_message_on_a_channel_that_is_not_allowed_or_not_consented(
    world: World, seed: int
) -> None:
    rec = simulate(world, seed)

    assert decision_violations(rec, ("not allowed", "without consent", "holdout")) == []


@SETTINGS
@given(worlds(), st.integers(0, 3))
def test_a_paused_config_emits_nothing_and_a_stopped_one_nothing_after_ending_its_enrollments(
    world: World, seed: int
) -> None:
    rec = simulate(world, seed)

    assert decision_violations(rec, ("PAUSED", "STOPPED")) == []
    assert decision_violations(rec, ("disagree", "twice")) == []  # overdue steps fire once


@settings(SETTINGS, max_examples=180)
@given(worlds(), st.integers(0, 3))
def test_every_invariant_holds_at_once_under_mixed_guardrails(world: World, seed: int) -> None:
    rec = simulate(world, seed)

    assert rec.violations == []
    assert cap_violations(rec) == []
    assert gap_violations(rec) == []
    assert budget_violations(rec) == []
    assert enrollment_violations(rec) == []


# --- the simulation itself is sound ------------------------------------------------------------


def _steady_world() -> World:
    cfg = SequenceConfig.model_validate(
        {
            "id": "c0",
            "workspace_id": WS,
            "name": "c0",
            "entry": {"event_types": ["signed_up"], "reentry": {"policy": "always"}},
            "steps": [
                {"id": "s0", "template": "t", "channels": ["email", "sms"]},
                {"id": "s1", "template": "t", "channels": ["push"], "wait": "PT2H"},
            ],
            "experiment": {"holdout_pct": 0, "baseline_pct": 0},
        }
    )
    ws = WorkspaceSettings(workspace_id=WS)
    users = [UserSpec("u0", "Europe/Paris", 0, {}), UserSpec("u1", None, 1, {})]
    items = [Item(m, i % 2, "signed_up") for i, m in enumerate(range(0, 3000, 90))]
    return World([cfg], ws, users, 2, items)


def test_the_simulation_drives_timers_so_every_step_goes_out_without_guardrails() -> None:
    world = _steady_world()

    rec = simulate(world)

    assert rec.violations == []
    steps_sent = Counter(s.channel is Channel.PUSH for s in rec.sends)
    assert steps_sent[True] == steps_sent[False] == len(world.items)


def test_the_invariant_checks_notice_violations() -> None:
    world = _steady_world()
    strict = Guardrails.model_validate(
        {
            "frequency_caps": [{"max": 1, "per": "P1D"}, {"max": 1, "calendar_day": True}],
            "min_gap": "PT12H",
            "daily_send_budget": {"email": 1},
            "daily_cost_budget": 0.1,
            "cost_per_message": {"email": 1.0, "sms": 1.0, "push": 1.0},
            "max_messages_per_enrollment": 1,
        }
    )
    rec = simulate(world)  # sent without these rules; now judge the sends by them
    judged = replace(
        rec,
        world=replace(world, workspace=world.workspace.model_copy(update={"guardrails": strict})),
    )

    assert cap_violations(judged)
    assert gap_violations(judged)
    assert budget_violations(judged)
    assert enrollment_violations(judged)
