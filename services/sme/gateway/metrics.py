"""The gateway's Prometheus metrics on one injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sme.supervisor import WorkerMetrics


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.workers = WorkerMetrics(registry)  # sme_worker_{restarts_total,up}{worker}
        self.sink_rows = Counter(
            "sme_sink_rows_total", "Activity rows inserted into ClickHouse.", registry=registry
        )
        self.sink_batches = Counter(
            "sme_sink_batches_total", "Batches inserted into ClickHouse.", registry=registry
        )
        self.sink_errors = Counter(
            "sme_sink_errors_total", "Failed insert attempts (each is retried).", registry=registry
        )
        self.sink_backoff_seconds = Gauge(
            "sme_sink_backoff_seconds",
            "Current retry delay while ClickHouse refuses the sink's writes (0: storing).",
            registry=registry,
        )
        self.sink_dead_letters = Counter(
            "sme_sink_dead_letters_total",
            "Unreadable activity messages sent to the DLQ.",
            registry=registry,
        )
        self.automation_warnings = Counter(
            "sme_automation_warnings_total",
            "Automation rules past their warning share, by metric.",
            ["metric"],
            registry=registry,
        )
        self.sink_lag = Gauge(
            "sme_sink_consumer_lag",
            "Activity messages not yet read by the sink, by partition.",
            ["partition"],
            registry=registry,
        )
        self.sink_insert_seconds = Histogram(
            "sme_sink_insert_seconds",
            "Insert latency per batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.erasures_requested = Counter(
            "sme_erasures_requested_total",
            "Erasure requests accepted (202) by this gateway.",
            registry=registry,
        )
        self.erasures_refused = Counter(
            "sme_erasures_rate_limited_total",
            "Erasure requests refused with 429 (per-workspace rate limit).",
            registry=registry,
        )
        self.erasures_completed = Counter(
            "sme_erasures_completed_total",
            "Erasures whose rows the sink deleted (and rollup days recomputed).",
            registry=registry,
        )
        self.erasure_seconds = Histogram(
            "sme_erasure_seconds",
            "From the erasure request to its rows being gone from ClickHouse.",
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
            registry=registry,
        )
        self.tracking_hits = Counter(
            "sme_tracking_hits_total",
            "Tracking link hits by kind (open, click, unsubscribe) and outcome (recorded, "
            "refused: forged, altered or expired; limited: 429).",
            ["kind", "outcome"],
            registry=registry,
        )
