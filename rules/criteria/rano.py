"""RANO 2010 (Wen 2010), high-grade glioma: size spec §10. RANO 2.0 (2023) is deliberately not encoded (spec §10:
"Do not encode RANO 2.0 until someone reads the paper").

- Targets are the baseline target lesions (contrast-enhancing, both perpendicular diameters ≥ 10 mm, up to 5:
  checked as warnings); each is measured as the product of its perpendicular diameters, summed (SPD, mm²).
- PR: SPD ≤ 50 % of baseline; CR: all enhancing disease gone and off corticosteroids; both with steroids not
  increased, and sustained ≥ 4 weeks for the confirmed best response.
- PD: SPD ≥ +25 % from the smallest SPD (baseline or best response) on stable or increasing steroids; any new
  lesion; unequivocal progression of non-measurable disease (the reader's call); significant T2/FLAIR increase;
  clinical deterioration.
- Within 12 weeks (84 days) after radiotherapy (``LocalTherapy`` radiotherapy facts), PD only with a new lesion
  outside the radiation field (the reader marks it ``irradiated = False``) or histological proof (observation
  ``biopsy-progression`` = 1); otherwise SD with a pseudoprogression warning.
- Optional clinical facts (``ClinicalObservation``): ``t2-flair-progression`` (1 = significant increase, dated on the
  scan), ``steroid-dose`` (the dose in effect; the latest value on or before a scan), ``clinical-deterioration``
  (1 = deteriorated, since the previous scan). When missing, the trace says so and they are treated as not worsening.
- RANO ends at PD (like RECIST 1.1): later scans are not graded (iRANO continues).

Categories come from ``rules/rulesets/rano.yaml``; ``evaluate_scan`` is reused by iRANO.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rules.criteria import pet
from rules.criteria.burden import fmt_amount, fraction_as_decimal, unequivocal_progression
from rules.criteria.irrc import both_diameters_at_least, lesion_product
from rules.criteria.recist_family import RECIST_ORDER, best_overall_response, new_lesion_readings, nontarget_state
from rules.engine import Engine, RuleSet
from rules.facts import LesionRole, LocalTherapyKind
from rules.results import CriterionAssessment, TimepointResponse, percent_change
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name

CRITERION = "RANO"
T2_FLAIR_CODE = "t2-flair-progression"
"""``ClinicalObservation.code``: 1 = significant T2/FLAIR increase at the scan (dated on the scan date), 0 = stable."""
STEROID_DOSE_CODE = "steroid-dose"
"""``ClinicalObservation.code``: corticosteroid dose in effect from its date (e.g. mg/day dexamethasone-equivalent)."""
CLINICAL_DETERIORATION_CODE = "clinical-deterioration"
"""``ClinicalObservation.code``: 1 = clinical deterioration not attributable to other causes, 0 = stable."""
BIOPSY_PROGRESSION_CODE = "biopsy-progression"
"""``ClinicalObservation.code``: 1 = histologically proven tumour progression."""


@dataclass(frozen=True)
class RanoReading:
    """RANO 2010 at one scan, graded against the baseline and the smallest SPD so far."""

    tp: Timepoint
    category: str
    spd: Decimal
    spd_complete: bool
    progression_reason: str
    new_lesions: tuple[str, ...]
    clinical_deterioration: bool
    trace: tuple[str, ...]
    warnings: tuple[str, ...]


def targets_of(timeline: Timeline) -> list[TrackedLesion]:
    return timeline.lesions_with_role(LesionRole.TARGET)


def spd_of(tp: Timepoint, targets: list[TrackedLesion], too_small_mm2: Decimal) -> tuple[Decimal, bool, str]:
    """SPD of the targets (irRC's bidimensional product, reused: absent 0, too small to measure ``too_small_mm2``,
    missing → not assessed)."""
    total = Decimal(0)
    complete = True
    parts = []
    for lesion in targets:
        product, note = lesion_product(tp.of(lesion.lesion_id), too_small_mm2=too_small_mm2)
        if product is None:
            complete = False
            parts.append(f"{lesion_name(lesion)} n/a ({note})")
            continue
        total += product
        parts.append(f"{lesion_name(lesion)} {note or fmt_amount(product, 'mm2')}")
    return total, complete, " + ".join(parts) if parts else "no targets"


def too_small(ruleset: RuleSet) -> Decimal:
    return fraction_as_decimal(ruleset.threshold("too_small_product").value)


def _value_on(timeline: Timeline, code: str, day: dt.date) -> Decimal | None:
    found = [
        o for o in timeline.facts.observations if o.code == code and o.effective_date == day and o.value is not None
    ]
    return found[-1].value if found else None


def _flag_between(timeline: Timeline, code: str, after: dt.date, until: dt.date) -> bool | None:
    """Value 1 recorded in (after, until]; ``None`` when nothing was recorded in that interval."""
    found = [
        o
        for o in timeline.facts.observations
        if o.code == code and o.value is not None and after < o.effective_date <= until
    ]
    if not found:
        return None
    return any(o.value == 1 for o in found)


def dose_at(timeline: Timeline, day: dt.date) -> Decimal | None:
    """The corticosteroid dose in effect on ``day`` (latest ``steroid-dose`` on or before it)."""
    found = [
        o
        for o in timeline.facts.observations
        if o.code == STEROID_DOSE_CODE and o.value is not None and o.effective_date <= day
    ]
    return max(found, key=lambda o: o.effective_date).value if found else None


def last_radiotherapy(timeline: Timeline, day: dt.date) -> dt.date | None:
    dates = [
        t.performed_date
        for t in timeline.facts.local_therapies
        if t.kind is LocalTherapyKind.RADIOTHERAPY and t.performed_date <= day
    ]
    return max(dates) if dates else None


def baseline_warnings(timeline: Timeline, ruleset: RuleSet) -> list[str]:
    """RANO 2010 baseline conformance (warnings): ≤ 5 targets, each ≥ 10 × 10 mm."""
    warnings = []
    targets = targets_of(timeline)
    if not targets:
        warnings.append("no measurable enhancing target at baseline: RANO allows at best SD")
    if not ruleset.threshold("max_targets").holds(len(targets)):
        warnings.append(f"{len(targets)} target lesions at baseline (RANO 2010: up to 5)")
    minimum = ruleset.threshold("measurable_min_diameter")
    for lesion in targets:
        m = timeline.established_baseline.of(lesion.lesion_id)
        if m is not None and not both_diameters_at_least(m, ruleset, ruleset.flag_values(), "target_measurable"):
            warnings.append(
                f"target {lesion_name(lesion)} ({m.long_axis_mm} × {m.short_axis_mm} mm) is not measurable "
                f"by RANO 2010 (both diameters {minimum.describe()})"
            )
    return warnings


def evaluate_scan(
    engine: Engine,
    ruleset: RuleSet,
    flags: Mapping[str, Any],
    timeline: Timeline,
    tp: Timepoint,
    *,
    baseline_spd: Decimal,
    nadir_spd: Decimal,
    previous: dt.date,
    is_tumour: pet.TumourFilter | None = None,
) -> RanoReading:
    """RANO 2010 at one scan (spec §10)."""
    trace: list[str] = []
    warnings: list[str] = []
    targets = targets_of(timeline)
    spd, complete, parts = spd_of(tp, targets, too_small(ruleset))
    trace.append(f"SPD {parts} = {fmt_amount(spd, 'mm2')}")
    meets_pd = meets_pr = False
    if targets and complete:
        pd_rule = ruleset.threshold("progression_fraction_of_nadir")
        pr_rule = ruleset.threshold("partial_response_fraction_of_baseline")
        meets_pd = ruleset.holds("spd_meets_progression", flags, spd=spd, nadir=nadir_spd)
        meets_pr = ruleset.holds("spd_meets_partial_response", flags, spd=spd, baseline=baseline_spd)
        trace.append(
            f"{pet.fmt_pct_signed(percent_change(spd, baseline_spd))} from baseline {fmt_amount(baseline_spd, 'mm2')} "
            f"(PR {pet.relative_rule(pr_rule)}: {'met' if meets_pr else 'not met'}); "
            f"{pet.fmt_pct_signed(percent_change(spd, nadir_spd))} from the smallest SPD "
            f"{fmt_amount(nadir_spd, 'mm2')} (PD {pet.relative_rule(pd_rule)}: {'met' if meets_pd else 'not met'})"
        )

    new, equivocal = new_lesion_readings(tp, timeline, is_tumour=is_tumour)
    if new:
        trace.append("new lesion(s): " + ", ".join(lesion_name(lesion) for lesion in new))
    for lesion in equivocal:
        trace.append(f"new lesion {lesion_name(lesion)} is equivocal: followed, not progression")
    nontargets = timeline.lesions_with_role(LesionRole.NON_TARGET)
    nt = nontarget_state(tp, nontargets, after_complete_response=False)
    nt_progression = [lesion_name(lesion) for lesion in nontargets if unequivocal_progression(tp.of(lesion.lesion_id))]
    if nt_progression:
        trace.append(f"reader: unequivocal progression of non-measurable disease {', '.join(nt_progression)}")

    t2 = _value_on(timeline, T2_FLAIR_CODE, tp.scan_date)
    t2_progression = t2 == 1
    trace.append(
        "T2/FLAIR: "
        + (
            "not recorded (t2-flair-progression): treated as not worsening"
            if t2 is None
            else ("significant increase" if t2_progression else "stable or better")
        )
    )
    clinical = _flag_between(timeline, CLINICAL_DETERIORATION_CODE, previous, tp.scan_date)
    trace.append(
        "clinical status: "
        + (
            "not recorded (clinical-deterioration): treated as not worsening"
            if clinical is None
            else ("deterioration" if clinical else "stable or better")
        )
    )
    dose_now, dose_before = dose_at(timeline, tp.scan_date), dose_at(timeline, previous)
    steroids_increased = dose_now is not None and dose_before is not None and dose_now > dose_before
    steroids_reduced = dose_now is not None and dose_before is not None and dose_now < dose_before
    off_limit = ruleset.required_threshold("off_steroids_max_dose", flags)
    off_steroids = dose_now is None or off_limit.holds(dose_now)
    if dose_now is None:
        trace.append(
            "corticosteroids: not recorded (steroid-dose): treated as not worsening (off steroids not verified)"
        )
    else:
        trend = "increased" if steroids_increased else ("reduced" if steroids_reduced else "stable")
        trace.append(
            f"corticosteroids: {dose_now} (previous {dose_before if dose_before is not None else 'n/a'}): "
            f"{trend}; {'off (≤ ' + str(off_limit.value) + ')' if off_steroids else 'on steroids'}"
        )

    progression = engine.decide(
        CRITERION,
        "progression",
        {
            "new_lesion": bool(new),
            "nontarget_progression": bool(nt_progression),
            "t2_flair_progression": t2_progression,
            "clinical_deterioration": bool(clinical),
            "spd_meets_progression": meets_pd,
            "steroids_reduced": steroids_reduced,
        },
    )
    trace.append(progression.trace())
    rt_date = last_radiotherapy(timeline, tp.scan_date)
    window = ruleset.threshold("post_radiotherapy_window_days")
    within = rt_date is not None and window.holds((tp.scan_date - rt_date).days)
    outside_field = [lesion_name(lesion) for lesion in new if tp.reading(lesion.lesion_id).irradiated is False]
    biopsy = _flag_between(timeline, BIOPSY_PROGRESSION_CODE, previous, tp.scan_date) is True
    if rt_date is not None:
        trace.append(
            f"radiotherapy on {rt_date}: day {(tp.scan_date - rt_date).days} "
            f"({'within' if within else 'after'} the first {window.describe()})"
            + (f"; new lesion(s) outside the radiation field: {', '.join(outside_field)}" if outside_field else "")
            + ("; histologically proven progression" if biopsy else "")
        )
    post_rt = engine.decide(
        CRITERION,
        "post_radiotherapy",
        {
            "progression": bool(progression["progression"]),
            "within_post_radiotherapy_window": within,
            "outside_field_or_histology": bool(outside_field) or biopsy,
        },
    )
    if progression["progression"]:
        trace.append(post_rt.trace())
    if post_rt["outcome"] == "suppressed":
        warnings.append(
            "progression within 12 weeks of radiotherapy without new enhancement outside the field or "
            "histology: possible pseudoprogression (RANO 2010), reader review"
        )
    if progression.row == "NO-PD-STEROIDS-REDUCED":
        warnings.append("SPD ≥ 25 % above the nadir while corticosteroids were reduced: reader review")

    disappeared = (
        bool(targets)
        and complete
        and spd == 0
        and (not nt.has_nontargets or (nt.all_assessed and nt.all_absent))
        and not equivocal
    )
    overall = engine.decide(
        CRITERION,
        "overall_response",
        {
            "outcome": post_rt["outcome"],
            "all_targets_assessed": complete,
            "complete_response": disappeared,
            "off_steroids": off_steroids,
            "spd_meets_partial_response": meets_pr,
            "steroids_increased": steroids_increased,
        },
    )
    trace.append(overall.trace())
    reason = progression.row if overall["category"] == "PD" else ""
    return RanoReading(
        tp,
        overall["category"],
        spd,
        complete,
        reason,
        tuple(lesion_name(lesion) for lesion in new),
        bool(clinical),
        tuple(trace),
        tuple(warnings),
    )


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> CriterionAssessment:
    """RANO 2010 at every follow-up until PD (spec §10)."""
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values(overrides)
    if timeline.baseline is None:
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline",))
    targets = targets_of(timeline)
    base, _, _ = spd_of(timeline.baseline, targets, too_small(ruleset))
    nadir = base
    previous = timeline.baseline.scan_date
    responses: list[TimepointResponse] = []
    progression_date: dt.date | None = None
    for tp in timeline.followups:
        reading = evaluate_scan(
            engine,
            ruleset,
            flags,
            timeline,
            tp,
            baseline_spd=base,
            nadir_spd=nadir,
            previous=previous,
            is_tumour=is_tumour,
        )
        responses.append(response(reading, base, nadir, targets))
        if reading.spd_complete and reading.category != "NE":
            nadir = min(nadir, reading.spd)
        previous = tp.scan_date
        if reading.category == "PD":
            # RANO assessment ends at progression, as RECIST 1.1 (later scans are post-PD).
            progression_date = tp.scan_date
            break
    kwargs: dict[str, Any] = dict(
        anchor=timeline.anchor_date,
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
        warnings=tuple(baseline_warnings(timeline, ruleset)),
    )


def response(
    reading: RanoReading,
    base: Decimal,
    nadir: Decimal,
    targets: list[TrackedLesion],
    *,
    criterion: str = CRITERION,
    category: str | None = None,
    confirmed: bool | None = None,
    progression_date: dt.date | None = None,
    trace: tuple[str, ...] | None = None,
    warnings: tuple[str, ...] = (),
    extra: Mapping[str, Any] | None = None,
) -> TimepointResponse:
    """The ``TimepointResponse`` of a RANO reading (iRANO passes its own category and confirmation)."""
    has = bool(targets)
    category = category or reading.category
    return TimepointResponse(
        criterion=criterion,
        scan_date=reading.tp.scan_date,
        category=category,
        new_lesions="present" if reading.new_lesions else "absent",
        sum_mm=reading.spd if has else None,
        sum_unit="mm2",
        baseline_sum=base if has else None,
        nadir_sum=nadir if has else None,
        percent_from_baseline=percent_change(reading.spd, base) if has and reading.spd_complete else None,
        percent_from_nadir=percent_change(reading.spd, nadir) if has and reading.spd_complete else None,
        absolute_from_nadir=(reading.spd - nadir) if has and reading.spd_complete else None,
        confirmed=confirmed,
        progression_date=progression_date
        if progression_date
        else (reading.tp.scan_date if category == "PD" and criterion == CRITERION else None),
        trace=trace if trace is not None else reading.trace,
        warnings=reading.warnings + tuple(warnings),
        extra=dict(extra or {}, progression_reason=reading.progression_reason or None),
    )
