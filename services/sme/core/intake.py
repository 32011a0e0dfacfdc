"""Turning raw topic bytes into a validated Event, or into a rejection with field-level
reasons. Pure: the adapter decides where a rejection goes (the dead-letter topic)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

import orjson
from pydantic import ValidationError

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.dead_letters import (
    MAX_ORIGINAL_BYTES,
    DeadLetter,
    FieldError,
    RejectReason,
    SourcePosition,
)
from sme.contracts.events import Event
from sme.core.ids import stable_id


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    errors: tuple[FieldError, ...]
    workspace_hint: str = ""


def parse_event(raw: bytes | None, max_bytes: int) -> Event | Rejection:
    """Validate one message value. Size is checked before any parsing work is spent on it."""
    if raw is None:
        return Rejection(
            RejectReason.INVALID_JSON,
            (FieldError(loc="", message="empty message value", type="empty"),),
        )
    if len(raw) > max_bytes:
        message = f"{len(raw)} bytes exceeds the limit of {max_bytes}"
        return Rejection(
            RejectReason.TOO_LARGE, (FieldError(loc="", message=message, type="too_large"),)
        )
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection(
            RejectReason.INVALID_JSON, (FieldError(loc="", message=str(exc), type="json_invalid"),)
        )
    try:
        return Event.model_validate(document)
    except ValidationError as exc:
        return Rejection(
            RejectReason.VALIDATION_FAILED, _field_errors(exc), _workspace_hint(document)
        )


def _field_errors(exc: ValidationError) -> tuple[FieldError, ...]:
    return tuple(
        FieldError(loc=".".join(str(p) for p in err["loc"]), message=err["msg"], type=err["type"])
        for err in exc.errors(include_url=False, include_input=False)
    )


def _workspace_hint(document: object) -> str:
    if isinstance(document, dict):
        hint = document.get("workspace_id")
        if isinstance(hint, str) and 0 < len(hint) <= 128:
            return hint
    return ""


def dead_letter(
    rejection: Rejection, raw: bytes | None, source: SourcePosition, now: datetime, service: str
) -> DeadLetter:
    """The dead letter for a rejected message: reason, errors, position and original bytes."""
    original = raw or b""
    return DeadLetter(
        reason_code=rejection.reason,
        errors=list(rejection.errors),
        source=source,
        original_size=len(original),
        original_base64=base64.b64encode(original[:MAX_ORIGINAL_BYTES]).decode("ascii"),
        original_truncated=len(original) > MAX_ORIGINAL_BYTES,
        dead_lettered_at=now,
        service=service,
    )


def rejected_activity(rejection: Rejection, source: SourcePosition, now: datetime) -> Activity:
    """The activity for a dead-lettered message: it counts toward the error rate and carries
    the reason and failing field paths, never the payload (it may hold personal data)."""
    return Activity(
        activity_id=stable_id(
            "activity",
            ActivityType.EVENT_REJECTED.value,
            source.topic,
            source.partition,
            source.offset,
        ),
        type=ActivityType.EVENT_REJECTED,
        workspace_id=rejection.workspace_hint,
        occurred_at=now,
        reason_code=rejection.reason.value,
        details={"fields": [e.loc for e in rejection.errors][:20]},
    )
