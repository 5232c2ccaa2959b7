"""What the platform watches, as plain data: alert rules, dashboards, log labels and scrape configuration.

Metrics come from three places, and every expression here names only metrics one of them exposes (a unit
test parses each expression and checks its metric names against those lists):
- the kubelet and cAdvisor (CPU, memory, volume use of each sandbox pod), scraped by kube-prometheus-stack;
- kube-state-metrics (pod readiness, restarts, quotas), plus ``platform_sandbox_info``: the ``Sandbox``
  objects' roster state (client, freelancer, tier, state), which kube-state-metrics reads through the
  custom-resource configuration below;
- the platform API's Gemini usage metrics (design section 7.2): ``gemini_prompts_total`` (a counter) and
  ``gemini_tokens_used`` (a histogram), labelled ``freelancer_id`` and ``client_id``.

Dashboards are built with grafana-foundation-sdk (typed builders), never pasted JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

from sandbox_infra import naming
from sandbox_infra.charts import LOKI_URL
from sandbox_infra.routing import API_VERSION_MONITORING, ObjectPlan

SANDBOX_POD = f"{naming.SANDBOX_APP}-.+"
"""Sandbox pods are ``sandbox-<freelancer-id>-0`` (one StatefulSet replica)."""
SANDBOX_VOLUME = f"({'|'.join(naming.SANDBOX_VOLUMES)})-.+"
CLIENT_NAMESPACES = f"{naming.CLIENT_NAMESPACE_PREFIX}.+"

SANDBOX_INFO = "platform_sandbox_info"
"""One series per Sandbox object: ``{namespace, sandbox, client, freelancer, tier, state}``, value 1."""
GEMINI_PROMPTS = "gemini_prompts_total"
GEMINI_TOKENS = "gemini_tokens_used"

PLATFORM_API_LABELS = {naming.APP_NAME_LABEL: "platform-api"}
"""The platform API's Service, which exposes the Gemini metrics on its ``metrics`` port."""

PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
"""kube-prometheus-stack provisions Grafana's Prometheus data source with this uid."""


# --- alert rules --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientAlertsPlan:
    """A client's PrometheusRule, kept as the ids it is made of; :meth:`objects` renders it."""

    client_id: UUID
    namespace: str

    def objects(self) -> tuple[ObjectPlan, ...]:
        spec = alert_rules(self.namespace, str(self.client_id))
        return (ObjectPlan(API_VERSION_MONITORING, "PrometheusRule", "sandbox-alerts", self.namespace, spec),)


def alert_rules(namespace: str, client_id: str) -> dict[str, Any]:
    """The PrometheusRule ``spec`` of one client namespace: its quota, its sandboxes' readiness, volumes and
    restarts. Alerts carry the client's id, so Alertmanager can route them to whoever looks after it."""
    ns = f'namespace="{namespace}"'
    pods = f'{ns}, pod=~"{SANDBOX_POD}"'
    volumes = f'{ns}, persistentvolumeclaim=~"{SANDBOX_VOLUME}"'
    labels = {"client": client_id, "severity": "warning"}
    rules = [
        {
            "alert": "SandboxQuotaNearlyFull",
            "expr": (
                f'kube_resourcequota{{{ns}, type="used"}} / ignoring(type) '
                f'(kube_resourcequota{{{ns}, type="hard"}} > 0) > 0.9'
            ),
            "for": "15m",
            "labels": labels,
            "annotations": {
                "summary": "A client's namespace uses more than 90 % of its quota",
                "description": "{{ $labels.resource }} of {{ $labels.namespace }} is {{ $value | humanizePercentage }} "
                "used: a new or resized sandbox may not fit (the quota is the sum of the roster's tier budgets).",
            },
        },
        {
            "alert": "SandboxNotReady",
            "expr": (
                f'(max by (namespace, pod) (kube_pod_status_ready{{{pods}, condition="true"}}) == 0) or '
                f'(max by (namespace, pod) (kube_pod_status_phase{{{pods}, phase=~"Pending|Unknown|Failed"}}) == 1)'
            ),
            "for": "10m",
            "labels": labels,
            "annotations": {
                "summary": "A sandbox has not been ready for 10 minutes",
                "description": "{{ $labels.namespace }}/{{ $labels.pod }} is not ready.",
            },
        },
        {
            "alert": "SandboxVolumeNearlyFull",
            "expr": (
                f"kubelet_volume_stats_used_bytes{{{volumes}}} / "
                f"kubelet_volume_stats_capacity_bytes{{{volumes}}} > 0.85"
            ),
            "for": "5m",
            "labels": labels,
            "annotations": {
                "summary": "A sandbox volume is more than 85 % full",
                "description": "{{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} is "
                "{{ $value | humanizePercentage }} full; grow it in the roster (storage).",
            },
        },
        {
            "alert": "SandboxRestartingRepeatedly",
            "expr": f"increase(kube_pod_container_status_restarts_total{{{pods}}}[30m]) > 3",
            "for": "5m",
            "labels": labels,
            "annotations": {
                "summary": "A sandbox container restarted more than 3 times in 30 minutes",
                "description": "{{ $labels.namespace }}/{{ $labels.pod }} container {{ $labels.container }} "
                "keeps restarting.",
            },
        },
    ]
    return {"groups": [{"name": f"sandbox-infra.{namespace}", "rules": rules}]}


