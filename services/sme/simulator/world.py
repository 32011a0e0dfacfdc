"""The simulated world: a scenario (data, validated by pydantic) and the hidden users drawn
from it.

A scenario describes a population as weighted segments. Each segment gives, per channel, the
probability that a delivered message is opened and that an opened one is clicked, the share
of the segment that never reads the channel and the share that consents to it; the local
hours its users are active; the probability that a click converts; and the probability of
converting without any message. Channel models give delivery rates, delays, costs, how much a
message that arrives outside active hours loses, and the unsubscribe rate that fatigue
raises. Variants carry an appeal (a multiplier on the click probability). The scenario also
holds the `SequenceConfig` the simulated engine runs. None of the hidden truth reaches the
core: it sees only the profile (time zone, attributes, consent) on the signup event and the
feedback events the users produce.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from sme.contracts.channels import Channel
from sme.contracts.sequences import SequenceConfig, WorkspaceSettings

Prob = Annotated[float, Field(ge=0, le=1)]
Weight = Annotated[float, Field(gt=0)]
SIGNUP_EVENT = "signed_up"
CONVERSION_EVENT = "converted"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelModel(_Strict):
    """How a channel behaves, whoever receives it."""

    cost: float = Field(0.0, ge=0, description="Price of one message (the core reports it).")
    delivery: Prob = Field(1.0, description="P(delivered); the rest bounce.")
    open_delay_minutes: float = Field(
        30.0, gt=0, le=7 * 24 * 60, description="Mean delay from delivery to open."
    )
    click_delay_minutes: float = Field(2.0, gt=0, le=24 * 60)
    missed_outside_active: Prob = Field(
        0.5,
        description="Share of would-be opens lost when the message is delivered outside the "
        "user's active hours (buried in the inbox, notification swiped away).",
    )
    unsubscribe_per_delivery: Prob = Field(
        0.0, description="Base P(unsubscribe from this channel) per delivered message."
    )


class ChannelPropensity(_Strict):
    """A segment's behaviour on one channel."""

    open: Prob = Field(description="Mean P(open | delivered) while the user is active.")
    click: Prob = Field(description="Mean P(click | opened) at variant appeal 1.")
    never_read: Prob = Field(0.0, description="Share of the segment that never opens it.")
    consent: Prob = Field(
        1.0, description="Share that consents (the rest carry consent=false on the profile)."
    )
    cost: float | None = Field(
        None,
        ge=0,
        description="This segment's price of one message (e.g. international SMS); overrides "
        "the channel model's in the world's bill, which the core's price list cannot see.",
    )
    unsubscribe_per_delivery: Prob | None = Field(
        None, description="Overrides the channel model's unsubscribe rate for this segment."
    )


class VariantEffect(_Strict):
    """What a variant does beyond the click appeal: multipliers on P(open) (a subject line),
    P(click) and P(convert) (an offer). All 1 = no effect."""

    open: float = Field(1.0, ge=0, le=10)
    click: float = Field(1.0, ge=0, le=10)
    conversion: float = Field(1.0, ge=0, le=10)


class Economics(_Strict):
    """What outcomes are worth, for the report's net value and the oracle's objective."""

    conversion_value: float = Field(1.0, ge=0, description="Value of one conversion.")
    unsubscribe_cost: float = Field(
        0.0, ge=0, description="Cost of one unsubscribe (the lost future audience)."
    )


class Fatigue(_Strict):
    """More messages in the recent window make opens rarer and unsubscribes likelier."""

    window: timedelta = timedelta(days=3)
    open_decay: Prob = Field(
        0.0, description="P(open) is multiplied by (1 - open_decay) ** recent_messages."
    )
    unsubscribe_growth: float = Field(
        0.0, ge=0, description="P(unsubscribe) is multiplied by 1 + growth * recent_messages."
    )


