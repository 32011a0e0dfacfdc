"""The engine adapter: deserialise, call the pure core, emit, then persist. Nothing else.

- **intake** (`engine.intake`, a plain consumer group) reads `sme.events` however the producer
  partitioned it, dead-letters what is invalid and forwards each valid event to the partition of
  `sme.inputs` that owns the user (`sme.routing.owner_partition`);
- **decide** (the Faust agent, over batches from `take_events`) reads `sme.inputs` (forwarded
  events, timer ticks, erase requests), runs the core over the batch with each user's state read
  once, sends every command and activity and waits for the broker's acknowledgement, and only
  then writes the users, ledger and positions tables and waits for their changelogs. A crash at
  any point replays inputs whose state was not written, and the replay emits the same
  deterministic ids. The next input offset of each partition is stored with the state
  (`positions`), so what was stored is never decided twice, and an input Faust skipped (it
  acknowledges messages it drops while recovering, and may commit past them) is read again.
No exception escapes an agent: a dead agent silently stalls its partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import faust
import faust.streams
import orjson
from faust.types import TP
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from sme.config_mirror import ConfigRegistry, TopicMirror
from sme.contracts.activities import Activity, ActivityType, bundle_values
from sme.contracts.dead_letters import FieldError, RejectReason, SourcePosition
from sme.contracts.engine_inputs import (
    ENGINE_INPUT,
    MAX_TICK_KEYS,
    DueUser,
    EraseRequest,
    ForwardedEvent,
    SourcePositionRef,
    TimerTick,
)
from sme.contracts.enrollments import EnrollRequest
from sme.contracts.sequences import SequenceConfig, Status
from sme.core import sequence
from sme.core.enroll import on_enroll
from sme.core.ids import incarnation, stable_id
from sme.core.intake import Rejection, dead_letter, parse_event, rejected_activity
from sme.core.retention import expired_ledger_keys
from sme.core.stats import add_decayed, config_of, group_counts
from sme.core.timeutil import to_ms, utc_day
from sme.core.user_state import UserState, state_key
from sme.engine import faust_monitor
from sme.engine.batch import Batch, rng_for
from sme.engine.delivery import send_batches
from sme.engine.intake import Intake
from sme.engine.metrics import EngineMetrics
from sme.engine.stats_board import StatsBoard
from sme.engine.timers import DueIndex, Wakeup
from sme.routing import owner_partition
from sme.settings import Settings
from sme.supervisor import Supervisor

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
OnFatal = Callable[[str], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


def exit_process(reason: str) -> None:
    """A table write whose changelog the broker refused leaves local state ahead of the
    cluster's: stop at once (nothing of the batch was committed) and let the restart replay."""
    log.critical("engine stopping: %s", reason)
    logging.shutdown()
    os._exit(70)


LAG_INTERVAL_SECONDS = 5.0
PRODUCER_COMPRESSION = "zstd"
"""Compression of everything the services produce (aiokafka needs `cramjam` for it)."""
PRODUCER_MAX_BATCH_BYTES = 512 * 1024
MIB = 1024 * 1024
USERS_ROCKSDB = {
    "write_buffer_size": 8 * MIB,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 * MIB,
}
SMALL_ROCKSDB = {
    "write_buffer_size": 1 * MIB,
    "max_write_buffer_number": 2,
    "block_cache_size": 1 * MIB,
}
"""RocksDB memory per partition store: memtables (write buffers) plus block cache. Faust's
defaults (64 MiB buffers, a 2 GiB cache per store, 6 partitions x 3 tables) let RSS climb for
hours; these bound the engine's tables to about 6 x (32 + 2 x 3) MiB = 228 MiB."""
REWIND_PATIENCE_SECONDS = 5.0
AUDIT_INTERVAL_SECONDS = 2.0
STALL_SECONDS = 10.0
"""A partition whose fetch position is past its stored position, and from which no input has
arrived for this long, had inputs skipped by Faust: it is read again from the stored one."""
NO_PROGRESS_MS = 1_000
"""A tick that changed nothing re-arms its user no sooner than this."""
DELIVERY_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
CHANGELOG_TIMEOUT_SECONDS = 60.0
_SUPPRESSIONS = frozenset({"step_deferred", "step_skipped", "message_suppressed"})


