"""Lugano 2014 (Cheson 2014): size spec §9.1, worked example L1.

**CT-based response** (the category reported as the Lugano-2014 Observation value):

- SPD = Σ LDi × SDi over up to 6 target nodes/extranodal lesions (a lesion too small to measure counts 5 × 5 mm,
  a lesion no longer visible 0 × 0); PR = SPD ≤ 50 % of baseline; CR = target nodes ≤ 1.5 cm LDi, extranodal
  targets and non-measured lesions gone, no new lesion.
- PD is **lesion-level, relative to that lesion's nadir** (not a sum threshold): one node or lesion with
  (1) LDi > 1.5 cm, (2) PPD ≥ +50 % from its PPD nadir, (3) LDi or SDi up by ≥ 0.5 cm (lesions ≤ 2 cm at nadir) or
  ≥ 1.0 cm (> 2 cm); a resolved lesion that regrows; a new node > 1.5 cm in any axis; a new extranodal site > 1.0 cm
  (smaller when unequivocally lymphoma: not marked equivocal, ``lugano.small_new_extranodal_is_pd``); unequivocal
  progression of a non-measured lesion (the reader's call).
- Spleen and bone marrow rules are not modelled (no such facts): they are left to the reader (stated in the trace).
- Every scan is graded on its own (L1: PD at week 8, SD at week 16); the lesion nadirs include every earlier scan.

**PET-based response** (``extra["metabolic_category"]``, when a Deauville score exists for the scan):

- Input: one ``ClinicalObservation`` with code ``deauville`` and value 1–5, dated on the scan date (one documented
  input; per-lesion scores are not read). "X" scores are not numeric and are not read.
- CMR: score 1–3 and no new FDG-avid focus; PMD: a new FDG-avid focus, or score 4–5 with increased uptake vs
  baseline; PMR: 4–5 with reduced uptake; NMR: 4–5 without significant change. The uptake change is the change of
  Deauville score, and at an equal score the hottest lesion's SUVmax (else SULpeak) beyond ±``lugano.uptake_change_percent``
  (policy [D]: Lugano's reading is visual).

The CT category is the Observation value because the CT rules apply to every histology and are fully specified by
the facts; the metabolic category is reported beside it (contract §5 Lugano categories ``CMR``/``PMR``/``NMR``/``PMD``).
Categories come from ``rules/rulesets/lugano.yaml``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rules.criteria import pet
from rules.criteria.burden import fmt_amount, fraction_as_decimal, unequivocal_progression
from rules.criteria.recist_family import RECIST_ORDER, best_overall_response, new_lesion_readings, nontarget_state
from rules.engine import Engine, RuleSet
from rules.facts import LesionMeasurement, LesionRole, LesionStatus, ReferenceRegion
from rules.results import CriterionAssessment, TimepointResponse, fmt_pct, percent_change
from rules.timeline import Timeline, Timepoint, TrackedLesion, lesion_name

CRITERION = "Lugano-2014"
DEAUVILLE_CODE = "deauville"
"""``ClinicalObservation.code`` of the Deauville 5-point score of a PET (value 1–5, dated on the scan date)."""
BIOPSY_PROGRESSION_CODE = "biopsy-progression"
"""``ClinicalObservation.code``: 1 = biopsy-proven progression (LYRIC resolution of IR, RANO histology)."""
CLINICAL_DETERIORATION_CODE = "clinical-deterioration"
"""``ClinicalObservation.code``: 1 = clinical deterioration, 0 = clinically stable."""


@dataclass(frozen=True)
class LesionSize:
    """A lesion's bidimensional size at one scan (Lugano: LDi × SDi)."""

    ppd: Decimal
    ld: Decimal
    sd: Decimal
    note: str = ""

    def describe(self) -> str:
        return f"{self.ld} × {self.sd} = {fmt_amount(self.ppd, 'mm2')}" + (f" ({self.note})" if self.note else "")


