"""The demo's shell: the sequence through the HTTP API (typed client), the population and the
demo sender on Kafka, live progress, a clean stop after `seconds` or on Ctrl-C/SIGTERM.

Four loops share one event loop: signups at `rate` per second (users drawn from the world);
the sender, which reads the channels' command topics in its own consumer group and plans the
world's answer to each command of the demo's sequence (`reactions.plan_reactions`); the
dispatcher, which publishes each planned event when it is due; and the progress line (with
the gateway's enrolled count, read every few seconds)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import secrets
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import ValidationError

from sme.client import (
    ApiError,
    AsyncSmeClient,
    ClientError,
    GatewayUnreachable,
    Unauthorized,
)
from sme.contracts.commands import Command
from sme.contracts.events import Event, UserProfile
from sme.contracts.sequences import SequenceConfig, Status
from sme.demo.plan import create_body, demo_world, reusable
from sme.demo.progress import Counters, progress_line
from sme.demo.reactions import organic_conversion_after, plan_reactions
from sme.demo.summary import LeftBehind, measured, summary_lines
from sme.errors import SmeError
from sme.settings import Settings
from sme.simulator.world import (
    CONVERSION_EVENT,
    SIGNUP_EVENT,
    HiddenUser,
    Scenario,
    draw_user,
    regimes,
)
from sme.topics import ensure_topics

ENROLLED_EVERY_SECONDS = 5.0
CONFIG_GRACE_SECONDS = 1.0
"""A new sequence reaches the engine through the configs topic within about a second."""
ASSIGNMENT_TIMEOUT_SECONDS = 60.0


class DemoError(SmeError):
    """A one-line reason the demo cannot run (no gateway, a refused key, no broker)."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    seconds: float
    rate: float
    scale: float
    gateway: str
    key: str | None
    seed: int | None = None


@dataclass(slots=True)
class _Pending:
    heap: list[tuple[float, int, Event]] = field(default_factory=list)
    seq: int = 0

    def push(self, at: float, event: Event) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, event))


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def ensure_sequence(
    client: AsyncSmeClient, sequence: SequenceConfig
) -> tuple[SequenceConfig, str]:
    """The demo's sequence, created through the API unless an earlier run left it (a paused
    one is resumed); with what was done (`created`, `reused`, `resumed`)."""
    configs: list[SequenceConfig] = []
    cursor: str | None = None
    while True:
        page = await client.list_configs(sequence.workspace_id, 1000, cursor)
        configs.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    found = reusable(configs, sequence.name)
    if found is None:
        return await client.create_config(create_body(sequence)), "created"
    if found.status is Status.PAUSED:
        resumed = await client.patch_config(found.id, {"status": "ACTIVE"}, found.version)
        return resumed, "resumed"
    return found, "reused"


async def demo_sequence(
    client: AsyncSmeClient, sequence: SequenceConfig, gateway: str
) -> tuple[SequenceConfig, str]:
    """`ensure_sequence`, its failures as one-line DemoErrors a newcomer can act on."""
    try:
        return await ensure_sequence(client, sequence)
    except GatewayUnreachable as exc:
        raise DemoError(
            f"no gateway answers at {gateway}: start one with `make run` "
            "(or point --gateway at yours)"
        ) from exc
    except Unauthorized as exc:
        raise DemoError(
            f"the gateway at {gateway} refused the API key ({exc.status}): "
            "set SME_ADMIN_API_KEY or pass --key"
        ) from exc
    except ApiError as exc:
        raise DemoError(f"the gateway at {gateway} answered {exc}") from exc


