"""Tumour growth kinetics for one patient: measured quantities, every definition, and the flags and notes around
them (spec §2–§3, §8)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from rules.engine import Decision, Engine, Threshold, format_fraction
from rules.kinetics.quantities import KineticQuantities, kinetic_quantities
from rules.kinetics.ruleset import NOT_EVALUABLE, UNDEFINED, UNKNOWN, Component, KineticsRules
from rules.kinetics.wording import fmt, mm
from rules.results import CriterionAssessment, DefinitionResult, KineticsResult
from rules.therapy_classes import class_label
from rules.timeline import Timeline

DEFINITION_CODES = (
    "champiat-2017",
    "saada-bouzid-2017",
    "kato-2017",
    "ferrara-2018",
    "kanjanapan-2019",
    "lo-russo-2019",
    "matos-2020",
    "kim-2019",
    "kas-2020",
    "fast-progression-oak",
    "fast-progression-ferrara-2020",
    "early-death",
)
"""Contract §5 codes in ``{C}/CodeSystem/hyperprogression``, in the order they are reported."""


# --- definitions (spec §3.2) ----------------------------------------------------------------------------


def _recist_pd(q: KineticQuantities) -> Component:
    """RECIST 1.1 PD at E2: true / false, unknown when NE or not assessed."""
    if q.recist_e2 is None or q.recist_e2 == "NE":
        return UNKNOWN
    return q.recist_e2 == "PD"


def _ratio_component(
    rules: KineticsRules, threshold: str, ratio: float | None, reference: float | None
) -> tuple[Component, bool]:
    """A growth-ratio test: undefined when the reference rate is ≤ 0 (K4 logic), unknown when not computed."""
    if reference is not None and reference <= 0:
        return UNDEFINED, False
    if ratio is None:
        return UNKNOWN, False
    return rules.float_test(threshold, ratio)


def _result(
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


def _scope(rules: KineticsRules, code: str, q: KineticQuantities) -> DefinitionResult | None:
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


def _tgr_numbers(q: KineticQuantities) -> str:
    return (
        f"TGR_ref {fmt(q.tgr_reference)} %/month, TGR_exp {fmt(q.tgr_experimental)} %/month, "
        f"ratio {fmt(q.tgr_ratio) if q.tgr_ratio is not None else 'undefined' if q.tgr_reference is not None and q.tgr_reference <= 0 else 'n/a'}, "
        f"ΔTGR {fmt(q.tgr_difference)}"
    )


def _percent_threshold(threshold: Threshold) -> str:
    """A fraction-of-reference threshold (6/5) as the percent change it means ("> 20 %")."""
    op = {("at-least", True): "≥", ("at-least", False): ">", ("at-most", True): "≤", ("at-most", False): "<"}
    return f"{op[(threshold.direction, threshold.inclusive)]} {format_fraction((threshold.value - 1) * 100)} %"


def _pct(q: KineticQuantities) -> str:
    if q.percent_e1_e2 is not None:
        return f"{'+' if q.percent_e1_e2 > 0 else ''}{fmt(q.percent_e1_e2)} %"
    return f"n/a (partial S(E2) {mm(q.s2)})" if q.s2 is not None else "n/a"


def _recist_ratio_definition(rules: KineticsRules, q: KineticQuantities, code: str, threshold: str) -> DefinitionResult:
    """H1 Champiat 2017 and H4b Kanjanapan 2019: RECIST PD at E2 AND TGR ratio ≥ 2."""
    out = _scope(rules, code, q)
    if out:
        return out
    pd = _recist_pd(q)
    ratio, borderline = _ratio_component(rules, threshold, q.tgr_ratio, q.tgr_reference)
    decision = rules.decide("recist_pd_and_tgr_ratio", {"recist_pd": pd, "tgr_ratio_at_least_2": ratio})
    details = (
        f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; {_tgr_numbers(q)} "
        f"(threshold {rules.threshold(threshold).describe()})."
    )
    return _result(
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


def champiat_2017(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H1 (spec §3.2.1): RECIST PD at E2 and TGR_exp/TGR_ref ≥ 2."""
    return _recist_ratio_definition(rules, q, "champiat-2017", "champiat_tgr_ratio")


