"""The roster: clients, freelancers and their sandboxes, parsed into typed models and validated.

Validation is the contract roster pull requests rely on: every problem is reported at once, each with
the file, line, column and path of the value at fault; unknown keys are errors, because a typo must not
silently drop a freelancer. Only a roster without errors reaches the Pulumi program.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from pydantic_core import ErrorDetails

from sandbox_infra import naming
from sandbox_infra.images import DIGEST_EXAMPLE, TAG_WITH_OPTIONAL_DIGEST
from sandbox_infra.limits import EMAIL_MAX, NAME_MAX
from sandbox_infra.quantity import QuantityError, parse_quantity
from sandbox_infra.settings import StackSettings
from sandbox_infra.source import Diagnostic, InputError, PathKey, Positions, load_yaml
from sandbox_infra.tiers import TIERS, Tier

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# A stack group: part of a Pulumi stack name (<environment>-<group>); `client-` names the default groups.
_STACK_GROUP = r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$"


class SandboxState(StrEnum):
    """Lifecycle of a sandbox. Only ``archived`` sandboxes may later be released (docs/offboarding.md)."""

    ACTIVE = "active"
    """Running: one pod, volumes mounted."""
    SUSPENDED = "suspended"
    """Compute scaled to zero, volumes and quota reservation kept: resuming is instant."""
    ARCHIVED = "archived"
    """Offboarded: no compute and no quota reservation; the volumes are kept until released."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Compute(_Model):
    """CPU and memory, as Kubernetes quantities."""

    cpu: StrictStr | StrictInt = Field(description="CPU cores, e.g. '3' or '2500m'.")
    memory: StrictStr = Field(description="Memory, e.g. '6Gi'.")


class CustomResources(_Model):
    """Pod budget of a ``custom`` tier sandbox (the whole pod, split between its containers)."""

    requests: Compute
    limits: Compute
    gpu: StrictInt = Field(default=0, ge=0, le=8, description="Number of nvidia.com/gpu (0 = none).")


class Storage(_Model):
    """Volume sizes; the defaults come from the stack (seed: 50Gi workspace, 10Gi home)."""

    workspace: StrictStr | None = Field(default=None, description="Size of the workspace volume, e.g. '50Gi'.")
    home: StrictStr | None = Field(default=None, description="Size of the home volume, e.g. '10Gi'.")


class SandboxEntry(_Model):
    """One freelancer's sandbox for one client."""

    client: UUID = Field(description="Id of the client this sandbox works for (a clients[].id).")
    tier: Tier = Field(description="Resource tier: basic, standard, premium or custom.")
    resources: CustomResources | None = Field(default=None, description="Only for tier custom.")
    gpu: StrictBool = Field(default=False, description="Attach a GPU (premium and custom tiers only).")
    image: StrictStr | None = Field(
        default=None,
        pattern=TAG_WITH_OPTIONAL_DIGEST,
        description="Tag of this freelancer's own image, pinned by digest (TAG@sha256:DIGEST; the digest is "
        "required unless the stack sets requireImageDigests: false); default: the stack's base image.",
    )
    storage: Storage = Field(default_factory=Storage)
    state: SandboxState = Field(default=SandboxState.ACTIVE, description="active, suspended or archived.")


class Freelancer(_Model):
    """A person who works in sandboxes, for one or more clients."""

    id: UUID = Field(description="Immutable id (UUID); every Kubernetes name derives from it.")
    email: StrictStr = Field(pattern=_EMAIL, max_length=EMAIL_MAX, description="Unique contact address; may change.")
    name: StrictStr | None = Field(default=None, max_length=NAME_MAX, description="Display name; may change.")
    sandboxes: list[SandboxEntry] = Field(default_factory=list)


class Client(_Model):
    """An organization freelancers work for: one namespace, one quota."""

    id: UUID = Field(description="Immutable id (UUID); the namespace is client-<id>.")
    name: StrictStr = Field(min_length=1, max_length=NAME_MAX, description="Display name; may change.")
    stack: StrictStr | None = Field(
        default=None,
        pattern=_STACK_GROUP,
        description="Stack group shared with other clients (lowercase letters, digits, '-'; at most 40); "
        "default: a stack of the client's own. Set it once: moving a client between stacks is refused.",
    )


