"""H1 Champiat 2017: RECIST PD at the first evaluation and TGR ratio ≥ 2 (spec §3.2.1).

Source: Champiat S et al., Clin Cancer Res 2017.
"""

from __future__ import annotations

from rules.kinetics.definitions.common import recist_pd_and_tgr_ratio
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import KineticsRules
from rules.results import DefinitionResult


def champiat_2017(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H1 (spec §3.2.1): RECIST PD at E2 and TGR_exp/TGR_ref ≥ 2."""
    return recist_pd_and_tgr_ratio(rules, q, "champiat-2017", "champiat_tgr_ratio")


__all__ = ["champiat_2017"]
