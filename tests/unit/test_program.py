"""The Pulumi program under Pulumi's mocks: what it declares for the example roster, and what it refuses."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pulumi
import pytest

from sandbox_infra import program
from sandbox_infra.plan import ALL_SLICES, PLATFORM_SLICE, build_plan
from sandbox_infra.quantity import parse_quantity
from sandbox_infra.roster import load_roster
from sandbox_infra.tiers import TIERS, Resources, Tier, split_budget
from tests.unit.mocks import EXAMPLE_SETTINGS, Recorder, is_secret, resolve, run_example, run_program

SNAPSHOT = Path(__file__).parent / "snapshots" / "example-roster-urns.txt"
SETTINGS = EXAMPLE_SETTINGS
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
STS = "kubernetes:apps/v1:StatefulSet"
ACME_GLOBEX_INITECH = (
    "0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11",
    "083cfb9d-4274-45dd-b4a8-bb1b0e883cf5",
    "b38cf925-1979-4799-93b8-ea79b0712d0c",
)


def build_example(example_roster: Path, slice_id: str = ALL_SLICES) -> Recorder:
    return run_example(example_roster, slice_id, settings=SETTINGS)


@pytest.fixture(scope="module")
def example(request: pytest.FixtureRequest) -> Recorder:
    return build_example(Path(request.config.rootpath) / "roster.yaml")


def _urns(recorder: Recorder) -> set[str]:
    return {resolve(r.resource.urn) for r in recorder.resources}


def test_slices_partition_the_single_stack(example: Recorder, example_roster: Path) -> None:
    """The platform slice and the client slices declare exactly what the single stack does, each resource
    once, under the same URNs: that is what lets ``adopt`` move resources without replacing any."""
    plan = build_plan(load_roster(example_roster, SETTINGS), SETTINGS)
    assert [s.id for s in plan.slices] == sorted(f"client-{c}" for c in ACME_GLOBEX_INITECH)
    parts = [_urns(build_example(example_roster, s)) for s in (PLATFORM_SLICE, *(s.id for s in plan.slices))]
    provider = {u for u in _urns(example) if "pulumi:providers:kubernetes" in u}
    everything = set().union(*parts)
    assert everything == _urns(example)
    for i, part in enumerate(parts):
        for other in parts[i + 1 :]:
            assert part & other == provider  # each stack has its own provider, nothing else is shared
    platform = parts[0] - provider
    assert all("sandbox-infra:platform:Platform" in u or "sandbox-infra:services:" in u for u in platform)
    acme = parts[1 + [s.id for s in plan.slices].index(f"client-{ACME_GLOBEX_INITECH[0]}")] - provider
    assert acme and all(ACME_GLOBEX_INITECH[0] in u for u in acme if "::sandbox-infra:" in u)


def test_a_slice_without_clients_is_refused(example_roster: Path) -> None:
    with pytest.raises(program.ProgramError, match="has no client in the roster"):
        build_example(example_roster, "client-00000000-0000-4000-8000-000000000000")


def test_urn_snapshot(example: Recorder) -> None:
    """Renaming a logical name makes Pulumi delete and re-create; that must be a deliberate change."""
    urns = sorted(resolve(r.resource.urn) for r in example.resources)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text("\n".join(urns) + "\n")
    assert urns == SNAPSHOT.read_text().splitlines(), "URNs changed: add aliases, or UPDATE_SNAPSHOTS=1 if intended"


def test_every_pvc_is_protected_and_retained(example: Recorder) -> None:
    pvcs = example.by_type(PVC)
    assert len(pvcs) == 18
    for pvc in pvcs:
        assert pvc.opts.protect is True, pvc.name
        assert pvc.opts.retain_on_delete is True, pvc.name


def test_client_namespaces_are_protected(example: Recorder) -> None:
    namespaces = [r for r in example.by_type("kubernetes:core/v1:Namespace") if r.name.startswith("client-")]
    assert len(namespaces) == 3
    assert all(ns.opts.protect and ns.opts.retain_on_delete for ns in namespaces)


def test_every_object_has_one_field_manager_and_only_namespaces_and_volumes_are_not_forced(example: Recorder) -> None:
    """A fixed field manager keeps an interrupted create from leaving fields owned by a name the state
    never recorded; force lets a refreshing update take back what a person changed by hand."""
    kinds: dict[bool, set[str]] = {True: set(), False: set()}
    # Every Kubernetes object (a Helm release is a component: its objects come from the chart).
    objects = [
        (typ, wire) for (typ, _), wire in example.wire.items() if typ.startswith("kubernetes:") and "metadata" in wire
    ]
    assert {
        typ for (typ, _), wire in example.wire.items() if typ.startswith("kubernetes:") and "metadata" not in wire
    } <= {"kubernetes:helm.sh/v4:Chart"}
    assert len(objects) > 70
    for typ, wire in objects:
        annotations = wire["metadata"]["annotations"]
        assert annotations["pulumi.com/patchFieldManager"] == "sandbox-infra", typ
        kinds[annotations.get("pulumi.com/patchForce") == "true"].add(typ.split(":")[-1])
    assert kinds[False] == {"Namespace", "PersistentVolumeClaim"}
    assert {"StatefulSet", "ResourceQuota", "NetworkPolicy", "Secret", "Sandbox"} <= kinds[True]
    # No blanket skipAwait: only the headless Services, whose await returns a stale object after an update.
    skipped = {typ.split(":")[-1] for typ, wire in objects if "pulumi.com/skipAwait" in wire["metadata"]["annotations"]}
    assert skipped == {"Service"}


def _statefulsets(example: Recorder) -> dict[str, dict[str, Any]]:
    """Each StatefulSet's spec as Kubernetes will see it: the wire form, camelCase whatever the program's keys."""
    return {wire["metadata"]["name"]: wire["spec"] for (typ, _), wire in example.wire.items() if typ == STS}


def test_states(example: Recorder) -> None:
    sts = _statefulsets(example)
    assert sts["sandbox-d44c1a65-1247-4c83-81e5-f317ce893476"]["replicas"] == 0  # suspended
    assert sts["sandbox-e0d60578-9d7a-46c3-89f8-a131aaa11434"]["replicas"] == 1
    # archived: no compute, no service, but both volumes and the Sandbox object stay
    archived = "95a68ebd-8ec9-43ef-96f8-342291623c48"
    assert f"sandbox-{archived}" not in sts
    assert any(archived in r.name for r in example.by_type(PVC))
    assert len([r for r in example.by_type(PVC) if archived in r.name]) == 2
    assert len(example.by_type("kubernetes:platform.com/v1:Sandbox")) == 9


def _requests(containers: list[dict[str, Any]], side: str, what: str) -> Decimal:
    return sum((parse_quantity(c["resources"][side][what]) for c in containers), Decimal(0))


def test_pods_fit_their_tier_budget(example: Recorder) -> None:
    sts = _statefulsets(example)
    grace = sts["sandbox-64a1e28f-6dcb-41fe-a9d2-33558e10fc1d"]["template"]["spec"]
    budget = TIERS[Tier.PREMIUM].budget
    assert budget is not None
    assert _requests(grace["containers"], "requests", "cpu") == budget.requests_cpu
    assert _requests(grace["containers"], "limits", "memory") == budget.limits_memory
    assert grace["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for spec in sts.values():
        pod = spec["template"]["spec"]
        for c in pod["containers"] + pod["initContainers"]:
            for side in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][side]), c["name"]


def test_pods_pass_restricted(example: Recorder) -> None:
    for spec in _statefulsets(example).values():
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"] + pod["initContainers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert ":" in c["image"] and not c["image"].endswith(":latest")


def test_quota_is_the_sum_of_tier_budgets_plus_the_largest_as_headroom(example_roster: Path) -> None:
    roster = load_roster(example_roster, SETTINGS)
    quotas = {t.client_id: t.quota for t in build_plan(roster, SETTINGS).tenants()}
    acme = quotas[roster.clients[0].id]
    # standard (2/4Gi, 4/8Gi) + premium with GPU (4/8Gi, 8/16Gi) + basic (1/2Gi, 2/4Gi; suspended keeps its
    # reservation), and the premium budget again as headroom; volumes exactly
    assert acme.compute.requests_cpu == 7 and acme.headroom.requests_cpu == 4
    assert acme.hard() == {
        "requests.cpu": "11",
        "requests.memory": "22Gi",
        "limits.cpu": "22",
        "limits.memory": "44Gi",
        "requests.nvidia.com/gpu": "2",
        "persistentvolumeclaims": "10",
        "requests.storage": "240Gi",
    }
    initech = quotas[roster.clients[2].id]
    # premium + basic; the archived standard sandbox keeps only its volumes, and the premium is the headroom
    assert initech.compute.requests_cpu == 5 and initech.compute.limits_memory == 20 * 2**30
    assert initech.hard()["requests.cpu"] == "9" and initech.hard()["limits.memory"] == "36Gi"
    assert initech.hard()["persistentvolumeclaims"] == "10" and initech.hard()["requests.storage"] == "150Gi"


def test_headroom_counts_archived_sandboxes_whose_pods_outlive_the_update(tmp_path: Path) -> None:
    """Archiving a premium sandbox and adding a basic one in one change: the engine deletes the archived
    StatefulSet after the creates, so the quota must admit the basic pod beside the premium one."""
    client = "5a1e2b3c-0000-4000-8000-000000000001"
    roster = tmp_path / "roster.yaml"
    roster.write_text(
        json.dumps(
            {
                "version": 1,
                "clients": [{"id": client, "name": "Archiving"}],
                "freelancers": [
                    {
                        "id": "5a1e2b3c-0000-4000-8000-000000000002",
                        "email": "old@example.com",
                        "sandboxes": [{"client": client, "tier": "premium", "state": "archived"}],
                    },
                    {
                        "id": "5a1e2b3c-0000-4000-8000-000000000003",
                        "email": "new@example.com",
                        "sandboxes": [{"client": client, "tier": "basic"}],
                    },
                ],
            }
        )
    )
    (tenant,) = build_plan(load_roster(roster, SETTINGS), SETTINGS).tenants()
    premium, basic = TIERS[Tier.PREMIUM].budget, TIERS[Tier.BASIC].budget
    assert premium is not None and basic is not None
    assert tenant.quota.compute == basic and tenant.quota.headroom == premium
    assert tenant.quota.hard()["limits.cpu"] == str(basic.limits_cpu + premium.limits_cpu)


def test_headroom_is_the_largest_budget_resource_by_resource() -> None:
    big_cpu = Resources(Decimal(4), Decimal(2**30), Decimal(8), Decimal(2**31))
    big_memory = Resources(Decimal(1), Decimal(2**34), Decimal(2), Decimal(2**35), gpu=1)
    assert big_cpu.largest(big_memory) == Resources(Decimal(4), Decimal(2**34), Decimal(8), Decimal(2**35), gpu=1)


@pytest.mark.parametrize("tier", [Tier.BASIC, Tier.STANDARD, Tier.PREMIUM])
def test_split_budget_is_exact(tier: Tier) -> None:
    budget = TIERS[tier].budget
    assert budget is not None
    split = split_budget(budget)
    assert split.pod.requests_cpu == budget.requests_cpu
    assert split.pod.limits_memory == budget.limits_memory
    assert split.init.requests_cpu <= split.pod.requests_cpu


def _program_config(tmp_path: Path, roster_text: str, slice_id: str = ALL_SLICES) -> dict[str, str]:
    roster = tmp_path / "roster.yaml"
    roster.write_text(roster_text)
    return {
        "sandbox-infra:roster": str(roster),
        "sandbox-infra:geminiApiKey": "sk-test-not-real",
        "sandbox-infra:slice": slice_id,
        # No chart repository is reachable from tests: the releases are off (tests/unit/test_services.py).
        "sandbox-infra:releases": "[]",
    }


def test_api_key_stays_secret(tmp_path: Path, example_roster: Path) -> None:
    config = _program_config(tmp_path, example_roster.read_text())
    recorder = run_program(program.main, config=config, secret_keys=["sandbox-infra:geminiApiKey"])
    secrets = recorder.by_type("kubernetes:core/v1:Secret")
    assert len(secrets) == 3
    for secret in secrets:
        value = pulumi.Output.from_input(secret.props["string_data"])
        assert is_secret(value)
        # Gemini CLI's .env file, built inside the secret Output.
        assert resolve(value) == {".env": "GEMINI_API_KEY=sk-test-not-real\n"}


def test_invalid_roster_registers_nothing(tmp_path: Path) -> None:
    config = _program_config(tmp_path, "version: 1\nclients:\n  - id: nope\n    name: X\n")
    recorder = Recorder()
    with pytest.raises(program.ProgramError, match="is invalid"):
        run_program(program.main, config=config, secret_keys=["sandbox-infra:geminiApiKey"], recorder=recorder)
    assert recorder.resources == []


def test_missing_api_key_registers_nothing(tmp_path: Path, example_roster: Path) -> None:
    config = _program_config(tmp_path, example_roster.read_text())
    del config["sandbox-infra:geminiApiKey"]
    recorder = Recorder()
    with pytest.raises(program.ProgramError, match="is invalid"):
        run_program(program.main, config=config, recorder=recorder)
    assert recorder.resources == []


def test_a_client_stack_with_per_client_keys_only_validates_the_whole_roster(
    tmp_path: Path, example_roster: Path
) -> None:
    """An environment with a key per client and no default: each client stack's generated config must
    still let its program validate every client of the roster (each has a key), not only its own."""
    from sandbox_infra.environment import load_environment

    keys = "".join(f"    {c}:\n      secure: v1:ciphertext-{c[:4]}\n" for c in ACME_GLOBEX_INITECH)
    (tmp_path / "Pulumi.dev.yaml").write_text(f"config:\n  sandbox-infra:clientGeminiApiKeys:\n{keys}")
    (tmp_path / "roster.yaml").write_text(example_roster.read_text())
    environment = load_environment("dev", tmp_path)
    acme = environment.plan(environment.load_roster()).slice(f"client-{ACME_GLOBEX_INITECH[0]}")
    assert acme is not None
    generated = environment.stack_config(acme)["config"]
    present = set(generated["sandbox-infra:clientGeminiApiKeys"])
    config = {
        "sandbox-infra:roster": str(tmp_path / "roster.yaml"),
        "sandbox-infra:slice": acme.id,
        "sandbox-infra:clientGeminiApiKeys": json.dumps({c: f"key-{c[:4]}" for c in present}),
    }
    recorder = run_program(program.main, config=config, secret_keys=["sandbox-infra:clientGeminiApiKeys"])
    secrets = recorder.by_type("kubernetes:core/v1:Secret")
    assert len(secrets) == 1
    assert resolve(pulumi.Output.from_input(secrets[0].props["string_data"])) == {".env": "GEMINI_API_KEY=key-0b0e\n"}
