"""PERCIST 1.0 (Wahl 2009; Practical PERCIST 2016): size spec §7.1, worked examples P1, E5 and E7 (PET add-ons).

- The measure is the SULpeak of the **single hottest lesion on each scan**; its identity may change between scans
  (P1 FU1: baseline hottest A 8.0, follow-up hottest B 5.5). Every follow-up is compared with the **baseline**, never
  the nadir (P1 FU2).
- The baseline hottest lesion must be measurable: ``SULpeak ≥ 1.5 × liver SULmean + 2 × SD`` (blood pool
  ``2.0 × mean + 2 × SD``); scans are comparable only if the liver SULmean differs by ≤ 20 % **and** < 0.3 SUL
  (and uptake times by < 15 min). Otherwise the quantitative result is NE; a new FDG-avid lesion is still PMD (P1 FU3).
- PMR: ≥ 30 % and ≥ 0.8 SUL decrease, no other lesion up > 30 %; PMD: > 30 % and > 0.8 SUL increase, TLG > 75 %,
  a new FDG-avid lesion, or (reader) unequivocal non-target progression; CMR: every lesion at background.
- After PMD there is no reset: later scans stay PMD (``percist.after_progression``; E7 TP2).

``evaluate_scan`` grades one follow-up on its own; iPERCIST and imPERCIST5 build on it and on
``baseline_reading``. Measurement helpers are in ``rules/criteria/pet.py``; every category comes from
``rules/rulesets/percist.yaml``. Only follow-ups with PET values are graded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from typing import Any

from rules.criteria import pet
from rules.criteria.burden import unequivocal_progression
from rules.criteria.recist_family import ResponseOrder, best_overall_response
from rules.engine import Engine, RuleSet
from rules.facts import LesionRole, LesionStatus
from rules.results import CriterionAssessment, TimepointResponse, percent_change
from rules.timeline import Timeline, Timepoint, lesion_name

CRITERION = "PERCIST-1.0"


class Category(str, Enum):
    """PERCIST 1.0 categories (Wahl 2009 Table; contract §5 codes)."""

    CMR = "CMR"
    """Complete metabolic response."""
    PMR = "PMR"
    """Partial metabolic response."""
    SMD = "SMD"
    """Stable metabolic disease."""
    PMD = "PMD"
    """Progressive metabolic disease."""
    NE = "NE"
    """Not evaluable quantitatively (quality control, measurability or missing values) and no new FDG-avid lesion."""


ORDER = ResponseOrder("CMR", "PMR", "SMD", "SMD", ("PMD",), "NE")
"""For the best-response search: PERCIST has no confirmation and no minimum duration of SMD [D]."""


@dataclass(frozen=True)
class PercistBaseline:
    """The baseline PET as PERCIST reads it."""

    hottest: pet.Uptake | None
    limit: pet.MeasurabilityLimit
    evaluable: bool
    """A measurable baseline hottest lesion exists (or measurability could not be checked and that is allowed)."""
    lines: tuple[str, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class PercistReading:
    """PERCIST 1.0 at one follow-up PET, graded against the baseline on its own."""

    tp: Timepoint
    category: str
    row: str
    quantitative_evaluable: bool
    hottest: pet.Uptake | None
    hottest_sul: Decimal | None
    percent_from_baseline: Fraction | None
    delta_sul: Fraction | None
    new_avid: tuple[pet.Uptake, ...]
    new_lesion_only: bool
    """PMD rests on new FDG-avid lesions alone (the hottest lesion, TLG and non-targets do not show PMD)."""
    trace: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def ruleset_and_flags(engine: Engine, overrides: Mapping[str, Any] | None) -> tuple[RuleSet, dict[str, Any]]:
    ruleset = engine.rulebase[CRITERION]
    return ruleset, ruleset.flag_values(overrides)


def baseline_reading(
    ruleset: RuleSet, flags: Mapping[str, Any], timeline: Timeline, *, is_tumour: pet.TumourFilter | None = None
) -> PercistBaseline:
    """The baseline hottest lesion and whether it is measurable (spec §7.1 [V:PMOD])."""
    lines: list[str] = []
    warnings: list[str] = []
    base = timeline.established_baseline
    found = pet.uptakes(base, pet.baseline_lesions(timeline), is_tumour=is_tumour)
    top, ties = pet.hottest(found)
    limit = pet.measurability_limit(ruleset, base)
    if top is None:
        return PercistBaseline(
            None,
            limit,
            False,
            ("baseline: no lesion SULpeak reported",),
            ("no SULpeak at the baseline PET: PERCIST cannot be measured",),
        )
    lines.append(
        f"baseline hottest lesion {top.name} SULpeak {pet.fmt_sul(top.sul)}"
        + (f" (tied with {', '.join(ties)}; chosen by name)" if ties else "")
    )
    measurable = limit.holds(top.sul)
    if measurable is None:
        text = f"baseline measurability not checked: {limit.description}"
        if flags["liver_reference_required"]:
            lines.append(text + " → quantitative NE (percist.liver_reference_required)")
            return PercistBaseline(top, limit, False, tuple(lines), (text,))
        warnings.append(text)
        lines.append(text)
        return PercistBaseline(top, limit, True, tuple(lines), tuple(warnings))
    verdict = "measurable" if measurable else "NOT measurable"
    lines.append(
        f"measurability: SULpeak {pet.fmt_sul(top.sul)} {'≥' if measurable else '<'} {limit.description} → {verdict}"
    )
    if not measurable:
        warnings.append(
            f"baseline hottest lesion {top.name} is below the PERCIST measurability limit "
            f"({limit.description}): no measurable target, only new lesions can be read"
        )
    return PercistBaseline(top, limit, measurable, tuple(lines), tuple(warnings))


def _tlg(
    ruleset: RuleSet,
    flags: Mapping[str, Any],
    timeline: Timeline,
    tp: Timepoint,
    new_avid: tuple[pet.Uptake, ...],
) -> tuple[bool, str, Decimal | None, Decimal | None]:
    """TLG > 75 % above baseline (PERCIST PMD): summed over baseline lesions with a baseline TLG (absent → 0) plus the
    new FDG-avid lesions reporting TLG [D]. Not applied when a baseline lesion's TLG is missing at the follow-up."""
    base_tlg = {
        lesion.lesion_id: m.tlg
        for lesion in pet.baseline_lesions(timeline)
        if (m := timeline.established_baseline.of(lesion.lesion_id)) is not None and m.tlg is not None
    }
    base_lesions = [lesion for lesion in pet.baseline_lesions(timeline) if lesion.lesion_id in base_tlg]
    if not base_lesions:
        return False, "TLG not reported at baseline: the TLG rule is not applied", None, None
    base_total = sum(base_tlg.values(), Decimal(0))
    total = Decimal(0)
    missing = []
    for lesion in base_lesions:
        m = tp.of(lesion.lesion_id)
        if m is not None and m.status is LesionStatus.ABSENT:
            continue
        if m is None or m.tlg is None:
            missing.append(lesion_name(lesion))
            continue
        total += m.tlg
    total += sum((u.measurement.tlg for u in new_avid if u.measurement.tlg is not None), Decimal(0))
    if missing:
        return False, f"TLG missing for {', '.join(missing)}: the TLG rule is not applied", base_total, None
    threshold = ruleset.threshold("tlg_pmd_fraction")
    meets = ruleset.holds("tlg_meets_pmd", flags, tlg=total, baseline_tlg=base_total)
    change = percent_change(total, base_total)
    return (
        meets,
        (
            f"TLG {pet.fmt_sul(total)} vs baseline {pet.fmt_sul(base_total)}"
            + (f" ({pet.fmt_pct_signed(change)})" if change is not None else "")
            + f": {'meets' if meets else 'does not meet'} PMD ({threshold.describe()} × baseline)"
        ),
        base_total,
        total,
    )


