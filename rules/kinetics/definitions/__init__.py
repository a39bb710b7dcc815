"""The published hyperprogression, fast-progression and early-death definitions, one module each (spec §3.1, §3.2).

Each takes the rule file and the measured quantities (``rules.kinetics.quantities``) and returns one
``DefinitionResult``; every threshold and boolean combination is in ``rules/rulesets/kinetics.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rules.engine import Engine
from rules.kinetics.definitions.champiat_2017 import champiat_2017
from rules.kinetics.definitions.early_death import early_death
from rules.kinetics.definitions.fast_progression_ferrara_2020 import fast_progression_ferrara_2020
from rules.kinetics.definitions.fast_progression_oak import fast_progression_oak
from rules.kinetics.definitions.ferrara_2018 import ferrara_2018
from rules.kinetics.definitions.kanjanapan_2019 import kanjanapan_2019
from rules.kinetics.definitions.kas_2020 import kas_2020
from rules.kinetics.definitions.kato_2017 import kato_2017
from rules.kinetics.definitions.kim_2019 import kim_2019
from rules.kinetics.definitions.lo_russo_2019 import lo_russo_2019
from rules.kinetics.definitions.matos_2020 import matos_2020
from rules.kinetics.definitions.saada_bouzid_2017 import saada_bouzid_2017
from rules.kinetics.quantities import KineticQuantities
from rules.kinetics.ruleset import KineticsRules
from rules.results import DefinitionResult

DEFINITION_CODES = (
    "champiat-2017",
    "saada-bouzid-2017",
    "kato-2017",
    "ferrara-2018",
    "kanjanapan-2019",
    "lo-russo-2019",
    "matos-2020",
    "kim-2019",
    "kas-2020",
    "fast-progression-oak",
    "fast-progression-ferrara-2020",
    "early-death",
)
"""Contract §5 codes in ``{C}/CodeSystem/hyperprogression``, in the order they are reported."""

DEFINITIONS = {
    "champiat-2017": champiat_2017,
    "saada-bouzid-2017": saada_bouzid_2017,
    "kato-2017": kato_2017,
    "ferrara-2018": ferrara_2018,
    "kanjanapan-2019": kanjanapan_2019,
    "lo-russo-2019": lo_russo_2019,
    "matos-2020": matos_2020,
    "kim-2019": kim_2019,
    "kas-2020": kas_2020,
    "fast-progression-oak": fast_progression_oak,
    "fast-progression-ferrara-2020": fast_progression_ferrara_2020,
    "early-death": early_death,
}


def evaluate_definitions(
    engine: Engine, q: KineticQuantities, overrides: Mapping[str, Any] | None = None
) -> tuple[DefinitionResult, ...]:
    """Every definition of spec §3.1 on measured quantities, in contract order."""
    rules = KineticsRules(engine, overrides)
    return tuple(DEFINITIONS[code](rules, q) for code in DEFINITION_CODES)


__all__ = ["DEFINITIONS", "DEFINITION_CODES", "evaluate_definitions"]
