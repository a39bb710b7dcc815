"""ED, early death (Ferrara 2020): death from progression within 12 weeks of the baseline CT (spec §3.2.8).

Source: Ferrara R et al., JCO Precis Oncol 2020;4:829-840.
"""

from __future__ import annotations

from rules.kinetics.definitions.common import (
    death_branch,
    definition_result,
)
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import KineticsRules
from rules.results import DefinitionResult


def early_death(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """ED (Ferrara 2020; spec §3.2.8): death from progression ≤ 84 days after the baseline CT (E1)."""
    code = "early-death"
    decision = death_branch(rules, q, q.e1, "early_death_max_days", "early_death", {})
    days = None if q.e1 is None or q.deceased is None else (q.deceased - q.e1).days
    details = (
        f"death {q.deceased}, {days if days is not None else '?'} days after E1 {q.e1} "
        f"({rules.threshold('early_death_max_days').describe()} required), cause "
        f"{'progression' if q.death_from_progression else 'unknown' if q.death_from_progression is None else 'other'}."
        if q.deceased
        else ""
    )
    return definition_result(
        rules,
        code,
        decision,
        details,
        {"deceased": q.deceased, "days_e1_to_death": days, "death_from_progression": q.death_from_progression},
    )


__all__ = ["early_death"]
