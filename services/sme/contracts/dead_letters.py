"""Dead letters on `sme.dlq`: anything that could not be processed, with the reason and the
original bytes, so nothing is lost and an operator can replay it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

MAX_ORIGINAL_BYTES = 64 * 1024


class RejectReason(StrEnum):
    """Closed set of reasons a message is dead-lettered."""

    TOO_LARGE = "too_large"
    INVALID_JSON = "invalid_json"
    VALIDATION_FAILED = "validation_failed"
    PROCESSING_ERROR = "processing_error"


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    loc: str = Field(description="Dotted path of the field, '' for the whole message.")
    message: str
    type: str


class SourcePosition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    partition: int
    offset: int
    key: str | None = None


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason_code: RejectReason
    errors: list[FieldError]
    source: SourcePosition
    original_size: int = Field(ge=0)
    original_base64: str = Field(description=f"First {MAX_ORIGINAL_BYTES} bytes, base64.")
    original_truncated: bool
    dead_lettered_at: AwareDatetime
    service: str = Field(description="Which service dead-lettered it (engine, gateway).")
