"""Read queries for the HTTP path. Parameters are always bound server-side; the only pasted
identifier is the validated database name (`{db}`)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from sme.storage.activities import ACTIVITY_COLUMNS
from sme.storage.clickhouse import ClickHouseStore

LISTED_COLUMNS = ACTIVITY_COLUMNS  # an activity is listed as it is stored
TABLES = {"activities": "activities", "decision_log": "decision_log"}


@dataclass(frozen=True, slots=True)
class ActivityFilter:
    config_id: str
    workspace_id: str | None = None  # narrows the scan to the key prefix when known
    types: tuple[str, ...] = ()
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class InvalidCursorError(ValueError):
    pass


def encode_cursor(occurred_at: datetime, activity_id: str) -> str:
    raw = f"{int(occurred_at.timestamp() * 1000)}:{activity_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ms, activity_id = raw.split(":", 1)
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC), str(uuid.UUID(activity_id))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursorError("cursor is not one this API issued") from exc


async def list_activities(
    store: ClickHouseStore,
    flt: ActivityFilter,
    limit: int,
    cursor: str | None,
    table: Literal["activities", "decision_log"] = "activities",
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated on (occurred_at, activity_id); duplicates collapsed.
    `decision_log` holds the last days' decisions ordered by time (see its migration)."""
    where = ["config_id = {config_id:String}"]
    params: dict[str, Any] = {"config_id": flt.config_id}
    if flt.workspace_id is not None:
        where.insert(0, "workspace_id = {workspace_id:String}")
        params["workspace_id"] = flt.workspace_id
    if flt.types:
        where.append("type IN {types:Array(String)}")
        params["types"] = list(flt.types)
    if flt.user_id is not None:
        where.append("user_id = {user_id:String}")
        params["user_id"] = flt.user_id
    if flt.since is not None:
        where.append("occurred_at >= {since:DateTime64(3, 'UTC')}")
        params["since"] = flt.since
    if flt.until is not None:
        where.append("occurred_at < {until:DateTime64(3, 'UTC')}")
        params["until"] = flt.until
    if cursor:
        at, after_id = decode_cursor(cursor)
        where.append("(occurred_at, activity_id) < ({c_at:DateTime64(3, 'UTC')}, {c_id:UUID})")
        params["c_at"], params["c_id"] = at, after_id
    # A re-delivered activity is the same fact under the same id (rows are equal), so
    # duplicates are collapsed here, in time order, rather than by FINAL or LIMIT BY, which
    # would stop ClickHouse from reading the key in order and stopping early. A page short of
    # rows because of duplicates asks for more.
    sql = (
        f"SELECT {', '.join(LISTED_COLUMNS)} FROM {{db}}.{TABLES[table]} "  # noqa: S608 - fixed
        f"WHERE {' AND '.join(where)} "
        "ORDER BY occurred_at DESC, activity_id DESC LIMIT {limit:UInt32}"
    )
    fetch = (limit + 1) * 2
    while True:
        params["limit"] = fetch
        rows = (await store.query(sql, params)).result_rows
        if len({row[0] for row in rows}) > limit or len(rows) < fetch:
            break
        fetch *= 4
    seen: set[Any] = set()
    items: list[dict[str, Any]] = []
    for row in rows:
        if row[0] not in seen and len(items) <= limit:
            seen.add(row[0])
            items.append(_activity_item(dict(zip(LISTED_COLUMNS, row, strict=True))))
    next_cursor = None
    if len(items) > limit:
        items = items[:limit]
        last = items[-1]
        next_cursor = encode_cursor(
            datetime.fromisoformat(last["occurred_at"]), last["activity_id"]
        )
    return items, next_cursor


def _activity_item(row: dict[str, Any]) -> dict[str, Any]:
    occurred = row["occurred_at"]
    if occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)
    row["activity_id"] = str(row["activity_id"])
    row["occurred_at"] = occurred.astimezone(UTC).isoformat()
    row["details"] = orjson.loads(row["details"]) if row["details"] else {}
    for key in ("channel", "arm"):
        row[key] = row[key] or None
    return row
