"""Sequence configurations and workspace settings: what campaign managers configure.

Validated strictly (unknown fields rejected, every limit bounded) so the engine never meets a
configuration it cannot run. Durations are ISO-8601 (`PT1H`, `P14D`). Step jumps (`goto`)
only go forward, so every enrollment ends after at most `len(steps)` step visits.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from sme.contracts.channels import Channel
from sme.contracts.conditions import Expression, property_locs
from sme.contracts.content import ChannelContent, DataAllowList, content_errors
from sme.contracts.errors import Loc
from sme.contracts.errors import field_errors as _field_errors
from sme.contracts.events import AttributeValue, EventType, UserId

MAX_STEPS = 50
MAX_DURATION = timedelta(days=365)
StepId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Percent = Annotated[float, Field(ge=0, le=100)]
Category = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
]
"""A message category (`marketing`, `reminders`, `receipts`): frequency caps and quiet hours
can target one."""
DEFAULT_CATEGORY = "marketing"


def _bounded(value: timedelta, *, allow_zero: bool = True) -> timedelta:
    if value < timedelta(0) or value > MAX_DURATION or (not allow_zero and value == timedelta(0)):
        low = "at least 0" if allow_zero else "more than 0"
        raise ValueError(f"must be {low} and at most {MAX_DURATION.days} days")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Status(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"
    DRAINING = "DRAINING"
    """No new entries; users already enrolled go on to the end of the sequence."""


RUNNING = frozenset({Status.ACTIVE, Status.DRAINING})
"""The statuses whose enrolled users move on (and which the kill switch holds)."""


class AttributeFilter(_Strict):
    """A test on a user attribute (or, in entry filters, an event property)."""

    source: Literal["attribute", "property"] = "attribute"
    key: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    equals: AttributeValue = None
    one_of: list[AttributeValue] | None = Field(None, max_length=100)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_test(self) -> AttributeFilter:
        given = [
            name
            for name, value in (("equals", self.equals), ("one_of", self.one_of), ("min", self.min))
            if value is not None
        ]
        if self.max is not None and self.min is None:
            given.append("max")
        if len(given) != 1:
            field = given[1] if given else "equals"
            raise _field_errors(
                "AttributeFilter",
                [((field,), "give exactly one of equals, one_of, or a min/max range", None)],
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _field_errors(
                "AttributeFilter", [(("max",), "max must not be below min", self.max)]
            )
        return self


class Reentry(_Strict):
    policy: Literal["never", "cooldown", "always"] = "never"
    cooldown: timedelta = timedelta(0)

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, v: timedelta) -> timedelta:
        return _bounded(v)


def _no_event_at_hand(model: str, when: Expression | None) -> None:
    """Where nothing but the profile is at hand, a property predicate could never hold."""
    locs = property_locs(when, ("when",))
    if locs:
        message = "no event is at hand here: test profile attributes only"
        raise _field_errors(model, [(loc, message, None) for loc in locs])


class Entry(_Strict):
    event_types: list[EventType] = Field(min_length=1, max_length=10)
    filters: list[AttributeFilter] = Field(default_factory=list, max_length=20)
    when: Expression | None = Field(
        None,
        description="Enroll only if this holds on the profile and the trigger event "
        "(together with every filter).",
    )
    reentry: Reentry = Reentry()


class StepCondition(_Strict):
    """Evaluated when a message step is due; if false the step is skipped (not sent)."""

    none_of_events: list[EventType] = Field(
        default_factory=list,
        max_length=10,
        description="Send only if none of these event types arrived since the previous step.",
    )
    any_of_events: list[EventType] = Field(
        default_factory=list,
        max_length=10,
        description="Send only if at least one of these arrived since the previous step.",
    )
    attributes: list[AttributeFilter] = Field(default_factory=list, max_length=20)
    when: Expression | None = Field(
        None, description="Send only if this holds on the profile (attributes only)."
    )

    @model_validator(mode="after")
    def _profile_only(self) -> StepCondition:
        _no_event_at_hand("StepCondition", self.when)
        return self


Goto = Annotated[str, StringConstraints(min_length=1, max_length=64)]
"""`next`, `exit`, or a later step id."""


class WaitFor(_Strict):
    """Wait up to `timeout` for an event; if it comes, jump to `on_event`; if not, send."""

    event_type: EventType
    timeout: timedelta
    on_event: Goto = "next"
    when: Expression | None = Field(
        None, description="Only an event on which this holds (with the profile) counts."
    )

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: timedelta) -> timedelta:
        return _bounded(v, allow_zero=False)


class BranchRule(_Strict):
    """Jump to `goto` if `event_type` arrived since the previous step, or the attribute holds,
    or the expression `when` holds on the profile."""

    event_type: EventType | None = None
    attribute: AttributeFilter | None = None
    when: Expression | None = None
    goto: Goto

    @model_validator(mode="after")
    def _one_test(self) -> BranchRule:
        given = [
            name
            for name, value in (
                ("event_type", self.event_type),
                ("attribute", self.attribute),
                ("when", self.when),
            )
            if value is not None
        ]
        if len(given) != 1:
            field = given[1] if given else "event_type"
            message = "give exactly one of event_type, attribute or when"
            raise _field_errors("BranchRule", [((field,), message, None)])
        _no_event_at_hand("BranchRule", self.when)
        return self


class SplitPath(_Strict):
    """One path of a split step: a share `weight` (relative to the other paths' weights) of
    users continues at `goto`."""

    weight: float = Field(gt=0, le=1_000_000)
    goto: Goto


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""In `date.weekday()` order."""
LocalTime = time  # `WaitUntil.time` would shadow the type inside the class


class WaitUntil(_Strict):
    """After the step's wait, hold the step until the user's local clock (profile time zone,
    else the workspace's default) next shows `time`, on one of `weekdays` if given."""

    time: LocalTime = Field(description="Local wall-clock time, e.g. 10:00 (no UTC offset).")
    weekdays: list[Weekday] | None = Field(
        None, min_length=1, max_length=7, description="Allowed local weekdays (absent: any)."
    )

    @model_validator(mode="after")
    def _local(self) -> WaitUntil:
        errors: list[tuple[Loc, str, object]] = []
        if self.time.tzinfo is not None:
            errors.append((("time",), "a local time of day, without a UTC offset", None))
        elif self.time.microsecond:
            errors.append((("time",), "whole seconds only", None))
        if self.weekdays is not None and len(set(self.weekdays)) != len(self.weekdays):
            errors.append((("weekdays",), "weekdays must not repeat", self.weekdays))
        if errors:
            raise _field_errors("WaitUntil", errors)
        return self

    def weekday_numbers(self) -> frozenset[int] | None:
        """The allowed weekdays as `date.weekday()` numbers (None: every day)."""
        if self.weekdays is None:
            return None
        return frozenset(WEEKDAYS.index(day) for day in self.weekdays)


class Step(_Strict):
    id: StepId
    kind: Literal["message", "branch", "split"] = "message"
    wait: timedelta = Field(timedelta(0), description="Delay before the step is due.")
    wait_from: Literal["previous", "entry"] = "previous"
    wait_until: WaitUntil | None = Field(
        None,
        description="After `wait` (and any wait_for timeout), the step is due at the next "
        "instant the user's local clock shows this time (on an allowed weekday). A time a DST "
        "change skips resolves to the end of the gap; a repeated one to its first occurrence.",
    )
    template: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    content: dict[Channel, ChannelContent] = Field(
        default_factory=dict,
        description="Template per channel (and per variant); overrides `template` there.",
    )
    data: DataAllowList | None = Field(
        None,
        description="What the step's commands carry for rendering; replaces the sequence's "
        "`data` (absent: the sequence's).",
    )
    variants: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=lambda: ["default"], min_length=1, max_length=10
    )
    channels: list[Channel] = Field(default_factory=list, max_length=4)
    condition: StepCondition | None = None
    category: Category = Field(
        DEFAULT_CATEGORY,
        description="The message's category: frequency caps and quiet-hours overrides with a "
        "category apply to this step only if it names the same one.",
    )
    transactional: bool = Field(
        False,
        description="A message the user expects (receipt, password reset): it ignores every "
        "frequency cap, quiet hours (also overrides), min_gap and send-time optimisation, and "
        "no cap or min_gap counts it. Consent, allowed_channels, budgets (spending ceilings), "
        "max_messages_per_enrollment, the holdout, pauses and the kill switch still apply. "
        "Its activities (command_emitted, step_skipped, message_suppressed) carry "
        "details.transactional: true.",
    )
    wait_for: WaitFor | None = None
    branches: list[BranchRule] = Field(default_factory=list, max_length=10)
    paths: list[SplitPath] = Field(
        default_factory=list,
        max_length=10,
        description="A split step's weighted paths (2 to 10); each user always takes the same "
        "one (a hash of sequence, step and user id).",
    )
    variant_weights: list[Annotated[float, Field(gt=0, le=1_000_000)]] | None = Field(
        None,
        max_length=10,
        description="With adaptive.variant_policy fixed_weights: one weight per variant, in "
        "the order of `variants` (absent: equal weights).",
    )

    @field_validator("wait")
    @classmethod
    def _wait(cls, v: timedelta) -> timedelta:
        return _bounded(v)

    @model_validator(mode="after")
    def _shape(self) -> Step:
        errors: list[tuple[Loc, str, object]] = []
        if self.kind == "message":
            covered = bool(self.channels) and set(self.channels) <= set(self.content)
            if not self.template and not covered:
                errors.append((("template",), "a message step needs a template", None))
            if not self.channels:
                errors.append((("channels",), "a message step needs at least one channel", []))
            elif len(set(self.channels)) != len(self.channels):
                errors.append((("channels",), "channels must not repeat", self.channels))
            if self.branches:
                errors.append((("branches",), "only branch steps have branches", None))
        elif self.transactional:
            errors.append((("transactional",), "only message steps are transactional", True))
        if self.kind == "branch" and not self.branches:
            errors.append((("branches",), "a branch step needs at least one branch rule", []))
        if self.kind == "split":
            if self.branches:
                errors.append((("branches",), "only branch steps have branches", None))
            if not 2 <= len(self.paths) <= 10:
                errors.append((("paths",), "a split step needs 2 to 10 paths", len(self.paths)))
            for name in ("condition", "wait_for"):  # a split never tests or waits: refused
                if getattr(self, name) is not None:
                    errors.append(((name,), "a split step has no " + name, None))
        elif self.paths:
            errors.append((("paths",), "only split steps have paths", None))
        weights = self.variant_weights
        if weights is not None and len(weights) != len(self.variants):
            message = f"give one weight per variant ({len(self.variants)})"
            errors.append((("variant_weights",), message, len(weights)))
        if errors:
            raise _field_errors("Step", errors)
        return self

    @model_validator(mode="after")
    def _content_fits(self) -> Step:
        errors = content_errors(self.kind, self.channels, self.variants, self.template,
                                self.content, self.data)  # fmt: skip
        if errors:
            raise _field_errors("Step", errors)
        return self


