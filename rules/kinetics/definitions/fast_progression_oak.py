"""FP, fast progression in OAK: ≥ 50 % SLD increase within 6 weeks of C1D1, or death from progression within
12 weeks without a post-baseline scan (spec §3.2.8).

Source: Gandara DR et al., JITC 2021 (OAK).
"""

from __future__ import annotations

from rules.kinetics.definitions.common import (
    death_branch,
    definition_result,
    fast_progression_scan_branch,
)
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import KineticsRules
from rules.results import DefinitionResult


def fast_progression_oak(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """FP (Gandara 2021, OAK; spec §3.2.8): (E2 ≤ 42 days after C1D1 and S2 ≥ 1.5·S1) or (death from progression
    ≤ 84 days after C1D1 with no post-baseline scan)."""
    code = "fast-progression-oak"
    scan, days, borderline, scan_text = fast_progression_scan_branch(rules, q, q.c1d1, "C1D1")
    death = death_branch(
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
    return definition_result(
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


__all__ = ["fast_progression_oak"]
