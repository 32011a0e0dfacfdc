"""Engagement events published by upstream apps to `sme.events` (key = user id)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)

from sme.contracts.channels import Channel

NOT_BLANK = (
    r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
)
r"""Not blank: at least one character that no engine counts as whitespace. Spelled out because
`\S` differs between them (Rust's and Python's count U+0085 and U+001C-U+001F as space,
ECMAScript's, which JSON Schema validators use, does not; U+FEFF the other way round): with `\S`
a client validating against our schema could send an id we then refuse."""

# Surrounding whitespace of an identifier is trimmed; a user id is kept as is.
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True, pattern=NOT_BLANK)
]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NOT_BLANK)]
EventType = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.\-]*$")
]
AttributeValue = str | int | float | bool | None
MAX_NESTING = 64
"""Objects and arrays nest at most this deep in an event (the event itself is level 1): the
engine must be able to write back whatever it accepts, and JSON writers stop near 255."""
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"  # a missing offset is left for AwareDatetime to name
)


def _rfc3339_only(v: object) -> object:
    """On the wire only an RFC 3339 string: no epoch numbers, no other ISO 8601 forms."""
    if isinstance(v, datetime) or (isinstance(v, str) and RFC3339.fullmatch(v)):
        return v
    raise ValueError("occurred_at must be an RFC 3339 date-time, e.g. 2026-11-28T09:15:00Z")


def _reasonable_year(v: datetime) -> datetime:
    if not 2000 <= v.year <= 2200:
        raise ValueError("occurred_at must be between years 2000 and 2200")
    return v


OccurredAt = Annotated[
    AwareDatetime, BeforeValidator(_rfc3339_only), AfterValidator(_reasonable_year)
]
"""An event's time: an RFC 3339 string with an offset, in the years 2000 to 2200."""


class UserProfile(BaseModel):
    """First-party profile data carried on events; the engine keeps the latest with the user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str | None = Field(None, description="IANA time zone, e.g. Europe/Paris.")
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict, max_length=64, description="First-party attributes."
    )
    consent: dict[Channel, StrictBool] = Field(
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
    """An engagement event: a signup, an open, a click, ...; nested at most 64 levels deep."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Identifier = Field(description="Producer-chosen unique id; used for dedupe.")
    workspace_id: Identifier
    user_id: UserId
    type: EventType = Field(description="Event type, lower-case, e.g. signed_up, clicked.")
    occurred_at: OccurredAt = Field(
        description="RFC 3339 timestamp with an offset, in the years 2000 to 2200."
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    channel: Channel | None = None
    command_id: Identifier | None = Field(None, description="The command this event answers.")
    user: UserProfile | None = None
