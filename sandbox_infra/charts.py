"""The platform's third-party Helm releases: chart, repository, exact version and values, in one place.

Everything here is plain data computed from the stack settings (no Pulumi), so the plan, the unit tests
and the policy pack read the same facts. :mod:`sandbox_infra.services` declares each :class:`ReleasePlan` as a
pulumi-kubernetes ``helm.v4.Chart``; nothing else in the program names a chart or a version.

Versions are the releases whose CRDs the local cluster installs from ``tools/cluster/crds`` (see its README):
Istio 1.30.3 and kube-prometheus-stack 88.5.3 (prometheus-operator v0.93.1). Bumping a version: change it
here, update ``docs/services.md``, and render the chart once against a staging stack (no chart repository
can be reached from the machines this repository is tested on, so values are reviewed, not rendered, here).

Values follow three rules, which the unit tests check:
- every image comes from the platform's mirror (``chartImageMirror``, under its upstream path); a tag is set
  explicitly where it is the release's own version, otherwise it is the one the pinned chart version ships;
- every container the values can reach gets requests and limits and a ``restricted`` security context
  (runAsNonRoot, no privilege escalation, drop ALL, seccomp RuntimeDefault) - except Istio's CNI node agent
  and ztunnel, which need host networking and NET_ADMIN by design and run alone in ``istio-system``;
- every volume is sized and uses ``platformStorageClass``; credentials are :class:`SecretRef` markers that
  the component replaces with Pulumi secrets (Helm's own random defaults would change on every render).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox_infra import naming

if TYPE_CHECKING:  # only for a type: this module stays free of Pulumi (the policy pack imports it)
    from sandbox_infra.settings import StackSettings

# Where the releases run. The client namespaces' NetworkPolicies and Istio policies name these.
ISTIO_NAMESPACE = "istio-system"
GATEWAY_NAMESPACE = "istio-ingress"
MONITORING_NAMESPACE = "monitoring"
HARBOR_NAMESPACE = "harbor"

GATEWAY_RELEASE = "istio-ingressgateway"
"""The gateway chart names its Deployment and ServiceAccount after the release."""
GATEWAY_SELECTOR = {"istio": "ingressgateway"}
"""The gateway pods' label: what the Gateway object and the client NetworkPolicies select."""
MESH_TRUST_DOMAIN = "cluster.local"
"""Istio's trust domain: AuthorizationPolicy principals are ``<trust domain>/ns/<ns>/sa/<sa>``."""

ISTIO_VERSION = "1.30.3"
PROMETHEUS_OPERATOR_VERSION = "v0.93.1"
HARBOR_APP_VERSION = "v2.15.1"

ISTIO_REPOSITORY = "https://istio-release.storage.googleapis.com/charts"
PROMETHEUS_COMMUNITY_REPOSITORY = "https://prometheus-community.github.io/helm-charts"
GRAFANA_COMMUNITY_REPOSITORY = "https://grafana-community.github.io/helm-charts"
GRAFANA_REPOSITORY = "https://grafana.github.io/helm-charts"
HARBOR_REPOSITORY = "https://helm.goharbor.io"


@dataclass(frozen=True)
class ChartRef:
    """One chart at one exact version in one repository."""

    chart: str
    repository: str
    version: str
    app_version: str
    """What the chart version deploys (documentation, and the image tag where the values pin it)."""


CHARTS: dict[str, ChartRef] = {
    "istio-base": ChartRef("base", ISTIO_REPOSITORY, ISTIO_VERSION, ISTIO_VERSION),
    "istiod": ChartRef("istiod", ISTIO_REPOSITORY, ISTIO_VERSION, ISTIO_VERSION),
    "istio-cni": ChartRef("cni", ISTIO_REPOSITORY, ISTIO_VERSION, ISTIO_VERSION),
    "ztunnel": ChartRef("ztunnel", ISTIO_REPOSITORY, ISTIO_VERSION, ISTIO_VERSION),
    GATEWAY_RELEASE: ChartRef("gateway", ISTIO_REPOSITORY, ISTIO_VERSION, ISTIO_VERSION),
    "kube-prometheus-stack": ChartRef(
        "kube-prometheus-stack", PROMETHEUS_COMMUNITY_REPOSITORY, "88.5.3", PROMETHEUS_OPERATOR_VERSION
    ),
    "loki": ChartRef("loki", GRAFANA_COMMUNITY_REPOSITORY, "18.11.0", "3.7"),
    "tempo": ChartRef("tempo", GRAFANA_COMMUNITY_REPOSITORY, "2.2.4", "2.9"),
    "alloy": ChartRef("alloy", GRAFANA_REPOSITORY, "1.12.0", "v1.19.0"),
    "harbor": ChartRef("harbor", HARBOR_REPOSITORY, "1.19.1", HARBOR_APP_VERSION),
}
"""Every chart the platform installs, by release name."""

