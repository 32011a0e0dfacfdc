"""Every route of the HTTP API as a `Call`: its method, path, parameters and typed answer."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from sme.client.calls import API, Call, config_path, segment, window
from sme.contracts.enrollments import EnrollmentAccepted
from sme.contracts.preview import PreviewRequest, PreviewResponse, SendTestRequest, SendTestResponse
from sme.contracts.sequences import KillSwitch, SequenceConfig, WorkspaceSettings

Json = dict[str, Any]
Granularity = Literal["day", "week"]
ReportFormat = Literal["csv", "json", "parquet"]


class ConfigPage(BaseModel):
    """One page of `GET …/035-sequential-messaging-engine`; pass `next_cursor` for the next."""

    model_config = ConfigDict(extra="forbid")
    items: list[SequenceConfig]
    next_cursor: str | None = None


class SqlAnswer(BaseModel):
    """`POST /api/v1/sql`: column names, rows of plain JSON values, whether rows were cut."""

    model_config = ConfigDict(extra="allow")
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


def _json(response: httpx.Response) -> Json:
    body = response.json()
    return body if isinstance(body, dict) else {"value": body}


def _config(response: httpx.Response) -> SequenceConfig:
    return SequenceConfig.model_validate_json(response.content)


def _workspace(response: httpx.Response) -> WorkspaceSettings:
    return WorkspaceSettings.model_validate_json(response.content)


def _none(response: httpx.Response) -> None:
    return None


def _bytes(response: httpx.Response) -> bytes:
    return response.content


def _dump(model: BaseModel) -> Json:
    return model.model_dump(mode="json", exclude_unset=True)


def list_configs(
    workspace_id: str, limit: int = 100, cursor: str | None = None
) -> Call[ConfigPage]:
    params = {"workspace_id": workspace_id, "limit": str(limit)}
    return Call(
        "GET",
        API,
        lambda r: ConfigPage.model_validate_json(r.content),
        params | ({"cursor": cursor} if cursor else {}),
    )


def create_config(document: Mapping[str, Any], dry_run: bool = False) -> Call[SequenceConfig]:
    """Not idempotent: a repeat would create a second sequence, so it is never retried. A dry
    run validates exactly as the create would and writes nothing (safe to repeat)."""
    params = {"dry_run": "true"} if dry_run else {}
    return Call("POST", API, _config, body=dict(document), params=params, idempotent=dry_run)


def get_config(config_id: str) -> Call[SequenceConfig]:
    return Call("GET", config_path(config_id), _config)


def patch_config(
    config_id: str,
    changes: Mapping[str, Any],
    if_version: int | None = None,
    dry_run: bool = False,
) -> Call[SequenceConfig]:
    """A JSON merge patch; with `if_version` the server refuses (Conflict) a newer config. A
    dry run answers the configuration the patch would make and writes nothing."""
    headers = {} if if_version is None else {"If-Match": f'"{if_version}"'}
    return Call(
        "PATCH",
        config_path(config_id),
        _config,
        body=dict(changes),
        headers=headers,
        params={"dry_run": "true"} if dry_run else {},
        idempotent=dry_run,
    )


def delete_config(config_id: str) -> Call[None]:
    return Call("DELETE", config_path(config_id), _none)


def config_versions(config_id: str) -> Call[list[Json]]:
    return Call("GET", config_path(config_id, "/versions"), lambda r: list(r.json()["items"]))


def activities(
    config_id: str,
    *,
    activity_type: str | None = None,
    user_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Json]:
    params = {
        "type": activity_type,
        "user_id": user_id,
        "from": since,
        "to": until,
        "limit": None if limit is None else str(limit),
        "cursor": cursor,
    }
    return Call(
        "GET",
        config_path(config_id, "/activities"),
        _json,
        {k: v for k, v in params.items() if v is not None},
    )


def metrics(
    config_id: str,
    date_from: date | None = None,
    date_to: date | None = None,
    granularity: Granularity = "day",
) -> Call[Json]:
    params = window(date_from, date_to, granularity=granularity)
    return Call("GET", config_path(config_id, "/metrics"), _json, params)


def dashboard(
    config_id: str,
    date_from: date | None = None,
    date_to: date | None = None,
    granularity: Granularity = "day",
) -> Call[Json]:
    params = window(date_from, date_to, granularity=granularity)
    return Call("GET", config_path(config_id, "/dashboard"), _json, params)


def report(
    config_id: str,
    report_format: ReportFormat = "csv",
    date_from: date | None = None,
    date_to: date | None = None,
) -> Call[bytes]:
    """The report file's bytes (CSV, JSON or Parquet), as the server wrote them."""
    params = window(date_from, date_to, format=report_format)
    return Call("GET", config_path(config_id, "/report"), _bytes, params)


