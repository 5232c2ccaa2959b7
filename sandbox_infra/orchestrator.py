"""Runs an environment's stacks through Pulumi's Automation API: the ones a change touches, or all of them.

One command previews, updates or refreshes the platform stack (``<env>``) and the client stacks
(``<env>-<slice>``): it works out which stacks to run (:mod:`sandbox_infra.changes`), creates the ones
that do not exist yet with their generated config, runs them a few at a time (an update runs the platform
stack first: the CRD and the platform namespace must exist before any tenant), prints progress per stack
and one summary, and fails, naming the stacks, when any of them failed. A stack whose clients left the
roster is never run (it would delete their namespaces); it is listed for a person to offboard.

The engine runs with the settings the benchmark showed matter: per-step checkpoints off for previews
(they write no state), the kubernetes provider's client rate limit raised, and the ResourceQuota update
race of the API server (kubernetes/kubernetes#67761) retried. Before it updates or refreshes a stack, it
resolves what an interrupted earlier update left (:mod:`sandbox_infra.recovery`), and refuses, naming the
stack, while another run is updating it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml
from pulumi import automation as auto
from pulumi.automation._stack import StackInitMode  # not re-exported; auto.Stack.select passes it

from sandbox_infra import handoff
from sandbox_infra.adoption import SANDBOX_TYPE, TENANT_TYPE, planned_moves
from sandbox_infra.changes import Touched
from sandbox_infra.environment import Environment
from sandbox_infra.plan import PLATFORM_SLICE, Plan
from sandbox_infra.recovery import (
    LOCKED,
    Lock,
    backend_directory,
    lock_file,
    parse_locks,
    plan_repair,
    refused_message,
    remove_lock,
    stack_locks,
    stale_reason,
    torn_sidecars,
)
from sandbox_infra.roster import SandboxState
from sandbox_infra.settings import StackSettings

OPERATIONS = ("preview", "up", "refresh")
POLICY_PACK = "policies/serve"
DIGEST_POLICY = "kubernetes-core-v1-pod-images-by-digest"
"""The pack's digest rule (a test checks the pack has it: the program never imports the pack)."""
STATEFULSET_TYPE = "kubernetes:apps/v1:StatefulSet"
QUOTA_RACE = "Operation cannot be fulfilled on resourcequotas"
QUOTA_RACE_RETRIES = 2
# What one stack's run holds in memory at most (engine, program, provider, policy pack; about 600 MiB
# measured in bench/STACKS.md), with a margin.
STACK_MEMORY = 700 * 2**20
ENGINE_ENV = {
    "PULUMI_SKIP_UPDATE_CHECK": "true",
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    # The kubernetes provider's client-side rate limit; the API server has its own (max-requests-inflight).
    "PULUMI_K8S_CLIENT_QPS": "100",
    "PULUMI_K8S_CLIENT_BURST": "200",
}
PREVIEW_ENV = {"PULUMI_SKIP_CHECKPOINTS": "true"}
PYTHON_SHIM = Path("tools") / "pulumi-python"
"""The language host's Python (``PULUMI_PYTHON_CMD``), relative to the project: python3 itself, but it lists the
installed packages without starting pip on every run (the script says why)."""


def policy_pack_config(settings: StackSettings) -> dict[str, Any] | None:
    """The pack's config for an environment (None: the pack's own, every rule mandatory). Where the stack
    setting requireImageDigests is false, the digest rule only warns: the setting is what decides."""
    if settings.require_image_digests:
        return None
    return {DIGEST_POLICY: {"enforcementLevel": "advisory"}}


class OrchestratorError(RuntimeError):
    """A problem that stops the command before any stack runs (a message for a person, no traceback)."""