ALLOWED_REPOSITORIES = tuple(sorted({c.repository for c in CHARTS.values()}))
"""The chart repositories releases may come from (the policy pack's default)."""

RELEASE_GROUPS: dict[str, tuple[str, ...]] = {
    "istio": ("istio-base", "istiod", "istio-cni", "ztunnel", GATEWAY_RELEASE),
    "kube-prometheus-stack": ("kube-prometheus-stack",),
    "loki": ("loki",),
    "tempo": ("tempo",),
    "alloy": ("alloy",),
    "harbor": ("harbor",),
}
"""What each name of the ``releases`` setting switches on, in install order (Istio's parts only work together)."""

RELEASE_NAMESPACES: dict[str, str] = {
    "istio-base": ISTIO_NAMESPACE,
    "istiod": ISTIO_NAMESPACE,
    "istio-cni": ISTIO_NAMESPACE,
    "ztunnel": ISTIO_NAMESPACE,
    GATEWAY_RELEASE: GATEWAY_NAMESPACE,
    "kube-prometheus-stack": MONITORING_NAMESPACE,
    "loki": MONITORING_NAMESPACE,
    "tempo": MONITORING_NAMESPACE,
    "alloy": MONITORING_NAMESPACE,
    "harbor": HARBOR_NAMESPACE,
}


@dataclass(frozen=True)
class SecretRef:
    """Where a value must be a Pulumi secret: the key of the ``platformSecrets`` setting that holds it."""

    key: str


PLATFORM_SECRETS: dict[str, tuple[str, ...]] = {
    "kube-prometheus-stack": ("grafanaAdminPassword",),
    "harbor": (
        "harborAdminPassword",
        "harborSecretKey",  # 16 characters
        "harborCoreSecret",  # 16 characters
        "harborJobserviceSecret",  # 16 characters
        "harborRegistrySecret",  # 16 characters
        "harborXsrfKey",  # 32 characters
        "harborDatabasePassword",
        "harborRegistryPassword",
        "harborRegistryHtpasswd",  # htpasswd -nbB harbor_registry_user <harborRegistryPassword>
        "harborTokenKey",  # PEM RSA key signing registry tokens
        "harborTokenCert",  # PEM certificate of that key
    ),
}
"""The ``platformSecrets`` keys each release needs: every credential Helm would otherwise generate at random
on each render (so every update would rotate it and restart the release)."""


def missing_platform_secrets(releases: Iterable[str], present: Iterable[str]) -> list[str]:
    """Keys of ``platformSecrets`` that ``releases`` (release names) need and ``present`` lacks."""
    have = set(present)
    return [key for release in releases for key in PLATFORM_SECRETS.get(release, ()) if key not in have]


@dataclass(frozen=True)
class ReleasePlan:
    """One Helm release as it will be declared."""

    name: str
    chart: ChartRef
    namespace: str
    values: Mapping[str, Any]
    """The chart's values; :class:`SecretRef` leaves become Pulumi secrets when declared."""


# --- values building blocks ---------------------------------------------------------------------------------


def restricted_container() -> dict[str, Any]:
    """A container security context that passes Pod Security ``restricted``."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod(uid: int) -> dict[str, Any]:
    """A pod security context: one non-root user and group, volumes owned by it, seccomp RuntimeDefault."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(requests_cpu: str, requests_memory: str, limits_cpu: str, limits_memory: str) -> dict[str, Any]:
    return {
        "requests": {"cpu": requests_cpu, "memory": requests_memory},
        "limits": {"cpu": limits_cpu, "memory": limits_memory},
    }