def kanjanapan_2019(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H4b (spec §3.1): as H1 (RECIST PD at E2 and TGR ratio ≥ 2)."""
    return _recist_ratio_definition(rules, q, "kanjanapan-2019", "kanjanapan_tgr_ratio")


def saada_bouzid_2017(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H2 (spec §3.2.2): TGKR ≥ 2; RECIST PD too when ``H2_REQUIRE_PD``."""
    code = "saada-bouzid-2017"
    out = _scope(rules, code, q)
    if out:
        return out
    ratio, borderline = _ratio_component(rules, "saada_bouzid_tgk_ratio", q.tgk_ratio, q.tgk_reference)
    require = bool(rules.flag("H2_REQUIRE_PD"))
    decision = rules.decide(
        "saada_bouzid_2017", {"require_pd": require, "recist_pd": _recist_pd(q), "tgk_ratio_at_least_2": ratio}
    )
    details = (
        f"TGK_ref {fmt(q.tgk_reference)} mm/month, TGK_exp {fmt(q.tgk_experimental)} mm/month, "
        f"TGKR {fmt(q.tgk_ratio) if q.tgk_ratio is not None else 'undefined' if ratio == UNDEFINED else 'n/a'} "
        f"(threshold {rules.threshold('saada_bouzid_tgk_ratio').describe()}); RECIST 1.1 at E2 {q.recist_e2 or 'n/a'} "
        f"(H2_REQUIRE_PD = {str(require).lower()})."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "tgk_reference": q.tgk_reference,
            "tgk_experimental": q.tgk_experimental,
            "tgk_ratio": q.tgk_ratio,
            "recist_e2": q.recist_e2,
            "require_pd": require,
        },
        borderline,
    )


def kato_2017(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H3 (spec §3.2.3): TTF < 2 months AND %Δ(E1→E2) > 50 AND pace ratio > 2."""
    code = "kato-2017"
    out = _scope(rules, code, q)
    if out:
        return out
    burden, b1 = rules.sum_increase_test("kato_burden_increase", q.s1, q.s2, q.s2_complete)
    pace, b2 = _ratio_component(rules, "kato_pace_ratio", q.pace_ratio, q.pace_reference)
    decision = rules.decide(
        "kato_2017", {"ttf_under_two_months": q.ttf_state, "burden_over_50": burden, "pace_ratio_over_2": pace}
    )
    details = (
        f"{q.ttf_note}; %Δ(E1→E2) {_pct(q)} ({_percent_threshold(rules.threshold('kato_burden_increase'))} "
        f"required); pace_ref {fmt(q.pace_reference)} %/month, "
        f"pace_exp {fmt(q.pace_experimental)} %/month, pace ratio "
        f"{fmt(q.pace_ratio) if q.pace_ratio is not None else 'undefined' if pace == UNDEFINED else 'n/a'} "
        f"({rules.threshold('kato_pace_ratio').describe()} required)."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "ttf_days": q.ttf_days,
            "ttf": q.ttf_state,
            "percent_e1_e2": q.percent_e1_e2,
            "pace_reference": q.pace_reference,
            "pace_experimental": q.pace_experimental,
            "pace_ratio": q.pace_ratio,
        },
        b1 or b2,
    )


def ferrara_2018(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H4 (spec §3.2.4): RECIST PD at E2 AND ΔTGR > 50."""
    code = "ferrara-2018"
    out = _scope(rules, code, q)
    if out:
        return out
    delta, borderline = rules.float_test("ferrara_delta_tgr", q.tgr_difference)
    decision = rules.decide("ferrara_2018", {"recist_pd": _recist_pd(q), "delta_tgr_over_50": delta})
    details = f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; {_tgr_numbers(q)} (ΔTGR {rules.threshold('ferrara_delta_tgr').describe()} required)."
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "recist_e2": q.recist_e2,
            "tgr_reference": q.tgr_reference,
            "tgr_experimental": q.tgr_experimental,
            "tgr_difference": q.tgr_difference,
        },
        borderline,
    )


