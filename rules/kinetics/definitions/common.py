"""Pieces several definitions share: scope, RECIST PD at E2, ratio tests, new-lesion spread, the fast-progression
scan and death branches, the result and its wording (spec §3.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from rules.engine import Decision, Threshold, format_fraction
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import NOT_EVALUABLE, UNDEFINED, UNKNOWN, Component, KineticsRules
from rules.kinetics.wording import fmt, mm
from rules.results import DefinitionResult


def recist_pd(q: KineticQuantities) -> Component:
    """RECIST 1.1 PD at E2: true / false, unknown when NE or not assessed."""
    if q.recist_e2 is None or q.recist_e2 == "NE":
        return UNKNOWN
    return q.recist_e2 == "PD"


def ratio_component(
    rules: KineticsRules, threshold: str, ratio: float | None, reference: float | None
) -> tuple[Component, bool]:
    """A growth-ratio test: undefined when the reference rate is ≤ 0 (K4 logic), unknown when not computed."""
    if reference is not None and reference <= 0:
        return UNDEFINED, False
    if ratio is None:
        return UNKNOWN, False
    return rules.float_test(threshold, ratio)


def definition_result(
    rules: KineticsRules,
    code: str,
    decision: Decision,
    details: str,
    inputs: Mapping[str, Any],
    borderline: bool = False,
    extra: str = "",
) -> DefinitionResult:
    reason = f"{decision['code']}: {decision.because}. {details}"
    if borderline:
        tolerance = rules.threshold("borderline_relative_tolerance").value * 100
        reason += f" BORDERLINE: a value is within ±{format_fraction(tolerance)} % of its threshold."
    if extra:
        reason += " " + extra
    return DefinitionResult(
        code=code,
        status=decision["status"],
        reason=reason.strip(),
        source=rules.definition(code)["source"],
        inputs={**inputs, "rule": decision.trace()},
        borderline=borderline,
    )


def out_of_scope(rules: KineticsRules, code: str, q: KineticQuantities) -> DefinitionResult | None:
    """Not evaluable before looking at the definition when its scans are missing (table definition_scope)."""
    decision = rules.decide(
        "definition_scope",
        {
            "first_evaluation": "present" if q.e2 is not None else "missing",
            "needs_reference": bool(rules.definition(code)["needs_reference"]),
            "reference": q.reference,
        },
    )
    if decision["in_scope"]:
        return None
    details = q.reference_note if decision["code"] != "E2_MISSING" else "no first evaluation E2"
    return DefinitionResult(
        code=code,
        status=NOT_EVALUABLE,
        reason=f"{decision['code']}: {decision.because}. {details}.",
        source=rules.definition(code)["source"],
        inputs={"e0": q.e0, "e1": q.e1, "e2": q.e2, "reference": q.reference, "rule": decision.trace()},
    )


def tgr_numbers(q: KineticQuantities) -> str:
    return (
        f"TGR_ref {fmt(q.tgr_reference)} %/month, TGR_exp {fmt(q.tgr_experimental)} %/month, "
        f"ratio {fmt(q.tgr_ratio) if q.tgr_ratio is not None else 'undefined' if q.tgr_reference is not None and q.tgr_reference <= 0 else 'n/a'}, "
        f"ΔTGR {fmt(q.tgr_difference)}"
    )


def percent_threshold(threshold: Threshold) -> str:
    """A fraction-of-reference threshold (6/5) as the percent change it means ("> 20 %")."""
    op = {("at-least", True): "≥", ("at-least", False): ">", ("at-most", True): "≤", ("at-most", False): "<"}
    return f"{op[(threshold.direction, threshold.inclusive)]} {format_fraction((threshold.value - 1) * 100)} %"


def percent_change(q: KineticQuantities) -> str:
    if q.percent_e1_e2 is not None:
        return f"{'+' if q.percent_e1_e2 > 0 else ''}{fmt(q.percent_e1_e2)} %"
    return f"n/a (partial S(E2) {mm(q.s2)})" if q.s2 is not None else "n/a"


def recist_pd_and_tgr_ratio(rules: KineticsRules, q: KineticQuantities, code: str, threshold: str) -> DefinitionResult:
    """H1 Champiat 2017 and H4b Kanjanapan 2019: RECIST PD at E2 AND TGR ratio ≥ 2."""
    out = out_of_scope(rules, code, q)
    if out:
        return out
    pd = recist_pd(q)
    ratio, borderline = ratio_component(rules, threshold, q.tgr_ratio, q.tgr_reference)
    decision = rules.decide("recist_pd_and_tgr_ratio", {"recist_pd": pd, "tgr_ratio_at_least_2": ratio})
    details = (
        f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; {tgr_numbers(q)} "
        f"(threshold {rules.threshold(threshold).describe()})."
    )
    return definition_result(
        rules,
        code,
        decision,
        details,
        {
            "recist_e2": q.recist_e2,
            "tgr_reference": q.tgr_reference,
            "tgr_experimental": q.tgr_experimental,
            "tgr_ratio": q.tgr_ratio,
            "threshold": rules.threshold(threshold).describe(),
            "e0": q.e0,
            "e1": q.e1,
            "e2": q.e2,
        },
        borderline,
    )


def new_lesions_in_involved_organ(rules: KineticsRules, threshold: str, q: KineticQuantities) -> tuple[Component, str]:
    summary = q.new_lesions
    counts = summary.per_involved_organ()
    organ, most = counts.most_common(1)[0] if counts else (None, 0)
    limit = rules.threshold(threshold)
    if limit.holds(most):
        return True, f"{most} new lesions in {organ} (involved at E1)"
    if summary.ambiguous():
        return UNKNOWN, "organ unknown for new lesion(s) " + ", ".join(summary.ambiguous())
    return False, f"{summary.count} new lesion(s); at most {most} in one involved organ"


def new_organ_component(q: KineticQuantities) -> tuple[Component, str]:
    summary = q.new_lesions
    organs = summary.new_organs()
    if organs:
        return True, "new organ(s): " + ", ".join(organs)
    if summary.ambiguous():
        return UNKNOWN, "organ unknown for new lesion(s) " + ", ".join(summary.ambiguous())
    return False, "no new organ"


def fast_progression_scan_branch(
    rules: KineticsRules, q: KineticQuantities, anchor: dt.date | None, anchor_name: str
) -> tuple[Decision, int | None, bool, str]:
    """The scan branch of both fast-progression definitions, with its arithmetic."""
    days = None if anchor is None or q.e2 is None else (q.e2 - anchor).days
    within = rules.days_test("fast_progression_max_days", days)
    if q.e2 is None and q.deceased is not None:
        within = False  # died without any post-baseline scan: the scan branch can no longer happen
    increase, borderline = rules.sum_increase_test("fast_progression_sum_increase", q.s1, q.s2, q.s2_complete)
    decision = rules.decide(
        "fast_progression_scan_branch", {"scan_within_42_days": within, "sum_increase_at_least_50": increase}
    )
    if q.e2 is None:
        return decision, days, borderline, "no post-baseline scan" + (" before death" if q.deceased else "")
    limit = rules.threshold("fast_progression_sum_increase").value
    cross = ""
    if q.s1 is not None and q.s2 is not None:
        # Spec §3.2.8 integer-safe form of the 50 % test: S2·2 ≥ S1·3.
        left, right = q.s2 * limit.denominator, q.s1 * limit.numerator
        cross = (
            f" ({format(q.s2.normalize(), 'f')}·{limit.denominator} = {format(left.normalize(), 'f')} vs "
            f"{format(q.s1.normalize(), 'f')}·{limit.numerator} = {format(right.normalize(), 'f')})"
        )
    text = (
        f"E2 {days if days is not None else '?'} days after {anchor_name} "
        f"({rules.threshold('fast_progression_max_days').describe()} required); %Δ(E1→E2) {percent_change(q)}{cross}"
    )
    return decision, days, borderline, text


def death_branch(
    rules: KineticsRules,
    q: KineticQuantities,
    anchor: dt.date | None,
    threshold: str,
    table: str,
    extra: Mapping[str, Any],
) -> Decision:
    days = None if anchor is None or q.deceased is None else (q.deceased - anchor).days
    cause = UNKNOWN if q.death_from_progression is None else bool(q.death_from_progression)
    return rules.decide(
        table,
        {
            "deceased": q.deceased is not None,
            "death_within_84_days": rules.days_test(threshold, days),
            "death_from_progression": cause,
            **extra,
        },
    )


__all__ = [
    "death_branch",
    "definition_result",
    "fast_progression_scan_branch",
    "new_lesions_in_involved_organ",
    "new_organ_component",
    "out_of_scope",
    "percent_change",
    "percent_threshold",
    "ratio_component",
    "recist_pd",
    "recist_pd_and_tgr_ratio",
    "tgr_numbers",
]
