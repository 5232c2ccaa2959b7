"""A deterministic roster generator: N freelancers over about N/20 clients, every tier, shared freelancers.

Every id is derived from the seed and a *variant* number, and every client id starts with
``be0c<variant>``, so the namespaces a benchmark creates (``client-be0c...``) are recognisable and can be
deleted afterwards without touching anything else. Freelancer ``i`` depends only on the seed, the
variant and ``i``, so the roster for N + 1 is the roster for N plus one freelancer.

Each roster has exactly one GPU sandbox (a premium one): the local cluster simulates 8 GPUs in all, shared
by the dev stack and every benchmark stack at once, and a pod that cannot be scheduled would stall a
measurement until its time limit.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

SEED = 20261127
CLIENT_PREFIX = "be0c"
"""First hex digits of every generated client id: bench namespaces are ``client-be0c...``."""
FREELANCER_PREFIX = "be0f"
FREELANCERS_PER_CLIENT = 20
TIERS = ("basic", "standard", "premium", "custom")
TIER_WEIGHTS = (40, 35, 15, 10)
SECOND_CLIENT_SHARE = 0.10
"""Share of freelancers who work for two clients."""
SUSPENDED_SHARE = 0.03


def _uuid(prefix: str, variant: int, rng: random.Random) -> str:
    """A version-4-shaped UUID whose first eight hex digits are ``prefix`` + the variant."""
    head = f"{prefix}{variant:04x}"
    tail = rng.getrandbits(96)
    value = UUID(f"{head}{tail:024x}")
    # Set the version (4) and variant (RFC 4122) bits so the id looks like any other roster id.
    return str(UUID(int=value.int, version=4))


def client_id(index: int, *, variant: int, seed: int = SEED) -> str:
    return _uuid(CLIENT_PREFIX, variant, random.Random(f"{seed}/{variant}/client/{index}"))


def client_count(freelancers: int) -> int:
    """About one client per 20 freelancers, and at least two (so someone can work for two clients)."""
    return max(2, round(freelancers / FREELANCERS_PER_CLIENT))


def _sandbox(client: str, rng: random.Random) -> dict[str, Any]:
    tier = rng.choices(TIERS, weights=TIER_WEIGHTS)[0]
    entry: dict[str, Any] = {"client": client, "tier": tier}
    if tier == "custom":
        cpu = rng.choice((1, 2, 3, 6))
        memory = cpu * 2
        entry["resources"] = {
            "requests": {"cpu": str(cpu), "memory": f"{memory}Gi"},
            "limits": {"cpu": str(cpu * 2), "memory": f"{memory * 2}Gi"},
        }
    if rng.random() < 0.1:
        tag = f"2026.{rng.randint(1, 12)}.{rng.randint(1, 28)}"
        # Pinned by digest, as stacks require by default (a made-up one: benchmarks pull no image).
        entry["image"] = f"{tag}@sha256:{hashlib.sha256(tag.encode()).hexdigest()}"
    if rng.random() < 0.1:
        entry["storage"] = {"workspace": f"{rng.choice((20, 100, 200))}Gi", "home": "20Gi"}
    if rng.random() < SUSPENDED_SHARE:
        entry["state"] = "suspended"
    return entry


def freelancer(index: int, clients: list[str], *, variant: int, seed: int = SEED) -> dict[str, Any]:
    """Freelancer ``index``: depends only on (seed, variant, index) and the client list."""
    rng = random.Random(f"{seed}/{variant}/freelancer/{index}")
    fid = _uuid(FREELANCER_PREFIX, variant, rng)
    first = clients[index % len(clients)]
    entry: dict[str, Any] = {
        "id": fid,
        "email": f"freelancer-{variant:04x}-{index}@bench.example.com",
        "name": f"Bench Freelancer {index}",
        "sandboxes": [_sandbox(first, rng)],
    }
    if len(clients) > 1 and rng.random() < SECOND_CLIENT_SHARE:
        second = rng.choice([c for c in clients if c != first])
        entry["sandboxes"].append(_sandbox(second, rng))
    return entry


def generate(freelancers: int, *, variant: int, seed: int = SEED, clients: int | None = None) -> dict[str, Any]:
    """The roster as plain data. ``clients`` defaults to about ``freelancers / 20``."""
    count = clients if clients is not None else client_count(freelancers)
    client_ids = [client_id(i, variant=variant, seed=seed) for i in range(count)]
    people = [freelancer(i, client_ids, variant=variant, seed=seed) for i in range(freelancers)]
    # Make sure the mix is complete even for tiny rosters: the first sandboxes cover every tier, and the
    # first freelancer is suspended (the generator's share would round to none at N = 10).
    for tier, person in zip(TIERS, people, strict=False):
        sandbox = person["sandboxes"][0]
        sandbox.clear()
        sandbox.update(_fixed_sandbox(tier, person, client_ids))
    if people:
        people[0]["sandboxes"][0]["state"] = "suspended"
    if len(people) > 1 and len(client_ids) > 1 and not any(len(p["sandboxes"]) > 1 for p in people):
        last = people[-1]
        other = next(c for c in client_ids if c != last["sandboxes"][0]["client"])
        last["sandboxes"].append({"client": other, "tier": "basic"})
    return {
        "version": 1,
        "clients": [{"id": c, "name": f"Bench Client {i}"} for i, c in enumerate(client_ids)],
        "freelancers": people,
    }


def _fixed_sandbox(tier: str, person: dict[str, Any], clients: list[str]) -> dict[str, Any]:
    index = int(person["email"].split("-")[-1].split("@")[0])
    entry: dict[str, Any] = {"client": clients[index % len(clients)], "tier": tier}
    if tier == "custom":
        entry["resources"] = {"requests": {"cpu": "3", "memory": "6Gi"}, "limits": {"cpu": "6", "memory": "12Gi"}}
    if tier == "premium":
        entry["gpu"] = True
    return entry


def add_freelancer(roster: dict[str, Any], *, variant: int, seed: int = SEED) -> dict[str, Any]:
    """The same roster plus one new freelancer (the next index), for incremental measurements."""
    clients = [c["id"] for c in roster["clients"]]
    index = len(roster["freelancers"])
    return {**roster, "freelancers": [*roster["freelancers"], freelancer(index, clients, variant=variant, seed=seed)]}


def write(roster: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Generated by `python -m bench` (seed {SEED}); safe to delete.\n"
    path.write_text(header + yaml.safe_dump(roster, sort_keys=False), encoding="utf-8")
    return path


def describe(roster: dict[str, Any]) -> str:
    """``N freelancers, C clients, S sandboxes (tiers ...; k on two clients, s suspended)``."""
    sandboxes = [s for f in roster["freelancers"] for s in f["sandboxes"]]
    tiers = Counter(s["tier"] for s in sandboxes)
    two = sum(1 for f in roster["freelancers"] if len(f["sandboxes"]) > 1)
    suspended = sum(1 for s in sandboxes if s.get("state") == "suspended")
    mix = ", ".join(f"{tiers[t]} {t}" for t in TIERS)
    return (
        f"{len(roster['freelancers'])} freelancers, {len(roster['clients'])} clients, {len(sandboxes)} sandboxes"
        f" ({mix}; {two} on two clients, {suspended} suspended)"
    )
