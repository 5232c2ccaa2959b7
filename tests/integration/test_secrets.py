"""No secret in plain text anywhere a run leaves something: files, command output, logs, the cluster.

Known test secrets are set (the default Gemini key, a client's own key, and the password of each database
role, in a scratch database of the local PostgreSQL; each typed on stdin as a person would, never on a
command line); then a full run: the roster check, plan, up, a second up, previews (text, JSON, refreshing),
drift, refresh, the stack's outputs and export, a roster pull request's report, preview and comment, and the
benchmark's one-freelancer-change measurement (bench/stacks.py, as ``--quick`` runs it, at a small size).
Every process runs with its own HOME, PULUMI_HOME (the plugins linked in), TMPDIR and backend, so every file
the run writes is under one directory, and all of it is searched: each file as it is, gzip-compressed files
(Pulumi's logs before it knows a stack) decompressed, Pulumi's encrypted logs decrypted with the stack's
key; every command's output; every object in the environment's namespaces (its clients' and its own platform
namespace) and their events. Each secret is looked for as written and base64-encoded at every alignment
(Kubernetes Secret data, or a value inside any base64 blob). Positive controls show the search finds what is
there: the Kubernetes Secrets meant to hold them do, and ``pulumi stack export --show-secrets`` prints the
keys.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from bench.project import PASSPHRASE as BENCH_PASSPHRASE
from sandbox_infra import naming
from sandbox_infra.database import secret_name
from sandbox_infra.database_plan import SERVICES
from tests.integration.database import ScratchDatabase, scratch_database
from tests.integration.engine import REPO, copy_project, require_tools

pytestmark = pytest.mark.integration

NAME = "secrets"
GZIP = b"\x1f\x8b"
PLOG = b"PLOG"


def needles(secret: str) -> dict[str, bytes]:
    """The secret as written, and base64-encoded at each of the three alignments it can have inside a
    longer base64 text (the characters that depend on its neighbours dropped)."""
    raw = secret.encode()
    found = {"plain": raw}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        start = {0: 0, 1: 2, 2: 3}[shift]
        found[f"base64+{shift}"] = encoded[start : len(encoded) - 4].encode()
    return found


@dataclass
class Run:
    """An isolated run: its directories, environment, clients, and everything it printed."""

    root: Path
    env: dict[str, str]
    clients: list[str]
    database: ScratchDatabase
    platform_namespace: str
    outputs: dict[str, str] = field(default_factory=dict)
    namespaces: set[str] = field(default_factory=set)
    """Every namespace the run created (its clients', its platform namespace, the benchmark's), deleted afterwards."""

    @property
    def project(self) -> Path:
        return self.root / "project"

    def __call__(self, label: str, args: list[str], *, stdin: str | None = None, cwd: Path | None = None) -> str:
        result = subprocess.run(
            args,
            cwd=cwd or self.project,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        self.outputs[f"{label}: stdout"] = result.stdout
        self.outputs[f"{label}: stderr"] = result.stderr
        assert result.returncode == 0, (
            f"{label} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        return result.stdout

    def sandbox(self, label: str, *args: str) -> str:
        return self(label, [sys.executable, "-m", "sandbox_infra", *args])


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[Run]:
    require_tools()
    shared_home = Path(os.environ["PULUMI_HOME"])
    root = tmp_path / "run"
    for name in ("state", "home", "pulumi-home", "tmp"):
        (root / name).mkdir(parents=True)
    (root / "pulumi-home" / "plugins").symlink_to(shared_home / "plugins")
    copy_project(root / "project")
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "PULUMI_HOME": str(root / "pulumi-home"),
        "TMPDIR": str(root / "tmp"),
        "PULUMI_BACKEND_URL": f"file://{root / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": f"passphrase-{uuid.uuid4().hex}",
    }
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    clients = [str(uuid.uuid4()) for _ in range(2)]
    platform = f"secrets-{uuid.uuid4().hex[:12]}"
    with scratch_database() as database:
        run = Run(root, env, clients, database, platform, namespaces={platform, *(f"client-{c}" for c in clients)})
        try:
            yield run
        finally:
            _delete(run.namespaces)


def _delete(namespaces: set[str]) -> None:
    """Delete the run's namespaces and the volumes their claims were bound to (kept: Retain)."""
    subprocess.run(
        ["kubectl", "delete", "namespace", "--wait=false", "--ignore-not-found", *sorted(namespaces)], check=False
    )
    volumes = json.loads(subprocess.run(["kubectl", "get", "pv", "-o", "json"], capture_output=True, check=True).stdout)
    ours = [
        v["metadata"]["name"] for v in volumes["items"] if v["spec"].get("claimRef", {}).get("namespace") in namespaces
    ]
    if ours:
        subprocess.run(["kubectl", "delete", "pv", "--wait=false", "--ignore-not-found", *ours], check=False)