class Roster(_Model):
    """The whole roster file."""

    version: Literal[1] = Field(description="Roster format version.")
    clients: list[Client] = Field(default_factory=list)
    freelancers: list[Freelancer] = Field(default_factory=list)

    def client(self, client_id: UUID) -> Client:
        return next(c for c in self.clients if c.id == client_id)

    def sandboxes(self) -> Iterator[tuple[Freelancer, SandboxEntry]]:
        for freelancer in self.freelancers:
            for sandbox in freelancer.sandboxes:
                yield freelancer, sandbox


_M = TypeVar("_M", bound=BaseModel)

# Which model describes the mapping at a path (list indexes written as "*"), for error messages.
_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Roster,
    ("clients", "*"): Client,
    ("freelancers", "*"): Freelancer,
    ("freelancers", "*", "sandboxes", "*"): SandboxEntry,
    ("freelancers", "*", "sandboxes", "*", "resources"): CustomResources,
    ("freelancers", "*", "sandboxes", "*", "resources", "requests"): Compute,
    ("freelancers", "*", "sandboxes", "*", "resources", "limits"): Compute,
    ("freelancers", "*", "sandboxes", "*", "storage"): Storage,
}
_TYPE_NAMES = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "a whole number",
    "list_type": "a list",
    "model_type": "a mapping",
    "dict_type": "a mapping",
    "model_attributes_type": "a mapping",
    "uuid_type": "a UUID",
}


# Values in messages: printable (control characters escaped) and short, whatever the roster holds.
_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxdict, _SHOW.maxlist, _SHOW.maxstring, _SHOW.maxlong, _SHOW.maxother = 2, 3, 3, 60, 40, 60


def _message(error: ErrorDetails, path: PathKey) -> str:
    kind, value = error["type"], _SHOW.repr(error.get("input"))
    field = str(path[-1]) if path else "roster"
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        model = _MODELS.get(tuple("*" if isinstance(p, int) else p for p in path[:-1]))
        expected = f" (expected one of {', '.join(model.model_fields)})" if model else ""
        return f"unknown key {_SHOW.repr(field)}{expected}"
    if kind == "string_too_long":
        limit = error.get("ctx", {}).get("max_length")
        return f"{len(str(error.get('input')))} characters, more than the {limit} the platform database's column holds"
    if kind == "enum":
        choices = ", ".join(e.value for e in (Tier if field == "tier" else SandboxState))
        return f"unknown {field} {value} (expected one of {choices})"
    if kind == "literal_error":
        return f"unsupported {field} {value} (expected 1)"
    if kind in ("uuid_parsing", "uuid_type") or (kind == "string_type" and field in ("id", "client")):
        return f"malformed UUID {value} (expected e.g. 0b0e5a4e-2f7d-4a53-9d0e-6f1c2b7a9c11)"
    if kind == "string_pattern_mismatch":
        what = {
            "email": "an email address",
            "image": f"an image tag, optionally pinned by digest (TAG or TAG{DIGEST_EXAMPLE}; no registry)",
            "stack": "a stack group (lowercase letters, digits and '-', at most 40 characters)",
        }.get(field, "a valid value")
        return f"{value} is not {what}"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {type(error.get('input')).__name__} {value}"
    return str(error["msg"])


@dataclass(frozen=True)
class _Parsed:
    """The entries that parsed, each with its index in the file; a broken entry is left out, so that
    it does not hide the problems of the others."""

    clients: list[tuple[int, Client]]
    freelancers: list[tuple[int, Freelancer, list[int]]]  # (index, freelancer, index of each sandbox kept)


