"""The spec's configuration endpoints, workspace settings and the kill switch."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from sme.contracts.sequences import SequenceConfig, WorkspaceSettings
from sme.core.roi import Economics
from sme.gateway.auth import Principal
from sme.gateway.config_service import (
    ConfigNotFoundError,
    ConfigService,
    InvalidConfigError,
    field_errors,
    merge_patch,
)
from sme.gateway.openapi_docs import CONFLICT, SEQUENCE_SERVER_FIELDS, UNAVAILABLE
from sme.gateway.params import Day
from sme.storage.metrics import (
    FORMATS,
    default_window,
    report_file,
    report_json,
    report_params,
    sequence_metrics,
)

API = "/api/v1/035-sequential-messaging-engine"
MAX_LIST = 1000


def principal(request: Request) -> Principal:
    """The caller (401 without a valid key when keys are configured)."""
    who: Principal = request.app.state.auth.principal(request)
    request.state.key_id = who.key_id
    return who


Caller = Annotated[Principal, Depends(principal)]
FromDate = Annotated[Day | None, Query(alias="from", description="UTC date, inclusive")]
ToDate = Annotated[Day | None, Query(description="UTC date, exclusive")]
WRITE: dict[int | str, dict[str, Any]] = {503: UNAVAILABLE}
DryRun = Annotated[
    bool,
    Query(
        description="Validate only: the same checks as the write, answered the same way (422 "
        "with field paths, 409 for a stale version), but nothing is stored, published or "
        "logged; 200 with the configuration as it would be written.",
    ),
]
VALIDATED: dict[str, Any] = {
    "description": "dry_run: valid; nothing was written (the body is the configuration as it "
    "would be, its id a placeholder)",
    "content": {"application/json": {"schema": {"type": "object"}}},
}
router = APIRouter(dependencies=[Depends(principal)])


class KillSwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    engaged: StrictBool


def _strictly_typed(model: type[BaseModel], document: dict[str, Any]) -> None:
    """JSON types as documented: a boolean is not a number, a number not a string (the
    contracts' own validation is lax, which suits messages but not a documented API)."""
    try:
        model.model_validate_json(orjson.dumps(document), strict=True)
    except ValidationError as exc:
        raise InvalidConfigError(field_errors(exc)) from exc
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise InvalidConfigError(
            [{"loc": ["body"], "msg": f"not representable: {exc}", "type": "value_error"}]
        ) from exc


def _refuse_server_fields(body: dict[str, Any], fields: tuple[str, ...]) -> None:
    """A field the server sets is refused rather than silently overwritten."""
    supplied = [f for f in fields if f in body]
    if supplied:
        raise InvalidConfigError(
            [
                {"loc": ["body", f], "msg": "set by the server", "type": "server_field"}
                for f in supplied
            ]
        )


def _service(request: Request) -> ConfigService:
    service: ConfigService = request.app.state.gw.configs
    return service


def _scope(who: Principal, workspace_id: str) -> None:
    """Another workspace looks exactly like a missing one (no existence leak)."""
    if not who.may_see(workspace_id):
        raise ConfigNotFoundError(workspace_id)


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    token = value.strip().removeprefix("W/").strip('"')
    if not token.isdigit():
        raise HTTPException(
            422,
            [
                {
                    "loc": ["header", "If-Match"],
                    "msg": "must be a version number",
                    "type": "value_error",
                }
            ],
        )
    return int(token)


@router.post(
    API,
    status_code=201,
    tags=["configurations"],
    responses={200: VALIDATED, **WRITE},
    openapi_extra={"x-sme-body": "SequenceConfigCreate"},
)
async def create_config(
    request: Request,
    who: Caller,
    body: Annotated[dict[str, Any], Body()],
    response: Response,
    dry_run: DryRun = False,
) -> dict[str, Any]:
    """Create and activate a sequence (201; the body has the server-assigned id and version).
    `dry_run=true` validates it exactly as a create would and writes nothing (200)."""
    _scope(who, str(body.get("workspace_id", "")))
    if not set(body) & set(SEQUENCE_SERVER_FIELDS):
        now = datetime.now(UTC).isoformat()
        server = {"id": "new", "version": 1, "created_at": now, "updated_at": now}
        _strictly_typed(SequenceConfig, {**body, **server})
    config = await _service(request).create(body, who.key_id, dry_run=dry_run)
    if dry_run:
        response.status_code = 200
    return config.model_dump(mode="json")


@router.get(API, tags=["configurations"])
async def list_configs(
    request: Request,
    who: Caller,
    workspace_id: str,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    _scope(who, workspace_id)
    items, next_cursor = _service(request).list_configs(workspace_id, limit, cursor)
    return {"items": [c.model_dump(mode="json") for c in items], "next_cursor": next_cursor}


@router.get(f"{API}/{{config_id}}", tags=["configurations"])
async def get_config(
    request: Request, who: Caller, config_id: str, response: Response
) -> dict[str, Any]:
    config = _service(request).get(config_id, who.workspace_id)
    response.headers["ETag"] = f'"{config.version}"'
    return config.model_dump(mode="json")


@router.patch(
    f"{API}/{{config_id}}",
    tags=["configurations"],
    responses={409: CONFLICT, **WRITE},
    openapi_extra={"x-sme-body": "SequenceConfigPatch"},
)
async def patch_config(
    request: Request,
    who: Caller,
    config_id: str,
    body: Annotated[dict[str, Any], Body()],
    response: Response,
    if_match: Annotated[
        str | None,
        Header(
            pattern=r'^(W/)?"?[0-9]{1,18}"?$',
            description='the current version, e.g. "3" (as in `ETag`)',
        ),
    ] = None,
    dry_run: DryRun = False,
) -> dict[str, Any]:
    """JSON merge patch; bumps the version. `If-Match` (or body `version`) must name the
    current version (409 otherwise). Status changes pause, resume and stop. `dry_run=true`
    runs every check of the write (version included) and writes nothing."""
    _refuse_server_fields(body, ("updated_at",))
    version = body.get("version")
    if "version" in body and (type(version) is not int or version < 1):
        raise InvalidConfigError(
            [{"loc": ["body", "version"], "msg": "must be a version number", "type": "int_type"}]
        )
    current = _service(request).get(config_id, who.workspace_id)
    changes = {k: v for k, v in body.items() if k != "version"}
    if not set(changes) & {"id", "workspace_id", "created_at", "status_reason"}:
        _strictly_typed(SequenceConfig, merge_patch(current.model_dump(mode="json"), changes))
    config = await _service(request).patch(
        config_id, body, _if_match(if_match), who.key_id, who.workspace_id, dry_run=dry_run
    )
    if not dry_run:
        response.headers["ETag"] = f'"{config.version}"'
    return config.model_dump(mode="json")


@router.get(f"{API}/{{config_id}}/versions", tags=["configurations"])
async def config_versions(request: Request, who: Caller, config_id: str) -> dict[str, Any]:
    """Every published version, oldest first (from the ClickHouse configs mirror)."""
    _service(request).get(config_id, who.workspace_id)  # 404 for unknown or foreign ids
    items = await request.app.state.gw.history.versions(config_id)
    for item in items:
        item["config"] = orjson.loads(item["config"])
    return {"items": items}


def report_window(from_: date | None, to: date | None) -> tuple[date, date]:
    """A report window: `from` inclusive, `to` exclusive; defaults to the last 30 days."""
    start, end = default_window(datetime.now(UTC).date())
    start, end = from_ or start, to or end
    if end <= start:
        raise HTTPException(
            422, [{"loc": ["query", "to"], "msg": "must be after from", "type": "value_error"}]
        )
    return start, end


@router.get(f"{API}/{{config_id}}/metrics", tags=["reporting"])
async def config_metrics(
    request: Request,
    who: Caller,
    config_id: str,
    from_: FromDate = None,
    to: ToDate = None,
    granularity: Literal["day", "week"] = "day",
) -> dict[str, Any]:
    """Per arm (adaptive / baseline / holdout), per channel and per day or week: enrolled,
    sent, delivered, opened, clicked, conversions, revenue, unsubscribed, bounced, suppressed
    (and by reason), cost, rates and cost per conversion; per arm also `net_value` (value of
    conversions - cost - unsubscribed x unsubscribe_cost, at the sequence's current
    `adaptive` economics; the value is the recorded revenue when the goal has a
    value_property, else conversions x conversion_value) and `net_value_per_enrolled`; the
    lift of adaptive vs baseline and vs holdout with 95% CIs; incremental conversions,
    revenue and ROI over the holdout; the workspace's event error rate."""
    config = _service(request).get(config_id, who.workspace_id)
    start, end = report_window(from_, to)
    await request.app.state.gw.rollup.refresh()
    store = request.app.state.gw.store
    return await sequence_metrics(
        store,
        config.workspace_id,
        config_id,
        start,
        end,
        granularity,
        Economics.of(config),
        [step.id for step in config.steps],
    )


REPORT_CONTENT = {
    "application/json": {"schema": {"type": "object"}},
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
}


@router.get(
    f"{API}/{{config_id}}/report",
    tags=["reporting"],
    response_class=Response,
    responses={
        200: {"description": "the report, in the requested format", "content": REPORT_CONTENT}
    },
)
async def config_report(
    request: Request,
    who: Caller,
    config_id: str,
    format: Literal["csv", "json", "parquet"] = "json",
    from_: FromDate = None,
    to: ToDate = None,
) -> Response:
    """Daily metrics per arm and channel plus the lift summary. JSON carries both; CSV and
    Parquet carry the daily rows, and the lift summary in the `SME-Lift` header (JSON)."""
    config = _service(request).get(config_id, who.workspace_id)
    start, end = report_window(from_, to)
    await request.app.state.gw.rollup.refresh()
    store = request.app.state.gw.store
    summary = await sequence_metrics(
        store, config.workspace_id, config_id, start, end, "day", Economics.of(config)
    )
    params = report_params(config.workspace_id, config_id, start, end)
    if format == "json":
        rows = await report_json(store, params)
        body = {
            "config_id": config_id,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "rows": rows,
            "arms": summary["arms"],
            "channels": summary["channels"],
            "lift": summary["lift"],
            "incremental": summary["incremental"],
        }
        return Response(orjson.dumps(body), media_type="application/json")
    content = await report_file(store, params, format)
    name = f"sme-{config_id}-{start.isoformat()}-{end.isoformat()}.{format}"
    return Response(
        content,
        media_type=FORMATS[format][1],
        headers={
            "SME-Lift": orjson.dumps(summary["lift"]).decode(),
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


@router.delete(f"{API}/{{config_id}}", status_code=204, tags=["configurations"], responses=WRITE)
async def delete_config(request: Request, who: Caller, config_id: str) -> Response:
    """Deactivate: the sequence becomes STOPPED (final) and stays for reporting."""
    await _service(request).stop(config_id, who.key_id, who.workspace_id)
    return Response(status_code=204)


@router.get("/api/v1/workspaces/{workspace_id}/settings", tags=["workspaces"])
async def get_workspace(request: Request, who: Caller, workspace_id: str) -> dict[str, Any]:
    _scope(who, workspace_id)
    return _service(request).workspace(workspace_id).model_dump(mode="json")


@router.put(
    "/api/v1/workspaces/{workspace_id}/settings",
    tags=["workspaces"],
    responses=WRITE,
    openapi_extra={"x-sme-body": "WorkspaceSettingsUpdate"},
)
async def put_workspace(
    request: Request, who: Caller, workspace_id: str, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """Workspace-wide guardrails, default time zone; every sequence must satisfy them too."""
    _scope(who, workspace_id)
    _refuse_server_fields(body, ("workspace_id", "version", "updated_at"))
    if "kill_switch" not in body:
        _strictly_typed(WorkspaceSettings, {**body, "workspace_id": workspace_id})
    settings = await _service(request).put_workspace(workspace_id, body, who.key_id)
    return settings.model_dump(mode="json")


@router.put("/api/v1/workspaces/{workspace_id}/kill-switch", tags=["workspaces"], responses=WRITE)
async def kill_switch(
    request: Request, who: Caller, workspace_id: str, body: KillSwitchBody
) -> dict[str, Any]:
    """Engaged: every ACTIVE sequence of the workspace is paused at once; released: exactly
    those are resumed."""
    _scope(who, workspace_id)
    settings = await _service(request).kill_switch(workspace_id, body.engaged, who.key_id)
    return settings.kill_switch.model_dump(mode="json")
