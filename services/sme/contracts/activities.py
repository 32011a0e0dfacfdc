"""Activity records on `sme.activities`: what the engine decided and observed. The gateway
sinks them into ClickHouse; every report is computed from them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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


class Activity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    activity_id: str = Field(description="Deterministic uuid: the same fact always has one id.")
    type: ActivityType
    workspace_id: str = Field(description="Empty when the source could not be parsed.")
    user_id: str = ""
    occurred_at: AwareDatetime = Field(description="When the fact happened (event or decision).")
    config_id: str = ""
    config_version: int = 0
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
