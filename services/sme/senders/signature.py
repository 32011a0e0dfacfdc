"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", so a receiver can check both
that the body came from us and that it is fresh (a replayed old request fails the age check)."""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-SME-Timestamp"
SIGNATURE_HEADER = "X-SME-Signature"
COMMAND_ID_HEADER = "X-SME-Command-Id"
VERSION = "v1"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-SME-Signature` value: `v1=<hex HMAC-SHA256 of b"<timestamp>." + body>`."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"{VERSION}={mac.hexdigest()}"


def verify(
    secret: bytes, timestamp: str, body: bytes, signature: str, now: int, tolerance_s: int = 300
) -> bool:
    """True when `signature` is ours for this body and timestamp, and the timestamp is within
    `tolerance_s` of `now` (compared in constant time)."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)
