"""The platform's services under Pulumi's mocks: pinned releases and their values, routes, alert rules that
name metrics that exist, dashboards, namespaces, the pull secret, and the release switches."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pulumi
import pulumi_kubernetes as k8s
import pytest

from sandbox_infra import observability, program
from sandbox_infra.charts import ALLOWED_REPOSITORIES, CHARTS, PLATFORM_SECRETS, RELEASE_GROUPS
from sandbox_infra.plan import build_plan
from sandbox_infra.roster import SandboxState, load_roster
from sandbox_infra.settings import (
    RELEASES,
    SettingsError,
    StackSettings,
    settings_from_mapping,
    settings_from_stack_file,
)
from tests.conftest import REPO
from tests.unit.mocks import (
    EXAMPLE_SETTINGS,
    Recorder,
    is_secret,
    placeholder_secrets,
    resolve,
    run_example,
    run_program,
)

CHART = "kubernetes:helm.sh/v4:Chart"
VIRTUAL_SERVICE = "kubernetes:networking.istio.io/v1:VirtualService"
RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
MIRROR = EXAMPLE_SETTINGS.chart_image_mirror

# Metrics that exist where the rules and dashboards read them (names as documented by each project):
KUBE_STATE_METRICS = {  # kube-state-metrics v2 (docs/metrics/workload/pod-metrics.md, policy/resourcequota...)
    "kube_pod_status_ready",
    "kube_pod_status_phase",
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_status_ready",
    "kube_pod_labels",
    "kube_pod_info",
    "kube_resourcequota",
    "kube_statefulset_replicas",
    "kube_statefulset_status_replicas_ready",
    "kube_persistentvolumeclaim_info",
    "kube_namespace_labels",
}
KUBELET_METRICS = {  # the kubelet's own and its cAdvisor endpoint, which kube-prometheus-stack scrapes
    "kubelet_volume_stats_used_bytes",
    "kubelet_volume_stats_capacity_bytes",
    "kubelet_volume_stats_available_bytes",
    "kubelet_volume_stats_inodes_used",
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
}
GEMINI_METRICS = {  # the platform API (design 7.2): a counter and a histogram's three series
    "gemini_prompts_total",
    "gemini_tokens_used_bucket",
    "gemini_tokens_used_sum",
    "gemini_tokens_used_count",
}


@pytest.fixture(scope="module")
def example() -> Recorder:
    return run_example(REPO / "roster.yaml")


def _wire(recorder: Recorder, type_: str) -> dict[str, dict[str, Any]]:
    return {name: wire for (typ, name), wire in recorder.wire.items() if typ == type_}


def _plain(value: Any) -> Any:
    """A wire value with secrets unwrapped (their values are checked separately)."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return _plain(value["value"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) pair of a nested document."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


# --- releases ------------------------------------------------------------------------------------------------


def test_every_release_is_pinned_to_an_exact_version_from_an_allowed_repository(example: Recorder) -> None:
    charts = _wire(example, CHART)
    assert {w["name"] for w in charts.values()} == set(CHARTS)
    for wire in charts.values():
        ref = CHARTS[wire["name"]]
        assert wire["chart"] == ref.chart and wire["version"] == ref.version
        assert re.fullmatch(r"\d+\.\d+\.\d+", wire["version"]), wire["version"]
        assert wire["repositoryOpts"] == {"repo": ref.repository} and ref.repository in ALLOWED_REPOSITORIES
    # The versions whose CRDs the local cluster installs (tools/cluster/crds/README.md).
    assert {n: CHARTS[n].version for n in ("istio-base", "istiod", "istio-ingressgateway")} == dict.fromkeys(
        ("istio-base", "istiod", "istio-ingressgateway"), "1.30.3"
    )
    assert CHARTS["kube-prometheus-stack"].version == "88.5.3"
    assert CHARTS["kube-prometheus-stack"].app_version == "v0.93.1"


def _values(example: Recorder) -> dict[str, Any]:
    return {w["name"]: _plain(w["values"]) for w in _wire(example, CHART).values()}


def test_every_resources_block_has_requests_and_limits(example: Recorder) -> None:
    found = 0
    for release, values in _values(example).items():
        for path, value in _walk(values):
            container = isinstance(value, dict) and "storage" not in value.get("requests", {})  # not a claim's
            if path.endswith(".resources") and container and ("requests" in value or "limits" in value):
                found += 1
                for side in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(value.get(side, {})), f"{release}{path}"
    assert found >= 30


