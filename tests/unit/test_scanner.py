"""The Kubernetes scanner `make lint` runs (tests/scanner.py): clean on the example, and able to fail.

These run the real checkov (from .venv-scan, which `make venv` installs): a scanner that could not find
anything would pass every run, so one test hands it a manifest broken in each of the six ways
docs/hardening.md lists, and expects exactly those six rules to fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import scanner
from tests.conftest import REPO

GRACE = "64a1e28f-6dcb-41fe-a9d2-33558e10fc1d"
ACME = "0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11"
# The six hardening findings (docs/hardening.md), as checkov names them.
HARDENING_RULES = {
    "CKV_K8S_9": "Readiness Probe Should be Configured",
    "CKV_K8S_43": "Image should use digest",
    "CKV_K8S_35": "Prefer using secrets as files over secrets as environment variables",
    "CKV_K8S_15": "Image Pull Policy should be Always",
    "CKV_K8S_40": "Containers should run as a high UID to avoid host conflict",
    "CKV_K8S_41": "Ensure that default service accounts are not actively used",
}


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("manifests")
    scanner.render(directory)
    return directory


def test_every_declared_object_is_rendered_without_secrets(manifests: Path) -> None:
    kinds = [yaml.safe_load(path.read_text())["kind"] for path in sorted(manifests.iterdir())]
    assert len(kinds) == 132  # every Kubernetes object of the example: 8 namespaces, 8 StatefulSets, 18 claims...
    assert kinds.count("StatefulSet") == 8 and kinds.count("ServiceAccount") == 3 + 8  # sandbox SAs + default
    text = "".join(path.read_text() for path in manifests.iterdir())
    assert "not-real" not in text and scanner.SECRET_PLACEHOLDER in text  # API keys, pull tokens, chart secrets


def test_the_example_roster_is_clean(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert scanner.check(manifests) == 0
    out = capsys.readouterr().out
    assert out.startswith("checkov: 132 manifests, ") and out.rstrip().endswith(
        "0 failed (exceptions: none; docs/hardening.md)"
    )
    assert int(out.split(", ")[1].split()[0]) > 500  # checks that passed: the rules did run


def _break(manifests: Path, into: Path) -> None:
    """The example's manifests with Grace's sandbox undoing every fix, and a default ServiceAccount with a token."""
    into.mkdir()
    for path in manifests.iterdir():
        document: dict[str, Any] = yaml.safe_load(path.read_text())
        if document["kind"] == "StatefulSet" and document["metadata"]["name"] == f"sandbox-{GRACE}":
            pod = document["spec"]["template"]["spec"]
            pod["securityContext"]["runAsUser"] = 1000
            gemini = next(c for c in pod["containers"] if c["name"] == "gemini-cli")
            del gemini["readinessProbe"]
            gemini["image"] = gemini["image"].split("@")[0]
            gemini["imagePullPolicy"] = "IfNotPresent"
            gemini["env"].append(
                {"name": "GEMINI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "gemini-api-key", "key": ".env"}}}
            )
        metadata = document["metadata"]
        if document["kind"] == "ServiceAccount" and (metadata["name"], metadata["namespace"]) == (
            "default",
            f"client-{ACME}",
        ):
            del document["automountServiceAccountToken"]
        (into / path.name).write_text(yaml.safe_dump(document))


def test_the_scanner_fails_on_each_finding_of_the_issue(
    manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    _break(manifests, broken)
    result = scanner.scan(broken)
    assert {(f.rule, f.title) for f in result.findings} == set(HARDENING_RULES.items())
    assert {f.resource for f in result.findings} == {
        f"StatefulSet.client-{ACME}.sandbox-{GRACE}",
        f"ServiceAccount.client-{ACME}.default",
    }
    assert scanner.check(broken) == 1  # what fails `make lint`
    assert "CKV_K8S_43 Image should use digest: StatefulSet." in capsys.readouterr().out


def test_exceptions_are_one_rule_each_with_a_reason_listed_in_the_docs() -> None:
    docs = (REPO / "docs" / "hardening.md").read_text()
    for rule, reason in scanner.EXCEPTIONS.items():
        assert scanner.RULE_ID.match(rule) and reason.strip()
        assert f"`{rule}`" in docs
        assert rule not in HARDENING_RULES  # these findings are fixed, never excepted
    command = scanner.command(Path("manifests"))
    assert ("--skip-check" in command) == bool(scanner.EXCEPTIONS)
    assert "--skip-download" in command  # offline: no rule updates fetched behind the pin


def test_a_missing_scanner_is_an_error_not_a_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(scanner, "SCANNER", REPO / ".venv-scan" / "bin" / "no-such-checkov")
    with pytest.raises(scanner.ScannerError, match="run `make venv`"):
        scanner.scan(tmp_path)
    assert scanner.main(["--keep", str(tmp_path / "out")]) == 2
