"""FP′, fast progression (Ferrara 2020): ≥ 50 % SLD increase within 6 weeks from the baseline scan (spec §3.2.8).

Source: Ferrara R et al., JCO Precis Oncol 2020;4:829-840.
"""

from __future__ import annotations

from rules.kinetics.definitions.common import (
    definition_result,
    fast_progression_scan_branch,
)
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import KineticsRules
from rules.results import DefinitionResult


def fast_progression_ferrara_2020(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """FP′ (Ferrara 2020; spec §3.2.8): E2 ≤ 42 days after E1 and S2 ≥ 1.5·S1."""
    code = "fast-progression-ferrara-2020"
    scan, days, borderline, scan_text = fast_progression_scan_branch(rules, q, q.e1, "E1")
    decision = rules.decide("fast_progression_ferrara_2020", {"scan_branch": scan["branch"]})
    details = f"{scan_text} → {scan.because}."
    return definition_result(
        rules,
        code,
        decision,
        details,
        {"days_e1_to_e2": days, "percent_e1_e2": q.percent_e1_e2, "scan_branch": scan["branch"]},
        borderline,
    )


__all__ = ["fast_progression_ferrara_2020"]