def test_no_secret_appears_in_plain_text_anywhere_a_run_leaves_something(isolated: Run) -> None:
    run = isolated
    clients = run.clients
    default_key = f"sk-sbx-default-{uuid.uuid4().hex}"
    client_key = f"sk-sbx-client-{uuid.uuid4().hex}"
    secrets = {"default Gemini API key": default_key, "client Gemini API key": client_key}
    secrets |= {f"database password of {kind}": password for kind, password in run.database.passwords.items()}
    roster = {
        "version": 1,
        "clients": [{"id": c, "name": f"Secret Client {i}"} for i, c in enumerate(clients)],
        "freelancers": [
            {
                "id": str(uuid.uuid4()),
                "email": f"s{i}@example.com",
                "sandboxes": [{"client": clients[i % 2], "tier": "basic"}],
            }
            for i in range(4)
        ],
    }
    (run.project / "roster.yaml").write_text(yaml.safe_dump(roster, sort_keys=False))
    pulumi = ["pulumi", "--non-interactive"]
    run("stack init", [*pulumi, "stack", "init", NAME, "--secrets-provider", "passphrase"])
    server = run.database.server
    settings = {
        "platformNamespace": run.platform_namespace,
        "databaseHost": server.host,
        "databasePort": str(server.port),
        "databaseName": run.database.name,
        "databaseSslMode": "disable",
        "databaseRoles": "existing",
        "releases": "[]",  # no chart repository is reachable here (docs/services.md)
    }
    for key, value in settings.items():
        run(f"config set {key}", [*pulumi, "config", "set", "--stack", NAME, f"sandbox-infra:{key}", value])
    for kind, password in run.database.passwords.items():
        path = f"sandbox-infra:databasePasswords.{kind}"
        run(
            f"config set {kind}",
            [*pulumi, "config", "set", "--secret", "--path", "--stack", NAME, path],
            stdin=password,
        )
    run("config set key", [*pulumi, "config", "set", "--secret", "--stack", NAME, "sandbox-infra:geminiApiKey"],
        stdin=default_key)  # fmt: skip
    path = f"sandbox-infra:clientGeminiApiKeys.{clients[0]}"
    run(
        "config set client key",
        [*pulumi, "config", "set", "--secret", "--path", "--stack", NAME, path],
        stdin=client_key,
    )

    run.sandbox("check", "check", "roster.yaml", "--stack", NAME)
    run.sandbox("plan", "plan", "--env", NAME)
    run.sandbox("up", "up", "--env", NAME, "--all")
    run.sandbox("up again (json)", "up", "--env", NAME, "--all", "--json")
    run.sandbox("preview", "preview", "--env", NAME, "--all")
    run.sandbox("preview (json)", "preview", "--env", NAME, "--all", "--json")
    run.sandbox("preview --refresh", "preview", "--env", NAME, "--all", "--refresh")
    run.sandbox("drift", "drift", "--env", NAME, "--json")
    run.sandbox("refresh", "refresh", "--env", NAME, "--all")
    stacks = [NAME, *(f"{NAME}-client-{c}" for c in clients)]
    for stack in stacks:
        run(f"stack output {stack}", [*pulumi, "stack", "output", "--stack", stack, "--json"])
        run(f"stack export {stack}", [*pulumi, "stack", "export", "--stack", stack])
    _pull_request(run, roster)
    _bench_change(run, default_key)

    # Positive controls: the search finds each key where it must be.
    for client, key in ((clients[0], client_key), (clients[1], default_key)):
        revealed = run("control", [*pulumi, "stack", "export", "--stack", f"{NAME}-client-{client}", "--show-secrets"])
        del run.outputs["control: stdout"]
        # The provider keeps a Secret's stringData as base64 data: look for every form the search looks for.
        forms = [form for form, needle in needles(key).items() if needle in revealed.encode()]
        assert forms, f"control failed: `stack export --show-secrets` of client-{client}"
        secret = _kubectl_json(run, "get", "secret", naming.API_KEY_SECRET, "-n", f"client-{client}")
        env_file = base64.b64decode(secret["data"][naming.API_KEY_SECRET_KEY]).decode()  # type: ignore[index]
        assert env_file == f"{naming.API_KEY_ENV_VAR}={key}\n", f"control failed: client-{client}'s Secret"
    for kind, password in run.database.passwords.items():
        if kind in SERVICES:
            secret = _kubectl_json(run, "get", "secret", secret_name(kind), "-n", run.platform_namespace)
            url = base64.b64decode(secret["data"]["url"]).decode()  # type: ignore[index]
            assert password in url, f"control failed: the {kind} connection Secret"

    places, found, in_platform_log = _search(run, secrets, clients)
    assert not found, "secrets in plain text:\n" + "\n".join(found)
    print(f"searched {places} for {len(secrets)} secrets: none found")  # the figure in docs/reliability.md
    # The one place a secret is found once decrypted: the platform stack's own encrypted debug log. The engine
    # hands a stack's whole configuration to its dynamic providers (the database's migration, records and
    # logins run as dynamic resources in the platform stack) and its automatic log records that call; the log
    # is encrypted with the stack's own secrets key, like the secrets in its state (docs/reliability.md).
    print(f"in the platform stack's encrypted debug log, once decrypted: {len(in_platform_log)} finding(s)")
    assert places["files"] > 100 and places["decrypted logs"] > 5 and places["cluster objects"] > 40, places


