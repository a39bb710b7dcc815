"""H8 Kas 2020: RECIST increase > 20 % and ΔTGR > 100 (spec §3.2.7).

Source: Kas B et al., JAMA Netw Open 2020.
"""

from __future__ import annotations

from rules.kinetics.definitions.common import (
    definition_result,
    out_of_scope,
    percent_change,
    percent_threshold,
    recist_pd,
    tgr_numbers,
)
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import KineticsRules
from rules.results import DefinitionResult


def kas_2020(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H8 (spec §3.2.7): RECIST increase > 20 % (``KAS_PROGRESSION_COMPONENT``) AND ΔTGR > 100."""
    code = "kas-2020"
    out = out_of_scope(rules, code, q)
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
            "recist_pd": recist_pd(q),
            "delta_tgr_over_100": delta,
        },
    )
    details = (
        f"%Δ(E1→E2) {percent_change(q)} ({percent_threshold(rules.threshold('kas_burden_increase'))} required); "
        f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; {tgr_numbers(q)} "
        f"(ΔTGR {rules.threshold('kas_delta_tgr').describe()} required; KAS_PROGRESSION_COMPONENT = {component})."
    )
    return definition_result(
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


__all__ = ["kas_2020"]
