"""deploy/k8s agrees with Kubernetes and with the code.

No cluster in CI: the kustomization is rendered (in Python for the fields it uses, compared
with `kubectl kustomize` where kubectl is installed), every object is validated offline and
strictly against the Kubernetes JSON schemas bundled in `kubernetes-validate`, and the
semantics a schema cannot see are checked against the code: env names are settings with valid
values, probes reach routes the services serve on ports the containers expose, the engines
keep their stores on per-pod volumes, images and replica counts agree with the docs.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sme.cli import build_parser
from sme.engine.app import Engine
from sme.gateway.app import create_app
from sme.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
README = (ROOT / "README.md").read_text(encoding="utf-8")
# The oldest Kubernetes the README promises, and the newest whose schemas are bundled.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
RENDERED_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images"}
CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"StatefulSet", "Deployment"}
# What the Secret-backed env vars stand for when the settings are validated.
SECRET_STANDINS = {
    "clickhouse-dsn": "http://sme:secret@clickhouse.example:8123/sme",
    "admin-api-key": "Q7v9Lm2Rt5Wp8Zk3Hn6Jd4Fs1Bx0Cy",
}


# --- rendering ---------------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))


def render() -> list[dict[str, Any]]:
    """The objects `kubectl kustomize deploy/k8s` gives, for the fields this kustomization
    uses: each resource file's documents, the namespace set on namespaced objects, the images
    rewritten. Another field makes this fail rather than render something else."""
    spec = kustomization()
    assert set(spec) <= RENDERED_FIELDS, f"render() does not apply {set(spec) - RENDERED_FIELDS}"
    images = {
        image["name"]: f"{image.get('newName', image['name'])}:{image['newTag']}"
        for image in spec.get("images", [])
    }
    objects = []
    for resource in spec["resources"]:
        text = (K8S / resource).read_text(encoding="utf-8")
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            doc = copy.deepcopy(doc)
            if doc["kind"] not in CLUSTER_SCOPED and "namespace" in spec:
                doc["metadata"]["namespace"] = spec["namespace"]
            for container in containers(doc):
                container["image"] = images.get(container["image"], container["image"])
            objects.append(doc)
    return objects


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render()


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("spec", {}).get("template", {}).get("spec", {})


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def sme_subcommand(container: dict[str, Any]) -> str:
    return str(build_parser().parse_args(container["args"]).command)


def container_env(obj: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """A container's environment as the pod would see it: the ConfigMaps it takes whole, then
    its own entries; a pod-name field is the first pod's name, a Secret key its stand-in."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= configmap(source["configMapRef"]["name"])["data"]
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        ref = entry["valueFrom"]
        if "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] == "metadata.name", entry
            env[entry["name"]] = f"{obj['metadata']['name']}-0"
        else:
            env[entry["name"]] = SECRET_STANDINS[ref["secretKeyRef"]["key"]]
    return env


def configmap(name: str) -> dict[str, Any]:
    return one(render(), "ConfigMap", name)


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(**{name.removeprefix("SME_").lower(): value for name, value in env.items()})


