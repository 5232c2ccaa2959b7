"""What an interrupted update leaves behind: stale locks, torn sidecars and pending operations.

The texts and shapes here are the real engine's (pulumi 3.274.1, file backend), copied from a stack whose
update was killed with SIGKILL; tests/integration/test_reliability.py produces them for real.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox_infra.recovery import (
    Lock,
    backend_directory,
    kubernetes_id,
    lock_file,
    parse_locks,
    plan_repair,
    process_start,
    refused_message,
    remove_lock,
    stack_locks,
    stale_reason,
    torn_sidecars,
)

STACK = "e1-client-e664d4cb-c5d0-47c6-aea3-1bdf24c2b182"
LOCK_URL = (
    f"file:///srv/state/.pulumi/locks/organization/sandbox-infra/{STACK}/32f8c88f-10ef-43ed-92bf-2ec0a4f5cc75.json"
    "?no_tmp_dir=true"
)
REFUSED = (
    "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete "
    "the lock file with `pulumi cancel`.\n"
    f"  {LOCK_URL}: created by root@vm (pid 11911) at 2026-12-02T02:59:55Z\n"
)
SINCE = datetime(2026, 12, 2, 2, 59, 55, tzinfo=UTC)


def test_the_engines_lock_error_is_parsed() -> None:
    assert parse_locks(REFUSED) == [Lock(LOCK_URL, "root", "vm", 11911, SINCE)]
    two = (
        REFUSED.replace("1 lock(s)", "2 lock(s)")
        + f"  {LOCK_URL}: created by ci@runner-7 (pid 42) at 2026-12-02T03:00:00Z"
    )
    assert [(lock.host, lock.pid) for lock in parse_locks(two)] == [("vm", 11911), ("runner-7", 42)]
    assert parse_locks("error: some other failure\n  x: created by a@b (pid 1) at 2026-12-02T02:59:55Z") == []


def test_a_lock_is_stale_only_when_its_process_provably_is_gone() -> None:
    lock = parse_locks(REFUSED)[0]
    gone = stale_reason(lock, hostname="vm", started=lambda pid: None)
    assert gone == "pid 11911 is no longer running on vm"
    reused = stale_reason(lock, hostname="vm", started=lambda pid: SINCE + timedelta(minutes=5))
    assert reused is not None and "later process" in reused
    # The process that took the lock is still running: a live update, never removed.
    assert stale_reason(lock, hostname="vm", started=lambda pid: SINCE - timedelta(seconds=3)) is None
    # Another machine's lock: nothing on this one can prove it stale.
    assert stale_reason(lock, hostname="other-host", started=lambda pid: None) is None


def test_process_start_reads_proc_and_knows_when_a_pid_is_not_running() -> None:
    start = process_start(os.getpid())
    assert start is not None and start <= datetime.now(UTC) + timedelta(seconds=1)
    assert datetime.now(UTC) - start < timedelta(days=30)
    assert process_start(2**22 + 7) is None  # above the kernel's pid limit: no such process


def test_only_a_local_directorys_lock_file_is_removed(tmp_path: Path) -> None:
    lock = parse_locks(REFUSED)[0]
    assert lock_file(lock) == Path(f"/srv/state/.pulumi/locks/organization/sandbox-infra/{STACK}/") / (
        "32f8c88f-10ef-43ed-92bf-2ec0a4f5cc75.json"
    )
    for url in ("s3://bucket/.pulumi/locks/x.json", "gs://b/x.json", "file://otherhost/x.json"):
        assert lock_file(Lock(url, "root", "vm", 1, SINCE)) is None
    path = tmp_path / "lock.json"
    path.write_text("{}")
    (tmp_path / "lock.json.attrs").write_text("{}")
    (tmp_path / "other.json").write_text("{}")
    remove_lock(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json"]


def test_refusals_name_the_stack_and_the_holder() -> None:
    lock = parse_locks(REFUSED)[0]
    live = refused_message(STACK, [lock], {})
    assert live.startswith(f"stack {STACK} is being updated by another run (root@vm, pid 11911, since 2026-12-02 02:59")
    assert "nothing was changed" in live
    remote = refused_message(STACK, [lock], {lock: "pid 11911 is no longer running on vm"})
    assert "no longer running" in remote and f"pulumi cancel --stack {STACK}" in remote


def test_backend_directory_and_torn_sidecars(tmp_path: Path) -> None:
    assert backend_directory(f"file://{tmp_path}") == tmp_path
    assert backend_directory("s3://bucket/state") is None and backend_directory(None) is None
    stacks = tmp_path / ".pulumi" / "stacks" / "sandbox-infra"
    stacks.mkdir(parents=True)
    (stacks / "dev.json").write_text("{}")
    (stacks / "dev.json.attrs").write_text('{"md5":"x"}')
    (stacks / "dev-client-a.json").write_text("{}")
    (stacks / "dev-client-a.json.attrs").write_text("")  # killed between os.Create and the write
    assert torn_sidecars(tmp_path) == [stacks / "dev-client-a.json.attrs"]
    assert torn_sidecars(tmp_path / "nothing-here") == []


def _pvc(name: str, **extra: Any) -> dict[str, Any]:
    urn = f"urn:pulumi:{STACK}::sandbox-infra::sandbox-infra:sandbox:FreelancerSandbox$kubernetes:core/v1:PersistentVolumeClaim::{name}"
    return {
        "urn": urn,
        "custom": True,
        "type": "kubernetes:core/v1:PersistentVolumeClaim",
        "inputs": {"metadata": {"name": name, "namespace": "client-x"}, "spec": {}},
        "protect": True,
        "retainOnDelete": True,
        **extra,
    }


def test_kubernetes_ids_come_from_the_inputs() -> None:
    assert kubernetes_id(_pvc("home-1")) == "client-x/home-1"
    namespace = {"custom": True, "type": "kubernetes:core/v1:Namespace", "inputs": {"metadata": {"name": "client-x"}}}
    assert kubernetes_id(namespace) == "client-x"
    assert kubernetes_id({"custom": False, "type": "sandbox-infra:sandbox:FreelancerSandbox", "inputs": {}}) is None
    assert kubernetes_id({"custom": True, "type": "pulumi:providers:kubernetes", "inputs": {}}) is None
    assert kubernetes_id({"custom": True, "type": "kubernetes:core/v1:Secret", "inputs": {"metadata": {}}}) is None


def test_pending_operations_are_resolved_each_by_its_kind() -> None:
    done = _pvc("home-done")
    interrupted = _pvc("workspace-new")
    component = {"urn": "urn:component", "custom": False, "type": "sandbox-infra:sandbox:FreelancerSandbox"}
    quota = {"urn": "urn:quota", "custom": True, "type": "kubernetes:core/v1:ResourceQuota", "id": "client-x/q"}
    exported: dict[str, Any] = {
        "version": 3,
        "deployment": {
            "resources": [{"urn": "urn:provider"}, {**done, "id": "client-x/home-done", "outputs": {"a": 1}}, quota],
            "pending_operations": [
                {"type": "creating", "resource": done},  # a later update created and recorded it
                {"type": "creating", "resource": interrupted},
                {"type": "creating", "resource": component},
                {"type": "updating", "resource": quota},
            ],
        },
    }
    repair = plan_repair(exported)
    assert repair is not None
    assert repair.imported == ((interrupted["urn"], "client-x/workspace-new"),)
    assert repair.cleared == (("creating", done["urn"]), ("creating", "urn:component"), ("updating", "urn:quota"))
    deployment = repair.deployment["deployment"]
    assert deployment["pending_operations"] == []
    added = deployment["resources"][-1]
    assert added["urn"] == interrupted["urn"] and added["id"] == "client-x/workspace-new"
    assert added["protect"] is True and added["retainOnDelete"] is True  # a volume stays protected
    assert [r["urn"] for r in deployment["resources"]].count(done["urn"]) == 1  # never recorded twice
    assert exported["deployment"]["pending_operations"]  # the input is not modified
    assert "1 interrupted create(s)" in repair.describe() and "3 pending operation(s) cleared" in repair.describe()


def test_a_state_without_pending_operations_needs_no_repair() -> None:
    assert plan_repair({"version": 3, "deployment": {"resources": []}}) is None
    assert plan_repair({"version": 3, "deployment": {"resources": [], "pending_operations": None}}) is None


def test_a_file_backends_locks_are_read_from_its_lock_files(tmp_path: Path) -> None:
    directory = tmp_path / ".pulumi" / "locks" / "organization" / "sandbox-infra" / STACK
    directory.mkdir(parents=True)
    held = directory / "32f8c88f.json"
    held.write_text('{"pid":11911,"username":"root","hostname":"vm","timestamp":"2026-12-02T02:59:55.464919915Z"}')
    (directory / "32f8c88f.json.attrs").write_text("{}")
    other = tmp_path / ".pulumi" / "locks" / "organization" / "sandbox-infra" / "another-stack"
    other.mkdir()
    (other / "x.json").write_text('{"pid":1,"username":"root","hostname":"vm","timestamp":"2026-12-02T02:59:55Z"}')
    locks = stack_locks(tmp_path, "sandbox-infra", STACK)
    assert [(lock.pid, lock.host, lock_file(lock)) for lock in locks] == [(11911, "vm", held)]
    assert locks[0].since.replace(microsecond=0) == SINCE
    # A lock file the engine is still writing (or any unreadable one) is held by nobody known: never stale.
    held.write_text("")
    (unreadable,) = stack_locks(tmp_path, "sandbox-infra", STACK)
    assert stale_reason(unreadable, hostname="vm", started=lambda pid: None) is None
    assert stack_locks(tmp_path, "sandbox-infra", "no-such-stack") == []
