"""The pack as the engine drives it: its metadata, the gRPC handlers pulumi-policy runs, preview unknowns,
and the small parsers the policies rely on."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from decimal import Decimal
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import pulumi_policy.policy as policy_sdk
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2  # type: ignore[import-untyped,unused-ignore]
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel
from pulumi_policy.proxy import UNKNOWN_OBJECT_VALUE, UNKNOWN_STRING_VALUE
from sandbox_policies import config, secrets
from sandbox_policies.model import Resource
from sandbox_policies.network import admitted, selector_matches
from sandbox_policies.pack import PACK_NAME, all_policies, readme_lines
from sandbox_policies.quantity import QuantityError, parse_quantity
from sandbox_policies.workloads import check_images, check_resources, split_image

from sandbox_infra.settings import StackSettings
from sandbox_infra.tiers import TIERS, Tier
from tests.conftest import REPO
from tests.policy.harness import Declared, check_resource, check_stack, find
from tests.policy.test_policies import (
    ACME,
    API_KEY_SECRET,
    GRACE,
    GUARDRAILS,
    INITECH,
    NETPOL,
    QUOTA,
    QUOTA_COVERS,
    SANDBOX_COMPLETE,
    SECRET,
    STS,
    ns,
    plain_text_api_key,
    quota_too_small,
)


def _servicer() -> Any:
    """pulumi-policy's own gRPC servicer for the pack (what PolicyPack serves), minus the server."""
    return policy_sdk._PolicyAnalyzerServicer(PACK_NAME, "0.1.0", all_policies(), EnforcementLevel.MANDATORY)


