"""Records on the engine's internal inputs topic (`sme.inputs`). Each one is addressed to the
partition that owns a user's state (`sme.routing.owner_partition`), whatever partitioner the
upstream producer used: a valid event forwarded by the engine's intake, a timer tick naming the
users of that partition that are due, or an erase or list-enrollment request from the gateway."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from sme.contracts.enrollments import EnrollRequest
from sme.contracts.events import Event

MAX_TICK_KEYS = 1000
"""Users named by one tick record; a wake-up of more users sends several records."""


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourcePositionRef(_Input):
    """Where the intake read the event: the decision's RNG and ids derive from it, so a
    redelivered event decides alike however often it is forwarded."""

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class ForwardedEvent(_Input):
    kind: Literal["event"] = "event"
    source: SourcePositionRef
    event: Event


class DueUser(_Input):
    key: str = Field(description="Table key of the user's state (workspace-scoped).")
    due_ms: int = Field(description="When the engine expected them due (epoch ms, UTC).")


class TimerTick(_Input):
    """Wakes the named users of this partition: each is advanced in stream context."""

    kind: Literal["tick"] = "tick"
    users: list[DueUser] = Field(min_length=1, max_length=MAX_TICK_KEYS)


class EraseRequest(_Input):
    kind: Literal["erase"] = "erase"
    workspace_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    erasure_id: str = Field(min_length=1)
    requested_at: AwareDatetime | None = Field(
        None, description="When the gateway accepted the request (for the erasure's timing)."
    )


EngineInput = Annotated[
    ForwardedEvent | TimerTick | EraseRequest | EnrollRequest, Field(discriminator="kind")
]
ENGINE_INPUT: TypeAdapter[ForwardedEvent | TimerTick | EraseRequest | EnrollRequest] = TypeAdapter(
    EngineInput
)