def test_security_contexts_are_restricted(example: Recorder) -> None:
    contexts = 0
    for release, values in _values(example).items():
        for path, value in _walk(values):
            if not isinstance(value, dict) or not re.search(r"(securityContext|SecurityContext)$", path):
                continue
            contexts += 1
            where = f"{release}{path}"
            if "capabilities" in value:  # a container's
                assert value["capabilities"] == {"drop": ["ALL"]}, where
                assert value["allowPrivilegeEscalation"] is False, where
            assert value.get("runAsNonRoot") is True, where
            assert value.get("seccompProfile") == {"type": "RuntimeDefault"}, where
    assert contexts >= 20


def test_images_come_from_the_mirror_with_release_tags(example: Recorder) -> None:
    values = _values(example)
    references = [
        (release, path, value)
        for release, doc in values.items()
        for path, value in _walk(doc)
        if isinstance(value, str) and re.search(r"(\.hub|\.imageRegistry|\.registry|\.repository)$", path)
    ]
    assert len(references) >= 15
    for release, path, value in references:
        if path.endswith(".registry") and "image" not in path:
            continue  # Harbor's own "registry" component, not an image
        assert value.startswith(MIRROR), f"{release}{path} = {value}"
    harbor_tags = {v for p, v in _walk(values["harbor"]) if p.endswith(".image.tag")}
    assert harbor_tags == {"v2.15.1"}
    assert values["istiod"]["global"]["tag"] == values["ztunnel"]["tag"] == "1.30.3"
    operator = values["kube-prometheus-stack"]["prometheusOperator"]
    assert operator["image"]["tag"] == operator["prometheusConfigReloader"]["image"]["tag"] == "v0.93.1"


def test_volumes_are_sized_on_the_platform_storage_class(example: Recorder) -> None:
    values = _values(example)
    sized = [(r, p, v) for r, doc in values.items() for p, v in _walk(doc) if p.endswith((".size", ".storage"))]
    sized = [s for s in sized if isinstance(s[2], str)]
    assert {r for r, _, _ in sized} >= {"kube-prometheus-stack", "loki", "tempo", "harbor"}
    assert all(re.fullmatch(r"\d+Gi", v) for _, _, v in sized), sized
    classes = {v for doc in values.values() for p, v in _walk(doc) if p.endswith(("storageClass", "storageClassName"))}
    assert classes == {EXAMPLE_SETTINGS.platform_storage_class}
    prometheus = values["kube-prometheus-stack"]["prometheus"]["prometheusSpec"]
    assert prometheus["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert values["harbor"]["persistence"]["resourcePolicy"] == "keep"


def test_values_as_intended(example: Recorder) -> None:
    values = _values(example)
    # Ambient mesh: no sidecar, so sandbox pods stay as declared under Pod Security restricted.
    assert {values[r]["profile"] for r in ("istiod", "istio-cni", "ztunnel")} == {"ambient"}
    prometheus = values["kube-prometheus-stack"]["prometheus"]["prometheusSpec"]
    assert prometheus["ruleSelectorNilUsesHelmValues"] is False and prometheus["ruleNamespaceSelector"] == {}
    assert values["kube-prometheus-stack"]["nodeExporter"]["enabled"] is False  # host namespaces
    assert (
        values["loki"]["deploymentMode"] == "SingleBinary" and values["loki"]["loki"]["storage"]["type"] == "filesystem"
    )
    assert "client" in values["alloy"]["alloy"]["configMap"]["content"]


def test_credentials_are_pulumi_secrets_never_helm_defaults(example: Recorder) -> None:
    charts = {w["name"]: w for w in _wire(example, CHART).values()}
    for release in ("kube-prometheus-stack", "harbor"):
        assert SECRET_SIG in charts[release]["values"], f"{release} values carry a credential: they must be secret"
    for release in ("loki", "tempo", "alloy", "istiod"):
        assert SECRET_SIG not in json.dumps(charts[release]["values"]), release
    harbor = _plain(charts["harbor"]["values"])
    assert harbor["harborAdminPassword"] == "harborAdminPassword-not-real"
    assert harbor["registry"]["credentials"]["htpasswdString"] == "harborRegistryHtpasswd-not-real"
    # No credential left to a chart default (Harbor12345, not-a-secure-key, prom-operator).
    text = json.dumps(_values(example))
    assert not re.search(r"Harbor12345|not-a-secure-key|prom-operator|changeit", text)


def test_loki_on_object_storage_by_setting() -> None:
    settings = StackSettings(loki_storage="s3", loki_s3_bucket="logs", loki_s3_region="eu-west-1")
    plan = build_plan(load_roster(REPO / "roster.yaml", StackSettings(api_key_present=True)), settings)
    assert plan.platform.services is not None
    loki = next(r for r in plan.platform.services.monitoring.releases if r.name == "loki")
    storage = loki.values["loki"]["storage"]
    assert storage["type"] == "s3" and storage["bucketNames"]["chunks"] == "logs"
    assert loki.values["loki"]["schemaConfig"]["configs"][0]["object_store"] == "s3"


# --- switches and secrets ------------------------------------------------------------------------------------


def test_switched_off_releases_leave_namespaces_and_objects() -> None:
    settings = StackSettings(api_key_present=True, releases=("kube-prometheus-stack",))
    roster = load_roster(REPO / "roster.yaml", settings)
    outputs: dict[str, object] = {}

    def body() -> None:
        provider = k8s.Provider("kubernetes")
        outputs.update(program.build(build_plan(roster, settings), "platform", {}, provider, placeholder_secrets()))

    recorder = run_program(body)
    assert [w["name"] for w in _wire(recorder, CHART).values()] == ["kube-prometheus-stack"]
    assert outputs["releasesOff"] == [r for r in RELEASES if r != "kube-prometheus-stack"]
    assert outputs["releases"] == ["kube-prometheus-stack"]
    kinds = {typ for typ, _ in recorder.wire}
    assert {"kubernetes:networking.istio.io/v1:Gateway", "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"} <= kinds
    namespaces = {w["metadata"]["name"] for w in _wire(recorder, "kubernetes:core/v1:Namespace").values()}
    assert {"istio-system", "istio-ingress", "monitoring", "harbor", "platform-system"} == namespaces


def test_a_release_without_its_secrets_stops_the_program_naming_them(tmp_path: Path) -> None:
    roster = tmp_path / "roster.yaml"
    roster.write_text((REPO / "roster.yaml").read_text())
    config = {
        "sandbox-infra:roster": str(roster),
        "sandbox-infra:geminiApiKey": "sk-test-not-real",
        "sandbox-infra:releases": '["harbor"]',
        "sandbox-infra:platformSecrets": json.dumps({"harborAdminPassword": "x"}),
    }
    recorder = Recorder()
    with pytest.raises(program.ProgramError, match=r"need the secrets harborSecretKey, harborCoreSecret") as raised:
        run_program(
            program.main,
            config=config,
            secret_keys=["sandbox-infra:geminiApiKey", "sandbox-infra:platformSecrets"],
            recorder=recorder,
        )
    assert "harborAdminPassword" not in str(raised.value)
    assert not _wire(recorder, CHART)


def test_release_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="sandbox-infra:releases: unknown release jaeger"):
        settings_from_mapping({"releases": ["istio", "jaeger"]}, secret_keys={})
    with pytest.raises(SettingsError, match="lokiS3Bucket: required"):
        settings_from_mapping({"lokiStorage": "s3"}, secret_keys={})
    assert settings_from_mapping({"releases": "[]"}, secret_keys={}).releases == ()  # as `pulumi config set` stores it


