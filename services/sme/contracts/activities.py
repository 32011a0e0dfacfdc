"""Activity records on `sme.activities`: what the engine decided and observed. The gateway
sinks them into ClickHouse; every report is computed from them."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.dead_letters import RejectReason
from sme.contracts.reasons import Reason


class ActivityType(StrEnum):
    """Closed set of activity types (listed in schemas/activity.schema.json)."""

    EVENT_RECEIVED = "event_received"
    EVENT_DUPLICATE = "event_duplicate"
    EVENT_REJECTED = "event_rejected"
    ENROLLED = "enrolled"
    ENROLLMENT_SKIPPED = "enrollment_skipped"
    EXPOSURE = "exposure"
    COMMAND_EMITTED = "command_emitted"
    MESSAGE_SUPPRESSED = "message_suppressed"
    STEP_DEFERRED = "step_deferred"
    STEP_SKIPPED = "step_skipped"
    STEP_BRANCHED = "step_branched"
    ENROLLMENT_EXITED = "enrollment_exited"
    FEEDBACK = "feedback"
    CONSENT_REVOKED = "consent_revoked"
    CONVERSION = "conversion"
    CONFIG_CHANGED = "config_changed"
    USER_ERASED = "user_erased"
    AUTOMATION_WARNING = "automation_warning"
    AUTOMATION_PAUSED = "automation_paused"


UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
"""A uuid as text (what the sink's UUID column takes): anything else is refused at the door,
so a malformed id is dead-lettered instead of failing the insert of its whole batch."""
MAX_CONFIG_VERSION = 2**32 - 1
"""Stored as UInt32."""
EARLIEST_TIME = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)


class Activity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    activity_id: str = Field(
        pattern=UUID_PATTERN, description="Deterministic uuid: the same fact always has one id."
    )
    type: ActivityType
    workspace_id: str = Field(description="Empty when the source could not be parsed.")
    user_id: str = ""
    occurred_at: AwareDatetime = Field(description="When the fact happened (event or decision).")
    config_id: str = ""
    config_version: int = Field(0, ge=0, le=MAX_CONFIG_VERSION)
    step_id: str = ""
    channel: Channel | None = None
    arm: Arm | None = None
    command_id: str = ""
    event_id: str = ""
    event_type: str = ""
    reason_code: Reason | RejectReason | Literal[""] = ""
    value: float = 0.0
    cost: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _storable_time(cls, value: datetime) -> datetime:
        """Within what the sink's DateTime64 column holds (and UTC conversion can express)."""
        if not EARLIEST_TIME <= value <= LATEST_TIME:
            raise ValueError("must be between 1900-01-01 and 2299-12-31 (UTC)")
        return value


MAX_BUNDLE_ACTIVITIES = 500
"""At most this many activities travel in one `ActivityBatch` (a record stays well under the
broker's 1 MiB message limit); a producer with more starts another bundle."""
MAX_BUNDLE_BYTES = 256 * 1024
"""A producer starts another bundle once the encoded activities reach this size."""


class ActivityBatch(BaseModel):
    """Several activities of one key (a user id) in one `sme.activities` record, in the order
    they happened: the engine sends one per user per decided batch instead of one record per
    activity. The sink stores them exactly as if each had been its own record, in this order
    (so an erasure inside a bundle deletes exactly the rows before it). Single `Activity`
    records stay valid on the topic: the gateway sends its own one at a time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    activities: list[Activity] = Field(min_length=1, max_length=MAX_BUNDLE_ACTIVITIES)


def read_activities(value: bytes) -> list[Activity]:
    """The activities an `sme.activities` record carries, in order. Raises `ValidationError`
    (nothing of the record is taken) when it is neither a valid Activity nor a valid
    ActivityBatch; a JSON object with `activities` is judged as a bundle (errors located as
    `activities.<i>.<field>`), anything else as one Activity."""
    if value[:16].lstrip().startswith(b'{"activities"'):
        return ActivityBatch.model_validate_json(value).activities
    try:
        return [Activity.model_validate_json(value)]
    except ValidationError:
        try:
            bundled = isinstance(parsed := orjson.loads(value), dict) and "activities" in parsed
        except orjson.JSONDecodeError:
            bundled = False
        if bundled:  # written some other way (spaces, key order): still a bundle
            return ActivityBatch.model_validate_json(value).activities
        raise


def bundle_values(encoded: list[bytes]) -> list[bytes]:
    """Encoded activities (`model_dump_json`) of one key, in order -> record values: one
    ActivityBatch per `MAX_BUNDLE_ACTIVITIES` / `MAX_BUNDLE_BYTES`, a lone activity as is."""
    values: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for item in encoded:
        if chunk and (len(chunk) >= MAX_BUNDLE_ACTIVITIES or size + len(item) > MAX_BUNDLE_BYTES):
            values.append(_bundle(chunk))
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        values.append(_bundle(chunk))
    return values


def _bundle(chunk: list[bytes]) -> bytes:
    if len(chunk) == 1:
        return chunk[0]
    return b'{"activities":[' + b",".join(chunk) + b"]}"
