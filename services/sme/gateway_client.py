"""The CLI's way to the gateway (`sme report`, `sme sql`): an `sme.client.SmeClient` at the
URL and key given on the command line or, by default, in the settings."""

from __future__ import annotations

from sme.client import SmeClient
from sme.errors import SmeError
from sme.settings import Settings


class GatewayError(SmeError):
    pass


def gateway_url(settings: Settings, override: str | None) -> str:
    base = (override or f"http://{settings.http_host}:{settings.http_port}").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise GatewayError(f"the gateway must be an http(s) URL, not {base!r}")
    return base


def connect(settings: Settings, override: str | None, key: str | None) -> SmeClient:
    """A client of the gateway; the key defaults to SME_ADMIN_API_KEY. Reports and queries
    may take long on a large store, hence the generous timeout."""
    token = key or (settings.admin_api_key.get_secret_value() if settings.admin_api_key else None)
    return SmeClient(gateway_url(settings, override), token, timeout=120)
