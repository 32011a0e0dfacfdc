"""Users' rights: erasure of one user's data, and its progress.

A user id may hold any character (events accept any non-blank id up to 256 characters): the
route takes the rest of the path, so percent-encode the id as a path segment (RFC 3986; `/`
may be sent as `%2F` or as is). Erasure requests are rate-limited per workspace (429 with
`Retry-After`), so one workspace's burst cannot queue work that delays everyone's reports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel

from sme.gateway.configs_api import Caller, _scope, _service, principal
from sme.gateway.rate_limit import RateLimiter, retry_after
from sme.storage.clickhouse import ClickHouseStore
from sme.storage.erasures import ErasureState, erasure_row, erasure_status, record_erasures

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(principal)])
WorkspaceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.\-]*$")]
UserId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=256,
        pattern=r"\S",
        description="The user id, percent-encoded as a path segment (`/` may stay as is).",
    ),
]
ErasureId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f-]+$")]


class ErasureAccepted(BaseModel):
    erasure_id: str
    status_url: str


class ErasureProgress(BaseModel):
    erasure_id: str
    workspace_id: str
    state: str
    requested_at: str
    completed_at: str | None
    seconds: float | None
    rows_deleted: int | None


class ErasureRecorder:
    """Records accepted erasures in ClickHouse in groups: requests arriving while one insert
    is under way wait for the next, so a burst of requests costs a few inserts, not one each.
    Best effort: if ClickHouse is down the erasure still proceeds (it is on the broker), and
    its progress shows once the sink completes it."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self._pending: list[list[Any]] = []
        self._flushed: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()

    async def record(self, row: list[Any]) -> None:
        self._pending.append(row)
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
        flushed = self._flushed
        async with self._lock:
            if not flushed.done():
                rows, self._pending, self._flushed = self._pending, [], None
                try:
                    await record_erasures(self.store, rows)
                except Exception as exc:  # progress only; the erasure itself is queued
                    log.warning("could not record %d erasure requests: %s", len(rows), exc)
                flushed.set_result(None)
        await flushed


def _limiter(request: Request) -> RateLimiter:
    state = request.app.state
    limiter: RateLimiter | None = getattr(state, "erasure_limiter", None)
    if limiter is None:
        settings = state.gw.settings
        limiter = RateLimiter(settings.erasure_rate_per_second, settings.erasure_burst)
        state.erasure_limiter = limiter
    return limiter


def _recorder(request: Request) -> ErasureRecorder:
    state = request.app.state
    recorder: ErasureRecorder | None = getattr(state, "erasure_recorder", None)
    if recorder is None:
        recorder = state.erasure_recorder = ErasureRecorder(state.gw.store)
    return recorder


@router.delete(
    "/api/v1/workspaces/{workspace_id}/users/{user_id:path}",
    status_code=202,
    tags=["users"],
    responses={429: {"description": "Too many erasure requests for this workspace."}},
)
async def erase_user(
    request: Request, who: Caller, workspace_id: WorkspaceId, user_id: UserId
) -> ErasureAccepted:
    """Erase a user: the engine drops their state, then the sink deletes their rows from every
    ClickHouse table and recomputes the rollup days they were counted in; recorded as a
    `user_erased` activity without the user's id. 202: the request is durably queued
    (acknowledged by the broker); follow `status_url` for its progress."""
    _scope(who, workspace_id)
    wait = _limiter(request).take(workspace_id, time.monotonic())
    if wait:
        request.app.state.gw.metrics.erasures_refused.inc()
        raise HTTPException(
            429,
            "too many erasure requests for this workspace; retry later",
            headers={"Retry-After": retry_after(wait)},
        )
    requested_at = datetime.now(UTC)
    erasure_id = await _service(request).erase_user(workspace_id, user_id, requested_at)
    request.app.state.gw.metrics.erasures_requested.inc()
    await _recorder(request).record(
        erasure_row(workspace_id, erasure_id, ErasureState.REQUESTED, requested_at)
    )
    return ErasureAccepted(
        erasure_id=erasure_id,
        status_url=f"/api/v1/workspaces/{workspace_id}/erasures/{erasure_id}",
    )


@router.get("/api/v1/workspaces/{workspace_id}/erasures/{erasure_id}", tags=["users"])
async def erasure_progress(
    request: Request, who: Caller, workspace_id: WorkspaceId, erasure_id: ErasureId
) -> ErasureProgress:
    """An erasure's progress: `requested` (queued; the engine and sink are on it) or
    `completed` (every row deleted and the rollups recomputed), with its timing."""
    _scope(who, workspace_id)
    status = await erasure_status(request.app.state.gw.store, workspace_id, erasure_id)
    if status is None:
        raise HTTPException(404, "no such erasure")
    return ErasureProgress(**status)
