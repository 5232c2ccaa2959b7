"""The change report: realistic roster changes against the example roster, pinned by markdown snapshots, the
JSON form validated against report.schema.json, the numbers checked by hand, and every bad input a clear
error (exit 2), never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sandbox_infra.cli import main
from sandbox_infra.settings import ClusterCapacity, Prices, SettingsError, settings_from_mapping
from tests.conftest import REPO

SNAPSHOTS = Path(__file__).parent / "snapshots"
SCHEMA = json.loads((REPO / "report.schema.json").read_text())
ACME = "0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11"
GLOBEX = "083cfb9d-4274-45dd-b4a8-bb1b0e883cf5"
INITECH = "b38cf925-1979-4799-93b8-ea79b0712d0c"
PRICED = """\
  sandbox-infra:clusterCapacity:
    cpu: "24"
    memory: 64Gi
    gpu: 1
    storage: 2Ti
  sandbox-infra:prices:
    currency: EUR
    cpuCoreMonth: "18.50"
    memoryGiBMonth: "2.40"
    gpuMonth: "620"
    storageGiBMonth: "0.12"
"""
Edit = Callable[[dict[str, Any]], None]


def _freelancer(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(f for f in data["freelancers"] if f["id"].startswith(prefix))


def mixed(data: dict[str, Any]) -> None:
    """A busy week: one hire, one offboarded, one archived, one back from suspension, a tier, a GPU, a bigger disk."""
    _freelancer(data, "e0d60578")["sandboxes"][1]["state"] = "archived"  # ada at Globex
    _freelancer(data, "d44c1a65")["sandboxes"][0]["state"] = "active"  # linus resumes
    _freelancer(data, "26d36db5")["sandboxes"][0]["tier"] = "standard"  # dennis
    _freelancer(data, "f0fe0837")["sandboxes"][0]["gpu"] = True  # barbara
    _freelancer(data, "9b7336bd")["sandboxes"][0]["storage"] = {"workspace": "80Gi"}  # ken
    data["freelancers"] = [f for f in data["freelancers"] if not f["id"].startswith("95a68ebd")]  # frances, archived
    data["freelancers"].append(
        {
            "id": "3f1c9a77-5d2e-4b8a-9c61-0e7f4a2b8d10",
            "email": "hedy@example.com",
            "sandboxes": [{"client": INITECH, "tier": "standard"}],
        }
    )


def refused(data: dict[str, Any]) -> None:
    """Everything check --previous refuses: a shrink, a suspended sandbox dropped, a whole client dropped."""
    _freelancer(data, "64a1e28f")["sandboxes"][0]["storage"] = {"workspace": "60Gi", "home": "20Gi"}
    data["freelancers"] = [f for f in data["freelancers"] if not f["id"].startswith("d44c1a65")]
    data["clients"] = [c for c in data["clients"] if c["id"] != GLOBEX]
    for freelancer in data["freelancers"]:
        freelancer["sandboxes"] = [s for s in freelancer["sandboxes"] if s["client"] != GLOBEX]


def invalid(data: dict[str, Any]) -> None:
    _freelancer(data, "26d36db5")["sandboxes"][0]["tier"] = "gold"


def retier(data: dict[str, Any]) -> None:
    _freelancer(data, "26d36db5")["sandboxes"][0]["tier"] = "standard"


def project(tmp_path: Path, edit: Edit | None, *, config: str = "") -> Path:
    """A project directory with the example roster as base.yaml and the edited one as roster.yaml."""
    path = tmp_path / "project"
    path.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", path)
    (path / "Pulumi.dev.yaml").write_text((REPO / "Pulumi.dev.yaml").read_text() + config)
    shutil.copy(REPO / "roster.yaml", path / "base.yaml")
    data = yaml.safe_load((REPO / "roster.yaml").read_text())
    if edit is not None:
        edit(data)
    (path / "roster.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def report(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """Run `python -m sandbox_infra report` in ``path`` (relative names keep the snapshots independent of it)."""
    monkeypatch.chdir(path)
    code = main(["report", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_snapshot(name: str, actual: str) -> None:
    """Markdown a reviewer reads: any change to it must be deliberate (UPDATE_SNAPSHOTS=1 to accept one)."""
    snapshot = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snapshot.write_text(actual)
    assert actual.splitlines() == snapshot.read_text().splitlines(), f"{name} changed: UPDATE_SNAPSHOTS=1 if intended"


def as_json(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> dict[str, Any]:
    code, out, _ = report(path, capsys, monkeypatch, "--base", "base.yaml", "--format", "json", *args)
    document: dict[str, Any] = json.loads(out)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(document)
    assert code == (0 if document["ok"] else 1)
    return document


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_schema_rejects_what_the_report_never_prints() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    assert not validator.is_valid({"schemaVersion": 1})
    assert not validator.is_valid({"$defs": {}})


def test_a_busy_week(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = project(tmp_path, mixed, config=PRICED)
    code, out, _ = report(path, capsys, monkeypatch, "--base", "base.yaml")
    assert code == 0
    assert_snapshot("report-busy-week.md", out)

    document = as_json(path, capsys, monkeypatch)
    assert document["verdict"] == "ok"
    assert document["counts"] == {
        "removed": 1, "archived": 1, "added": 1, "restored": 0, "suspended": 0, "resumed": 1, "changed": 3
    }  # fmt: skip
    assert document["freelancers"] == {"added": ["hedy@example.com"], "removed": ["frances@example.com"]}
    costs = {(c["freelancer"], c["kind"]): c["monthlyCostDelta"] for c in document["changes"]}
    # standard: 2 cores x 18.50 + 4 GiB x 2.40 + (50 + 10) GiB x 0.12
    assert costs["hedy@example.com", "added"] == "53.80"
    assert costs["barbara@example.com", "changed"] == "620.00"  # one GPU
    assert costs["ken@example.com", "changed"] == "3.60"  # 30 GiB more
    assert costs["linus@example.com", "resumed"] == "23.30"  # basic compute: 18.50 + 2 x 2.40
    assert Decimal(document["cost"]["delta"]) == sum(Decimal(c) for c in costs.values())
    # GPUs: grace's and now barbara's, against a declared capacity of one
    assert document["cluster"]["over"] == ["gpu"] and document["cluster"]["fits"] is False
    assert document["cluster"]["after"] == {"cpu": "20", "memory": "40Gi", "gpu": 2, "storage": "600Gi"}
    assert {q["client"]: q["after"]["cpu"] for q in document["quotas"]} == {"Globex": "5", "Initech": "8"}
    released = {(v["name"], v["size"]) for v in document["dataRisk"]["volumesReleased"]}
    assert released == {
        ("workspace-95a68ebd-8ec9-43ef-96f8-342291623c48", "50Gi"),
        ("home-95a68ebd-8ec9-43ef-96f8-342291623c48", "10Gi"),
    }
    assert [c["freelancer"] for c in document["dataRisk"]["sandboxesArchived"]] == ["ada@example.com"]
    # Every client stack, and the platform stack: the dev environment's database holds the roster's records.
    assert len(document["stacks"]["touched"]) == 4


def test_refused_changes_come_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project(tmp_path, refused)
    code, out, _ = report(path, capsys, monkeypatch, "--base", "base.yaml")
    assert code == 1
    assert_snapshot("report-refused.md", out)

    document = as_json(path, capsys, monkeypatch)
    assert document["verdict"] == "refused" and len(document["refused"]) == 6
    assert document["cost"] is None  # no price table
    assert [(n["namespace"], n["volumes"]) for n in document["dataRisk"]["namespacesDeleted"]] == [
        (f"client-{GLOBEX}", 6)
    ]
    assert [(v["name"], v["why"]) for v in document["dataRisk"]["volumesShrunk"]] == [
        ("workspace-64a1e28f-6dcb-41fe-a9d2-33558e10fc1d", "shrink from 100Gi to 60Gi: Kubernetes refuses it")
    ]
    assert all(c["refused"] for c in document["changes"])
    # the same rules as check --previous, which fails on the same roster
    code = main(["check", "roster.yaml", "--previous", "base.yaml"])
    assert code == 1 and len(capsys.readouterr().out.splitlines()) == 6


def test_an_invalid_roster_is_reported_not_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project(tmp_path, invalid)
    code, out, _ = report(path, capsys, monkeypatch, "--base", "base.yaml")
    assert code == 1
    assert_snapshot("report-invalid.md", out)
    document = as_json(path, capsys, monkeypatch)
    assert document["verdict"] == "invalid"
    assert document["errors"] == [
        "roster.yaml:60:11: freelancers[6].sandboxes[0].tier: unknown tier 'gold' (expected one of basic, standard, premium, custom)"
    ]


PREVIEW = {
    "environment": "dev",
    "operation": "preview",
    "ok": False,
    "stacks": [
        {
            "stack": f"dev-client-{INITECH}",
            "slice": f"client-{INITECH}",
            "reason": "sandbox 26d36db5 tier, resources",
            "status": "failed",
            "created": False,
            "changes": {"update": 2, "same": 30},
            "policy_violations": [
                "[mandatory] sandbox-pods-restricted: container gemini-cli runs as root (urn:pulumi:dev-client-x::sandbox-infra::kubernetes:apps/v1:StatefulSet::s)"
            ],
            "error": "preview failed: 1 mandatory policy violation",
            "attempts": 1,
            "seconds": 4.2,
        }
    ],
    "removed": [],
    "orphans": ["dev-client-00000000-0000-4000-8000-000000000000"],
}


def test_the_preview_and_its_policy_violations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project(tmp_path, retier)
    (path / "preview.json").write_text(json.dumps(PREVIEW))
    code, _, err = report(
        path, capsys, monkeypatch, "--base", "base.yaml", "--preview", "preview.json", "--output", "out/comment.md"
    )
    assert code == 1
    assert err == "out/comment.md: markdown report, preview-failed\n"
    assert_snapshot("report-preview.md", (path / "out" / "comment.md").read_text())
    document = as_json(path, capsys, monkeypatch, "--preview", "preview.json")
    assert document["verdict"] == "preview-failed"
    assert document["preview"]["stacks"][0]["policyViolations"] == PREVIEW["stacks"][0]["policy_violations"]  # type: ignore[index]


def test_a_clean_preview_keeps_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project(tmp_path, retier)
    clean = {**PREVIEW, "ok": True, "orphans": []}
    clean["stacks"] = [{**PREVIEW["stacks"][0], "status": "ok", "policy_violations": [], "error": None}]  # type: ignore[index]
    (path / "preview.json").write_text(json.dumps(clean))
    document = as_json(path, capsys, monkeypatch, "--preview", "preview.json")
    assert document["verdict"] == "ok" and document["preview"]["ok"] is True


def test_no_change(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = project(tmp_path, None)
    code, out, _ = report(path, capsys, monkeypatch, "--base", "base.yaml")
    assert code == 0
    assert "✅ **Safe to apply**" in out and "**0 of 4 stacks** run" in out
    document = as_json(path, capsys, monkeypatch)
    assert document["changes"] == [] and document["quotas"] == [] and document["stacks"]["touched"] == []


def _git(path: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "-C", str(path), *args],
        check=True,
        capture_output=True,
    )


def test_a_git_revision_without_a_roster_is_an_empty_base(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project(tmp_path, None)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "add", "Pulumi.yaml", "Pulumi.dev.yaml")
    _git(path, "commit", "-q", "-m", "before the roster")
    code, out, _ = report(path, capsys, monkeypatch, "--base", "main", "--format", "json")
    document = json.loads(out)
    assert code == 0 and document["base"] == "main:roster.yaml"  # 8 freelancers, 9 sandboxes
    assert document["counts"]["added"] == 9 and len(document["freelancers"]["added"]) == 8
    assert {q["before"] is None for q in document["quotas"]} == {True}


BadInput = tuple[Callable[[Path], object] | None, list[str], str]


@pytest.mark.parametrize(
    "case",
    [
        (None, ["--base", "nothing-here"], "error: --base nothing-here: neither a roster file nor a git revision of ."),
        (
            lambda p: (p / "base.yaml").write_text("version: 1\nclients: [\n"),
            ["--base", "base.yaml"],
            "error: --base base.yaml: base.yaml:3:1: YAML syntax error:",
        ),
        (
            lambda p: (p / "base.yaml").write_text("version: 1\nclients: [{id: 1, name: x}]\n"),
            ["--base", "base.yaml"],
            "error: --base base.yaml is not a valid roster under today's rules, so there is nothing to compare with: "
            "base.yaml:2:16: clients[0].id: malformed UUID 1",
        ),
        (
            lambda p: (p / "preview.json").write_text("{not json"),
            ["--base", "base.yaml", "--preview", "preview.json"],
            "error: preview.json: not the JSON summary of `python -m sandbox_infra preview --json` (",
        ),
        (
            lambda p: (p / "preview.json").write_text('{"stacks": [{"stack": 1}]}'),
            ["--base", "base.yaml", "--preview", "preview.json"],
            "error: preview.json: not the JSON summary of `python -m sandbox_infra preview --json` (a stack without",
        ),
        (None, ["--base", "base.yaml", "--preview", "missing.json"], "error: missing.json: cannot read the preview"),
        (None, ["--base", "base.yaml", "--env", "prod"], "error: Pulumi.prod.yaml: no such settings file"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: BadInput
) -> None:
    setup, args, message = case
    path = project(tmp_path, retier)
    if setup is not None:
        setup(path)
    code, out, err = report(path, capsys, monkeypatch, *args)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1, err


def test_the_report_command_runs_as_a_module(tmp_path: Path) -> None:
    """What CI runs: a process, its exit status and its output file (no traceback on the way)."""
    path = project(tmp_path, refused)
    result = subprocess.run(
        [sys.executable, "-m", "sandbox_infra", "report", "--base", "base.yaml", "--output", "report.md"],
        cwd=path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == "report.md: markdown report, refused\n"
    assert (path / "report.md").read_text().startswith("## Roster change · `dev` · compared with `base.yaml`")


# ---- the settings the report reads ----------------------------------------------------------------------


def test_capacity_and_prices_settings() -> None:
    settings = settings_from_mapping(
        {
            "clusterCapacity": {"cpu": 96, "memory": "384Gi", "gpu": "4"},
            "prices": {
                "currency": "EUR",
                "cpuCoreMonth": 21.5,
                "memoryGiBMonth": "2.9",
                "gpuMonth": 650,
                "storageGiBMonth": "0.1",
            },
        },
        secret_keys={},
    )
    assert settings.cluster_capacity == ClusterCapacity(Decimal(96), Decimal(384 * 2**30), 4, None)
    assert settings.prices == Prices("EUR", Decimal("21.5"), Decimal("2.9"), Decimal(650), Decimal("0.1"))


PRICES = {"currency": "EUR", "cpuCoreMonth": "1", "memoryGiBMonth": "1", "gpuMonth": "1", "storageGiBMonth": "1"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"clusterCapacity": "96"},
            "sandbox-infra:clusterCapacity: expected a mapping with keys cpu, memory, gpu, storage",
        ),
        (
            {"clusterCapacity": {"cpus": 4}},
            "sandbox-infra:clusterCapacity: unknown key cpus (expected cpu, memory, gpu, storage)",
        ),
        ({"clusterCapacity": {"memory": "lots"}}, "sandbox-infra:clusterCapacity.memory: 'lots' is not a number"),
        ({"clusterCapacity": {"gpu": "1.5"}}, "sandbox-infra:clusterCapacity.gpu: '1.5' is not a whole number"),
        (
            {"clusterCapacity": {"cpu": True}},
            "sandbox-infra:clusterCapacity.cpu: expected a number or a quantity, got True",
        ),
        ({"clusterCapacity": {"cpu": "-1"}}, "sandbox-infra:clusterCapacity.cpu: '-1' must not be negative"),
        (
            {"prices": {"currency": "EUR"}},
            "sandbox-infra:prices: missing cpuCoreMonth, memoryGiBMonth, gpuMonth, storageGiBMonth (expected currency, cpuCoreMonth, memoryGiBMonth, gpuMonth, storageGiBMonth)",
        ),
        (
            {"prices": {**PRICES, "currency": "€"}},
            "sandbox-infra:prices.currency: expected a code such as EUR, got '€'",
        ),
        ({"prices": {**PRICES, "gpuMonth": "1Gi"}}, "sandbox-infra:prices.gpuMonth: '1Gi' is not a number"),
        ({"prices": {**PRICES, "gpuMonth": "NaN"}}, "sandbox-infra:prices.gpuMonth: 'NaN' is not a number"),
    ],
)
def test_bad_capacity_and_prices_settings(values: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings_from_mapping(values, secret_keys={})
    assert str(raised.value) == message