class Goal(_Strict):
    event_type: EventType
    attribution_window: timedelta = timedelta(days=14)
    value_property: str | None = Field(None, max_length=64)
    when: Expression | None = Field(
        None, description="Only a goal event on which this holds (with the profile) converts."
    )

    @field_validator("attribution_window")
    @classmethod
    def _window(cls, v: timedelta) -> timedelta:
        return _bounded(v, allow_zero=False)


class ExitRule(_Strict):
    """An event of one of `event_types` on which `when` holds (with the profile) exits."""

    event_types: list[EventType] = Field(min_length=1, max_length=10)
    when: Expression


class Exit(_Strict):
    event_types: list[EventType] = Field(
        default_factory=list, max_length=10, description="Any event of these types exits."
    )
    rules: list[ExitRule] = Field(default_factory=list, max_length=10)
    goal: Goal | None = None


class SendTime(_Strict):
    enabled: bool = False
    window_start: time = time(8, 0)
    window_end: time = time(21, 0)
    min_observations: int = Field(3, ge=1, le=1000)
    population_weight: float = Field(
        0.0,
        ge=0,
        le=1000,
        description=(
            "Pseudo-observations of the context group's hour-of-day response profile in each "
            "user's own hour profile: the population decides until the user's engagements "
            "differ. 0 (default): the user's own engagements only. Opt-in: in the default "
            "simulated world a weight of 5 moved every adaptive send to the population's best "
            "hour and cost most of the lift (seeds 1-3: +20/+14/+24% without, +1/+15/-4% with)."
        ),
    )


