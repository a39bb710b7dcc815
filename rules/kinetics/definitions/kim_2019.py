"""H7 Kim 2019, provisional [U]: TGR/TGK ratios and TTF < 2 months within 12-week windows (spec §3.1 H7).

Source: Kim CG et al., Ann Oncol 2019.
"""

from __future__ import annotations

import dataclasses

from rules.kinetics.definitions.common import (
    definition_result,
    out_of_scope,
    ratio_component,
)
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import UNKNOWN, Component, KineticsRules
from rules.kinetics.wording import fmt
from rules.results import DefinitionResult


def kim_2019(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H7 (spec §3.1) PROVISIONAL [U]: TGR/TGK ratios and TTF < 2 months within 12-week windows; verdicts only
    where every reading of the unverified conjunction agrees (table kim_2019)."""
    code = "kim-2019"
    provisional = (
        "Provisional [U]: Kim 2019's exact conjunction and ratio cut-offs are unverified (spec §3.1 H7); "
        "only its stated pieces are implemented."
    )
    out = out_of_scope(rules, code, q)
    if out:
        return dataclasses.replace(out, reason=f"{out.reason} {provisional}")
    before = None if q.c1d1 is None or q.e0 is None else (q.c1d1 - q.e0).days
    after = q.days_from_c1d1(q.e2)
    if before is None or after is None:
        windows: Component = UNKNOWN
    else:
        windows = rules.holds("kim_windows", e0_days_before_c1d1=before, e2_days_after_c1d1=after)
    tgr, b1 = ratio_component(rules, "kim_ratio", q.tgr_ratio, q.tgr_reference)
    tgk, b2 = ratio_component(rules, "kim_ratio", q.tgk_ratio, q.tgk_reference)
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
    return definition_result(
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


__all__ = ["kim_2019"]
