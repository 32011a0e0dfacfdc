"""Activity rows read straight from `sme.activities` record bytes: the sink's fast path.

Validating every activity with pydantic and then building its row cost ~80 µs per activity,
most of the sink's time. The engine writes its records with `model_dump_json`, always in one
canonical shape, so this reads them with orjson and checks every field against exactly that
shape, building the row `activity_row` builds. Whatever it does not recognise (another
spelling, a value pydantic would coerce or reject, an unknown field, an erasure, which needs
the model) is not judged here: `wire_rows` answers None and the caller takes the pydantic
path, so what is accepted or rejected, and every row's contents, stay exactly as before.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from sme.contracts.activities import MAX_BUNDLE_ACTIVITIES, Activity, ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.dead_letters import RejectReason
from sme.contracts.reasons import Reason

Row = list[Any]  # as `activity_row` builds it

_FIELDS = frozenset(Activity.model_fields)
_TYPES = frozenset(t.value for t in ActivityType) - {ActivityType.USER_ERASED.value}
_CHANNELS = frozenset(c.value for c in Channel)
_ARMS = frozenset(a.value for a in Arm)
_REASONS = frozenset({"", *(r.value for r in Reason), *(r.value for r in RejectReason)})
# Lower-case canonical only: exactly what str(uuid.UUID(x)) gives back.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What pydantic writes for an aware datetime; anything else goes the pydantic way.
_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")
_UINT32_MAX = 0xFFFFFFFF
# orjson reads an integer beyond 64 bits as a float where pydantic keeps the int (and the
# row then fails to encode it): details holding a float that large, which may have been one,
# go the pydantic way.
_INT64_SPAN = 2.0**63


def wire_rows(value: bytes) -> list[Row] | None:
    """The rows of one record (an Activity or an ActivityBatch) in order, or None when the
    record is not in the engine's canonical shape and must be read by the model."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(parsed) is not dict:
        return None
    if len(parsed) == 1 and "activities" in parsed:
        items = parsed["activities"]
        if type(items) is not list or not 1 <= len(items) <= MAX_BUNDLE_ACTIVITIES:
            return None
    else:
        items = [parsed]
    rows: list[Row] = []
    for item in items:
        row = _row(item)
        if row is None:
            return None
        rows.append(row)
    return rows


def _row(item: Any) -> Row | None:
    """`activity_row` of one canonical activity, or None if it is not one."""
    if type(item) is not dict or item.keys() != _FIELDS:
        return None
    activity_id = item["activity_id"]
    kind = item["type"]
    occurred = item["occurred_at"]
    version = item["config_version"]
    channel = item["channel"]
    arm = item["arm"]
    reason = item["reason_code"]
    value = item["value"]
    cost = item["cost"]
    details = item["details"]
    workspace = item["workspace_id"]
    user = item["user_id"]
    config = item["config_id"]
    step = item["step_id"]
    command = item["command_id"]
    event = item["event_id"]
    event_type = item["event_type"]
    if not (
        type(activity_id) is str
        and _UUID.fullmatch(activity_id)
        and type(kind) is str
        and kind in _TYPES
        and type(occurred) is str
        and _INSTANT.fullmatch(occurred)
        and type(version) is int
        and 0 <= version <= _UINT32_MAX
        and (channel is None or (type(channel) is str and channel in _CHANNELS))
        and (arm is None or (type(arm) is str and arm in _ARMS))
        and type(reason) is str
        and reason in _REASONS
        and type(value) is float
        and type(cost) is float
        and type(details) is dict
        and (not details or _plain(details))
        and type(workspace) is str
        and type(user) is str
        and type(config) is str
        and type(step) is str
        and type(command) is str
        and type(event) is str
        and type(event_type) is str
    ):
        return None
    try:
        at = datetime.fromisoformat(occurred).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return [
        activity_id,
        kind,
        workspace,
        user,
        at,
        config,
        version,
        step,
        channel or "",
        arm or "",
        command,
        event,
        event_type,
        reason,
        value,
        cost,
        orjson.dumps(details).decode(),
    ]


def _plain(value: Any) -> bool:
    """No float in it that orjson may have made of an integer beyond 64 bits."""
    if type(value) is dict:
        return all(_plain(v) for v in value.values())
    if type(value) is list:
        return all(_plain(v) for v in value)
    return type(value) is not float or -_INT64_SPAN < value < _INT64_SPAN