def _ecog_component(rules: KineticsRules, q: KineticQuantities) -> tuple[Component, str]:
    """Lo Russo criterion 5 by ``LR_ECOG_MODE`` (spec §3.2.5)."""
    mode = rules.flag("LR_ECOG_MODE")
    if not q.ecog_window:
        return UNKNOWN, "no ECOG recorded in the first 2 months"
    worst = max(value for _, value in q.ecog_window)
    if mode == "reaches_ge_2":
        reaches = rules.threshold("lorusso_ecog_level").holds(worst)
        worse = q.ecog_baseline is None or worst > q.ecog_baseline
        return (
            reaches and worse,
            f"ECOG {q.ecog_baseline if q.ecog_baseline is not None else '?'} → {worst} (reaches_ge_2)",
        )
    if q.ecog_baseline is None:
        return UNKNOWN, f"ECOG {worst} in the first 2 months but no baseline ECOG (delta_ge_2)"
    return (
        rules.threshold("lorusso_ecog_worsening").holds(worst - q.ecog_baseline),
        f"ECOG {q.ecog_baseline} → {worst} (delta_ge_2)",
    )


def _new_lesions_in_involved_organ(rules: KineticsRules, threshold: str, q: KineticQuantities) -> tuple[Component, str]:
    summary = q.new_lesions
    counts = summary.per_involved_organ()
    organ, most = counts.most_common(1)[0] if counts else (None, 0)
    limit = rules.threshold(threshold)
    if limit.holds(most):
        return True, f"{most} new lesions in {organ} (involved at E1)"
    if summary.ambiguous():
        return UNKNOWN, "organ unknown for new lesion(s) " + ", ".join(summary.ambiguous())
    return False, f"{summary.count} new lesion(s); at most {most} in one involved organ"


def _new_organ(q: KineticQuantities) -> tuple[Component, str]:
    summary = q.new_lesions
    organs = summary.new_organs()
    if organs:
        return True, "new organ(s): " + ", ".join(organs)
    if summary.ambiguous():
        return UNKNOWN, "organ unknown for new lesion(s) " + ", ".join(summary.ambiguous())
    return False, "no new organ"


