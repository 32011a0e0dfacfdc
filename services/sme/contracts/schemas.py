"""JSON Schemas of the wire contracts, generated from the pydantic models into `schemas/`, with
the gateway's OpenAPI and the topics' AsyncAPI documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sme.contracts.activities import Activity, ActivityBatch
from sme.contracts.commands import Command
from sme.contracts.config_records import SequenceRecord, WorkspaceRecord
from sme.contracts.dead_letters import DeadLetter
from sme.contracts.engine_inputs import EraseRequest, ForwardedEvent, TimerTick
from sme.contracts.enrollments import EnrollRequest
from sme.contracts.events import Event
from sme.contracts.sequences import SequenceConfig, WorkspaceSettings

CONTRACTS: dict[str, type[BaseModel]] = {
    "event": Event,
    "command": Command,
    "activity": Activity,
    "activity_batch": ActivityBatch,
    "dead_letter": DeadLetter,
    "sequence_config": SequenceConfig,
    "workspace_settings": WorkspaceSettings,
    "sequence_record": SequenceRecord,
    "workspace_record": WorkspaceRecord,
    "engine_input_event": ForwardedEvent,
    "engine_input_tick": TimerTick,
    "engine_input_erase": EraseRequest,
    "engine_input_enroll": EnrollRequest,
}


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, stable (sorted keys, trailing newline) so drift is a diff."""
    out: dict[str, str] = {}
    for name, model in CONTRACTS.items():
        schema: dict[str, Any] = model.model_json_schema(mode="serialization")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"sme/{name}",
            **schema,
        }
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def render_openapi() -> str:
    """The gateway's OpenAPI document (the HTTP contract), stable for drift checks."""
    from sme.gateway.app import create_app
    from sme.settings import Settings

    document = create_app(Settings()).openapi()
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    from sme.contracts.asyncapi import render_asyncapi

    documents = {"openapi.json": render_openapi(), "asyncapi.yaml": render_asyncapi()}
    for file_name, text in {**render_schemas(), **documents}.items():
        path = directory / file_name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
