"""The plausibility gate: values no real scan or patient can have never become a result (contract §9.2).

One place for both interfaces. The FHIR mapping refuses the request (422 naming the element), the DICOM
listener rejects the measurement group (or the instance, when nothing usable remains); either way the value
is never stored as a measurement, so a lesion whose value was refused is *not assessed* at that timepoint
(RECIST 1.1 §4.3: a target lesion that is not assessed makes the timepoint NE unless PD is shown otherwise).

Refused (docs/contract.md §9.2):

- a length below 0 mm or above ``max_lesion_mm`` (IMMUNORAD_MAX_LESION_MM, default 500); 0 mm is valid (a
  lesion that disappeared, contract §3);
- an SUV-type value (SUVbw, SUL, a reference region's mean or SD) below 0 or above ``max_suv``
  (IMMUNORAD_MAX_SUV, default 100);
- a negative volume or volume product (metabolic volume, total lesion glycolysis);
- a number that is not a finite number (NaN, ±Infinity, text);
- a scan date before 1990-01-01 or after tomorrow;
- a birth date after today or after a scan of the patient.

"Today" is a parameter (the caller's clock; the service uses the UTC date), so that the date limits are
exact and testable. "Tomorrow" leaves one day for a scanner whose clock or time zone is ahead of ours.

The checks return the reason (a sentence without the value's owner: no PHI) or ``None`` when plausible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

EARLIEST_SCAN_DATE = dt.date(1990, 1, 1)
"""Contract §9.2: a scan dated before this is refused (cross-sectional imaging with stored DICOM/FHIR dates
from earlier years does not reach this service; such a date is a default or a typing error)."""


@dataclass(frozen=True)
class PlausibilityLimits:
    """The configurable limits (service/ops/config.py reads them from the environment)."""

    max_lesion_mm: Decimal = Decimal(500)
    """IMMUNORAD_MAX_LESION_MM: the longest plausible lesion diameter, inclusive."""
    max_suv: Decimal = Decimal(100)
    """IMMUNORAD_MAX_SUV: the highest plausible SUV/SUL, inclusive."""
    earliest_scan_date: dt.date = EARLIEST_SCAN_DATE


DEFAULT_LIMITS = PlausibilityLimits()


def as_number(value: object) -> Decimal | None:
    """``value`` as a finite Decimal, or ``None`` when it is not one (NaN, ±Infinity, text, a boolean)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def length_problem(value_mm: Decimal | None, what: str, limits: PlausibilityLimits = DEFAULT_LIMITS) -> str | None:
    """A length in mm: 0 ≤ value ≤ max_lesion_mm (both inclusive)."""
    if value_mm is None:
        return None
    if not value_mm.is_finite():
        return f"{what} is not a finite number"
    if value_mm < 0:
        return f"{what} is negative (implausible length)"
    if value_mm > limits.max_lesion_mm:
        return f"{what} is above {limits.max_lesion_mm} mm (implausible length, IMMUNORAD_MAX_LESION_MM)"
    return None


def suv_problem(value: Decimal | None, what: str, limits: PlausibilityLimits = DEFAULT_LIMITS) -> str | None:
    """An SUV-type value (g/ml): 0 ≤ value ≤ max_suv (both inclusive)."""
    if value is None:
        return None
    if not value.is_finite():
        return f"{what} is not a finite number"
    if value < 0:
        return f"{what} is negative (implausible SUV)"
    if value > limits.max_suv:
        return f"{what} is above {limits.max_suv} (implausible SUV, IMMUNORAD_MAX_SUV)"
    return None


def volume_problem(value: Decimal | None, what: str) -> str | None:
    """A volume or a volume product (metabolic volume, TLG): not negative."""
    if value is None:
        return None
    if not value.is_finite():
        return f"{what} is not a finite number"
    if value < 0:
        return f"{what} is negative (implausible volume)"
    return None


def scan_date_problem(
    scan_date: dt.date | None, today: dt.date, limits: PlausibilityLimits = DEFAULT_LIMITS, what: str = "scan date"
) -> str | None:
    """limits.earliest_scan_date ≤ scan date ≤ today + 1 day (both inclusive)."""
    if scan_date is None:
        return None
    if scan_date < limits.earliest_scan_date:
        return f"{what} is before {limits.earliest_scan_date.isoformat()} (implausible)"
    if scan_date > today + dt.timedelta(days=1):
        return f"{what} is after tomorrow (implausible)"
    return None


def birth_date_problem(
    birth_date: dt.date | None, today: dt.date, scan_dates: Iterable[dt.date | None] = ()
) -> str | None:
    """A birth date on or before today and on or before every scan of the patient (a scan on the day of
    birth is possible)."""
    if birth_date is None:
        return None
    if birth_date > today:
        return "birth date is in the future (implausible)"
    if any(scan is not None and birth_date > scan for scan in scan_dates):
        return "birth date is after a scan of the patient (implausible)"
    return None
