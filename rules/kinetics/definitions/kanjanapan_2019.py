"""H4b Kanjanapan 2019: as H1, RECIST PD at the first evaluation and TGR ratio ≥ 2 (spec §3.1 H4b).

Source: Kanjanapan Y et al., Cancer 2019.
"""

from __future__ import annotations

from rules.kinetics.definitions.common import recist_pd_and_tgr_ratio
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import KineticsRules
from rules.results import DefinitionResult


def kanjanapan_2019(rules: KineticsRules, q: KineticQuantities) -> DefinitionResult:
    """H4b (spec §3.1): as H1 (RECIST PD at E2 and TGR ratio ≥ 2)."""
    return recist_pd_and_tgr_ratio(rules, q, "kanjanapan-2019", "kanjanapan_tgr_ratio")


__all__ = ["kanjanapan_2019"]
