"""Deterministic ids (uuid5): replays and retries produce the same ids, so senders and the
ClickHouse sink can dedupe by construction."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f0c5e0a-3d2b-5c1e-9a57-5e9d2a1b7c40")


def stable_id(kind: str, *parts: str | int) -> str:
    """A uuid5 over the kind and parts. Each part is length-prefixed, so no choice of ids
    (whatever characters they hold) can make two different part lists collide."""
    material = "".join(f"{len(text)}:{text}" for text in (kind, *(str(p) for p in parts)))
    return str(uuid.uuid5(_NAMESPACE, material))
