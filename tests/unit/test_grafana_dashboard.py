"""The Grafana dashboard under deploy/ only charts metrics the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from sme.engine.metrics import EngineMetrics
from sme.gateway.metrics import GatewayMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "sme-dashboard.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_series() -> set[str]:
    engine, gateway = CollectorRegistry(), CollectorRegistry()  # one per service: both export
    EngineMetrics(engine)  # the supervisor's sme_worker_* series, labelled by worker
    GatewayMetrics(gateway)
    return {
        family.name + suffix
        for registry in (engine, gateway)
        for family in registry.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def test_every_series_the_dashboard_queries_is_exported() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queried = {
        name
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"\bsme_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard queries something"
    assert queried <= exported_series(), f"not exported: {sorted(queried - exported_series())}"
