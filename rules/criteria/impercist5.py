"""imPERCIST5 (Ito 2019): size spec §7.3, worked examples P1, E5 and E7 (PET add-ons).

- The measure is the **sum of SULpeak of up to 5 hottest lesions, ≤ 2 per organ**, chosen afresh on every scan;
  at baseline only lesions measurable by PERCIST 1.0 (``SULpeak ≥ 1.5 × liver SULmean + 2 × SD``) are summed.
- **New FDG-avid lesions join the sum**; they do not define PMD by themselves (spec §7.4; E7 TP1: PMR although a new
  lesion appeared).
- PMD: sum ≥ +30 %; PMR: sum ≤ −30 % against the baseline sum (``impercist5.reference``, policy [D]); CMR: every
  lesion resolved; otherwise SMD. No 0.8-unit rule [S].
- Quality control is PERCIST 1.0's: liver SULmean within 20 % and < 0.3 SUL of baseline (``percist.liver_tolerance``),
  else NE (P1 FU3).

Categories come from ``rules/rulesets/impercist5.yaml``; measurement helpers from ``rules/criteria/pet.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rules.criteria import percist, pet
from rules.criteria.recist_family import best_overall_response
from rules.engine import Engine, RuleSet
from rules.results import CriterionAssessment, TimepointResponse, percent_change
from rules.timeline import Timeline

CRITERION = "imPERCIST5"


def _selection_line(label: str, chosen: list[pet.Uptake]) -> str:
    total = sum((u.sul for u in chosen), Decimal(0))
    terms = " + ".join(f"{pet.fmt_sul(u.sul)} ({u.name}{', new' if u.new else ''})" for u in chosen)
    return f"{label}: {terms or 'no lesion'} = {pet.fmt_sul(total)}"


def baseline_sum(
    ruleset: RuleSet,
    percist_rules: RuleSet,
    percist_flags: Mapping[str, Any],
    timeline: Timeline,
    *,
    is_tumour: pet.TumourFilter | None,
) -> tuple[list[pet.Uptake] | None, list[str], list[str]]:
    """The baseline lesions summed: the hottest measurable lesions (≤ 5, ≤ 2 per organ)."""
    lines: list[str] = []
    warnings: list[str] = []
    limit = pet.measurability_limit(percist_rules, timeline.established_baseline)
    found = pet.uptakes(timeline.established_baseline, pet.baseline_lesions(timeline), is_tumour=is_tumour)
    if limit.value is None:
        text = f"baseline measurability not checked: {limit.description}"
        if percist_flags["liver_reference_required"]:
            return None, [text + " → NE (percist.liver_reference_required)"], [text]
        warnings.append(text)
        lines.append(text)
        measurable = found
    else:
        measurable = [u for u in found if limit.holds(u.sul)]
        left_out = [u.name for u in found if u not in measurable]
        lines.append(
            f"baseline measurability limit {limit.description}"
            + (f"; not measurable: {', '.join(left_out)}" if left_out else "")
        )
    chosen = pet.select_hottest(
        measurable, max_total=ruleset.threshold("max_lesions"), max_per_organ=ruleset.threshold("max_lesions_per_organ")
    )
    if not chosen:
        warnings.append("no measurable lesion at the baseline PET: imPERCIST5 cannot be measured")
        return None, lines, warnings
    lines.append(_selection_line("baseline sum of SULpeak", chosen))
    return chosen, lines, warnings


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: pet.TumourFilter | None = None,
) -> CriterionAssessment:
    """imPERCIST5 at every follow-up PET (spec §7.3)."""
    ruleset = engine.rulebase[CRITERION]
    flags = ruleset.flag_values(overrides)
    percist_rules, percist_flags = percist.ruleset_and_flags(engine, overrides)
    if timeline.baseline is None or not pet.has_pet_values(timeline.baseline):
        return CriterionAssessment.of(ruleset, flags, warnings=("no baseline PET with SUL values",))
    if flags["reference"] not in ("baseline", "nadir"):
        raise ValueError(f"impercist5.reference must be 'baseline' or 'nadir', not {flags['reference']!r}")
    chosen_at_baseline, base_lines, warnings = baseline_sum(
        ruleset, percist_rules, percist_flags, timeline, is_tumour=is_tumour
    )
    base_total = sum((u.sul for u in chosen_at_baseline), Decimal(0)) if chosen_at_baseline else None
    reference = base_total
    avid = ruleset.threshold("new_lesion_avid_fraction_of_liver_mean")
    below_liver = ruleset.threshold("complete_resolution_fraction_of_liver_mean")
    responses: list[TimepointResponse] = []
    progression_date: dt.date | None = None
    for tp in pet.pet_followups(timeline):
        trace = list(base_lines)
        comparability = pet.scan_comparability(
            timeline.baseline,
            tp,
            rules=percist_rules,
            flags=percist_flags,
            liver_condition="liver_comparable",
            uptake=percist_rules.threshold("uptake_time_max_difference"),
            liver_required=bool(percist_flags["liver_reference_required"]),
            label="PERCIST",
        )
        trace += comparability.lines + comparability.failures
        new = pet.new_fdg_avid_lesions(tp, timeline, avid, is_tumour=is_tumour)
        trace += new.not_avid
        pool = pet.uptakes(tp, pet.baseline_lesions(timeline), is_tumour=is_tumour) + list(new.avid)
        chosen = pet.select_hottest(
            pool, max_total=ruleset.threshold("max_lesions"), max_per_organ=ruleset.threshold("max_lesions_per_organ")
        )
        total = sum((u.sul for u in chosen), Decimal(0))
        complete, complete_line = pet.complete_resolution(tp, timeline, below_liver, new, is_tumour=is_tumour)
        has_values = bool(chosen) or complete
        trace.append(_selection_line("sum of SULpeak (new lesions included)", chosen))
        evaluable = reference is not None and reference > 0 and comparability.comparable and has_values
        meets_pmd = meets_pmr = False
        if reference is not None and reference > 0 and has_values:
            meets_pmd = ruleset.threshold("pmd_fraction_of_reference").holds(total, reference)
            meets_pmr = ruleset.threshold("pmr_fraction_of_reference").holds(total, reference)
            label = "baseline sum" if flags["reference"] == "baseline" else "nadir sum"
            line = pet.change_line("sum", total, reference, label)
            pmd, pmr = ruleset.threshold("pmd_fraction_of_reference"), ruleset.threshold("pmr_fraction_of_reference")
            if meets_pmd:
                line += f" → meets PMD ({pet.relative_rule(pmd)})"
            elif meets_pmr:
                line += f" → meets PMR ({pet.relative_rule(pmr)})"
            else:
                line += f" → neither PMR ({pet.relative_rule(pmr)}) nor PMD ({pet.relative_rule(pmd)})"
            trace.append(line + ("" if evaluable else " [not used: NE]"))
        trace.append(complete_line)
        if new.avid:
            trace.append(
                "new FDG-avid lesion(s) "
                + pet.describe_uptakes(new.avid)
                + " join the sum; they do not define PMD by themselves (imPERCIST5)"
            )
        decision = engine.decide(
            CRITERION,
            "metabolic_response",
            {
                "quantitative_evaluable": evaluable,
                "complete_resolution": complete,
                "sum_meets_pmd": meets_pmd,
                "sum_meets_pmr": meets_pmr,
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
                percent_from_baseline=percent_change(total, base_total) if evaluable and base_total else None,
                progression_date=tp.scan_date if category == "PMD" else None,
                trace=tuple(trace),
                warnings=tuple("quantitative imPERCIST5 not evaluable: " + f for f in comparability.failures),
                extra={
                    "sul_peak_sum": total,
                    "baseline_sul_peak_sum": base_total,
                    "reference_sul_peak_sum": reference,
                    "summed_lesions": ", ".join(u.name for u in chosen) or None,
                    "new_lesions_in_sum": ", ".join(u.name for u in chosen if u.new) or None,
                    "liver_sul_mean": pet.liver_mean(tp),
                    "liver_comparable": comparability.comparable,
                },
            )
        )
        if flags["reference"] == "nadir" and evaluable and reference is not None:
            reference = min(reference, total)
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
        warnings=tuple(warnings),
    )
