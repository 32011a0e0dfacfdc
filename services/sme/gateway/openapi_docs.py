"""The OpenAPI document says what the gateway really accepts and answers: typed request
bodies (the configuration routes validate a plain JSON object themselves, to keep one error
format, so their schemas are declared here from the contracts) and every error status a
route can return, each with the error body's schema. Routes declare what is theirs
(`x-sme-body`, `responses=`); what is common to every route is added here, in one place."""

from __future__ import annotations

import copy
from typing import Any
from zoneinfo import available_timezones

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict

from sme.contracts.preview import request_schemas
from sme.contracts.sequences import SequenceConfig, WorkspaceSettings

REF = "#/components/schemas/{model}"
# Server-set fields of a sequence (the create route refuses them; see config_service).
SEQUENCE_SERVER_FIELDS = ("id", "version", "created_at", "updated_at", "status_reason")
# Fields a merge patch merges into the current object rather than replacing.
MERGED_OBJECTS = ("entry", "exit", "adaptive", "guardrails", "experiment")
WORKSPACE_WRITABLE = ("default_timezone", "guardrails", "global_control", "test_users")


class ErrorMessage(BaseModel):
    """Every error other than a validation error: `{"detail": "..."}`."""

    model_config = ConfigDict(extra="allow")
    detail: str


class FieldError(BaseModel):
    """One invalid field: where (`["query", "from"]`, `["body", "steps", 0, "id"]`), why."""

    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str
    type: str


class FieldErrors(BaseModel):
    """422: every invalid field of the request."""

    model_config = ConfigDict(extra="allow")
    detail: list[FieldError]


def error(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"model": model, "description": description}


UNAVAILABLE = error(ErrorMessage, "the broker did not acknowledge the write; retry later")
CONFLICT = error(ErrorMessage, "stale version, or the configuration is STOPPED (final)")
NOT_FOUND = error(ErrorMessage, "unknown, or belongs to another workspace")

# Statuses of routes owned elsewhere, documented here so the document is complete.
EXTRA_RESPONSES: dict[tuple[str, str], dict[str, str]] = {
    ("post", "/api/v1/sql"): {"400": "the query failed or is not read-only"},
    ("delete", "/api/v1/workspaces/{workspace_id}/users/{user_id}"): {
        "429": "too many erasure requests for this workspace; retry after `Retry-After`",
        "503": "the broker did not acknowledge the request; retry later",
    },
}


def install(app: FastAPI) -> None:
    """Serve the completed document as `app.openapi()` (and `/openapi.json`)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorMessage, FieldError, FieldErrors):
        schemas.update(_component(model))
    schemas.update(body_schemas())
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            _complete(path, method, operation)
    return doc


def body_schemas() -> dict[str, Any]:
    """Request bodies of the configuration routes, from the contracts' JSON Schemas."""
    out: dict[str, Any] = {}
    sequence = _component(SequenceConfig)
    full = sequence.pop("SequenceConfig")
    out.update(sequence)
    create = copy.deepcopy(full)
    create["title"] = "SequenceConfigCreate"
    create["description"] = "A new sequence; the server assigns id, version and timestamps."
    for name in SEQUENCE_SERVER_FIELDS:
        create["properties"].pop(name, None)
    create["required"] = [r for r in create.get("required", []) if r in create["properties"]]
    create["additionalProperties"] = False
    out["SequenceConfigCreate"] = create

    patch: dict[str, Any] = {
        "title": "SequenceConfigPatch",
        "description": "A JSON merge patch (RFC 7386) of a sequence: a listed field replaces "
        "the current value, except objects (entry, exit, adaptive, guardrails, experiment), "
        "which merge; null removes an optional field. `version` (or If-Match) must be the "
        "current version. id, workspace_id and created_at cannot change.",
        "type": "object",
        "additionalProperties": False,
        "properties": {"version": {"type": "integer", "minimum": 1}},
    }
    required = set(full.get("required", []))
    for name, schema in create["properties"].items():
        if name == "workspace_id":
            continue
        value = {"type": "object"} if name in MERGED_OBJECTS else schema
        patch["properties"][name] = (
            value if name in required else {"anyOf": [value, {"type": "null"}]}
        )
    out["SequenceConfigPatch"] = patch

    workspace = _component(WorkspaceSettings)
    settings = workspace.pop("WorkspaceSettings")
    out.update(workspace)
    out["WorkspaceSettingsUpdate"] = {
        "title": "WorkspaceSettingsUpdate",
        "description": "Workspace guardrails and default time zone (the kill switch has its "
        "own route; workspace_id, version and updated_at are set by the server).",
        "type": "object",
        "additionalProperties": False,
        "properties": {k: settings["properties"][k] for k in WORKSPACE_WRITABLE},
    }
    zone = out["WorkspaceSettingsUpdate"]["properties"]["default_timezone"]
    zone["enum"] = sorted(available_timezones())
    out.update(request_schemas(REF))
    return out


def _component(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF, mode="validation")
    defs = schema.pop("$defs", {})
    return {**defs, model.__name__: schema}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _complete(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    body_model = operation.pop("x-sme-body", None)
    if body_model is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body_model)}},
        }
    if operation.get("parameters") or "requestBody" in operation:
        responses["422"] = _json("FieldErrors", "invalid fields, each with its location")
    if "requestBody" in operation:
        responses.setdefault("400", _json("ErrorMessage", "the body is not JSON text"))
        responses.setdefault("413", _json("ErrorMessage", "the body is over 1 MiB"))
    if path.startswith("/api/"):
        responses.setdefault(
            "401", _json("ErrorMessage", "missing or unknown API key (when keys are configured)")
        )
        if path != "/api/v1/dashboard/overview":
            responses.setdefault("404", _json("ErrorMessage", NOT_FOUND["description"]))
    for status, description in EXTRA_RESPONSES.get((method, path), {}).items():
        responses.setdefault(status, _json("ErrorMessage", description))
