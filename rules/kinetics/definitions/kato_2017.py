"""H3 Kato 2017: TTF < 2 months, > 50 % tumour-burden increase and > 2-fold increase in progression pace
(pace operationalised [D], spec §3.2.3).

Source: Kato S et al., Clin Cancer Res 2017.
"""

from __future__ import annotations

from rules.kinetics.definitions.common import (
    definition_result,
    out_of_scope,
    percent_change,
    percent_threshold,
    ratio_component,
)
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import UNDEFINED, KineticsRules
from rules.kinetics.wording import fmt
from rules.results import DefinitionResult


def kato_2017(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H3 (spec §3.2.3): TTF < 2 months AND %Δ(E1→E2) > 50 AND pace ratio > 2."""
    code = "kato-2017"
    out = out_of_scope(rules, code, q)
    if out:
        return out
    burden, b1 = rules.sum_increase_test("kato_burden_increase", q.s1, q.s2, q.s2_complete)
    pace, b2 = ratio_component(rules, "kato_pace_ratio", q.pace_ratio, q.pace_reference)
    decision = rules.decide(
        "kato_2017", {"ttf_under_two_months": q.ttf_state, "burden_over_50": burden, "pace_ratio_over_2": pace}
    )
    details = (
        f"{q.ttf_note}; %Δ(E1→E2) {percent_change(q)} ({percent_threshold(rules.threshold('kato_burden_increase'))} "
        f"required); pace_ref {fmt(q.pace_reference)} %/month, "
        f"pace_exp {fmt(q.pace_experimental)} %/month, pace ratio "
        f"{fmt(q.pace_ratio) if q.pace_ratio is not None else 'undefined' if pace == UNDEFINED else 'n/a'} "
        f"({rules.threshold('kato_pace_ratio').describe()} required)."
    )
    return definition_result(
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


__all__ = ["kato_2017"]
