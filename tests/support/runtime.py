"""The engine (a Faust app on the test's loop) and the gateway's sink, wired to one test's
topics, database and data directory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiokafka import AIOKafkaProducer
from faust.contrib.asgi import faust_app_running
from prometheus_client import CollectorRegistry

from sme.engine.app import Engine, utc_now
from sme.gateway.metrics import GatewayMetrics
from sme.gateway.sink import ActivitySink
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.infra import free_port
from tests.support.waiting import eventually


@contextlib.asynccontextmanager
async def running_engine(
    settings: Settings, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[Engine]:
    """`clock`: the engine's clock (e.g. a `ShiftableClock`); the wall clock by default."""
    await ensure_topics(settings)
    engine = Engine(
        settings.model_copy(update={"engine_web_port": free_port()}), clock=clock or utc_now
    )
    async with faust_app_running(engine.app, stop_timeout=20):
        await asyncio.wait_for(engine.configs_loaded.wait(), 60)

        async def assigned() -> bool:
            return engine.owns_inputs()

        await eventually(assigned, timeout=60, what="the engine's partitions assigned")
        yield engine


@contextlib.asynccontextmanager
async def running_sink(settings: Settings) -> AsyncIterator[ClickHouseStore]:
    store = await ClickHouseStore(
        settings.clickhouse_dsn.get_secret_value(), settings.clickhouse_database
    ).open_async()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    sink = ActivitySink(settings, store, producer, GatewayMetrics(CollectorRegistry()))
    task = asyncio.create_task(sink.run())
    try:
        yield store
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
        await store.aclose()


@contextlib.asynccontextmanager
async def engine_and_sink(settings: Settings) -> AsyncIterator[ClickHouseStore]:
    await ensure_topics(settings)
    async with running_sink(settings) as store, running_engine(settings):
        yield store
