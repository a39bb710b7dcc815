"""EORTC 1999 PET recommendations (Young 1999): size spec §7.2, worked examples P1, E5 and E7 (PET add-ons).

- EORTC follows the **same tumour region defined at baseline**, not the hottest lesion of each scan: the region is
  the baseline's hottest lesion, followed by its identity (P1: lesion A; E7: T2) [D: the spec's examples].
- The uptake measure is SULpeak (EORTC does not define the SUV variant; the examples use SULpeak) [D].
- PMD: uptake > +25 % in the region, a visible increase in extent (> 20 % in the region lesion's longest dimension),
  or new uptake in metastatic lesions. PMR: ≥ 15 % decrease after one cycle, > 25 % after more than one cycle; the
  15–25 % gap after more than one cycle by ``eortc.gap_policy`` (default SMD). CMR: uptake resolved everywhere.
- "After one cycle": a scan at most ``eortc.one_cycle_max_days`` (21) after C1D1 [D: no cycle dates in the facts].
- Liver reproducibility (±25 %, reviews [S]) before comparing, by ``eortc.liver_qc``: P1 FU3 (+30 %) is NE.
- Every scan is graded on its own against the baseline (E7 TP2 is PMR after PMD at TP1).

Categories come from ``rules/rulesets/eortc.yaml``; measurement helpers from ``rules/criteria/pet.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rules.criteria import percist, pet
from rules.criteria.recist_family import best_overall_response
from rules.engine import Engine
from rules.facts import LesionStatus
from rules.results import CriterionAssessment, TimepointResponse, percent_change
from rules.timeline import Timeline, Timepoint

CRITERION = "EORTC-PET"


def region_uptake(tp: Timepoint, region: pet.Uptake) -> tuple[Decimal | None, str]:
    """SULpeak of the baseline region's lesion at ``tp``: absent → 0; not reported or no SULpeak → not measured."""
    m = tp.of(region.lesion.lesion_id)
    if m is None or m.status is LesionStatus.NOT_ASSESSED:
        return None, f"region {region.name} not assessed"
    if m.status is LesionStatus.ABSENT:
        return Decimal(0), f"region {region.name} absent (SULpeak 0)"
    if m.sul_peak is None:
        return None, f"region {region.name}: no SULpeak reported"
    return m.sul_peak, ""


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> CriterionAssessment:
    """EORTC 1999 at every follow-up PET (spec §7.2)."""
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values(overrides)
    if timeline.baseline is None or not pet.has_pet_values(timeline.baseline):
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline PET with SUL values",))
    if flags["gap_policy"] not in ("SMD", "PMR"):
        raise ValueError(f"eortc.gap_policy must be 'SMD' or 'PMR', not {flags['gap_policy']!r}")
    region, ties = pet.hottest(pet.uptakes(timeline.baseline, pet.baseline_lesions(timeline), is_tumour=is_tumour))
    warnings: list[str] = []
    if region is None:
        warnings.append("no SULpeak at the baseline PET: the EORTC tumour region cannot be defined")
    avid = ruleset.threshold("new_lesion_avid_fraction_of_liver_mean")
    below_liver = ruleset.threshold("complete_resolution_fraction_of_liver_mean")
    one_cycle = ruleset.required_threshold("one_cycle_max_days", flags)
    anchor = timeline.anchor_date
    responses: list[TimepointResponse] = []
    progression_date: dt.date | None = None
    for tp in pet.pet_followups(timeline):
        trace: list[str] = []
        if region is not None:
            trace.append(
                f"tumour region defined at baseline: {region.name} SULpeak {pet.fmt_sul(region.sul)}"
                + (f" (hottest, tied with {', '.join(ties)}; chosen by name)" if ties else " (baseline hottest lesion)")
            )
        comparability = pet.scan_comparability(
            timeline.baseline,
            tp,
            rules=ruleset,
            flags=flags,
            liver_condition="liver_comparable" if flags["liver_qc"] else None,
            uptake=None,
            liver_required=False,
            label="EORTC",
        )
        trace += comparability.lines + comparability.failures
        new = pet.new_fdg_avid_lesions(tp, timeline, avid, is_tumour=is_tumour)
        trace += new.not_avid
        if new.avid:
            trace.append("new uptake in metastatic lesion(s): " + pet.describe_uptakes(new.avid))
        days = (tp.scan_date - anchor).days if anchor else None
        cycles = "one" if days is not None and one_cycle.holds(days) else "more"
        trace.append(
            f"day {days} after C1D1 → after {'one cycle' if cycles == 'one' else 'more than one cycle'} "
            f"(one cycle: day {one_cycle.describe()}, eortc.one_cycle_max_days)"
        )

        value, note = region_uptake(tp, region) if region is not None else (None, "no region")
        if note:
            trace.append(note)
        evaluable = region is not None and value is not None and comparability.comparable and region.sul > 0
        meets_pmd = meets_one = meets_more = False
        change = None
        if region is not None and value is not None and region.sul > 0:
            change = percent_change(value, region.sul)
            pmd = ruleset.threshold("pmd_fraction_of_baseline")
            one = ruleset.threshold("pmr_one_cycle_fraction_of_baseline")
            more = ruleset.threshold("pmr_more_cycles_fraction_of_baseline")
            meets_pmd, meets_one, meets_more = (
                pmd.holds(value, region.sul),
                one.holds(value, region.sul),
                more.holds(value, region.sul),
            )
            line = pet.change_line(f"region {region.name} SULpeak", value, region.sul, "baseline")
            line += (
                f" (PMD {pet.relative_rule(pmd)}: {'yes' if meets_pmd else 'no'}; PMR after one cycle "
                f"{pet.relative_rule(one)}: {'yes' if meets_one else 'no'}; after more than one cycle "
                f"{pet.relative_rule(more)}: {'yes' if meets_more else 'no'})"
            )
            trace.append(line + ("" if evaluable else " [not used: NE]"))
        extent = False
        if region is not None:
            before, now = timeline.baseline.of(region.lesion.lesion_id), tp.of(region.lesion.lesion_id)
            if before and now and before.long_axis_mm and now.long_axis_mm is not None:
                threshold = ruleset.threshold("extent_increase_fraction")
                extent = now.status is LesionStatus.PRESENT and threshold.holds(now.long_axis_mm, before.long_axis_mm)
                trace.append(
                    f"region longest dimension {before.long_axis_mm} → {now.long_axis_mm} mm "
                    f"({pet.fmt_pct_signed(percent_change(now.long_axis_mm, before.long_axis_mm))}): "
                    f"{'visible increase in extent' if extent else 'no increase'} ({pet.relative_rule(threshold)})"
                )
        complete, complete_line = pet.complete_resolution(tp, timeline, below_liver, new, is_tumour=is_tumour)
        trace.append(complete_line)
        decision = engine.decide(
            CRITERION,
            "metabolic_response",
            {
                "new_uptake": bool(new.avid),
                "extent_increase": extent,
                "quantitative_evaluable": evaluable,
                "uptake_meets_pmd": meets_pmd,
                "complete_resolution": complete,
                "cycles": cycles,
                "decrease_meets_one_cycle_pmr": meets_one,
                "decrease_meets_more_cycles_pmr": meets_more,
                "gap_policy": flags["gap_policy"],
            },
        )
        trace.append(decision.trace())
        category = decision["category"]
        if category == "PMD" and progression_date is None:
            progression_date = tp.scan_date
        responses.append(
            TimepointResponse(
                criterion=CRITERION,
                scan_date=tp.scan_date,
                category=category,
                new_lesions="present" if new.avid else "absent",
                percent_from_baseline=change if evaluable else None,
                progression_date=tp.scan_date if category == "PMD" else None,
                trace=tuple(trace),
                warnings=tuple("quantitative EORTC not evaluable: " + f for f in comparability.failures),
                extra={
                    "region_lesion": region.name if region else None,
                    "region_sul_peak": value,
                    "baseline_region_sul_peak": region.sul if region else None,
                    "delta_sul_peak": pet.as_decimal(Fraction(value) - Fraction(region.sul))
                    if region and value is not None
                    else None,
                    "cycles": cycles,
                    "liver_sul_mean": pet.liver_mean(tp),
                    "liver_comparable": comparability.comparable,
                    "new_fdg_avid_lesions": ", ".join(u.name for u in new.avid) or None,
                },
            )
        )
    best = best_overall_response(
        responses,
        anchor=anchor,
        order=percist.ORDER,
        stable_min_days=int(ruleset.threshold("stable_disease_min_days").value),
        confirm_min_days=0,
        confirmed=False,
    )
    return CriterionAssessment.of(
        ruleset,
        flags,
        tuple(responses),
        best_response=best,
        progression_date=progression_date,
        warnings=tuple(warnings),
    )