def lesion_size(m: LesionMeasurement | None, ruleset: RuleSet) -> LesionSize | None:
    """LDi × SDi; absent → 0 × 0; too small to measure → 5 × 5 (Lugano 2014 PR rule); not assessed → ``None``."""
    if m is None or m.status is LesionStatus.NOT_ASSESSED:
        return None
    if m.status is LesionStatus.ABSENT:
        return LesionSize(Decimal(0), Decimal(0), Decimal(0), "absent")
    if m.status is LesionStatus.TOO_SMALL:
        side = fraction_as_decimal(ruleset.threshold("too_small_diameter").value)
        return LesionSize(
            fraction_as_decimal(ruleset.threshold("too_small_product").value), side, side, "too small to measure"
        )
    if m.long_axis_mm is None or m.short_axis_mm is None:
        return None
    return LesionSize(m.long_axis_mm * m.short_axis_mm, m.long_axis_mm, m.short_axis_mm)


def lesion_progression(
    ruleset: RuleSet, flags: Mapping[str, Any], size: LesionSize, reference: LesionSize
) -> tuple[bool, str]:
    """Lugano 2014 individual node/lesion PD against a reference size (its nadir; for LYRIC, the IR scan): the
    condition ``small_lesion_progression`` or ``large_lesion_progression`` of lugano.yaml by the reference LDi."""
    if reference.ppd == 0:
        if size.ppd > 0:
            return True, f"{size.describe()}: regrowth of a resolved lesion (reference 0)"
        return False, ""
    if size.ppd == 0:
        return False, ""
    size_class = ruleset.threshold("small_lesion_max_long_axis")
    small = size_class.holds(reference.ld)
    step = ruleset.threshold("small_lesion_progression_increase" if small else "large_lesion_progression_increase")
    rise = max(size.ld - reference.ld, size.sd - reference.sd)
    met = ruleset.holds(
        "small_lesion_progression" if small else "large_lesion_progression",
        flags,
        ldi=size.ld,
        ppd=size.ppd,
        reference_ppd=reference.ppd,
        rise=rise,
    )
    # The checks one by one, for the trace only (the decision is the condition above).
    ld_ok = ruleset.threshold("progression_long_axis").holds(size.ld)
    ppd_ok = ruleset.threshold("progression_ppd_fraction_of_nadir").holds(size.ppd, reference.ppd)
    rise_ok = step.holds(rise)
    ld_rule = ruleset.threshold("progression_long_axis")
    ppd_rule = ruleset.threshold("progression_ppd_fraction_of_nadir")
    text = (
        f"{size.describe()} vs reference {reference.describe()}: LDi {size.ld} mm ({'meets' if ld_ok else 'fails'} "
        f"{ld_rule.describe()}); PPD {fmt_pct(percent_change(size.ppd, reference.ppd))} ({'meets' if ppd_ok else 'fails'} "
        f"{pet.relative_rule(ppd_rule)}); LDi/SDi rise {'+' if rise > 0 else ''}{rise} mm ({'meets' if rise_ok else 'fails'} "
        f"{step.describe()} for a lesion {'' if small else 'not '}{size_class.describe()} at the reference) → {'PD' if met else 'no PD'}"
    )
    return met, text


@dataclass(frozen=True)
class CtReading:
    """Lugano 2014 CT-based response at one scan."""

    category: str
    spd: Decimal
    spd_complete: bool
    progressing_lesions: tuple[str, ...]
    progressing_new_lesions: tuple[str, ...]
    progressing_nontargets: tuple[str, ...]
    sizes: Mapping[str, LesionSize]
    trace: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def targets_of(timeline: Timeline) -> list[TrackedLesion]:
    return timeline.lesions_with_role(LesionRole.TARGET)


