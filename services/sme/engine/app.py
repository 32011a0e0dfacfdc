"""The engine adapter: deserialise, call the pure core, persist, emit. Nothing else.

One agent consumes the events topic and the engine's own timer topic (co-partitioned, keyed
by user), so every state change happens inside stream iteration on the partition that owns
the user. Outputs are sent before the state is written: a crash in between replays the input
and re-sends the same deterministic ids (deduped downstream) rather than losing a command.
No exception escapes the agent: a dead agent silently stalls its partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from faust.sensors.prometheus import setup_prometheus_sensors
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from sme.config_mirror import ConfigRegistry, TopicMirror
from sme.contracts.activities import Activity, ActivityType
from sme.contracts.dead_letters import FieldError, RejectReason, SourcePosition
from sme.contracts.sequences import SequenceConfig, Status
from sme.core import sequence
from sme.core.ids import stable_id
from sme.core.intake import Rejection, dead_letter, parse_event, rejected_activity
from sme.core.timeutil import to_ms
from sme.core.user_state import UserState, state_key
from sme.engine.metrics import EngineMetrics
from sme.engine.stats_board import StatsBoard
from sme.engine.timers import DueIndex
from sme.settings import Settings

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


LAG_INTERVAL_SECONDS = 5.0
_SUPPRESSIONS = frozenset({"step_deferred", "step_skipped", "message_suppressed"})


def _dump(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def _rng_for(*parts: object) -> random.Random:
    """A decision's RNG, seeded by its input: a replayed input makes the same choices."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))  # noqa: S311 - sampling, not secrets


class _PartitionLedger(Mapping[str, float]):
    """This partition's budget spend, read from the ledger table."""

    def __init__(self, table: Any, partition: int) -> None:
        self.table, self.prefix = table, f"{partition}|"

    def __getitem__(self, key: str) -> float:
        value = self.table.get((self.prefix + key).encode())
        if value is None:
            raise KeyError(key)
        return float(value)

    def __iter__(self) -> Iterator[str]:
        return iter(())  # the core only looks keys up

    def __len__(self) -> int:
        return 0


