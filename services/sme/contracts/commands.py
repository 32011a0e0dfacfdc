"""Next-message commands on `sme.commands.<channel>` (key = user id). A command means
"send now": deferrals are timers inside the engine, never future times handed to a sender."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sme.contracts.channels import Channel
from sme.contracts.content import CommandData


class Arm(StrEnum):
    """Experiment arm of an enrollment."""

    ADAPTIVE = "adaptive"
    BASELINE = "baseline"
    HOLDOUT = "holdout"
    GLOBAL_CONTROL = "global_control"
    """The workspace's global control group: enrolled and measured, never messaged."""


class Command(BaseModel):
    """One message to send now. Everything a sender needs to render is here: the template for
    the channel and variant, the allow-listed data, the user's time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: str = Field(description="Deterministic idempotency key: same due step, same id.")
    workspace_id: str = Field(description="The workspace the user and the sequence belong to.")
    config_id: str = Field(description="The sequence that decided the message.")
    config_version: int = Field(ge=1, description="The sequence's version when it decided.")
    user_id: str = Field(description="The recipient, as the events name them.")
    step_id: str = Field(description="The sequence's step this message is.")
    channel: Channel = Field(description="Where to send; also the topic the command is on.")
    template: str = Field(
        description="The template to render: the step's content for this channel and variant "
        "(content.<channel>.variants.<variant>, else content.<channel>.template), else the "
        "step's template."
    )
    variant: str = Field(description="The step's variant chosen for this user.")
    arm: Arm = Field(description="The user's experiment arm (holdout and global control get none).")
    decided_at: AwareDatetime = Field(description="When the engine decided to send (UTC).")
    data: CommandData = Field(
        default_factory=CommandData,
        description="Values to render with: exactly the step's (or the sequence's) `data` "
        "allow-list, bounded in size; empty without one.",
    )
    timezone: str = Field(
        "UTC",
        description="IANA zone the engine used for the user (the profile's, else the "
        "workspace's default): render local dates and times in it.",
    )
    test: bool = Field(
        False,
        description="A test send (`POST …/{config_id}/test-send`) for a workspace test user: "
        "deliver it to the internal recipient; it belongs to no enrollment or arm and is "
        "counted in no metric.",
    )