class Adaptive(_Strict):
    channel_policy: Literal["thompson", "fixed"] = "thompson"
    variant_policy: Literal["thompson", "fixed", "fixed_weights"] = Field(
        "thompson",
        description=(
            "thompson: the bandit picks variants (adaptive arm; the baseline sends the first). "
            "fixed: the first variant. fixed_weights: a classic A/B test, in every arm alike: "
            "each user gets a variant by a hash of (sequence, step, user), with the step's "
            "variant_weights."
        ),
    )
    send_time: SendTime = SendTime()
    prior_alpha: float = Field(1.0, gt=0, le=1000)
    prior_beta: float = Field(1.0, gt=0, le=1000)
    exploration: Literal["decaying", "fixed", "none"] = Field(
        "decaying",
        description=(
            "Random exploration besides Thompson sampling: a floor of min_exploration that "
            "decays as 1/sqrt(trials) of the choice (decaying), a constant min_exploration "
            "(fixed), or Thompson sampling alone (none)."
        ),
    )
    min_exploration: float = Field(
        0.05, ge=0, le=0.5, description="The exploration floor (the decaying floor's ceiling)."
    )
    user_affinity_weight: float = Field(
        1.0,
        ge=0,
        le=1,
        description=(
            "How much a user's own messages and successes on a channel move the policy's "
            "estimate for that user: 1 as much as the measured spread between users implies "
            "(a user's history counts against the population's pseudo-observations, fitted from "
            "how successes repeat for the same users), smaller values count it less, 0 not at all."
        ),
    )
    context_attributes: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = (
        Field(default_factory=list, max_length=3)
    )
    pooling: Literal["empirical_bayes", "fixed"] = Field(
        "empirical_bayes",
        description=(
            "How a context group borrows from the pooled statistics: a Beta prior per arm whose "
            "strength is fitted to the between-group variation (empirical_bayes), or a fixed "
            "group_backoff_observations pseudo-observations (fixed)."
        ),
    )
    pooling_min_strength: float = Field(
        2.0, gt=0, le=100_000, description="Least pseudo-observations of the pool in a group."
    )
    pooling_max_strength: float = Field(
        2000.0, gt=0, le=1_000_000, description="Most pseudo-observations of the pool in a group."
    )
    group_backoff_observations: int = Field(
        50,
        ge=0,
        le=100_000,
        description="Pseudo-observations of the pooled statistics mixed into each context group "
        "(pooling: fixed).",
    )
    objective: Literal["conversions", "revenue", "net_value"] = Field(
        "conversions",
        description=(
            "What a choice maximises per message: the success rate (conversions), "
            "conversion_value x the rate (revenue), or that minus the message's cost and "
            "unsubscribe_cost x the unsubscribe rate (net_value)."
        ),
    )
    conversion_value: float = Field(1.0, ge=0, le=1_000_000)
    unsubscribe_cost: float = Field(0.0, ge=0, le=1_000_000)
    half_life_days: float | None = Field(
        None,
        gt=0,
        le=3650,
        description="Discount population statistics by half every this many days (None: never).",
    )

    @model_validator(mode="after")
    def _strengths(self) -> Adaptive:
        if self.pooling_min_strength > self.pooling_max_strength:
            message = "pooling_min_strength must not exceed pooling_max_strength"
            raise _field_errors("Adaptive", [(("pooling_min_strength",), message, None)])
        return self