def _dump(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def _in_stream_of(event: Any) -> None:
    """Make `event` Faust's current event: table reads and writes go to its partition."""
    faust.streams._current_event.set(weakref.ref(event))


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


class CrashPoints:
    """Fault testing: exit abruptly (no flush, no commit, like kill -9) the Nth time a named
    point of the pipeline is reached (`SME_ENGINE_CRASH_AT=point:N`). Inert when empty."""

    def __init__(self, spec: str) -> None:
        point, _, count = spec.partition(":")
        self.point, self.remaining = point, int(count or 0)

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        self.remaining -= 1
        if self.remaining == 0:
            log.warning("crash point %s reached: exiting abruptly", point)
            os._exit(137)


class _AckedTable(faust.Table):  # type: ignore[type-arg]
    """A Faust table that keeps the futures of its changelog writes, so a batch can wait for
    the broker to hold them before its offsets may be committed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unacked: list[Awaitable[Any]] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        self.unacked.append(future)
        return future


class Engine:
    """Builds the Faust app (topics, tables, agents, timer and stats tasks) around the core."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock = utc_now,
        registry: CollectorRegistry | None = None,
        on_fatal: OnFatal = exit_process,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.on_fatal = on_fatal
        self.metrics = EngineMetrics(registry or CollectorRegistry())
        self.configs = ConfigRegistry()
        self.stats = StatsBoard()
        self.due = DueIndex()
        self._dirty_stats: set[str] = set()
        self._local_stats: dict[str, list[float]] = {}  # key -> [trials, successes, as_of_ms]
        self._processed: dict[tuple[str, int], int] = {}
        self._ledger_purged: dict[int, str] = {}  # partition -> UTC day its ledger was purged
        self.crash_points = CrashPoints(settings.engine_crash_at)
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
            # zstd (through cramjam): ~10x smaller on the broker for ~2 ms CPU per MiB. A
            # producer batch per partition of up to 512 KiB takes a decided batch's outputs
            # in one request instead of blocking on a full 16 KiB one.
            producer_compression_type=PRODUCER_COMPRESSION,
            producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
            broker_commit_interval=1.0,
            broker_session_timeout=settings.engine_session_timeout_seconds,
            broker_heartbeat_interval=settings.engine_session_timeout_seconds / 5,
            broker_rebalance_timeout=settings.engine_session_timeout_seconds * 2,
        )
        # Table writes queue changelog sends in Faust's buffer; a whole batch of them is normal.
        self.app.producer.buffer.max_messages = 4 * settings.engine_batch_size + 100
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        self.inputs_topic = self.app.topic(settings.topic_inputs, **raw)
        table_opts: dict[str, Any] = {
            "beacon": self.app.tables.beacon,
            "partitions": settings.topic_partitions,
            "key_type": bytes,
        }
        rocksdb = settings.engine_store == "rocksdb"
        self.users = _AckedTable(
            self.app,
            name="users",
            help="(workspace, user) -> UserState",
            options=USERS_ROCKSDB if rocksdb else None,
            **table_opts,
        )
        self.ledger = _AckedTable(
            self.app,
            name="ledger",
            help="partition|budget key -> spent",
            options=SMALL_ROCKSDB if rocksdb else None,
            **table_opts,
        )
        self.positions = _AckedTable(
            self.app,
            name="positions",
            help="inputs partition -> next offset to decide",
            options=SMALL_ROCKSDB if rocksdb else None,
            **table_opts,
        )
        for table in (self.users, self.ledger, self.positions):
            self.app.tables.add(table)
        self.intake = Intake(settings, self._route, self._deliver)
        self._rewinds: dict[int, tuple[int, float]] = {}
        self._seen_at: dict[int, float] = {}  # inputs partition -> when an input last arrived
        self.app.agent(self.inputs_topic, name="sme.engine.decide")(self._decide)
        self._configs_mirror = TopicMirror(
            settings.kafka_bootstrap_servers, settings.topic_configs, self.configs.apply
        )
        self._stats_mirror = TopicMirror(
            settings.kafka_bootstrap_servers, settings.topic_stats, self.stats.apply
        )
        # Background work never crashes the app: a broker hiccup would stop the engine. One
        # supervisor restarts each worker with backoff, counts failures and knows readiness;
        # Faust starts its loops once tables are recovered and cancels them on shutdown.
        self.workers = Supervisor(self.metrics.workers)
        for name, run, ready in (
            ("intake", self.intake.run, lambda: self.intake.consumer is not None),
            ("configs-mirror", self._configs_mirror.run, self._configs_mirror.caught_up.is_set),
            ("stats-mirror", self._stats_mirror.run, None),
        ):
            self.app.task(self.workers.forever(name, run, ready).run)
        for interval, name, tick in (
            (settings.timer_interval_seconds, "timers", self._wake_due_users),
            (settings.stats_publish_seconds, "stats-publish", self._publish_stats),
            (LAG_INTERVAL_SECONDS, "lag", self.report_lag),
            (AUDIT_INTERVAL_SECONDS, "positions-audit", self._audit_positions),
        ):
            self.app.task(self.workers.every(name, interval, tick).run)
        self.app.on_rebalance_complete.connect(self._rebuild_due_index)
        self.configs.on_change(self._config_changed)
        faust_monitor.install(self.app, self.metrics.registry, "sme_faust")
        engine = self

        async def readyz(view: Any, request: Any) -> Any:
            """200 when this instance is ready (see `readiness`), else 503 naming what is not."""
            try:
                body = engine.readiness()
            except Exception as exc:  # e.g. no consumer yet: not ready, never a 500
                body = {"ready": False, "not_ready": [type(exc).__name__]}
            return view.json(body, status=200 if body["ready"] else 503)

        async def healthz(view: Any, request: Any) -> Any:
            """200 while the process serves HTTP (a liveness probe: recovering tables or a
            rebalance is not a reason to restart it; readiness says when it can decide)."""
            return view.json({"status": "ok"})

        self.app.page("/readyz")(readyz)
        self.app.page("/healthz")(healthz)

    def owns_inputs(self) -> bool:
        """Whether this instance has been assigned partitions of the inputs topic."""
        return any(tp.topic == self.settings.topic_inputs for tp in self.app.consumer.assignment())

    @property
    def configs_loaded(self) -> asyncio.Event:
        """Set once the config topic has been read up to its start-up end."""
        return self._configs_mirror.caught_up

    # --- readiness ----------------------------------------------------------------------------
    def readiness(self) -> dict[str, object]:
        """Ready when it owns inputs partitions and is not rebalancing or recovering tables,
        and every background worker is running and ready (the intake's consumer started, the
        configurations read up to their start-up end, the timers' last round done)."""
        app = self.app
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # TableManager's
        checks = {
            "partitions": self.owns_inputs()
            and not app.rebalancing
            and not recovery.in_recovery
            and recovery.completed.is_set(),
            "configs": self.configs_loaded.is_set(),
        }
        workers = self.workers.workers
        status = {
            name: {"ready": w.ready, "failures": w.failures, "last_error": w.last_error}
            for name, w in workers.items()
        }
        not_ready = [k for k, ok in checks.items() if not ok]
        not_ready += [f"worker:{name}" for name, w in workers.items() if not w.ready]
        return {"ready": not not_ready, "not_ready": not_ready, "checks": checks, "workers": status}

    # --- intake: validate and route to the user's partition --------------------------------

    def _route(self, message: Any) -> list[Outgoing]:
        """One raw event: a dead letter, or a record for the user's inputs partition."""
        try:
            return self._forward(message)
        except Exception as exc:
            log.exception("routing %s[%s]@%s failed", *_position(message))
            return self._rejection(_processing_error(exc), message)

    def _forward(self, message: Any) -> list[Outgoing]:
        parsed = parse_event(message.value, self.settings.max_event_bytes)
        if isinstance(parsed, Rejection):
            return self._rejection(parsed, message)
        record = ForwardedEvent(
            source=SourcePositionRef(
                topic=message.topic, partition=message.partition, offset=message.offset
            ),
            event=parsed,
        )
        partition = owner_partition(
            parsed.workspace_id, parsed.user_id, self.settings.topic_partitions
        )
        key = state_key(parsed.workspace_id, parsed.user_id).encode()
        return [Outgoing(self.settings.topic_inputs, key, _dump(record), partition)]

    # --- decide: the core over a batch, outputs acknowledged before state ------------------
    async def _decide(self, stream: Any) -> None:
        s = self.settings
        # Iterate at once, and wait for the configurations inside the loop: messages Faust
        # fetches before an agent iterates its stream are stranded, and a later commit of
        # what was processed skips over them (they would never be decided).
        async for events in stream.take_events(s.engine_batch_size, within=s.engine_batch_seconds):
            await self._configs_mirror.caught_up.wait()
            started = time.perf_counter()
            try:
                await self.decide_batch(events)
            except Exception as exc:
                # Not the core (its failures are dead letters) but the tables or the broker.
                # Leaving the loop would close `take_events`, which acknowledges the batch:
                # stop instead, so the batch is decided again after the restart.
                log.exception("a batch could not be stored")
                self.on_fatal(f"a batch could not be stored: {exc!r}")
                raise
            self.metrics.decision_seconds.observe(time.perf_counter() - started)
            self.metrics.batch_size.observe(len(events))

    async def decide_batch(self, events: Sequence[Any]) -> None:
        """Decide, deliver the outputs, then store the state: in that order, always."""
        now = self.clock()
        batch = Batch(self._read_state, self._read_ledger)
        anchors: dict[int, Any] = {}
        woken: dict[bytes, int] = {}
        extra: list[Outgoing] = []
        expected: dict[int, int | None] = {}
        gaps: dict[int, int] = {}
        for event in events:
            message = event.message
            partition, offset = message.partition, message.offset
            anchors.setdefault(partition, event)
            _in_stream_of(event)
            self._seen_at[partition] = time.monotonic()
            if not self._in_order(partition, offset, expected, gaps):
                continue
            try:
                item = ENGINE_INPUT.validate_json(message.value or b"")
            except ValidationError as exc:
                extra.extend(self._rejection(_invalid_input(exc), message))
                continue
            if isinstance(item, ForwardedEvent):
                extra.extend(self._decide_event(batch, item, message, now))
            elif isinstance(item, TimerTick):
                extra.extend(self._decide_tick(batch, item.users, message, now, woken))
            elif isinstance(item, EnrollRequest):
                extra.extend(self._decide_enroll(batch, item, message, now))
            else:
                self._erase(batch, item, message.partition, now)
        self.crash_points.reached("decided")
        await self._deliver([*self._outputs(batch), *extra])
        self.crash_points.reached("delivered")
        decided = {p: o for p, o in expected.items() if o is not None and p not in gaps}
        await self._store(batch, anchors, decided)
        self.crash_points.reached("acknowledged")
        self._rearm(batch, woken, to_ms(now))
        self._mark_processed(decided)
        await self._rewind(gaps)

    def _in_order(
        self, partition: int, offset: int, expected: dict[int, int | None], gaps: dict[int, int]
    ) -> bool:
        """Whether this input is the next one of its partition (the stored position says
        which). Below it: decided and stored already, its outputs are on their topics. Above
        it: an input before this one was never decided; the partition is read again from it."""
        if partition not in expected:
            stored = self.positions.get(str(partition).encode())
            expected[partition] = None if stored is None else int(stored)
        want = expected[partition]
        if partition in gaps or (want is not None and offset > want):
            gaps.setdefault(partition, want if want is not None else offset)
            return False
        if want is not None and offset < want:
            self.metrics.inputs_replayed.inc()
            return False
        expected[partition] = offset + 1
        return True

    def _decide_event(
        self, batch: Batch, item: ForwardedEvent, message: Any, now: datetime
    ) -> list[Outgoing]:
        parsed = item.event
        key = state_key(parsed.workspace_id, parsed.user_id).encode()
        source = item.source
        state = batch.state(key) or UserState.new(
            parsed.workspace_id,
            parsed.user_id,
            incarnation(source.topic, source.partition, source.offset),
        )
        rng = rng_for(source.topic, source.partition, source.offset)
        try:
            outcome = sequence.on_event(
                state, parsed, now, rng, self._context(batch, parsed.workspace_id, message)
            )
        except Exception as exc:
            log.exception("deciding %s[%s]@%s failed", *_position(message))
            return self._rejection(_processing_error(exc), message)
        batch.record(key, parsed.user_id.encode(), message.partition, outcome, before=state)
        self._count_stats(outcome, message.partition, to_ms(now))
        self.metrics.events_in.labels(self.metrics.event_type_label(parsed.type)).inc()
        return []

    def _decide_enroll(
        self, batch: Batch, item: EnrollRequest, message: Any, now: datetime
    ) -> list[Outgoing]:
        """A listed user's entry (`core.enroll`), decided like an event: RNG and a new
        state's incarnation from the record's position."""
        key = state_key(item.workspace_id, item.user_id).encode()
        position = (message.topic, message.partition, message.offset)
        state = batch.state(key) or UserState.new(
            item.workspace_id, item.user_id, incarnation(*position)
        )
        try:
            ctx = self._context(batch, item.workspace_id, message)
            outcome = on_enroll(state, item, now, rng_for(*position), ctx)
        except Exception as exc:
            log.exception("enrolling %s[%s]@%s failed", *_position(message))
            return self._rejection(_processing_error(exc), message)
        batch.record(key, item.user_id.encode(), message.partition, outcome, before=state)
        self._count_stats(outcome, message.partition, to_ms(now))
        return []

    def _decide_tick(
        self,
        batch: Batch,
        users: Iterable[DueUser],
        message: Any,
        now: datetime,
        woken: dict[bytes, int],
    ) -> list[Outgoing]:
        now_ms = to_ms(now)
        letters: list[Outgoing] = []
        for due_user in users:
            key = due_user.key.encode()
            state = batch.state(key)
            woken[key] = message.partition
            if state is None:
                continue  # erased, or never stored: nothing to wake
            self.metrics.timer_lateness.observe(max(0.0, (now_ms - due_user.due_ms) / 1000))
            rng = rng_for(message.topic, message.partition, message.offset, due_user.key)
            try:
                outcome = sequence.on_timer(
                    state, now, rng, self._context(batch, state.workspace_id, message)
                )
            except Exception as exc:
                log.exception("timer of %s failed", due_user.key)
                woken.pop(key)  # re-armed with backoff by `failed`, or given up
                if not self.due.failed(key, message.partition, now_ms):
                    self.metrics.timer_failures.inc()
                    letters.extend(self._rejection(_processing_error(exc), message))
                continue
            self.due.succeeded(key)
            if not batch.record(
                key, state.user_id.encode(), message.partition, outcome, before=state
            ):
                self.metrics.ticks_unchanged.inc()
            self._count_stats(outcome, message.partition, now_ms)
        return letters

    def _erase(self, batch: Batch, request: EraseRequest, partition: int, now: datetime) -> None:
        """Forget a user: drop their state (a tombstone in the changelog) and wake-up, then
        emit `user_erased`; the sink deletes their ClickHouse rows when it stores it (every
        earlier activity of the user precedes it on the same activities partition)."""
        key = state_key(request.workspace_id, request.user_id).encode()
        batch.erase(key, partition)
        self.due.forget(key)
        activity = Activity(
            activity_id=stable_id(
                "activity", "user_erased", request.workspace_id, request.erasure_id
            ),
            type=ActivityType.USER_ERASED,
            workspace_id=request.workspace_id,
            user_id=request.user_id,  # in transit only: the sink stores the row without it
            occurred_at=now,
            details={"erasure_id": request.erasure_id}
            | ({"requested_at": request.requested_at.isoformat()} if request.requested_at else {}),
        )
        batch.activities.append((request.user_id.encode(), activity))

    def _context(self, batch: Batch, workspace_id: str, message: Any) -> sequence.Context:
        return sequence.Context(
            configs=self.configs.configs_for(workspace_id),
            workspace=self.configs.workspace(workspace_id),
            stats=self.stats,
            ledger=batch.partition_ledger(message.partition),
            partition=message.partition,
            partitions=self.settings.topic_partitions,
        )

    def _read_state(self, key: bytes) -> dict[str, Any] | None:
        stored = self.users.get(key)
        return stored if isinstance(stored, dict) else None

    def _read_ledger(self, full_key: str) -> float | None:
        value = self.ledger.get(full_key.encode())
        return None if value is None else float(value)

    def _outputs(self, batch: Batch) -> list[Outgoing]:
        topics = self.settings.command_topics
        out = [
            Outgoing(topics[command.channel], user, _dump(command))
            for user, command in batch.commands
        ]
        # One record per user per batch (an ActivityBatch, or the lone activity as is), not
        # one per activity: an enrolling signup's half dozen activities travel together.
        out.extend(
            Outgoing(self.settings.topic_activities, user, value)
            for user, activities in batch.activities_by_user().items()
            for value in bundle_values([_dump(a) for a in activities])
        )
        # Counted per label per batch: a labelled child lookup per output cost ~6% of a decision.
        channels = Counter(command.channel.value for _, command in batch.commands)
        kinds = Counter(activity.type.value for _, activity in batch.activities)
        reasons = Counter(
            str(activity.reason_code)
            for _, activity in batch.activities
            if activity.type.value in _SUPPRESSIONS and activity.reason_code
        )
        for metric, counts in (
            (self.metrics.commands_out, channels),
            (self.metrics.activities_out, kinds),
            (self.metrics.suppressions, reasons),
        ):
            for label, n in counts.items():
                metric.labels(label).inc(n)
        return out

    def _kafka_producer(self) -> Any:
        """The aiokafka producer under Faust's (started with the app; its batch API)."""
        return cast(Any, self.app.producer)._ensure_producer()

    async def _deliver(self, outgoing: Sequence[Outgoing]) -> None:
        """Send and wait until the broker holds every record. Failed sends are retried with
        backoff (same bytes, so the same ids), never dropped: the batch waits for them."""
        pending = list(outgoing)
        attempt = 0
        while pending:
            failed, error = await send_batches(
                self._kafka_producer(),
                pending,
                lambda: self.crash_points.reached("delivering"),
            )
            if not failed:
                return
            delay = DELIVERY_BACKOFF_SECONDS[min(attempt, len(DELIVERY_BACKOFF_SECONDS) - 1)]
            log.warning(
                "%d of %d sends failed (%r); retrying in %.1fs",
                len(failed),
                len(pending),
                error,
                delay,
            )
            self.metrics.delivery_retries.inc()
            attempt += 1
            pending = failed
            await asyncio.sleep(delay)

    async def _store(
        self, batch: Batch, anchors: dict[int, Any], positions: dict[int, int]
    ) -> None:
        """Write the batch's states, ledger and input positions, then wait for their
        changelogs."""
        for key, write in batch.writes.items():
            _in_stream_of(anchors[write.partition])
            if write.stored is None:
                with contextlib.suppress(KeyError):
                    del self.users[key]
            else:
                self.users[key] = write.stored
        for full_key, total in batch.ledger.items():
            _in_stream_of(anchors[int(full_key.partition("|")[0])])
            self.ledger[full_key.encode()] = total
        for partition, next_offset in positions.items():
            _in_stream_of(anchors[partition])
            self.positions[str(partition).encode()] = next_offset
        self._purge_ledger(anchors)
        tables = (self.users, self.ledger, self.positions)
        unacked = [future for table in tables for future in table.unacked]
        for table in tables:
            table.unacked.clear()
        self.crash_points.reached("stored")
        if not unacked:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*unacked), CHANGELOG_TIMEOUT_SECONDS)
        except Exception as exc:
            self.on_fatal(f"a changelog write failed: {exc!r}")
            raise

    def _purge_ledger(self, anchors: dict[int, Any]) -> None:
        """Once per UTC day per partition (its first stored batch of the day), delete its
        ledger keys of days no budget counts any more (`core.retention`): the ledger holds at
        most two days of keys. The deletions go out with the batch's changelog writes."""
        now = self.clock()
        today = utc_day(now)
        due = [p for p in anchors if self._ledger_purged.get(p) != today]
        if not due:
            return
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in self.ledger]
        for partition in due:
            self._ledger_purged[partition] = today
            expired = expired_ledger_keys(keys, partition, now)
            if expired:
                _in_stream_of(anchors[partition])
            for key in expired:
                with contextlib.suppress(KeyError):
                    del self.ledger[key.encode()]

    def _rearm(self, batch: Batch, woken: dict[bytes, int], now_ms: int) -> None:
        """Arm each user this batch decided about (or woke) at their next due time."""
        for key, write in batch.writes.items():
            if write.state is None:
                self.due.forget(key)
            else:
                self._arm(key, write.partition, write.state)
        for key, partition in woken.items():
            if key in batch.writes:
                continue
            state = batch.state(key)
            if state is None:
                self.due.forget(key)
            else:  # woken for nothing: never sooner than NO_PROGRESS_MS from now
                self._arm(key, partition, state, now_ms + NO_PROGRESS_MS)

    def _arm(
        self, key: bytes, partition: int, state: UserState, not_before_ms: int | None = None
    ) -> None:
        """Paused sequences are not woken (they would fire nothing); resuming re-arms them."""
        due: int | None = None
        parked: list[str] = []
        for enrollment in state.enrollments:
            if self.configs.paused(enrollment.config_id):
                parked.append(enrollment.config_id)
            elif due is None or enrollment.due_ms < due:
                due = enrollment.due_ms
        if due is not None and not_before_ms is not None:
            due = max(due, not_before_ms)
        self.due.put(key, partition, due, parked)

    def _count_stats(self, outcome: sequence.Outcome, partition: int, now_ms: int) -> None:
        """Cumulative counts of a partition live in memory and in the compacted stats topic;
        a partition's new owner continues from the topic's last value. Eventually consistent:
        a crash can lose up to one publish interval of counts, never double them. A sequence
        with `adaptive.half_life_days` has its counts discounted as they are updated."""
        for delta in outcome.stat_deltas:
            key = f"{partition}|{delta.key}"
            counts = self._local_stats.get(key)
            if counts is None:
                counts = list(self.stats.partition_record(key, now_ms))
                self._local_stats[key] = counts
            config = self.configs.get(config_of(delta.key))
            half_life = config.adaptive.half_life_days if config is not None else None
            add_decayed(counts, delta.trials, delta.successes, now_ms, half_life)
            self._dirty_stats.add(key)

    def _mark_processed(self, next_offsets: dict[int, int]) -> None:
        for partition, next_offset in next_offsets.items():
            self._processed[(self.settings.topic_inputs, partition)] = next_offset - 1

    async def _audit_positions(self) -> None:
        """Catch what `_in_order` cannot see: inputs Faust skipped on a partition that then
        went quiet (no later input arrives to reveal the gap). Faust seeks to its committed
        offset after every rebalance, and that offset may be past inputs it skipped."""
        consumer = self.app.consumer
        now = time.monotonic()
        gaps: dict[int, int] = {}
        with contextlib.suppress(Exception):  # an assignment in flux: next time
            for tp in consumer.assignment():
                if tp.topic != self.settings.topic_inputs:
                    continue
                seen = self._seen_at.setdefault(tp.partition, now)
                stored = self.positions.get(str(tp.partition).encode())
                if stored is None or now - seen < STALL_SECONDS:
                    continue
                fetched = await consumer.position(tp)
                if fetched is not None and fetched > int(stored):
                    gaps[tp.partition] = int(stored)
        await self._rewind(gaps)

    async def _rewind(self, gaps: dict[int, int]) -> None:
        """Read partitions with a gap again from the first input not yet decided. Messages
        already buffered behind the gap arrive first and are skipped; the seek is repeated
        only if the missing input has not come back within a few seconds."""
        now = time.monotonic()
        for partition, offset in gaps.items():
            last = self._rewinds.get(partition)
            if last is not None and last[0] == offset and now - last[1] < REWIND_PATIENCE_SECONDS:
                continue
            self._rewinds[partition] = (offset, now)
            self.metrics.inputs_rewound.inc()
            log.warning(
                "inputs partition %d: offset %d was never decided; reading it again",
                partition,
                offset,
            )
            await self.app.consumer.seek(TP(self.settings.topic_inputs, partition), offset)

    # --- timers -----------------------------------------------------------------------------
    async def _wake_due_users(self) -> None:
        now_ms = to_ms(self.clock())
        due = self.due.pop_due(now_ms)
        if not due:
            return
        by_partition: dict[int, list[Wakeup]] = {}
        for wakeup in due:
            by_partition.setdefault(wakeup.partition, []).append(wakeup)
        chunks = [
            (partition, wakeups[i : i + MAX_TICK_KEYS])
            for partition, wakeups in by_partition.items()
            for i in range(0, len(wakeups), MAX_TICK_KEYS)
        ]
        producer = self.app.producer
        futures = []
        for partition, chunk in chunks:
            tick = TimerTick(users=[DueUser(key=w.key.decode(), due_ms=w.due_ms) for w in chunk])
            futures.append(
                await producer.send(
                    self.settings.topic_inputs,
                    b"tick",
                    _dump(tick),
                    partition=partition,
                    timestamp=None,
                    headers=None,
                )
            )
        results = await asyncio.gather(*futures, return_exceptions=True)
        for (_, chunk), result in zip(chunks, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("a tick for %d users could not be sent: %r", len(chunk), result)
                self.due.rearm(chunk, now_ms + NO_PROGRESS_MS)
            else:
                self.metrics.ticks_sent.inc()
                self.crash_points.reached("ticked")
        self.metrics.timers_in_flight.set(self.due.in_flight)

    async def _rebuild_due_index(self, *args: Any, **kwargs: Any) -> None:
        self._rebuild_index()

    def _rebuild_index(self) -> None:
        """Re-arm every user of the partitions this instance owns, from the table itself."""
        assigned = {
            tp.partition
            for tp in self.app.consumer.assignment()
            if tp.topic == self.settings.topic_inputs
        }
        self.due.retain_partitions(assigned)
        self._local_stats = {
            k: v for k, v in self._local_stats.items() if int(k.partition("|")[0]) in assigned
        }
        self._processed = {tp: o for tp, o in self._processed.items() if tp[1] in assigned}
        self._seen_at = {}  # every partition gets a fresh STALL_SECONDS after an assignment
        armed = 0
        for key, stored in self.users.items():
            partition = stored.get("p") if isinstance(stored, dict) else None
            if partition not in assigned or not stored.get("en"):
                continue
            self._arm(key, partition, UserState.from_dict(stored))
            armed += 1
        log.info("due-index rebuilt for partitions %s: %d users armed", sorted(assigned), armed)

    def _config_changed(self, old: SequenceConfig | None, new: SequenceConfig | None) -> None:
        resumed = new is None or new.status is not Status.PAUSED
        if old is not None and old.status is Status.PAUSED and resumed:
            woken = self.due.resume(old.id, to_ms(self.clock()))
            log.info("sequence %s left PAUSED: %d parked users re-armed", old.id, woken)

    # --- shared state ------------------------------------------------------------------------
    async def _publish_stats(self) -> None:
        dirty, self._dirty_stats = self._dirty_stats, set()
        if dirty:
            for (kind, config_id, step_id), groups in group_counts(self.stats).items():
                self.metrics.context_groups.labels(kind, config_id, step_id).set(groups)
        for stat_key in dirty:
            counts = self._local_stats.get(stat_key)
            if counts is not None:
                await self.app.producer.send(
                    self.settings.topic_stats,
                    stat_key.encode(),
                    orjson.dumps(counts),
                    partition=None,
                    timestamp=None,
                    headers=None,
                )

    async def report_lag(self) -> None:
        """Per input partition: the broker's end offset minus the next offset fully processed
        (for the inputs: outputs sent and state stored; for the events: forwarded and
        committed), i.e. what is still to do or would be redone after a crash. Before the
        first batch of an inputs partition, the stored position stands in, else the
        committed offset, else the log start."""
        with contextlib.suppress(Exception):  # an assignment in flux: next time
            for partition, lag in (await self.intake.lag()).items():
                self.metrics.consumer_lag.labels(self.settings.topic_events, str(partition)).set(
                    lag
                )
        consumer = self.app.consumer
        topic = self.settings.topic_inputs
        assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
        with contextlib.suppress(Exception):
            ends = await consumer.highwaters(*assigned) if assigned else {}
            starts = await consumer.earliest_offsets(*assigned) if assigned else {}
            for tp in assigned:
                processed = self._processed.get((tp.topic, tp.partition))
                done = processed + 1 if processed is not None else _committed(consumer, tp)
                if done is None:
                    done = starts.get(tp)
                end = ends.get(tp)
                if end is not None and done is not None:
                    self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                        max(end - done, 0)
                    )
        self.metrics.timers_in_flight.set(self.due.in_flight)
        self.metrics.timers_armed.set(len(self.due))

    # --- dead letters -----------------------------------------------------------------------
    def _rejection(self, rejection: Rejection, message: Any) -> list[Outgoing]:
        """A dead letter and its `event_rejected` activity, sent with the batch's outputs."""
        source = SourcePosition(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key.decode(errors="replace")[:256] if message.key else None,
        )
        now = self.clock()
        letter = dead_letter(rejection, message.value, source, now, service="engine")
        activity = rejected_activity(rejection, source, now)
        self.metrics.dead_letters.labels(rejection.reason.value).inc()
        return [
            Outgoing(self.settings.topic_dlq, message.key, _dump(letter)),
            Outgoing(self.settings.topic_activities, message.key, _dump(activity)),
        ]


def _committed(consumer: Any, tp: Any) -> int | None:
    """Faust's record of the partition's committed offset (read from the broker on
    assignment, updated on every commit)."""
    offset = consumer._committed_offset.get(tp)
    return int(offset) if offset is not None else None


def _position(message: Any) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset


def _processing_error(exc: Exception) -> Rejection:
    error = FieldError(loc="", message=str(exc)[:1000], type=type(exc).__name__)
    return Rejection(RejectReason.PROCESSING_ERROR, (error,))


def _invalid_input(exc: ValidationError) -> Rejection:
    errors = tuple(
        FieldError(loc=".".join(str(p) for p in e["loc"]), message=e["msg"], type=e["type"])
        for e in exc.errors(include_url=False, include_input=False)[:20]
    )
    return Rejection(RejectReason.VALIDATION_FAILED, errors)
