"""The orchestrator's own logic, without the engine: which runs, how many at once, shards, the summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from pulumi import automation as auto
from pulumi.automation import OpType
from pulumi.automation.events import PropertyDiff, StepEventMetadata, StepEventStateMetadata

from sandbox_infra.changes import ShardError, Touched, shard
from sandbox_infra.environment import Environment, load_environment
from sandbox_infra.orchestrator import (
    DIGEST_POLICY,
    STACK_MEMORY,
    Report,
    StackRun,
    _change_line,
    _Stack,
    _Workspace,
    default_parallelism,
    format_changes,
    orphan_stacks,
    policy_pack_config,
    select_runs,
    stacks_in_directory,
)
from sandbox_infra.plan import PLATFORM_SLICE, Plan
from sandbox_infra.settings import StackSettings
from tests.unit.test_changes import ACME, ENV_FILE, GLOBEX, INITECH


@pytest.fixture
def environment(tmp_path: Path, example_roster: Path) -> Environment:
    (tmp_path / "Pulumi.dev.yaml").write_text(ENV_FILE)
    (tmp_path / "roster.yaml").write_text(example_roster.read_text())
    return load_environment("dev", tmp_path)


@pytest.fixture
def plan(environment: Environment) -> Plan:
    return environment.plan(environment.load_roster())


ALL_STACKS = {"dev", f"dev-client-{ACME}", f"dev-client-{GLOBEX}", f"dev-client-{INITECH}"}


def test_only_touched_stacks_run_when_all_exist(environment: Environment, plan: Plan) -> None:
    runs = select_runs(environment, plan, Touched({f"client-{GLOBEX}": "sandbox added"}), ALL_STACKS, everything=False)
    assert [(r.stack, r.reason) for r in runs] == [(f"dev-client-{GLOBEX}", "sandbox added")]


def test_missing_stacks_always_run_and_the_platform_comes_first(environment: Environment, plan: Plan) -> None:
    runs = select_runs(environment, plan, Touched({}), {f"dev-client-{ACME}"}, everything=False)
    assert runs[0].slice == PLATFORM_SLICE
    assert {r.stack for r in runs} == ALL_STACKS - {f"dev-client-{ACME}"}
    assert {r.reason for r in runs} == {"stack does not exist yet"}


def test_all_runs_everything(environment: Environment, plan: Plan) -> None:
    runs = select_runs(environment, plan, Touched({}), ALL_STACKS, everything=True)
    assert {r.stack for r in runs} == ALL_STACKS and {r.reason for r in runs} == {"--all"}


def test_orphaned_stacks_are_listed(environment: Environment, plan: Plan) -> None:
    known = {*ALL_STACKS, "dev-client-00000000-0000-4000-8000-000000000000", "prod-small", "dev"}
    assert orphan_stacks(environment, plan, known) == ["dev-client-00000000-0000-4000-8000-000000000000"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, ["e", "d", "c", "b", "a"]),
        ("1/1", ["a", "b", "c", "d", "e"]),
        ("1/2", ["a", "c", "e"]),
        ("2/2", ["b", "d"]),
        ("3/3", ["c"]),
    ],
)
def test_shards_split_the_sorted_list(spec: str | None, expected: list[str]) -> None:
    assert shard(["e", "d", "c", "b", "a"], spec) == expected


def test_shards_cover_every_stack_exactly_once() -> None:
    stacks = [f"dev-client-{i:03}" for i in range(101)]
    parts = [shard(stacks, f"{i}/7") for i in range(1, 8)]
    assert sorted(s for part in parts for s in part) == sorted(stacks)


@pytest.mark.parametrize("spec", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shards_are_refused(spec: str) -> None:
    with pytest.raises(ShardError, match="expected I/N"):
        shard(["a"], spec)


@pytest.mark.parametrize(
    ("operation", "memory", "cpus", "expected"),
    [
        ("preview", 24 * 2**30, 2, 2),
        ("up", 24 * 2**30, 2, 3),
        ("refresh", 24 * 2**30, 2, 3),
        ("preview", 24 * 2**30, 16, 16),
        ("up", 24 * 2**30, 16, 17),
        ("up", STACK_MEMORY * 2, 16, 2),
        ("preview", STACK_MEMORY // 2, 4, 1),
        ("up", STACK_MEMORY // 2, 4, 1),
    ],
)
def test_parallelism_fits_cores_and_memory(operation: str, memory: int, cpus: int, expected: int) -> None:
    """Previews only compute, one per core; updates also wait on the cluster, one more; memory caps both."""
    assert default_parallelism(operation, memory, cpus) == expected


def test_changes_are_listed_in_a_fixed_order() -> None:
    assert format_changes({"same": 40, "create": 3, "update": 1, "delete": 0}) == "create 3, update 1, same 40"
    assert format_changes({}) == "nothing"


def test_the_summary_names_failed_stacks_and_violations() -> None:
    ok = StackRun("dev", PLATFORM_SLICE, "--all", status="ok", changes={"same": 3}, seconds=4.2)
    failed = StackRun(
        f"dev-client-{ACME}",
        f"client-{ACME}",
        "sandbox added",
        status="failed",
        changes={"create": 2},
        policy_violations=["[mandatory] pinned-images: image ':latest' is not pinned (urn:x)"],
        error="kubernetes:apps/v1:StatefulSet: refused",
    )
    report = Report("dev", "preview", [ok, failed], orphans=("dev-client-gone",))
    assert not report.ok
    table = report.table().splitlines()
    assert table[0] == "preview of environment dev: 1 of 2 stacks ok"
    assert table[2].split() == ["dev", "ok", "0", "0", "0", "0", "3", "0", "4.2s"]
    assert table[3].split()[:3] == [f"dev-client-{ACME}", "failed", "2"]
    assert f"policy violation in dev-client-{ACME}: [mandatory] pinned-images" in report.table()
    assert f"failed: dev-client-{ACME}: kubernetes:apps/v1:StatefulSet: refused" in report.table()
    assert "not run: dev-client-gone belongs to no client in the roster" in report.table()
    data = report.to_json()
    assert data["ok"] is False and [s["status"] for s in data["stacks"]] == ["ok", "failed"]
    assert "steps" not in data["stacks"][0]


def test_the_digest_rule_only_warns_where_digests_are_not_required() -> None:
    """requireImageDigests decides: the orchestrator passes the pack a config that makes the rule advisory."""
    assert policy_pack_config(StackSettings()) is None
    relaxed = StackSettings(require_image_digests=False)
    assert policy_pack_config(relaxed) == {DIGEST_POLICY: {"enforcementLevel": "advisory"}}


def test_drift_marks_the_stacks_that_changed_by_name() -> None:
    from sandbox_infra.cli import _mark_drift

    runs = [
        StackRun("dev", PLATFORM_SLICE, "--all", status="ok", changes={"same": 3}),
        StackRun(f"dev-client-{ACME}", f"client-{ACME}", "--all", status="ok", changes={"same": 40, "update": 1}),
        StackRun(f"dev-client-{GLOBEX}", f"client-{GLOBEX}", "--all", status="failed", error="boom", changes={}),
    ]
    _mark_drift(runs)
    assert [r.status for r in runs] == ["ok", "drifted", "failed"]
    table = Report("dev", "preview", runs).table()
    assert f"drifted: dev-client-{ACME}: the cluster differs from the roster: update 1" in table
    assert not Report("dev", "preview", runs).ok


def _step(op: OpType, typ: str, name: str | None, **diff: object) -> StepEventMetadata:
    urn = f"urn:pulumi:dev::sandbox-infra::sandbox-infra:tenancy:ClientTenant${typ}::logical-{name}"
    inputs = {"metadata": {"name": name, "namespace": "client-a"}} if name else {}
    state = StepEventStateMetadata(type=typ, urn=urn, id="", parent="", provider="", inputs=inputs)
    return StepEventMetadata(op=op, urn=urn, type=typ, provider="", new=state, **diff)  # type: ignore[arg-type]


def test_previewed_changes_name_each_kubernetes_object_and_what_differs() -> None:
    sts = _step(
        OpType.UPDATE,
        "kubernetes:apps/v1:StatefulSet",
        "sandbox-1",
        detailed_diff={"spec.replicas": PropertyDiff.from_json({"diffKind": "update", "inputDiff": True})},
    )
    assert _change_line(sts) == "update StatefulSet client-a/sandbox-1 (spec.replicas)"
    policy = _step(OpType.CREATE, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "default-deny")
    assert _change_line(policy) == "create NetworkPolicy client-a/default-deny"
    quota = _step(OpType.UPDATE, "kubernetes:core/v1:ResourceQuota", "q", diffs=["spec"])
    assert _change_line(quota) == "update ResourceQuota client-a/q (spec)"
    assert _change_line(_step(OpType.SAME, "kubernetes:core/v1:Secret", "k")) == ""
    assert _change_line(_step(OpType.REFRESH, "kubernetes:core/v1:Secret", "k")) == ""
    assert _change_line(_step(OpType.CREATE, "sandbox-infra:sandbox:FreelancerSandbox", None)) == ""
    unnamed = _step(OpType.DELETE, "kubernetes:core/v1:Service", None)
    assert _change_line(unnamed) == "delete Service logical-None"


def test_the_summary_says_what_was_recovered() -> None:
    run = StackRun("dev", PLATFORM_SLICE, "--all", status="ok", recovered=["removed the stale lock of pid 7"])
    assert "recovered: dev: removed the stale lock of pid 7" in Report("dev", "up", [run]).table()
    assert Report("dev", "up", [run]).to_json()["stacks"][0]["recovered"] == ["removed the stale lock of pid 7"]


def test_drift_is_listed_by_stack_with_the_command_that_restores_it(environment: Environment) -> None:
    from sandbox_infra.cli import DRIFT_FOUND, _drift_lines

    clean = StackRun("dev", PLATFORM_SLICE, "--all", status="ok", changes={"same": 5})
    drifted = StackRun(
        f"dev-client-{ACME}",
        f"client-{ACME}",
        "--all",
        status="ok",
        changes={"create": 1, "update": 1, "same": 20},
        changed=[f"create Secret client-{ACME}/gemini-api-key", f"update StatefulSet client-{ACME}/s (spec.replicas)"],
    )
    lines = _drift_lines(environment, [clean, drifted], [drifted]).splitlines()
    assert lines[:2] == [
        f"drift in dev-client-{ACME}: create Secret client-{ACME}/gemini-api-key",
        f"drift in dev-client-{ACME}: update StatefulSet client-{ACME}/s (spec.replicas)",
    ]
    assert lines[2].startswith("2 object(s) in 1 of 2 stack(s) differ from the roster")
    assert lines[2].endswith(f"python -m sandbox_infra up --env dev --refresh --only client-{ACME}")
    assert _drift_lines(environment, [clean], []) == "no drift: the cluster matches every stack of dev (1 checked)"
    assert DRIFT_FOUND not in (0, 1, 2)  # distinct from success, failure and usage errors


def test_the_statefulsets_of_sandboxes_no_longer_run_are_found_in_the_state() -> None:
    from sandbox_infra.orchestrator import STATEFULSET_TYPE, removed_statefulsets

    def resource(typ: str, name: str, **extra: object) -> dict[str, object]:
        return {"urn": f"urn:{typ}::{name}", "type": typ, "id": f"client-a/{name}", **extra}

    deployment = {
        "resources": [
            resource(STATEFULSET_TYPE, "sandbox-kept"),
            resource(STATEFULSET_TYPE, "sandbox-archived"),
            resource(STATEFULSET_TYPE, "sandbox-deleting", delete=True),  # a replaced one, already going
            resource("kubernetes:core/v1:PersistentVolumeClaim", "workspace-archived"),  # volumes stay
            {"urn": "urn:pulumi:stack", "type": "pulumi:pulumi:Stack"},
        ]
    }
    assert removed_statefulsets(deployment, {"sandbox-kept"}) == [f"urn:{STATEFULSET_TYPE}::sandbox-archived"]
    assert removed_statefulsets({}, set()) == []


class _RecordingStack(_Stack):
    """A _Stack whose CLI calls are recorded instead of run."""

    commands: list[list[str]]

    def _run_pulumi_cmd_sync(self, args: list[str], *_: object, **__: object) -> auto.CommandResult:
        self.commands.append(args)
        return auto.CommandResult(stdout="", stderr="", code=0)


class _NoCli(auto.PulumiCommand):
    def __init__(self) -> None:  # no CLI to find: nothing here may run it
        self.command = "pulumi-not-run"
        self.version = None


def test_an_update_runs_one_cli_command_and_reads_nothing_back(tmp_path: Path) -> None:
    """``Stack.up`` reads the stack back (outputs, last history entry) only through ``outputs()`` and
    ``info()``, which _Stack skips: if a new SDK reads it any other way, this fails, and _Stack's
    saving (three CLI starts per update) must be looked at again."""
    workspace = _Workspace(work_dir=str(tmp_path), pulumi_command=_NoCli())
    workspace.known = {"dev"}
    stack = _RecordingStack("dev", workspace)
    stack.commands = []
    result = stack.up(color="never")
    assert [c[0] for c in stack.commands] == ["up"]
    assert result.outputs == {}
    stack.commands.clear()
    stack.refresh(color="never")
    assert [c[0] for c in stack.commands] == ["refresh"]


def _file_backend(root: Path, meta: str | None, files: list[str], project: str = "sandbox-infra") -> Path:
    """A file backend's directory: ``.pulumi/meta.yaml`` (None: none) and these files under the project."""
    stacks = root / ".pulumi" / "stacks" / project
    stacks.mkdir(parents=True)
    if meta is not None:
        (root / ".pulumi" / "meta.yaml").write_text(meta)
    for name in files:
        (stacks / name).write_text("{}")
    return root


