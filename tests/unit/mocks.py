"""Runs the Pulumi program under Pulumi's mocks and records what it registered (with resource options)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from sandbox_infra import program
from sandbox_infra.charts import PLATFORM_SECRETS
from sandbox_infra.plan import ALL_SLICES, build_plan
from sandbox_infra.roster import load_roster
from sandbox_infra.settings import StackSettings


@dataclass
class Registered:
    """One registered resource: its type, logical name, inputs and options."""

    type: str
    name: str
    props: dict[str, Any]
    opts: pulumi.ResourceOptions
    resource: pulumi.Resource


@dataclass
class Recorder(pulumi.runtime.Mocks):
    """Mocks that echo inputs as outputs, plus a record of every resource and its options.

    ``resources`` holds each resource's props as the program passed them (typed inputs keep their Python,
    snake_case keys); ``wire`` holds its inputs as the engine receives them (camelCase, secrets wrapped).
    Assert on ``wire`` for anything Kubernetes will see."""

    resources: list[Registered] = field(default_factory=list)
    wire: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        key = (args.typ, args.name)
        # (type, logical name) must identify a resource, or one registration would hide another.
        assert key not in self.wire, f"registered twice: {key}"
        # A deep copy: the echoed outputs must not alias (and later alter) what was recorded.
        self.wire[key] = copy.deepcopy(dict(args.inputs))
        return (f"{args.name}-id", dict(args.inputs))

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return ({}, None)

    def transformation(self, args: pulumi.ResourceTransformationArgs) -> None:
        self.resources.append(Registered(args.type_, args.name, dict(args.props), args.opts, args.resource))

    def by_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]


def run_program(
    body: Callable[[], None],
    *,
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    recorder: Recorder | None = None,
) -> Recorder:
    """Run ``body`` as a Pulumi program under mocks and wait until every resource is registered.
    Pass a ``recorder`` to inspect what was registered when ``body`` raises."""
    recorder = recorder if recorder is not None else Recorder()
    pulumi.runtime.set_mocks(recorder, project="sandbox-infra", stack="unit", preview=False)
    pulumi.runtime.set_all_config(config or {}, secret_keys or [])
    # The root resource outlives set_mocks: replace (not add to) its transformations, so an earlier
    # run's recorder does not also record this run's resources.
    root = get_root_resource()
    assert root is not None
    root._transformations = [recorder.transformation]
    body()
    _wait_for_registrations()
    return recorder


def _wait_for_registrations() -> None:
    """Let the SDK finish registering outputs and resources (what the real runtime does at exit)."""
    _sync_await(wait_for_rpcs())


def resolve(output: pulumi.Output[Any]) -> Any:
    """The value of an Output under mocks."""
    return _sync_await(output.future())


def is_secret(output: pulumi.Output[Any]) -> bool:
    return bool(_sync_await(output.is_secret()))


EXAMPLE_SETTINGS = StackSettings(api_key_present=True, registry_pull_token_present=True)
"""A production stack's defaults (every release on), with an API key and a registry pull token."""


def placeholder_secrets() -> program.StackSecrets:
    """Every secret the services can need, as placeholder secret Outputs (what a real stack reads from config)."""
    keys = {key for needed in PLATFORM_SECRETS.values() for key in needed}
    return program.StackSecrets(
        platform={key: pulumi.Output.secret(f"{key}-not-real") for key in sorted(keys)},
        registry_pull_token=pulumi.Output.secret("pull-token-not-real"),
    )


def run_example(
    roster: Path,
    slice_id: str = ALL_SLICES,
    *,
    settings: StackSettings | None = None,
    recorder: Recorder | None = None,
) -> Recorder:
    """The program's declarations for ``roster`` (one slice; default: everything) under mocks, with a
    placeholder secret API key for every client and placeholders for the services' secrets."""
    settings = settings or EXAMPLE_SETTINGS
    parsed = load_roster(roster, settings)

    def body() -> None:
        provider = k8s.Provider("kubernetes")
        keys = {c.id: pulumi.Output.secret("test-key-not-real") for c in parsed.clients}
        program.build(build_plan(parsed, settings), slice_id, keys, provider, placeholder_secrets())

    return run_program(body, recorder=recorder)