def _claim(storage_class: str, size: str) -> dict[str, Any]:
    """A ReadWriteOnce volume claim spec (as the Prometheus operator's storageSpec takes it)."""
    return {
        "spec": {
            "storageClassName": storage_class,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        }
    }


def service_url(service: str, namespace: str, port: int) -> str:
    return f"http://{service}.{namespace}.svc.cluster.local:{port}"


LOKI_URL = service_url("loki", MONITORING_NAMESPACE, 3100)
TEMPO_URL = service_url("tempo", MONITORING_NAMESPACE, 3100)
TEMPO_OTLP_PORT = 4317


# --- Istio (ambient) ----------------------------------------------------------------------------------------


def _istio(settings: StackSettings) -> dict[str, dict[str, Any]]:
    """Istio in ambient mode: istiod, the CNI node agent, ztunnel, and an ingress gateway.

    Ambient, not sidecars: a sidecar's init container needs NET_ADMIN, which Pod Security ``restricted``
    forbids, and a sidecar (even with the CNI plugin doing the redirection) adds a container to every sandbox
    pod that the tier budget and the namespace quota would have to pay for, about 100 MiB each at 1,000
    sandboxes. Ambient leaves sandbox pods exactly as declared; ztunnel enforces mTLS and the L4
    AuthorizationPolicy, and the ingress gateway does the L7 header routing."""
    hub = f"{settings.chart_image_mirror}/istio"
    common = {"hub": hub, "tag": ISTIO_VERSION, "istioNamespace": ISTIO_NAMESPACE}
    return {
        "istio-base": {"global": {"istioNamespace": ISTIO_NAMESPACE}, "defaultRevision": "default"},
        "istiod": {
            "profile": "ambient",
            "global": {**common, "proxy": {"resources": resources("100m", "128Mi", "1", "512Mi")}},
            "pilot": {
                "replicaCount": 2,
                "autoscaleMin": 2,
                "autoscaleMax": 5,
                "resources": resources("500m", "2Gi", "2", "4Gi"),
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "meshConfig": {
                "trustDomain": MESH_TRUST_DOMAIN,
                "accessLogFile": "/dev/stdout",
                "extensionProviders": [
                    {
                        "name": "tempo",
                        "opentelemetry": {
                            "service": f"tempo.{MONITORING_NAMESPACE}.svc.cluster.local",
                            "port": TEMPO_OTLP_PORT,
                        },
                    }
                ],
            },
        },
        # Node agents: they program each node's pod networking, so they need what `restricted` forbids.
        "istio-cni": {
            "profile": "ambient",
            "global": common,
            "resources": resources("100m", "100Mi", "500m", "256Mi"),
        },
        "ztunnel": {
            "profile": "ambient",
            "hub": hub,
            "tag": ISTIO_VERSION,
            "global": common,
            "resources": resources("200m", "512Mi", "2", "1Gi"),
        },
        GATEWAY_RELEASE: {
            "labels": dict(GATEWAY_SELECTOR),
            "service": {"type": "LoadBalancer"},
            "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 10},
            "resources": resources("500m", "512Mi", "2", "1Gi"),
            "securityContext": {**restricted_pod(1337), "sysctls": []},
            "containerSecurityContext": restricted_container(),
        },
    }


# --- kube-prometheus-stack ----------------------------------------------------------------------------------


def _kube_prometheus_stack(settings: StackSettings, ksm_custom_resources: Mapping[str, Any]) -> dict[str, Any]:
    """Prometheus, Alertmanager, Grafana, kube-state-metrics and the operator.

    Sized for about 1,000 sandboxes (3 containers each: roughly half a million series from the kubelet
    and kube-state-metrics). Prometheus reads PrometheusRules, ServiceMonitors and PodMonitors from every
    namespace, whatever their labels, so a client stack's rules are picked up without touching this release.
    node-exporter is off: it needs the host's network and PID namespaces (node metrics come from the cloud
    provider's monitoring); the control plane's own scrape targets are off too (managed clusters hide them)."""
    sc = settings.platform_storage_class
    labels_allowlist = ",".join(
        (naming.APP_NAME_LABEL, naming.CLIENT_LABEL, naming.FREELANCER_LABEL, naming.TIER_LABEL)
    )
    return {
        "global": {"imageRegistry": settings.chart_image_mirror},
        "crds": {"enabled": True},
        "nodeExporter": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "prometheusOperator": {
            "image": {"tag": PROMETHEUS_OPERATOR_VERSION},
            "prometheusConfigReloader": {
                "image": {"tag": PROMETHEUS_OPERATOR_VERSION},
                "resources": resources("50m", "64Mi", "200m", "128Mi"),
            },
            "resources": resources("100m", "256Mi", "500m", "512Mi"),
            "securityContext": restricted_pod(65534),
            "containerSecurityContext": restricted_container(),
            "admissionWebhooks": {
                "deployment": {"resources": resources("50m", "64Mi", "200m", "128Mi")},
                "patch": {
                    "resources": resources("50m", "64Mi", "200m", "128Mi"),
                    "securityContext": restricted_pod(2000),
                },
            },
        },
        "prometheus": {
            "prometheusSpec": {
                "replicas": 1,
                "retention": "15d",
                "retentionSize": "90GB",
                "resources": resources("2", "8Gi", "4", "12Gi"),
                "securityContext": restricted_pod(1000),
                "ruleSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleNamespaceSelector": {},
                "serviceMonitorNamespaceSelector": {},
                "podMonitorNamespaceSelector": {},
                "storageSpec": {"volumeClaimTemplate": _claim(sc, "100Gi")},
            }
        },
        "alertmanager": {
            "alertmanagerSpec": {
                "replicas": 1,
                "resources": resources("100m", "128Mi", "500m", "256Mi"),
                "securityContext": restricted_pod(1000),
                "storage": {"volumeClaimTemplate": _claim(sc, "10Gi")},
            }
        },
        "grafana": {
            "adminPassword": SecretRef("grafanaAdminPassword"),
            "resources": resources("250m", "512Mi", "1", "1Gi"),
            "securityContext": restricted_pod(472),
            "containerSecurityContext": restricted_container(),
            "persistence": {"enabled": True, "size": "10Gi", "storageClassName": sc},
            "initChownData": {"enabled": False},  # a root init container; fsGroup owns the volume instead
            "testFramework": {"enabled": False},
            "sidecar": {
                "resources": resources("50m", "64Mi", "200m", "128Mi"),
                "securityContext": restricted_container(),
                # Dashboards are ConfigMaps labelled grafana_dashboard=1 in the monitoring namespace.
                "dashboards": {"enabled": True, "label": "grafana_dashboard", "labelValue": "1"},
            },
            "additionalDataSources": [
                {"name": "Loki", "type": "loki", "uid": "loki", "url": LOKI_URL, "access": "proxy"},
                {"name": "Tempo", "type": "tempo", "uid": "tempo", "url": TEMPO_URL, "access": "proxy"},
            ],
        },
        "kube-state-metrics": {
            "resources": resources("100m", "256Mi", "500m", "1Gi"),
            "securityContext": {"enabled": True, **restricted_pod(65534)},
            "containerSecurityContext": restricted_container(),
            # Sandbox pods' roster labels on kube_pod_labels, so rules and dashboards can group by tier.
            "metricLabelsAllowlist": [f"pods=[{labels_allowlist}]", f"namespaces=[{naming.CLIENT_LABEL}]"],
            # The Sandbox objects' roster state, as platform_sandbox_info (observability.py).
            "customResourceState": {"enabled": True, "config": dict(ksm_custom_resources)},
            "rbac": {
                "extraRules": [
                    {"apiGroups": [naming.CRD_GROUP], "resources": [naming.CRD_PLURAL], "verbs": ["list", "watch"]}
                ]
            },
        },
    }


# --- Loki, Tempo, Alloy -------------------------------------------------------------------------------------


def _loki(settings: StackSettings) -> dict[str, Any]:
    """Loki as one binary, on its volume or in an S3 bucket (``lokiStorage``); 31 days of logs."""
    store = settings.loki_storage
    storage: dict[str, Any] = {"type": store}
    if store == "s3":
        s3: dict[str, Any] = {"region": settings.loki_s3_region}
        if settings.loki_s3_endpoint:
            s3["endpoint"] = settings.loki_s3_endpoint
        bucket = settings.loki_s3_bucket
        storage |= {"bucketNames": {"chunks": bucket, "ruler": bucket, "admin": bucket}, "s3": s3}
    return {
        "global": {"imageRegistry": settings.chart_image_mirror},
        "deploymentMode": "SingleBinary",
        "loki": {
            "auth_enabled": False,
            "commonConfig": {"replication_factor": 1},
            "storage": storage,
            "schemaConfig": {
                "configs": [
                    {
                        "from": "2026-01-01",
                        "store": "tsdb",
                        "object_store": store,
                        "schema": "v13",
                        "index": {"prefix": "loki_index_", "period": "24h"},
                    }
                ]
            },
            "limits_config": {"retention_period": "744h"},
            "compactor": {"retention_enabled": True, "delete_request_store": store},
            "podSecurityContext": restricted_pod(10001),
            "containerSecurityContext": restricted_container(),
        },
        "singleBinary": {
            "replicas": 1,
            "resources": resources("500m", "1Gi", "2", "4Gi"),
            "persistence": {"enabled": True, "size": "100Gi", "storageClass": settings.platform_storage_class},
        },
        "read": {"replicas": 0},
        "write": {"replicas": 0},
        "backend": {"replicas": 0},
        "gateway": {"enabled": False},
        "chunksCache": {"enabled": False},
        "resultsCache": {"enabled": False},
        "lokiCanary": {"enabled": False},
        "test": {"enabled": False},
        "minio": {"enabled": False},
        "sidecar": {"rules": {"enabled": False}},
    }


def _tempo(settings: StackSettings) -> dict[str, Any]:
    """Tempo as one binary on its volume, receiving OTLP from Istio and the platform; 7 days of traces.

    Tempo rather than the design's Jaeger: Grafana (already the UI for metrics and logs) shows traces next to
    the logs of the same request, and Tempo keeps traces as blocks on a volume or in object storage, like
    Loki, where Jaeger's production storage is an Elasticsearch or Cassandra cluster to run. Both take the
    OTLP that Istio sends, so the choice is reversible."""
    return {
        "tempo": {
            "repository": f"{settings.chart_image_mirror}/grafana/tempo",
            "resources": resources("250m", "1Gi", "1", "2Gi"),
            "securityContext": restricted_container(),
            "reportingEnabled": False,
            "retention": "168h",
            "storage": {
                "trace": {
                    "backend": "local",
                    "local": {"path": "/var/tempo/traces"},
                    "wal": {"path": "/var/tempo/wal"},
                }
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"0.0.0.0:{TEMPO_OTLP_PORT}"},
                        "http": {"endpoint": "0.0.0.0:4318"},
                    }
                }
            },
        },
        "securityContext": restricted_pod(10001),
        "persistence": {"enabled": True, "size": "50Gi", "storageClassName": settings.platform_storage_class},
        "tempoQuery": {"enabled": False},
    }


