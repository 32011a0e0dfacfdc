"""The gateway served by uvicorn on a free port inside the test's event loop, so API tests
go through real HTTP against a gateway on the real broker and ClickHouse engine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn

from sme.gateway.app import create_app
from sme.settings import Settings
from tests.support.infra import free_port
from tests.support.waiting import eventually


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers
        ) as http:

            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout=60, what="gateway ready")
            http.gateway_app = app  # type: ignore[attr-defined]  # for tests that inspect its store
            yield http
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
