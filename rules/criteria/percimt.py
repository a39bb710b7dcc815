"""PERCIMT (Anwar 2018): size spec §7.3, worked examples P1, E5 and E7 (PET add-ons).

PERCIMT counts **new FDG-avid lesions** present at a scan by their functional diameter — the lesion's reported long
axis (``LesionMeasurement.long_axis_mm``) [D] — and ignores SUV changes:

- PMD: ≥ 4 new lesions < 1.0 cm, **or** ≥ 3 new lesions > 1.0 cm, **or** ≥ 2 new lesions > 1.5 cm, each rule on its
  own (mixed counts define nothing; ``percimt.count_rule``). A lesion > 1.5 cm also counts among those > 1.0 cm.
  A lesion of exactly 10.0 mm is in neither of the first two groups as written: it is reported for review.
- CMR: all pre-existing FDG-avid lesions resolved; PMR: some resolved, no new lesion; otherwise SMD.
- Liver quality control does not apply (count-based: P1 FU3 is SMD).

Categories come from ``rules/rulesets/percimt.yaml``; measurement helpers from ``rules/criteria/pet.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from rules.criteria import percist, pet
from rules.criteria.recist_family import best_overall_response
from rules.engine import Engine
from rules.results import CriterionAssessment, TimepointResponse
from rules.timeline import Timeline, lesion_name

CRITERION = "PERCIMT"


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> CriterionAssessment:
    """PERCIMT at every follow-up PET (spec §7.3)."""
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values(overrides)
    if timeline.baseline is None or not pet.has_pet_values(timeline.baseline):
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline PET with SUL values",))
    avid = ruleset.threshold("new_lesion_avid_fraction_of_liver_mean")
    below_liver = ruleset.threshold("complete_resolution_fraction_of_liver_mean")
    small_max = ruleset.threshold("small_lesion_max_diameter")
    large_min = ruleset.threshold("large_lesion_min_diameter")
    very_large_min = ruleset.threshold("very_large_lesion_min_diameter")
    small_count = ruleset.required_threshold("small_lesions_min_count", flags)
    large_count = ruleset.required_threshold("large_lesions_min_count", flags)
    very_large_count = ruleset.required_threshold("very_large_lesions_min_count", flags)
    preexisting = pet.baseline_avid_lesions(timeline, avid, is_tumour=is_tumour)
    base_line = "pre-existing FDG-avid lesions (above the baseline liver SULmean): " + (
        ", ".join(lesion_name(lesion) for lesion in preexisting) if preexisting else "none"
    )
    responses: list[TimepointResponse] = []
    progression_date: dt.date | None = None
    for tp in pet.pet_followups(timeline):
        trace = [base_line]
        tp_warnings: list[str] = []
        new = pet.new_fdg_avid_lesions(tp, timeline, avid, is_tumour=is_tumour)
        trace += new.not_avid
        small, large, very_large, unsized, boundary = [], [], [], [], []
        for uptake in new.avid:
            diameter = uptake.measurement.long_axis_mm
            if diameter is None:
                unsized.append(uptake.name)
                continue
            label = f"{uptake.name} {diameter} mm"
            if small_max.holds(diameter):
                small.append(label)
            if large_min.holds(diameter):
                large.append(label)
            if very_large_min.holds(diameter):
                very_large.append(label)
            if not small_max.holds(diameter) and not large_min.holds(diameter):
                boundary.append(label)
        if new.avid:
            trace.append(
                f"new FDG-avid lesions: {len(new.avid)} — < 1.0 cm: {len(small)}"
                f"{' (' + ', '.join(small) + ')' if small else ''}; > 1.0 cm: {len(large)}"
                f"{' (' + ', '.join(large) + ')' if large else ''}; > 1.5 cm: {len(very_large)}"
                f"{' (' + ', '.join(very_large) + ')' if very_large else ''}"
            )
        else:
            trace.append("no new FDG-avid lesion")
        if unsized:
            tp_warnings.append(f"functional diameter (long axis) not reported for {', '.join(unsized)}: not counted")
        if boundary:
            tp_warnings.append(
                f"{', '.join(boundary)}: exactly 1.0 cm is neither < 1.0 cm nor > 1.0 cm (PERCIMT "
                f"wording): not counted, reader review"
            )
        small_met = small_count.holds(len(small))
        large_met = large_count.holds(len(large))
        very_large_met = very_large_count.holds(len(very_large))
        rules_text = "; ".join(
            f"{label}: {count} (PMD needs {pet.op(threshold)} {pet.fmt_count(threshold)}) → {'met' if met else 'not met'}"
            for label, count, threshold, met in (
                ("< 1.0 cm", len(small), small_count, small_met),
                ("> 1.0 cm", len(large), large_count, large_met),
                ("> 1.5 cm", len(very_large), very_large_count, very_large_met),
            )
        )
        trace.append(f"count rules, each on its own — {rules_text}")
        state = pet.resolution(tp, preexisting, below_liver)
        trace.append("pre-existing lesions: " + state.describe())
        decision = engine.decide(
            CRITERION,
            "metabolic_response",
            {
                "small_rule_met": small_met,
                "large_rule_met": large_met,
                "very_large_rule_met": very_large_met,
                "new_fdg_avid_lesion": bool(new.avid),
                "all_preexisting_resolved": state.all_resolved,
                "some_preexisting_resolved": state.some_resolved,
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
                progression_date=tp.scan_date if category == "PMD" else None,
                trace=tuple(trace),
                warnings=tuple(tp_warnings),
                extra={
                    "new_lesions_below_1_cm": len(small),
                    "new_lesions_above_1_cm": len(large),
                    "new_lesions_above_1_5_cm": len(very_large),
                    "resolved_lesions": ", ".join(state.resolved) or None,
                },
            )
        )
    best = best_overall_response(
        responses,
        anchor=timeline.anchor_date,
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
    )
