"""Engagement events published by upstream apps to `sme.events` (key = user id)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from sme.contracts.channels import Channel

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
EventType = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.\-]*$")
]
AttributeValue = str | int | float | bool | None


class UserProfile(BaseModel):
    """First-party profile data carried on events; the engine keeps the latest with the user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str | None = Field(None, description="IANA time zone, e.g. Europe/Paris.")
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict, max_length=64, description="First-party attributes."
    )
    consent: dict[Channel, bool] = Field(
        default_factory=dict, description="Per-channel consent; absent means unknown."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            # OSError: a tzdata directory name ("America") or an over-long name.
            raise ValueError(f"unknown IANA time zone {v[:64]!r}") from exc
        return v


class Event(BaseModel):
    """An engagement event: a signup, an open, a click, a conversion, ..."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Identifier = Field(description="Producer-chosen unique id; used for dedupe.")
    workspace_id: Identifier
    user_id: UserId
    type: EventType = Field(description="Event type, lower-case, e.g. signed_up, clicked.")
    occurred_at: AwareDatetime = Field(description="RFC 3339 timestamp with an offset.")
    properties: dict[str, Any] = Field(default_factory=dict)
    channel: Channel | None = None
    command_id: Identifier | None = Field(None, description="The command this event answers.")
    user: UserProfile | None = None

    @field_validator("occurred_at")
    @classmethod
    def _reasonable_time(cls, v: datetime) -> datetime:
        if not 2000 <= v.year <= 2200:
            raise ValueError("occurred_at must be between years 2000 and 2200")
        return v
