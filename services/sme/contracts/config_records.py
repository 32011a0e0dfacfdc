"""Records on the compacted `sme.configs` topic. Key `sequence:<len(ws)>:<ws>/<id>` (the
workspace length-prefixed, so no workspace or id can forge another's key) or
`workspace:<id>`; the value is the latest full record (a null value deletes). Engine and
gateway both materialise every record, so a write is visible to all of them from the topic
alone. Older topics also hold `sequence:<id>` keys (before the workspace was part of the
key): readers still accept them, and the higher version wins whatever its key."""

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


def sequence_key(workspace_id: str, config_id: str) -> str:
    return f"sequence:{len(workspace_id)}:{workspace_id}/{config_id}"


def legacy_sequence_key(config_id: str) -> str:
    """The key sequence records had before it carried the workspace (read, never written)."""
    return f"sequence:{config_id}"


def record_key(record: SequenceRecord | WorkspaceRecord) -> str:
    if isinstance(record, SequenceRecord):
        return sequence_key(record.config.workspace_id, record.config.id)
    return f"workspace:{record.settings.workspace_id}"
