"""Tracer-specific uptake per lesion and its heterogeneity across lesions (contract §9.6, §9.3 "PET tracer").

The uptake values of a PET timepoint (SUVmax, SUL peak) are values of that timepoint's tracer: for an immuno-PET
tracer such as 89Zr-atezolizumab (PD-L1; Bensch F et al., Nat Med 2018;24:1852-1858) or 89Zr-Df-IAB22M2C (CD8;
Farwell MD et al., J Nucl Med 2022;63:720-726) they are facts of the lesion at that timepoint, never read by an
FDG criterion (``rules.criteria.pet.assess_fdg_criterion``).

Heterogeneity across lesions is reported per tracer and timepoint: the number of lesions with a value, the minimum,
median and maximum, the max/min ratio and the coefficient of variation (population standard deviation / mean) of
SUVmax (of the SUL peak when no lesion has an SUVmax). It is **informational only**: no validated cut-off exists
for any of these quantities. Bensch et al. (2018) observed marked heterogeneity of 89Zr-atezolizumab uptake
between patients and between the lesions of one patient (and within lesions), and that pre-treatment uptake was
associated with response — but they proposed no threshold, so no rule reads these facts.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from rules.pet_tracers import PetTracer, reference_of
from rules.timeline import Timeline, Timepoint


@dataclass(frozen=True)
class LesionUptake:
    lesion: str
    suv_max: Decimal | None
    sul_peak: Decimal | None


@dataclass(frozen=True)
class TracerUptake:
    """The uptake of one tracer's lesions at one PET timepoint, and its spread across lesions."""

    scan_date: dt.date
    tracer: str
    """``rules.pet_tracers`` key (``zr89-atezolizumab``…, ``other``)."""
    tracer_name: str
    tracer_code: str | None
    tracer_scheme: str | None
    """The coded tracer as stated (DICOM scheme designator: SCT, DCM…), ``None`` when stated by text only."""
    assumed: bool
    source: str
    """The tracer's primary source where it is recognised by name ('' for the DICOM-coded tracers)."""
    lesions: tuple[LesionUptake, ...]
    metric: str
    """``SUVmax`` or ``SULpeak``: the value the heterogeneity is computed on."""
    count: int
    minimum: Decimal
    median: Decimal
    maximum: Decimal
    max_min_ratio: Decimal | None
    """``None`` when the minimum is 0 (the ratio is undefined)."""
    cv_percent: Decimal | None
    """Population coefficient of variation in %; ``None`` for a single lesion."""


def _round(value: Decimal, places: int = 2) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places))


def heterogeneity(scan_date: dt.date, tracer: PetTracer, lesions: Iterable[LesionUptake]) -> TracerUptake | None:
    """The uptake facts of one tracer at one timepoint; ``None`` when no lesion has a value."""
    rows = tuple(lesions)
    metric = "SUVmax" if any(r.suv_max is not None for r in rows) else "SULpeak"
    values = sorted(v for r in rows if (v := r.suv_max if metric == "SUVmax" else r.sul_peak) is not None)
    if not values:
        return None
    low, high = values[0], values[-1]
    mean = statistics.fmean(float(v) for v in values)
    cv = (
        _round(Decimal(str(statistics.pstdev(float(v) for v in values) / mean * 100)), 1)
        if len(values) > 1 and mean > 0
        else None
    )
    return TracerUptake(
        scan_date=scan_date,
        tracer=tracer.key,
        tracer_name=tracer.name,
        tracer_code=tracer.code,
        tracer_scheme=tracer.scheme,
        assumed=tracer.assumed,
        source=reference_of(tracer.key),
        lesions=rows,
        metric=metric,
        count=len(values),
        minimum=low,
        median=_round(Decimal(str(statistics.median(values)))),
        maximum=high,
        max_min_ratio=_round(high / low) if low > 0 else None,
        cv_percent=cv,
    )


def uptake_at(tp: Timepoint, tracer: PetTracer, names: dict[str, str]) -> tuple[TracerUptake, ...]:
    """The lesions' uptake at one timepoint grouped by tracer (one group: a timepoint has one tracer, §9.3)."""
    rows = tuple(
        LesionUptake(names.get(lesion_id, lesion_id), m.suv_max, m.sul_peak)
        for lesion_id, m in sorted(tp.measurements.items(), key=lambda item: names.get(item[0], item[0]))
        if m.suv_max is not None or m.sul_peak is not None
    )
    found = heterogeneity(tp.scan_date, tracer, rows)
    return (found,) if found is not None else ()


def non_fdg_uptake(timeline: Timeline, names: dict[str, str]) -> tuple[TracerUptake, ...]:
    """Tracer-specific uptake at every timepoint whose tracer is stated and is not 18F-FDG (FDG uptake is read by
    the FDG criteria and shown with them)."""
    points = [*([timeline.baseline] if timeline.baseline else []), *timeline.followups]
    return tuple(
        found
        for tp in points
        if (tracer := tp.scan.pet_tracer) is not None and not tracer.is_fdg
        for found in uptake_at(tp, tracer, names)
    )
