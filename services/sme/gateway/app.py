"""The gateway's HTTP surface (FastAPI) and its lifecycle: open the ClickHouse store, make
sure the topics exist, run the activity sink, serve health, metrics, the dashboard and API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sme.config_mirror import ConfigRegistry, TopicMirror
from sme.contracts.activities import ActivityType
from sme.gateway.auth import Authenticator
from sme.gateway.automation import AutomationMonitor
from sme.gateway.config_history import ConfigHistory
from sme.gateway.config_service import (
    ConfigConflictError,
    ConfigNotFoundError,
    ConfigService,
    InvalidConfigError,
)
from sme.gateway.configs_api import API, Caller
from sme.gateway.configs_api import router as configs_router
from sme.gateway.dashboard import STATIC, check_assets
from sme.gateway.dashboard import router as dashboard_router
from sme.gateway.metrics import GatewayMetrics
from sme.gateway.sink import ActivitySink
from sme.gateway.sql_api import router as sql_router
from sme.gateway.users_api import router as users_router
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.storage.queries import ActivityFilter, InvalidCursorError, list_activities
from sme.storage.rollup import Rollup
from sme.topics import ensure_topics

log = logging.getLogger(__name__)
MAX_PAGE = 1000
MAX_BODY = 1024 * 1024


@dataclass
class GatewayState:
    settings: Settings
    store: ClickHouseStore
    producer: AIOKafkaProducer
    sink: ActivitySink
    sink_task: asyncio.Task[None]
    metrics: GatewayMetrics
    configs: ConfigService
    config_mirror: TopicMirror
    config_task: asyncio.Task[None]
    history: ConfigHistory
    history_task: asyncio.Task[None]
    automation_task: asyncio.Task[None]
    rollup: Rollup
    rollup_task: asyncio.Task[None]


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> FastAPI:
    metrics = GatewayMetrics(registry or CollectorRegistry())
    authenticator = Authenticator(settings)  # refuses a non-loopback bind without keys

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await ClickHouseStore(
            settings.clickhouse_dsn.get_secret_value(), settings.clickhouse_database
        ).open_async()
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        try:
            await ensure_topics(settings)
            await producer.start()
            rollup = Rollup(store)
            sink = ActivitySink(settings, store, producer, metrics, rollup)
            rollup_task = asyncio.create_task(rollup.run(5.0), name="rollup")
            rollup_task.add_done_callback(_report_task_exit)
            task = asyncio.create_task(sink.run(), name="activity-sink")
            task.add_done_callback(_report_task_exit)
            registry = ConfigRegistry()
            history = ConfigHistory(store)
            registry.on_change(history.record)
            history_task = asyncio.create_task(history.run(), name="config-history")
            history_task.add_done_callback(_report_task_exit)
            mirror = TopicMirror(
                settings.kafka_bootstrap_servers, settings.topic_configs, registry.apply
            )
            mirror_task = asyncio.create_task(mirror.run(), name="config-mirror")
            mirror_task.add_done_callback(_report_task_exit)
            service = ConfigService(settings, registry, producer)
            monitor = AutomationMonitor(
                settings, store, service, producer, metrics.automation_warnings
            )
            automation_task = asyncio.create_task(monitor.run(), name="automation")
            automation_task.add_done_callback(_report_task_exit)
            app.state.gw = GatewayState(
                settings,
                store,
                producer,
                sink,
                task,
                metrics,
                service,
                mirror,
                mirror_task,
                history,
                history_task,
                automation_task,
                rollup,
                rollup_task,
            )
            yield
        finally:
            if hasattr(app.state, "gw"):
                gw = app.state.gw
                for background in (
                    gw.sink_task,
                    gw.config_task,
                    gw.history_task,
                    gw.automation_task,
                    gw.rollup_task,
                ):
                    background.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await background
            await producer.stop()
            await store.aclose()

    app = FastAPI(title="Sequential Messaging Engine", version="0.1.0", lifespan=lifespan)
    app.state.auth = authenticator
    app.include_router(configs_router)
    app.include_router(sql_router)
    app.include_router(users_router)
    app.include_router(dashboard_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    check_assets()

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return JSONResponse({"detail": f"request body over {MAX_BODY} bytes"}, 413)
        response: Response = await call_next(request)
        return response

    @app.exception_handler(InvalidConfigError)
    async def invalid(_: Request, exc: InvalidConfigError) -> JSONResponse:
        return JSONResponse({"detail": exc.errors}, 422)

    @app.exception_handler(ConfigConflictError)
    async def conflict(_: Request, exc: ConfigConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 409)

    @app.exception_handler(ConfigNotFoundError)
    async def not_found(_: Request, exc: ConfigNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": f"no configuration {exc}"}, 404)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        gw: GatewayState = request.app.state.gw
        checks = {
            "clickhouse": await gw.store.ping(),
            "kafka": gw.sink.started.is_set() and not gw.sink_task.done(),
            "configs": gw.config_mirror.caught_up.is_set() and not gw.config_task.done(),
        }
        return JSONResponse(
            {"ready": all(checks.values()), "checks": checks}, 200 if all(checks.values()) else 503
        )

    @app.get("/metrics", tags=["ops"])
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(f"{API}/{{config_id}}/activities", tags=["activities"])
    async def activities(
        request: Request,
        who: Caller,
        config_id: str,
        type: Annotated[list[ActivityType] | None, Query()] = None,
        user_id: str | None = None,
        from_: Annotated[datetime | date | None, Query(alias="from")] = None,
        to: datetime | date | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: str | None = None,
    ) -> dict[str, object]:
        if who.workspace_id is not None:
            request.app.state.gw.configs.get(config_id, who.workspace_id)  # 404 if foreign
        flt = ActivityFilter(
            config_id=config_id,
            types=tuple(t.value for t in type or ()),
            user_id=user_id,
            since=_utc(from_),
            until=_utc(to),
        )
        try:
            items, next_cursor = await list_activities(
                request.app.state.gw.store, flt, limit, cursor
            )
        except InvalidCursorError as exc:
            raise HTTPException(
                422, detail=[{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}]
            ) from exc
        return {"items": items, "next_cursor": next_cursor}

    return app


def _utc(moment: datetime | date | None) -> datetime | None:
    """ISO dates are UTC midnights; naive datetimes are read as UTC."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        return datetime.combine(moment, time.min, tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _report_task_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %r", task.get_name(), task.exception())
