"""A tiny HTTP client of the gateway for the CLI (`sme report`, `sme sql`): stdlib only, so
the command works wherever the package is installed."""

from __future__ import annotations

import urllib.error
import urllib.request

from sme.errors import SmeError
from sme.settings import Settings


class GatewayError(SmeError):
    pass


def gateway_url(settings: Settings, override: str | None) -> str:
    base = (override or f"http://{settings.http_host}:{settings.http_port}").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise GatewayError(f"the gateway must be an http(s) URL, not {base!r}")
    return base


def call(
    settings: Settings, base: str, path: str, key: str | None, body: bytes | None = None
) -> bytes:
    """GET (or POST a JSON body) and return the response body; errors become GatewayError."""
    token = key or (settings.admin_api_key.get_secret_value() if settings.admin_api_key else "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=body, headers=headers)  # noqa: S310 - http(s) checked
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise GatewayError(f"{exc.code} {exc.read().decode(errors='replace')}") from exc
    except urllib.error.URLError as exc:
        raise GatewayError(f"the gateway at {base} did not answer: {exc.reason}") from exc