@dataclass
class StackRun:
    """One stack's part of a command, and how it went."""

    stack: str
    slice: str
    reason: str
    status: str = "pending"
    """pending, ok, failed, skipped, or drifted (``drift``: its refreshing preview shows changes)."""
    created: bool = False
    """The stack did not exist and this command created it."""
    changes: dict[str, int] = field(default_factory=dict)
    """Operation -> count, as the engine summarizes it (create, update, delete, replace, same, ...)."""
    policy_violations: list[str] = field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    seconds: float = 0.0
    recovered: list[str] = field(default_factory=list)
    """What an interrupted earlier update left that this run resolved first (stale lock, pending operations)."""
    changed: list[str] = field(default_factory=list)
    """Previews: each Kubernetes object the operation would change, ``update StatefulSet ns/name (spec.replicas)``."""
    steps: int = 0
    """Resource steps seen so far (for progress)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["steps"]
        return data


def engine_env(project_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """What the engine runs with: :data:`ENGINE_ENV`, the caller's own ``PULUMI_K8S_*`` settings, and the
    language host's Python (:data:`PYTHON_SHIM`) unless the caller chose one."""
    env = {**ENGINE_ENV, **{k: v for k, v in environ.items() if k.startswith("PULUMI_K8S_")}}
    shim = project_dir.resolve() / PYTHON_SHIM
    if "PULUMI_PYTHON_CMD" not in environ and shim.is_file():
        env["PULUMI_PYTHON_CMD"] = str(shim)
    return env