MAX_CAP = 30
"""The per-user send log keeps the last MAX_CAP sends, so no cap may count more than that."""


class FrequencyCap(_Strict):
    max: int = Field(ge=1, le=MAX_CAP)
    per: timedelta | None = Field(None, description="Rolling window; omit with calendar_day.")
    calendar_day: bool = Field(False, description="Per calendar day in the user's time zone.")
    channel: Channel | None = Field(
        None, description="Count and limit only sends on this channel (omit: every channel)."
    )
    category: Category | None = Field(
        None,
        description="Count only sends of steps of this category, and limit only such steps "
        "(omit: every category). Transactional steps are never counted nor limited.",
    )

    @model_validator(mode="after")
    def _window(self) -> FrequencyCap:
        if (self.per is None) == (not self.calendar_day):
            message = "give exactly one of per (a duration) or calendar_day: true"
            raise _field_errors("FrequencyCap", [(("per",), message, None)])
        return self

    @field_validator("per")
    @classmethod
    def _per(cls, v: timedelta | None) -> timedelta | None:
        return None if v is None else _bounded(v, allow_zero=False)


class QuietHours(_Strict):
    """Local-time window with no sends; `start` > `end` wraps past midnight (22:00-08:00)."""

    start: time
    end: time

    @model_validator(mode="after")
    def _nonempty(self) -> QuietHours:
        if self.start == self.end:
            raise _field_errors("QuietHours", [(("end",), "start and end must differ", None)])
        return self


