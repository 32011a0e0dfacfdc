"""Segment tracking spec payloads accepted by `POST /v1/track`, `/v1/identify`, `/v1/batch`.

Deliberately lenient about fields the engine does not use (`extra="allow"`, unlike every
other contract): CDPs (Segment, RudderStack, Jitsu) add `context`, `integrations`, `sentAt`,
`_metadata`... and refusing them would refuse every real forwarder. The fields the engine does
use are typed and bounded; the mapping onto `Event` is in `sme.core.segment`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

MAX_CALL_BYTES = 32 * 1024
"""Segment's limit for one `track`/`identify` call."""
MAX_BATCH_BYTES = 500 * 1024
"""Segment's limit for one `batch` call."""
MAX_BATCH_EVENTS = 2500
"""Events in one batch (at 200 bytes an event, 500 KB holds about that many)."""
MAX_EVENT_NAME = 256
"""Characters of a `track` event name before it is snake-cased (to at most 64)."""

SegmentUserId = StrictStr | StrictInt


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    userId: SegmentUserId | None = Field(
        None, description="Required: events with only an anonymousId are refused."
    )
    anonymousId: SegmentUserId | None = Field(
        None, description="Accepted but not used: the engine keys state by user id."
    )
    messageId: StrictStr | None = Field(
        None,
        max_length=128,
        description="The event id (dedupe); absent: a hash of the payload, so a retry dedupes.",
    )
    timestamp: StrictStr | None = Field(
        None, max_length=64, description="RFC 3339; else originalTimestamp, else receipt."
    )
    originalTimestamp: StrictStr | None = Field(None, max_length=64)
    context: dict[str, Any] = Field(
        default_factory=dict, description="`context.timezone` (IANA) sets the profile's zone."
    )


class SegmentTrack(_Common):
    """A `track` call: the event name becomes the event type, snake-cased."""

    type: Literal["track"] = "track"
    event: StrictStr = Field(min_length=1, max_length=MAX_EVENT_NAME)
    properties: dict[str, Any] = Field(default_factory=dict)


class SegmentIdentify(_Common):
    """An `identify` call: an `identified` event whose scalar traits are profile attributes."""

    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)


class SegmentBatch(BaseModel):
    """A `batch` call: each event is accepted or refused on its own."""

    model_config = ConfigDict(extra="allow", frozen=True)

    batch: list[SegmentTrack | SegmentIdentify] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class IngestFieldError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    loc: list[str | int] = Field(description="Path in the Segment payload, e.g. ['userId'].")
    msg: str
    type: str


class IngestEventError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0, description="Position in `batch` (0 for track and identify).")
    messageId: str | None = None
    errors: list[IngestFieldError]


class IngestResult(BaseModel):
    """Segment's `{"success": true}`, plus what was accepted and why the rest was refused
    (each refused event is also dead-lettered)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    success: bool = Field(description="True when every event was accepted.")
    accepted: int = Field(ge=0)
    rejected: int = Field(ge=0)
    errors: list[IngestEventError] = Field(default_factory=list)