def test_a_file_backends_stacks_are_read_from_its_directory_as_the_engine_lists_them(tmp_path: Path) -> None:
    """What ``pulumi stack ls`` would list (tests/integration/test_orchestrator.py compares the two on the
    real engine): state files with the engine's extensions, compressed or not; not backups, sidecars or
    other projects' stacks; None wherever only the engine can tell."""
    files = [
        "dev.json", "dev.json.attrs", "dev.json.bak", "dev.json.bak.attrs",
        "dev-client-a.json.gz", "dev-client-b.yaml", "dev-client-c.yml.zst", "v1.2.json",
        "notes.txt", "bad name.json", f"{'x' * 101}.json",
    ]  # fmt: skip
    backend = _file_backend(tmp_path / "v1", "version: 1\n", files)
    (backend / ".pulumi" / "stacks" / "sandbox-infra" / "folder.json").mkdir()
    _file_backend(tmp_path / "v1", None, ["other.json"], project="another-project")
    expected = {"dev", "dev-client-a", "dev-client-b", "dev-client-c", "v1.2"}
    assert stacks_in_directory(backend, "sandbox-infra") == expected
    assert stacks_in_directory(backend, "unused-project") == set()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert stacks_in_directory(empty, "sandbox-infra") == set()  # the engine lays it out on first use
    legacy = _file_backend(tmp_path / "legacy", None, ["dev.json"])
    for unknown in (
        (None, "sandbox-infra"),  # not a file backend
        (backend, "*"),  # Pulumi.yaml names no project
        (tmp_path / "missing", "sandbox-infra"),
        (legacy, "sandbox-infra"),  # no meta.yaml beside stacks: the legacy layout
        (_file_backend(tmp_path / "v0", "version: 0\n", ["dev.json"]), "sandbox-infra"),
        (_file_backend(tmp_path / "torn", "version: [1\n", ["dev.json"]), "sandbox-infra"),
    ):
        assert stacks_in_directory(*unknown) is None, unknown
