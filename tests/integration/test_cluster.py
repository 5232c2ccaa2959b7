"""The local platform behaves like the real one where the sandboxes depend on it.

Runs against the cluster and database of `make cluster-up` (KUBECONFIG and DATABASE_URL from the
environment, as `eval "$(make -s env)"` sets them): nodes, scheduling with volumes, Pod Security admission,
ResourceQuota and LimitRanger, volume retention, and PostgreSQL. Each test works in its own namespace and
removes it (and the volumes it retained) afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.integration.engine import wait_for

pytestmark = pytest.mark.integration

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # never pulled: kwok runs no containers


def _require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: start the local platform with `make cluster-up`, then "
            f'`eval "$(make -s env)"` (or run the tests through `make test`)',
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    _require_env("KUBECONFIG")
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail('kubectl is not on PATH: run `eval "$(make -s env)"` after `make cluster-up`', pytrace=False)
    return path


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def kubectl(kubectl_bin: str) -> Kubectl:
    def run(*args: str, stdin: Any = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        data = stdin if stdin is None or isinstance(stdin, str) else json.dumps(stdin)
        result = subprocess.run(
            [kubectl_bin, "--request-timeout=30s", *args],
            input=data,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Creates uniquely named namespaces (optionally labelled); deletes them and their retained volumes."""
    created: list[str] = []

    def make(labels: dict[str, str] | None = None) -> str:
        short = request.node.name.removeprefix("test_").replace("_", "-")[:30].rstrip("-")
        name = f"it-{short}-{uuid.uuid4().hex[:6]}"
        kubectl(
            "create",
            "-f",
            "-",
            stdin={
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "labels": {"app.kubernetes.io/part-of": "sandbox-infra-tests", **(labels or {})},
                },
            },
        )
        created.append(name)
        return name

    yield make
    for name in created:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
        pvs = get_json(kubectl, "pv")["items"]
        for pv in pvs:
            if pv["spec"].get("claimRef", {}).get("namespace") == name:
                kubectl("delete", "pv", pv["metadata"]["name"], "--wait=false", "--ignore-not-found", check=False)


def restricted_pod(name: str, *, resources: dict[str, Any] | None = None, privileged: bool = False) -> dict[str, Any]:
    """A pod that passes the `restricted` Pod Security profile, unless privileged=True."""
    container: dict[str, Any] = {
        "name": "main",
        "image": PAUSE_IMAGE,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if privileged:
        container["securityContext"] = {"privileged": True}
    if resources is not None:
        container["resources"] = resources
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
        },
    }


_SUFFIXES = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: str) -> float:
    """A Kubernetes resource quantity as a number ("1k" -> 1000.0, "4Ti" -> 4 * 2**40)."""
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * _SUFFIXES[suffix]
    return float(value)


def test_all_nodes_ready_with_cpu_memory_and_a_gpu_node(kubectl: Kubectl) -> None:
    nodes = get_json(kubectl, "nodes")["items"]
    assert len(nodes) >= 3, f"expected at least 3 simulated nodes, got {len(nodes)}"
    for node in nodes:
        conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        assert conditions.get("Ready") == "True", f"node {node['metadata']['name']} is not Ready: {conditions}"
        allocatable = node["status"]["allocatable"]
        # Room for the biggest tier (limits 8 CPU / 16Gi) and for the scale benchmark's ~1000 pods.
        assert quantity(allocatable["cpu"]) >= 8, allocatable
        assert quantity(allocatable["memory"]) >= 16 * 2**30, allocatable
        assert quantity(allocatable["pods"]) >= 100, allocatable
    gpus = [quantity(n["status"]["allocatable"].get("nvidia.com/gpu", "0")) for n in nodes]
    assert max(gpus) >= 1, f"no node offers nvidia.com/gpu: {gpus}"


