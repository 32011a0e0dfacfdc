"""What each API call sends and how its answer is read, shared by the async and sync clients
so both speak the same API: the transport differs, the protocol does not."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import orjson

from sme.client.errors import api_error

T = TypeVar("T")
API = "/api/v1/035-sequential-messaging-engine"
RETRYABLE = frozenset({429, 503})


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the reader of its 2xx answer. `idempotent` calls may be repeated after
    a 429/503 that names a `Retry-After`: repeating them cannot do anything twice."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        content = None if self.body is None else orjson.dumps(self.body)
        headers = dict(self.headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        return http.build_request(
            self.method, self.path, params=self.params, content=content, headers=headers
        )


def segment(value: str) -> str:
    """A path segment, escaped so an id can never reach another route."""
    return quote(value, safe="")


def config_path(config_id: str, tail: str = "") -> str:
    return f"{API}/{segment(config_id)}{tail}"


def window(date_from: date | None, date_to: date | None, **more: str | None) -> dict[str, str]:
    params = {"from": date_from.isoformat() if date_from else None}
    params |= {"to": date_to.isoformat() if date_to else None, **more}
    return {k: v for k, v in params.items() if v is not None}


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds to wait per `Retry-After` (delta-seconds or an HTTP date), None without one."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def raise_for(response: httpx.Response) -> None:
    """A typed ApiError for any non-2xx answer."""
    if response.is_success:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    raise api_error(response.status_code, body, retry_after(response))


def retry_wait(
    response: httpx.Response, call: Call[Any], attempt: int, max_retries: int, max_wait: float
) -> float | None:
    """How long to wait before trying `call` again after `response`, or None: stop. Only an
    idempotent call, only on 429/503 with a `Retry-After` no longer than `max_wait`."""
    if not call.idempotent or response.status_code not in RETRYABLE or attempt >= max_retries:
        return None
    wait = retry_after(response)
    return wait if wait is not None and wait <= max_wait else None