def lo_russo_2019(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H5 (spec §3.2.5): ≥ 3 of 5 clinical-radiological criteria; RECIST PD too when ``H5_REQUIRE_PD``."""
    code = "lo-russo-2019"
    out = _scope(rules, code, q)
    if out:
        return out
    ttf = q.ttf_state if isinstance(q.ttf_state, bool) else UNKNOWN
    burden, borderline = rules.sum_increase_test("lorusso_burden_increase", q.s1, q.s2, q.s2_complete)
    involved, involved_note = _new_lesions_in_involved_organ(rules, "lorusso_new_lesions_in_involved_organ", q)
    new_organ, organ_note = _new_organ(q)
    ecog, ecog_note = _ecog_component(rules, q)
    criteria = {
        "ttf_under_two_months": ttf,
        "burden_increase_at_least_50": burden,
        "two_new_lesions_in_involved_organ": involved,
        "new_organ": new_organ,
        "ecog_worsening": ecog,
    }
    met = sum(1 for v in criteria.values() if v is True)
    possible = met + sum(1 for v in criteria.values() if v == UNKNOWN)
    require = bool(rules.flag("H5_REQUIRE_PD"))
    decision = rules.decide(
        "lo_russo_2019",
        {"criteria_met": met, "criteria_possible": possible, "recist_pd": _recist_pd(q), "require_pd": require},
    )
    mark = {True: "✓", False: "✗", UNKNOWN: "?"}
    details = (
        f"{met}/5 met ({possible - met} unknown): 1 {q.ttf_note} {mark[ttf]}; 2 %Δ(E1→E2) {_pct(q)} "
        f"{_percent_threshold(rules.threshold('lorusso_burden_increase'))} "
        f"{mark[burden]}; 3 {involved_note} {mark[involved]}; 4 {organ_note} {mark[new_organ]}; 5 {ecog_note} "
        f"{mark[ecog]}; RECIST 1.1 at E2 {q.recist_e2 or 'n/a'} (H5_REQUIRE_PD = {str(require).lower()})."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            **criteria,
            "criteria_met": met,
            "criteria_possible": possible,
            "recist_e2": q.recist_e2,
            "require_pd": require,
        },
        borderline,
    )


def matos_2020(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H6 (spec §3.2.6, engine default [D]; combination [U]): first evaluation ≤ 2 months, RECIST PD, and
    > 40 % target increase or (≥ 20 % and new-lesion spread) when ``MATOS_NEWLESION_BRANCH``."""
    code = "matos-2020"
    out = _scope(rules, code, q)
    if out:
        return out
    days = q.days_from_c1d1(q.e2)
    within = rules.days_test("matos_first_evaluation_max_days", days)
    over_40, b1 = rules.sum_increase_test("matos_burden_increase", q.s1, q.s2, q.s2_complete)
    at_least_20, b2 = rules.sum_increase_test("matos_branch_burden_increase", q.s1, q.s2, q.s2_complete)
    involved, involved_note = _new_lesions_in_involved_organ(rules, "matos_new_lesions_in_involved_organ", q)
    new_organ, organ_note = _new_organ(q)
    spread = rules.decide(
        "matos_new_lesion_spread", {"new_lesions_in_involved_organ": involved, "new_organ": new_organ}
    )
    branch = bool(rules.flag("MATOS_NEWLESION_BRANCH"))
    growth = rules.decide(
        "matos_early_growth",
        {
            "burden_over_40": over_40,
            "newlesion_branch": branch,
            "burden_at_least_20": at_least_20,
            "new_lesion_spread": spread["spread"],
        },
    )
    decision = rules.decide(
        "matos_2020",
        {"first_evaluation_within_two_months": within, "recist_pd": _recist_pd(q), "early_growth": growth["growth"]},
    )
    details = (
        f"first evaluation {days if days is not None else '?'} days after C1D1 "
        f"({rules.threshold('matos_first_evaluation_max_days').describe()} required); "
        f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; %Δ(E1→E2) {_pct(q)} "
        f"({_percent_threshold(rules.threshold('matos_burden_increase'))} for the 40 % rule, "
        f"{_percent_threshold(rules.threshold('matos_branch_burden_increase'))} for the new-lesion branch); "
        f"{involved_note}; {organ_note}; early growth: {growth.because} "
        f"(MATOS_NEWLESION_BRANCH = {str(branch).lower()})."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "days_c1d1_to_e2": days,
            "recist_e2": q.recist_e2,
            "percent_e1_e2": q.percent_e1_e2,
            "burden_over_40": over_40,
            "burden_at_least_20": at_least_20,
            "new_lesion_spread": spread["spread"],
            "newlesion_branch": branch,
            "early_growth": growth["growth"],
        },
        b1 or b2,
        extra="Provisional: the Matos 2020 combination logic is unverified [U] (spec §3.2.6).",
    )


