"""A client's monitoring: the alert rules of its namespace (:mod:`sandbox_infra.observability` writes them).

Its sandboxes' CPU, memory and volume use need nothing per client: the kubelet metrics that
kube-prometheus-stack scrapes cover every pod, and the dashboards (platform stack) select by client.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from sandbox_infra import naming
from sandbox_infra.plan import TenantPlan
from sandbox_infra.services import declare_object


@dataclass(frozen=True)
class ClientMonitoringArgs:
    """Inputs of :class:`ClientMonitoring`."""

    plan: TenantPlan
    """The client's namespace and its PrometheusRule."""
    depends_on: list[pulumi.Resource]
    """Its ClientTenant (the namespace) and, in the single-stack layout, the platform (the CRDs)."""


class ClientMonitoring(pulumi.ComponentResource):
    """Alert rules for one client: quota above 90 %, a sandbox not ready, a volume filling, restarts."""

    def __init__(self, name: str, args: ClientMonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("sandbox-infra:monitoring:ClientMonitoring", name, None, opts)
        plan = args.plan
        labels = naming.labels(
            name="client-monitoring", instance=plan.namespace, component="monitoring", client=plan.client_id
        )
        child = pulumi.ResourceOptions(parent=self, depends_on=args.depends_on)
        assert plan.alerts is not None, "build_plan plans every tenant's alerts"
        for obj in plan.alerts.objects():
            declare_object(name, obj, labels, child)
        self.register_outputs({})
