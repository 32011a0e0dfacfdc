"""The engine's Prometheus metrics, all on one injected registry (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sme.supervisor import WorkerMetrics

MAX_EVENT_TYPE_LABELS = 100
"""Event types come from upstream apps; past this many distinct ones they count as 'other'."""


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events_in = Counter(
            "sme_events_in_total", "Valid events consumed, by type.", ["type"], registry=registry
        )
        self.dead_letters = Counter(
            "sme_dead_letters_total",
            "Messages sent to the DLQ, by reason.",
            ["reason"],
            registry=registry,
        )
        self.commands_out = Counter(
            "sme_commands_out_total",
            "Commands emitted, by channel.",
            ["channel"],
            registry=registry,
        )
        self.activities_out = Counter(
            "sme_activities_out_total", "Activities emitted, by type.", ["type"], registry=registry
        )
        self.decision_seconds = Histogram(
            "sme_decision_latency_seconds",
            "Time to decide a batch, have its outputs acknowledged and its state stored.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=registry,
        )
        self.batch_size = Histogram(
            "sme_decision_batch_size",
            "Inputs per decided batch.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=registry,
        )
        self.delivery_retries = Counter(
            "sme_delivery_retries_total",
            "Output sends retried after the broker refused or timed out (never dropped).",
            registry=registry,
        )
        self.suppressions = Counter(
            "sme_suppressions_total",
            "Deferred, skipped or suppressed steps, by reason.",
            ["reason"],
            registry=registry,
        )
        self.timer_lateness = Histogram(
            "sme_timer_lateness_seconds",
            "How late a due step was woken.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 30.0),
            registry=registry,
        )
        self.inputs_replayed = Counter(
            "sme_inputs_replayed_total",
            "Redelivered inputs skipped because their decision was already stored.",
            registry=registry,
        )
        self.inputs_rewound = Counter(
            "sme_inputs_rewound_total",
            "Times an inputs partition was read again from an input never decided.",
            registry=registry,
        )
        self.workers = WorkerMetrics(registry)  # sme_worker_{restarts_total,up}{worker}
        self.ticks_sent = Counter(
            "sme_timer_ticks_sent_total",
            "Tick records sent (each wakes up to 1000 users).",
            registry=registry,
        )
        self.ticks_unchanged = Counter(
            "sme_timer_wakeups_unchanged_total",
            "Woken users whose state did not change (no state write).",
            registry=registry,
        )
        self.timer_failures = Counter(
            "sme_timer_failures_total",
            "Wake-ups dead-lettered after the core raised on every try.",
            registry=registry,
        )
        self.timers_armed = Gauge(
            "sme_timers_armed", "Users in the due-index (armed or in flight).", registry=registry
        )
        self.timers_in_flight = Gauge(
            "sme_timers_in_flight",
            "Users woken whose tick is not yet processed.",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "sme_engine_consumer_lag",
            "Messages not yet processed (outputs sent and state stored), per input partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.context_groups = Gauge(
            "sme_policy_context_groups",
            "Context groups (pooled excluded) the population statistics hold, per kind (c "
            "channel, v variant, u unsubscribe, t send hour), sequence and step: bounded by "
            "the core's buckets; a sequence near the bound has an attribute worth reviewing.",
            ["kind", "config", "step"],
            registry=registry,
        )
        self._types: set[str] = set()

    def event_type_label(self, event_type: str) -> str:
        if event_type in self._types or len(self._types) < MAX_EVENT_TYPE_LABELS:
            self._types.add(event_type)
            return event_type
        return "other"