class QuietHoursOverride(_Strict):
    """Quiet hours of its own for a channel, a category, or a channel and a category, instead
    of the level's `quiet_hours`; `quiet_hours: null` opts them out (in-app: none)."""

    channel: Channel | None = None
    category: Category | None = None
    quiet_hours: QuietHours | None = Field(
        description="The window for these sends, or null for no quiet hours at all."
    )

    @model_validator(mode="after")
    def _targets(self) -> QuietHoursOverride:
        if self.channel is None and self.category is None:
            message = "give a channel, a category, or both"
            raise _field_errors("QuietHoursOverride", [(("channel",), message, None)])
        return self


class Guardrails(_Strict):
    frequency_caps: list[FrequencyCap] = Field(default_factory=list, max_length=10)
    quiet_hours: QuietHours | None = Field(
        None, description="Every send's quiet hours, unless an override targets it."
    )
    quiet_hours_overrides: list[QuietHoursOverride] = Field(
        default_factory=list,
        max_length=20,
        description=(
            "Per channel and/or category quiet hours. The most specific override that matches "
            "a send replaces `quiet_hours` for it: channel and category, then channel alone, "
            "then category alone. A send must still satisfy both levels."
        ),
    )
    min_gap: timedelta | None = None
    daily_send_budget: dict[Channel, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    daily_cost_budget: float | None = Field(None, ge=0)
    cost_per_message: dict[Channel, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    max_messages_per_enrollment: int | None = Field(None, ge=1, le=1000)
    allowed_channels: list[Channel] | None = None
    on_limit: Literal["defer", "skip"] = Field(
        "defer",
        description="At this level's frequency cap or budget: wait for room, or skip the step.",
    )
    max_deferral: timedelta = Field(
        timedelta(days=7),
        description=(
            "How long a due step may wait for the guardrails (counted from when it came due, "
            "or from the sequence's last change if later): a step that cannot go out within "
            "it ends the enrollment with reason deferral_expired. The shorter level's applies."
        ),
    )

    @model_validator(mode="after")
    def _distinct_overrides(self) -> Guardrails:
        seen: set[tuple[Channel | None, str | None]] = set()
        errors: list[tuple[Loc, str, object]] = []
        for i, override in enumerate(self.quiet_hours_overrides):
            target = (override.channel, override.category)
            if target in seen:
                message = "another override targets the same channel and category"
                errors.append((("quiet_hours_overrides", i), message, None))
            seen.add(target)
        if errors:
            raise _field_errors("Guardrails", errors)
        return self

    @field_validator("min_gap")
    @classmethod
    def _gap(cls, v: timedelta | None) -> timedelta | None:
        return None if v is None else _bounded(v, allow_zero=False)

    @field_validator("max_deferral")
    @classmethod
    def _max_deferral(cls, v: timedelta) -> timedelta:
        return _bounded(v, allow_zero=False)


class Experiment(_Strict):
    holdout_pct: Percent = 10.0
    baseline_pct: Percent = 45.0

    @model_validator(mode="after")
    def _sum(self) -> Experiment:
        if self.holdout_pct + self.baseline_pct > 100:
            message = "holdout_pct + baseline_pct must not exceed 100"
            raise _field_errors("Experiment", [(("baseline_pct",), message, self.baseline_pct)])
        return self


class AutomationRule(_Strict):
    """Auto-pause a sequence when a metric crosses `threshold`; warn at `warn_at` of it.
    Rates are shares of messages sent in the trailing `window` (error_rate: dead-lettered
    events of the workspace over events received); budget metrics are today's (UTC) spend
    over the sequence's daily budget, so 1.0 means 100% spent."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    metric: Literal[
        "unsubscribe_rate", "bounce_rate", "error_rate", "cost_budget_spent", "send_budget_spent"
    ]
    threshold: float = Field(gt=0, le=1)
    window: timedelta = timedelta(hours=1)
    min_volume: int = Field(100, ge=1, le=10_000_000, description="Sends (or events) needed first.")
    warn_at: float | None = Field(0.8, gt=0, lt=1, description="Share of the threshold that warns.")

    @field_validator("window")
    @classmethod
    def _window(cls, v: timedelta) -> timedelta:
        return _bounded(v, allow_zero=False)


class StatusReason(_Strict):
    """Why the status last changed automatically (visible in GET; cleared by a manual change)."""

    rule: str
    metric: str
    value: float
    threshold: float
    volume: int
    at: AwareDatetime


class SequenceConfig(_Strict):
    """A sequence ("config" in the spec): entry, steps, exit/goal, adaptivity, guardrails."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    workspace_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    campaign_id: str | None = Field(None, max_length=128)
    name: Name
    status: Status = Status.ACTIVE
    version: int = Field(1, ge=1)
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    entry: Entry
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    exit: Exit = Exit()
    adaptive: Adaptive = Adaptive()
    guardrails: Guardrails = Guardrails()
    experiment: Experiment = Experiment()
    automation_rules: list[AutomationRule] = Field(default_factory=list, max_length=10)
    status_reason: StatusReason | None = None
    data: DataAllowList | None = Field(
        None,
        description="What every message step's commands carry for rendering (a step's "
        "own `data` replaces it); absent: nothing.",
    )
    starts_at: AwareDatetime | None = Field(
        None, description="No entry before this instant (absent: open from the start)."
    )
    ends_at: AwareDatetime | None = Field(
        None,
        description="No entry at or after this instant; users enrolled before it finish.",
    )

    @model_validator(mode="after")
    def _graph(self) -> SequenceConfig:
        errors: list[tuple[Loc, str, object]] = []
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors.append((("ends_at",), "ends_at must be after starts_at", None))
        index: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            if step.id in index:
                errors.append((("steps", i, "id"), "step ids must be unique", step.id))
            index.setdefault(step.id, i)
        for i, step in enumerate(self.steps):
            targets: list[tuple[Loc, str]] = [
                (("steps", i, "branches", j, "goto"), rule.goto)
                for j, rule in enumerate(step.branches)
            ]
            targets.extend(
                (("steps", i, "paths", j, "goto"), path.goto) for j, path in enumerate(step.paths)
            )
            if step.variant_weights is not None and self.adaptive.variant_policy != "fixed_weights":
                message = "variant_weights need adaptive.variant_policy fixed_weights"
                errors.append((("steps", i, "variant_weights"), message, None))
            if step.wait_for is not None:
                targets.append((("steps", i, "wait_for", "on_event"), step.wait_for.on_event))
            for loc, target in targets:
                if target in ("next", "exit"):
                    continue
                if target not in index:
                    errors.append((loc, f"goto {target!r} names no step", target))
                elif index[target] <= i:
                    errors.append((loc, f"goto {target!r} must jump forward", target))
        if errors:
            raise _field_errors("SequenceConfig", errors)
        return self

    def step_index(self, step_id: str) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.id == step_id), None)