def test_statefulset_with_two_volume_claims_is_ready_within_60s(
    kubectl: Kubectl, namespace: Callable[..., str]
) -> None:
    ns = namespace()
    # The biggest sandbox tier: requests 4 CPU / 8Gi, limits 8 CPU / 16Gi and one GPU.
    pod = restricted_pod(
        "unused",
        resources={
            "requests": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "1"},
        },
    )
    claims = [
        {
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": sc,
                "resources": {"requests": {"storage": size}},
            },
        }
        for name, sc, size in (("workspace", "fast-ssd", "20Gi"), ("home", "standard", "5Gi"))
    ]
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "workspace", "mountPath": "/workspace"},
        {"name": "home", "mountPath": "/home/coder"},
    ]
    kubectl(
        "create",
        "-n",
        ns,
        "-f",
        "-",
        stdin={
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "sandbox"},
            "spec": {
                "replicas": 2,
                "serviceName": "sandbox",
                "selector": {"matchLabels": {"app": "sandbox"}},
                "template": {"metadata": {"labels": {"app": "sandbox"}}, "spec": pod["spec"]},
                "volumeClaimTemplates": claims,
            },
        },
    )

    def ready() -> bool:
        sts = get_json(kubectl, "-n", ns, "statefulset", "sandbox")
        return bool(sts.get("status", {}).get("readyReplicas", 0) == 2)

    took = wait_for("StatefulSet sandbox Ready", 60, ready)
    print(f"StatefulSet with 2 pods x 2 claims Ready in {took:.1f}s")

    pvcs = get_json(kubectl, "-n", ns, "pvc")["items"]
    assert sorted(p["metadata"]["name"] for p in pvcs) == [
        "home-sandbox-0",
        "home-sandbox-1",
        "workspace-sandbox-0",
        "workspace-sandbox-1",
    ]
    assert all(p["status"]["phase"] == "Bound" for p in pvcs), [p["status"] for p in pvcs]
    for pvc in pvcs:
        pv = get_json(kubectl, "pv", pvc["spec"]["volumeName"])
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"]
    pods = get_json(kubectl, "-n", ns, "pods", "-l", "app=sandbox")["items"]
    assert all(p["status"]["phase"] == "Running" and p["spec"]["nodeName"] for p in pods)
    gpu_nodes = {p["spec"]["nodeName"] for p in pods}
    for node in gpu_nodes:
        assert "nvidia.com/gpu" in get_json(kubectl, "node", node)["status"]["allocatable"]

    # Namespaces delete cleanly: pods go away, volume claims lose their protection finalizer.
    kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(f"namespace {ns} deleted", 60, lambda: kubectl("get", "namespace", ns, check=False).returncode != 0)


