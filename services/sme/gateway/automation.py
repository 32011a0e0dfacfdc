"""The automation monitor: every `SME_AUTOMATION_INTERVAL_SECONDS` it measures each active
sequence with rules, once per distinct window of its rules (so every rule is judged over its
own window), asks the pure core which rules warn or pause, and acts: a pause goes through the
configuration service like any change (published, versioned, logged, visible in GET as
`status_reason`); a warning is an activity and a metric, once per rule and window."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.sequences import RUNNING, SequenceConfig, Status
from sme.core.automation import Figures, Verdict, evaluate, windows
from sme.core.ids import stable_id
from sme.gateway.config_service import ConfigService
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.storage.measures import (
    BOUNCED,
    COST,
    EVENT_ROWS,
    EVENTS,
    REJECTED,
    SENT,
    SEQUENCE_ROWS,
    UNSUBSCRIBED,
)

log = logging.getLogger(__name__)

SINCE = "occurred_at >= {since:DateTime64(3, 'UTC')}"
TODAY = "occurred_at >= {today:DateTime64(3, 'UTC')}"
FIGURES_SQL = f"""
SELECT
    {SENT.over_activities(SINCE)},
    {UNSUBSCRIBED.over_activities(SINCE)},
    {BOUNCED.over_activities(SINCE)},
    {COST.over_activities(TODAY)},
    {SENT.per("channel", TODAY)}
FROM {{db}}.activities FINAL
WHERE workspace_id = {{w:String}} AND config_id = {{c:String}} AND {SEQUENCE_ROWS}
  AND occurred_at >= least({{since:DateTime64(3, 'UTC')}}, {{today:DateTime64(3, 'UTC')}})
"""  # noqa: S608 - composed of the measures' constants
"""A sequence's figures over one rule window (and today's spend), by `storage.measures`."""
EVENTS_SQL = f"""
SELECT {EVENTS.over_activities()}, {REJECTED.over_activities()}
FROM {{db}}.activities FINAL
WHERE workspace_id = {{w:String}} AND {EVENT_ROWS} AND {SINCE}
"""  # noqa: S608 - composed of the measures' constants
"""The workspace's events over one rule window: every event, and those dead-lettered."""


class AutomationMonitor:
    def __init__(
        self,
        settings: Settings,
        store: ClickHouseStore,
        configs: ConfigService,
        producer: AIOKafkaProducer,
        warnings: Counter,
    ) -> None:
        self.settings = settings
        self.store = store
        self.configs = configs
        self.producer = producer
        self.warnings = warnings
        # (config, rule) -> (version, window bucket) last warned: one entry per active rule.
        self._warned: dict[tuple[str, str], tuple[int, int]] = {}

    async def check_now(self) -> None:
        """One round, run every `SME_AUTOMATION_INTERVAL_SECONDS` by the gateway's supervisor
        (which logs, counts and retries a failed round with backoff)."""
        await self.check_all(datetime.now(UTC))

    async def check_all(self, now: datetime) -> None:
        checked: set[str] = set()
        for config in self.configs.registry.all_configs():
            if config.status in RUNNING and config.automation_rules:  # DRAINING sends too
                checked.add(config.id)
                await self.check(config, now)
        for key in [k for k in self._warned if k[0] not in checked]:
            del self._warned[key]  # paused, stopped or rule-less: nothing left to dedupe

    async def check(self, config: SequenceConfig, now: datetime) -> None:
        figures = {w: await self._figures(config, now - w, now) for w in windows(config)}
        for verdict in evaluate(config, figures):
            if verdict.action == "pause":
                await self._pause(config, verdict, now)
                return
            await self._warn(config, verdict, now)

    async def _figures(self, config: SequenceConfig, since: datetime, now: datetime) -> Figures:
        today = datetime(now.year, now.month, now.day, tzinfo=UTC)
        params = {"w": config.workspace_id, "c": config.id, "since": since, "today": today}
        sent, unsub, bounced, cost, channels = (
            await self.store.query(FIGURES_SQL, params)
        ).result_rows[0]
        events, rejected = (
            await self.store.query(EVENTS_SQL, {"w": config.workspace_id, "since": since})
        ).result_rows[0]
        per_channel = {str(channel): int(count) for channel, count in channels.items()}
        return Figures(
            int(sent),
            int(unsub),
            int(bounced),
            int(events),
            int(rejected),
            float(cost),
            per_channel,
        )

    async def _pause(self, config: SequenceConfig, verdict: Verdict, now: datetime) -> None:
        reason = {
            "rule": verdict.rule.id,
            "metric": verdict.rule.metric,
            "value": round(verdict.value, 6),
            "threshold": verdict.rule.threshold,
            "volume": verdict.volume,
            "at": now.isoformat(),
        }
        log.warning("automation pauses %s: %s", config.id, reason)
        await self.configs.patch(
            config.id,
            {"status": Status.PAUSED.value, "status_reason": reason},
            config.version,
            f"automation:{verdict.rule.id}",
        )
        await self._activity(ActivityType.AUTOMATION_PAUSED, config, verdict, now, reason)

    async def _warn(self, config: SequenceConfig, verdict: Verdict, now: datetime) -> None:
        bucket = int(now.timestamp() // verdict.rule.window.total_seconds())
        key, last = (config.id, verdict.rule.id), (config.version, bucket)
        if self._warned.get(key) == last:
            return
        self._warned[key] = last
        self.warnings.labels(verdict.rule.metric).inc()
        reason = {
            "rule": verdict.rule.id,
            "metric": verdict.rule.metric,
            "value": round(verdict.value, 6),
            "threshold": verdict.rule.threshold,
            "warn_at": verdict.rule.warn_at,
            "volume": verdict.volume,
        }
        await self._activity(ActivityType.AUTOMATION_WARNING, config, verdict, now, reason)

    async def _activity(
        self,
        kind: ActivityType,
        config: SequenceConfig,
        verdict: Verdict,
        now: datetime,
        details: dict[str, object],
    ) -> None:
        activity = Activity(
            activity_id=stable_id(
                "activity",
                kind.value,
                config.id,
                config.version,
                verdict.rule.id,
                int(now.timestamp() // timedelta(minutes=1).total_seconds()),
            ),
            type=kind,
            workspace_id=config.workspace_id,
            occurred_at=now,
            config_id=config.id,
            config_version=config.version,
            details=details,
        )
        await self.producer.send_and_wait(
            self.settings.topic_activities,
            activity.model_dump_json().encode(),
            key=config.workspace_id.encode(),
        )
