"""Activity rows: the mapping from the wire model to the `activities` table."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC
from typing import Any

import orjson

from sme.contracts.activities import Activity

ACTIVITY_COLUMNS = (
    "activity_id",
    "type",
    "workspace_id",
    "user_id",
    "occurred_at",
    "config_id",
    "config_version",
    "step_id",
    "channel",
    "arm",
    "command_id",
    "event_id",
    "event_type",
    "reason_code",
    "value",
    "cost",
    "details",
)


def activity_row(activity: Activity) -> list[Any]:
    """The row of one activity. The id goes as its canonical text (ClickHouse parses it into
    the UUID column), the form the sink's fast path (`activity_wire`) also gives, since one
    insert's column must hold one kind of value."""
    return [
        str(uuid.UUID(activity.activity_id)),
        activity.type.value,
        activity.workspace_id,
        activity.user_id,
        activity.occurred_at.astimezone(UTC),
        activity.config_id,
        activity.config_version,
        activity.step_id,
        activity.channel.value if activity.channel else "",
        activity.arm.value if activity.arm else "",
        activity.command_id,
        activity.event_id,
        activity.event_type,
        str(activity.reason_code),
        activity.value,
        activity.cost,
        _json_text(activity.details),
    ]


def _json_text(details: dict[str, Any]) -> str:
    """`details` as JSON text; integers beyond 64 bits (valid JSON, refused by orjson) are
    written by the standard library instead of failing the row (non-finite numbers as null,
    as orjson writes them)."""
    try:
        return orjson.dumps(details).decode()
    except TypeError:
        return json.dumps(_finite(details), ensure_ascii=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
