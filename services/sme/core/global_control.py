"""The workspace's global control group: a sticky share of users that no sequence messages,
so the whole program's effect can be measured against them.

Membership is a hash of (workspace, salt, user) under its own kind, independent of every
per-sequence draw (`arms.bucket`, `splits.unit` for paths and variants): the per-sequence
experiments split the treated users as before. The threshold is `pct / 100`, so raising the
share only adds users and lowering it only releases some. It is decided at enrollment and
kept as the enrollment's arm of record (`Arm.GLOBAL_CONTROL`): the user walks the steps like a
holdout (`Reason.GLOBAL_CONTROL` suppressions) and their conversions are recorded in that arm,
outside every per-sequence arm comparison."""

from __future__ import annotations

from sme.contracts.commands import Arm
from sme.contracts.sequences import GlobalControl, SequenceConfig, WorkspaceSettings
from sme.core.arms import arm_of_record
from sme.core.splits import unit

KIND = "global_control"


def in_global_control(control: GlobalControl, workspace_id: str, user_id: str) -> bool:
    """Whether the user is held out of every sequence of the workspace (sticky by hash)."""
    if control.pct <= 0:
        return False
    return unit(KIND, workspace_id, control.salt, user_id) < control.pct / 100


def enrollment_arm(
    workspace: WorkspaceSettings | None, config: SequenceConfig, user_id: str, exposed: Arm | None
) -> Arm:
    """The arm a new enrollment gets: the global control when the user is in it now, else the
    sequence's arm of record (a user released from the control gets the sequence's split, not
    the control arm of their earlier exposure)."""
    if workspace is not None and in_global_control(
        workspace.global_control, config.workspace_id, user_id
    ):
        return Arm.GLOBAL_CONTROL
    if exposed is Arm.GLOBAL_CONTROL:
        exposed = None
    return arm_of_record(config.id, user_id, config.experiment, exposed)
