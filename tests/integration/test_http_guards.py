"""The gateway refuses what it cannot handle, before it costs anything, and answers with the
security headers on every response: a body over 1 MiB gets 413 whatever its transfer
encoding; dates, moments and cursors outside what ClickHouse stores get 422 naming the
parameter (never a 500); a 405 names every method of the path."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from sme.gateway.http_guards import MAX_BODY
from sme.settings import Settings
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
SEQUENCE: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Guarded",
    "entry": {"event_types": ["signed_up"]},
    "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
}
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
async def api(test_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(test_settings) as http:
        yield http


async def chunked_post(base_url: str, path: str, total: int) -> tuple[int, bytes, int]:
    """POST `total` bytes with `Transfer-Encoding: chunked` over a raw connection, stopping
    as soon as the server answers; returns (status, body, bytes sent by then)."""
    url = httpx.URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    chunk = b"[" + b"0," * (32 * 1024) + b"0]"  # JSON text, so only the size is wrong
    sent = 0

    async def upload() -> None:
        nonlocal sent
        while sent < total:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += len(chunk)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    uploading = asyncio.create_task(upload())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await asyncio.wait_for(reader.readexactly(length), 30)
        return status, body, sent
    finally:
        uploading.cancel()
        with_errors = await asyncio.gather(uploading, return_exceptions=True)
        assert all(
            isinstance(e, (asyncio.CancelledError, OSError)) or e is None for e in with_errors
        )
        writer.close()


async def test_a_chunked_body_over_the_limit_gets_413_before_it_is_read(
    api: httpx.AsyncClient,
) -> None:
    status, body, sent = await chunked_post(str(api.base_url), API, 50 * 1024 * 1024)
    assert status == 413
    assert orjson.loads(body) == {"detail": f"request body over {MAX_BODY} bytes"}
    assert sent < 20 * 1024 * 1024, "refused while the upload was still going, not after 50 MB"
    declared = await api.post(
        API, content=b"x" * (MAX_BODY + 1), headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert (await api.post(API, json=SEQUENCE)).status_code == 201, "a small body still works"


async def test_dates_and_moments_outside_clickhouse_ranges_get_422_on_the_parameter(
    api: httpx.AsyncClient,
) -> None:
    created = (await api.post(API, json=SEQUENCE)).json()
    url = f"{API}/{created['id']}"
    cases = [
        (f"{url}/report", {"from": "0999-01-01"}, "from"),
        (f"{url}/report", {"to": "0999-01-01"}, "to"),
        (f"{url}/report", {"from": "1969-12-31"}, "from"),
        (f"{url}/metrics", {"to": "2150-01-01"}, "to"),
        (f"{url}/dashboard", {"from": "2024-02-30"}, "from"),
        ("/api/v1/dashboard/overview", {"from": "0"}, "from"),
        (f"{url}/activities", {"from": "0999-01-01"}, "from"),
        (f"{url}/activities", {"to": "0999-01-01T00:00:00Z"}, "to"),
        (f"{url}/activities", {"from": "2024-01-01T10:00:00"}, "from"),  # no offset
        (f"{url}/activities", {"to": "0.5"}, "to"),
        (f"{url}/activities", {"from": "2024-01-01\x00"}, "from"),
        (f"{url}/activities", {"limit": str(10**30)}, "limit"),
    ]
    for path, params, name in cases:
        response = await api.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert [e["loc"] for e in response.json()["detail"]] == [["query", name]], params
    edge = await api.get(
        f"{url}/activities", params={"from": "1900-01-01T00:00:00+14:00", "to": "2299-12-31"}
    )
    assert edge.status_code == 200, edge.text
    report = await api.get(f"{url}/report", params={"from": "1970-01-01", "to": "2148-12-31"})
    assert report.status_code == 200, report.text


async def test_cursors_the_api_did_not_issue_get_422(api: httpx.AsyncClient) -> None:
    def cursor(raw: str) -> str:
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    for bad in (
        cursor(f"{'9' * 30}:{uuid.uuid4()}"),  # beyond any datetime
        cursor(f"-5000000000000:{uuid.uuid4()}"),  # 1811: before DateTime64's range
        cursor("12:not-a-uuid"),
        "%%%",
        "\u00e9\u0000",
    ):
        response = await api.get(f"{API}/any/activities", params={"cursor": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_405_lists_every_method_of_the_path(api: httpx.AsyncClient) -> None:
    one = await api.put(f"{API}/some-id")
    assert one.status_code == 405
    assert one.headers["allow"] == "DELETE, GET, PATCH"
    collection = await api.request("OPTIONS", API)
    assert (collection.status_code, collection.headers["allow"]) == (405, "GET, POST")
    settings = await api.delete("/api/v1/workspaces/acme/settings")
    assert settings.headers["allow"] == "GET, PUT"


async def test_every_response_carries_the_security_headers(api: httpx.AsyncClient) -> None:
    responses = {
        "dashboard": await api.get("/dashboard"),
        "sequence dashboard": await api.get("/dashboard/some-id"),
        "static": await api.get("/static/dashboard.js"),
        "vendor": await api.get("/static/vendor/chart.umd.min.js"),
        "api": await api.get(API, params={"workspace_id": "acme"}),
        "openapi": await api.get("/openapi.json"),
        "health": await api.get("/healthz"),
        "metrics": await api.get("/metrics"),
        "not found": await api.get("/nowhere"),
        "missing static": await api.get("/static/nothing.js"),
        "unknown config": await api.get(f"{API}/nope"),
        "invalid": await api.get(API),
        "too large": await api.post(API, content=b"x" * (MAX_BODY + 1)),
        "method": await api.put(API),
    }
    for what, response in responses.items():
        assert response.status_code < 500, what
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (what, name)
        csp = response.headers["content-security-policy"]
        for directive in (
            "default-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ):
            assert directive in csp, (what, directive)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what
    page = responses["dashboard"].text
    assert "<script>" not in page and " style=" not in page, "no inline code for the CSP"
    docs = await api.get("/docs")
    assert docs.status_code == 200
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert "'sha256-" in docs.headers["content-security-policy"], "its inline script, by hash"