def spd_of(tp: Timepoint, targets: list[TrackedLesion], ruleset: RuleSet) -> tuple[Decimal, bool, str]:
    total = Decimal(0)
    complete = True
    parts = []
    for lesion in targets:
        size = lesion_size(tp.of(lesion.lesion_id), ruleset)
        if size is None:
            complete = False
            parts.append(f"{lesion_name(lesion)} n/a")
            continue
        total += size.ppd
        parts.append(f"{lesion_name(lesion)} {size.describe()}")
    return total, complete, " + ".join(parts) if parts else "no targets"


def new_lesion_is_pd(
    ruleset: RuleSet, flags: Mapping[str, Any], lesion: TrackedLesion, m: LesionMeasurement
) -> tuple[bool, str]:
    """Lugano 2014: a new node > 1.5 cm in any axis; a new extranodal site > 1.0 cm (or smaller if unequivocal)."""
    axes = [a for a in (m.long_axis_mm, m.short_axis_mm) if a is not None]
    largest = max(axes) if axes else None
    name = lesion_name(lesion)
    if lesion.nodal:
        threshold = ruleset.threshold("new_node_min_axis")
        if largest is None:
            return False, f"new node {name}: size not reported, cannot be judged (> 1.5 cm needed)"
        met = threshold.holds(largest)
        return met, (
            f"new node {name} largest axis {largest} mm ({'meets' if met else 'fails'} {threshold.describe()}) "
            f"→ {'PD' if met else 'not PD'}"
        )
    threshold = ruleset.threshold("new_extranodal_min_axis")
    if largest is not None and threshold.holds(largest):
        return True, f"new extranodal lesion {name} {largest} mm ({threshold.describe()}) → PD"
    if flags["small_new_extranodal_is_pd"]:
        return True, (
            f"new extranodal lesion {name} {largest if largest is not None else 'size n/a'}"
            f"{' mm' if largest is not None else ''} (not {threshold.describe()}), not equivocal (unequivocally lymphoma) → PD "
            f"(lugano.small_new_extranodal_is_pd)"
        )
    return (
        False,
        f"new extranodal lesion {name} not {threshold.describe()}: not PD (lugano.small_new_extranodal_is_pd off)",
    )


