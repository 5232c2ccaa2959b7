"""A third-party Kubernetes scanner over every object the program declares, without a cluster (``make lint``).

The program runs under Pulumi's mocks for the example roster (every slice in one, as ``adopt``'s single
stack would), and each Kubernetes object it registers is written out as a YAML manifest exactly as the
engine would receive it (Pulumi secrets replaced by a placeholder, never written). checkov (Prisma Cloud's
open-source IaC scanner, pinned in requirements-scan.txt, run from its own virtualenv) then scans the
directory with all of its Kubernetes rules, and any failed check fails the run.

Why checkov: it is maintained, installs from PyPI like the rest of the toolchain, and its Kubernetes rules
are the CIS-derived ones docs/hardening.md lists (readiness probes, digests, secrets as files,
pull policy, high UIDs, default service accounts). kube-linter is not served by the Go module proxy here,
and kube-score, which is, has no digest or secrets-as-files rule.

An exception is one rule switched off for everything, with its reason: add it to :data:`EXCEPTIONS` and to
docs/hardening.md. Usage: ``python -m tests.scanner [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SCANNER = REPO / ".venv-scan" / "bin" / "checkov"
EXAMPLE_ROSTER = REPO / "roster.yaml"

EXCEPTIONS: dict[str, str] = {}
"""checkov rule id -> why the platform does not follow it (listed in docs/hardening.md)."""

SECRET_PLACEHOLDER = "<a Pulumi secret, not written out>"
_SECRET_SIG = "4dabf18193072939515e22adb298388d"
RULE_ID = re.compile(r"^CKV2?_K8S_[0-9]+$")


class ScannerError(RuntimeError):
    """The scanner is missing or did not run (not the same as finding something)."""


@dataclass(frozen=True, order=True)
class Finding:
    """One failed check on one object."""

    rule: str
    title: str
    resource: str
    file: str

    def __str__(self) -> str:
        return f"{self.rule} {self.title}: {self.resource} ({self.file})"


@dataclass(frozen=True)
class Scan:
    passed: int
    findings: list[Finding]


def _redact(value: Any) -> Any:
    """Wire-form inputs with every Pulumi secret replaced by a placeholder (keys kept, values dropped)."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG):
            inner = value.get("value")
            if isinstance(inner, dict):
                return {k: SECRET_PLACEHOLDER for k in inner}
            return SECRET_PLACEHOLDER
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf Struct numbers are floats: 10001.0 is the UID 10001
    return value


def render(directory: Path, roster: Path = EXAMPLE_ROSTER) -> list[Path]:
    """Write one manifest per Kubernetes object the program declares for ``roster``; returns the files."""
    from tests.unit.mocks import run_example  # the Pulumi SDK and the program, only when rendering

    recorder = run_example(roster)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for index, ((type_, name), wire) in enumerate(sorted(recorder.wire.items())):
        if not type_.startswith("kubernetes:") or "kind" not in wire:
            continue  # the provider and the program's own components: nothing Kubernetes receives
        path = directory / f"{index:03d}-{wire['kind']}-{name}.yaml"
        path.write_text(yaml.safe_dump(_redact(wire), sort_keys=False))
        written.append(path)
    return written


def command(directory: Path) -> list[str]:
    """How checkov is run: every Kubernetes rule bar the listed exceptions, offline, JSON out."""
    args = [str(SCANNER), "--directory", str(directory), "--framework", "kubernetes", "--output", "json"]
    args += ["--skip-download", "--compact"]
    if EXCEPTIONS:
        args += ["--skip-check", ",".join(sorted(EXCEPTIONS))]
    return args


def scan(directory: Path) -> Scan:
    """Run checkov over a directory of manifests; raises :class:`ScannerError` if it could not."""
    if not SCANNER.exists():
        raise ScannerError(
            f"{SCANNER.relative_to(REPO)} is missing: run `make venv` (it installs requirements-scan.txt)"
        )
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"}
    result = subprocess.run(command(directory), capture_output=True, text=True, env=env, check=False)
    if result.returncode not in (0, 1):
        raise ScannerError(f"checkov exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise ScannerError(f"checkov printed no JSON report: {result.stdout[-2000:]} {result.stderr[-2000:]}") from exc
    findings, passed = [], 0
    for report in reports if isinstance(reports, list) else [reports]:
        results = report.get("results") or {}
        passed += len(results.get("passed_checks") or [])
        for check in results.get("failed_checks") or []:
            findings.append(Finding(check["check_id"], check["check_name"], check["resource"], check["file_path"]))
    return Scan(passed, sorted(findings))


def check(directory: Path) -> int:
    """Scan ``directory``, print the findings and a summary; 0 when clean, 1 on any finding."""
    result = scan(directory)
    for finding in result.findings:
        print(finding)
    skipped = ", ".join(sorted(EXCEPTIONS)) or "none"
    print(
        f"checkov: {len(list(directory.glob('*.yaml')))} manifests, {result.passed} checks passed, {len(result.findings)} failed "
        f"(exceptions: {skipped}; docs/hardening.md)"
    )
    return 1 if result.findings else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.scanner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="write the manifests here and keep them (default: a temporary dir)")
    args = parser.parse_args(argv)
    try:
        if args.keep:
            render(args.keep)
            return check(args.keep)
        with tempfile.TemporaryDirectory(prefix="sandbox-infra-manifests-") as tmp:
            render(Path(tmp))
            return check(Path(tmp))
    except ScannerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
