"""Users' rights: erasure of one user's data, and its progress.

A user id may hold any character (events accept any non-blank id up to 256 characters). In
`DELETE …/users/{user_id}` the route takes the rest of the path: percent-encode the id as a
path segment (RFC 3986), dots included (`%2E`: clients drop `.` and `..` segments); `/` may be
sent as `%2F` or as is. `POST …/erasures {"user_id": …}` takes the id in a JSON body instead.
Erasure requests are rate-limited per workspace (429 with `Retry-After`), so one workspace's
burst cannot queue work that delays everyone's reports.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from sme.contracts.events import NOT_BLANK
from sme.gateway.auth import Principal
from sme.gateway.configs_api import Caller, _scope, _service, principal
from sme.gateway.rate_limit import RateLimiter, retry_after, shared_limiter
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
        pattern=NOT_BLANK,
        description="The user id, percent-encoded as a path segment (`/` may stay as is).",
    ),
]
ErasureId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f-]+$")]


class ErasureRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=256, pattern=NOT_BLANK)


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
    """Records accepted erasures in ClickHouse in the background, in groups (one insert per
    flush, however many requests arrived), so a request never waits for the ClickHouse writer
    and a burst costs a few inserts. Until flushed, an erasure's progress is answered from
    memory. The gateway's supervisor calls `flush` every `FLUSH_SECONDS` (and retries a failed
    one with backoff). Best effort: if ClickHouse is down the erasure still proceeds (it is on
    the broker), and after `GIVE_UP_AFTER` failed flushes in a row the pending requests are
    let go (memory stays bounded); their progress shows once the sink completes them."""

    FLUSH_SECONDS = 0.5
    GIVE_UP_AFTER = 5

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self.pending: dict[tuple[str, str], list[Any]] = {}  # (workspace, erasure id) -> row
        self._failures = 0

    def record(self, workspace_id: str, erasure_id: str, requested_at: datetime) -> None:
        self.pending[(workspace_id, erasure_id)] = erasure_row(
            workspace_id, erasure_id, ErasureState.REQUESTED, requested_at
        )

    def requested(self, workspace_id: str, erasure_id: str) -> dict[str, Any] | None:
        row = self.pending.get((workspace_id, erasure_id))
        if row is None:
            return None
        return {
            "erasure_id": erasure_id,
            "workspace_id": workspace_id,
            "state": "requested",
            "requested_at": row[3].isoformat(),
            "completed_at": None,
            "seconds": None,
            "rows_deleted": None,
        }

    async def flush(self) -> None:
        """Insert what is pending in one go; raises if ClickHouse refused it."""
        if not self.pending:
            return
        keys = list(self.pending)
        try:
            await record_erasures(self.store, [self.pending[k] for k in keys])
        except Exception:  # progress only; the erasure itself is queued
            self._failures += 1
            if self._failures >= self.GIVE_UP_AFTER:
                log.warning("could not record %d erasure requests; letting go", len(keys))
                self._drop(keys)
            raise
        self._drop(keys)

    def _drop(self, keys: list[tuple[str, str]]) -> None:
        self._failures = 0
        for key in keys:
            self.pending.pop(key, None)


def _limiter(request: Request) -> RateLimiter:
    settings = request.app.state.gw.settings
    rate, burst = settings.erasure_rate_per_second, settings.erasure_burst
    return shared_limiter(request.app.state, "erasure_limiter", rate, burst)


def _recorder(request: Request) -> ErasureRecorder:
    recorder: ErasureRecorder = request.app.state.gw.erasures  # flushed by a supervised worker
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
    return await _erase(request, who, workspace_id, user_id)


@router.post(
    "/api/v1/workspaces/{workspace_id}/erasures",
    status_code=202,
    tags=["users"],
    responses={429: {"description": "Too many erasure requests for this workspace."}},
)
async def request_erasure(
    request: Request, who: Caller, workspace_id: WorkspaceId, body: ErasureRequestBody
) -> ErasureAccepted:
    """The same erasure as `DELETE …/users/{user_id}`, with the user id in the body (any
    characters, no URL encoding)."""
    return await _erase(request, who, workspace_id, body.user_id)


async def _erase(
    request: Request, who: Principal, workspace_id: str, user_id: str
) -> ErasureAccepted:
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
    _recorder(request).record(workspace_id, erasure_id, requested_at)
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
    # Read memory before the store: a flush that lands while the store is queried drops the
    # pending entry, and its row may not have been visible to the query.
    pending = _recorder(request).requested(workspace_id, erasure_id)
    status = await erasure_status(request.app.state.gw.store, workspace_id, erasure_id)
    status = status or pending
    if status is None:
        raise HTTPException(404, "no such erasure")
    return ErasureProgress(**status)
