"""Crash safety on the real engine and cluster: SIGKILL at a random point of an ``up``, then converge.

Each round evolves a roster (sandboxes created, re-tiered, suspended, resumed, archived), starts
``python -m sandbox_infra up --all`` and kills one of its processes with SIGKILL at a random moment, each
kind in turn: the orchestrator's whole process group, one engine (``pulumi up``), a language host, a
program, a kubernetes provider or a policy pack; every fifth round, an engine the moment a create is in
flight (``--pending-every``). Half the time the roster moves on once more before the next run,
as when the next merge brings the next change. Then one ``up`` (no kill, no help) must converge:

- it exits 0, and a ``preview --all`` right after shows nothing but unchanged resources;
- no stack state holds a pending operation, a URN twice, or a lock; no sidecar file of the backend is torn;
- every object the stacks own is in exactly one state, and every object with the platform's labels in
  the environment's namespaces is owned by a stack (nothing orphaned, nothing duplicated);
- every sandbox of the roster, in every state, has both volumes, Bound, each with the uid it was created
  with; compute exists exactly for the active and suspended ones, with one replica or none.

``python -m tests.integration.crash --kills N`` is the soak (``make soak-crash``); the integration tests
run a fast sample (tests/integration/test_reliability.py). Everything lives in an environment of its own
(a throw-away file backend, fresh client ids); its namespaces and volumes are deleted at the end.
Processes orphaned by a kill (a policy pack or provider whose engine died keeps running) are tracked
from the moment they start and killed by pid once the round is over.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.integration.engine import copy_project

PASSPHRASE = "crash-test"
PROJECT = "sandbox-infra"
VICTIMS = ("orchestrator", "engine", "language-host", "program", "provider", "policy-pack")
TIERS = ("basic", "standard")
"""Tiers the rounds move sandboxes between (no GPU: the local cluster's few GPUs are shared)."""
MAX_FREELANCERS = 14
OWNED_KINDS = (
    "statefulsets.apps",
    "services",
    "persistentvolumeclaims",
    "sandboxes.platform.com",
    "secrets",
    "networkpolicies.networking.k8s.io",
    "resourcequotas",
    "limitranges",
    "serviceaccounts",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
)
# Kind (as `kubectl get` names it) -> the type token of pulumi-kubernetes, to match the cluster against state.
TYPE_OF = {
    "statefulsets.apps": "kubernetes:apps/v1:StatefulSet",
    "services": "kubernetes:core/v1:Service",
    "persistentvolumeclaims": "kubernetes:core/v1:PersistentVolumeClaim",
    "sandboxes.platform.com": "kubernetes:platform.com/v1:Sandbox",
    "secrets": "kubernetes:core/v1:Secret",
    "networkpolicies.networking.k8s.io": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    "resourcequotas": "kubernetes:core/v1:ResourceQuota",
    "limitranges": "kubernetes:core/v1:LimitRange",
    "serviceaccounts": "kubernetes:core/v1:ServiceAccount",
    "roles.rbac.authorization.k8s.io": "kubernetes:rbac.authorization.k8s.io/v1:Role",
    "rolebindings.rbac.authorization.k8s.io": "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
}


class CrashTestError(AssertionError):
    """A round did not converge, or the harness could not run (the message says which and why)."""


def log(message: str) -> None:
    print(f"[crash {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(
    args: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None, check: bool = True, timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(args), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise CrashTestError(
            f"{' '.join(args[:6])} exited {result.returncode}:\n{(result.stdout + result.stderr)[-4000:]}"
        )
    return result


# ---- the roster's evolution --------------------------------------------------------------------------------


@dataclass
class Roster:
    """The environment's roster as data, evolved by random, always valid, never unsafe changes."""

    clients: list[str]
    freelancers: list[dict[str, Any]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "version": 1,
            "clients": [{"id": c, "name": f"Crash Client {i}"} for i, c in enumerate(self.clients)],
            "freelancers": self.freelancers,
        }

    def sandboxes(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for person in self.freelancers:
            for sandbox in person["sandboxes"]:
                yield person["id"], sandbox

    def add(self, rng: random.Random) -> str:
        fid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        index = len(self.freelancers)
        client = self.clients[index % len(self.clients)]
        self.freelancers.append(
            {
                "id": fid,
                "email": f"crash-{index}@example.com",
                "sandboxes": [{"client": client, "tier": rng.choice(TIERS)}],
            }
        )
        return f"add {fid[:8]}"

    def evolve(self, rng: random.Random) -> list[str]:
        """Two to four changes: creates, updates (tier, suspend, resume) and archives."""
        changes = []
        for _ in range(rng.randint(2, 4)):
            live = [(f, s) for f, s in self.sandboxes() if s.get("state", "active") != "archived"]
            choices = ["tier", "suspend", "resume", "archive"] + (
                ["add", "add"] if len(self.freelancers) < MAX_FREELANCERS else []
            )
            choice = rng.choice(choices)
            if choice == "add" or not live:
                if len(self.freelancers) < MAX_FREELANCERS:
                    changes.append(self.add(rng))
                continue
            fid, sandbox = rng.choice(live)
            if choice == "tier":
                sandbox["tier"] = next(t for t in TIERS if t != sandbox["tier"])
                changes.append(f"tier {fid[:8]} {sandbox['tier']}")
            elif choice == "suspend" and sandbox.get("state", "active") == "active":
                sandbox["state"] = "suspended"
                changes.append(f"suspend {fid[:8]}")
            elif choice == "resume" and sandbox.get("state") == "suspended":
                sandbox["state"] = "active"
                changes.append(f"resume {fid[:8]}")
            elif choice == "archive" and len(live) > 2:
                sandbox["state"] = "archived"
                changes.append(f"archive {fid[:8]}")
        return changes


# ---- processes -----------------------------------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, str, list[str]]]:
    """pid -> (parent pid, start time, argv) of every process that can be read."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            argv = Path(entry.path, "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), fields[19], [a for a in argv if a])
    return table


def kind_of(argv: Sequence[str]) -> str | None:
    """Which part of an update a process is, from its command line."""
    if not argv:
        return None
    name = os.path.basename(argv[0])
    if name == "pulumi" and "up" in argv:
        return "engine"
    if name == "pulumi-language-python":
        return "language-host"
    if any(a.endswith("pulumi-language-python-exec") for a in argv):
        return "program"
    if name.startswith("pulumi-resource-kubernetes"):
        return "provider"
    if "policies" in argv and "-u" in argv:
        return "policy-pack"
    return None


class Tree:
    """Every process started under the orchestrator, remembered even after a kill reparents it."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, tuple[str, str | None]] = {}  # pid -> (start time, kind)

    def poll(self) -> dict[int, str | None]:
        """The live descendants now (pid -> kind), recording each one."""
        table = _processes()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        live: dict[int, str | None] = {}
        stack = [self.root]
        while stack:
            for child in children.get(stack.pop(), []):
                live[child] = kind_of(table[child][2])
                self.seen.setdefault(child, (table[child][1], live[child]))
                stack.append(child)
        return live

    def reap(self) -> int:
        """SIGKILL what is still running of what was seen (same pid and start time: never another process)."""
        table = _processes()
        reaped = 0
        for pid, (start, _) in self.seen.items():
            if pid in table and table[pid][1] == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                    reaped += 1
                except ProcessLookupError:
                    pass
        return reaped


# ---- the environment -------------------------------------------------------------------------------------


@dataclass
class Round:
    """What one round did and found."""

    number: int
    changes: list[str]
    victim: str
    killed: str = ""
    """``kind pid`` killed, or empty when the update finished before the chosen moment."""
    after: float = 0.0
    exit: int | None = None
    moved_on: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    orphans: int = 0
    converge_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


class Environment:
    """A project copy with its own environment file, roster, backend and clients."""

    def __init__(self, work: Path, name: str, clients: int, *, skip_checkpoints: bool, seed: int) -> None:
        for tool in ("pulumi", "kubectl"):
            if shutil.which(tool) is None:
                raise CrashTestError(f"{tool} is not on PATH: run through `make soak-crash` or `make test`")
        if not os.environ.get("KUBECONFIG"):
            raise CrashTestError("KUBECONFIG is not set: run through `make soak-crash` or `make test`")
        self.work = work
        self.name = name
        self.project = copy_project(work / "project")
        self.backend = work / "state"
        self.backend.mkdir()
        self.env = {
            **os.environ,
            "PULUMI_BACKEND_URL": f"file://{self.backend}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        }
        self.env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        if skip_checkpoints:
            self.env["PULUMI_SKIP_CHECKPOINTS"] = "true"
        self.rng = random.Random(seed)
        self.roster = Roster([str(uuid.UUID(int=self.rng.getrandbits(128), version=4)) for _ in range(clients)])
        self.volumes: dict[str, str] = {}
        """namespace/claim -> uid, from the first time each volume was seen."""
        run(["pulumi", "stack", "init", name, "--secrets-provider", "passphrase"], env=self.env, cwd=self.project)
        run(
            ["pulumi", "config", "set", "--secret", "--stack", name, "sandbox-infra:geminiApiKey", "crash-not-a-key"],
            env=self.env,
            cwd=self.project,
        )
        # No chart repository is reachable here: the Helm releases are off, as in the dev environment.
        run(
            ["pulumi", "config", "set", "--stack", name, "sandbox-infra:releases", "[]"], env=self.env, cwd=self.project
        )

    @property
    def namespaces(self) -> list[str]:
        return [f"client-{c}" for c in self.roster.clients]

    def write_roster(self) -> None:
        (self.project / "roster.yaml").write_text(yaml.safe_dump(self.roster.document(), sort_keys=False))

    def sandbox(self, *args: str, check: bool = True) -> tuple[int, dict[str, Any], str]:
        result = run(
            [sys.executable, "-m", "sandbox_infra", *args, "--env", self.name, "--json"],
            env=self.env,
            cwd=self.project,
            check=False,
        )
        document = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
        if check and result.returncode != 0:
            raise CrashTestError(f"sandbox_infra {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result.returncode, document, result.stderr

    # ---- one killed update -----------------------------------------------------------------------------

    def killed_up(
        self,
        victim: str,
        *,
        at: float | None,
        at_pending_create: bool,
        log_path: Path,
        at_created: tuple[str, list[str]] | None = None,
    ) -> Round:
        """Start ``up --all`` and SIGKILL a ``victim`` process ``at`` seconds in (or, with
        ``at_pending_create``, an engine the moment its checkpoint shows a create in flight; with
        ``at_created`` = (client, StatefulSet names), that client's engine once one of them exists)."""
        round_ = Round(0, [], victim)
        with log_path.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "sandbox_infra", "up", "--all", "--env", self.name],
                cwd=self.project,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        tree = Tree(process.pid)
        started = time.monotonic()
        next_check = 0.0
        try:
            while process.poll() is None:
                live = tree.poll()
                now = time.monotonic() - started
                target = None
                if at_created is not None:
                    client, names = at_created
                    if now >= next_check and self._exist(f"client-{client}", names):
                        target = next(
                            (
                                p
                                for p, k in live.items()
                                if k == "engine" and f"--stack {self.name}-client-{client}" in _cmdline(p)
                            ),
                            None,
                        )
                    next_check = now + 0.5  # kubectl is slow: ask at most twice a second
                elif at_pending_create:
                    stack = self._stack_creating()
                    if stack:
                        target = next(
                            (p for p, k in live.items() if k == "engine" and f"--stack {stack}" in _cmdline(p)), None
                        )
                elif at is not None and now >= at:
                    target = self._pick(process.pid, live, victim)
                if target is not None:
                    kind = "orchestrator" if target == process.pid else live.get(target) or "?"
                    if kind == "orchestrator":
                        os.killpg(process.pid, signal.SIGKILL)
                    else:
                        os.kill(target, signal.SIGKILL)
                    round_.killed, round_.after = f"{kind} {target}", round(now, 1)
                    break
                time.sleep(0.05)
            try:
                process.wait(timeout=900)
            except subprocess.TimeoutExpired as exc:
                os.killpg(process.pid, signal.SIGKILL)
                raise CrashTestError(f"up did not end within 15 minutes after killing {round_.killed}") from exc
            round_.exit = process.returncode
        finally:
            time.sleep(0.5)  # let the engine notice a killed plugin before its leftovers are reaped
            round_.orphans = tree.reap()
        return round_

    def _exist(self, namespace: str, statefulsets: list[str]) -> bool:
        listed = run(["kubectl", "get", "statefulsets", "-n", namespace, "-o", "name"], env=self.env, check=False)
        return any(f"statefulset.apps/{name}" in listed.stdout.split() for name in statefulsets)

    def _pick(self, orchestrator: int, live: Mapping[int, str | None], victim: str) -> int | None:
        if victim == "orchestrator":
            return orchestrator
        of_kind = sorted(p for p, k in live.items() if k == victim)
        if of_kind:
            return self.rng.choice(of_kind)
        engines = sorted(p for p, k in live.items() if k == "engine")
        return self.rng.choice(engines) if engines else None  # wait for one to start

    def _stack_creating(self) -> str | None:
        """A stack whose last checkpoint records a Kubernetes create in flight that is not in its resources."""
        for path in (self.backend / ".pulumi" / "stacks" / PROJECT).glob("*.json"):
            try:
                latest = json.loads(path.read_text())["checkpoint"]["latest"] or {}
            except (OSError, ValueError, KeyError, TypeError):
                continue
            recorded = {r.get("urn") for r in latest.get("resources") or []}
            for op in latest.get("pending_operations") or []:
                resource = op.get("resource") or {}
                if op.get("type") == "creating" and resource.get("custom") and resource.get("urn") not in recorded:
                    return path.stem
        return None

    # ---- convergence ------------------------------------------------------------------------------------

    def converge(self, round_: Round) -> None:
        started = time.monotonic()
        code, summary, stderr = self.sandbox("up", "--all", check=False)
        round_.converge_seconds = round(time.monotonic() - started, 1)
        round_.recovered = [note for s in summary.get("stacks", []) for note in s.get("recovered", [])]
        round_.recovered += [line for line in stderr.splitlines() if "left empty by an interrupted write" in line]
        if code != 0:
            failed = [f"{s['stack']}: {s['error']}" for s in summary.get("stacks", []) if s["status"] != "ok"]
            round_.problems.append(f"the next up exited {code}: {failed or stderr[-2000:]}")
            return
        _, preview, _ = self.sandbox("preview", "--all", check=False)
        for stack in preview.get("stacks", []):
            changed = {op: n for op, n in stack["changes"].items() if op != "same" and n}
            if stack["status"] != "ok" or changed:
                detail = stack.get("changed") or stack.get("error")
                round_.problems.append(f"preview after the up: {stack['stack']} {stack['status']} {changed}: {detail}")
        round_.problems += self.check_state()
        round_.problems += self.check_cluster()

    def check_state(self) -> list[str]:
        problems = []
        pulumi = self.backend / ".pulumi"
        for lock in pulumi.glob("locks/**/*.json"):
            problems.append(f"a lock is left: {lock.relative_to(self.backend)}")
        for sidecar in pulumi.glob("**/*.attrs"):
            if sidecar.stat().st_size == 0:
                problems.append(f"a torn sidecar is left: {sidecar.relative_to(self.backend)}")
        for path in (pulumi / "stacks" / PROJECT).glob("*.json"):
            latest = json.loads(path.read_text())["checkpoint"]["latest"] or {}
            if latest.get("pending_operations"):
                kinds = Counter(op["type"] for op in latest["pending_operations"])
                problems.append(f"{path.stem} still has pending operations: {dict(kinds)}")
            urns = Counter(r["urn"] for r in latest.get("resources") or [])
            twice = [u for u, n in urns.items() if n > 1]
            if twice:
                problems.append(f"{path.stem} records {len(twice)} URN(s) twice: {twice[:3]}")
        return problems

    def owned(self) -> Counter[tuple[str, str]]:
        """(type, id) of every Kubernetes object the environment's stacks record, with how many record it."""
        owned: Counter[tuple[str, str]] = Counter()
        for path in (self.backend / ".pulumi" / "stacks" / PROJECT).glob("*.json"):
            latest = json.loads(path.read_text())["checkpoint"]["latest"] or {}
            for resource in latest.get("resources") or []:
                if resource.get("custom") and str(resource.get("type", "")).startswith("kubernetes:"):
                    owned[resource["type"], resource.get("id", "")] += 1
        return owned

    def check_cluster(self) -> list[str]:
        problems = []
        owned = self.owned()
        problems += [f"{t} {i} is recorded by {n} stacks" for (t, i), n in owned.items() if n > 1]
        listing = json.loads(
            run(
                [
                    "kubectl",
                    "get",
                    ",".join(OWNED_KINDS),
                    "-A",
                    "-l",
                    "app.kubernetes.io/part-of=sandbox-infra",
                    "-o",
                    "json",
                ],
                env=self.env,
            ).stdout
        )["items"]
        ours = [o for o in listing if o["metadata"]["namespace"] in self.namespaces]
        by_kind: dict[str, dict[str, dict[str, Any]]] = {}
        for obj in ours:
            kind = obj["kind"]
            by_kind.setdefault(kind, {})[obj["metadata"]["name"]] = obj
            typ = next((t for k, t in TYPE_OF.items() if t.rsplit(":", 1)[-1] == kind), kind)
            key = (typ, f"{obj['metadata']['namespace']}/{obj['metadata']['name']}")
            if key not in owned:
                problems.append(f"{kind} {key[1]} exists but no stack records it (orphaned)")
        expected_sts: dict[str, int] = {}
        expected_pvcs = set()
        for fid, sandbox in self.roster.sandboxes():
            namespace = f"client-{sandbox['client']}"
            for claim in (f"workspace-{fid}", f"home-{fid}"):
                expected_pvcs.add(f"{namespace}/{claim}")
            state = sandbox.get("state", "active")
            if state != "archived":
                expected_sts[f"{namespace}/sandbox-{fid}"] = 1 if state == "active" else 0
        pvcs = {
            f"{o['metadata']['namespace']}/{o['metadata']['name']}": o
            for o in ours
            if o["kind"] == "PersistentVolumeClaim"
        }
        for claim in sorted(expected_pvcs):
            pvc = pvcs.get(claim)
            if pvc is None:
                problems.append(f"volume {claim} is missing")
                continue
            uid = pvc["metadata"]["uid"]
            if self.volumes.setdefault(claim, uid) != uid:
                problems.append(f"volume {claim} was re-created: uid {self.volumes[claim]} became {uid}")
            if pvc.get("status", {}).get("phase") != "Bound":
                problems.append(f"volume {claim} is {pvc.get('status', {}).get('phase')}, not Bound")
        problems += [f"unexpected volume {c}" for c in sorted(set(pvcs) - expected_pvcs)]
        statefulsets = {
            f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in ours if o["kind"] == "StatefulSet"
        }
        if set(statefulsets) != set(expected_sts):
            problems.append(
                f"StatefulSets differ from the roster: missing {sorted(set(expected_sts) - set(statefulsets))}, "
                f"extra {sorted(set(statefulsets) - set(expected_sts))}"
            )
        for name, replicas in expected_sts.items():
            if name in statefulsets and statefulsets[name]["spec"]["replicas"] != replicas:
                problems.append(
                    f"StatefulSet {name} has {statefulsets[name]['spec']['replicas']} replicas, not {replicas}"
                )
        return problems

    def cleanup(self) -> None:
        present = set(
            run(["kubectl", "get", "namespaces", "-o", "name"], env=self.env).stdout.replace("namespace/", "").split()
        )
        mine = [n for n in self.namespaces if n in present]
        if mine:
            run(["kubectl", "delete", "namespace", "--wait=false", "--ignore-not-found", *mine], env=self.env)
        volumes = json.loads(run(["kubectl", "get", "pv", "-o", "json"], env=self.env).stdout)["items"]
        ours = [
            v["metadata"]["name"] for v in volumes if v["spec"].get("claimRef", {}).get("namespace") in self.namespaces
        ]
        if ours:
            run(["kubectl", "delete", "pv", "--wait=false", "--ignore-not-found", *ours], env=self.env)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
    except OSError:
        return ""


# ---- the soak ----------------------------------------------------------------------------------------------


@dataclass
class Results:
    rounds: list[Round] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def kills(self) -> list[Round]:
        return [r for r in self.rounds if r.killed]

    @property
    def survived(self) -> list[Round]:
        return [r for r in self.kills if not r.problems]

    def summary(self) -> str:
        by_kind = Counter(r.killed.split()[0] for r in self.kills)
        failed = [r for r in self.rounds if r.problems]
        recovered = Counter(
            "stale lock removed" if "stale lock" in note else "torn sidecar removed" if "left empty" in note
            else "pending operations resolved"
            for r in self.rounds
            for note in r.recovered
        )  # fmt: skip
        lines = [
            f"{len(self.survived)} of {len(self.kills)} kills survived ({len(self.rounds)} rounds, "
            f"{len(self.rounds) - len(self.kills)} where the update finished first), {self.seconds / 60:.1f} min",
            "kills by process: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())),
            "recoveries: " + (", ".join(f"{k} {n}" for k, n in sorted(recovered.items())) or "none needed"),
            f"orphaned processes reaped after kills: {sum(r.orphans for r in self.rounds)}",
            f"next up (converging): max {max((r.converge_seconds for r in self.rounds), default=0):.1f} s",
        ]
        for r in failed:
            lines.append(f"round {r.number} ({r.killed or 'no kill'}, after {r.after} s): " + "; ".join(r.problems))
        return "\n".join(lines)


def soak(
    *,
    kills: int,
    seed: int,
    work: Path,
    clients: int = 2,
    skip_checkpoints: bool = False,
    keep_going: bool = False,
    victims: Sequence[str] = VICTIMS,
    first_at_pending_create: bool = False,
    pending_every: int = 0,
    name: str = "crash",
) -> Results:
    """Run rounds until ``kills`` kills landed (or 3 x ``kills`` rounds); raise on the first round that does
    not converge unless ``keep_going``."""
    results = Results()
    started = time.monotonic()
    environment = Environment(work, name, clients, skip_checkpoints=skip_checkpoints, seed=seed)
    rng = environment.rng
    try:
        for _ in range(4):
            environment.roster.add(rng)
        environment.write_roster()
        log(f"first up of {len(environment.roster.freelancers)} freelancers over {clients} clients")
        first = time.monotonic()
        environment.sandbox("up", "--all")
        typical = time.monotonic() - first
        number = 0
        while len(results.kills) < kills and number < 3 * kills:
            number += 1
            changes = environment.roster.evolve(rng)
            environment.write_roster()
            # Every kind of process in turn, at a random moment; every `pending_every`-th round (and the first,
            # with `first_at_pending_create`) the engine the moment a create is in flight.
            pending = (first_at_pending_create and number == 1) or bool(pending_every and number % pending_every == 0)
            victim = "engine" if pending else victims[(number - 1) % len(victims)]
            at = None if pending else round(rng.uniform(0.3, max(1.0, typical)), 1)
            round_ = environment.killed_up(
                victim, at=at, at_pending_create=pending, log_path=work / f"round-{number}.log"
            )
            round_.number, round_.changes = number, changes
            if rng.random() < 0.5:
                round_.moved_on = environment.roster.evolve(rng)
                environment.write_roster()
            environment.converge(round_)
            if not round_.problems:
                typical = 0.7 * typical + 0.3 * round_.converge_seconds
            results.rounds.append(round_)
            log(
                f"round {number}: {', '.join(changes)}; killed {round_.killed or 'nothing (finished first)'}"
                f" after {round_.after} s, exit {round_.exit}, {round_.orphans} orphans reaped;"
                f" moved on: {', '.join(round_.moved_on) or 'no'}; converged in {round_.converge_seconds} s;"
                f" recovered: {len(round_.recovered)}; "
                + ("OK" if not round_.problems else f"PROBLEMS: {round_.problems}")
            )
            if round_.problems and not keep_going:
                raise CrashTestError(f"round {number} did not converge:\n" + "\n".join(round_.problems))
    finally:
        results.seconds = time.monotonic() - started
        environment.cleanup()
    return results


def checkpoints_experiment(*, work: Path, seed: int, rounds: int, skip: bool) -> list[Round]:
    """Why updates keep the engine's checkpoints: each round adds two sandboxes, kills the engine once one of
    their StatefulSets exists, archives the two (the next change arrives), and converges. With checkpoints the
    interrupted creates are in the state (done, or pending and resolved), so the next up deletes the
    StatefulSets the roster no longer declares; without them (``skip``) the state has none of it."""
    mode = "off" if skip else "on"
    environment = Environment(work / mode, f"checkpoints{mode}", 1, skip_checkpoints=skip, seed=seed)
    rng, rounds_ = environment.rng, []
    client = environment.roster.clients[0]
    try:
        for _ in range(2):
            environment.roster.add(rng)
        environment.write_roster()
        environment.sandbox("up", "--all")
        for number in range(1, rounds + 1):
            changes = [environment.roster.add(rng) for _ in range(2)]
            added = environment.roster.freelancers[-2:]
            environment.write_roster()
            round_ = environment.killed_up(
                "engine",
                at=None,
                at_pending_create=False,
                log_path=work / f"{mode}-{number}.log",
                at_created=(client, [f"sandbox-{p['id']}" for p in added]),
            )
            round_.number, round_.changes = number, changes
            for person in added:
                person["sandboxes"][0]["state"] = "archived"
            round_.moved_on = [f"archive {p['id'][:8]}" for p in added]
            environment.write_roster()
            environment.converge(round_)
            rounds_.append(round_)
            log(f"checkpoints {mode}, round {number}: killed {round_.killed or 'nothing'}; {round_.problems or 'OK'}")
    finally:
        environment.cleanup()
    return rounds_


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.crash", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills to land (default 20)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed (default: the time)")
    parser.add_argument("--clients", type=int, default=2, help="client stacks (default 2)")
    parser.add_argument("--victim", action="append", choices=VICTIMS, help="only these processes (repeatable)")
    parser.add_argument(
        "--pending-every",
        type=int,
        default=5,
        metavar="K",
        help="every K-th round kills an engine the moment a create is in flight (default 5; 0: never)",
    )
    parser.add_argument(
        "--skip-checkpoints", action="store_true", help="PULUMI_SKIP_CHECKPOINTS=true for every up (an experiment)"
    )
    parser.add_argument("--keep-going", action="store_true", help="go on after a round that did not converge")
    parser.add_argument(
        "--checkpoints-experiment",
        type=int,
        metavar="ROUNDS",
        help="instead: ROUNDS kills with the engine's checkpoints on, then off (why updates keep them)",
    )
    parser.add_argument("--output", type=Path, help="also write every round as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, state)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sandbox-infra-crash-"))
    log(f"seed {args.seed}; work directory {work}")
    if args.checkpoints_experiment:
        for skip in (False, True):
            found = checkpoints_experiment(work=work, seed=args.seed, rounds=args.checkpoints_experiment, skip=skip)
            kills = [r for r in found if r.killed]
            print(
                f"checkpoints {'off' if skip else 'on'}: {sum(not r.problems for r in kills)} of {len(kills)} kills "
                "converged" + "".join(f"\n  round {r.number}: {'; '.join(r.problems)}" for r in found if r.problems)
            )
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    try:
        results = soak(
            kills=args.kills,
            seed=args.seed,
            work=work,
            clients=args.clients,
            skip_checkpoints=args.skip_checkpoints,
            keep_going=args.keep_going,
            victims=tuple(args.victim or VICTIMS),
            pending_every=args.pending_every,
        )
    except CrashTestError as exc:
        print(f"crash soak failed (seed {args.seed}, logs in {work}):\n{exc}", file=sys.stderr)
        return 1
    print(results.summary())
    if args.output:
        args.output.write_text(json.dumps([asdict(r) for r in results.rounds], indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if len(results.survived) == len(results.kills) >= args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