def _pull_request(run: Run, roster: dict[str, object]) -> None:
    """What a roster pull request produces, as its workflow's steps do (tools/ci.sh): the change report in
    both forms, the preview's JSON summary and the comment built from them, into files under the run."""
    out = run.root / "out"
    out.mkdir()
    base = run.project / "base-roster.yaml"
    base.write_text((run.project / "roster.yaml").read_text())
    freelancers = roster["freelancers"]
    assert isinstance(freelancers, list)
    added = {
        "id": str(uuid.uuid4()),
        "email": "pr@example.com",
        "sandboxes": [{"client": run.clients[1], "tier": "basic"}],
    }
    (run.project / "roster.yaml").write_text(
        yaml.safe_dump({**roster, "freelancers": [*freelancers, added]}, sort_keys=False)
    )
    common = ["--env", NAME, "--base", str(base)]
    run.sandbox("report (markdown)", "report", *common, "--output", str(out / "report.md"))
    run.sandbox("report (json)", "report", *common, "--format", "json", "--output", str(out / "report.json"))
    (out / "preview.json").write_text(run.sandbox("preview --base (json)", "preview", *common, "--json"))
    run.sandbox(
        "comment", "report", *common, "--preview", str(out / "preview.json"), "--output", str(out / "comment.md")
    )
    assert "pr@example.com" in (out / "comment.md").read_text()  # the comment reports the change


