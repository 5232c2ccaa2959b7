"""Runs the Pulumi program under Pulumi's mocks and records what it registered (with resource options)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await


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
        self.wire[args.typ, args.name] = copy.deepcopy(dict(args.inputs))
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
