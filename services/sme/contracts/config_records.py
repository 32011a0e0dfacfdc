"""Records on the compacted `sme.configs` topic. Key `sequence:<id>` or `workspace:<id>`;
the value is the latest full record (a null value deletes). Engine and gateway both
materialise every record, so a write is visible to all of them from the topic alone."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sme.contracts.sequences import SequenceConfig, WorkspaceSettings


class SequenceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sequence"] = "sequence"
    config: SequenceConfig


class WorkspaceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["workspace"] = "workspace"
    settings: WorkspaceSettings


ConfigRecord = Annotated[SequenceRecord | WorkspaceRecord, Field(discriminator="kind")]


def record_key(record: SequenceRecord | WorkspaceRecord) -> str:
    if isinstance(record, SequenceRecord):
        return f"sequence:{record.config.id}"
    return f"workspace:{record.settings.workspace_id}"
