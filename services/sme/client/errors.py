"""The gateway's refusals as typed exceptions, so callers branch on the kind of failure
(a stale version, a missing sequence, a field the server refused) instead of on numbers."""

from __future__ import annotations

from typing import Any

from sme.errors import SmeError


class ClientError(SmeError):
    """Anything the client could not get an answer for."""


class GatewayUnreachable(ClientError):
    """No HTTP answer at all (connection refused, DNS, timeout)."""


class ApiError(ClientError):
    """The gateway answered with a non-2xx status. `errors` holds a 422's field-level errors
    (`loc`, `msg`, `type`), empty otherwise; `detail` the message of the other statuses."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None):
        self.status = status
        self.detail = detail
        self.errors = errors or []
        super().__init__(f"{status} {detail}")


class InvalidRequest(ApiError):
    """400/413/415/422: the request itself was refused; see `errors` for the fields."""


class Unauthorized(ApiError):
    """401/403: no key, a wrong key, or a key of another workspace."""


class NotFound(ApiError):
    """404: no such sequence, workspace or route (other workspaces' ids look absent too)."""


class Conflict(ApiError):
    """409: a stale version (reload and patch again) or a state that refuses the change."""


class RetryableError(ApiError):
    """429/503: try again later; `retry_after` is the server's advice in seconds, if any."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(status, detail, errors)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """429: too many requests for the workspace."""


class Unavailable(RetryableError):
    """503: a dependency (broker, store) is down for now."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
}


def api_error(status: int, body: Any, retry_after: float | None) -> ApiError:
    """The exception for a non-2xx answer whose JSON body (or text) is `body`."""
    detail: Any = body.get("detail", body) if isinstance(body, dict) else body
    errors: list[dict[str, Any]] = []
    if isinstance(detail, list):
        errors = [e for e in detail if isinstance(e, dict)]
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', '')}" for e in errors
        )
    text = str(detail)[:2000]
    if status == 429:
        return RateLimited(status, text, errors, retry_after)
    if status == 503:
        return Unavailable(status, text, errors, retry_after)
    return _BY_STATUS.get(status, ApiError)(status, text, errors)
