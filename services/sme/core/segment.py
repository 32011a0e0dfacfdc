"""Segment tracking spec calls onto the event contract. Pure: the workspace comes from the
write key and `now` (receipt time) from the caller.

- `track` -> `Event(type=snake_case(event), properties=properties)`;
- `identify` -> `Event(type="identified")` whose scalar traits (string, number, bool, null)
  are the profile's attributes; nested traits are kept in `properties.traits` only;
- `userId` -> `user_id` (required: anonymous-only events are refused, the engine keys
  state by user id; an integer id is taken as its decimal text);
- `messageId` -> `event_id` (the engine drops repeats); none: a hash of the call, so a
  retried call still dedupes;
- `timestamp`, else `originalTimestamp`, else receipt -> `occurred_at` (RFC 3339 with offset);
- `context.timezone` -> the profile's time zone.
Errors name the Segment field (`["event"]`, `["context", "timezone"]`), never the Event's."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from sme.contracts.dead_letters import FieldError
from sme.contracts.events import MAX_NESTING, Event
from sme.contracts.segment import SegmentIdentify, SegmentTrack
from sme.core.ids import stable_id

IDENTIFY_TYPE = "identified"
MAX_TYPE = 64
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\W_]+")  # not a letter or digit of any script
# Event field -> the Segment field an error on it is reported at.
_SEGMENT_LOC: dict[str, tuple[str, ...]] = {
    "event_id": ("messageId",),
    "user_id": ("userId",),
    "type": ("event",),
    "occurred_at": ("timestamp",),
    "properties": ("properties",),
}

Loc = tuple[str | int, ...]
Mapped = Event | list[tuple[Loc, str, str]]


def snake_case(name: str) -> str:
    """`Order Completed`, `orderCompleted`, `order-completed` -> `order_completed`: camel case
    split, accents dropped (`Café` -> `cafe`), lower-cased, any run of characters other than
    letters and digits one `_`, edges trimmed. Letters of other scripts stay, so such a name
    is refused rather than mapped onto a shorter one that another name could share."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    split = _CAMEL.sub("_", plain.strip()).lower()
    return _SEPARATORS.sub("_", split).strip("_")


def from_segment(document: object, kind: str | None, workspace_id: str, now: datetime) -> Mapped:
    """One Segment call (`kind` = "track"/"identify", or None to read its `type`) as an Event,
    or the errors (location in the call, message, type) that refuse it."""
    if not isinstance(document, dict):
        return [((), "an event must be a JSON object", "model_type")]
    kind = kind or document.get("type")
    if kind not in ("track", "identify"):
        message = "type must be 'track' or 'identify' (page, screen, group, alias are not used)"
        return [(("type",), message, "literal_error")]
    model = SegmentTrack if kind == "track" else SegmentIdentify
    try:
        call = model.model_validate({**document, "type": kind})
    except ValidationError as exc:
        return [(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors(include_url=False)]
    problems: list[tuple[Loc, str, str]] = []
    if call.userId is None:
        problems.append(
            (("userId",), "userId is required: anonymous events are not used", "missing")
        )
    event_type = IDENTIFY_TYPE
    if isinstance(call, SegmentTrack):
        event_type = snake_case(call.event)
        if not re.fullmatch(r"[a-z][a-z0-9_]*", event_type) or len(event_type) > MAX_TYPE:
            message = (
                f"event {call.event[:64]!r} snake-cases to {event_type[:80]!r}: it must start "
                f"with a letter and be at most {MAX_TYPE} characters"
            )
            problems.append((("event",), message, "value_error"))
    if problems:
        return problems
    return _event(call, event_type, workspace_id, now, document)


def _event(
    call: SegmentTrack | SegmentIdentify,
    event_type: str,
    workspace_id: str,
    now: datetime,
    document: dict[str, Any],
) -> Mapped:
    user: dict[str, Any] = {}
    zone = call.context.get("timezone")
    if zone is not None:
        user["timezone"] = zone
    properties: dict[str, Any]
    if isinstance(call, SegmentIdentify):
        scalars = {k: v for k, v in call.traits.items() if _scalar(v)}
        user["attributes"] = scalars
        nested = {k: v for k, v in call.traits.items() if k not in scalars}
        properties = {"traits": nested} if nested else {}
    else:
        properties = call.properties
    message_id = call.messageId or stable_id(
        "segment", workspace_id, orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode()
    )
    candidate: dict[str, Any] = {
        "event_id": message_id,
        "workspace_id": workspace_id,
        "user_id": str(call.userId),
        "type": event_type,
        "occurred_at": call.timestamp or call.originalTimestamp or now.isoformat(),
        "properties": properties,
    }
    if user:
        candidate["user"] = user
    if _depth(candidate) > MAX_NESTING:
        field = "traits" if isinstance(call, SegmentIdentify) else "properties"
        message = f"objects and arrays nest deeper than {MAX_NESTING} levels in the event"
        return [((field,), message, "too_deep")]
    try:
        return Event.model_validate(candidate)
    except ValidationError as exc:
        return [
            (_segment_loc(e["loc"], call), e["msg"], e["type"])
            for e in exc.errors(include_url=False)
        ]


def _depth(document: object) -> int:
    """How deep objects and arrays nest (the event itself is level 1), as the engine counts."""
    deepest, pending = 0, [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
    return deepest


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _segment_loc(loc: Loc, call: SegmentTrack | SegmentIdentify) -> Loc:
    head, rest = str(loc[0]) if loc else "", loc[1:]
    if head == "occurred_at" and call.timestamp is None and call.originalTimestamp is not None:
        return ("originalTimestamp", *rest)
    if head == "user" and rest[:1] == ("timezone",):
        return ("context", "timezone", *rest[1:])
    if head == "user" and rest[:1] == ("attributes",):
        return ("traits", *rest[1:])
    return (*_SEGMENT_LOC.get(head, (head,)), *rest)


def field_errors(problems: list[tuple[Loc, str, str]]) -> tuple[FieldError, ...]:
    """The problems as dead-letter field errors (dotted paths)."""
    return tuple(
        FieldError(loc=".".join(str(p) for p in loc), message=msg, type=kind)
        for loc, msg, kind in problems
    )
