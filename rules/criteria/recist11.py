"""RECIST 1.1 (Eisenhauer 2009): the timepoint algorithm of size spec §1.8 and best overall response §1.7.

Quantities are measured here with exact arithmetic; every category comes from a decision table in
``rules/rulesets/recist11.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rules.criteria.recist_family import (
    RECIST_ORDER,
    TumourFilter,
    baseline_conformance,
    best_overall_response,
    locally_treated_lesions,
    new_lesion_readings,
    nontarget_state,
    target_sum,
    targets_complete_response,
)
from rules.engine import Engine, RuleSet
from rules.facts import LesionRole, recist_axis_mm
from rules.results import CriterionAssessment, TimepointResponse, fmt_mm, fmt_pct, percent_change
from rules.timeline import Timeline, Timepoint, lesion_name

CRITERION = "RECIST-1.1"


@dataclass(frozen=True)
class RecistComponents:
    """Everything RECIST 1.1 measured and decided at one timepoint; iRECIST builds on it."""

    tp: Timepoint
    sum_mm: Decimal
    complete_sum: bool
    nadir_mm: Decimal
    baseline_mm: Decimal
    meets_progression: bool
    partial_meets_progression: bool
    meets_partial_response: bool
    complete_response: bool
    target: str
    nontarget: str
    new_unequivocal: tuple[str, ...]
    new_equivocal: tuple[str, ...]
    overall: str
    trace: tuple[str, ...]


def sum_meets_progression(ruleset: RuleSet, flags: Mapping[str, Any], current: Decimal, nadir: Decimal) -> bool:
    """RECIST 1.1 §4.3.1: S ≥ 1.2 × N **and** S − N ≥ 5 mm (nadir includes baseline): the condition
    ``sum_meets_progression`` of the rule file (recist11.yaml; irecist.yaml for iRECIST's own nadir)."""
    return ruleset.holds("sum_meets_progression", flags, total=current, nadir=nadir)


def arithmetic_line(label: str, current: Decimal, baseline: Decimal, nadir: Decimal) -> str:
    return (
        f"{label} {fmt_mm(current)}: {fmt_pct(percent_change(current, baseline))} from baseline {fmt_mm(baseline)}, "
        f"{fmt_pct(percent_change(current, nadir))} and {'+' if current - nadir > 0 else ''}{fmt_mm(current - nadir)} "
        f"from nadir {fmt_mm(nadir)}"
    )


def evaluate_timepoint(
    engine: Engine,
    ruleset: RuleSet,
    timeline: Timeline,
    tp: Timepoint,
    *,
    baseline_mm: Decimal,
    nadir_mm: Decimal,
    prior_overall_cr: bool,
    prior_target_response: bool,
    flags: Mapping[str, Any],
    is_tumour: TumourFilter | None = None,
) -> RecistComponents:
    """Size spec §1.8 for one follow-up timepoint."""
    targets = timeline.lesions_with_role(LesionRole.TARGET)
    nontargets = timeline.lesions_with_role(LesionRole.NON_TARGET)
    too_small = ruleset.threshold("too_small_default_diameter").value
    blocked = (
        locally_treated_lesions(timeline, tp.scan_date) if flags["locally_treated_target_not_assessable"] else set()
    )
    sums = target_sum(
        tp, targets, too_small_mm=Decimal(too_small.numerator) / Decimal(too_small.denominator), not_assessable=blocked
    )
    meets_pd = sum_meets_progression(ruleset, flags, sums.total_mm, nadir_mm)
    meets_pr = ruleset.threshold("partial_response_fraction_of_baseline").holds(sums.total_mm, baseline_mm)
    complete = (
        targets_complete_response(sums.readings, ruleset.threshold("node_normal_short_axis")) if targets else False
    )
    trace = [f"targets: {sums.describe()}"]
    if targets:
        trace.append(
            arithmetic_line(
                "sum of diameters" if sums.complete else "partial sum (missing counted as 0)",
                sums.total_mm,
                baseline_mm,
                nadir_mm,
            )
        )
    if blocked & {t.lesion_id for t in targets}:
        trace.append("a target lesion was irradiated during follow-up: not assessable (flag for manual review)")

    target_decision = None
    if targets:
        target_decision = engine.decide(
            CRITERION,
            "target_response",
            {
                "all_targets_assessed": sums.complete,
                "partial_sum_meets_progression": meets_pd,
                "ne_partial_pd": bool(flags["ne_partial_pd"]),
                "prior_overall_cr": prior_overall_cr,
                "targets_complete_response": complete,
                "sum_meets_progression": meets_pd,
                "sum_meets_partial_response": meets_pr,
                "sticky_pr": bool(flags["sticky_pr"]),
                "prior_target_response": prior_target_response,
            },
        )
        trace.append(target_decision.trace())

    nt = nontarget_state(tp, nontargets, after_complete_response=prior_overall_cr)
    nt_decision = engine.decide(
        CRITERION,
        "nontarget_response",
        {
            "has_nontargets": nt.has_nontargets,
            "any_unequivocal_progression": nt.any_unequivocal_progression,
            "reappearance_after_cr": bool(nt.reappeared),
            "all_nontargets_assessed": nt.all_assessed,
            "all_nontargets_absent": nt.all_absent,
        },
    )
    if nt.has_nontargets:
        trace.append(nt_decision.trace())

    new, equivocal = new_lesion_readings(tp, timeline, is_tumour=is_tumour)
    if new:
        trace.append("new lesion(s): " + ", ".join(lesion_name(lesion) for lesion in new))
    if equivocal:
        trace.append(
            "equivocal new lesion(s) followed, not yet progression: "
            + ", ".join(lesion_name(lesion) for lesion in equivocal)
        )

    if target_decision is not None:  # set exactly when there are targets
        overall = engine.decide(
            CRITERION,
            "overall_response_with_targets",
            {"target": target_decision["target"], "nontarget": nt_decision["nontarget"], "new_lesion": bool(new)},
        )
    else:
        overall = engine.decide(
            CRITERION,
            "overall_response_nontarget_only",
            {"nontarget": nt_decision["nontarget"], "new_lesion": bool(new)},
        )
    trace.append(overall.trace())
    return RecistComponents(
        tp=tp,
        sum_mm=sums.total_mm,
        complete_sum=sums.complete,
        nadir_mm=nadir_mm,
        baseline_mm=baseline_mm,
        meets_progression=meets_pd and sums.complete,
        partial_meets_progression=meets_pd,
        meets_partial_response=meets_pr,
        complete_response=complete,
        target=target_decision["target"] if target_decision else "NA",
        nontarget=nt_decision["nontarget"],
        new_unequivocal=tuple(lesion.lesion_id for lesion in new),
        new_equivocal=tuple(lesion.lesion_id for lesion in equivocal),
        overall=overall["overall"],
        trace=tuple(trace),
    )


def baseline_sum(timeline: Timeline, ruleset: RuleSet) -> tuple[Decimal, list[str]]:
    warnings = []
    total = Decimal(0)
    for target in timeline.lesions_with_role(LesionRole.TARGET):
        m = timeline.established_baseline.of(target.lesion_id)
        value = recist_axis_mm(m, nodal=target.nodal) if m else None
        if value is None:
            warnings.append(f"baseline target {lesion_name(target)} has no diameter")
            continue
        total += value
    return total, warnings


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: TumourFilter | None = None,
) -> CriterionAssessment:
    ruleset = engine.rulebase[CRITERION]
    flags = {name: ruleset.flag(name, overrides) for name in ruleset.flags}
    if timeline.baseline is None:
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline",))
    warnings = baseline_conformance(timeline, ruleset)
    base, base_warnings = baseline_sum(timeline, ruleset)
    warnings += base_warnings
    nadir = base
    responses: list[TimepointResponse] = []
    prior_cr = False
    prior_target_response = False
    progression_date = None
    for tp in timeline.followups:
        c = evaluate_timepoint(
            engine,
            ruleset,
            timeline,
            tp,
            baseline_mm=base,
            nadir_mm=nadir,
            prior_overall_cr=prior_cr,
            prior_target_response=prior_target_response,
            flags=flags,
            is_tumour=is_tumour,
        )
        progression = None
        if c.overall == "PD":
            progression = tp.scan_date
            if c.new_unequivocal:
                first = min(timeline.lesions[i].first_seen for i in c.new_unequivocal)
                progression = min(progression, first)
        has_targets = c.target != "NA"
        responses.append(
            TimepointResponse(
                criterion=CRITERION,
                scan_date=tp.scan_date,
                category=c.overall,
                target_response=c.target if has_targets else None,
                nontarget_response=c.nontarget,
                new_lesions="present" if c.new_unequivocal else ("equivocal" if c.new_equivocal else "absent"),
                sum_mm=c.sum_mm if has_targets else None,
                baseline_sum=base if has_targets else None,
                nadir_sum=nadir if has_targets else None,
                percent_from_baseline=percent_change(c.sum_mm, base) if has_targets and c.complete_sum else None,
                percent_from_nadir=percent_change(c.sum_mm, nadir) if has_targets and c.complete_sum else None,
                absolute_from_nadir=(c.sum_mm - nadir) if has_targets and c.complete_sum else None,
                progression_date=progression,
                trace=c.trace,
            )
        )
        if c.complete_sum and c.target != "NE":
            nadir = min(nadir, c.sum_mm)
        prior_cr = prior_cr or c.overall == "CR"
        prior_target_response = prior_target_response or c.target in ("PR", "CR")
        if c.overall == "PD":
            # RECIST assessment ends at PD (PFS event); later timepoints are post-PD, never re-graded (spec §1.7).
            progression_date = progression
            break
    anchor = timeline.anchor_date
    kwargs: dict[str, Any] = dict(
        anchor=anchor,
        order=RECIST_ORDER,
        stable_min_days=int(ruleset.threshold("stable_disease_min_days").value),
        confirm_min_days=int(ruleset.threshold("confirmation_min_days").value),
    )
    return CriterionAssessment.of(
        ruleset,
        flags,
        tuple(responses),
        best_response=best_overall_response(responses, confirmed=False, **kwargs),
        best_response_confirmed=best_overall_response(responses, confirmed=True, **kwargs),
        progression_date=progression_date,
        warnings=tuple(warnings),
    )
