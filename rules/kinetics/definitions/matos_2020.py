"""H6 Matos 2020: first evaluation ≤ 2 months, RECIST PD, and > 40 % target increase or new-lesion spread
(combination [U], engine default [D], spec §3.2.6).

Source: Matos I et al., Clin Cancer Res 2020.
"""

from __future__ import annotations

from rules.kinetics.definitions.common import (
    definition_result,
    new_lesions_in_involved_organ,
    new_organ_component,
    out_of_scope,
    percent_change,
    percent_threshold,
    recist_pd,
)
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import KineticsRules
from rules.results import DefinitionResult


def matos_2020(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H6 (spec §3.2.6, engine default [D]; combination [U]): first evaluation ≤ 2 months, RECIST PD, and
    > 40 % target increase or (≥ 20 % and new-lesion spread) when ``MATOS_NEWLESION_BRANCH``."""
    code = "matos-2020"
    out = out_of_scope(rules, code, q)
    if out:
        return out
    days = q.days_from_c1d1(q.e2)
    within = rules.days_test("matos_first_evaluation_max_days", days)
    over_40, b1 = rules.sum_increase_test("matos_burden_increase", q.s1, q.s2, q.s2_complete)
    at_least_20, b2 = rules.sum_increase_test("matos_branch_burden_increase", q.s1, q.s2, q.s2_complete)
    involved, involved_note = new_lesions_in_involved_organ(rules, "matos_new_lesions_in_involved_organ", q)
    new_organ, organ_note = new_organ_component(q)
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
        {"first_evaluation_within_two_months": within, "recist_pd": recist_pd(q), "early_growth": growth["growth"]},
    )
    details = (
        f"first evaluation {days if days is not None else '?'} days after C1D1 "
        f"({rules.threshold('matos_first_evaluation_max_days').describe()} required); "
        f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; %Δ(E1→E2) {percent_change(q)} "
        f"({percent_threshold(rules.threshold('matos_burden_increase'))} for the 40 % rule, "
        f"{percent_threshold(rules.threshold('matos_branch_burden_increase'))} for the new-lesion branch); "
        f"{involved_note}; {organ_note}; early growth: {growth.because} "
        f"(MATOS_NEWLESION_BRANCH = {str(branch).lower()})."
    )
    return definition_result(
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


__all__ = ["matos_2020"]
