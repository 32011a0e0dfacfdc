"""Ad-hoc SQL for analysts when ClickHouse is embedded in the gateway (with a server they use
any ClickHouse client). Admin key only; read-only; row and time limits."""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from sme.gateway.auth import Principal
from sme.gateway.configs_api import principal

router = APIRouter()
MAX_ROWS = 10_000
MAX_SECONDS = 30.0


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
    if who.workspace_id is not None:
        raise HTTPException(404, "not found")  # workspace keys see no raw tables
    started = time.perf_counter()
    try:
        result = await request.app.state.gw.store.analyst_query(
            body.query, body.max_rows, MAX_SECONDS
        )
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
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | bytes):
        return str(value)
    return value