def test_deleted_claim_keeps_its_volume(kubectl: Kubectl, namespace: Callable[..., str]) -> None:
    ns = namespace()
    kubectl(
        "create",
        "-n",
        ns,
        "-f",
        "-",
        stdin={
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    wait_for(
        "claim Bound", 20, lambda: get_json(kubectl, "-n", ns, "pvc", "data").get("status", {}).get("phase") == "Bound"
    )
    pvc = get_json(kubectl, "-n", ns, "pvc", "data")
    assert pvc["spec"]["storageClassName"] == "standard", "standard must be the default StorageClass"
    volume = pvc["spec"]["volumeName"]
    kubectl("delete", "-n", ns, "pvc", "data", "--wait=true", "--timeout=30s")
    wait_for(
        "volume Released", 20, lambda: get_json(kubectl, "pv", volume).get("status", {}).get("phase") == "Released"
    )


def test_privileged_pod_is_rejected_under_restricted_pod_security(
    kubectl: Kubectl, namespace: Callable[..., str]
) -> None:
    ns = namespace(
        {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "v1.34",
        }
    )
    rejected = kubectl("create", "-n", ns, "-f", "-", stdin=restricted_pod("privileged", privileged=True), check=False)
    assert rejected.returncode != 0
    assert 'violates PodSecurity "restricted' in rejected.stderr, rejected.stderr
    # The same namespace admits a pod that follows the profile, so the rejection was about privilege.
    kubectl("create", "-n", ns, "-f", "-", stdin=restricted_pod("compliant"))


def _quota_namespace(kubectl: Kubectl, namespace: Callable[..., str]) -> str:
    ns = namespace()
    kubectl(
        "create",
        "-n",
        ns,
        "-f",
        "-",
        stdin={
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "tenant"},
            "spec": {
                "hard": {"requests.cpu": "2", "requests.memory": "4Gi", "limits.cpu": "4", "limits.memory": "8Gi"}
            },
        },
    )
    # Admission rejects everything until kube-controller-manager has computed the quota's status.
    wait_for(
        "quota status computed",
        30,
        lambda: bool(get_json(kubectl, "-n", ns, "resourcequota", "tenant").get("status", {}).get("hard")),
    )
    return ns


def test_pod_exceeding_resource_quota_is_rejected(kubectl: Kubectl, namespace: Callable[..., str]) -> None:
    ns = _quota_namespace(kubectl, namespace)
    fits = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    kubectl("create", "-n", ns, "-f", "-", stdin=restricted_pod("fits", resources=fits))
    wait_for(
        "quota usage computed",
        30,
        lambda: (
            get_json(kubectl, "-n", ns, "resourcequota", "tenant")["status"].get("used", {}).get("requests.cpu") == "1"
        ),
    )

    too_big = {"requests": {"cpu": "1500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    rejected = kubectl("create", "-n", ns, "-f", "-", stdin=restricted_pod("too-big", resources=too_big), check=False)
    assert rejected.returncode != 0
    assert "exceeded quota: tenant" in rejected.stderr, rejected.stderr


def test_pod_without_limits_is_rejected_where_quota_requires_them(
    kubectl: Kubectl, namespace: Callable[..., str]
) -> None:
    ns = _quota_namespace(kubectl, namespace)
    no_limits = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    rejected = kubectl(
        "create", "-n", ns, "-f", "-", stdin=restricted_pod("no-limits", resources=no_limits), check=False
    )
    assert rejected.returncode != 0
    assert "must specify limits.cpu" in rejected.stderr and "limits.memory" in rejected.stderr, rejected.stderr


def test_limit_range_defaults_are_applied(kubectl: Kubectl, namespace: Callable[..., str]) -> None:
    ns = namespace()
    kubectl(
        "create",
        "-n",
        ns,
        "-f",
        "-",
        stdin={
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "defaults"},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": "500m", "memory": "512Mi"},
                        "defaultRequest": {"cpu": "250m", "memory": "256Mi"},
                    }
                ]
            },
        },
    )
    kubectl("create", "-n", ns, "-f", "-", stdin=restricted_pod("defaulted"))
    resources = get_json(kubectl, "-n", ns, "pod", "defaulted")["spec"]["containers"][0]["resources"]
    assert resources == {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}}


def test_network_policy_is_accepted(kubectl: Kubectl, namespace: Callable[..., str]) -> None:
    # Accepted and stored, not enforced: the local cluster has no CNI (docs/local-cluster.md).
    ns = namespace()
    kubectl(
        "create",
        "-n",
        ns,
        "-f",
        "-",
        stdin={
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
    )
    assert get_json(kubectl, "-n", ns, "networkpolicy", "default-deny")["spec"]["podSelector"] == {}


def test_postgres_accepts_the_printed_connection_string() -> None:
    url = _require_env("DATABASE_URL")
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("SELECT current_database(), current_user, 1 + 1").fetchone()
        assert row == ("sandbox", "sandbox", 2)
        conn.execute("CREATE TEMP TABLE probe (id int)")
        conn.execute("INSERT INTO probe VALUES (1)")
        count = conn.execute("SELECT count(*) FROM probe").fetchone()
        assert count == (1,)