# --- scrape configuration -----------------------------------------------------------------------------------


def platform_api_monitor() -> dict[str, Any]:
    """The ServiceMonitor ``spec`` for the platform API's Gemini metrics.

    ``session_id`` (design 7.2) is dropped at scrape time: a label that is new for every session would make a
    new series per session, without bound; per-freelancer and per-client totals are what the dashboards use."""
    return {
        "selector": {"matchLabels": dict(PLATFORM_API_LABELS)},
        "endpoints": [
            {
                "port": "metrics",
                "path": "/metrics",
                "interval": "30s",
                "metricRelabelings": [{"action": "labeldrop", "regex": "session_id"}],
            }
        ],
    }


def kube_state_metrics_custom_resources() -> dict[str, Any]:
    """kube-state-metrics' custom-resource configuration: ``platform_sandbox_info`` from every Sandbox object."""
    return {
        "spec": {
            "resources": [
                {
                    "groupVersionKind": {
                        "group": naming.CRD_GROUP,
                        "version": naming.CRD_VERSION,
                        "kind": naming.CRD_KIND,
                    },
                    "metricNamePrefix": "platform_sandbox",
                    "labelsFromPath": {"namespace": ["metadata", "namespace"], "sandbox": ["metadata", "name"]},
                    "metrics": [
                        {
                            "name": "info",
                            "help": "A sandbox of the roster: its client, freelancer, tier and state.",
                            "each": {
                                "type": "Info",
                                "info": {
                                    "labelsFromPath": {
                                        "client": ["spec", "clientId"],
                                        "freelancer": ["spec", "freelancerId"],
                                        "tier": ["spec", "resourceTier"],
                                        "state": ["spec", "state"],
                                    }
                                },
                            },
                        }
                    ],
                }
            ]
        }
    }


# --- logs ---------------------------------------------------------------------------------------------------

LOG_LABELS = {naming.CLIENT_LABEL: "client", naming.FREELANCER_LABEL: "freelancer", naming.TIER_LABEL: "tier"}
"""Pod label -> Loki label: every log line of a sandbox carries its client, freelancer and tier."""