class Demo:
    def __init__(
        self,
        settings: Settings,
        options: DemoOptions,
        world: Scenario,
        config: SequenceConfig,
        client: AsyncSmeClient,
        out: TextIO,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.options = options
        self.world = world
        self.config = config
        self.client = client
        self.out = out
        self.clock = clock
        self.rng = random.Random(options.seed)  # noqa: S311 - a simulation, not cryptography
        self.regime = regimes(world)[0]
        self.run_id = secrets.token_hex(3)
        self.users: dict[str, HiddenUser] = {}
        self.deliveries: dict[str, list[float]] = {}
        self.converted: set[str] = set()
        self.pending = _Pending()
        self.counters = Counters()
        self.loop = asyncio.get_running_loop()
        self.start = self.loop.time()
        self.tty = out.isatty()

    @property
    def channels(self) -> list[str]:
        used = {ch for step in self.config.steps for ch in step.channels}
        return sorted(self.settings.command_topic(ch) for ch in used)

    @property
    def group_id(self) -> str:
        return f"{self.settings.sender_group_prefix}-demo"

    def elapsed(self) -> float:
        return self.loop.time() - self.start

    # --- publishing -------------------------------------------------------------------------
    async def _publish(self, producer: AIOKafkaProducer, event: Event) -> None:
        if event.type == CONVERSION_EVENT:
            if event.user_id in self.converted:
                return  # one conversion per user, as in the simulator's world
            self.converted.add(event.user_id)
            self.counters.conversions += 1
        value = event.model_dump_json(exclude_none=True).encode("utf-8")
        await producer.send(self.settings.topic_events, value, key=event.user_id.encode())
        self.counters.events += 1
        if event.type != SIGNUP_EVENT:
            self.counters.feedback += 1

    def _event(self, user: HiddenUser, kind: str, command: Command | None = None) -> Event:
        properties: dict[str, Any] = {"source": "sme demo"}
        if kind == CONVERSION_EVENT:
            properties["value"] = self.regime.segments[user.segment].conversion_value
        return Event(
            event_id=f"{command.command_id}:{kind}" if command else f"{user.user_id}:{kind}",
            workspace_id=self.config.workspace_id,
            user_id=user.user_id,
            type=kind,
            occurred_at=self.clock(),
            properties=properties,
            channel=command.channel if command else None,
            command_id=command.command_id if command else None,
        )

    # --- the loops --------------------------------------------------------------------------
    async def population(self, producer: AIOKafkaProducer) -> None:
        """Signups at the configured rate, each user drawn from the world."""
        index = 0
        while True:
            due = self.start + index / self.options.rate
            await asyncio.sleep(max(0.0, due - self.loop.time()))
            user_id = f"demo-{self.run_id}-{index:05d}"
            user = draw_user(self.world, index, user_id, self.rng)
            self.users[user_id] = user
            signup = Event(
                event_id=f"{user_id}:{SIGNUP_EVENT}",
                workspace_id=self.config.workspace_id,
                user_id=user_id,
                type=SIGNUP_EVENT,
                occurred_at=self.clock(),
                properties={"source": "sme demo"},
                user=UserProfile(
                    timezone=user.timezone,
                    attributes=dict(user.attributes),
                    consent=dict(user.consent),
                ),
            )
            await self._publish(producer, signup)
            self.counters.users += 1
            after = organic_conversion_after(user, self.rng, self.options.scale)
            if after is not None and after < self.options.seconds:
                self.pending.push(self.loop.time() + after, self._event(user, CONVERSION_EVENT))
            index += 1

    async def sender(self, consumer: AIOKafkaConsumer) -> None:
        """Answer each command of the demo's sequence to one of this run's users."""
        fatigue = self.world.fatigue
        window = fatigue.window.total_seconds() / self.options.scale
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    try:
                        command = Command.model_validate_json(record.value or b"")
                    except ValidationError:
                        continue  # not the demo's to answer
                    user = self.users.get(command.user_id)
                    if user is None or command.config_id != self.config.id or command.test:
                        continue
                    self.counters.commands += 1
                    now = self.loop.time()
                    recent = [t for t in self.deliveries.get(user.user_id, []) if t > now - window]
                    local_hour = self.clock().astimezone(ZoneInfo(user.timezone)).hour
                    reactions = plan_reactions(
                        user,
                        self.regime,
                        fatigue,
                        command.channel,
                        command.variant,
                        recent=len(recent),
                        active=local_hour in user.active,
                        rng=self.rng,
                        scale=self.options.scale,
                    )
                    for reaction in reactions:
                        if reaction.kind == "delivered":
                            recent.append(now + reaction.after)
                        event = self._event(user, reaction.kind, command)
                        self.pending.push(now + reaction.after, event)
                    self.deliveries[user.user_id] = recent

    async def dispatcher(self, producer: AIOKafkaProducer) -> None:
        """Publish each planned event when it is due."""
        heap = self.pending.heap
        while True:
            now = self.loop.time()
            while heap and heap[0][0] <= now:
                _, _, event = heapq.heappop(heap)
                await self._publish(producer, event)
            wait = heap[0][0] - now if heap else 0.2
            await asyncio.sleep(min(0.2, max(0.01, wait)))

    async def enrolled(self) -> None:
        """The gateway's enrolled count for the progress line (errors only delay it)."""
        while True:
            with contextlib.suppress(ClientError):
                metrics = await self.client.metrics(self.config.id)
                arms = metrics.get("arms") or {}
                self.counters.enrolled = sum(int(a.get("enrolled", 0)) for a in arms.values())
            await asyncio.sleep(ENROLLED_EVERY_SECONDS)

    async def progress(self) -> None:
        interval = 1.0 if self.tty else 2.0
        while True:
            await asyncio.sleep(interval)
            self.show()

    def show(self, final: bool = False) -> None:
        line = progress_line(self.counters, self.elapsed(), self.options.seconds, tty=self.tty)
        if self.tty:
            self.out.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        elif not final:
            self.out.write(line + "\n")
        self.out.flush()


async def _assigned(consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
    """Wait until the sender owns its partitions and knows where it starts reading (the end,
    for a new group), so no command of this run's users is missed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ASSIGNMENT_TIMEOUT_SECONDS
    while not consumer.assignment():
        if stop.is_set():
            return
        if loop.time() > deadline:
            raise DemoError("the demo sender got no partitions of the command topics in 60 s")
        await asyncio.sleep(0.1)
    for partition in consumer.assignment():
        await consumer.position(partition)


async def _until(stop: asyncio.Event, seconds: float) -> str:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return f"{seconds:.0f} s are up"
    return "interrupted"


async def run_demo(settings: Settings, options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo; DemoError (or another SmeError) for a one-line failure."""
    if options.seconds <= 0 or options.rate <= 0 or options.scale <= 0:
        raise DemoError("--seconds, --rate and --scale must be positive")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # its INFO would drown the counters
    logging.getLogger("httpx").setLevel(logging.WARNING)
    world = demo_world()
    try:
        client = AsyncSmeClient(options.gateway, options.key, timeout=30, max_retry_wait=5)
    except ValueError as exc:
        raise DemoError(str(exc)) from exc
    async with client:
        config, done = await demo_sequence(client, world.sequence, options.gateway)
        dashboard = f"{options.gateway}/dashboard/{config.id}"
        print(f"sme demo: sequence {config.id} {done} — dashboard {dashboard}", file=out)
        await ensure_topics(settings)
        demo = Demo(settings, options, world, config, client, out)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            reason = await _run(demo, stop, settings, done == "created")
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        figures = None
        with contextlib.suppress(ClientError):
            figures = measured(await client.metrics(config.id))
        left = LeftBehind(
            gateway=options.gateway,
            config_id=config.id,
            config_name=config.name,
            workspace_id=config.workspace_id,
            events_topic=settings.topic_events,
            command_topics=tuple(demo.channels),
            activities_topic=settings.topic_activities,
            consumer_group=demo.group_id,
            database=settings.clickhouse_database,
            first_user=next(iter(demo.users), None),
            keyed=options.key is not None,
        )
        print("\n".join(summary_lines(demo.counters, reason, left, figures)), file=out)
    return 0


async def _run(demo: Demo, stop: asyncio.Event, settings: Settings, fresh: bool) -> str:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20)
    consumer = AIOKafkaConsumer(
        *demo.channels,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=demo.group_id,
        auto_offset_reset="latest",
        enable_auto_commit=True,
    )
    try:
        await producer.start()
        await consumer.start()
    except KafkaConnectionError as exc:
        await consumer.stop()
        await producer.stop()
        raise DemoError(f"no Kafka broker at {settings.kafka_bootstrap_servers}: {exc}") from exc
    tasks: list[asyncio.Task[Any]] = []
    try:
        await _assigned(consumer, stop)
        if fresh and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CONFIG_GRACE_SECONDS)
        demo.start = demo.loop.time()
        loops: list[Coroutine[Any, Any, None]] = [
            demo.population(producer),
            demo.sender(consumer),
            demo.dispatcher(producer),
            demo.enrolled(),
            demo.progress(),
        ]
        tasks = [asyncio.create_task(c) for c in loops]
        waiter = asyncio.create_task(_until(stop, demo.options.seconds))
        tasks.append(waiter)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter:
                task.result()  # a loop that ended has failed: raise its error
        reason = waiter.result()
        demo.show(final=True)
        return reason
    except KafkaError as exc:
        raise DemoError(f"Kafka failed during the demo: {exc}") from exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(KafkaError):
            await producer.flush()
        await consumer.stop()
        await producer.stop()