def test_the_dev_environment_switches_every_release_off_and_the_example_switches_them_on() -> None:
    dev = settings_from_stack_file(REPO / "Pulumi.dev.yaml")
    assert dev.releases == () and dev.registry_pull_token_present
    prod = settings_from_stack_file(REPO / "Pulumi.prod.example.yaml")
    assert set(prod.releases) == set(RELEASE_GROUPS)
    assert prod.registry_pull_token_present
    needed = {key for release in prod.releases for key in PLATFORM_SECRETS.get(release, ())}
    assert needed <= prod.platform_secrets_present


# --- routing -------------------------------------------------------------------------------------------------


def test_one_route_per_active_sandbox_and_none_for_the_others(example: Recorder) -> None:
    settings = EXAMPLE_SETTINGS
    plan = build_plan(load_roster(REPO / "roster.yaml", settings), settings)
    services = {w["metadata"]["namespace"]: w["spec"] for w in _wire(example, VIRTUAL_SERVICE).values()}
    routed = 0
    for tenant in plan.tenants():
        active = {str(s.freelancer_id) for s in tenant.sandboxes if s.state is SandboxState.ACTIVE}
        others = {str(s.freelancer_id) for s in tenant.sandboxes if s.state is not SandboxState.ACTIVE}
        spec = services[tenant.namespace]
        assert spec["hosts"] == [settings.sandbox_host] and spec["gateways"] == ["istio-ingress/platform-gateway"]
        routes = {r["match"][0]["headers"]["freelancer-id"]["exact"]: r for r in spec["http"]}
        assert set(routes) == active and not set(routes) & others
        for fid, route in routes.items():
            assert route["match"][0]["headers"]["client-id"] == {"exact": str(tenant.client_id)}
            destination = route["route"][0]["destination"]
            assert destination == {
                "host": f"sandbox-{fid}.{tenant.namespace}.svc.cluster.local",
                "port": {"number": 8080},
            }
            routed += 1
    assert routed == 7  # 9 sandboxes: 1 suspended, 1 archived


