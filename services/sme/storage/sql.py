"""SQL hygiene: values are always bound parameters; the only identifier ever pasted into SQL
is the database name, and only after it passed this check."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def checked_identifier(name: str) -> str:
    """Return `name` if it is a plain identifier; raise ValueError otherwise."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return name
