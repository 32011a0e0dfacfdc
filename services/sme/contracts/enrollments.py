"""List enrollment (audience entry): the API's request and answer, and the record the gateway
puts on the engine's inputs topic for each listed user.

A list enrollment enrolls users now, without a trigger event. The engine applies it as any
entry (the sequence must be ACTIVE; entry filters, re-entry rules, arm assignment; guardrails
at send time), evaluating entry conditions on the user's profile and an empty event: a
predicate on an event property never holds (a `not` of one does)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from sme.contracts.events import NOT_BLANK, UserId

MAX_ENROLLMENT_USERS = 10_000
"""Users one request may list (JSON `user_ids` or NDJSON lines); more is a 422."""
MAX_ENROLLMENT_BODY = 4 * 1024 * 1024
"""Bytes of one enrollment request body; more is a 413 (other routes take 1 MiB)."""
MAX_LINE_ATTRIBUTES = 64
BATCH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"

BatchId = Annotated[
    str,
    Field(
        pattern=BATCH_ID_PATTERN,
        max_length=128,
        description="Client-chosen id of the batch (letters, digits, `._:-`, at most 128): "
        "posting it again enrolls nobody twice.",
    ),
]
AttributeKey = Annotated[str, Field(min_length=1, max_length=128, pattern=NOT_BLANK)]
AttributeText = Annotated[str, Field(max_length=1024)]
ListedAttribute = AttributeText | StrictInt | float | StrictBool | None


class EnrollmentBatch(BaseModel):
    """`application/json` body of `POST …/{config_id}/enrollments`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_id: BatchId
    user_ids: list[UserId] = Field(
        min_length=1,
        max_length=MAX_ENROLLMENT_USERS,
        description="Users to enroll now (a user listed twice is enrolled once).",
    )


class EnrollmentLine(BaseModel):
    """One line of an `application/x-ndjson` enrollment upload. `attributes`, if given,
    update the user's profile before the entry is judged, as an event's would."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UserId
    attributes: dict[AttributeKey, ListedAttribute] = Field(
        default_factory=dict, max_length=MAX_LINE_ATTRIBUTES
    )


class EnrollmentAccepted(BaseModel):
    """202: every listed user is durably queued for the engine (acknowledged by the broker).
    A repeated batch (same id, same users) answers the first answer again, `replayed: true`."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    config_id: str
    received: int = Field(description="Users listed in the request (lines, for NDJSON).")
    accepted: int = Field(description="Distinct users queued for enrollment.")
    duplicates: int = Field(description="Users listed more than once in the request.")
    replayed: bool = Field(
        False, description="The batch was accepted before: nothing was queued again."
    )
    accepted_at: AwareDatetime


class EnrollRequest(BaseModel):
    """Engine input: enroll one user in one sequence now. Its id derives from (workspace,
    sequence, batch, user), so a redelivered or re-sent record enrolls nobody twice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["enroll"] = "enroll"
    workspace_id: str = Field(min_length=1)
    config_id: str = Field(min_length=1)
    batch_id: BatchId
    user_id: UserId
    attributes: dict[AttributeKey, ListedAttribute] = Field(
        default_factory=dict, max_length=MAX_LINE_ATTRIBUTES
    )
    requested_at: AwareDatetime