def test_every_client_has_mtls_access_control_and_the_gateways_way_in(example: Recorder) -> None:
    for kind, name in (
        ("security.istio.io/v1:PeerAuthentication", "default"),
        ("security.istio.io/v1:AuthorizationPolicy", "sandbox-access"),
        ("networking.k8s.io/v1:NetworkPolicy", "allow-ingress-gateway"),
        ("monitoring.coreos.com/v1:PrometheusRule", "sandbox-alerts"),
    ):
        found = {
            w["metadata"]["namespace"]
            for w in _wire(example, f"kubernetes:{kind}").values()
            if w["metadata"]["name"] == name
        }
        assert found == {f"client-{c}" for c in _clients()}, kind
    policy = next(iter(_wire(example, "kubernetes:security.istio.io/v1:AuthorizationPolicy").values()))["spec"]
    assert policy["action"] == "ALLOW"
    assert policy["rules"][0]["from"][0]["source"]["principals"] == [
        "cluster.local/ns/istio-ingress/sa/istio-ingressgateway"
    ]
    assert policy["rules"][1]["from"][0]["source"]["namespaces"] == ["platform-system"]
    namespaces = _wire(example, "kubernetes:core/v1:Namespace")
    for name, wire in namespaces.items():
        if name.startswith("client-"):
            assert wire["metadata"]["labels"]["istio.io/dataplane-mode"] == "ambient"


def _clients() -> list[str]:
    return [str(c.id) for c in load_roster(REPO / "roster.yaml", EXAMPLE_SETTINGS).clients]


