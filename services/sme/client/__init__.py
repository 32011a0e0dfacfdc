"""A typed Python client of the SME HTTP API (httpx): `AsyncSmeClient`, its blocking twin
`SmeClient`, and the typed errors they raise (see `sme.client.errors`)."""

from sme.client.async_client import AsyncSmeClient
from sme.client.endpoints import ConfigPage, SqlAnswer
from sme.client.errors import (
    ApiError,
    ClientError,
    Conflict,
    GatewayUnreachable,
    InvalidRequest,
    NotFound,
    RateLimited,
    RetryableError,
    Unauthorized,
    Unavailable,
)
from sme.client.sync_client import SmeClient

__all__ = [
    "ApiError",
    "AsyncSmeClient",
    "ClientError",
    "ConfigPage",
    "Conflict",
    "GatewayUnreachable",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "RetryableError",
    "SmeClient",
    "SqlAnswer",
    "Unauthorized",
    "Unavailable",
]