def evaluate_ct(
    engine: Engine,
    ruleset: RuleSet,
    flags: Mapping[str, Any],
    timeline: Timeline,
    tp: Timepoint,
    *,
    baseline_spd: Decimal,
    references: Mapping[str, LesionSize],
    reference_label: str = "nadir",
    is_tumour: pet.TumourFilter | None = None,
) -> CtReading:
    """Lugano 2014 CT-based response at one scan. ``references`` holds each followed lesion's reference size (its
    nadir; LYRIC passes the IR scan's sizes): lesions in it are tested by the lesion-level rule, other new lesions by
    the new-lesion rule."""
    trace: list[str] = []
    targets = targets_of(timeline)
    spd, complete, parts = spd_of(tp, targets, ruleset)
    trace.append(
        f"SPD {parts} = {fmt_amount(spd, 'mm2')}"
        + (
            f": {pet.fmt_pct_signed(percent_change(spd, baseline_spd))} from baseline {fmt_amount(baseline_spd, 'mm2')}"
            if baseline_spd
            else ""
        )
    )
    sizes: dict[str, LesionSize] = {}
    progressing: list[str] = []
    for lesion in timeline.lesions.values():
        size = lesion_size(tp.of(lesion.lesion_id), ruleset)
        if size is None:
            continue
        sizes[lesion.lesion_id] = size
        reference = references.get(lesion.lesion_id)
        if reference is None:
            continue
        met, text = lesion_progression(ruleset, flags, size, reference)
        if text:
            trace.append(f"{lesion_name(lesion)} ({reference_label}): {text}")
        if met:
            progressing.append(lesion_name(lesion))
    unequivocal, equivocal = new_lesion_readings(tp, timeline, is_tumour=is_tumour)
    new_pd: list[str] = []
    new_present: list[str] = []
    for lesion in unequivocal:
        if lesion.lesion_id in references:
            continue
        new_present.append(lesion_name(lesion))
        met, text = new_lesion_is_pd(ruleset, flags, lesion, tp.reading(lesion.lesion_id))
        trace.append(text)
        if met:
            new_pd.append(lesion_name(lesion))
    for lesion in equivocal:
        trace.append(f"new lesion {lesion_name(lesion)} is equivocal: followed, not progression")
    nontargets = timeline.lesions_with_role(LesionRole.NON_TARGET)
    nt_progression = [lesion_name(lesion) for lesion in nontargets if unequivocal_progression(tp.of(lesion.lesion_id))]
    if nt_progression:
        trace.append(f"reader: unequivocal progression of {', '.join(nt_progression)}")
    nt = nontarget_state(tp, nontargets, after_complete_response=False)
    node_normal = ruleset.threshold("node_normal_long_axis")
    targets_normal = complete and all(
        (s := sizes.get(lesion.lesion_id)) is not None and (node_normal.holds(s.ld) if lesion.nodal else s.ppd == 0)
        for lesion in targets
    )
    complete_response = (
        bool(targets)
        and targets_normal
        and (not nt.has_nontargets or (nt.all_assessed and nt.all_absent))
        and not new_present
        and not equivocal
    )
    pr = (
        bool(targets)
        and baseline_spd > 0
        and ruleset.threshold("partial_response_fraction_of_baseline").holds(spd, baseline_spd)
    )
    decision = engine.decide(
        CRITERION,
        "ct_response",
        {
            "lesion_progression": bool(progressing),
            "new_lesion_progression": bool(new_pd),
            "nontarget_progression": bool(nt_progression),
            "all_targets_assessed": complete and bool(targets),
            "complete_response": complete_response,
            "spd_meets_partial_response": pr,
        },
    )
    trace.append(decision.trace())
    warnings = []
    if not targets:
        warnings.append("no target lesion at baseline: Lugano CT response needs measurable disease")
    return CtReading(
        decision["category"],
        spd,
        complete,
        tuple(progressing),
        tuple(new_pd),
        tuple(nt_progression),
        sizes,
        tuple(trace),
        tuple(warnings),
    )


# --- PET-based response (Deauville) -------------------------------------------------------------------------


def observation_value(timeline: Timeline, code: str, day: dt.date) -> Decimal | None:
    """The value of the last observation ``code`` dated ``day``."""
    found = [
        o for o in timeline.facts.observations if o.code == code and o.effective_date == day and o.value is not None
    ]
    return found[-1].value if found else None


def deauville_score(timeline: Timeline, day: dt.date) -> tuple[int | None, str]:
    value = observation_value(timeline, DEAUVILLE_CODE, day)
    if value is None:
        return None, "no Deauville score recorded"
    if value != value.to_integral() or not 1 <= value <= 5:
        return None, f"Deauville score {value} is not 1-5: not read"
    return int(value), f"Deauville score {int(value)}"


def hottest_uptake(tp: Timepoint, timeline: Timeline) -> tuple[Decimal | None, str]:
    """The hottest lesion's SUVmax at ``tp`` (SULpeak when no SUVmax was reported)."""
    present = [m for m in tp.measurements.values() if m.status in (LesionStatus.PRESENT, LesionStatus.TOO_SMALL)]
    suv = [m.suv_max for m in present if m.suv_max is not None]
    if suv:
        return max(suv), "SUVmax"
    sul = [m.sul_peak for m in present if m.sul_peak is not None]
    return (max(sul), "SULpeak") if sul else (None, "")


def new_avid_foci(
    ruleset: RuleSet, tp: Timepoint, timeline: Timeline, *, is_tumour: pet.TumourFilter | None
) -> tuple[list[str], list[str]]:
    """New FDG-avid foci: a new lesion with SULpeak above the liver SULmean (or SUVmax above the liver SUVmean when
    only SUVmax was reported; without a liver reference any reported uptake) — policy [D], rules/criteria/pet.py."""
    avid = ruleset.threshold("new_lesion_avid_fraction_of_liver_mean")
    unequivocal, _ = new_lesion_readings(tp, timeline, is_tumour=is_tumour)
    liver = pet.reference_region(tp, ReferenceRegion.LIVER)
    liver_suv = next(
        (r.suv_mean for r in tp.references if r.region is ReferenceRegion.LIVER and r.suv_mean is not None), None
    )
    found: list[str] = []
    notes: list[str] = []
    for lesion in unequivocal:
        m = tp.reading(lesion.lesion_id)
        if m.sul_peak is not None:
            ok = liver is None or liver.sul_mean is None or avid.holds(m.sul_peak, liver.sul_mean)
            value = f"SULpeak {pet.fmt_sul(m.sul_peak)}"
        elif m.suv_max is not None:
            ok = liver_suv is None or avid.holds(m.suv_max, liver_suv)
            value = f"SUVmax {pet.fmt_sul(m.suv_max)}"
        else:
            notes.append(f"new lesion {lesion_name(lesion)}: no uptake value at this PET")
            continue
        (found if ok else notes).append(
            lesion_name(lesion)
            if ok
            else f"new lesion {lesion_name(lesion)} {value}: not above the liver (not FDG-avid)"
        )
    return found, notes


@dataclass(frozen=True)
class MetabolicReading:
    category: str | None
    score: int | None
    uptake_change: str
    trace: tuple[str, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)


def evaluate_metabolic(
    engine: Engine,
    ruleset: RuleSet,
    flags: Mapping[str, Any],
    timeline: Timeline,
    tp: Timepoint,
    reference: Timepoint,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> MetabolicReading:
    """Lugano 2014 PET-based response at ``tp`` against ``reference`` (the baseline; LYRIC also asks against the IR
    scan). ``category`` is ``None`` when no Deauville score was recorded for ``tp``."""
    score, note = deauville_score(timeline, tp.scan_date)
    if score is None:
        return MetabolicReading(None, None, "unknown", (f"PET-based response: {note} for {tp.scan_date}",))
    trace = [f"PET-based response: {note}"]
    base_score, base_note = deauville_score(timeline, reference.scan_date)
    change = "unknown"
    if base_score is not None and base_score != score:
        change = "increased" if score > base_score else "reduced"
        trace.append(f"Deauville {base_score} → {score}: uptake {change}")
    else:
        trace.append(
            f"reference ({reference.scan_date}): {base_note}" + ("; same score" if base_score is not None else "")
        )
        now, kind = hottest_uptake(tp, timeline)
        before, before_kind = hottest_uptake(reference, timeline)
        if now is not None and before is not None and before > 0 and kind == before_kind:
            up = ruleset.configured_threshold("uptake_increase_percent", flags)
            down = ruleset.configured_threshold("uptake_decrease_percent", flags)
            difference = Fraction(now) - Fraction(before)
            if up is not None and up.holds(difference * 100, before):
                change = "increased"
            elif down is not None and down.holds(-difference * 100, before):
                change = "reduced"
            else:
                change = "unchanged"
            trace.append(
                pet.change_line(f"hottest {kind}", now, before, "reference")
                + f" → uptake {change} (significant change: {up.describe() if up else 'n/a'}, lugano.uptake_change_percent)"
            )
        else:
            trace.append("hottest lesion uptake not comparable with the reference (values missing)")
    foci, notes = new_avid_foci(ruleset, tp, timeline, is_tumour=is_tumour)
    trace += notes
    if foci:
        trace.append("new FDG-avid foci: " + ", ".join(foci))
    decision = engine.decide(
        CRITERION,
        "metabolic_response",
        {
            "deauville": str(score),
            "new_fdg_avid_lesion": bool(foci),
            "uptake_change": change,
        },
    )
    trace.append(decision.trace())
    trace.append("bone marrow and spleen uptake are not in the facts: the reader's call")
    return MetabolicReading(
        decision["category"], score, change, tuple(trace), {"deauville_score": score, "uptake_change": change}
    )


# --- the whole timeline ---------------------------------------------------------------------------------------


def baseline_references(timeline: Timeline, ruleset: RuleSet) -> dict[str, LesionSize]:
    refs: dict[str, LesionSize] = {}
    for lesion in timeline.lesions.values():
        if lesion.role is LesionRole.NEW:
            continue
        size = lesion_size(timeline.established_baseline.of(lesion.lesion_id), ruleset)
        if size is not None:
            refs[lesion.lesion_id] = size
    return refs


def update_nadirs(nadirs: dict[str, LesionSize], sizes: Mapping[str, LesionSize]) -> None:
    """Each lesion's nadir: its smallest PPD so far (baseline included); only lesions already followed."""
    for lesion_id, size in sizes.items():
        if lesion_id in nadirs and size.ppd < nadirs[lesion_id].ppd:
            nadirs[lesion_id] = size


def baseline_warnings(timeline: Timeline, ruleset: RuleSet) -> list[str]:
    targets = targets_of(timeline)
    warnings = []
    if not ruleset.threshold("max_targets").holds(len(targets)):
        warnings.append(f"{len(targets)} target lesions at baseline (Lugano 2014 measures up to 6): all are summed")
    if not targets:
        warnings.append("no target lesion at baseline: Lugano CT response needs measurable disease")
    return warnings


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> CriterionAssessment:
    """Lugano 2014 at every follow-up: CT-based category, PET-based category in ``extra`` (spec §9.1)."""
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values(overrides)
    if timeline.baseline is None:
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline",))
    targets = targets_of(timeline)
    base_spd, _, base_parts = spd_of(timeline.baseline, targets, ruleset)
    nadirs = baseline_references(timeline, ruleset)
    spd_nadir = base_spd
    responses: list[TimepointResponse] = []
    progression_date: dt.date | None = None
    for tp in timeline.followups:
        ct = evaluate_ct(
            engine, ruleset, flags, timeline, tp, baseline_spd=base_spd, references=nadirs, is_tumour=is_tumour
        )
        metabolic = evaluate_metabolic(engine, ruleset, flags, timeline, tp, timeline.baseline, is_tumour=is_tumour)
        trace = [f"baseline SPD {base_parts} = {fmt_amount(base_spd, 'mm2')}", *ct.trace, *metabolic.trace]
        if ct.category == "PD" and progression_date is None:
            progression_date = tp.scan_date
        responses.append(
            TimepointResponse(
                criterion=CRITERION,
                scan_date=tp.scan_date,
                category=ct.category,
                new_lesions="present" if ct.progressing_new_lesions else "absent",
                sum_mm=ct.spd if targets else None,
                sum_unit="mm2",
                baseline_sum=base_spd if targets else None,
                nadir_sum=spd_nadir if targets else None,
                percent_from_baseline=percent_change(ct.spd, base_spd) if targets and ct.spd_complete else None,
                percent_from_nadir=percent_change(ct.spd, spd_nadir) if targets and ct.spd_complete else None,
                absolute_from_nadir=(ct.spd - spd_nadir) if targets and ct.spd_complete else None,
                progression_date=tp.scan_date if ct.category == "PD" else None,
                trace=tuple(trace),
                warnings=ct.warnings,
                extra={
                    "metabolic_category": metabolic.category,
                    **metabolic.extra,
                    "progressing_lesions": ", ".join(
                        ct.progressing_lesions + ct.progressing_new_lesions + ct.progressing_nontargets
                    )
                    or None,
                },
            )
        )
        update_nadirs(nadirs, ct.sizes)
        if ct.spd_complete and ct.category != "NE":
            spd_nadir = min(spd_nadir, ct.spd)
    best = best_overall_response(
        responses,
        anchor=timeline.anchor_date,
        order=RECIST_ORDER,
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
        warnings=tuple(baseline_warnings(timeline, ruleset)),
    )
