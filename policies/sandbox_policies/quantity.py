"""Kubernetes resource quantities (``500m``, ``4Gi``, ``1.5``), parsed exactly as the API server does.

Quotas are compared with sums of container resources, so arithmetic is exact: :class:`~decimal.Decimal`
base units (cores, bytes), never floats. (The program has the same parser; the pack cannot import it.)
"""

from __future__ import annotations

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


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity."""


def parse_quantity(value: object) -> Decimal:
    """``"4Gi"`` -> ``Decimal(4294967296)``; numbers are accepted as the API server accepts them."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise QuantityError(f"expected a Kubernetes quantity such as '4Gi' or '500m', got {value!r}")
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(f"'{text}' is not a Kubernetes quantity (examples: '500m', '2', '4Gi')")
    number, exponent, suffix = match.groups()
    if exponent is not None and suffix:
        raise QuantityError(f"'{text}' is not a Kubernetes quantity (an exponent cannot have a suffix)")
    try:
        base = Decimal(number) * (Decimal(10) ** int(exponent or 0))
    except InvalidOperation as exc:  # pragma: no cover - the regex already rules this out
        raise QuantityError(f"'{text}' is not a Kubernetes quantity") from exc
    return base * _SUFFIXES[suffix or ""]


def format_quantity(value: Decimal, *, cpu: bool = False) -> str:
    """A readable quantity for messages: cores (or millicores) for CPU, the largest exact binary unit otherwise."""
    if cpu:
        millis = (value * 1000).to_integral_value()
        return str(int(millis // 1000)) if millis % 1000 == 0 else f"{int(millis)}m"
    whole = value.to_integral_value()
    if whole != value:
        return str(value.normalize())
    number = int(whole)
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIXES[suffix])
        if number and number % unit == 0:
            return f"{number // unit}{suffix}"
    return str(number)
