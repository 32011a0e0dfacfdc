"""Deterministic ids (a keyed BLAKE2b hash in UUID form, version 8): replays and retries
produce the same ids, so senders and the ClickHouse sink can dedupe by construction."""

from __future__ import annotations

import hashlib

_NAMESPACE = b"sme:6f0c5e0a-3d2b-5c1e-9a57-5e9d2a1b7c40"
_KEYED = hashlib.blake2b(digest_size=16, key=_NAMESPACE[:64])
"""The keyed hash before any input: copying it skips the key setup of every id."""
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def stable_id(kind: str, *parts: str | int) -> str:
    """A 128-bit hash of the kind and parts. Each part is length-prefixed, so no choice of ids
    (whatever characters they hold) can make two different part lists collide."""
    material = "".join([f"{len(text)}:{text}" for text in (kind, *[str(p) for p in parts])])
    hasher = _KEYED.copy()
    hasher.update(material.encode())
    h = hasher.hexdigest()
    # UUID layout, version 8 ("custom", RFC 9562) and the RFC variant bits.
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def incarnation(*parts: str | int) -> str:
    """A short tag for a user state created by one input (its source position): part of every
    id of that state's enrollments, so a user erased and enrolled again never repeats the ids
    of their earlier life (which senders would drop as duplicates)."""
    return stable_id("incarnation", *parts).replace("-", "")[:12]
