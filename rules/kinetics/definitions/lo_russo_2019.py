"""H5 Lo Russo 2019: ≥ 3 of 5 clinical-radiological criteria (TTF < 2 months, ≥ 50 % target increase, ≥ 2 new
lesions in an involved organ, new organ, ECOG worsening), with RECIST PD when ``H5_REQUIRE_PD`` (spec §3.2.5).

Source: Lo Russo G et al., Clin Cancer Res 2019.
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
from rules.kinetics.ruleset import UNKNOWN, Component, KineticsRules
from rules.results import DefinitionResult


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


def lo_russo_2019(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H5 (spec §3.2.5): ≥ 3 of 5 clinical-radiological criteria; RECIST PD too when ``H5_REQUIRE_PD``."""
    code = "lo-russo-2019"
    out = out_of_scope(rules, code, q)
    if out:
        return out
    ttf = q.ttf_state if isinstance(q.ttf_state, bool) else UNKNOWN
    burden, borderline = rules.sum_increase_test("lorusso_burden_increase", q.s1, q.s2, q.s2_complete)
    involved, involved_note = new_lesions_in_involved_organ(rules, "lorusso_new_lesions_in_involved_organ", q)
    new_organ, organ_note = new_organ_component(q)
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
        {"criteria_met": met, "criteria_possible": possible, "recist_pd": recist_pd(q), "require_pd": require},
    )
    mark = {True: "✓", False: "✗", UNKNOWN: "?"}
    details = (
        f"{met}/5 met ({possible - met} unknown): 1 {q.ttf_note} {mark[ttf]}; 2 %Δ(E1→E2) {percent_change(q)} "
        f"{percent_threshold(rules.threshold('lorusso_burden_increase'))} "
        f"{mark[burden]}; 3 {involved_note} {mark[involved]}; 4 {organ_note} {mark[new_organ]}; 5 {ecog_note} "
        f"{mark[ecog]}; RECIST 1.1 at E2 {q.recist_e2 or 'n/a'} (H5_REQUIRE_PD = {str(require).lower()})."
    )
    return definition_result(
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


__all__ = ["lo_russo_2019"]
