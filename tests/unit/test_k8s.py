"""deploy/k8s stays in step with docker-compose.yml and config.yaml: a
Deployment per service, each non-root with probes and limits, only
environment variables the code reads, and kustomization.yaml listing it all."""
import re
from pathlib import Path

import pytest
import yaml

from shared import services

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
APP_SERVICES = {name: svc["environment"]["SERVICE"] for name, svc in COMPOSE.items()
                if "SERVICE" in (svc.get("environment") or {})}


def _documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


DOCS = _documents()
DEPLOYMENTS = {d["metadata"]["name"]: d for d in DOCS if d["kind"] == "Deployment"}


def _container(name: str) -> dict:
    (container,) = DEPLOYMENTS[name]["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_compose_runs_every_service_of_the_mesh():
    assert APP_SERVICES == {**services.SERVICES, services.GATEWAY: "gateway_svc"}


def test_every_compose_service_has_a_deployment_running_its_package():
    assert set(DEPLOYMENTS) == set(APP_SERVICES) | {"web"}
    for name, package in APP_SERVICES.items():
        assert _env(_container(name))["SERVICE"] == package


def test_the_web_console_runs_like_in_compose_with_probes_a_service_and_its_own_users():
    container = _container("web")
    assert container["command"] == COMPOSE["web"]["command"] == ["python", "-m", "web_svc"]
    pod = DEPLOYMENTS["web"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "exec" not in container["livenessProbe"]
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    services = [d for d in DOCS if d["kind"] == "Service"]
    assert any(s["spec"]["selector"] == DEPLOYMENTS["web"]["spec"]["selector"]["matchLabels"]
               for s in services)
    secrets = {d["metadata"]["name"]: d["stringData"] for d in DOCS if d["kind"] == "Secret"}
    assert secrets["workforce-web"]["RABBITMQ_MANAGEMENT_URL"].startswith("http://wf-web:")
    assert "SERVICE_PASSWORD_WEB" in secrets["workforce-access"]
    # people's data only through the gateway: no database, no shared secrets
    refs = [s[k]["name"] for s in container["envFrom"] for k in s]
    assert "workforce-secrets" not in refs


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_deployment_runs_as_non_root_with_probes_and_limits(name):
    pod = DEPLOYMENTS[name]["spec"]["template"]["spec"]
    container = _container(name)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    for probe in ("livenessProbe", "readinessProbe"):
        assert probe in container, probe
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["limits"]) and {"cpu", "memory"} <= set(resources["requests"])


def test_readiness_checks_dependencies_and_liveness_only_the_process():
    compose_check = COMPOSE["auth"]["healthcheck"]["test"][1:]  # ["CMD", *command]
    for name in APP_SERVICES:
        container = _container(name)
        liveness = container["livenessProbe"]
        # an outage of Redis, MongoDB or the broker must not restart every pod
        assert "exec" not in liveness, f"{name}: liveness runs the dependency check"
        if name == "gateway":
            assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
            assert liveness["tcpSocket"]["port"] == "http"
        else:
            assert container["readinessProbe"]["exec"]["command"] == compose_check
            assert liveness["httpGet"]["port"] == "metrics"


def test_every_deployment_has_a_cpu_autoscaler_and_a_disruption_budget():
    hpas = {d["spec"]["scaleTargetRef"]["name"]: d for d in DOCS
            if d["kind"] == "HorizontalPodAutoscaler"}
    pdbs = {d["metadata"]["name"]: d for d in DOCS if d["kind"] == "PodDisruptionBudget"}
    single = {name for name in DEPLOYMENTS if name in services.SINGLE_PROCESS}
    assert set(hpas) == set(DEPLOYMENTS) - single and set(pdbs) == set(DEPLOYMENTS)
    for name in single:  # one writer of its index (docs/search.md): one pod, replaced not rolled
        spec = DEPLOYMENTS[name]["spec"]
        assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    for name, hpa in hpas.items():
        assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        labels = DEPLOYMENTS[name]["spec"]["selector"]["matchLabels"]
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == labels
        assert pdbs[name]["spec"]["maxUnavailable"] == 1


def test_metrics_ports_are_annotated_for_prometheus():
    for name in APP_SERVICES:
        annotations = DEPLOYMENTS[name]["spec"]["template"]["metadata"]["annotations"]
        ports = {p["containerPort"] for p in _container(name)["ports"]}
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) in ports