def _alloy(settings: StackSettings, config: str) -> dict[str, Any]:
    """Grafana Alloy reading pod logs through the Kubernetes API (no hostPath: it runs ``restricted``), two
    replicas sharing the targets, labelling each line with the pod's client, freelancer and tier."""
    return {
        "image": {"registry": settings.chart_image_mirror},
        "configReloader": {
            "image": {"registry": settings.chart_image_mirror},
            "resources": resources("10m", "32Mi", "100m", "64Mi"),
            "securityContext": restricted_container(),
        },
        "controller": {"type": "deployment", "replicas": 2, "podSecurityContext": restricted_pod(473)},
        "alloy": {
            "configMap": {"create": True, "content": config},
            "clustering": {"enabled": True},
            "mounts": {"varlog": False, "dockercontainers": False},
            "resources": resources("250m", "512Mi", "1", "1Gi"),
            # Alloy keeps its state under its storage path, a scratch volume the chart mounts.
            "securityContext": restricted_container(),
        },
    }


# --- Harbor -------------------------------------------------------------------------------------------------


def _harbor_image(settings: StackSettings, name: str) -> dict[str, str]:
    return {"repository": f"{settings.chart_image_mirror}/goharbor/{name}", "tag": HARBOR_APP_VERSION}


def _harbor(settings: StackSettings) -> dict[str, Any]:
    """Harbor, reached through the ingress gateway (TLS ends there), with volumes kept on uninstall.

    The per-user images (``gemini-cli-user-<freelancer-id>``) live in its ``sandboxes`` project; sandbox pods
    pull them with a robot account's token (``registryPullToken``)."""
    sc = settings.platform_storage_class
    small = resources("100m", "256Mi", "500m", "512Mi")

    def volume(size: str) -> dict[str, Any]:
        return {"storageClass": sc, "accessMode": "ReadWriteOnce", "size": size}

    # The chart's own restricted template, without a read-only root (nginx and PostgreSQL write to theirs).
    container = {k: v for k, v in restricted_container().items() if k != "readOnlyRootFilesystem"}
    return {
        "expose": {"type": "clusterIP", "tls": {"enabled": False}, "clusterIP": {"name": "harbor"}},
        "externalURL": f"https://{settings.registry_host}",
        "persistence": {
            "enabled": True,
            "resourcePolicy": "keep",
            "persistentVolumeClaim": {
                "registry": volume("500Gi"),
                "jobservice": {"jobLog": volume("1Gi")},
                "database": volume("10Gi"),
                "redis": volume("2Gi"),
                "trivy": volume("10Gi"),
            },
        },
        "updateStrategy": {"type": "Recreate"},
        "containerSecurityContext": container,
        "harborAdminPassword": SecretRef("harborAdminPassword"),
        "secretKey": SecretRef("harborSecretKey"),
        "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
        "nginx": {"image": _harbor_image(settings, "nginx-photon"), "resources": small},
        "portal": {"image": _harbor_image(settings, "harbor-portal"), "resources": small},
        "core": {
            "image": _harbor_image(settings, "harbor-core"),
            "resources": resources("250m", "512Mi", "1", "1Gi"),
            "secret": SecretRef("harborCoreSecret"),
            "xsrfKey": SecretRef("harborXsrfKey"),
            "tokenKey": SecretRef("harborTokenKey"),
            "tokenCert": SecretRef("harborTokenCert"),
        },
        "jobservice": {
            "image": _harbor_image(settings, "harbor-jobservice"),
            "resources": small,
            "secret": SecretRef("harborJobserviceSecret"),
        },
        "registry": {
            "registry": {
                "image": _harbor_image(settings, "registry-photon"),
                "resources": resources("250m", "512Mi", "2", "2Gi"),
            },
            "controller": {"image": _harbor_image(settings, "harbor-registryctl"), "resources": small},
            "secret": SecretRef("harborRegistrySecret"),
            "credentials": {
                "username": "harbor_registry_user",
                "password": SecretRef("harborRegistryPassword"),
                "htpasswdString": SecretRef("harborRegistryHtpasswd"),
            },
        },
        "trivy": {
            "image": _harbor_image(settings, "trivy-adapter-photon"),
            "resources": resources("200m", "512Mi", "1", "1Gi"),
        },
        "database": {
            "type": "internal",
            "internal": {
                "image": _harbor_image(settings, "harbor-db"),
                "resources": resources("250m", "512Mi", "1", "1Gi"),
                "password": SecretRef("harborDatabasePassword"),
                "initContainer": {"migrator": {"resources": small}, "permissions": {"resources": small}},
            },
        },
        "redis": {
            "type": "internal",
            "internal": {"image": _harbor_image(settings, "redis-photon"), "resources": small},
        },
        "exporter": {"image": _harbor_image(settings, "harbor-exporter"), "resources": small},
    }


def release_plans(
    settings: StackSettings, *, alloy_config: str, ksm_custom_resources: Mapping[str, Any]
) -> tuple[ReleasePlan, ...]:
    """The releases switched on, in install order (CRDs and the mesh first, then what uses them)."""
    values: dict[str, Mapping[str, Any]] = {
        **_istio(settings),
        "kube-prometheus-stack": _kube_prometheus_stack(settings, ksm_custom_resources),
        "loki": _loki(settings),
        "tempo": _tempo(settings),
        "alloy": _alloy(settings, alloy_config),
        "harbor": _harbor(settings),
    }
    return tuple(
        ReleasePlan(name, CHARTS[name], RELEASE_NAMESPACES[name], values[name])
        for group, names in RELEASE_GROUPS.items()
        if group in settings.releases
        for name in names
    )