def test_platform_namespaces_deny_by_default(example: Recorder) -> None:
    namespaces = {w["metadata"]["name"]: w for w in _wire(example, "kubernetes:core/v1:Namespace").values()}
    levels = {n: namespaces[n]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] for n in namespaces}
    assert levels["istio-system"] == "privileged"
    assert {levels[n] for n in ("istio-ingress", "monitoring", "harbor")} == {"restricted"}
    policies = {
        (w["metadata"]["namespace"], w["metadata"]["name"]): w["spec"]
        for w in _wire(example, "kubernetes:networking.k8s.io/v1:NetworkPolicy").values()
    }
    for namespace in ("istio-system", "istio-ingress", "monitoring", "harbor"):
        assert policies[namespace, "default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        assert (namespace, "allow-dns") in policies
    # The gateway reaches client namespaces only on code-server's port and the mesh tunnel.
    gateway_egress = policies["istio-ingress", "allow-egress"]["egress"][0]
    assert gateway_egress["to"] == [
        {"namespaceSelector": {"matchExpressions": [{"key": "platform.com/client", "operator": "Exists"}]}}
    ]
    assert [p["port"] for p in gateway_egress["ports"]] == [8080, 15008]


# --- monitoring ----------------------------------------------------------------------------------------------


def _metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (parsed by a PromQL parser: a syntax error fails the test)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        if isinstance(node, promql_parser.MatrixSelector) and node.vector_selector.name:
            names.add(node.vector_selector.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables filled in (and ``label_values(sel, label)`` as ``sel``)."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
    expr = re.sub(r"\$\w+", "x", expr)
    match = re.fullmatch(r"label_values\((.*), \w+\)", expr)
    return match.group(1) if match else expr


def _existing_metrics() -> set[str]:
    config = observability.kube_state_metrics_custom_resources()["spec"]["resources"][0]
    custom = {f"{config['metricNamePrefix']}_{m['name']}" for m in config["metrics"]}
    assert custom == {observability.SANDBOX_INFO}
    return KUBE_STATE_METRICS | KUBELET_METRICS | GEMINI_METRICS | custom


def test_rule_expressions_reference_metrics_that_exist(example: Recorder) -> None:
    rules = [rule for w in _wire(example, RULE).values() for g in w["spec"]["groups"] for rule in g["rules"]]
    assert {r["alert"] for r in rules} == {
        "SandboxQuotaNearlyFull",
        "SandboxNotReady",
        "SandboxVolumeNearlyFull",
        "SandboxRestartingRepeatedly",
    }
    for rule in rules:
        names = _metric_names(rule["expr"])
        assert names and names <= _existing_metrics(), (rule["alert"], names - _existing_metrics())
    not_ready = next(r for r in rules if r["alert"] == "SandboxNotReady")
    assert not_ready["for"] == "10m"
    assert "> 0.9" in next(r for r in rules if r["alert"] == "SandboxQuotaNearlyFull")["expr"]
    assert "> 0.85" in next(r for r in rules if r["alert"] == "SandboxVolumeNearlyFull")["expr"]


def test_the_metric_check_can_fail() -> None:
    assert _metric_names('sum(rate(kube_pod_restarts{namespace="x"}[5m])) > 1') == {"kube_pod_restarts"}
    assert not _metric_names("kube_pod_restarts") <= _existing_metrics()
    with pytest.raises(Exception, match=r"unclosed left parenthesis"):
        _metric_names("sum(rate(foo[5m]) >")


def test_dashboards_are_generated_and_query_metrics_that_exist(example: Recorder) -> None:
    maps = {w["metadata"]["name"]: w for w in _wire(example, "kubernetes:core/v1:ConfigMap").values()}
    assert set(maps) == {"sandbox-fleet", "sandbox-quota", "sandbox-usage"}
    for name, wire in maps.items():
        assert wire["metadata"]["labels"]["grafana_dashboard"] == "1" and wire["metadata"]["namespace"] == "monitoring"
        document = json.loads(wire["data"][f"{name}.json"])
        assert document["uid"] == name and document["panels"]
        expressions = observability.dashboard_expressions(wire["data"][f"{name}.json"])
        assert expressions
        for expr in expressions:
            names = _metric_names(_grafana_to_promql(expr))
            assert names <= _existing_metrics(), (name, expr)
    usage = json.loads(maps["sandbox-usage"]["data"]["sandbox-usage.json"])
    assert {p["title"] for p in usage["panels"]} >= {"Gemini prompts by freelancer", "Gemini tokens by freelancer"}


def test_the_platform_api_is_scraped_without_its_session_label(example: Recorder) -> None:
    (monitor,) = _wire(example, "kubernetes:monitoring.coreos.com/v1:ServiceMonitor").values()
    assert monitor["metadata"]["namespace"] == "platform-system"
    assert monitor["spec"]["endpoints"][0]["metricRelabelings"] == [{"action": "labeldrop", "regex": "session_id"}]


def test_logs_are_labelled_by_client_and_freelancer() -> None:
    config = observability.alloy_config()
    for pod_label, loki_label in (("platform_com_client", "client"), ("platform_com_freelancer", "freelancer")):
        assert re.search(
            rf'source_labels = \["__meta_kubernetes_pod_label_{pod_label}"\]\n\s+target_label\s+= "{loki_label}"',
            config,
        )


# --- registry ------------------------------------------------------------------------------------------------


def test_client_namespaces_get_the_pull_secret_as_a_secret(example: Recorder) -> None:
    secrets = [r for r in example.by_type("kubernetes:core/v1:Secret") if r.name.endswith("-pull-secret")]
    assert len(secrets) == 3
    for secret in secrets:
        assert secret.props["type"] == "kubernetes.io/dockerconfigjson"
        value = pulumi.Output.from_input(secret.props["string_data"])
        assert is_secret(value)
        config = json.loads(resolve(value)[".dockerconfigjson"])
        auth = config["auths"][EXAMPLE_SETTINGS.registry_host]
        assert auth["username"] == EXAMPLE_SETTINGS.registry_pull_user and auth["password"] == "pull-token-not-real"
    accounts = _wire(example, "kubernetes:core/v1:ServiceAccount")
    assert all(w["imagePullSecrets"] == [{"name": "registry-pull"}] for w in accounts.values())
    # The per-user images live in the same Harbor.
    assert EXAMPLE_SETTINGS.user_image_prefix.startswith(f"{EXAMPLE_SETTINGS.registry_host}/")
    assert EXAMPLE_SETTINGS.user_image_prefix.endswith("/gemini-cli-user-")


def test_every_secret_a_release_names_is_one_the_program_checks_for() -> None:
    """The program stops early for missing secrets by PLATFORM_SECRETS; a SecretRef outside it would fail late."""
    from sandbox_infra.charts import SecretRef

    plan = build_plan(load_roster(REPO / "roster.yaml", EXAMPLE_SETTINGS), EXAMPLE_SETTINGS)
    assert plan.platform.services is not None
    for service in plan.platform.services.all():
        for release in service.releases:
            refs = {v.key for _, v in _walk(release.values) if isinstance(v, SecretRef)}
            assert refs == set(PLATFORM_SECRETS.get(release.name, ())), release.name
