"""Users' rights: erasure of one user's data, and its progress."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from sme.gateway.configs_api import Caller, _scope, _service, principal

router = APIRouter(dependencies=[Depends(principal)])


@router.delete("/api/v1/workspaces/{workspace_id}/users/{user_id}", status_code=202, tags=["users"])
async def erase_user(
    request: Request, who: Caller, workspace_id: str, user_id: str
) -> dict[str, str]:
    """Erase a user: the engine drops their state, then the sink deletes their rows from
    ClickHouse; recorded as a `user_erased` activity without the user's id. 202: the
    request is durably queued (acknowledged by the broker) and completes within seconds."""
    _scope(who, workspace_id)
    erasure_id = await _service(request).erase_user(workspace_id, user_id)
    return {"erasure_id": erasure_id}
