"""Kubernetes resource quantities for the policies: the program's exact parser, plus readable formatting.

The pack runs with the repository root on ``sys.path`` (``policies/serve`` sets it), so it uses the very
parser the program sizes quotas with: the two can never disagree about what ``1.5Gi`` means.
"""

from __future__ import annotations

from decimal import Decimal

from sandbox_infra.quantity import QuantityError, format_bytes, format_cpu, parse_quantity

__all__ = ["QuantityError", "format_quantity", "parse_quantity"]


def format_quantity(value: Decimal, *, cpu: bool = False) -> str:
    """A readable quantity for messages: cores (or millicores) for CPU, the largest exact binary unit otherwise."""
    if cpu:
        return format_cpu(value)
    if value.to_integral_value() != value:
        return str(value.normalize())
    return format_bytes(value)