def _other_lesion_increases(
    ruleset: RuleSet, timeline: Timeline, tp: Timepoint, *, is_tumour: pet.TumourFilter | None
) -> list[str]:
    """PERCIST PMR requires no SUL or size increase > 30 % in other lesions (each against its own baseline)."""
    threshold = ruleset.threshold("other_lesion_increase_fraction")
    increases = []
    for lesion in pet.baseline_lesions(timeline):
        before, now = timeline.established_baseline.of(lesion.lesion_id), tp.of(lesion.lesion_id)
        if before is None or now is None or now.status is not LesionStatus.PRESENT:
            continue
        if is_tumour is not None and not is_tumour(lesion, now):
            continue
        if before.sul_peak and now.sul_peak is not None and threshold.holds(now.sul_peak, before.sul_peak):
            increases.append(
                f"{lesion_name(lesion)} SULpeak {pet.fmt_sul(before.sul_peak)} → {pet.fmt_sul(now.sul_peak)} "
                f"({pet.fmt_pct_signed(percent_change(now.sul_peak, before.sul_peak))})"
            )
        if (
            before.long_axis_mm
            and now.long_axis_mm is not None
            and threshold.holds(now.long_axis_mm, before.long_axis_mm)
        ):
            increases.append(
                f"{lesion_name(lesion)} long axis {before.long_axis_mm} → {now.long_axis_mm} mm "
                f"({pet.fmt_pct_signed(percent_change(now.long_axis_mm, before.long_axis_mm))})"
            )
    return increases


def evaluate_scan(
    engine: Engine,
    ruleset: RuleSet,
    flags: Mapping[str, Any],
    timeline: Timeline,
    tp: Timepoint,
    baseline: PercistBaseline,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> PercistReading:
    """PERCIST 1.0 at one follow-up PET against the baseline PET (spec §7.1), without the no-reset rule."""
    trace: list[str] = list(baseline.lines)
    warnings: list[str] = []
    comparability = pet.scan_comparability(
        timeline.established_baseline,
        tp,
        rules=ruleset,
        flags=flags,
        liver_condition="liver_comparable",
        uptake=ruleset.threshold("uptake_time_max_difference"),
        liver_required=bool(flags["liver_reference_required"]),
        label="PERCIST",
    )
    trace += comparability.lines
    trace += comparability.failures
    new = pet.new_fdg_avid_lesions(
        tp, timeline, ruleset.threshold("new_lesion_avid_fraction_of_liver_mean"), is_tumour=is_tumour
    )
    trace += new.not_avid
    if new.avid:
        trace.append("new FDG-avid lesion(s): " + pet.describe_uptakes(new.avid))

    found = pet.uptakes(tp, pet.baseline_lesions(timeline), is_tumour=is_tumour) + list(new.avid)
    top, ties = pet.hottest(found)
    below_liver = ruleset.threshold("complete_resolution_fraction_of_liver_mean")
    complete, complete_line = pet.complete_resolution(tp, timeline, below_liver, new, is_tumour=is_tumour)

    hottest_sul: Decimal | None = top.sul if top else None
    if top is None and complete:
        hottest_sul = Decimal(0)
        trace.append("no residual uptake: every lesion is reported absent (SULpeak taken as 0)")
    quantitative = baseline.evaluable and comparability.comparable and hottest_sul is not None
    if top is None and not complete:
        trace.append("no lesion SULpeak reported at this PET: the hottest lesion cannot be measured")
    pct = delta = None
    meets_pmd = meets_pmr = False
    base_top = baseline.hottest
    if base_top is not None and hottest_sul is not None:
        name = f"hottest lesion {top.name}{' (new)' if top.new else ''}" if top else "residual uptake"
        if ties:
            name += f" (tied with {', '.join(ties)})"
        pct = percent_change(hottest_sul, base_top.sul)
        delta = Fraction(hottest_sul) - Fraction(base_top.sul)
        pmd_fraction = ruleset.required_threshold("pmd_fraction_of_baseline", flags)
        pmd_absolute = ruleset.required_threshold("pmd_absolute_increase", flags)
        pmr_fraction = ruleset.required_threshold("pmr_fraction_of_baseline", flags)
        pmr_absolute = ruleset.required_threshold("pmr_absolute_decrease", flags)
        meets_pmd = ruleset.holds("hottest_meets_pmd", flags, hottest=hottest_sul, baseline=base_top.sul)
        meets_pmr = ruleset.holds("hottest_meets_pmr", flags, hottest=hottest_sul, baseline=base_top.sul)
        line = pet.change_line(f"{name} SULpeak", hottest_sul, base_top.sul, f"baseline hottest {base_top.name}")
        pmd_rule = f"{pet.relative_rule(pmd_fraction)} and {pet.op(pmd_absolute)} {pet.fmt_sul(pmd_absolute.value)} SUL increase"
        pmr_rule = f"{pet.relative_rule(pmr_fraction)} and {pet.op(pmr_absolute)} {pet.fmt_sul(pmr_absolute.value)} SUL decrease"
        if meets_pmd:
            line += f" → meets PMD ({pmd_rule})"
        elif meets_pmr:
            line += f" → meets PMR ({pmr_rule})"
        else:
            line += f" → neither PMR ({pmr_rule}) nor PMD ({pmd_rule})"
        trace.append(line + ("" if quantitative else " [not used: quantitative NE]"))
    trace.append(complete_line)
    tlg_meets, tlg_line, base_tlg, tlg = _tlg(ruleset, flags, timeline, tp, new.avid)
    trace.append(tlg_line)
    increases = _other_lesion_increases(ruleset, timeline, tp, is_tumour=is_tumour)
    if increases:
        trace.append("other lesions up > 30 %: " + "; ".join(increases))

    nontargets = [lesion for lesion in timeline.lesions.values() if lesion.role is LesionRole.NON_TARGET]
    progressing = [lesion_name(lesion) for lesion in nontargets if unequivocal_progression(tp.of(lesion.lesion_id))]
    nontarget_progression = "none"
    if progressing:
        nontarget_progression = "pmd" if flags["nontarget_progression_is_pmd"] else "ignored"
        trace.append(
            f"reader: unequivocal progression of {', '.join(progressing)}"
            + ("" if nontarget_progression == "pmd" else " (not used: percist.nontarget_progression_is_pmd off)")
        )

    decision = engine.decide(
        CRITERION,
        "metabolic_response",
        {
            "new_fdg_avid_lesion": bool(new.avid),
            "nontarget_progression": nontarget_progression,
            "quantitative_evaluable": quantitative,
            "hottest_meets_pmd": meets_pmd and quantitative,
            "tlg_meets_pmd": tlg_meets and quantitative,
            "complete_resolution": complete,
            "hottest_meets_pmr": meets_pmr,
            "other_lesion_increase": bool(increases),
        },
    )
    trace.append(decision.trace())
    category = decision["category"]
    new_only = (
        category == Category.PMD.value
        and bool(new.avid)
        and not (quantitative and (meets_pmd or tlg_meets))
        and nontarget_progression != "pmd"
    )
    if not comparability.comparable:
        warnings.append("quantitative PERCIST not evaluable: " + "; ".join(comparability.failures))
    liver = pet.liver_mean(tp)
    extra = {
        "scan_category": category,
        "hottest_lesion": top.name if top else None,
        "hottest_sul_peak": hottest_sul,
        "baseline_hottest_lesion": base_top.name if base_top else None,
        "baseline_hottest_sul_peak": base_top.sul if base_top else None,
        "delta_sul_peak": pet.as_decimal(delta),
        "liver_sul_mean": liver,
        "baseline_liver_sul_mean": pet.liver_mean(timeline.baseline),
        "liver_comparable": comparability.comparable,
        "measurability_limit": pet.as_decimal(baseline.limit.value),
        "new_fdg_avid_lesions": ", ".join(u.name for u in new.avid) or None,
        "tlg": tlg,
        "baseline_tlg": base_tlg,
        "new_lesion_only": new_only,
    }
    return PercistReading(
        tp,
        category,
        decision.row,
        quantitative,
        top,
        hottest_sul,
        pct,
        delta,
        new.avid,
        new_only,
        tuple(trace),
        tuple(warnings),
        extra,
    )


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> CriterionAssessment:
    """PERCIST 1.0 at every follow-up PET (spec §7.1)."""
    ruleset, flags = ruleset_and_flags(engine, overrides)
    if timeline.baseline is None or not pet.has_pet_values(timeline.baseline):
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline PET with SUL values",))
    baseline = baseline_reading(ruleset, flags, timeline, is_tumour=is_tumour)
    responses: list[TimepointResponse] = []
    progression_date: dt.date | None = None
    for tp in pet.pet_followups(timeline):
        reading = evaluate_scan(engine, ruleset, flags, timeline, tp, baseline, is_tumour=is_tumour)
        carry = engine.decide(
            CRITERION,
            "after_progression",
            {
                "progression_recorded": progression_date is not None,
                "after_progression": flags["after_progression"],
            },
        )
        trace = list(reading.trace)
        category = reading.category
        if carry["carry_pmd"]:
            trace.append(carry.trace() + f" (this scan alone: {reading.category})")
            category = Category.PMD.value
        elif progression_date is not None:
            trace.append(carry.trace())
        if category == Category.PMD.value and progression_date is None:
            progression_date = tp.scan_date
        responses.append(
            TimepointResponse(
                criterion=CRITERION,
                scan_date=tp.scan_date,
                category=category,
                new_lesions="present" if reading.new_avid else "absent",
                percent_from_baseline=reading.percent_from_baseline if reading.quantitative_evaluable else None,
                progression_date=progression_date if category == Category.PMD.value else None,
                trace=tuple(trace),
                warnings=reading.warnings,
                extra=dict(
                    reading.extra, post_progression=progression_date is not None and progression_date < tp.scan_date
                ),
            )
        )
    best = best_overall_response(
        responses,
        anchor=timeline.anchor_date,
        order=ORDER,
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
        warnings=baseline.warnings,
    )
