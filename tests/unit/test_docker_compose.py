"""docker-compose.yml, deploy/Dockerfile and the Prometheus config agree with the code.

There is no Docker engine in CI, so the stack is checked statically: every SME_* variable is a
real setting with a valid value, the services run real `sme` subcommands, and the published
ports, DSNs and scrape targets line up with the settings the services are given.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sme.cli import build_parser
from sme.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = "deploy/Dockerfile"
SME_SERVICES = ("engine", "gateway")
# The setting that carries each SME service's listening port.
PORT_SETTING = {"engine": "SME_ENGINE_WEB_PORT", "gateway": "SME_HTTP_PORT"}


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or a KEY=VALUE list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def container_ports(service: dict[str, Any]) -> set[int]:
    """Container-side ports a service publishes (short "host:container" or long syntax)."""
    ports: set[int] = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/", 1)[0].rsplit(":", 1)[-1]))
    return ports


def valid_env_names() -> set[str]:
    return {"SME_" + name.upper() for name in Settings.model_fields}


def sme_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in environment(service).items() if k.startswith("SME_")}


def settings_of(service: dict[str, Any]) -> Settings:
    """The Settings a service would start with (its SME_* values, validated by the model)."""
    overrides = {
        name.removeprefix("SME_").lower(): value for name, value in sme_env(service).items()
    }
    return Settings(**overrides)


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    return cmd.split() if isinstance(cmd, str) else list(cmd or [])


def kafka_listeners(env: dict[str, str], key: str) -> dict[str, str]:
    """NAME://host:port,... as {NAME: "host:port"}."""
    return dict(item.split("://", 1) for item in env[key].split(",") if item)


# --- the stack ---------------------------------------------------------------------------


def test_the_stack_has_kafka_clickhouse_engine_gateway_and_prometheus(services):
    assert {"kafka", "clickhouse", "engine", "gateway", "prometheus"} <= set(services)


def test_kafka_is_the_apache_image_running_kraft_broker_and_controller_in_one_node(services):
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    controller_port = kafka_listeners(env, "KAFKA_LISTENERS")[controller].rsplit(":", 1)[1]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:{controller_port}"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        assert env[key] == "1", key
    assert "kafka-broker-api-versions.sh" in " ".join(map(str, kafka["healthcheck"]["test"]))


def test_the_services_bootstrap_from_a_listener_that_kafka_advertises(services):
    advertised = set(
        kafka_listeners(environment(services["kafka"]), "KAFKA_ADVERTISED_LISTENERS").values()
    )
    for name in SME_SERVICES:
        servers = sme_env(services[name])["SME_KAFKA_BOOTSTRAP_SERVERS"].split(",")
        assert set(servers) <= advertised, name


def test_clickhouse_has_credentials_a_volume_and_a_healthcheck(services):
    clickhouse = services["clickhouse"]
    assert clickhouse["image"].startswith("clickhouse/clickhouse-server:")
    env = environment(clickhouse)
    assert {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DB"} <= set(env)
    assert 8123 in container_ports(clickhouse)
    assert clickhouse["volumes"]
    assert clickhouse["healthcheck"]["test"]


# --- the SME services --------------------------------------------------------------------


def test_engine_and_gateway_build_from_the_deploy_dockerfile(services):
    assert (ROOT / DOCKERFILE).is_file()
    for name in SME_SERVICES:
        build = services[name]["build"]
        assert (ROOT / build["context"]).resolve() == ROOT, name
        assert build["dockerfile"] == DOCKERFILE, name


def test_the_image_runs_the_sme_cli_as_a_non_root_user_and_exposes_both_ports():
    text = (ROOT / DOCKERFILE).read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert 'ENTRYPOINT ["sme"]' in text
    assert 'CMD ["gateway"]' in text
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    exposed = {
        int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.MULTILINE) for p in line.split()
    }
    assert exposed >= {Settings.model_fields[f].default for f in ("http_port", "engine_web_port")}


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", ".data", ".git"} <= ignored