def _meta_label(pod_label: str) -> str:
    """Prometheus-style discovery name of a pod label (``platform.com/client`` -> ``..._platform_com_client``)."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


def alloy_config() -> str:
    """Grafana Alloy's configuration: every pod's logs, read through the Kubernetes API, labelled with
    namespace, pod and container, and for sandboxes with client, freelancer and tier, pushed to Loki."""
    relabel = [
        ("__meta_kubernetes_namespace", "namespace"),
        ("__meta_kubernetes_pod_name", "pod"),
        ("__meta_kubernetes_pod_container_name", "container"),
        *((_meta_label(pod_label), loki_label) for pod_label, loki_label in LOG_LABELS.items()),
    ]
    rules = "\n".join(
        f'  rule {{\n    source_labels = ["{source}"]\n    target_label  = "{target}"\n  }}'
        for source, target in relabel
    )
    return (
        'discovery.kubernetes "pods" {\n  role = "pod"\n}\n\n'
        f'discovery.relabel "pods" {{\n  targets = discovery.kubernetes.pods.targets\n{rules}\n}}\n\n'
        'loki.source.kubernetes "pods" {\n'
        "  targets    = discovery.relabel.pods.output\n"
        "  forward_to = [loki.write.default.receiver]\n"
        "  clustering {\n    enabled = true\n  }\n}\n\n"
        f'loki.write "default" {{\n  endpoint {{\n    url = "{LOKI_URL}/loki/api/v1/push"\n  }}\n}}\n'
    )


# --- dashboards ---------------------------------------------------------------------------------------------


def _query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(PROMETHEUS)


def _timeseries(title: str, expr: str, legend: str, unit: str = "short") -> timeseries.Panel:
    return timeseries.Panel().title(title).datasource(PROMETHEUS).with_target(_query(expr, legend)).unit(unit).span(12)


def _variable(name: str, label: str, query: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
    )


def _fleet() -> dash.Dashboard:
    """The sandbox fleet: how many sandboxes by tier and state, per client, and how many pods are ready."""
    return (
        dash.Dashboard("Sandbox fleet")
        .uid("sandbox-fleet")
        .tags(["sandbox-infra"])
        .time("now-24h", "now")
        .with_panel(
            stat.Panel()
            .title("Sandboxes by state")
            .datasource(PROMETHEUS)
            .with_target(_query(f"count by (state) ({SANDBOX_INFO})", "{{state}}").instant())
            .span(8)
        )
        .with_panel(
            stat.Panel()
            .title("Ready sandbox pods")
            .datasource(PROMETHEUS)
            .with_target(
                _query(
                    f'sum(kube_pod_status_ready{{namespace=~"{CLIENT_NAMESPACES}", pod=~"{SANDBOX_POD}", '
                    'condition="true"})',
                    "ready",
                ).instant()
            )
            .span(4)
        )
        .with_panel(
            _timeseries("Sandboxes by tier and state", f"count by (tier, state) ({SANDBOX_INFO})", "{{tier}} {{state}}")
        )
        .with_panel(
            table.Panel()
            .title("Sandboxes by client")
            .datasource(PROMETHEUS)
            .with_target(_query(f"count by (client, state) ({SANDBOX_INFO})", "{{client}} {{state}}").instant())
            .span(12)
        )
    )


def _quota() -> dash.Dashboard:
    """Quota use of each client namespace, by resource (what SandboxQuotaNearlyFull alerts on)."""
    used = 'kube_resourcequota{namespace=~"$namespace", type="used"}'
    hard = 'kube_resourcequota{namespace=~"$namespace", type="hard"}'
    return (
        dash.Dashboard("Sandbox quota use")
        .uid("sandbox-quota")
        .tags(["sandbox-infra"])
        .time("now-7d", "now")
        .with_variable(
            _variable(
                "namespace",
                "Client namespace",
                f'label_values(kube_resourcequota{{namespace=~"{CLIENT_NAMESPACES}"}}, namespace)',
            )
            .multi(True)
            .include_all(True)
        )
        .with_panel(
            _timeseries(
                "Quota used (fraction of hard)",
                f"{used} / ignoring(type) ({hard} > 0)",
                "{{namespace}} {{resource}}",
                unit="percentunit",
            )
        )
    )


def _usage() -> dash.Dashboard:
    """One client's usage: Gemini prompts and tokens by freelancer, and each sandbox's CPU, memory and volumes."""
    client = 'client_id=~"$client"'
    pods = f'namespace=~"{naming.CLIENT_NAMESPACE_PREFIX}$client", pod=~"{SANDBOX_POD}"'
    return (
        dash.Dashboard("Sandbox usage by client")
        .uid("sandbox-usage")
        .tags(["sandbox-infra"])
        .time("now-7d", "now")
        .with_variable(_variable("client", "Client", f"label_values({SANDBOX_INFO}, client)"))
        .with_panel(
            _timeseries(
                "Gemini prompts by freelancer",
                f"sum by (freelancer_id) (increase({GEMINI_PROMPTS}{{{client}}}[$__rate_interval]))",
                "{{freelancer_id}}",
            )
        )
        .with_panel(
            _timeseries(
                "Gemini tokens by freelancer",
                f"sum by (freelancer_id) (increase({GEMINI_TOKENS}_sum{{{client}}}[$__rate_interval]))",
                "{{freelancer_id}}",
            )
        )
        .with_panel(
            _timeseries(
                "Tokens per request (p95)",
                f"histogram_quantile(0.95, sum by (le) (rate({GEMINI_TOKENS}_bucket{{{client}}}[$__rate_interval])))",
                "p95",
            )
        )
        .with_panel(
            _timeseries(
                "CPU by sandbox",
                f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{pods}, container!=""}}[$__rate_interval]))',
                "{{pod}}",
            )
        )
        .with_panel(
            _timeseries(
                "Memory by sandbox",
                f'sum by (pod) (container_memory_working_set_bytes{{{pods}, container!=""}})',
                "{{pod}}",
                unit="bytes",
            )
        )
        .with_panel(
            _timeseries(
                "Volume use",
                f'kubelet_volume_stats_used_bytes{{namespace=~"{naming.CLIENT_NAMESPACE_PREFIX}$client"}} / '
                f'kubelet_volume_stats_capacity_bytes{{namespace=~"{naming.CLIENT_NAMESPACE_PREFIX}$client"}}',
                "{{persistentvolumeclaim}}",
                unit="percentunit",
            )
        )
    )


def dashboards() -> dict[str, str]:
    """Every dashboard as the JSON Grafana's sidecar loads, by ConfigMap name (deterministic: sorted keys)."""
    built = {"sandbox-fleet": _fleet(), "sandbox-quota": _quota(), "sandbox-usage": _usage()}
    return {
        name: json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"
        for name, builder in built.items()
    }


def dashboard_expressions(dashboard_json: str) -> list[str]:
    """Every PromQL expression of a dashboard (panel targets and query variables), as written."""
    document = json.loads(dashboard_json)
    expressions = [t["expr"] for p in document.get("panels", []) for t in p.get("targets", []) if "expr" in t]
    for variable in document.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, str):
            expressions.append(query)
    return expressions