class Segment(_Strict):
    name: str = Field(min_length=1, max_length=64)
    weight: Weight
    attributes: dict[str, dict[str, Weight]] = Field(
        default_factory=dict,
        description="Profile attributes the engine sees: name -> {value: weight}.",
    )
    timezones: dict[str, Weight] = Field(default_factory=lambda: {"UTC": 1.0})
    active_hours: dict[str, Weight] = Field(
        min_length=1, description="Active-hour profile name -> weight."
    )
    channels: dict[Channel, ChannelPropensity] = Field(
        default_factory=dict, description="A channel not listed is never read (consent true)."
    )
    conversion_per_click: Prob
    conversion_per_open: Prob = Field(
        0.0, description="P(convert | opened and not clicked): view-through conversions."
    )
    base_conversion: Prob = Field(
        description="P(converting within conversion_horizon days without any message)."
    )
    variant_appeal: dict[str, float] = Field(
        default_factory=dict, description="Overrides the scenario's variant appeal."
    )
    variants: dict[str, VariantEffect] = Field(
        default_factory=dict, description="Overrides the scenario's variant effects by name."
    )
    conversion_value: float | None = Field(
        None, ge=0, description="Overrides the scenario's economics.conversion_value."
    )
    concentration: float = Field(
        0.0,
        ge=0,
        description="Per-user spread: a user's open and click probabilities are drawn from "
        "Beta(k*m, k*(1-m)) around the segment mean m; 0 means every user has the mean.",
    )

    @field_validator("timezones")
    @classmethod
    def _zones(cls, v: dict[str, float]) -> dict[str, float]:
        for name in v:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
                raise ValueError(f"unknown IANA time zone {name[:64]!r}") from exc
        return v

    @field_validator("variant_appeal")
    @classmethod
    def _appeal(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_appeal(v)


class PropensityChange(_Strict):
    """New segment means for a channel from a change on: each user's drawn rate is rescaled
    by new/old mean, so the per-user spread (and who never reads) stays."""

    open: Prob | None = None
    click: Prob | None = None
    cost: float | None = Field(None, ge=0)
    unsubscribe_per_delivery: Prob | None = None


class SegmentChange(_Strict):
    channels: dict[Channel, PropensityChange] = Field(default_factory=dict)
    conversion_per_click: Prob | None = None
    conversion_per_open: Prob | None = None
    variants: dict[str, VariantEffect] = Field(
        default_factory=dict, description="Replaces these variants' effects for the segment."
    )


class ChannelModelChange(_Strict):
    cost: float | None = Field(None, ge=0)
    delivery: Prob | None = None
    missed_outside_active: Prob | None = None
    unsubscribe_per_delivery: Prob | None = None


class Change(_Strict):
    """From `day` on (virtual days after `start`), the world behaves differently: what works
    can change under a policy that has already learned. Changes apply cumulatively in order.
    Organic conversion does not change (it is drawn at signup)."""

    day: float = Field(gt=0, le=365)
    channels: dict[Channel, ChannelModelChange] = Field(default_factory=dict)
    variants: dict[str, VariantEffect] = Field(
        default_factory=dict, description="Replaces these variants' scenario-level effects."
    )
    segments: dict[str, SegmentChange] = Field(default_factory=dict)


class Scenario(_Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    start: AwareDatetime = datetime(2025, 6, 2, tzinfo=UTC)
    signup_days: float = Field(4.0, gt=0, le=365, description="Signups spread over these days.")
    signup_in_active_hours: Prob = Field(
        0.6, description="Share of signups that happen in the user's active hours."
    )
    conversion_horizon_days: float = Field(
        14.0, gt=0, le=365, description="The horizon of the segments' base_conversion."
    )
    active_hours: dict[str, list[Annotated[int, Field(ge=0, le=23)]]] = Field(
        min_length=1, description="Named local-hour profiles, e.g. evening: [19, 20, 21]."
    )
    channels: dict[Channel, ChannelModel]
    fatigue: Fatigue = Fatigue()
    variant_appeal: dict[str, float] = Field(
        default_factory=dict, description="Variant name -> click multiplier (default 1)."
    )
    variants: dict[str, VariantEffect] = Field(
        default_factory=dict, description="Variant name -> effect on opens, clicks, conversions."
    )
    segments: list[Segment] = Field(min_length=1, max_length=100)
    economics: Economics = Economics()
    changes: list[Change] = Field(default_factory=list, max_length=20)
    sequence: SequenceConfig
    workspace: WorkspaceSettings | None = None

    @field_validator("variant_appeal")
    @classmethod
    def _appeal(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_appeal(v)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        for name, hours in self.active_hours.items():
            if not hours:
                raise ValueError(f"active-hour profile {name!r} has no hours")
        for segment in self.segments:
            unknown = set(segment.active_hours) - set(self.active_hours)
            if unknown:
                raise ValueError(
                    f"segment {segment.name!r}: unknown active-hour profiles {sorted(unknown)}"
                )
        used = {ch for step in self.sequence.steps for ch in step.channels}
        missing = used - set(self.channels)
        if missing:
            raise ValueError(f"no channel model for {sorted(ch.value for ch in missing)}")
        if SIGNUP_EVENT not in self.sequence.entry.event_types:
            raise ValueError(f"the sequence must be entered on {SIGNUP_EVENT!r}")
        goal = self.sequence.exit.goal
        if goal is None or goal.event_type != CONVERSION_EVENT:
            raise ValueError(f"the sequence needs a goal on {CONVERSION_EVENT!r}")
        if self.sequence.workspace_id != (self.workspace or self.sequence).workspace_id:
            raise ValueError("the workspace settings must belong to the sequence's workspace")
        errors = self._change_errors()
        if errors:
            raise _field_errors("Scenario", errors)
        return self

    def _change_errors(self) -> list[tuple[tuple[str | int, ...], str, object]]:
        """Changes that name what does not exist, or that cannot be applied as a rescaling,
        each reported at its own field path."""
        errors: list[tuple[tuple[str | int, ...], str, object]] = []
        segments = {s.name: s for s in self.segments}
        last = 0.0
        for i, change in enumerate(self.changes):
            if change.day <= last:
                errors.append(
                    (("changes", i, "day"), "changes must be in increasing day order", change.day)
                )
            last = change.day
            for ch in change.channels:
                if ch not in self.channels:
                    errors.append(
                        (
                            ("changes", i, "channels", ch.value),
                            "no channel model for this channel",
                            ch.value,
                        )
                    )
            for name, seg_change in change.segments.items():
                segment = segments.get(name)
                if segment is None:
                    errors.append((("changes", i, "segments", name), "unknown segment", name))
                    continue
                for ch, prop in seg_change.channels.items():
                    base = segment.channels.get(ch)
                    loc = ("changes", i, "segments", name, "channels", ch.value)
                    if base is None:
                        errors.append(
                            (
                                loc,
                                "the segment has no behaviour on this channel to change",
                                ch.value,
                            )
                        )
                        continue
                    for attr in ("open", "click"):
                        new = getattr(prop, attr)
                        if new and not getattr(base, attr):
                            errors.append(
                                ((*loc, attr), "a rate that starts at 0 cannot be rescaled", new)
                            )
        return errors

    def priced_sequence(self) -> SequenceConfig:
        """The sequence with the channel models' costs as its price list, unless it has one,
        so the core's cost accounting (what the report sums) uses the world's prices."""
        guardrails = self.sequence.guardrails
        if guardrails.cost_per_message:
            return self.sequence
        prices = {ch: model.cost for ch, model in self.channels.items()}
        return self.sequence.model_copy(
            update={"guardrails": guardrails.model_copy(update={"cost_per_message": prices})}
        )


Loc = tuple[str | int, ...]


def _field_errors(model: str, errors: list[tuple[Loc, str, object]]) -> ValidationError:
    """Cross-field errors that name the field to fix (as the contracts' validators do)."""
    return ValidationError.from_exception_data(
        model,
        [
            InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)
            for loc, message, value in errors
        ],
    )


def _check_appeal(v: dict[str, float]) -> dict[str, float]:
    for name, appeal in v.items():
        if not (0 <= appeal <= 10 and math.isfinite(appeal)):
            raise ValueError(f"variant {name!r}: appeal must be between 0 and 10")
    return v


# --- loading --------------------------------------------------------------------------------


def scenario_names() -> list[str]:
    """Scenarios shipped with the package."""
    folder = resources.files("sme.simulator").joinpath("scenarios")
    return sorted(
        entry.name.removesuffix(".json")
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    )


def load_scenario(name: str) -> Scenario:
    """A shipped scenario by name (`default`, `null`, ...)."""
    if name not in scenario_names():
        raise ValueError(f"unknown scenario {name!r}; shipped: {', '.join(scenario_names())}")
    text = resources.files("sme.simulator").joinpath("scenarios", f"{name}.json").read_text()
    return parse_scenario(text)


def load_scenario_file(path: Path) -> Scenario:
    return parse_scenario(path.read_text(encoding="utf-8"))


def parse_scenario(text: str) -> Scenario:
    data = json.loads(text)
    if isinstance(data, dict):
        data.pop("$comment", None)
    return Scenario.model_validate(data)


# --- hidden users ---------------------------------------------------------------------------


@dataclass(slots=True)
class HiddenUser:
    """One simulated user's hidden truth; the core never reads this."""

    index: int
    user_id: str
    segment: str
    timezone: str
    active: frozenset[int]  # local hours
    attributes: dict[str, str]
    consent: dict[Channel, bool]
    open_p: dict[Channel, float]
    click_p: dict[Channel, float]
    conversion_per_click: float
    conversion_per_open: float
    appeal: dict[str, float]
    base_hazard: float  # organic conversion hazard per millisecond
    signup_ms: int = 0
    converted: bool = False
    deliveries: list[int] = field(default_factory=list)  # recent delivery times (ms)
    unsubscribed: set[Channel] = field(default_factory=set)  # the world's truth, for the oracle


def _pick(weights: dict[str, float], rng: random.Random) -> str:
    names = sorted(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def _spread(mean: float, concentration: float, rng: random.Random) -> float:
    if concentration <= 0 or mean <= 0 or mean >= 1:
        return mean
    return rng.betavariate(concentration * mean, concentration * (1 - mean))


def draw_user(scenario: Scenario, index: int, user_id: str, rng: random.Random) -> HiddenUser:
    """Draw one user from the scenario's segments (consumes `rng` in a fixed order)."""
    weights = [s.weight for s in scenario.segments]
    segment = rng.choices(scenario.segments, weights=weights)[0]
    timezone = _pick(segment.timezones, rng)
    profile = _pick(segment.active_hours, rng)
    attributes = {name: _pick(values, rng) for name, values in sorted(segment.attributes.items())}
    consent: dict[Channel, bool] = {}
    open_p: dict[Channel, float] = {}
    click_p: dict[Channel, float] = {}
    for channel in sorted(scenario.channels):
        prop = segment.channels.get(channel)
        if prop is None:
            consent[channel], open_p[channel], click_p[channel] = True, 0.0, 0.0
            continue
        consent[channel] = prop.consent >= 1 or rng.random() < prop.consent
        never = prop.never_read > 0 and rng.random() < prop.never_read
        open_p[channel] = 0.0 if never else _spread(prop.open, segment.concentration, rng)
        click_p[channel] = _spread(prop.click, segment.concentration, rng)
    return HiddenUser(
        index=index,
        user_id=user_id,
        segment=segment.name,
        timezone=timezone,
        active=frozenset(scenario.active_hours[profile]),
        attributes=attributes,
        consent=consent,
        open_p=open_p,
        click_p=click_p,
        conversion_per_click=segment.conversion_per_click,
        conversion_per_open=segment.conversion_per_open,
        appeal={**scenario.variant_appeal, **segment.variant_appeal},
        base_hazard=base_conversion_hazard(scenario, segment),
    )


def base_conversion_hazard(scenario: Scenario, segment: Segment) -> float:
    """Per-millisecond hazard giving P(convert within the horizon) = base_conversion."""
    if segment.base_conversion <= 0:
        return 0.0
    if segment.base_conversion >= 1:
        return math.inf
    horizon_ms = scenario.conversion_horizon_days * 86_400_000
    return -math.log1p(-segment.base_conversion) / horizon_ms


# --- the truth over time --------------------------------------------------------------------

NO_EFFECT = VariantEffect()


@dataclass(frozen=True, slots=True)
class SegmentTruth:
    """A segment's rates in one regime; user rates are the user's drawn rates times the
    factors (1 before any change), so a change keeps who is better than whom."""

    open_factor: dict[Channel, float]
    click_factor: dict[Channel, float]
    unsubscribe: dict[Channel, float]
    cost: dict[Channel, float]
    conversion_per_click: float
    conversion_per_open: float
    conversion_value: float
    variants: dict[str, VariantEffect]


@dataclass(frozen=True, slots=True)
class Regime:
    """The world between two changes (the first starts at the scenario's start)."""

    start_day: float
    channels: dict[Channel, ChannelModel]
    segments: dict[str, SegmentTruth]


def regimes(scenario: Scenario) -> list[Regime]:
    """The base world, then one regime per change, each change applied on the previous one."""
    channels = dict(scenario.channels)
    scenario_variants = dict(scenario.variants)
    means = {
        s.name: {ch: (p.open, p.click) for ch, p in s.channels.items()} for s in scenario.segments
    }
    seg_state: dict[str, dict[str, Any]] = {
        s.name: {
            "open": {ch: p.open for ch, p in s.channels.items()},
            "click": {ch: p.click for ch, p in s.channels.items()},
            "unsubscribe": {
                ch: p.unsubscribe_per_delivery
                for ch, p in s.channels.items()
                if p.unsubscribe_per_delivery is not None
            },
            "cost": {ch: p.cost for ch, p in s.channels.items() if p.cost is not None},
            "conversion_per_click": s.conversion_per_click,
            "conversion_per_open": s.conversion_per_open,
            "variants": dict(s.variants),
        }
        for s in scenario.segments
    }

    def build(day: float) -> Regime:
        segments: dict[str, SegmentTruth] = {}
        for segment in scenario.segments:
            st = seg_state[segment.name]
            base = means[segment.name]
            segments[segment.name] = SegmentTruth(
                open_factor={
                    ch: (st["open"][ch] / base[ch][0] if base.get(ch, (0, 0))[0] else 1.0)
                    if ch in base
                    else 1.0
                    for ch in channels
                },
                click_factor={
                    ch: (st["click"][ch] / base[ch][1] if base.get(ch, (0, 0))[1] else 1.0)
                    if ch in base
                    else 1.0
                    for ch in channels
                },
                unsubscribe={
                    ch: st["unsubscribe"].get(ch, model.unsubscribe_per_delivery)
                    for ch, model in channels.items()
                },
                cost={ch: st["cost"].get(ch, model.cost) for ch, model in channels.items()},
                conversion_per_click=st["conversion_per_click"],
                conversion_per_open=st["conversion_per_open"],
                conversion_value=(
                    segment.conversion_value
                    if segment.conversion_value is not None
                    else scenario.economics.conversion_value
                ),
                variants={**scenario_variants, **st["variants"]},
            )
        return Regime(day, dict(channels), segments)

    out = [build(0.0)]
    for change in scenario.changes:
        for ch, model_change in change.channels.items():
            update = {k: v for k, v in model_change.model_dump().items() if v is not None}
            channels[ch] = channels[ch].model_copy(update=update)
        scenario_variants.update(change.variants)
        for name, seg_change in change.segments.items():
            st = seg_state[name]
            for ch, prop in seg_change.channels.items():
                for attr in ("open", "click"):
                    if getattr(prop, attr) is not None:
                        st[attr][ch] = getattr(prop, attr)
                if prop.unsubscribe_per_delivery is not None:
                    st["unsubscribe"][ch] = prop.unsubscribe_per_delivery
                if prop.cost is not None:
                    st["cost"][ch] = prop.cost
            for attr in ("conversion_per_click", "conversion_per_open"):
                if getattr(seg_change, attr) is not None:
                    st[attr] = getattr(seg_change, attr)
            st["variants"].update(seg_change.variants)
        out.append(build(change.day))
    return out
