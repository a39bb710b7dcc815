"""H4 Ferrara 2018: RECIST PD at the first CT and ΔTGR > 50 (spec §3.2.4).

Source: Ferrara R et al., JAMA Oncol 2018.
"""

from __future__ import annotations

from rules.kinetics.definitions.common import (
    definition_result,
    out_of_scope,
    recist_pd,
    tgr_numbers,
)
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import KineticsRules
from rules.results import DefinitionResult


def ferrara_2018(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H4 (spec §3.2.4): RECIST PD at E2 AND ΔTGR > 50."""
    code = "ferrara-2018"
    out = out_of_scope(rules, code, q)
    if out:
        return out
    delta, borderline = rules.float_test("ferrara_delta_tgr", q.tgr_difference)
    decision = rules.decide("ferrara_2018", {"recist_pd": recist_pd(q), "delta_tgr_over_50": delta})
    details = f"RECIST 1.1 at E2 {q.recist_e2 or 'n/a'}; {tgr_numbers(q)} (ΔTGR {rules.threshold('ferrara_delta_tgr').describe()} required)."
    return definition_result(
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


__all__ = ["ferrara_2018"]
