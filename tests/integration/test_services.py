"""The services' objects on the real API server, with the real Istio and prometheus-operator CRDs (which
`make cluster-up` installs): every custom object the plan holds is admitted and stored, the dashboards load,
a second run changes nothing, and archiving a sandbox removes its route and keeps its volumes.

An environment of its own (throw-away backend, fresh client ids), with the Helm releases off as in dev (no
chart repository is reachable here) and a placeholder registry token; its client namespaces and volumes
are deleted afterwards. The platform namespaces (istio-system, monitoring...) are cluster-wide, shared with
every environment on this cluster like platform-system, and are left in place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from sandbox_infra.environment import load_environment
from sandbox_infra.plan import Plan
from sandbox_infra.routing import ObjectPlan
from tests.integration.engine import kubectl_json, run
from tests.integration.test_orchestrator import Environment, _cleanup, _environment

pytestmark = pytest.mark.integration

PLURALS = {
    "VirtualService": "virtualservices.networking.istio.io",
    "Gateway": "gateways.networking.istio.io",
    "PeerAuthentication": "peerauthentications.security.istio.io",
    "AuthorizationPolicy": "authorizationpolicies.security.istio.io",
    "Telemetry": "telemetries.telemetry.istio.io",
    "ServiceMonitor": "servicemonitors.monitoring.coreos.com",
    "PrometheusRule": "prometheusrules.monitoring.coreos.com",
}


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    environment = _environment(tmp_path_factory.mktemp("services"), "svc")
    try:
        run(
            ["pulumi", "config", "set", "--secret", "--stack", "svc", "sandbox-infra:registryPullToken", "not-real"],
            cwd=environment.path,
            env=environment.env,
        )
        up = environment.sandbox("up", "--all")
        assert all(s["status"] == "ok" for s in up["stacks"]), up
        assert all(not s["policy_violations"] for s in up["stacks"]), up
        yield environment
    finally:
        _cleanup(environment)


def _plan(environment: Environment) -> Plan:
    env = load_environment(environment.name, environment.path)
    return env.plan(env.load_roster())


def _objects(plan: Plan) -> list[ObjectPlan]:
    assert plan.platform.services is not None
    platform = [o for service in plan.platform.services.all() for o in service.objects]
    clients = [o for t in plan.tenants() for part in (t.mesh, t.alerts) if part is not None for o in part.objects()]
    return platform + clients


def _stored(obj: ObjectPlan) -> dict[str, Any]:
    stored: dict[str, Any] = kubectl_json("get", PLURALS[obj.kind], obj.name, "-n", obj.namespace)
    return stored


def test_every_custom_object_is_admitted_and_stored_as_declared(environment: Environment) -> None:
    objects = _objects(_plan(environment))
    assert {o.kind for o in objects} == set(PLURALS)
    for obj in objects:
        stored = _stored(obj)
        assert stored["apiVersion"] == obj.api_version
        # The API server pruned nothing it did not know: the stored spec is the declared one.
        assert stored["spec"] == obj.spec, (obj.kind, obj.namespace, obj.name)


def test_one_route_per_active_sandbox(environment: Environment) -> None:
    for i, client in enumerate(environment.clients):
        spec = kubectl_json("get", PLURALS["VirtualService"], "sandboxes", "-n", f"client-{client}")["spec"]
        routed = {r["match"][0]["headers"]["freelancer-id"]["exact"] for r in spec["http"]}
        assert routed == {f for j, f in enumerate(environment.freelancers) if j % 2 == i}


def test_client_namespaces_get_the_pull_secret_and_the_mesh(environment: Environment) -> None:
    for client in environment.clients:
        namespace = f"client-{client}"
        secret = kubectl_json("get", "secret", "registry-pull", "-n", namespace)
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        account = kubectl_json("get", "serviceaccount", "sandbox", "-n", namespace)
        assert account["imagePullSecrets"] == [{"name": "registry-pull"}]
        labels = kubectl_json("get", "namespace", namespace)["metadata"]["labels"]
        assert labels["istio.io/dataplane-mode"] == "ambient"


def test_a_dashboard_loads(environment: Environment) -> None:
    config_map = kubectl_json("get", "configmap", "sandbox-usage", "-n", "monitoring")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["sandbox-usage.json"])
    assert dashboard["uid"] == "sandbox-usage" and dashboard["title"] == "Sandbox usage by client"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["client"]
    assert all(t["datasource"]["uid"] == "prometheus" for p in dashboard["panels"] for t in p["targets"])


def test_the_platform_stack_reports_the_releases_it_switched_off(environment: Environment) -> None:
    outputs = json.loads(
        run(["pulumi", "stack", "output", "--stack", "svc", "--json"], cwd=environment.path, env=environment.env).stdout
    )
    assert outputs["releases"] == []
    assert outputs["releasesOff"] == ["istio", "kube-prometheus-stack", "loki", "tempo", "alloy", "harbor"]


def test_a_second_up_changes_nothing(environment: Environment) -> None:
    again = environment.sandbox("preview", "--all")
    for stack in again["stacks"]:
        assert set(stack["changes"]) == {"same"}, stack


def test_archiving_a_sandbox_removes_its_route_and_keeps_its_volumes(environment: Environment) -> None:
    # Freelancers 0 and 2 work for client 0; archive freelancer 0's sandbox.
    client, archived, kept = environment.clients[0], environment.freelancers[0], environment.freelancers[2]
    namespace = f"client-{client}"
    volumes = {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in kubectl_json("get", "pvc", "-n", namespace)["items"]
    }
    assert {f"workspace-{archived}", f"home-{archived}"} <= set(volumes)
    roster = environment.path / "roster.yaml"
    base = environment.path / "before-archive.yaml"
    base.write_text(roster.read_text())
    data = yaml.safe_load(roster.read_text())
    data["freelancers"][0]["sandboxes"][0]["state"] = "archived"
    roster.write_text(yaml.safe_dump(data, sort_keys=False))

    up = environment.sandbox("up", "--base", str(base))
    assert [s["stack"] for s in up["stacks"]] == [environment.stack(client)], up
    spec = kubectl_json("get", PLURALS["VirtualService"], "sandboxes", "-n", namespace)["spec"]
    assert [r["match"][0]["headers"]["freelancer-id"]["exact"] for r in spec["http"]] == [kept]
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in kubectl_json("get", "pvc", "-n", namespace)["items"]}
    assert after == volumes  # the same claims, not new ones
    assert not run(
        ["kubectl", "get", "statefulset", f"sandbox-{archived}", "-n", namespace, "--ignore-not-found", "-o", "name"]
    ).stdout.strip()
