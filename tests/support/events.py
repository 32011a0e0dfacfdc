"""Engagement events as upstream apps publish them: (key, value) pairs for `publish`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson


def event(event_id: str, user: str, kind: str, **extra: Any) -> tuple[bytes, bytes]:
    """An event of workspace `acme` for `user`, occurring now; `extra` adds or overrides fields."""
    body = {
        "event_id": event_id,
        "workspace_id": "acme",
        "user_id": user,
        "type": kind,
        "occurred_at": datetime.now().astimezone().isoformat(),
        **extra,
    }
    return user.encode(), orjson.dumps(body)
