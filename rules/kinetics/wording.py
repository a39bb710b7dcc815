"""How kinetics numbers read in notes and reasons: two decimals, millimetres without trailing zeros."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction


def fmt(value: float | Fraction | Decimal | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{float(value):.2f}{(' ' + unit) if unit else ''}"


def mm(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{format(value.normalize(), 'f')} mm"


__all__ = ["fmt", "mm"]