def _parse(data: object, positions: Positions) -> tuple[_Parsed | None, list[Diagnostic]]:
    """Structural validation, entry by entry (clients, freelancers, and each sandbox on its own)."""
    errors: list[Diagnostic] = []

    def parse(model: type[_M], value: object, prefix: PathKey) -> _M | None:
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            for error in exc.errors():
                path = (*prefix, *error["loc"])
                extra = error["type"] == "extra_forbidden"
                errors.append(positions.diagnostic(path, _message(error, path), key=extra))
            return None

    if not isinstance(data, dict):
        kind = type(data).__name__
        return None, [positions.diagnostic((), f"expected a mapping with version, clients and freelancers, got {kind}")]
    parse(Roster, {k: [] if k in ("clients", "freelancers") else v for k, v in data.items()}, ())
    parsed = _Parsed([], [])
    for section in ("clients", "freelancers"):
        if not isinstance(data.get(section, []), list):
            errors.append(positions.diagnostic((section,), f"expected a list, got {type(data[section]).__name__}"))
    clients = data.get("clients", [])
    for i, item in enumerate(clients if isinstance(clients, list) else []):
        client = parse(Client, item, ("clients", i))
        if client is not None:
            parsed.clients.append((i, client))
    freelancers = data.get("freelancers", [])
    for i, item in enumerate(freelancers if isinstance(freelancers, list) else []):
        sandboxes = item.get("sandboxes", []) if isinstance(item, dict) else []
        freelancer = parse(
            Freelancer, {**item, "sandboxes": []} if isinstance(item, dict) else item, ("freelancers", i)
        )
        if not isinstance(sandboxes, list):
            kind = type(sandboxes).__name__
            errors.append(positions.diagnostic(("freelancers", i, "sandboxes"), f"expected a list, got {kind}"))
            continue
        kept: list[tuple[int, SandboxEntry]] = []
        for j, raw in enumerate(sandboxes):
            sandbox = parse(SandboxEntry, raw, ("freelancers", i, "sandboxes", j))
            if sandbox is not None:
                kept.append((j, sandbox))
        if freelancer is not None:
            # Both halves are validated models: put them together without validating them again.
            fields = {name: getattr(freelancer, name) for name in Freelancer.model_fields}
            whole = Freelancer.model_construct(**{**fields, "sandboxes": [s for _, s in kept]})
            parsed.freelancers.append((i, whole, [j for j, _ in kept]))
    return parsed, errors


def _check_custom_resources(
    resources: CustomResources, gpu: bool, path: PathKey, positions: Positions
) -> list[Diagnostic]:
    """Quantities are valid and positive, requests do not exceed limits, and a GPU count implies gpu: true."""
    errors: list[Diagnostic] = []
    values: dict[str, Any] = {}
    for side in ("requests", "limits"):
        for what in ("cpu", "memory"):
            where = (*path, "resources", side, what)
            try:
                quantity = parse_quantity(getattr(getattr(resources, side), what))
            except QuantityError as exc:
                errors.append(positions.diagnostic(where, str(exc)))
                continue
            if quantity <= 0:
                errors.append(positions.diagnostic(where, f"must be a positive quantity, got {quantity}"))
            values[f"{side}_{what}"] = quantity
    if errors:
        return errors
    for what in ("cpu", "memory"):
        if values[f"requests_{what}"] > values[f"limits_{what}"]:
            errors.append(
                positions.diagnostic(
                    (*path, "resources", "requests", what),
                    f"request is larger than the limit ({getattr(resources.limits, what)})",
                )
            )
    if resources.gpu and not gpu:
        errors.append(
            positions.diagnostic((*path, "resources", "gpu"), "resources.gpu is set but gpu is false; set gpu: true")
        )
    return errors


