"""Growth arithmetic: tumour growth rate (Ferté), tumour growth kinetics (Saâda-Bouzid), progression pace (Kato)
and growth ratios (spec §2.1, §2.3, §3.2.3; pure functions in float64)."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

FERTE_MONTH_DAYS = 365.25 / 12
"""Days per month in the reference TGR code (``difftime × 12/365.25``) [V:FERTE-code]; the rule file's
``MONTH_DAYS`` flag has the same default and is what ``assess_kinetics`` uses."""


class KineticsUndefined(ValueError):
    """A growth rate that is not defined (D0 = 0, or a non-positive interval): spec §2.6 rule 3."""


def months_between(d0: dt.date, d1: dt.date, month_days: float = FERTE_MONTH_DAYS) -> float:
    """Interval in months as the reference TGR code computes it: days × 12/365.25 (spec §0)."""
    return (d1 - d0).days / month_days


def tumour_growth_rate(
    s0: Decimal | float, s1: Decimal | float, d0: dt.date, d1: dt.date, *, month_days: float = FERTE_MONTH_DAYS
) -> float:
    """TGR in % volume per month (Ferté): TG = 3·ln(S1/S0)/Δt, TGR = 100·(exp(TG) − 1), in float64.

    Raises ``KineticsUndefined`` when S0 ≤ 0 or Δt ≤ 0. Returns the floor −100.0 when S1 = 0 (complete
    disappearance: ln → −∞); the caller flags it (spec §2.6 rule 3: never add offsets).
    """
    months = months_between(d0, d1, month_days)
    if months <= 0:
        raise KineticsUndefined(f"interval {d0} → {d1} is not positive")
    if s0 <= 0:
        raise KineticsUndefined("D0 = 0: ln(D1/D0) is undefined")
    if s1 <= 0:
        return -100.0
    growth_constant = 3 * math.log(float(s1) / float(s0)) / months
    try:
        return 100 * (math.exp(growth_constant) - 1)
    except OverflowError:
        raise KineticsUndefined(f"TG = {growth_constant:.1f}/month overflows (interval too short)") from None


def tumour_growth_kinetics(
    s0: Decimal | float, s1: Decimal | float, d0: dt.date, d1: dt.date, *, month_days: float = FERTE_MONTH_DAYS
) -> float:
    """TGK (Saâda-Bouzid) in mm/month: (S1 − S0)/Δt, no volume assumption (spec §2.3)."""
    months = months_between(d0, d1, month_days)
    if months <= 0:
        raise KineticsUndefined(f"interval {d0} → {d1} is not positive")
    return float(Decimal(str(s1)) - Decimal(str(s0))) / months


def progression_pace(
    s0: Decimal | float, s1: Decimal | float, d0: dt.date, d1: dt.date, *, month_days: float = FERTE_MONTH_DAYS
) -> float:
    """Kato pace in % per month: (S1 − S0)/S0 × 100 / Δt (operationalisation [D], spec §3.2.3)."""
    months = months_between(d0, d1, month_days)
    if months <= 0:
        raise KineticsUndefined(f"interval {d0} → {d1} is not positive")
    if s0 <= 0:
        raise KineticsUndefined("S0 = 0: percent change undefined")
    return float((Decimal(str(s1)) - Decimal(str(s0))) / Decimal(str(s0)) * 100) / months


def growth_ratio(experimental: float | None, reference: float | None) -> float | None:
    """experimental / reference, or ``None`` when the reference rate is ≤ 0 (spec §3.2.1 UNDEFINED_RATIO)."""
    if experimental is None or reference is None or reference <= 0:
        return None
    return experimental / reference


__all__ = [
    "FERTE_MONTH_DAYS",
    "KineticsUndefined",
    "growth_ratio",
    "months_between",
    "progression_pace",
    "tumour_growth_kinetics",
    "tumour_growth_rate",
]