def _struct(wire: dict[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(wire, struct_pb2.Struct())


def test_policy_metadata_reaches_the_engine() -> None:
    info = _servicer().GetAnalyzerInfo(None, None)
    names = [p.name for p in info.policies]
    assert len(names) == len(set(names)) == 23
    for policy in info.policies:
        assert policy.name.startswith("kubernetes-")
        assert policy.description and policy.remediation_steps
        assert policy.enforcementLevel == proto.MANDATORY
    schemas = {p.name: json_format.MessageToDict(p.configSchema) for p in info.policies}
    images = schemas["kubernetes-core-v1-pod-allowed-pinned-images"]["properties"]["allowedRegistries"]
    assert images["default"] == ["registry.platform.com/"]
    tiers = schemas["kubernetes-apps-v1-statefulset-sandbox-fits-tier"]["properties"]["tiers"]["default"]
    assert tiers["premium"]["limits"] == {"cpu": "8", "memory": "16Gi"}


def test_readme_lines() -> None:
    lines = readme_lines()
    assert len(lines) == 23
    assert lines[0].startswith("- `kubernetes-core-v1-pod-configure-resources` — Every container")
    assert all(line.endswith(" — mandatory") for line in lines)


def test_engine_path_tells_a_secret_key_from_plain_text(stack: list[Declared]) -> None:
    """Through pulumi-policy's Analyze handler, with the key as the engine sends it: wrapped as a secret or not."""
    assert secrets.installed()
    servicer = _servicer()

    def analyze(secret: Declared) -> list[Any]:
        request = proto.AnalyzeRequest(type=SECRET, urn=secret.urn, name=secret.name, properties=_struct(secret.wire))
        return list(servicer.Analyze(request, None).diagnostics)

    assert analyze(find(stack, SECRET, "gemini-api-key", ns(INITECH))) == []
    [diagnostic] = analyze(find(plain_text_api_key(stack), SECRET, "gemini-api-key", ns(INITECH)))
    assert diagnostic.policyName == API_KEY_SECRET
    assert diagnostic.policyPackName == PACK_NAME
    assert diagnostic.enforcementLevel == proto.MANDATORY
    description, message = diagnostic.message.split("\n", 1)
    assert description == diagnostic.description
    assert message.startswith(f"Secret {ns(INITECH)}/gemini-api-key: stringData['.env'] is plain text")


def test_engine_path_attaches_stack_violations(stack: list[Declared]) -> None:
    broken = quota_too_small(stack)
    request = proto.AnalyzeStackRequest(
        resources=[
            proto.AnalyzerResource(type=r.type, urn=r.urn, name=r.name, properties=_struct(r.wire)) for r in broken
        ]
    )
    [diagnostic] = _servicer().AnalyzeStack(request, None).diagnostics
    assert diagnostic.policyName == QUOTA_COVERS
    assert diagnostic.urn == find(stack, QUOTA, "sandbox-quota", ns(ACME)).urn


def test_values_unknown_during_a_preview_are_skipped(stack: list[Declared]) -> None:
    """A preview may not know a new namespace's name or an image built elsewhere: checks wait for `up`."""
    sts = find(stack, STS, f"sandbox-{GRACE}", ns(ACME)).edited()
    sts.wire["metadata"]["namespace"] = UNKNOWN_STRING_VALUE
    sts.container("code-server")["image"] = UNKNOWN_STRING_VALUE
    sts.container("gemini-cli")["resources"]["limits"]["memory"] = UNKNOWN_STRING_VALUE
    for name in ("kubernetes-core-v1-pod-allowed-pinned-images", "kubernetes-core-v1-pod-configure-resources"):
        assert check_resource(name, sts) == []
    del sts.container("gemini-cli")["resources"]["limits"]["cpu"]
    [message] = check_resource("kubernetes-core-v1-pod-configure-resources", sts)
    # the namespace is inferred from the client label while it is unknown
    assert message.startswith(f"StatefulSet {ns(ACME)}/sandbox-{GRACE}: container 'gemini-cli' sets no limits.cpu.")
    others = [r for r in stack if r.urn != sts.urn]
    assert check_stack(QUOTA_COVERS, [*others, sts]) == []
    assert check_stack(SANDBOX_COMPLETE, [*others, sts]) == []


def test_a_network_policy_not_known_yet_is_judged_later(stack: list[Declared]) -> None:
    deny = find(stack, NETPOL, "default-deny", ns(INITECH))
    unknown = deny.edited()
    unknown.wire["spec"] = UNKNOWN_OBJECT_VALUE
    others = [r for r in stack if r is not deny]
    assert check_stack(GUARDRAILS, [*others, unknown]) == []
    assert check_stack(GUARDRAILS, others) != []


def test_serving_happens_only_as_the_main_program() -> None:
    namespace = runpy.run_path(str(REPO / "policies" / "__main__.py"), run_name="imported")
    assert namespace["PACK_NAME"] == PACK_NAME


def test_the_pack_serves_the_engine(stack: list[Declared]) -> None:
    """policies/serve starts the gRPC server the engine talks to; it reports plain-text keys (secret marking on)."""
    serve = REPO / "policies" / "serve"
    assert os.access(serve, os.X_OK)
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    server = subprocess.Popen([str(serve), "127.0.0.1:1"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            analyzer = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == PACK_NAME
            broken = find(plain_text_api_key(stack), SECRET, "gemini-api-key", ns(INITECH))
            request = proto.AnalyzeRequest(
                type=SECRET, urn=broken.urn, name=broken.name, properties=_struct(broken.wire)
            )
            [diagnostic] = analyzer.Analyze(request, timeout=30).diagnostics
            assert diagnostic.policyName == API_KEY_SECRET
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_defaults_match_the_stack() -> None:
    settings = StackSettings()
    assert config.DEFAULTS[config.ALLOWED_REGISTRIES] == list(settings.allowed_registries)
    assert set(config.DEFAULTS[config.STORAGE_CLASSES]) == {
        settings.workspace_storage_class,
        settings.home_storage_class,
    }
    assert config.DEFAULTS[config.MAX_STORAGE] == settings.max_storage
    tiers = config.tiers({})
    for tier in Tier:
        spec, budget = TIERS[tier], tiers[tier.value]
        assert budget.gpu == spec.gpu_allowed
        if spec.budget is None:
            assert budget.requests is None and budget.limits is None
            continue
        assert budget.requests == {"cpu": spec.budget.requests_cpu, "memory": spec.budget.requests_memory}
        assert budget.limits == {"cpu": spec.budget.limits_cpu, "memory": spec.budget.limits_memory}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("4Gi", Decimal(4 * 2**30)),
        ("1.5G", Decimal(1_500_000_000)),
        ("1e3", Decimal(1000)),
    ],
)
def test_quantities_are_exact(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_bad_quantity_is_reported() -> None:
    with pytest.raises(QuantityError, match="not a Kubernetes quantity"):
        parse_quantity("4GB")
    container = {"name": "app", "image": "registry.platform.com/app:1", "resources": {}}
    container["resources"] = {"requests": {"cpu": "1", "memory": "4GB"}, "limits": {"cpu": "1", "memory": "4Gi"}}
    pod = Resource(
        "kubernetes:core/v1:Pod", "urn:x", "app", {"metadata": {"name": "app"}, "spec": {"containers": [container]}}
    )
    [message] = check_resources(pod)
    assert "requests.memory: '4GB' is not a Kubernetes quantity" in message


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        (
            "registry.platform.com/mirror/code-server:4.105.1",
            ("registry.platform.com/mirror/code-server", "4.105.1", None),
        ),
        ("registry.platform.com:5000/app", ("registry.platform.com:5000/app", None, None)),
        ("registry.platform.com:5000/app@sha256:abc", ("registry.platform.com:5000/app", None, "sha256:abc")),
    ],
)
def test_image_references(image: str, parts: tuple[str, str | None, str | None]) -> None:
    assert split_image(image) == parts


def test_a_digest_pins_an_image() -> None:
    pod = {"containers": [{"name": "app", "image": "registry.platform.com:5000/app@sha256:abc"}]}
    resource = Resource("kubernetes:core/v1:Pod", "urn:x", "app", {"metadata": {"name": "app"}, "spec": pod})
    assert check_images(resource, ["registry.platform.com:5000/"]) == []


def test_label_selectors() -> None:
    labels = {"kubernetes.io/metadata.name": "client-a", "platform.com/client": "a"}
    assert selector_matches({}, labels)
    assert selector_matches({"matchExpressions": [{"key": "platform.com/client", "operator": "Exists"}]}, labels)
    assert not selector_matches(
        {"matchExpressions": [{"key": "platform.com/client", "operator": "NotIn", "values": ["a"]}]}, labels
    )
    assert not selector_matches({"matchLabels": {"kubernetes.io/metadata.name": "platform-system"}}, labels)


def test_ip_blocks() -> None:
    metadata = config.metadata_cidrs({})
    assert admitted({"cidr": "0.0.0.0/0"}, metadata) == metadata[:1]
    assert admitted({"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}, metadata) == []
    assert admitted({"cidr": "::/0", "except": ["fd00::/8"]}, metadata) == []
    pods = config.pod_network_cidrs({})
    assert admitted({"cidr": "0.0.0.0/0", "except": [str(p) for p in pods]}, pods) == []
    assert [str(n) for n in admitted({"cidr": "172.20.0.0/16"}, pods)] == ["172.16.0.0/12"]


def test_the_pack_depends_on_the_programs_pure_modules_only() -> None:
    """The dependency direction the pack's docstring states: the pack imports sandbox_infra's pure modules
    (no Pulumi program, no pulumi-kubernetes); the program never imports the pack."""
    import json
    import re
    import subprocess
    import sys

    code = (
        "import json, sys; sys.path[:0] = ['policies', '.']; import sandbox_policies.pack; "
        "print(json.dumps([m for m in sys.modules if m.startswith(('sandbox_infra', 'pulumi_kubernetes'))]))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    modules = set(json.loads(loaded.stdout))
    assert modules <= {
        "sandbox_infra",
        "sandbox_infra.charts",
        "sandbox_infra.images",
        "sandbox_infra.limits",
        "sandbox_infra.naming",
        "sandbox_infra.parse_cache",
        "sandbox_infra.quantity",
        "sandbox_infra.settings",
        "sandbox_infra.source",
        "sandbox_infra.tiers",
    }, modules
    for path in (REPO / "sandbox_infra").glob("*.py"):
        assert not re.search(r"^\s*(from|import) sandbox_policies", path.read_text(), re.MULTILINE), path


def test_the_orchestrator_names_the_packs_digest_rule() -> None:
    """The orchestrator (which never imports the pack) makes this rule advisory by name: the name must exist."""
    from sandbox_policies.pack import DIGEST_POLICY

    from sandbox_infra import orchestrator

    assert orchestrator.DIGEST_POLICY == DIGEST_POLICY
    assert DIGEST_POLICY in {policy.name for policy in all_policies()}
