"""Crashes, concurrency, an API server outage and drift on the real engine and cluster (docs/reliability.md).

Each test has an environment of its own (tests/integration/crash.py: a throw-away file backend, fresh
client ids), deleted afterwards. The crash test is the fast sample of ``make soak-crash``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_infra import naming
from tests.integration.crash import Environment, Round, soak
from tests.integration.engine import REPO, kubectl_json, require_tools, run

pytestmark = pytest.mark.integration


def test_updates_killed_at_random_points_converge_on_the_next_up(tmp_path: Path) -> None:
    """Three kills: the engine the moment a create is in flight (a stale lock and a pending create to
    resolve), then the kubernetes provider and the orchestrator's whole process group at random moments."""
    require_tools()
    seed = int(os.environ.get("CRASH_SEED", random.randrange(2**32)))
    results = soak(
        kills=3,
        seed=seed,
        work=tmp_path,
        victims=("engine", "provider", "orchestrator"),
        first_at_pending_create=True,
        name="crashtest",
    )
    summary = f"seed {seed} (CRASH_SEED={seed} repeats it):\n{results.summary()}"
    assert len(results.kills) >= 3 and len(results.survived) == len(results.kills), summary
    # The first round aims at the engine with a create in flight; when the update finishes before that
    # moment comes, there is no such kill to check (the seed in the message repeats the run).
    first = results.kills[0]
    if first.number == 1 and first.killed.startswith("engine"):
        # The engine's kill left its lock and a create in flight; the next up resolved both by itself.
        assert any("stale lock" in note for note in first.recovered), summary
        assert any("interrupted create" in note for note in first.recovered), summary


@pytest.fixture
def environment(tmp_path: Path) -> Iterator[Environment]:
    require_tools()
    environment = Environment(tmp_path, "together", 2, skip_checkpoints=False, seed=random.randrange(2**32))
    try:
        for _ in range(4):
            environment.roster.add(environment.rng)
        environment.write_roster()
        environment.sandbox("up", "--all")
        yield environment
    finally:
        environment.cleanup()


def _start_up(environment: Environment, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sandbox_infra", "up", "--env", environment.name, "--json", *args],
        cwd=environment.project,
        env=environment.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, object], str]:
    stdout, stderr = process.communicate(timeout=900)
    return process.returncode, json.loads(stdout) if stdout.strip().startswith("{") else {}, stderr


def test_a_second_update_of_a_stack_is_refused_and_updates_of_other_stacks_run_alongside(
    environment: Environment,
) -> None:
    first, second = environment.roster.clients
    stack = f"{environment.name}-client-{first}"
    for _ in range(3):
        environment.roster.add(environment.rng)  # freelancers 4, 5, 6: clients 0, 1, 0
    environment.write_roster()

    running = _start_up(environment, "--only", f"client-{first}")
    locks = environment.backend / ".pulumi" / "locks" / "organization" / "sandbox-infra" / stack
    deadline = time.monotonic() + 300
    while not list(locks.glob("*.json")) and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running.poll() is None, "the first update ended before the second could start"
    refused_code, refused, refused_err = environment.sandbox("up", "--only", f"client-{first}", check=False)
    code, _, stderr = _finish(running)

    assert code == 0, stderr[-3000:]
    assert refused_code == 1, refused_err[-3000:]
    (outcome,) = refused["stacks"]
    assert outcome["stack"] == stack and outcome["status"] == "failed"
    assert outcome["error"].startswith(f"stack {stack} is being updated by another run ("), outcome["error"]
    assert "nothing was changed" in outcome["error"]

    # Two different stacks at once: both run to the end.
    for _ in range(2):
        environment.roster.add(environment.rng)  # freelancers 7, 8: clients 1, 0
    environment.write_roster()
    one, other = (
        _start_up(environment, "--only", f"client-{first}"),
        _start_up(environment, "--only", f"client-{second}"),
    )
    results = [_finish(one), _finish(other)]
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    stacks = [s for _, document, _ in results for s in document["stacks"]]  # type: ignore[attr-defined]
    assert [s["stack"] for s in stacks] == [stack, f"{environment.name}-client-{second}"]
    assert all(s["status"] == "ok" and s["changes"]["create"] >= 6 for s in stacks), stacks

    # Nothing is corrupted: every stack converged, and the state and the cluster agree.
    _, preview, _ = environment.sandbox("preview", "--all")
    for stack_preview in preview["stacks"]:
        assert {op for op, n in stack_preview["changes"].items() if n} == {"same"}, stack_preview
    assert environment.check_state() == []
    assert environment.check_cluster() == []


