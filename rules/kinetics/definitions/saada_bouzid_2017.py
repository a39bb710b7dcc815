"""H2 Saâda-Bouzid 2017: TGK ratio (TGKR) ≥ 2, with RECIST PD when ``H2_REQUIRE_PD`` (spec §2.3, §3.2.2).

Source: Saâda-Bouzid E et al., Ann Oncol 2017.
"""

from __future__ import annotations

from rules.kinetics.definitions.common import (
    definition_result,
    out_of_scope,
    ratio_component,
    recist_pd,
)
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import UNDEFINED, KineticsRules
from rules.kinetics.wording import fmt
from rules.results import DefinitionResult


def saada_bouzid_2017(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H2 (spec §3.2.2): TGKR ≥ 2; RECIST PD too when ``H2_REQUIRE_PD``."""
    code = "saada-bouzid-2017"
    out = out_of_scope(rules, code, q)
    if out:
        return out
    ratio, borderline = ratio_component(rules, "saada_bouzid_tgk_ratio", q.tgk_ratio, q.tgk_reference)
    require = bool(rules.flag("H2_REQUIRE_PD"))
    decision = rules.decide(
        "saada_bouzid_2017", {"require_pd": require, "recist_pd": recist_pd(q), "tgk_ratio_at_least_2": ratio}
    )
    details = (
        f"TGK_ref {fmt(q.tgk_reference)} mm/month, TGK_exp {fmt(q.tgk_experimental)} mm/month, "
        f"TGKR {fmt(q.tgk_ratio) if q.tgk_ratio is not None else 'undefined' if ratio == UNDEFINED else 'n/a'} "
        f"(threshold {rules.threshold('saada_bouzid_tgk_ratio').describe()}); RECIST 1.1 at E2 {q.recist_e2 or 'n/a'} "
        f"(H2_REQUIRE_PD = {str(require).lower()})."
    )
    return definition_result(
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


__all__ = ["saada_bouzid_2017"]