def kim_2019(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H7 (spec §3.1) PROVISIONAL [U]: TGR/TGK ratios and TTF < 2 months within 12-week windows; verdicts only
    where every reading of the unverified conjunction agrees (table kim_2019)."""
    code = "kim-2019"
    provisional = (
        "Provisional [U]: Kim 2019's exact conjunction and ratio cut-offs are unverified (spec §3.1 H7); "
        "only its stated pieces are implemented."
    )
    out = _scope(rules, code, q)
    if out:
        return dataclasses.replace(out, reason=f"{out.reason} {provisional}")
    before = None if q.c1d1 is None or q.e0 is None else (q.c1d1 - q.e0).days
    after = q.days_from_c1d1(q.e2)
    if before is None or after is None:
        windows: Component = UNKNOWN
    else:
        windows = rules.days_test("kim_reference_window_days", before) and rules.days_test(
            "kim_experimental_window_days", after
        )
    tgr, b1 = _ratio_component(rules, "kim_ratio", q.tgr_ratio, q.tgr_reference)
    tgk, b2 = _ratio_component(rules, "kim_ratio", q.tgk_ratio, q.tgk_reference)
    ratios = rules.decide("kim_ratios", {"tgr_ratio_at_least_2": tgr, "tgk_ratio_at_least_2": tgk})
    decision = rules.decide(
        "kim_2019", {"windows": windows, "ttf_under_two_months": q.ttf_state, "ratios": ratios["ratios"]}
    )
    details = (
        f"E0 {before if before is not None else '?'} days before and E2 {after if after is not None else '?'} days "
        f"after C1D1 ({rules.threshold('kim_reference_window_days').describe()} and "
        f"{rules.threshold('kim_experimental_window_days').describe()}); {q.ttf_note}; "
        f"TGR ratio {fmt(q.tgr_ratio)}, TGKR {fmt(q.tgk_ratio)} "
        f"(cut-off {rules.threshold('kim_ratio').describe()} assumed): {ratios.because}."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "days_e0_before_c1d1": before,
            "days_c1d1_to_e2": after,
            "windows": windows,
            "ttf": q.ttf_state,
            "tgr_ratio": q.tgr_ratio,
            "tgk_ratio": q.tgk_ratio,
            "ratios": ratios["ratios"],
            "provisional": True,
        },
        b1 or b2,
        extra=provisional,
    )


def kas_2020(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H8 (spec §3.2.7): RECIST increase > 20 % (``KAS_PROGRESSION_COMPONENT``) AND ΔTGR > 100."""
    code = "kas-2020"
    out = _scope(rules, code, q)
    if out:
        return out
    over_20, b1 = rules.sum_increase_test("kas_burden_increase", q.s1, q.s2, q.s2_complete)
    delta, b2 = rules.float_test("kas_delta_tgr", q.tgr_difference)
    component = rules.flag("KAS_PROGRESSION_COMPONENT")
    decision = rules.decide(
        "kas_2020",
        {
            "progression_component": component,
            "target_sum_over_20": over_20,
            "recist_pd": _recist_pd(q),
            "delta_tgr_over_100": delta,
        },
    )
    details = (
        f"%Δ(E1→E2) {_pct(q)} ({_percent_threshold(rules.threshold('kas_burden_increase'))} required); "
        f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; {_tgr_numbers(q)} "
        f"(ΔTGR {rules.threshold('kas_delta_tgr').describe()} required; KAS_PROGRESSION_COMPONENT = {component})."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "percent_e1_e2": q.percent_e1_e2,
            "recist_e2": q.recist_e2,
            "tgr_reference": q.tgr_reference,
            "tgr_experimental": q.tgr_experimental,
            "tgr_difference": q.tgr_difference,
            "progression_component": component,
        },
        b1 or b2,
    )


def _fp_scan_branch(
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
        f"({rules.threshold('fast_progression_max_days').describe()} required); %Δ(E1→E2) {_pct(q)}{cross}"
    )
    return decision, days, borderline, text


