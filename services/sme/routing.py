"""Which partition of the engine's inputs topic owns a user. The engine's intake and the
gateway's erase requests both address records with it, so a user's events, timers and erasure
meet their state on one partition whatever partitioner (or key) the upstream producer used."""

from __future__ import annotations

import hashlib

from sme.core.user_state import state_key


def owner_partition(workspace_id: str, user_id: str, partitions: int) -> int:
    """A stable hash of the workspace-scoped user key, modulo the partition count."""
    digest = hashlib.blake2b(state_key(workspace_id, user_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions
