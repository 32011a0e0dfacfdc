"""Next-message commands on `sme.commands.<channel>` (key = user id). A command means
"send now": deferrals are timers inside the engine, never future times handed to a sender."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sme.contracts.channels import Channel


class Arm(StrEnum):
    """Experiment arm of an enrollment."""

    ADAPTIVE = "adaptive"
    BASELINE = "baseline"
    HOLDOUT = "holdout"
    GLOBAL_CONTROL = "global_control"
    """The workspace's global control group: enrolled and measured, never messaged."""


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: str = Field(description="Deterministic idempotency key: same due step, same id.")
    workspace_id: str
    config_id: str
    config_version: int = Field(ge=1)
    user_id: str
    step_id: str
    channel: Channel
    template: str
    variant: str
    arm: Arm
    decided_at: AwareDatetime
    test: bool = Field(
        False,
        description="A test send (`POST …/{config_id}/test-send`) for a workspace test user: "
        "deliver it to the internal recipient; it belongs to no enrollment or arm and is "
        "counted in no metric.",
    )
