"""Each scanner finding's fix, in what the program declares for the example roster (docs/hardening.md).

Asserted on the wire form, what Kubernetes receives: readiness probe, images by digest, the API key as a
read-only file rather than an environment variable, pull policy Always, UIDs and GIDs above 10000, and
every namespace's default ServiceAccount without a token.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pytest

from sandbox_infra import images
from sandbox_infra.sandbox import API_KEY_FILE, GROUP_ID, USER_ID
from sandbox_infra.settings import StackSettings
from tests.unit.mocks import Recorder, resolve, run_example

STS = "kubernetes:apps/v1:StatefulSet"
NAMESPACE = "kubernetes:core/v1:Namespace"
SA_PATCH = "kubernetes:core/v1:ServiceAccountPatch"
SECRET = "kubernetes:core/v1:Secret"


@pytest.fixture(scope="module")
def example(request: pytest.FixtureRequest) -> Recorder:
    return run_example(Path(request.config.rootpath) / "roster.yaml")


def _wire(recorder: Recorder, type_: str) -> list[dict[str, Any]]:
    return [wire for (typ, _), wire in sorted(recorder.wire.items()) if typ == type_]


def _pods(recorder: Recorder) -> list[dict[str, Any]]:
    pods = [sts["spec"]["template"]["spec"] for sts in _wire(recorder, STS)]
    assert len(pods) == 8  # every sandbox of the example but the archived one
    return pods


def _containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}


def test_gemini_cli_has_a_readiness_probe_that_means_something(example: Recorder) -> None:
    for pod in _pods(example):
        gemini = _containers(pod)["gemini-cli"]
        command = gemini["readinessProbe"]["exec"]["command"]
        assert command[:2] == ["sh", "-c"]
        # The CLI is installed, home and workspace are writable, the key file is readable.
        assert re.fullmatch(
            r"command -v gemini >/dev/null && test -w /home/sandbox && test -w /workspace && test -r (\S+)", command[2]
        )
        assert command[2].endswith(API_KEY_FILE)
        assert "readinessProbe" in _containers(pod)["code-server"]


def test_every_image_is_pinned_by_digest(example: Recorder) -> None:
    images_seen = {c["image"] for pod in _pods(example) for c in _containers(pod).values()}
    assert len(images_seen) == 3  # base gemini-cli, code-server, one freelancer's own image
    assert all(images.has_digest(image) and images.split(image).tag for image in images_seen), images_seen
    assert any("gemini-cli-user-9b7336bd" in image for image in images_seen)


def test_every_container_pulls_always(example: Recorder) -> None:
    for pod in _pods(example):
        assert {name: c["imagePullPolicy"] for name, c in _containers(pod).items()} == {
            "prepare-home": "Always",
            "gemini-cli": "Always",
            "code-server": "Always",
        }


def test_every_container_runs_above_uid_and_gid_10000(example: Recorder) -> None:
    assert USER_ID > 10000 and GROUP_ID > 10000
    for pod in _pods(example):
        context = pod["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (USER_ID, GROUP_ID, GROUP_ID)
        for container in _containers(pod).values():  # no container overrides them downwards
            assert "runAsUser" not in container["securityContext"]
            assert "runAsGroup" not in container["securityContext"]


def test_the_api_key_is_a_read_only_file_not_an_environment_variable(example: Recorder) -> None:
    for pod in _pods(example):
        for container in _containers(pod).values():
            assert all("valueFrom" not in env and "KEY" not in env["name"] for env in container.get("env", []))
            assert "envFrom" not in container
        [volume] = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"] == {
            "secretName": "gemini-api-key",
            "defaultMode": 0o400,
            "items": [{"key": ".env", "path": ".env", "mode": 0o400}],
        }
        mounts = {name: c.get("volumeMounts", []) for name, c in _containers(pod).items()}
        # Only gemini-cli reads it: one file, read-only, inside the home volume.
        assert [m for m in mounts["gemini-cli"] if m["name"] == volume["name"]] == [
            {"name": volume["name"], "mountPath": "/home/sandbox/.gemini/.env", "subPath": ".env", "readOnly": True}
        ]
        assert all(m["name"] != volume["name"] for m in mounts["code-server"] + mounts["prepare-home"])


def test_the_secret_holds_gemini_clis_env_file_as_a_pulumi_secret(example: Recorder) -> None:
    secrets = [s for s in example.by_type(SECRET) if s.name.endswith("-gemini-api-key")]  # not the pull Secrets
    assert len(secrets) == 3
    for secret in secrets:
        value = pulumi.Output.from_input(secret.props["string_data"])
        assert resolve(value) == {".env": "GEMINI_API_KEY=test-key-not-real\n"}
    for wire in _wire(example, SECRET):  # the API keys and the registry pull Secrets
        assert wire["stringData"]["4dabf18193072939515e22adb298388d"]  # wrapped as a secret on the wire


def test_every_namespace_turns_off_its_default_service_account_token(example: Recorder) -> None:
    namespaces = {wire["metadata"]["name"] for wire in _wire(example, NAMESPACE)}
    assert len(namespaces) == 8  # platform-system, three clients, and the services' four (istio-system...)
    patches = _wire(example, SA_PATCH)
    assert {p["metadata"]["namespace"] for p in patches} == namespaces
    assert all(p["metadata"]["name"] == "default" and p["automountServiceAccountToken"] is False for p in patches)
    # The patch claims one field only: no labels or other fields of an object the controller owns.
    assert all(set(p) == {"apiVersion", "kind", "metadata", "automountServiceAccountToken"} for p in patches)


def test_a_stack_without_digests_may_use_tags() -> None:
    """requireImageDigests: false (not in production) lets tags through to the plan unchanged."""
    settings = StackSettings(
        api_key_present=True,
        require_image_digests=False,
        gemini_cli_tag="0.19.4",
        code_server_image="registry.platform.com/mirror/code-server:4.105.1",
    )
    recorder = run_example(Path(__file__).parents[2] / "roster.yaml", settings=settings)
    seen = {c["image"] for pod in _pods(recorder) for c in _containers(pod).values()}
    assert "registry.platform.com/mirror/code-server:4.105.1" in seen