def _death_branch(
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


def fast_progression_oak(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """FP (Gandara 2021, OAK; spec §3.2.8): (E2 ≤ 42 days after C1D1 and S2 ≥ 1.5·S1) or (death from progression
    ≤ 84 days after C1D1 with no post-baseline scan)."""
    code = "fast-progression-oak"
    scan, days, borderline, scan_text = _fp_scan_branch(rules, q, q.c1d1, "C1D1")
    death = _death_branch(
        rules,
        q,
        q.c1d1,
        "fast_progression_death_max_days",
        "fast_progression_death_branch",
        {"post_baseline_scan": q.post_baseline_scan},
    )
    decision = rules.decide("fast_progression_oak", {"scan_branch": scan["branch"], "death_branch": death["branch"]})
    death_days = q.days_from_c1d1(q.deceased)
    details = (
        f"scan branch: {scan_text} → {scan.because}; death branch: "
        + (
            f"death {q.deceased} ({death_days if death_days is not None else '?'} days after C1D1, cause "
            f"{'progression' if q.death_from_progression else 'unknown' if q.death_from_progression is None else 'other'}) → "
            if q.deceased
            else ""
        )
        + f"{death.because}."
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {
            "days_c1d1_to_e2": days,
            "percent_e1_e2": q.percent_e1_e2,
            "scan_branch": scan["branch"],
            "death_branch": death["branch"],
            "deceased": q.deceased,
            "days_c1d1_to_death": death_days,
            "post_baseline_scan": q.post_baseline_scan,
        },
        borderline,
    )


def fast_progression_ferrara_2020(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """FP′ (Ferrara 2020; spec §3.2.8): E2 ≤ 42 days after E1 and S2 ≥ 1.5·S1."""
    code = "fast-progression-ferrara-2020"
    scan, days, borderline, scan_text = _fp_scan_branch(rules, q, q.e1, "E1")
    decision = rules.decide("fast_progression_ferrara_2020", {"scan_branch": scan["branch"]})
    details = f"{scan_text} → {scan.because}."
    return _result(
        rules,
        code,
        decision,
        details,
        {"days_e1_to_e2": days, "percent_e1_e2": q.percent_e1_e2, "scan_branch": scan["branch"]},
        borderline,
    )


def early_death(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """ED (Ferrara 2020; spec §3.2.8): death from progression ≤ 84 days after the baseline CT (E1)."""
    code = "early-death"
    decision = _death_branch(rules, q, q.e1, "early_death_max_days", "early_death", {})
    days = None if q.e1 is None or q.deceased is None else (q.deceased - q.e1).days
    details = (
        f"death {q.deceased}, {days if days is not None else '?'} days after E1 {q.e1} "
        f"({rules.threshold('early_death_max_days').describe()} required), cause "
        f"{'progression' if q.death_from_progression else 'unknown' if q.death_from_progression is None else 'other'}."
        if q.deceased
        else ""
    )
    return _result(
        rules,
        code,
        decision,
        details,
        {"deceased": q.deceased, "days_e1_to_death": days, "death_from_progression": q.death_from_progression},
    )


DEFINITIONS = {
    "champiat-2017": champiat_2017,
    "saada-bouzid-2017": saada_bouzid_2017,
    "kato-2017": kato_2017,
    "ferrara-2018": ferrara_2018,
    "kanjanapan-2019": kanjanapan_2019,
    "lo-russo-2019": lo_russo_2019,
    "matos-2020": matos_2020,
    "kim-2019": kim_2019,
    "kas-2020": kas_2020,
    "fast-progression-oak": fast_progression_oak,
    "fast-progression-ferrara-2020": fast_progression_ferrara_2020,
    "early-death": early_death,
}


def evaluate_definitions(
    engine: Engine, q: KineticQuantities, overrides: Mapping[str, Any] | None = None
) -> tuple[DefinitionResult, ...]:
    """Every definition of spec §3.1 on measured quantities, in contract order."""
    rules = KineticsRules(engine, overrides)
    return tuple(DEFINITIONS[code](rules, q) for code in DEFINITION_CODES)


def assess_kinetics(
    engine: Engine, timeline: Timeline, recist: CriterionAssessment | None, overrides: Mapping[str, Any] | None = None
) -> KineticsResult:
    """TGR/TGK around C1D1 and every hyperprogression / fast-progression / early-death definition.

    ``recist`` is the RECIST 1.1 assessment of the same timeline (``rules.criteria.recist11.assess``): RECIST
    PD at E2 comes from it.
    """
    q = kinetic_quantities(engine, timeline, recist, overrides)
    definitions = evaluate_definitions(engine, q, overrides)
    flags = list(q.flags)
    validation = _class_validation_note(KineticsRules(engine, overrides), timeline)
    if validation is not None:
        flags.append("THERAPY_CLASS_NOT_VALIDATED")
        definitions = tuple(
            dataclasses.replace(
                d,
                reason=f"{d.reason} {validation}",
                inputs={**d.inputs, "therapy_class": timeline.therapy.therapy_class if timeline.therapy else None},
            )
            for d in definitions
        )
    for result in definitions:
        code = result.reason.split(":", 1)[0]
        if code == "UNDEFINED_RATIO" and code not in flags:
            flags.append(code)
        if result.borderline and "BORDERLINE" not in flags:
            flags.append("BORDERLINE")
    rules = KineticsRules(engine, overrides)
    fp_anchor = q.c1d1 if rules.flag("FP_ANCHOR") == "C1D1" else q.e1
    if (
        q.e2 is not None
        and fp_anchor is not None
        and not rules.days_test("fast_progression_max_days", (q.e2 - fp_anchor).days)
    ):
        flags.append("FP_NOT_ASSESSABLE")
    notes = list(q.notes)
    if q.tgr_ratio is not None or q.tgr_difference is not None:
        notes.append(
            f"TGR ratio {fmt(q.tgr_ratio)}, ΔTGR {fmt(q.tgr_difference)}, TGKR {fmt(q.tgk_ratio)}, "
            f"pace ratio {fmt(q.pace_ratio)}"
        )
    return KineticsResult(
        e0_date=q.e0,
        e1_date=q.e1,
        e2_date=q.e2,
        tgr_reference=q.tgr_reference,
        tgr_experimental=q.tgr_experimental,
        tgr_ratio=q.tgr_ratio,
        tgr_difference=q.tgr_difference,
        tgk_reference=q.tgk_reference,
        tgk_experimental=q.tgk_experimental,
        tgk_ratio=q.tgk_ratio,
        definitions=definitions,
        flags=tuple(flags),
        notes=tuple(notes),
    )


def _class_validation_note(rules: KineticsRules, timeline: Timeline) -> str | None:
    """Contract §9.3: a definition validated for checkpoint inhibitors only says so when applied to another
    class (rule file ``validated_for``); the result itself is computed as for any patient."""
    therapy = timeline.therapy
    validated = rules.ruleset.parameters["validated_for"]
    if therapy is None or therapy.therapy_class in validated["classes"]:
        return None
    classes = ", ".join(class_label(c) for c in validated["classes"])
    return (
        f"VALIDATION: this definition was validated in {classes} cohorts only; applied here to a "
        f"{class_label(therapy.therapy_class)} ({therapy.agent}), so read it with caution "
        f"[{validated['source'].split(':', 1)[0]}]."
    )


def definition(kinetics: KineticsResult, code: str) -> DefinitionResult | None:
    """One definition's result by its contract code."""
    return next((d for d in kinetics.definitions if d.code == code), None)


def required_definition(kinetics: KineticsResult, code: str) -> DefinitionResult:
    """One definition's result by its contract code, for a definition that is always computed."""
    found = definition(kinetics, code)
    if found is None:
        raise LookupError(f"kinetics definition {code} was not computed")
    return found


def reason_code(result: DefinitionResult) -> str:
    """The reason code a definition's reason starts with (``MET``, ``UNDEFINED_RATIO``, ``E0_MISSING``…)."""
    return result.reason.split(":", 1)[0]


__all__ = [
    "DEFINITION_CODES",
    "assess_kinetics",
    "definition",
    "evaluate_definitions",
    "reason_code",
    "required_definition",
]