def overview(date_from: date | None = None, date_to: date | None = None) -> Call[Json]:
    return Call("GET", "/api/v1/dashboard/overview", _json, window(date_from, date_to))


def preview(config_id: str | None, request: PreviewRequest) -> Call[PreviewResponse]:
    """A stored sequence's preview, or a draft's (`config_id` None, `request.config` set).
    It changes nothing, so it may be repeated."""
    path = f"{API}/preview" if config_id is None else config_path(config_id, "/preview")
    return Call(
        "POST", path, lambda r: PreviewResponse.model_validate_json(r.content), body=_dump(request)
    )


def test_send(config_id: str, request: SendTestRequest) -> Call[SendTestResponse]:
    """Sends a real message to a test user: never repeated by the client."""
    return Call(
        "POST",
        config_path(config_id, "/test-send"),
        lambda r: SendTestResponse.model_validate_json(r.content),
        body=_dump(request),
        idempotent=False,
    )


def enroll(config_id: str, batch_id: str, user_ids: list[str]) -> Call[EnrollmentAccepted]:
    """Idempotent by `batch_id`: the server enrolls nobody twice for a repeated batch."""
    return Call(
        "POST",
        config_path(config_id, "/enrollments"),
        lambda r: EnrollmentAccepted.model_validate_json(r.content),
        body={"batch_id": batch_id, "user_ids": user_ids},
    )


def sql(query: str, max_rows: int = 1000) -> Call[SqlAnswer]:
    """Read-only by construction on the server, so it may be repeated."""
    return Call(
        "POST",
        "/api/v1/sql",
        lambda r: SqlAnswer.model_validate_json(r.content),
        body={"query": query, "max_rows": max_rows},
    )


def get_workspace(workspace_id: str) -> Call[WorkspaceSettings]:
    return Call("GET", f"/api/v1/workspaces/{segment(workspace_id)}/settings", _workspace)


def put_workspace(workspace_id: str, settings: Mapping[str, Any]) -> Call[WorkspaceSettings]:
    path = f"/api/v1/workspaces/{segment(workspace_id)}/settings"
    return Call("PUT", path, _workspace, body=dict(settings))


def kill_switch(workspace_id: str, engaged: bool) -> Call[KillSwitch]:
    return Call(
        "PUT",
        f"/api/v1/workspaces/{segment(workspace_id)}/kill-switch",
        lambda r: KillSwitch.model_validate_json(r.content),
        body={"engaged": engaged},
    )


def erase_user(workspace_id: str, user_id: str) -> Call[Json]:
    """202 with the erasure's id and status URL; erasing again erases nothing more."""
    path = f"/api/v1/workspaces/{segment(workspace_id)}/users/{segment(user_id)}"
    return Call("DELETE", path, _json)


def erasure(workspace_id: str, erasure_id: str) -> Call[Json]:
    path = f"/api/v1/workspaces/{segment(workspace_id)}/erasures/{segment(erasure_id)}"
    return Call("GET", path, _json)


def ready() -> Call[bool]:
    return Call("GET", "/readyz", lambda r: True)