def test_drift_is_reported_then_restored_by_a_refreshing_up(environment: Environment) -> None:
    client = environment.roster.clients[0]
    namespace = f"client-{client}"
    stack = f"{environment.name}-client-{client}"
    statefulset = next(
        o["metadata"]["name"]
        for o in kubectl_json("get", "statefulsets", "-n", namespace)["items"]
        if o["spec"]["replicas"]
    )
    secret_uid = kubectl_json("get", "secret", "gemini-api-key", "-n", namespace)["metadata"]["uid"]
    run(["kubectl", "scale", "statefulset", statefulset, "-n", namespace, "--replicas=3"])
    run(["kubectl", "delete", "networkpolicy", "default-deny", "-n", namespace])
    run(["kubectl", "patch", "resourcequota", "sandbox-quota", "-n", namespace, "--type=merge",
         "-p", '{"spec":{"hard":{"requests.cpu":"1000"}}}'])  # fmt: skip
    run(["kubectl", "delete", "secret", "gemini-api-key", "-n", namespace])

    code, report, stderr = environment.sandbox("drift", check=False)
    assert code == 3, stderr[-3000:]
    assert report["drift"] == {
        stack: [
            f"create NetworkPolicy {namespace}/default-deny",
            f"create Secret {namespace}/gemini-api-key",
            f'update ResourceQuota {namespace}/sandbox-quota (spec.hard["requests.cpu"])',
            f"update StatefulSet {namespace}/{statefulset} (spec.replicas)",
        ]
    }
    text = run(
        [sys.executable, "-m", "sandbox_infra", "drift", "--env", environment.name],
        cwd=environment.project,
        env=environment.env,
        check=False,
    )
    assert text.returncode == 3
    assert f"to restore them: python -m sandbox_infra up --env {environment.name} --refresh --only client-{client}" in (
        text.stdout
    )

    environment.sandbox("up", "--refresh", "--only", f"client-{client}")
    assert kubectl_json("get", "statefulset", statefulset, "-n", namespace)["spec"]["replicas"] == 1
    assert kubectl_json("get", "networkpolicy", "default-deny", "-n", namespace)["spec"]["policyTypes"] == [
        "Ingress",
        "Egress",
    ]
    quota = kubectl_json("get", "resourcequota", "sandbox-quota", "-n", namespace)["spec"]["hard"]
    assert quota["requests.cpu"] != "1000"
    restored = kubectl_json("get", "secret", "gemini-api-key", "-n", namespace)
    assert restored["metadata"]["uid"] != secret_uid and restored["data"][naming.API_KEY_SECRET_KEY]
    code, report, _ = environment.sandbox("drift", check=False)
    assert code == 0 and report["drift"] == {}


def _phantom_pod(namespace: str, requests: dict[str, str], limits: dict[str, str]) -> dict[str, object]:
    """A pod charging the quota one sandbox's budget, as the API server's double charge of a retried create
    does (it passes Pod Security `restricted`; no container really runs on the local cluster's nodes)."""
    resources = {"requests": requests, "limits": limits}
    security = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "phantom-charge", "namespace": namespace},
        "spec": {
            "containers": [{"name": "c", "image": "busybox:1.37", "resources": resources, "securityContext": security}]
        },
    }


def test_a_pod_charged_twice_does_not_keep_the_next_sandbox_from_starting(environment: Environment) -> None:
    """The quota's headroom absorbs one sandbox's worth of over-counted usage (docs/reliability.md, Load)."""
    client = environment.roster.clients[0]
    namespace = f"client-{client}"
    for person in environment.roster.freelancers:
        person["sandboxes"][0].update(tier="standard", state="active")
    environment.write_roster()
    environment.sandbox("up", "--only", f"client-{client}")
    quota = kubectl_json("get", "resourcequota", "sandbox-quota", "-n", namespace)
    # Fill the quota: the sandboxes' pods, plus a standard sandbox's budget charged a second time.
    manifest = environment.work / "phantom.json"
    standard = _phantom_pod(namespace, {"cpu": "2", "memory": "4Gi"}, {"cpu": "4", "memory": "8Gi"})
    manifest.write_text(json.dumps(standard))
    run(["kubectl", "apply", "-f", str(manifest)])
    try:
        used = kubectl_json("get", "resourcequota", "sandbox-quota", "-n", namespace)["status"]["used"]
        for key in ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory"):
            assert used[key] == quota["spec"]["hard"][key], (key, used, quota["spec"]["hard"])
        environment.roster.add(environment.rng)  # freelancer 4: client 0
        environment.roster.freelancers[-1]["sandboxes"][0]["tier"] = "standard"
        environment.write_roster()
        environment.sandbox("up", "--only", f"client-{client}")
        pods = kubectl_json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=sandbox")["items"]
        assert len(pods) == 3 and all(p["status"]["phase"] == "Running" for p in pods), [
            p["metadata"]["name"] for p in pods
        ]
    finally:
        run(["kubectl", "delete", "pod", "phantom-charge", "-n", namespace, "--ignore-not-found", "--wait=false"])


