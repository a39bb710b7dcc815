"""Volumetric response and volume growth kinetics from segmented lesion volumes (contract §9.6), beside RECIST 1.1.

- **Timepoints**: the scan dates with lesion volumes (``PatientFacts.volumes``). Baseline = the last of them on or
  before the treatment start (the first of them when no start is known), as RECIST's baseline [D]; the lesions
  segmented at baseline are followed; each later date is a follow-up.
- **Category** (rules/rulesets/volumetric.yaml, table ``volumetric_response``): total volume of the baseline
  lesions against the baseline (PR: ≤ 0.343 ×) and the nadir (PD: ≥ 1.728 ×) — RECIST 1.1's −30 % / +20 % of
  diameter cubed for a sphere; CR when every baseline lesion's volume is 0; NE when one has no volume. A new lesion
  is not judged here (RECIST 1.1 and the immune criteria beside it do that from the reads). Provisional.
- **Kinetics**: tumour growth rate on volumes with the Ferté arithmetic of ``rules.kinetics.growth`` — with measured
  volumes TG = ln(V1/V0)/Δt, which is ``tumour_growth_rate`` applied to cube roots (its 3·ln(D1/D0) estimates
  exactly that volume ratio from diameters); reference period = the scan before baseline → baseline, experimental
  = baseline → the follow-up; and their ratio (``growth_ratio``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rules.engine import Engine
from rules.facts import LesionVolume
from rules.kinetics.growth import KineticsUndefined, growth_ratio, tumour_growth_rate
from rules.results import BestResponse, BiomarkerResult, CriterionAssessment, TimepointResponse

CRITERION = "volumetric-RECIST-equivalent"


def _cube_root(volume: Decimal) -> float:
    return math.pow(float(volume), 1 / 3)  # math.pow: a float, where float ** float is typed Any


def volume_tgr(v0: Decimal, v1: Decimal, d0: dt.date, d1: dt.date) -> float | None:
    """TGR (% per month) from two measured total volumes; ``None`` when undefined (V0 = 0, Δt ≤ 0)."""
    try:
        return tumour_growth_rate(_cube_root(v0), _cube_root(v1), d0, d1)
    except KineticsUndefined:
        return None


def assess_volumes(
    engine: Engine, volumes: tuple[LesionVolume, ...], treatment_start: dt.date | None
) -> CriterionAssessment | None:
    """The volumetric criterion over the patient's volume timepoints; ``None`` without a follow-up."""
    volumes = tuple(v for v in volumes if v.modality != "PT")  # PET volumes are metabolic: pet_growth
    if not volumes:
        return None
    by_date: dict[dt.date, dict[str, Decimal]] = defaultdict(dict)
    for v in volumes:
        by_date[v.scan_date][v.lesion_id] = v.volume_cm3
    dates = sorted(by_date)
    eligible = [d for d in dates if treatment_start is None or d <= treatment_start]
    if not eligible:
        return None
    baseline = eligible[-1]
    followups = [d for d in dates if d > baseline]
    if not followups:
        return None
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values()
    lesions = sorted(by_date[baseline])
    baseline_total = sum(by_date[baseline].values(), Decimal(0))
    earlier = [d for d in dates if d < baseline and all(k in by_date[d] for k in lesions)]
    reference_tgr = (
        volume_tgr(sum((by_date[earlier[-1]][k] for k in lesions), Decimal(0)), baseline_total, earlier[-1], baseline)
        if earlier
        else None
    )
    nadir = baseline_total
    timepoints: list[TimepointResponse] = []
    for day in followups:
        measured = all(k in by_date[day] for k in lesions)
        total = sum((by_date[day][k] for k in lesions if k in by_date[day]), Decimal(0))
        case = {
            "all_lesions_measured": measured,
            "all_absent": measured and total == 0,
            "meets_progression": ruleset.holds("meets_progression", flags, measured=measured, total=total, nadir=nadir),
            "meets_partial_response": ruleset.holds(
                "meets_partial_response", flags, measured=measured, total=total, baseline=baseline_total
            ),
        }
        decision = engine.decide(CRITERION, "volumetric_response", case)
        experimental = volume_tgr(baseline_total, total, baseline, day) if measured else None
        extra: dict[str, Any] = {}
        if experimental is not None:
            extra["tgr_volume_experimental"] = round(experimental, 2)
        if reference_tgr is not None:
            extra["tgr_volume_reference"] = round(reference_tgr, 2)
        ratio = growth_ratio(experimental, reference_tgr)
        if ratio is not None:
            extra["tgr_volume_ratio"] = round(ratio, 2)
        timepoints.append(
            TimepointResponse(
                criterion=CRITERION,
                scan_date=day,
                category=str(decision.outputs["category"]),
                sum_mm=total if measured else None,
                sum_unit="cm3",
                baseline_sum=baseline_total,
                nadir_sum=nadir,
                percent_from_baseline=(Fraction(total - baseline_total) / Fraction(baseline_total) * 100)
                if measured and baseline_total
                else None,
                percent_from_nadir=(Fraction(total - nadir) / Fraction(nadir) * 100) if measured and nadir else None,
                trace=(
                    decision.trace(),
                    f"total volume of the {len(lesions)} lesion(s) segmented at baseline {baseline}: "
                    f"{total} cm3 (baseline {baseline_total} cm3, nadir {nadir} cm3)",
                    "provisional: RECIST 1.1 thresholds converted to volume; not validated for immunotherapy",
                ),
                extra=extra,
            )
        )
        if measured:
            nadir = min(nadir, total)
    best = _best(timepoints)
    return CriterionAssessment.of(
        ruleset, ruleset.flag_values(), tuple(timepoints), best_response=best, provisional=True
    )


