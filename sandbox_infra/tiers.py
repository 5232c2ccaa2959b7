"""Resource tiers: what one sandbox may use, and how that budget is split between its containers.

The numbers are the seed design's per-tier quotas (section 4). A sandbox pod must fit its tier budget
*as a whole*, so the budget is divided between the containers instead of being given to gemini-cli
alone (the seed's pod sketch gives gemini-cli the whole budget and code-server nothing, which a quota
that requires limits would reject).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from sandbox_infra.quantity import format_bytes, format_cpu, parse_quantity

if TYPE_CHECKING:  # only for a type: this module stays free of Pulumi (the policy pack imports it)
    import pulumi_kubernetes as k8s

GPU_RESOURCE = "nvidia.com/gpu"


class Tier(StrEnum):
    """A sandbox's resource tier, as written in the roster."""

    BASIC = "basic"
    STANDARD = "standard"
    PREMIUM = "premium"
    CUSTOM = "custom"


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one container or one pod; CPU in cores, memory in bytes."""

    requests_cpu: Decimal
    requests_memory: Decimal
    limits_cpu: Decimal
    limits_memory: Decimal
    gpu: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.requests_cpu + other.requests_cpu,
            self.requests_memory + other.requests_memory,
            self.limits_cpu + other.limits_cpu,
            self.limits_memory + other.limits_memory,
            self.gpu + other.gpu,
        )

    def largest(self, other: Resources) -> Resources:
        """The larger of two budgets, resource by resource."""
        return Resources(
            max(self.requests_cpu, other.requests_cpu),
            max(self.requests_memory, other.requests_memory),
            max(self.limits_cpu, other.limits_cpu),
            max(self.limits_memory, other.limits_memory),
            max(self.gpu, other.gpu),
        )

    def scaled(self, fraction: Decimal) -> Resources:
        """A share of this budget, rounded down to whole millicores and mebibytes (never over budget)."""
        mib = Decimal(2) ** 20

        def cpu(value: Decimal) -> Decimal:
            return (value * fraction * 1000).to_integral_value(rounding="ROUND_FLOOR") / 1000

        def mem(value: Decimal) -> Decimal:
            return (value * fraction / mib).to_integral_value(rounding="ROUND_FLOOR") * mib

        return Resources(
            cpu(self.requests_cpu), mem(self.requests_memory), cpu(self.limits_cpu), mem(self.limits_memory)
        )

    def minus(self, other: Resources) -> Resources:
        """What is left of this budget after ``other`` (GPUs stay with this budget)."""
        return Resources(
            self.requests_cpu - other.requests_cpu,
            self.requests_memory - other.requests_memory,
            self.limits_cpu - other.limits_cpu,
            self.limits_memory - other.limits_memory,
            self.gpu,
        )

    def to_k8s(self) -> k8s.core.v1.ResourceRequirementsArgsDict:
        """The ``resources`` block of a container spec."""
        requests = {"cpu": format_cpu(self.requests_cpu), "memory": format_bytes(self.requests_memory)}
        limits = {"cpu": format_cpu(self.limits_cpu), "memory": format_bytes(self.limits_memory)}
        if self.gpu:
            # Extended resources cannot be overcommitted: request and limit must be equal.
            requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(self.gpu)
        return {"requests": requests, "limits": limits}


ZERO = Resources(Decimal(0), Decimal(0), Decimal(0), Decimal(0))


@dataclass(frozen=True)
class TierSpec:
    """A tier's pod budget, its PersistentVolumeClaim allowance and whether it may have a GPU."""

    budget: Resources | None  # None for custom: the roster entry gives the numbers
    pvcs: int
    gpu_allowed: bool


def _budget(req_cpu: str, req_mem: str, lim_cpu: str, lim_mem: str) -> Resources:
    return Resources(parse_quantity(req_cpu), parse_quantity(req_mem), parse_quantity(lim_cpu), parse_quantity(lim_mem))


TIERS: dict[Tier, TierSpec] = {
    Tier.BASIC: TierSpec(_budget("1", "2Gi", "2", "4Gi"), pvcs=2, gpu_allowed=False),
    Tier.STANDARD: TierSpec(_budget("2", "4Gi", "4", "8Gi"), pvcs=3, gpu_allowed=False),
    Tier.PREMIUM: TierSpec(_budget("4", "8Gi", "8", "16Gi"), pvcs=5, gpu_allowed=True),
    Tier.CUSTOM: TierSpec(None, pvcs=2, gpu_allowed=True),
}

# code-server gets a quarter of the pod budget, gemini-cli the rest (and any GPU).
CODE_SERVER_SHARE = Decimal("0.25")
# The init container only creates directories; it runs before the others, so the pod's effective
# request is max(init, sum of containers) and this never adds to the budget.
INIT_CONTAINER = _budget("50m", "64Mi", "100m", "128Mi")


@dataclass(frozen=True)
class ContainerResources:
    """The budget of one sandbox pod, divided between its containers."""

    gemini_cli: Resources
    code_server: Resources
    init: Resources

    @functools.cached_property
    def pod(self) -> Resources:
        """What the scheduler and the namespace quota count for this pod."""
        return self.gemini_cli + self.code_server


@functools.lru_cache(maxsize=1024)
def split_budget(budget: Resources) -> ContainerResources:
    """Divide a pod budget between gemini-cli and code-server so that their sum is exactly the budget.
    Remembered: the sandboxes of a tier share a budget, and so one (immutable) result."""
    code_server = budget.scaled(CODE_SERVER_SHARE)
    return ContainerResources(gemini_cli=budget.minus(code_server), code_server=code_server, init=INIT_CONTAINER)