def _bench_change(run: Run, key: str) -> None:
    """The benchmark's one-freelancer-change measurement (what ``bench.stacks --quick`` runs first), at 40
    freelancers, with this run's key (as the benchmark's dummy key), clients of its own and this run's
    isolation, in a process of its own."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "import bench.stacks as stacks\n"
        "stacks.DUMMY_API_KEY = sys.argv[1]\n"
        "stacks.CHANGE_VARIANT = 0x0C20\n"
        "bench = stacks.Bench(Path(sys.argv[2]), stacks.Results())\n"
        "bench.project.env.update(json.loads(sys.argv[3]))\n"
        "try:\n"
        "    bench.plan_and_change(40)\n"
        "    print(stacks.render(bench.results, 'bench change 40'))\n"
        "finally:\n"
        "    print('NAMESPACES ' + ' '.join(sorted(bench.namespaces)))\n"
    )
    isolation = json.dumps({k: run.env[k] for k in ("HOME", "PULUMI_HOME", "TMPDIR")})
    work = run.root / "tmp" / "bench"
    work.mkdir()
    try:
        output = run("bench change 40", [sys.executable, "-c", code, key, str(work), isolation], cwd=REPO)
    finally:
        # The benchmark's namespaces, whether or not it finished (the line is printed either way).
        printed = run.outputs.get("bench change 40: stdout", "")
        run.namespaces |= set(printed.rsplit("NAMESPACES ", 1)[-1].split()) if "NAMESPACES " in printed else set()
    assert "| up, one more freelancer | 40 |" in output, output[-2000:]


def _kubectl_json(run: Run, *args: str) -> dict[str, object]:
    result = subprocess.run(["kubectl", *args, "-o", "json"], env=run.env, capture_output=True, text=True, check=True)
    document: dict[str, object] = json.loads(result.stdout)
    return document


def _search(run: Run, secrets: dict[str, str], clients: list[str]) -> tuple[dict[str, int], list[str], list[str]]:
    """Where any form of any secret is found: (places searched, findings, findings in the platform stack's
    decrypted debug log, the one place a secret is expected once decrypted: see the test)."""
    patterns = {(name, form): needle for name, secret in secrets.items() for form, needle in needles(secret).items()}
    found: list[str] = []
    in_platform_log: list[str] = []
    places = {"files": 0, "gzip files": 0, "decrypted logs": 0, "command outputs": 0, "cluster objects": 0}
    bench_env = {
        **run.env,
        "PULUMI_BACKEND_URL": f"file://{run.root / 'tmp' / 'bench' / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": BENCH_PASSPHRASE,
    }

    def look(where: str, data: bytes, into: list[str] = found) -> None:
        for (name, form), needle in patterns.items():
            if needle in data:
                into.append(f"{name} ({form}) in {where}")

    for path in sorted(run.root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue  # the plugins and the virtualenv are linked in, not written by the run
        data = path.read_bytes()
        places["files"] += 1
        look(str(path.relative_to(run.root)), data)
        if data.startswith(GZIP):
            places["gzip files"] += 1
            # A log whose process was killed can end mid-stream: take what decompresses.
            look(f"{path.relative_to(run.root)} (decompressed)", zlib.decompressobj(wbits=31).decompress(data))
        elif data.startswith(PLOG):
            # Encrypted with the key of the stack it names: the run's own, or the benchmark's.
            for env in (run.env, bench_env):
                result = subprocess.run(
                    ["pulumi", "logs", "decrypt", str(path)], env=env, cwd=run.project, capture_output=True, check=False
                )
                if result.returncode == 0:
                    places["decrypted logs"] += 1
                    # Automatic logs are named <org>+<project>+<stack>-<time>[-<update>].log.
                    platform = re.fullmatch(rf"[^+]+\+[^+]+\+{NAME}-\d{{8}}T\d{{6}}(-.*)?\.log", path.name)
                    into = in_platform_log if platform else found
                    look(f"{path.relative_to(run.root)} (decrypted)", result.stdout, into)
                    break
            else:
                found.append(
                    f"{path.relative_to(run.root)}: an encrypted log this test cannot decrypt, so not searched"
                )
    for label, text in run.outputs.items():
        places["command outputs"] += 1
        look(f"the output of {label}", text.encode())
    kinds = subprocess.run(
        ["kubectl", "api-resources", "--verbs=list", "--namespaced", "-o", "name"],
        env=run.env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    # The Secrets that hold a secret by design: each client's key, each service's connection string.
    holders = {naming.API_KEY_SECRET, *(secret_name(kind) for kind in SERVICES)}
    for namespace in [run.platform_namespace, *(f"client-{client}" for client in clients)]:
        items = _kubectl_json(run, "get", ",".join(kinds), "-n", namespace)["items"]
        assert isinstance(items, list)
        for item in items:
            places["cluster objects"] += 1
            meta = item["metadata"]
            searched = item
            if item["kind"] == "Secret" and meta["name"] in holders:
                searched = {**item, "data": "(the Secret itself: holds it by design)"}
            look(f"{item['kind']} {namespace}/{meta['name']}", json.dumps(searched).encode())
    return places, found, in_platform_log