RANK: Mapping[str, int] = {"CR": 0, "PR": 1, "SD": 2, "PD": 3, "NE": 4}


def _best(timepoints: list[TimepointResponse]) -> BestResponse | None:
    rated = [tp for tp in timepoints if tp.category != "NE"]
    if not rated:
        return None
    best = min(rated, key=lambda tp: (RANK[tp.category], tp.scan_date))
    return BestResponse(best.category, best.scan_date, False, "best volumetric category (no confirmation applied)")


def pet_growth(volumes: tuple[LesionVolume, ...], treatment_start: dt.date | None) -> tuple[BiomarkerResult, ...]:
    """MTV and TLG growth before and on treatment (PET lesion segments), beside the CT kinetics: the volume TGR
    arithmetic above on total MTV and total TLG of the lesions present at the baseline PET (the last PET on or
    before the treatment start); reference = the PET before it → baseline, experimental = baseline → the latest PET
    after it. Informational (no threshold for MTV/TLG growth on immunotherapy is verified)."""
    pet = [v for v in volumes if v.modality == "PT"]
    by_date: dict[dt.date, dict[str, LesionVolume]] = defaultdict(dict)
    for v in pet:
        by_date[v.scan_date][v.lesion_id] = v
    dates = sorted(by_date)
    eligible = [d for d in dates if treatment_start is None or d <= treatment_start]
    if not eligible:
        return ()
    baseline = eligible[-1]
    lesions = sorted(by_date[baseline])
    before = [d for d in dates if d < baseline and all(k in by_date[d] for k in lesions)]
    after = [d for d in dates if d > baseline and all(k in by_date[d] for k in lesions)]
    results = []
    for code, name, unit, attribute in (
        ("mtv", "metabolic tumour volume", "cm3", "volume_cm3"),
        ("tlg", "total lesion glycolysis", "g", "tlg"),
    ):

        def total(day: dt.date, attribute: str = attribute) -> Decimal | None:
            values: list[Decimal | None] = [getattr(by_date[day][k], attribute) for k in lesions]
            present = [x for x in values if x is not None]
            return None if len(present) < len(values) else sum(present, Decimal(0))

        base = total(baseline)
        for period, start, end in (
            ("reference", before[-1] if before else None, baseline),
            ("experimental", baseline, after[-1] if after else None),
        ):
            if start is None or end is None or base is None:
                continue
            v0, v1 = total(start), total(end)
            rate = volume_tgr(v0, v1, start, end) if v0 is not None and v1 is not None else None
            if rate is None:
                continue
            results.append(
                BiomarkerResult(
                    code=f"{code}-growth-{period}",
                    name=f"Growth rate of the {name} ({period} period)",
                    value=round(rate, 2),
                    unit="%/month",
                    interpretation=None,
                    method=f"100·(exp(ln({code.upper()}1/{code.upper()}0)/Δt) − 1), Δt in months of 30.4375 days "
                    f"(rules.kinetics TGR arithmetic on measured {unit}); {start} → {end}; informational",
                    source="clinical/criteria-kinetics-irae.md §2.1 (TGR arithmetic), §6.2 (MTV) [D]",
                    inputs={"from": f"{v0} {unit} on {start}", "to": f"{v1} {unit} on {end}"},
                    scan_date=end,
                )
            )
    return tuple(results)
