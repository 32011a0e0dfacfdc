"""Faust's Prometheus sensor without its per-message costs.

Faust calls its monitor for every message in, every stream event in and out, every table get
and set and every changelog send; the stock `PrometheusMonitor` does a labelled metric look-up
and Monitor's own bookkeeping (timestamps, deques) in each, about 5% of the engine's time under
load. The engine keeps what an operator reads from Faust (messages received per topic and
partition offset, commits, rebalances, assignment, send errors, end offsets) and leaves the
per-event figures to its own metrics, counted per batch (`sme_decision_seconds`,
`sme_batch_size`, `sme_commands_out_total`, `sme_activities_out_total`, lag)."""

from __future__ import annotations

from typing import Any

from faust.sensors.prometheus import PrometheusMonitor, setup_prometheus_sensors
from faust.types import TP, AppT, CollectionT, EventT, Message, StreamT
from faust.types.transports import ProducerT
from faust.types.tuples import PendingMessage, RecordMetadata
from prometheus_client import CollectorRegistry


class LeanPrometheusMonitor(PrometheusMonitor):
    """Per-message hooks reduced to unlabelled counter increments (or nothing)."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        # Kept: `messages_received` per topic is the engine's input rate as Faust sees it.
        self.messages_received_total += 1
        self.messages_received_by_topic[tp.topic] += 1
        self._metrics.messages_received.inc()
        self._metrics.messages_received_per_topics.labels(topic=tp.topic).inc()

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        return None

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(
        self,
        tp: TP,
        offset: int,
        stream: StreamT[Any],
        event: EventT[Any],
        state: dict[str, Any] | None = None,
    ) -> None:
        return None

    def on_table_get(self, table: CollectionT, key: Any) -> None:
        return None

    def on_table_set(self, table: CollectionT, key: Any, value: Any) -> None:
        return None

    def on_send_initiated(
        self,
        producer: ProducerT,
        topic: str,
        message: PendingMessage,
        keysize: int,
        valsize: int,
    ) -> Any:
        return None

    def on_send_completed(self, producer: ProducerT, state: Any, metadata: RecordMetadata) -> None:
        self._metrics.total_sent_messages.inc()

    def on_send_error(self, producer: ProducerT, exc: BaseException, state: Any) -> None:
        self._metrics.total_error_messages_sent.inc()


def install(app: AppT, registry: CollectorRegistry, name_prefix: str) -> None:
    """Faust's metrics (`<prefix>_…`) on `registry`, served on the app's /metrics page, kept
    by the lean monitor."""
    setup_prometheus_sensors(app, registry=registry, name_prefix=name_prefix)
    stock = app.monitor
    assert isinstance(stock, PrometheusMonitor)  # noqa: S101 - what setup_prometheus_sensors sets
    app.monitor = LeanPrometheusMonitor(metrics=stock._metrics)
