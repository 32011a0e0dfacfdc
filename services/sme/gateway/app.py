"""The gateway's HTTP surface (FastAPI) and its lifecycle: open the ClickHouse store, make
sure the topics exist, run the activity sink, serve health, metrics, the dashboard and API."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp

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
from sme.gateway.enrollments_api import WIDER_BODIES
from sme.gateway.enrollments_api import router as enrollments_router
from sme.gateway.http_guards import (
    CSP,
    MAX_BODY,
    BodyLimit,
    ResponseGuards,
    inline_script_hashes,
)
from sme.gateway.ingest_api import WriteKeys
from sme.gateway.ingest_api import router as ingest_router
from sme.gateway.metrics import GatewayMetrics
from sme.gateway.openapi_docs import install as install_openapi
from sme.gateway.params import MOMENT_MAX, MOMENT_MIN, Moment
from sme.gateway.preview_api import router as preview_router
from sme.gateway.sink import ActivitySink
from sme.gateway.sql_api import router as sql_router
from sme.gateway.tracking_api import router as tracking_router
from sme.gateway.users_api import ErasureRecorder
from sme.gateway.users_api import router as users_router
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.storage.queries import (
    ActivityFilter,
    InvalidCursorError,
    decode_cursor,
    list_activities,
)
from sme.storage.rollup import REFRESH_SECONDS, Rollup
from sme.supervisor import Supervisor
from sme.topics import ensure_topics

log = logging.getLogger(__name__)
MAX_PAGE = 1000
__all__ = ["MAX_BODY", "GatewayApp", "create_app"]


class GatewayApp(FastAPI):
    """FastAPI with the HTTP guards outermost: their headers are on every response, 500s
    included, and the body limit counts every byte any route or middleware reads."""

    def build_middleware_stack(self) -> ASGIApp:
        return ResponseGuards(
            BodyLimit(super().build_middleware_stack(), MAX_BODY, WIDER_BODIES),
            lambda: self.router.routes,
        )


@dataclass
class GatewayState:
    settings: Settings
    store: ClickHouseStore
    producer: AIOKafkaProducer
    sink: ActivitySink
    metrics: GatewayMetrics
    configs: ConfigService
    config_mirror: TopicMirror
    history: ConfigHistory
    rollup: Rollup
    erasures: ErasureRecorder
    workers: Supervisor  # every background worker: restarts, metrics, readiness


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> FastAPI:
    metrics = GatewayMetrics(registry or CollectorRegistry())
    authenticator = Authenticator(settings)  # refuses a non-loopback bind without keys

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await ClickHouseStore(
            settings.clickhouse_dsn.get_secret_value(), settings.clickhouse_database
        ).open_async()
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            compression_type="zstd",  # as the engine's producer (aiokafka needs cramjam)
        )
        try:
            await ensure_topics(settings)
            await producer.start()
            rollup = Rollup(store)
            sink = ActivitySink(settings, store, producer, metrics, rollup)
            registry = ConfigRegistry()
            history = ConfigHistory(store)
            registry.on_change(history.record)
            mirror = TopicMirror(
                settings.kafka_bootstrap_servers, settings.topic_configs, registry.apply
            )
            service = ConfigService(settings, registry, producer)
            monitor = AutomationMonitor(
                settings, store, service, producer, metrics.automation_warnings
            )
            erasures = ErasureRecorder(store)
            workers = Supervisor(metrics.workers)
            workers.forever(
                "activity-sink", sink.run, ready=lambda: sink.started.is_set() and not sink.retrying
            )
            workers.forever("config-mirror", mirror.run, ready=mirror.caught_up.is_set)
            workers.forever("config-history", history.run)
            workers.every("rollup", REFRESH_SECONDS, rollup.refresh)
            workers.every("automation", settings.automation_interval_seconds, monitor.check_now)
            workers.every("erasure-recorder", ErasureRecorder.FLUSH_SECONDS, erasures.flush)
            app.state.gw = GatewayState(
                settings,
                store,
                producer,
                sink,
                metrics,
                service,
                mirror,
                history,
                rollup,
                erasures,
                workers,
            )
            workers.start()
            yield
        finally:
            if hasattr(app.state, "gw"):
                await app.state.gw.workers.stop()  # cancels each; consumers close cleanly
            await producer.stop()
            await store.aclose()

    app = GatewayApp(
        title="Sequential Messaging Engine",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_openapi(app)
    app.state.auth = authenticator
    app.state.write_keys = WriteKeys(settings)  # a bad write-keys file stops the start
    app.include_router(configs_router)
    app.include_router(preview_router)
    app.include_router(sql_router)
    app.include_router(users_router)
    app.include_router(enrollments_router)
    app.include_router(dashboard_router)
    app.include_router(tracking_router)
    app.include_router(ingest_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    check_assets()

    swagger = get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - API")
    docs_page = bytes(swagger.body).decode()
    docs_csp = CSP.replace(
        "script-src 'self'",
        "script-src 'self' https://cdn.jsdelivr.net " + " ".join(inline_script_hashes(docs_page)),
    ).replace("style-src 'self'", "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net")
    docs_csp = docs_csp.replace("img-src 'self' data:", "img-src 'self' data: https:")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI (from its CDN; the page's one inline script is allowed by its hash)."""
        return HTMLResponse(docs_page, headers={"Content-Security-Policy": docs_csp})

    @app.exception_handler(KafkaError)
    async def broker_unavailable(_: Request, exc: KafkaError) -> JSONResponse:
        log.warning("a write was not acknowledged by the broker: %r", exc)
        return JSONResponse(
            {"detail": "the broker did not acknowledge the write; retry later"},
            503,
            headers={"Retry-After": "5"},
        )

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

    @app.get(
        "/readyz",
        tags=["ops"],
        responses={503: {"description": "not ready: some check failed (same body)"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Ready when ClickHouse answers, the sink's consumer is on the broker, the
        configurations are read, and every background worker is running and ready; the body
        names what is not (503)."""
        gw: GatewayState = request.app.state.gw
        workers = gw.workers.workers
        checks = {
            "clickhouse": await gw.store.ping(),
            "kafka": workers["activity-sink"].running and gw.sink.started.is_set(),
            "configs": workers["config-mirror"].ready,
        }
        status = {
            name: {"ready": w.ready, "failures": w.failures, "last_error": w.last_error}
            for name, w in workers.items()
        }
        not_ready = [k for k, ok in checks.items() if not ok]
        not_ready += [f"worker:{name}" for name, w in workers.items() if not w.ready]
        return JSONResponse(
            {"ready": not not_ready, "not_ready": not_ready, "checks": checks, "workers": status},
            503 if not_ready else 200,
        )

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(f"{API}/{{config_id}}/activities", tags=["activities"])
    async def activities(
        request: Request,
        who: Caller,
        config_id: str,
        type: Annotated[list[ActivityType] | None, Query()] = None,
        user_id: str | None = None,
        from_: Annotated[Moment | None, Query(alias="from", description="inclusive")] = None,
        to: Annotated[Moment | None, Query(description="exclusive")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[
            str | None, Query(description="`next_cursor` of the previous page", max_length=512)
        ] = None,
    ) -> dict[str, object]:
        if cursor is not None:
            _check_cursor(cursor)  # parameters first (422), like those FastAPI validates
        # 404 for an unknown id whoever asks (admin and no-auth too), and for a foreign one
        request.app.state.gw.configs.get(config_id, who.workspace_id)
        flt = ActivityFilter(
            config_id=config_id,
            types=tuple(t.value for t in type or ()),
            user_id=user_id,
            since=from_,
            until=to,
        )
        try:
            items, next_cursor = await list_activities(
                request.app.state.gw.store, flt, limit, cursor
            )
        except InvalidCursorError as exc:
            raise _bad_cursor(str(exc)) from exc
        return {"items": items, "next_cursor": next_cursor}

    return app


def _check_cursor(cursor: str) -> None:
    """A cursor this API issued names a moment within ClickHouse's range; anything else is
    a 422 on `cursor` (never a 500 from decoding or from the query)."""
    try:
        at, _ = decode_cursor(cursor)
    except (InvalidCursorError, ValueError, OverflowError, OSError) as exc:
        raise _bad_cursor("cursor is not one this API issued") from exc
    if not MOMENT_MIN <= at <= MOMENT_MAX:
        raise _bad_cursor("cursor is not one this API issued")


def _bad_cursor(message: str) -> HTTPException:
    return HTTPException(
        422, detail=[{"loc": ["query", "cursor"], "msg": message, "type": "value_error"}]
    )