def engine(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    workload = one(objects, "StatefulSet", "sme-engine")
    [container] = pod_spec(workload)["containers"]
    return workload, container


def gateway(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    workload = one(objects, "Deployment", "sme-gateway")
    [container] = pod_spec(workload)["containers"]
    return workload, container


def named_ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: int(p["containerPort"]) for p in container.get("ports", [])}


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    ports = named_ports(container)
    assert port in ports, f"port {port!r} is not one {container['name']} exposes: {ports}"
    return ports[port]


def served_paths(subcommand: str, tmp_path: Path) -> set[str]:
    """The HTTP paths the service behind `sme <subcommand>` serves, from the app itself."""
    if subcommand == "engine":
        built = Engine(Settings(data_dir=tmp_path, engine_store="memory"))
        return {route.resource.canonical for route in built.app.web.web_app.router.routes()}
    assert subcommand == "gateway"
    return set(create_app(Settings(data_dir=tmp_path)).openapi()["paths"])


def listening_port(subcommand: str, settings: Settings) -> int:
    return settings.engine_web_port if subcommand == "engine" else settings.http_port


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def readme_section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


# --- Kubernetes itself -------------------------------------------------------------------


def test_the_python_render_is_what_kubectl_kustomize_gives(objects):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the schema and semantic checks still run")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    theirs = [doc for doc in yaml.safe_load_all(out) if doc]

    def key(o: dict[str, Any]) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    assert sorted(theirs, key=key) == sorted(objects, key=key)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_strictly_against_the_kubernetes_schemas(objects, version):
    assert len(objects) >= 10
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {exc.message}")


def test_every_object_is_namespaced_and_labelled_as_part_of_sme(objects):
    namespace = kustomization()["namespace"]
    assert one(objects, "Namespace", namespace)
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sme", obj["kind"]
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == namespace


# --- the services' settings --------------------------------------------------------------


def test_every_variable_is_a_setting_and_every_value_passes_its_validation(objects):
    valid = {"SME_" + name.upper() for name in Settings.model_fields}
    for workload in [o for o in objects if o["kind"] in WORKLOADS]:
        for container in containers(workload):
            env = container_env(workload, container)
            unknown = sorted(set(env) - valid)
            assert not unknown, f"{container['name']}: not fields of Settings: {unknown}"
            settings_of(env)  # raises ValidationError on a bad value
    assert set(configmap("sme-config")["data"]) <= valid


def test_both_services_run_their_own_subcommand_of_the_dockerfile_image(objects):
    spec = kustomization()
    [image] = spec["images"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    assert image["newTag"] == version, "tag the image with the project version"
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    useradd = re.search(r"useradd[^\n]*--uid (\d+)", dockerfile)
    assert useradd, "deploy/Dockerfile creates no user with a fixed uid"
    uid = int(useradd.group(1))
    subcommands = set()
    for workload in [o for o in objects if o["kind"] in WORKLOADS]:
        assert pod_spec(workload)["securityContext"]["runAsUser"] == uid
        for container in containers(workload):
            assert container["image"] == f"{image['newName']}:{version}"
            subcommands.add(sme_subcommand(container))
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert subcommands == {"engine", "gateway"}


def test_probes_and_scrapes_reach_served_routes_on_the_port_the_service_listens_on(
    objects, tmp_path
):
    for workload in [o for o in objects if o["kind"] in WORKLOADS]:
        [container] = pod_spec(workload)["containers"]
        subcommand = sme_subcommand(container)
        port = listening_port(subcommand, settings_of(container_env(workload, container)))
        served = served_paths(subcommand, tmp_path / subcommand)
        probes = {
            kind: container[kind]["httpGet"]
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
            if kind in container
        }
        assert probes["readinessProbe"]["path"] == "/readyz", subcommand
        assert probes["livenessProbe"]["path"] == "/healthz", subcommand
        for kind, probe in probes.items():
            assert probe["path"] in served, f"{subcommand} {kind}: {probe['path']} not served"
            assert resolve_port(container, probe["port"]) == port, f"{subcommand} {kind}"
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == port
        assert annotations["prometheus.io/path"] == "/metrics" and "/metrics" in served


def test_engines_keep_their_table_store_on_a_volume_of_their_own(objects):
    workload, container = engine(objects)
    settings = settings_of(container_env(workload, container))
    assert settings.engine_store == "rocksdb"
    [instance] = [e for e in container["env"] if e["name"] == "SME_ENGINE_INSTANCE"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # one per pod
    claims = {c["metadata"]["name"]: c for c in workload["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claim = claims[mounts[str(settings.data_dir)]]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert settings.engine_table_dir.is_relative_to(settings.data_dir)
    assert pod_spec(workload)["securityContext"]["fsGroup"] == 10001  # the image's sme user


def test_gateways_use_a_clickhouse_server_named_in_a_secret_never_an_embedded_store(objects):
    workload, container = gateway(objects)
    assert workload["spec"]["replicas"] > 1  # which is why an embedded store cannot serve
    [dsn] = [e for e in container["env"] if e["name"] == "SME_CLICKHOUSE_DSN"]
    assert dsn["valueFrom"]["secretKeyRef"]["name"] == "sme-secrets"
    assert not settings_of(container_env(workload, container)).is_embedded_clickhouse
    _, engine_container = engine(objects)
    assert "SME_CLICKHOUSE_DSN" not in {e["name"] for e in engine_container["env"]}


def test_every_secret_key_used_is_created_by_the_readme_command(objects):
    deployment = readme_section("Deployment")
    command = re.search(r"create secret generic sme-secrets(.*?)\n\n", deployment, re.S)
    assert command, "README Deployment: no `kubectl create secret generic sme-secrets`"
    created = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", command.group(1)))
    used: set[str] = set()
    for workload in [o for o in objects if o["kind"] in WORKLOADS]:
        for container in containers(workload):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "sme-secrets"
                    used.add(ref["key"])
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] == "sme-secrets"
                used |= {item["key"] for item in volume["secret"]["items"]}
    assert used and used <= created, f"README creates {created}, manifests use {used}"
    assert "SME_API_KEYS_FILE" in {e["name"] for e in gateway(objects)[1]["env"]}


# --- scale, disruption, traffic ----------------------------------------------------------


def test_engine_replicas_divide_the_partitions_and_the_readme_says_so(objects):
    workload, container = engine(objects)
    replicas = workload["spec"]["replicas"]
    partitions = settings_of(container_env(workload, container)).topic_partitions
    assert 1 < replicas <= partitions and partitions % replicas == 0
    deployment = readme_section("Deployment")
    assert f"{replicas} engines" in deployment
    assert f"{partitions} partitions" in deployment
    assert workload["spec"]["podManagementPolicy"] == "Parallel"


def test_sizing_figures_quoted_in_the_readme_are_in_benchmarks_md():
    benchmarks = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    table = readme_section("Deployment").split("| BENCHMARKS.md run C |", 1)[1]
    quoted = [
        row.split("|")[2].strip()
        for row in table.split("\n\n", 1)[0].splitlines()
        if row.startswith("| ") and not row.startswith("| ---")
    ]
    assert len(quoted) >= 5
    missing = [figure for figure in quoted if figure not in benchmarks]
    assert not missing, f"not figures of BENCHMARKS.md: {missing}"


def test_engines_stop_gracefully_spread_out_and_are_disrupted_one_at_a_time(objects):
    for workload in [o for o in objects if o["kind"] in WORKLOADS]:
        spec = pod_spec(workload)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert matches(workload["spec"]["selector"]["matchLabels"], labels)
        [term] = spec["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert matches(term["podAffinityTerm"]["labelSelector"]["matchLabels"], labels)
        budgets = [
            b
            for b in by_kind(objects, "PodDisruptionBudget")
            if matches(b["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(budgets) == 1, workload["metadata"]["name"]
        for container in containers(workload):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
            assert "memory" in resources["limits"], container["name"]
    workload, container = engine(objects)
    session = settings_of(container_env(workload, container)).engine_session_timeout_seconds
    assert pod_spec(workload)["terminationGracePeriodSeconds"] > session
    [budget] = [
        b for b in by_kind(objects, "PodDisruptionBudget") if b["metadata"]["name"] == "sme-engine"
    ]
    assert budget["spec"]["maxUnavailable"] == 1


def test_services_and_network_policies_select_pods_and_ports_that_exist(objects):
    pods = [
        (o["spec"]["template"]["metadata"]["labels"], c)
        for o in objects
        if o["kind"] in WORKLOADS
        for c in pod_spec(o)["containers"]
    ]
    for service in by_kind(objects, "Service"):
        selected = [c for labels, c in pods if matches(service["spec"]["selector"], labels)]
        assert selected, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            for container in selected:
                resolve_port(container, port["targetPort"])
    # The StatefulSet's governing Service is headless: stable pod names, no load balancing.
    assert one(objects, "StatefulSet", "sme-engine")["spec"]["serviceName"] == "sme-engine"
    assert one(objects, "Service", "sme-engine")["spec"]["clusterIP"] == "None"
    for policy in by_kind(objects, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        selected = [c for labels, c in pods if matches(selector, labels)]
        assert selected, policy["metadata"]["name"]
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                for container in selected:
                    resolve_port(container, port["port"])
