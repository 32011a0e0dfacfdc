"""Turning raw topic bytes into a validated Event, or into a rejection with field-level
reasons. Pure: the adapter decides where a rejection goes (the dead-letter topic)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
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
from sme.contracts.events import MAX_NESTING, Event
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
    if _too_deep(raw, document):
        message = f"objects and arrays nest deeper than {MAX_NESTING} levels"
        return Rejection(
            RejectReason.INVALID_JSON, (FieldError(loc="", message=message, type="too_deep"),)
        )
    if _has_duplicate_member(raw, document):
        message = "a member name appears twice in one object"
        return Rejection(
            RejectReason.INVALID_JSON, (FieldError(loc="", message=message, type="duplicate_key"),)
        )
    try:
        return Event.model_validate(document)
    except ValidationError as exc:
        return Rejection(
            RejectReason.VALIDATION_FAILED, _field_errors(exc), _workspace_hint(document)
        )


def _too_deep(raw: bytes, document: object) -> bool:
    """Whether containers nest past MAX_NESTING (RFC 8259 section 9 lets a parser limit it)."""
    if raw.count(b"{") + raw.count(b"[") <= MAX_NESTING:  # cannot nest deeper than it opens
        return False
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_NESTING:
            return True
        children: Iterable[object] = ()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        pending.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


# A JSON string and, if it is a member name, the colon after it. In a text orjson accepted,
# strings never overlap and every member name is exactly a string followed by a colon.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"[ \t\n\r]*(:?)', re.DOTALL)


def _has_duplicate_member(raw: bytes, document: object) -> bool:
    """Whether an object in `raw` names a member twice. orjson keeps the last value silently;
    I-JSON (RFC 7493) forbids duplicates, and two readers could see two different events. The
    text has as many member names as the parsed document has members unless one was dropped."""
    if orjson.dumps(document) == raw:  # the usual compact text: nothing was dropped
        return False
    return _STRING.findall(raw).count(b":") != _member_count(document)


def _member_count(document: object) -> int:
    count, pending = 0, [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            count += len(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return count


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