def _api_server_pid() -> int:
    """The local cluster's kube-apiserver, from the pid file kwokctl keeps (tools/cluster.sh)."""
    cache = Path(os.environ.get("SANDBOX_INFRA_CACHE", Path.home() / ".cache" / "sandbox-infra"))
    pid_file = cache / "cluster" / "kwok" / "clusters" / "sandbox-infra" / "pids" / "kube-apiserver.pid"
    pid = int(pid_file.read_text().strip())
    assert Path(f"/proc/{pid}/exe").resolve().name == "kube-apiserver", f"{pid_file}: pid {pid} is not kube-apiserver"
    return pid


OUTAGE_SECONDS = 30


def test_an_api_server_outage_during_an_update_ends_cleanly_and_the_next_up_converges(
    environment: Environment,
) -> None:
    """The kube-apiserver stops answering (SIGSTOP: it keeps its port, so every request hangs rather than
    being refused, the harder case for a client) for 30 s while an update creates sandboxes. The update
    waits it out or fails by stack name, never with a traceback and never hanging; the next up converges
    with every volume keeping its uid."""
    assert environment.check_cluster() == []  # records the volumes' uids before the outage
    for _ in range(3):
        environment.roster.add(environment.rng)
    environment.write_roster()
    running = _start_up(environment, "--all")
    namespaces = environment.namespaces
    known = {o["metadata"]["uid"] for o in kubectl_json("get", "statefulsets", "-A")["items"]}
    deadline = time.monotonic() + 300
    # Stop the server once the update is creating the new sandboxes' objects.
    while running.poll() is None and time.monotonic() < deadline:
        items = kubectl_json("get", "statefulsets", "-A")["items"]
        if any(o["metadata"]["namespace"] in namespaces and o["metadata"]["uid"] not in known for o in items):
            break
        time.sleep(0.2)
    assert running.poll() is None, "the update ended before the outage could start"
    pid = _api_server_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE_SECONDS)
    finally:
        os.kill(pid, signal.SIGCONT)
    # kube-controller-manager and kube-scheduler give up their leader election after about 15 s without the
    # server, and exit; a real cluster's kubelet restarts its control-plane pods, here `cluster.sh up` does.
    run([str(REPO / "tools" / "cluster.sh"), "up"], timeout=600)
    code, summary, stderr = _finish(running)

    assert "Traceback" not in stderr, stderr[-3000:]
    stacks = summary["stacks"]
    assert isinstance(stacks, list)
    if code != 0:  # a clean failure names each stack that failed and why
        assert code == 1, stderr[-3000:]
        failed = [s for s in stacks if s["status"] != "ok"]
        assert failed and all(s["error"] for s in failed), stacks

    round_ = Round(number=1, changes=["3 sandboxes added"], victim="kube-apiserver (stopped 30 s)", exit=code)
    environment.converge(round_)
    assert round_.problems == [], round_.problems
    outcome = ", ".join(f"{s['stack']} {s['status']}" for s in stacks)
    print(f"outage of {OUTAGE_SECONDS} s: the update exited {code} ({outcome}); the next up converged in "
          f"{round_.converge_seconds} s")  # fmt: skip


def test_archiving_and_adding_sandboxes_of_one_client_in_one_change_fits_its_quota(environment: Environment) -> None:
    """Both of a client's sandboxes archived and one added in one change. The engine deletes what the
    roster no longer runs only after every create, so the new pod would have to fit beside both archived
    ones, which the quota (the new sum plus one pod of headroom) does not allow: it was refused "exceeded
    quota" until the engine gave up after 10 minutes. The orchestrator releases the archived sandboxes'
    compute first; their volumes stay."""
    first = environment.roster.clients[0]
    archived = [p for p in environment.roster.freelancers if p["sandboxes"][0]["client"] == first]
    assert len(archived) == 2
    for person in archived:
        person["sandboxes"][0]["state"] = "archived"
    environment.roster.add(environment.rng)  # the fifth freelancer: the first client's
    environment.write_roster()

    code, _, stderr = environment.sandbox("up", "--only", f"client-{first}", check=False)
    assert code == 0, stderr[-3000:]
    assert "released the compute of 2 sandbox(es) the roster no longer runs, first" in stderr
    round_ = Round(number=1, changes=["2 archived, 1 added"], victim="none", exit=code)
    environment.converge(round_)
    assert round_.problems == [], round_.problems