def test_engine_and_gateway_run_their_own_sme_subcommand(services):
    parser = build_parser()
    for name in SME_SERVICES:
        argv = command(services[name])
        assert argv == [name]
        assert parser.parse_args(argv).command == name


def test_every_sme_variable_is_a_real_setting(services):
    valid = valid_env_names()
    used = {
        (service_name, var)
        for service_name, service in services.items()
        for var in environment(service)
        if var.startswith("SME_")
    }
    assert used, "no SME_* variables found"
    unknown = sorted(f"{service}: {var}" for service, var in used if var not in valid)
    assert not unknown, f"not fields of sme.settings.Settings: {unknown}"


def test_every_sme_value_passes_settings_validation(services):
    for service in services.values():
        if sme_env(service):
            settings_of(service)  # raises ValidationError on a bad value


def test_engine_and_gateway_publish_the_port_they_listen_on(services):
    for name in SME_SERVICES:
        port = int(sme_env(services[name])[PORT_SETTING[name]])
        assert port in container_ports(services[name]), name
    assert settings_of(services["engine"]).engine_web_host == "0.0.0.0"  # noqa: S104
    assert settings_of(services["gateway"]).http_host == "0.0.0.0"  # noqa: S104


def test_engine_keeps_its_state_on_a_volume_at_its_data_dir(services):
    engine = services["engine"]
    data_dir = sme_env(engine)["SME_DATA_DIR"]
    targets = {
        str(v).split(":")[1] if isinstance(v, str) else v["target"]
        for v in engine.get("volumes") or []
    }
    assert data_dir in targets
    assert sme_env(engine)["SME_ENGINE_INSTANCE"]


def test_the_gateway_writes_to_the_clickhouse_service_over_http(services):
    gateway_env = sme_env(services["gateway"])
    dsn = urlsplit(gateway_env["SME_CLICKHOUSE_DSN"])
    clickhouse = services["clickhouse"]
    ch_env = environment(clickhouse)
    assert dsn.scheme == "http"
    assert dsn.hostname == "clickhouse"
    assert dsn.port in container_ports(clickhouse)
    assert dsn.username == ch_env["CLICKHOUSE_USER"]
    assert dsn.password == ch_env["CLICKHOUSE_PASSWORD"]
    assert dsn.path.strip("/") == ch_env["CLICKHOUSE_DB"] == gateway_env["SME_CLICKHOUSE_DATABASE"]
    assert not settings_of(services["gateway"]).is_embedded_clickhouse


def test_services_wait_for_healthy_dependencies(services):
    assert depends_on(services["engine"]) == {"kafka": "service_healthy"}
    assert depends_on(services["gateway"]) == {
        "kafka": "service_healthy",
        "clickhouse": "service_healthy",
    }
    for dependency in ("kafka", "clickhouse"):
        assert services[dependency].get("healthcheck"), dependency


def test_the_gateway_healthcheck_probes_healthz_on_its_http_port(services):
    gateway = services["gateway"]
    probe = " ".join(map(str, gateway["healthcheck"]["test"]))
    port = sme_env(gateway)["SME_HTTP_PORT"]
    assert "urllib" in probe
    assert f":{port}/healthz" in probe


# --- prometheus --------------------------------------------------------------------------


def prometheus_config(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    mounts = [str(v).split(":") for v in services["prometheus"]["volumes"]]
    [source] = [src for src, target, *_ in mounts if target == "/etc/prometheus/prometheus.yml"]
    path = (COMPOSE_FILE.parent / source).resolve()
    assert path.is_file(), path
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_prometheus_scrapes_engine_and_gateway_metrics_every_15s(services):
    config = prometheus_config(services)
    default_interval = config.get("global", {}).get("scrape_interval", "1m")
    scraped: dict[str, tuple[str, str]] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                scraped[target] = (
                    job.get("metrics_path", "/metrics"),
                    job.get("scrape_interval", default_interval),
                )
    for name in SME_SERVICES:
        target = f"{name}:{sme_env(services[name])[PORT_SETTING[name]]}"
        assert scraped.get(target) == ("/metrics", "15s"), target
