"""Preview and test-send requests and answers (`POST …/preview`, `POST …/{config_id}/test-send`).

A preview runs the real core for one made-up user on a virtual clock and answers with the
decision trace; a test send publishes one command marked `test` for a workspace test user.
Bounded like every input: at most `MAX_TIMELINE` events within `MAX_HORIZON` of the start."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from sme.contracts.activities import ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.contracts.dead_letters import RejectReason
from sme.contracts.errors import Loc, field_errors
from sme.contracts.events import EventType, Identifier, OccurredAt, UserId, UserProfile
from sme.contracts.reasons import Reason

MAX_TIMELINE = 200
"""Events a preview's timeline may hold."""
MAX_HORIZON = timedelta(days=400)
"""How far past its start a preview runs at most (and the latest a timeline event may be)."""
MAX_SEED = 2**63 - 1


class _Strict(BaseModel):
    """Strict JSON types (a number is not a string), as the configuration routes check them."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PreviewEvent(_Strict):
    """One event of the user's made-up timeline: an `Event` without the ids the preview sets
    (workspace, user; `event_id` defaults to `preview-<n>`, its place in the timeline)."""

    event_id: Identifier | None = None
    type: EventType = Field(description="Event type, lower-case, e.g. purchased, clicked.")
    occurred_at: OccurredAt = Field(
        strict=False,  # a string, as the validator before checks it (strict takes no string)
        description="RFC 3339 timestamp with an offset: when the event happens on the virtual "
        "clock (within the horizon of the start).",
    )
    properties: dict[str, Any] = Field(default_factory=dict, max_length=64)
    channel: Channel | None = None
    command_id: Identifier | None = Field(
        None, description="The command this event answers (a command id of the trace)."
    )
    user: UserProfile | None = Field(None, description="Profile changes the event carries.")


class PreviewRequest(_Strict):
    """Who the user is, what they do and when; the preview decides the rest."""

    user_id: UserId = Field(description="The user's id (it decides their arm and split paths).")
    profile: UserProfile = Field(
        default_factory=UserProfile,
        description="Time zone, attributes and per-channel consent, as events carry them.",
    )
    timeline: list[PreviewEvent] = Field(
        default_factory=list,
        max_length=MAX_TIMELINE,
        description="The user's events, any order (run in time order). Without an event of an "
        "entry type, a `preview-entry` event of the first entry type enrolls the user at "
        "`start`.",
    )
    start: AwareDatetime | None = Field(
        None,
        description="When the virtual clock starts: default the first timeline event's time, "
        "else now.",
    )
    horizon: timedelta = Field(
        MAX_HORIZON, description="How long after `start` the preview runs (ISO 8601, <= P400D)."
    )
    arm: Arm | None = Field(
        None,
        description="Force an experiment arm; default the arm this user really gets.",
    )
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="Seeds the random draws: same request, same trace."
    )
    config: dict[str, Any] | None = Field(
        None,
        description="An unsaved configuration (as for create) to preview instead of the "
        "stored one; required on `POST …/preview`.",
    )

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= v <= MAX_HORIZON:
            raise ValueError(f"must be at least 1 second and at most {MAX_HORIZON.days} days")
        return v

    @field_validator("start")
    @classmethod
    def _start(cls, v: datetime | None) -> datetime | None:
        if v is not None and not 2000 <= v.year <= 2200:
            raise ValueError("start must be between years 2000 and 2200")
        return v

    @model_validator(mode="after")
    def _within_horizon(self) -> PreviewRequest:
        """Every event between the start and the horizon's end."""
        if not self.timeline:
            return self
        start = self.start or min(e.occurred_at for e in self.timeline)
        end = start + self.horizon
        errors: list[tuple[Loc, str, object]] = []
        for i, event in enumerate(self.timeline):
            if not start <= event.occurred_at <= end:
                message = "must be between start and start + horizon"
                errors.append((("timeline", i, "occurred_at"), message, None))
        if errors:
            raise field_errors("PreviewRequest", errors)
        return self

    def effective_start(self, now: datetime) -> datetime:
        if self.start is not None:
            return self.start
        return min((e.occurred_at for e in self.timeline), default=now)


class TraceEntry(BaseModel):
    """One decision or observation of the core, as the engine would record it (an activity),
    with the command for `command_emitted` (what a sender would receive)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: AwareDatetime = Field(description="When, on the virtual clock.")
    type: ActivityType
    step_id: str = ""
    channel: Channel | None = None
    arm: Arm | None = None
    reason_code: Reason | RejectReason | Literal[""] = Field(
        "", description="Why a step was suppressed, deferred, skipped or an enrollment ended."
    )
    event_id: str = ""
    event_type: str = ""
    value: float = Field(0.0, description="A conversion's value.")
    cost: float = Field(0.0, description="A message's cost.")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="As the activity's: policy scores, variant, template, deferral `until`, "
        "branch `goto`, split path.",
    )
    command: Command | None = Field(None, description="The command a send emits.")


class PreviewOutcome(BaseModel):
    """Where the user stands when the preview ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enrolled: bool = Field(description="The user entered the sequence.")
    arm: Arm | None = Field(description="Their arm (null: never enrolled).")
    active: bool = Field(description="Still enrolled when the preview ended (the horizon).")
    step_id: str | None = Field(description="The current step if still enrolled.")
    due_at: AwareDatetime | None = Field(description="When the current step is due next.")
    messages: int = Field(ge=0, description="Commands emitted.")
    converted: bool
    ended_at: AwareDatetime = Field(description="The virtual clock at the end.")
    horizon_reached: bool = Field(description="Stopped at the horizon with something due.")
    truncated: bool = Field(
        False, description="Stopped after 5,000 decisions (a preview's bound) with more due."
    )


class PreviewResponse(BaseModel):
    """The full decision trace, in time order, and the final state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config_id: str
    config_version: int
    user_id: str
    start: AwareDatetime
    horizon_end: AwareDatetime
    seed: int
    statistics: Literal["none"] = Field(
        "none",
        description="Population statistics the adaptive policy saw: none (its priors), so "
        "adaptive choices are seeded draws from the prior, not today's learned choices.",
    )
    trace: list[TraceEntry]
    outcome: PreviewOutcome


class SendTestRequest(_Strict):
    """One step's message for a workspace test user (listed in the workspace's `test_users`)."""

    user_id: UserId = Field(description="A test user of the workspace (`test_users`).")
    step_id: str = Field(min_length=1, max_length=64, description="A message step.")
    channel: Channel | None = Field(None, description="One of the step's; default its first.")
    variant: str | None = Field(
        None, min_length=1, max_length=64, description="One of the step's; default its first."
    )
    profile: UserProfile = Field(
        default_factory=UserProfile, description="Attributes the command may carry."
    )


class SendTestResponse(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(description="The command topic it was published to.")
    command: Command


def request_schemas(ref_template: str) -> dict[str, Any]:
    """OpenAPI components of the request bodies (the routes validate them strictly themselves,
    as the configuration routes do); `config` is a `SequenceConfigCreate`."""
    out: dict[str, Any] = {}
    for model in (PreviewRequest, SendTestRequest):
        schema = model.model_json_schema(ref_template=ref_template, mode="validation")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    config = out["PreviewRequest"]["properties"]["config"]
    config["anyOf"] = [
        {"$ref": ref_template.format(model="SequenceConfigCreate")},
        {"type": "null"},
    ]
    return out