class KillSwitch(_Strict):
    """Engaged: every sequence of the workspace is paused; `paused_configs` are the ones the
    switch paused (ACTIVE or DRAINING before), which releasing it resumes; `draining_configs`
    are those of them that were DRAINING, and go back to DRAINING."""

    engaged: bool = False
    paused_configs: list[str] = Field(default_factory=list, max_length=10_000)
    draining_configs: list[str] = Field(default_factory=list, max_length=10_000)


class GlobalControl(_Strict):
    """A sticky share of the workspace's users that no sequence messages, to measure the
    whole program. Membership is a hash of (workspace, salt, user), independent of every
    sequence's arm, split and variant hash: raising `pct` only adds users, lowering it only
    releases some; a new `salt` draws a new group. It is decided when a user enrolls (the arm
    of record): an enrollment open when the share changes finishes in its arm."""

    pct: float = Field(0.0, ge=0, le=50, description="Share of users held out, 0 = off.")
    salt: Annotated[str, StringConstraints(max_length=64)] = ""


class WorkspaceSettings(_Strict):
    """Guardrails across all of a workspace's sequences; a send must satisfy both levels."""

    workspace_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    default_timezone: str = "UTC"
    guardrails: Guardrails = Guardrails()
    kill_switch: KillSwitch = KillSwitch()
    global_control: GlobalControl = GlobalControl()
    version: int = Field(1, ge=1)
    updated_at: datetime | None = None
    test_users: list[UserId] = Field(
        default_factory=list,
        max_length=100,
        description="Internal user ids that may receive test sends (`POST …/test-send`); "
        "no other user can (none by default).",
    )

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown IANA time zone {v[:64]!r}") from exc
        return v