def test_the_gateway_has_a_service():
    services = [d for d in DOCS if d["kind"] == "Service"]
    assert any(s["spec"]["selector"] == DEPLOYMENTS["gateway"]["spec"]["selector"]["matchLabels"]
               for s in services)


def test_environment_names_are_ones_config_yaml_or_compose_uses():
    known = set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", (ROOT / "config.yaml").read_text()))
    known |= set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", (ROOT / "docker-compose.yml").read_text()))
    used = set()
    for doc in DOCS:
        if doc["kind"] in ("ConfigMap", "Secret"):
            used |= set(doc.get("data") or {}) | set(doc.get("stringData") or {})
    for name in DEPLOYMENTS:
        used |= set(_env(_container(name)))
    assert used and not used - known, f"unknown: {sorted(used - known)}"


def test_every_deployment_reads_the_configmap_and_secret_that_exist():
    names = {(d["kind"], d["metadata"]["name"]) for d in DOCS}
    for name in DEPLOYMENTS:
        for source in _container(name)["envFrom"]:
            ((kind, ref),) = source.items()
            assert ({"configMapRef": "ConfigMap", "secretRef": "Secret"}[kind], ref["name"]) in names


def test_the_secrets_are_templates_with_placeholders():
    secrets = [d for d in DOCS if d["kind"] == "Secret"]
    values = [v for secret in secrets for v in secret["stringData"].values()]
    assert values and all(v == "" or "CHANGE_ME" in v for v in values)


def test_each_service_reads_its_own_broker_user_and_never_the_admin():
    secrets = {d["metadata"]["name"]: d["stringData"] for d in DOCS if d["kind"] == "Secret"}
    assert "AMQP_URI" in secrets["workforce-access"]  # the access Job's admin
    for name in DEPLOYMENTS:
        refs = [s["secretRef"]["name"] for s in _container(name)["envFrom"] if "secretRef" in s]
        assert "workforce-access" not in refs
        env = {k: v for ref in refs for k, v in secrets[ref].items()}
        assert env["AMQP_URI"].startswith(f"pyamqp://wf-{name}:"), name
        assert env["REDIS_URI"].startswith(f"redis://wf-{name}:"), name
    (job,) = [d for d in DOCS if d["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == [
        "ops.mesh", "users"]


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_compose_and_k8s_run_event_queues_as_quorum_queues():
    configmap = next(doc for doc in _documents() if doc["kind"] == "ConfigMap")
    assert configmap["data"]["EVENT_QUEUE_TYPE"] == "quorum"
    for name in ("auth", "tasks", "notifications"):
        assert COMPOSE[name]["environment"]["EVENT_QUEUE_TYPE"] == "quorum"


def test_k8s_runs_a_state_redis_that_never_evicts_and_a_cache_redis_that_does():
    sets = {d["metadata"]["name"]: d for d in DOCS if d["kind"] == "StatefulSet"}
    for name, policy in (("redis", "noeviction"), ("redis-cache", "allkeys-lru")):
        (container,) = sets[name]["spec"]["template"]["spec"]["containers"]
        args = " ".join(container["args"])
        assert f"--maxmemory-policy {policy}" in args and "--maxmemory " in args, name
        assert container["resources"]["limits"]["memory"], name
        assert sets[name]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    (state,) = sets["redis"]["spec"]["template"]["spec"]["containers"]
    assert "--appendonly yes" in " ".join(state["args"]) and "--save" in state["args"]
    assert sets["redis"]["spec"]["volumeClaimTemplates"]  # RDB + AOF outlive the pod
    services = {d["metadata"]["name"] for d in DOCS if d["kind"] == "Service"}
    assert {"redis", "redis-cache"} <= services
    secrets = {d["metadata"]["name"]: d["stringData"] for d in DOCS if d["kind"] == "Secret"}
    assert "@redis-cache:" in secrets["workforce-access"]["REDIS_CACHE_URI"]
    for name in DEPLOYMENTS:
        refs = [s["secretRef"]["name"] for s in _container(name)["envFrom"] if "secretRef" in s]
        env = {k: v for ref in refs for k, v in secrets[ref].items()}
        assert env["REDIS_CACHE_URI"].startswith(f"redis://wf-{name}:"), name
        assert "@redis-cache:" in env["REDIS_CACHE_URI"] and "@redis:" in env["REDIS_URI"], name