class Engine:
    """Builds the Faust app (topics, tables, the agent, timer and stats tasks) around the core."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock = utc_now,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = EngineMetrics(registry or CollectorRegistry())
        self.configs = ConfigRegistry()
        self.stats = StatsBoard()
        self.due = DueIndex()
        self._dirty_stats: set[str] = set()
        self._local_stats: dict[str, list[float]] = {}
        self._resumed: set[str] = set()
        settings.engine_table_dir.mkdir(parents=True, exist_ok=True)
        brokers = [
            f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",")
        ]
        self.app = faust.App(
            settings.engine_app_id,
            broker=brokers,
            store="memory://" if settings.engine_store == "memory" else "rocksdb://",
            datadir=str(settings.engine_table_dir),
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication,
            web_host=settings.engine_web_host,
            web_port=settings.engine_web_port,
            web_enabled=True,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            producer_linger=0.005,  # batch sends: one request per few ms, not per message
            broker_commit_interval=1.0,
        )
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        self.inputs = self.app.topic(settings.topic_events, settings.topic_timers, **raw)
        self.timers_topic = self.app.topic(settings.topic_timers, **raw)
        self.command_topics = {
            channel: self.app.topic(name, **raw)
            for channel, name in settings.command_topics.items()
        }
        self.activities_topic = self.app.topic(settings.topic_activities, **raw)
        self.dlq_topic = self.app.topic(settings.topic_dlq, **raw)
        self.stats_topic = self.app.topic(settings.topic_stats, **raw)
        table_opts: dict[str, Any] = {"partitions": settings.topic_partitions, "key_type": bytes}
        self.users = self.app.Table("users", help="(workspace, user) -> UserState", **table_opts)
        self.ledger = self.app.Table("ledger", help="partition|budget key -> spent", **table_opts)
        self.app.agent(self.inputs, name="sme.engine.inputs")(self._consume)
        self.app.task(self._mirror_configs)
        self.app.task(self._mirror_stats)
        self.app.timer(settings.timer_interval_seconds)(self._wake_due_users)
        self.app.timer(settings.stats_publish_seconds)(self._publish_stats)
        self.app.timer(LAG_INTERVAL_SECONDS)(self._report_lag)
        self.app.on_rebalance_complete.connect(self._rebuild_due_index)
        self.configs.on_change(self._config_changed)
        self._configs_mirror = TopicMirror(
            settings.kafka_bootstrap_servers, settings.topic_configs, self.configs.apply
        )
        self._stats_mirror = TopicMirror(
            settings.kafka_bootstrap_servers, settings.topic_stats, self.stats.apply
        )
        setup_prometheus_sensors(self.app, registry=self.metrics.registry, name_prefix="sme_faust")

    @property
    def configs_loaded(self) -> asyncio.Event:
        """Set once the config topic has been read up to its start-up end."""
        return self._configs_mirror.caught_up

    # --- inputs -----------------------------------------------------------------------------
    async def _consume(self, stream: Any) -> None:
        await self._configs_mirror.caught_up.wait()
        async for event in stream.events():
            if event.message.topic == self.settings.topic_timers:
                await self.handle_tick(event.message)
            else:
                await self.handle(event.message)

    async def handle(self, message: Any) -> None:
        """Process one consumed event; never raises."""
        started = time.perf_counter()
        raw: bytes | None = message.value
        try:
            parsed = parse_event(raw, self.settings.max_event_bytes)
            if isinstance(parsed, Rejection):
                await self._reject(parsed, message)
                return
            key = state_key(parsed.workspace_id, parsed.user_id).encode()
            stored = self.users.get(key)
            state = (
                UserState.from_dict(stored)
                if stored
                else UserState.new(parsed.workspace_id, parsed.user_id)
            )
            rng = _rng_for(message.topic, message.partition, message.offset)
            outcome = sequence.on_event(
                state,
                parsed,
                self.clock(),
                rng,
                self._context(parsed.workspace_id, message.partition),
            )
            await self._apply(outcome, key, parsed.user_id.encode(), message.partition)
            self.metrics.events_in.labels(self.metrics.event_type_label(parsed.type)).inc()
        except Exception as exc:
            log.exception(
                "processing %s[%s]@%s failed", message.topic, message.partition, message.offset
            )
            error = FieldError(loc="", message=str(exc)[:1000], type=type(exc).__name__)
            await self._reject(Rejection(RejectReason.PROCESSING_ERROR, (error,)), message)
        finally:
            self.metrics.decision_seconds.observe(time.perf_counter() - started)

    async def handle_tick(self, message: Any) -> None:
        """A timer tick: advance whatever of this user is due. Never raises."""
        try:
            tick = orjson.loads(message.value)
            if "erase" in tick:
                await self._erase(tick["erase"], message)
                return
            key = tick["k"].encode()
            stored = self.users.get(key)
            if not stored:
                return
            state = UserState.from_dict(stored)
            now = self.clock()
            self.metrics.timer_lateness.observe(max(0.0, (to_ms(now) - int(tick["due"])) / 1000))
            rng = _rng_for(message.topic, message.partition, message.offset)
            outcome = sequence.on_timer(
                state, now, rng, self._context(state.workspace_id, message.partition)
            )
            await self._apply(
                outcome, key, message.key or state.user_id.encode(), message.partition
            )
        except Exception:
            log.exception(
                "timer tick %s[%s]@%s failed", message.topic, message.partition, message.offset
            )

    async def _erase(self, request: dict[str, str], message: Any) -> None:
        """Forget a user: drop their state (a tombstone in the changelog) and wake-up, then
        emit `user_erased`; the sink deletes their ClickHouse rows when it stores it (every
        earlier activity of the user precedes it on the same activities partition)."""
        workspace_id, user_id = request["w"], request["u"]
        key = state_key(workspace_id, user_id).encode()
        if key in self.users:
            del self.users[key]
        self.due.put(key, message.partition, user_id.encode(), None)
        activity = Activity(
            activity_id=stable_id("activity", "user_erased", workspace_id, request["id"]),
            type=ActivityType.USER_ERASED,
            workspace_id=workspace_id,
            user_id=user_id,  # in transit only: the sink stores the row without it
            occurred_at=self.clock(),
            details={"erasure_id": request["id"]},
        )
        self.activities_topic.send_soon(key=user_id.encode(), value=_dump(activity))

    def _context(self, workspace_id: str, partition: int) -> sequence.Context:
        return sequence.Context(
            configs=self.configs.configs_for(workspace_id),
            workspace=self.configs.workspace(workspace_id),
            stats=self.stats,
            ledger=_PartitionLedger(self.ledger, partition),
            partition=partition,
            partitions=self.settings.topic_partitions,
        )

    async def _apply(
        self, outcome: sequence.Outcome, key: bytes, user: bytes, partition: int
    ) -> None:
        """Emit outputs, then write state. `send_soon` buffers in order; Faust flushes the
        producer before it commits offsets, so nothing is committed before it is sent."""
        for command in outcome.commands:
            self.command_topics[command.channel].send_soon(key=user, value=_dump(command))
            self.metrics.commands_out.labels(command.channel.value).inc()
        for activity in outcome.activities:
            self.activities_topic.send_soon(key=user, value=_dump(activity))
            self.metrics.activities_out.labels(activity.type.value).inc()
            if activity.type.value in _SUPPRESSIONS and activity.reason_code:
                self.metrics.suppressions.labels(str(activity.reason_code)).inc()
        for delta in outcome.stat_deltas:
            self._count_stat(f"{partition}|{delta.key}", delta.trials, delta.successes)
        for budget_key, amount in outcome.ledger_deltas:
            ledger_key = f"{partition}|{budget_key}".encode()
            self.ledger[ledger_key] = float(self.ledger.get(ledger_key) or 0.0) + amount
        stored = outcome.state.to_dict()
        stored["p"] = partition  # where this user lives, for rebuilding the due-index
        self.users[key] = stored
        self.due.put(key, partition, user, self._next_due(outcome.state))

    def _count_stat(self, key: str, trials: int, successes: int) -> None:
        """Cumulative counts of a partition live in memory and in the compacted stats topic;
        a partition's new owner continues from the topic's last value. Eventually consistent:
        a crash can lose up to one publish interval of counts, never double them."""
        counts = self._local_stats.get(key)
        if counts is None:
            counts = list(self.stats.partition_counts(key))
            self._local_stats[key] = counts
        counts[0] += trials
        counts[1] += successes
        self._dirty_stats.add(key)

    def _next_due(self, state: UserState) -> int | None:
        """Paused sequences are not woken (they would fire nothing); resuming re-arms them."""
        return min(
            (e.due_ms for e in state.enrollments if not self.configs.paused(e.config_id)),
            default=None,
        )

    # --- timers -----------------------------------------------------------------------------
    async def _wake_due_users(self) -> None:
        if self._resumed:
            self._resumed.clear()
            self._rebuild_index()
        for wakeup in self.due.pop_due(to_ms(self.clock())):
            tick = orjson.dumps({"k": wakeup.key.decode(), "due": wakeup.due_ms})
            await self.timers_topic.send(key=wakeup.user, value=tick, partition=wakeup.partition)

    async def _rebuild_due_index(self, *args: Any, **kwargs: Any) -> None:
        self._rebuild_index()

    def _rebuild_index(self) -> None:
        """Re-arm every user of the partitions this instance owns, from the table itself."""
        assigned = {
            tp.partition
            for tp in self.app.consumer.assignment()
            if tp.topic == self.settings.topic_events
        }
        self.due.retain_partitions(assigned)
        self._local_stats = {
            k: v for k, v in self._local_stats.items() if int(k.partition("|")[0]) in assigned
        }
        armed = 0
        for key, stored in self.users.items():
            partition = stored.get("p") if isinstance(stored, dict) else None
            if partition not in assigned or not stored.get("en"):
                continue
            state = UserState.from_dict(stored)
            self.due.put(key, partition, state.user_id.encode(), self._next_due(state))
            armed += 1
        log.info("due-index rebuilt for partitions %s: %d users armed", sorted(assigned), armed)

    def _config_changed(self, old: SequenceConfig | None, new: SequenceConfig | None) -> None:
        if (
            old is not None
            and old.status is Status.PAUSED
            and new is not None
            and new.status is not Status.PAUSED
        ):
            self._resumed.add(new.id)

    # --- shared state mirrors ---------------------------------------------------------------
    async def _mirror_configs(self) -> None:
        await self._configs_mirror.run()

    async def _mirror_stats(self) -> None:
        await self._stats_mirror.run()

    async def _publish_stats(self) -> None:
        dirty, self._dirty_stats = self._dirty_stats, set()
        for stat_key in dirty:
            counts = self._local_stats.get(stat_key)
            if counts is not None:
                await self.stats_topic.send(key=stat_key.encode(), value=orjson.dumps(counts))

    async def _report_lag(self) -> None:
        """Consumer lag of the inputs per assigned partition: the broker's high-water mark
        minus our position (faust's sensors carry no lag)."""
        consumer = self.app.consumer
        inputs = {self.settings.topic_events, self.settings.topic_timers}
        for tp in consumer.assignment():
            if tp.topic not in inputs:
                continue
            with contextlib.suppress(Exception):  # an assignment in flux: next tick
                position = await consumer.position(tp)
                highwater = consumer.highwater(tp)
                if position is not None and highwater is not None:
                    self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                        max(highwater - position, 0)
                    )

    # --- dead letters -----------------------------------------------------------------------
    async def _reject(self, rejection: Rejection, message: Any) -> None:
        source = SourcePosition(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key.decode(errors="replace")[:256] if message.key else None,
        )
        now = self.clock()
        letter = dead_letter(rejection, message.value, source, now, service="engine")
        try:
            await self.dlq_topic.send(key=message.key, value=_dump(letter))
            activity = rejected_activity(rejection, source, now)
            await self.activities_topic.send(key=message.key, value=_dump(activity))
        except Exception:
            log.exception(
                "could not dead-letter %s[%s]@%s", source.topic, source.partition, source.offset
            )
        self.metrics.dead_letters.labels(rejection.reason.value).inc()
