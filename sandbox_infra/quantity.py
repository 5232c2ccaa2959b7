"""Kubernetes resource quantities (``500m``, ``4Gi``, ``1.5``), parsed exactly and formatted canonically.

Quotas are sums of tier budgets, so arithmetic must be exact: quantities are held as
:class:`~decimal.Decimal` base units (cores, bytes), never floats.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(
    r"^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)(?:[eE]([+-]?[0-9]+))?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$"
)


# The API server's range: "no quantity may represent a number greater than 2^63-1 in magnitude".
_MAX_MAGNITUDE = Decimal(2**63 - 1)
# Exponents beyond this overflow decimal arithmetic long before any quantity could be in range.
_MAX_EXPONENT = 100


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity."""


def parse_quantity(value: object) -> Decimal:
    """Parse a quantity as the API server does; ``"4Gi"`` -> ``Decimal(4294967296)``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise QuantityError(f"expected a Kubernetes quantity such as '4Gi' or '500m', got {value!r}")
    return _parse(value)


@functools.lru_cache(maxsize=4096, typed=True)
def _parse(value: str | int | float) -> Decimal:
    """:func:`parse_quantity` of a value of the right type; remembered, since a roster of thousands of
    sandboxes repeats a handful of sizes (an error is raised again each time, not remembered)."""
    text = str(value).strip()
    shown = repr(text) if len(text) <= 40 else f"{text[:40]!r}..."
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(f"{shown} is not a Kubernetes quantity (examples: '500m', '2', '4Gi')")
    number, exponent, suffix = match.groups()
    if exponent is not None and suffix:
        raise QuantityError(f"{shown} is not a Kubernetes quantity (an exponent cannot have a suffix)")
    if exponent is not None and (len(exponent.lstrip("+-").lstrip("0")) > 3 or abs(int(exponent)) > _MAX_EXPONENT):
        raise QuantityError(f"{shown} is not a Kubernetes quantity (exponent out of range)")
    try:
        base = Decimal(number) * (Decimal(10) ** int(exponent or 0))
    except InvalidOperation as exc:  # pragma: no cover - the regex already rules this out
        raise QuantityError(f"{shown} is not a Kubernetes quantity") from exc
    quantity = base * _SUFFIXES[suffix or ""]
    if abs(quantity) > _MAX_MAGNITUDE:
        raise QuantityError(f"{shown} is out of range for a Kubernetes quantity (at most 2^63-1)")
    return quantity


def format_cpu(cores: Decimal) -> str:
    """Cores as the API server prints them: whole cores plainly, otherwise millicores."""
    millis = (cores * 1000).to_integral_value()
    return str(int(millis // 1000)) if millis % 1000 == 0 else f"{int(millis)}m"


def format_bytes(size: Decimal) -> str:
    """Bytes in the largest binary unit that divides them exactly (``Gi``, ``Mi``, ``Ki``)."""
    whole = int(size.to_integral_value())
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIXES[suffix])
        if whole % unit == 0 and whole >= unit:
            return f"{whole // unit}{suffix}"
    return str(whole)
