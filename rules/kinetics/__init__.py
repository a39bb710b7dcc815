"""Tumour growth kinetics around the start of immunotherapy, and the hyperprogression, fast-progression and
early-death definitions that use them.

Spec: ``clinical/criteria-kinetics-irae.md`` §2 (TGR §2.1, TGK §2.3, windows §2.4, lesion bookkeeping §2.6),
§3 (definitions H1–H8, FP, ED), §0 (float tolerance and BORDERLINE), §8 (flags). Every threshold, policy flag
and boolean combination is in ``rules/rulesets/kinetics.yaml`` (criterion ``tumour-kinetics``); this package
measures (sums, dates, growth rates) and asks the decision tables for every verdict.

Scan names follow the spec: E0 the pre-baseline scan (``timeline.prebaseline``), E1 the baseline, C1D1 the
first immunotherapy dose, E2 the first on-treatment evaluation.

Modules: ``growth`` (TGR, TGK, pace arithmetic), ``quantities`` (what the definitions look at, measured once),
``ruleset`` (the rule file, three-valued tests), ``definitions`` (one module per published definition), ``assess``
(the assessment of one patient).
"""

from rules.kinetics.assess import assess_kinetics, definition, reason_code
from rules.kinetics.definitions import DEFINITION_CODES, evaluate_definitions
from rules.kinetics.growth import (
    FERTE_MONTH_DAYS,
    KineticsUndefined,
    growth_ratio,
    months_between,
    progression_pace,
    tumour_growth_kinetics,
    tumour_growth_rate,
)
from rules.kinetics.quantities import KineticQuantities, kinetic_quantities
from rules.kinetics.ruleset import CRITERION, KineticsRules

__all__ = [
    "CRITERION",
    "DEFINITION_CODES",
    "FERTE_MONTH_DAYS",
    "KineticQuantities",
    "KineticsRules",
    "KineticsUndefined",
    "assess_kinetics",
    "definition",
    "evaluate_definitions",
    "growth_ratio",
    "kinetic_quantities",
    "months_between",
    "progression_pace",
    "reason_code",
    "tumour_growth_kinetics",
    "tumour_growth_rate",
]
