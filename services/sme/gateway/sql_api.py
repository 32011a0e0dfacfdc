"""Ad-hoc SQL for analysts when ClickHouse is embedded in the gateway (with a server they use
any ClickHouse client). Admin key only.

A sandbox, not a read-only connection: an attacker review showed that a read-only handle
alone still read and wrote host files (`file()`, `INTO OUTFILE`), sent requests (`url()`),
ran a first statement without limits and let `KILL QUERY` stop the sink's inserts. So every
query is first checked by `sme.storage.sql_sandbox` (one SELECT over the SME tables, allowed
functions only; what runs is regenerated from the checked tree) and then run by the engine
with readonly=1 and time, row, read and memory limits on a client of its own
(`ClickHouseStore.analyst_query`)."""

from __future__ import annotations

import math
import time
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from sme.gateway.auth import Principal
from sme.gateway.configs_api import principal
from sme.storage.sql_sandbox import SqlRefused

router = APIRouter()
MAX_ROWS = 10_000


class SqlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=100_000)
    max_rows: int = Field(1000, ge=1, le=MAX_ROWS)


@router.post("/api/v1/sql", tags=["analysis"])
async def run_sql(
    request: Request, body: SqlRequest, who: Annotated[Principal, Depends(principal)]
) -> dict[str, Any]:
    """Run one read-only query against the SME database (admin key; unqualified table names
    resolve to it). At most `max_rows` rows and 30 s."""
    # (This docstring is the OpenAPI description; schemas/openapi.json holds it verbatim.)
    # Anything outside the sandbox (other statements, other databases, table functions beyond
    # `numbers`, functions off the list, SETTINGS/FORMAT/INTO clauses) is 400 with a `detail`
    # naming it; a query that fails in ClickHouse (a timeout after SME_SQL_MAX_SECONDS too)
    # is 400 `query failed: ...`.
    if who.workspace_id is not None:
        raise HTTPException(404, "not found")  # workspace keys see no raw tables
    gw = request.app.state.gw
    started = time.perf_counter()
    try:
        result = await gw.store.analyst_query(
            body.query, body.max_rows, gw.settings.sql_max_seconds
        )
    except SqlRefused as refused:
        raise HTTPException(400, refused.reason) from refused
    except Exception as exc:
        raise HTTPException(400, f"query failed: {str(exc)[:2000]}") from exc
    rows = [[_plain(v) for v in row] for row in result.result_rows[: body.max_rows]]
    return {
        "columns": list(result.column_names),
        "rows": rows,
        "truncated": len(result.result_rows) > body.max_rows,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _plain(value: Any) -> Any:
    """A JSON-ready value, inside arrays, tuples and maps too; NaN and infinities (which JSON
    lacks) as the strings "NaN", "Infinity", "-Infinity" instead of a 500."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | bytes):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