def default_parallelism(operation: str, available_memory: int | None = None, cpus: int | None = None) -> int:
    """How many stacks to run at once, never more than the memory holds. A preview, one per core: it only
    computes (the engine diffs the program against the stack's state); on two cores a third preview at a
    time left the full preview of 1,000 freelancers no faster (within run-to-run noise) and half again as
    big (docs/benchmarks.md). An update or refresh, one more than the cores: it also waits on the API
    server (rollouts, the quota race), and a fresh one keeps the 2 cores only about two-thirds busy."""
    cpus = cpus or os.cpu_count() or 1
    wanted = cpus if operation == "preview" else cpus + 1
    if available_memory is None:
        available_memory = _available_memory()
    by_memory = max(1, available_memory // STACK_MEMORY) if available_memory else wanted
    return max(1, min(wanted, by_memory))


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def select_runs(
    environment: Environment, plan: Plan, touched: Touched, known: set[str], *, everything: bool
) -> list[StackRun]:
    """The runs of a command: the touched slices (all with ``everything``), plus every slice whose stack
    does not exist yet (``known`` lists those that do); the platform stack first."""
    slices = [PLATFORM_SLICE, *(s.id for s in plan.slices)]
    selected: list[StackRun] = []
    for slice_id in slices:
        run = StackRun(environment.stack(slice_id), slice_id, touched.slices.get(slice_id, ""))
        if run.stack not in known:
            run.reason = run.reason or "stack does not exist yet"
        elif everything:
            run.reason = run.reason or "--all"
        if run.reason:
            selected.append(run)
    return selected


def orphan_stacks(environment: Environment, plan: Plan, known: set[str]) -> list[str]:
    """Existing client stacks of this environment that no slice of the plan owns (never run)."""
    prefix = f"{environment.name}-"
    wanted = {environment.stack(s.id) for s in plan.slices}
    return sorted(s for s in known if s.startswith(prefix) and s not in wanted)


class _Workspace(auto.LocalWorkspace):
    """A LocalWorkspace that never *selects* a stack: every operation names its stack with ``--stack``, and
    ``pulumi stack select`` would rewrite state shared by the stacks running in parallel (and cost a
    CLI start per stack). Existence is checked against one listing instead."""

    known: set[str]

    def select_stack(self, stack_name: str) -> None:
        if stack_name not in self.known:
            raise auto.StackNotFoundError(auto.CommandResult("", f"no stack named '{stack_name}' found", 1))


_NOT_READ = auto.UpdateSummary(
    kind="update", start_time=datetime.fromtimestamp(0, UTC), message="", environment={}, config={}, result=""
)
"""What :class:`_Stack` gives ``up`` for the last history entry it does not read."""


class _Stack(auto.Stack):
    """A Stack whose ``up`` does not read the stack back once the update is done. ``Stack.up`` calls
    ``outputs()`` (``pulumi stack output`` twice, once decrypting the secrets) and ``info()`` (``pulumi stack
    history --show-secrets``): three CLI starts that load the stack and derive its secrets key, about a second
    per update, for values the orchestrator does not use. The change counts come from the engine's summary
    event instead, the same counts the history entry holds (tests/unit/test_orchestrator.py checks that
    ``Stack.up`` still reads them through these two methods)."""

    def __init__(self, name: str, workspace: auto.Workspace) -> None:
        super().__init__(name, workspace, StackInitMode.SELECT)  # what auto.Stack.select does

    def outputs(self) -> auto.OutputMap:
        return {}

    def info(self, show_secrets: bool = True) -> auto.UpdateSummary | None:
        return _NOT_READ


class Orchestrator:
    """Runs the stacks of one environment; ``out`` receives progress lines."""

    def __init__(
        self,
        environment: Environment,
        *,
        parallel: int | None = None,
        out: TextIO = sys.stderr,
        progress_every: float = 10.0,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.environment = environment
        self.parallel = parallel
        """Stacks at a time as asked (``--parallel``); None: :func:`default_parallelism` of each operation."""
        self.out = out
        self.progress_every = progress_every
        self._lock = threading.Lock()
        self._policy_configs: list[str] | None = None
        self._plan: Plan | None = None
        """The plan of the run in progress (which sandboxes each stack declares)."""
        self._env = engine_env(environment.project_dir, environ)
        self._backend_dir = backend_directory(environ.get("PULUMI_BACKEND_URL"))
        self._project = _project_name(environment.project_dir)
        self._repair_backend()
        # Client stacks are created with the environment's secrets provider (absent: the passphrase), whose
        # key their copied ciphertexts need.
        provider = environment.document.get("secretsprovider")
        try:
            self.workspace = _Workspace(
                work_dir=str(environment.project_dir),
                env_vars=dict(self._env),
                secrets_provider=str(provider) if provider else None,
            )
            known = stacks_in_directory(self._backend_dir, self._project)
            self.workspace.known = known if known is not None else {s.name for s in self.workspace.list_stacks()}
        except (auto.CommandError, auto.InvalidVersionError, FileNotFoundError) as exc:
            raise OrchestratorError(
                f"cannot list the stacks of {environment.project_dir} (is `pulumi` on PATH and the backend "
                f"{os.environ.get('PULUMI_BACKEND_URL', '(pulumi login)')} reachable?): {str(exc).strip()[-500:]}"
            ) from exc

    def _repair_backend(self) -> None:
        """Remove what a killed write left torn in a file backend, before anything reads it."""
        for path in torn_sidecars(self._backend_dir) if self._backend_dir else []:
            path.unlink(missing_ok=True)
            self._say(f"removed {path.name}, left empty by an interrupted write (its state file is complete)")

    def select(self, plan: Plan, touched: Touched, *, everything: bool) -> list[StackRun]:
        return select_runs(self.environment, plan, touched, self.workspace.known, everything=everything)

    def orphans(self, plan: Plan) -> list[str]:
        return orphan_stacks(self.environment, plan, self.workspace.known)

    # ---- adoption --------------------------------------------------------------------------------------

    def adopt(self, plan: Plan, source: str) -> dict[str, list[str]]:
        """Move every client component out of ``source`` into its slice's stack (creating the stacks);
        returns destination stack -> moved URNs. Raises :class:`AdoptionError` before moving anything when
        ``source`` holds a client that is not in the roster."""
        if source not in self.workspace.known:
            raise OrchestratorError(f"no stack named {source} in {self.environment.project_dir}'s backend")
        exported = self._pulumi(["stack", "export", "--stack", source])  # secrets stay encrypted
        resources = (json.loads(exported).get("deployment") or {}).get("resources") or []
        moves = planned_moves(self.environment, plan, source, resources)
        owners = {self.environment.stack(s.id): s.id for s in plan.slices}
        self._prepare(plan, [StackRun(stack, owners[stack], "adopt") for stack in moves])
        for stack, urns in moves.items():
            self._say(f"moving {len(urns)} components (and their children) from {source} to {stack}")
            self._pulumi(["state", "move", "--source", source, "--dest", stack, "--yes", *urns])
        return moves

    def _refuse_unadopted(self, runs: Iterable[StackRun]) -> None:
        """An update of a platform stack that still holds the clients of the single-stack layout would
        delete their compute: stop, and say how to adopt them first."""
        for run in runs:
            if run.slice != PLATFORM_SLICE or run.stack not in self.workspace.known:
                continue
            exported = json.loads(self._pulumi(["stack", "export", "--stack", run.stack]))
            types = {r.get("type") for r in (exported.get("deployment") or {}).get("resources") or []}
            if types & {TENANT_TYPE, SANDBOX_TYPE}:
                raise OrchestratorError(
                    f"stack {run.stack} still holds client resources (the single-stack layout): move them into "
                    f"their own stacks first with `python -m sandbox_infra adopt --env {self.environment.name}`"
                )

    def _pulumi(self, args: list[str]) -> str:
        try:
            result = self.workspace.pulumi_command.run(
                [*args, "--color", "never"], self.workspace.work_dir, self.workspace.env_vars
            )
        except auto.CommandError as exc:
            raise OrchestratorError(f"pulumi {' '.join(args[:2])} failed: {exc}") from exc
        return result.stdout

    # ---- running ---------------------------------------------------------------------------------------

    def parallelism(self, operation: str) -> int:
        """Stacks ``operation`` runs at a time: ``--parallel``, else :func:`default_parallelism`."""
        return self.parallel or default_parallelism(operation)

    def run(
        self, operation: str, plan: Plan, runs: list[StackRun], *, refresh: bool = False, plan_key: str | None = None
    ) -> list[StackRun]:
        """Run ``operation`` on every stack in ``runs``; returns them with their outcome.

        ``plan_key``: what ``plan`` was computed from (:func:`sandbox_infra.handoff.key`); with it, each stack
        receives its part of the plan instead of parsing the roster again."""
        if operation not in OPERATIONS:
            raise OrchestratorError(f"unknown operation {operation!r} (expected one of {', '.join(OPERATIONS)})")
        if operation == "up":
            self._refuse_unadopted(runs)
        self._prepare(plan, runs)
        self._plan = plan
        with (
            handoff.plan_directory() as plan_dir,
            tempfile.TemporaryDirectory(prefix="sandbox-infra-policy-config-") as config_dir,
        ):
            env = dict(self._env)
            if plan_key is not None:
                handoff.write(plan_dir, plan, plan_key, {r.slice for r in runs})
                env[handoff.PLAN_DIR_ENV] = str(plan_dir)
            self._policy_configs = self._write_policy_config(config_dir)
            # A preview writes no state, so the engine's per-step checkpoints (quadratic in the stack's size) go.
            self.workspace.env_vars = {**env, **(PREVIEW_ENV if operation == "preview" else {})}
            try:
                return self._run_ordered(operation, runs, refresh)
            finally:
                self.workspace.env_vars = dict(self._env)

    def _run_ordered(self, operation: str, runs: list[StackRun], refresh: bool) -> list[StackRun]:
        """The platform stack first (but for previews), then the client stacks, with a progress ticker."""
        platform = [r for r in runs if r.slice == PLATFORM_SLICE]
        clients = [r for r in runs if r.slice != PLATFORM_SLICE]
        started = time.monotonic()
        stop = threading.Event()
        ticker = threading.Thread(target=self._progress, args=(runs, started, stop), daemon=True)
        ticker.start()
        try:
            if operation == "preview":
                self._run_all(operation, [*platform, *clients], refresh)
            else:
                self._run_all(operation, platform, refresh)
                if any(r.status == "failed" for r in platform):
                    for r in clients:
                        r.status, r.error = "skipped", f"the platform stack {platform[0].stack} failed"
                else:
                    self._run_all(operation, clients, refresh)
        finally:
            stop.set()
            ticker.join()
        return runs

    def _write_policy_config(self, directory: str) -> list[str] | None:
        config = policy_pack_config(self.environment.settings)
        if config is None:
            return None
        path = os.path.join(directory, "policy-config.json")
        with open(path, "w", encoding="utf-8") as file:
            json.dump(config, file)
        return [path]

    def _prepare(self, plan: Plan, runs: Iterable[StackRun]) -> None:
        """Write the generated config of every client stack, then create the stacks that do not exist.

        The config is written first: ``pulumi stack init`` keeps the encryption salt it finds in the file
        (the environment's, which the copied secrets need) and records it in the new stack's state."""
        for run in runs:
            if run.slice != PLATFORM_SLICE:
                group = plan.slice(run.slice)
                assert group is not None
                self.environment.write_stack_file(group)
            if run.stack not in self.workspace.known:
                self._say(f"creating stack {run.stack}")
                try:
                    self.workspace.create_stack(run.stack)
                    run.created = True
                except auto.StackAlreadyExistsError:
                    pass  # another run of the same environment created it meanwhile
                except auto.CommandError as exc:
                    raise OrchestratorError(f"cannot create stack {run.stack}: {str(exc).strip()[-500:]}") from exc
                self.workspace.known.add(run.stack)

    def _run_all(self, operation: str, runs: list[StackRun], refresh: bool) -> None:
        if not runs:
            return
        with ThreadPoolExecutor(max_workers=min(self.parallelism(operation), len(runs))) as pool:
            for _ in pool.map(lambda r: self._run_one(operation, r, refresh), runs):
                pass

    def _run_one(self, operation: str, run: StackRun, refresh: bool) -> None:
        stack = _Stack(run.stack, self.workspace)
        self._say(f"{run.stack}: {operation} ({run.reason})")
        started = time.monotonic()
        output: list[str] = []
        violations: list[str] = []
        errors: list[str] = []
        changed: list[str] = []

        def on_event(event: auto.EngineEvent) -> None:
            if event.resource_pre_event is not None or event.res_outputs_event is not None:
                run.steps += 1
            if event.resource_pre_event is not None and operation == "preview":
                line = _change_line(event.resource_pre_event.metadata)
                if line:
                    changed.append(line)
            if event.policy_event is not None:
                p = event.policy_event
                violations.append(f"[{p.enforcement_level}] {p.policy_name}: {p.message.strip()} ({p.resource_urn})")
            if event.diagnostic_event is not None and event.diagnostic_event.severity == "error":
                errors.append(_strip_ansi(event.diagnostic_event.message).strip())

        released = False
        while True:
            run.attempts += 1
            output.clear()
            violations.clear()
            errors.clear()
            changed.clear()
            refused = ""
            try:
                if operation in ("up", "refresh"):
                    deployment = self._recover(run)
                    if operation == "up":
                        self._release_removed_compute(run, deployment)
                run.changes = self._operation(stack, operation, refresh, output.append, on_event)
                run.status = "ok"
                run.error = None
            except auto.CommandError as exc:
                run.status = "failed"
                run.error = _first_error(errors, output, str(exc))
                refused = str(exc)
            except OrchestratorError as exc:
                run.status, run.error = "failed", str(exc)
                refused = str(exc)
            except Exception as exc:  # any other failure of one stack must not stop the others, nor print a traceback
                run.status = "failed"
                run.error = f"{type(exc).__name__}: {exc}"
            locks = parse_locks(refused) if run.status == "failed" else []
            if locks:
                if not released and self._release_stale_locks(run, locks):
                    released = True
                    run.attempts -= 1  # not an attempt of the operation: it never started
                    continue
                run.error = _refusal(run.stack, locks)
            elif run.status == "failed" and LOCKED in refused:
                run.error = refused_message(run.stack, [], {})
            if (
                run.status == "failed"
                and operation == "up"
                and run.attempts <= QUOTA_RACE_RETRIES
                and any(QUOTA_RACE in line for line in [*errors, *output])
            ):
                self._say(f"{run.stack}: hit the ResourceQuota update race (kubernetes/kubernetes#67761); again")
                continue
            break
        run.policy_violations = list(dict.fromkeys(violations))
        run.changed = sorted(set(changed))
        run.seconds = round(time.monotonic() - started, 1)
        self._say(f"{run.stack}: {operation} {run.status} in {run.seconds:.1f}s: {format_changes(run.changes)}")
        if run.status == "failed":
            self._say(f"{run.stack}: {run.error}")

    # ---- what an interrupted update left behind (sandbox_infra.recovery) ----------------------------------

    def _release_stale_locks(self, run: StackRun, locks: list[Lock]) -> bool:
        """Remove the stack's locks if every one is provably stale and a local file; True if it did."""
        reasons = {lock: stale_reason(lock) for lock in locks}
        files = {lock: lock_file(lock) for lock in locks}
        if not all(reasons.values()) or not all(files.values()):
            return False
        for lock in locks:
            path = files[lock]
            assert path is not None
            remove_lock(path)
            note = f"removed the stale lock of an interrupted update ({lock.describe()}: {reasons[lock]})"
            run.recovered.append(note)
            self._say(f"{run.stack}: {note}")
        return True

    def _recover(self, run: StackRun) -> dict[str, Any]:
        """Before an update or refresh: release the stack's stale locks and resolve the pending operations
        an interrupted update left in its state (see :mod:`sandbox_infra.recovery`). Refuses, naming the
        stack, while another run holds it. Returns the stack's deployment as the update will find it."""
        self._check_locks(run)
        exported = json.loads(self._pulumi(["stack", "export", "--stack", run.stack]))
        repair = plan_repair(exported)
        if repair is None:
            deployment: dict[str, Any] = exported.get("deployment") or {}
            return deployment
        # The pending operations may be a running update's (one that started after the first check): its
        # lock says so. Importing a state takes the lock, so an update starting from here on refuses it.
        self._check_locks(run)
        with tempfile.TemporaryDirectory(prefix="sandbox-infra-state-") as scratch:
            # The state as exported: its secrets stay ciphertext.
            path = os.path.join(scratch, "state.json")
            with open(path, "w", encoding="utf-8") as file:
                json.dump(repair.deployment, file)
            self._pulumi(["stack", "import", "--stack", run.stack, "--file", path])
        if repair.imported:
            targets = [arg for urn, _ in repair.imported for arg in ("--target", urn)]
            self._pulumi(["refresh", "--stack", run.stack, "--yes", "--skip-preview", "--non-interactive", *targets])
        note = f"an earlier update was interrupted: {repair.describe()}"
        run.recovered.append(note)
        self._say(f"{run.stack}: {note}")
        return dict(repair.deployment.get("deployment") or {})

    def _release_removed_compute(self, run: StackRun, deployment: Mapping[str, Any]) -> None:
        """Delete the StatefulSets of sandboxes the roster no longer runs (archived, or removed) before the
        update itself. The engine deletes what a program no longer declares only after every create and
        update, so without this a sandbox added in the same change must start while the archived ones'
        pods still hold the client's quota: refused "exceeded quota", its StatefulSet never becomes ready
        and the update waits out the engine's timeout (found by the crash soak). Their volumes stay:
        only the StatefulSets go, as the update would delete them anyway."""
        slice_plan = self._plan.slice(run.slice) if self._plan is not None else None
        if slice_plan is None:
            return
        declared = {s.name for s in slice_plan.sandboxes() if s.state is not SandboxState.ARCHIVED}
        removed = removed_statefulsets(deployment, declared)
        if not removed:
            return
        targets = [arg for urn in removed for arg in ("--target", urn)]
        self._pulumi(["destroy", "--stack", run.stack, "--yes", "--skip-preview", "--non-interactive", *targets])
        self._say(f"{run.stack}: released the compute of {len(removed)} sandbox(es) the roster no longer runs, first")

    def _check_locks(self, run: StackRun) -> None:
        """File backends: remove the stack's provably stale locks; refuse while a live one holds it. (Other
        backends: the engine refuses a locked stack itself, and the error is handled in _run_one.)"""
        if self._backend_dir is None:
            return
        locks = stack_locks(self._backend_dir, self._project, run.stack)
        if locks and not self._release_stale_locks(run, locks):
            raise OrchestratorError(_refusal(run.stack, locks))

    def _operation(
        self,
        stack: auto.Stack,
        operation: str,
        refresh: bool,
        on_output: Callable[[str], None],
        on_event: Callable[[auto.EngineEvent], None],
    ) -> dict[str, int]:
        summaries: list[auto.events.SummaryEvent] = []

        def collect(event: auto.EngineEvent) -> None:
            if event.summary_event is not None:
                summaries.append(event.summary_event)
            on_event(event)

        common: dict[str, Any] = {"on_output": on_output, "on_event": collect, "color": "never"}
        if operation == "preview":
            result = stack.preview(
                policy_packs=[POLICY_PACK], policy_pack_configs=self._policy_configs, refresh=refresh or None, **common
            )
            return _counts(result.change_summary)
        if operation == "up":
            stack.up(
                policy_packs=[POLICY_PACK],
                policy_pack_configs=self._policy_configs,
                refresh=refresh or None,
                continue_on_error=True,
                **common,
            )
        else:
            stack.refresh(**common)
        if not summaries:  # the engine ends every update with one; without it the counts are unknown
            raise OrchestratorError(f"pulumi {operation} of {stack.name} succeeded but reported no summary")
        return _counts(summaries[-1].resource_changes)

    # ---- output ----------------------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        with self._lock:
            print(f"==> {line}", file=self.out, flush=True)

    def _progress(self, runs: list[StackRun], started: float, stop: threading.Event) -> None:
        while not stop.wait(self.progress_every):
            running = [r for r in runs if r.status == "pending" and r.attempts]
            done = sum(1 for r in runs if r.status != "pending")
            detail = ", ".join(f"{r.stack} ({r.steps} steps)" for r in running[:4])
            more = f" and {len(running) - 4} more" if len(running) > 4 else ""
            self._say(f"{time.monotonic() - started:.0f}s: {done}/{len(runs)} stacks done; running {detail}{more}")


def _refusal(stack: str, locks: list[Lock]) -> str:
    """The refusal message for a stack held by ``locks``, naming those provably stale and why."""
    return refused_message(stack, locks, {lock: reason for lock in locks if (reason := stale_reason(lock))})


def removed_statefulsets(deployment: Mapping[str, Any], declared: set[str]) -> list[str]:
    """URNs of the StatefulSets a stack's state records whose names the plan no longer declares."""
    urns = []
    for resource in deployment.get("resources") or []:
        if resource.get("type") != STATEFULSET_TYPE or resource.get("delete"):
            continue
        name = str(resource.get("id", "")).rsplit("/", 1)[-1]
        if name and name not in declared:
            urns.append(str(resource["urn"]))
    return urns


# A stack's state file in a file backend: <name>.json, .yaml or .yml, maybe compressed (.gz, .zst); the
# engine's own test (pkg/backend/diy/store.go, ListReferences), with its stack name rule (tokens.ParseStackName).
_STATE_FILE = re.compile(r"(?P<name>[A-Za-z0-9_.-]{1,100})\.(?:json|yaml|yml)(?:\.gz|\.zst)?")


def stacks_in_directory(directory: Path | None, project: str) -> set[str] | None:
    """The stacks of ``project`` in the file backend at ``directory``, read from the directory as the engine
    lists them, or None when that is not certain (no file backend, an unknown project, the legacy layout
    without projects, an unreadable directory): ``pulumi stack ls`` answers then. The engine's listing reads
    every stack's state for its summary, for names only: 2.4 s and 4.4 CPU-seconds with 501 stacks."""
    if directory is None or project == "*" or not directory.is_dir():
        return None
    bookkeeping = directory / ".pulumi"
    try:
        meta = yaml.safe_load((bookkeeping / "meta.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        # No metadata: an empty directory (the engine lays it out on first use) or the legacy layout.
        return set() if not bookkeeping.exists() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(meta, dict) or meta.get("version") != 1:  # 1: stacks filed under their project
        return None
    try:
        entries = list(os.scandir(bookkeeping / "stacks" / project))
    except FileNotFoundError:
        return set()
    except OSError:
        return None
    return {match["name"] for entry in entries if entry.is_file() and (match := _STATE_FILE.fullmatch(entry.name))}


def _project_name(project_dir: Path) -> str:
    """The Pulumi project's name (its stacks' locks are filed under it)."""
    try:
        document = yaml.safe_load((project_dir / "Pulumi.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return "*"
    name = document.get("name") if isinstance(document, dict) else None
    return str(name) if name else "*"


def format_changes(changes: Mapping[str, int]) -> str:
    """``create 3, update 1, same 40`` in a fixed order; ``no changes`` when nothing but ``same``."""
    order = ("create", "update", "replace", "delete", "same", "refresh", "read")
    keys = sorted(changes, key=lambda k: (order.index(k) if k in order else len(order), k))
    parts = [f"{k} {changes[k]}" for k in keys if changes[k]]
    return ", ".join(parts) or "nothing"


def _counts(changes: Mapping[Any, int] | None) -> dict[str, int]:
    """The engine's change counts keyed by plain operation names (the SDK gives enum members or strings)."""
    return {str(getattr(op, "value", op)): n for op, n in (changes or {}).items()}


# Preview steps that change nothing in the cluster.
_UNCHANGED_OPS = {"same", "read", "refresh", "discard", "discard-replaced", "remove-pending-replace"}


def _change_line(metadata: auto.events.StepEventMetadata) -> str:
    """``update StatefulSet client-x/sandbox-y (spec.replicas)`` for a previewed step that changes a
    Kubernetes object; empty for anything else (components, providers, unchanged objects)."""
    op = str(getattr(metadata.op, "value", metadata.op))
    if op in _UNCHANGED_OPS or not metadata.type.startswith("kubernetes:"):
        return ""
    name = metadata.urn.rsplit("::", 1)[-1]
    for state in (metadata.new, metadata.old):
        meta = (state.inputs or {}).get("metadata") if state is not None else None
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            name = f"{meta['namespace']}/{meta['name']}" if isinstance(meta.get("namespace"), str) else meta["name"]
            break
    paths = sorted(metadata.detailed_diff or {}) or sorted(metadata.diffs or [])
    detail = f" ({', '.join(paths[:6])}{', ...' if len(paths) > 6 else ''})" if paths else ""
    return f"{op} {metadata.type.rsplit(':', 1)[-1]} {name}{detail}"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _first_error(errors: list[str], output: list[str], fallback: str) -> str:
    """The engine's own error lines when it reported any, else the tail of the command's output."""
    lines = [e for e in errors if e] or [_strip_ansi(line).rstrip() for line in output[-15:] if line.strip()]
    if not lines:
        lines = fallback.strip().splitlines()[-1:] or ["failed"]
    return "\n".join(lines)[:4000]


@dataclass(frozen=True)
class Report:
    """The one summary of a command: each stack's outcome, and the stacks left for a person."""

    environment: str
    operation: str
    runs: Sequence[StackRun]
    removed: tuple[str, ...] = ()
    """Slices the base had and the roster lacks: never run."""
    orphans: tuple[str, ...] = ()
    """Existing client stacks that no slice of the roster owns: never run."""

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.runs)

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "operation": self.operation,
            "ok": self.ok,
            "stacks": [r.to_json() for r in self.runs],
            "removed": list(self.removed),
            "orphans": list(self.orphans),
        }

    def table(self) -> str:
        """A fixed-width table a person reads in CI logs: one line a stack, then what needs attention."""
        columns = ("create", "update", "replace", "delete", "same")
        width = max([len("stack"), *(len(r.stack) for r in self.runs)])
        lines = [
            f"{self.operation} of environment {self.environment}: "
            f"{sum(r.status == 'ok' for r in self.runs)} of {len(self.runs)} stacks ok",
            f"{'stack':<{width}}  {'result':<7} " + " ".join(f"{c:>7}" for c in columns) + "  policy    time",
        ]
        for r in self.runs:
            counts = " ".join(f"{r.changes.get(c, 0):>7}" for c in columns)
            lines.append(
                f"{r.stack:<{width}}  {r.status:<7} {counts}  {len(r.policy_violations):>6} {r.seconds:>6.1f}s"
            )
        for r in self.runs:
            for note in r.recovered:
                lines.append(f"recovered: {r.stack}: {note}")
            for violation in r.policy_violations:
                lines.append(f"policy violation in {r.stack}: {violation}")
            if r.status != "ok":
                lines.append(f"{r.status}: {r.stack}: {r.error}")
        for stack in self.orphans:
            lines.append(f"not run: {stack} belongs to no client in the roster (offboard it: see docs)")
        for slice_id in self.removed:
            lines.append(f"not run: slice {slice_id} left the roster in this change")
        return "\n".join(lines)