def _check_semantics(parsed: _Parsed, positions: Positions, settings: StackSettings) -> list[Diagnostic]:
    errors: list[Diagnostic] = []
    d = positions.diagnostic

    seen_clients: dict[UUID, int] = {}
    for i, client in parsed.clients:
        if client.id in seen_clients:
            errors.append(
                d(("clients", i, "id"), f"duplicate client id {client.id} (also clients[{seen_clients[client.id]}])")
            )
        seen_clients.setdefault(client.id, i)
        errors += [d(("clients", i, "id"), msg) for msg in naming.check_client_names(client.id)]
        if client.stack is not None and client.stack.startswith("client-"):
            errors.append(
                d(("clients", i, "stack"), f"stack group {client.stack!r} may not start with 'client-' (reserved)")
            )

    seen_freelancers: dict[UUID, int] = {}
    seen_emails: dict[str, int] = {}
    max_size = settings.max_storage_bytes
    for i, freelancer, sandbox_indexes in parsed.freelancers:
        if freelancer.id in seen_freelancers:
            errors.append(
                d(
                    ("freelancers", i, "id"),
                    f"duplicate freelancer id {freelancer.id} (also freelancers[{seen_freelancers[freelancer.id]}])",
                )
            )
        seen_freelancers.setdefault(freelancer.id, i)
        email = freelancer.email.lower()
        if email in seen_emails:
            errors.append(
                d(
                    ("freelancers", i, "email"),
                    f"duplicate email {freelancer.email!r} (also freelancers[{seen_emails[email]}])",
                )
            )
        seen_emails.setdefault(email, i)
        errors += [d(("freelancers", i, "id"), msg) for msg in naming.check_sandbox_names(freelancer.id)]

        seen_pairs: dict[UUID, int] = {}
        for j, sandbox in zip(sandbox_indexes, freelancer.sandboxes, strict=True):
            path: PathKey = ("freelancers", i, "sandboxes", j)
            if sandbox.client not in seen_clients:
                errors.append(d((*path, "client"), f"unknown client {sandbox.client} (not in clients[].id)"))
            if sandbox.client in seen_pairs:
                errors.append(
                    d(
                        (*path, "client"),
                        f"second sandbox for client {sandbox.client} (already sandboxes[{seen_pairs[sandbox.client]}]);"
                        " a freelancer has one sandbox per client",
                    )
                )
            seen_pairs.setdefault(sandbox.client, j)
            spec = TIERS[sandbox.tier]
            if sandbox.tier is Tier.CUSTOM and sandbox.resources is None:
                errors.append(
                    d((*path, "tier"), "tier custom needs a resources block (requests, limits, optional gpu)")
                )
            if sandbox.tier is not Tier.CUSTOM and sandbox.resources is not None:
                errors.append(
                    d(
                        (*path, "resources"),
                        f"resources is only allowed for tier custom (tier {sandbox.tier.value} has fixed resources)",
                    )
                )
            if sandbox.gpu and not spec.gpu_allowed:
                allowed = ", ".join(t.value for t, s in TIERS.items() if s.gpu_allowed)
                errors.append(
                    d((*path, "gpu"), f"tier {sandbox.tier.value} has no GPU (GPUs are available on: {allowed})")
                )
            if sandbox.tier is Tier.CUSTOM and sandbox.resources is not None:
                errors += _check_custom_resources(sandbox.resources, sandbox.gpu, path, positions)
            if sandbox.image == "latest":
                errors.append(d((*path, "image"), "image tag 'latest' is not allowed: pin a version"))
            elif sandbox.image is not None and "@" not in sandbox.image and settings.require_image_digests:
                errors.append(
                    d(
                        (*path, "image"),
                        f"image {sandbox.image!r} is pinned by tag only: add its digest "
                        f"({sandbox.image}{DIGEST_EXAMPLE}), or set the stack setting requireImageDigests: false",
                    )
                )
            for volume in ("workspace", "home"):
                size = getattr(sandbox.storage, volume)
                if size is None:
                    continue
                where = (*path, "storage", volume)
                try:
                    quantity = parse_quantity(size)
                except QuantityError as exc:
                    errors.append(d(where, str(exc)))
                    continue
                if quantity <= 0:
                    errors.append(d(where, f"must be a positive size, got {size!r}"))
                elif quantity > max_size:
                    errors.append(
                        d(
                            where,
                            f"{size} exceeds the maximum volume size {settings.max_storage} (stack setting maxStorage)",
                        )
                    )
    return errors


def _check_secrets(parsed: _Parsed, positions: Positions, settings: StackSettings, stack_file: str) -> list[Diagnostic]:
    """Every client with a sandbox needs a Gemini API key: its own, or the platform default."""
    if settings.api_key_present:
        return []
    used = {s.client for _, f, _ in parsed.freelancers for s in f.sandboxes}
    return [
        positions.diagnostic(
            ("clients", i, "id"),
            f"no Gemini API key for client {client.id}: set the platform default with "
            f"`pulumi config set --secret sandbox-infra:geminiApiKey ...` or this client's key with "
            f"`pulumi config set --secret --path 'sandbox-infra:clientGeminiApiKeys.{client.id}' ...` ({stack_file})",
        )
        for i, client in parsed.clients
        if client.id in used and str(client.id) not in settings.client_api_keys_present
    ]


def validate(
    data: object, positions: Positions, settings: StackSettings, *, stack_file: str = "stack config"
) -> Roster:
    """Validate loaded roster data; raises :class:`InputError` with every problem found."""
    parsed, errors = _parse(data, positions)
    if parsed is not None:
        errors += _check_semantics(parsed, positions, settings)
        errors += _check_secrets(parsed, positions, settings, stack_file)
    if errors or parsed is None:
        raise InputError(errors)
    # Without errors every entry parsed, in file order: the roster is those validated models (validating
    # the whole document again would double the cost of a 10,000-freelancer roster).
    assert isinstance(data, dict)
    return Roster.model_construct(
        version=data["version"],
        clients=[client for _, client in parsed.clients],
        freelancers=[freelancer for _, freelancer, _ in parsed.freelancers],
    )


def load_roster(
    path: Path, settings: StackSettings, *, display_name: str | None = None, stack_file: str = "stack config"
) -> Roster:
    """Load and validate a roster file; raises :class:`InputError` naming file, line and path."""
    data, positions = load_yaml(path, display_name=display_name)
    return validate(data, positions, settings, stack_file=stack_file)
