"""imRECIST — immune-modified RECIST (Hodi 2018): size spec §5. Provisional: its rules are [S]/[U].

Treated like irRECIST, on the sum of targets and new measurable lesions (RECIST 1.1 size), with RECIST 1.1
category names:
- new measurable lesions are added to the sum; new lesions never define PD by themselves, non-measurable ones
  only prevent CR;
- non-target lesions count only toward CR; their progression does not define PD;
- PD: ≥ 20 % over the nadir (and ≥ 5 mm, flag ``imrecist.abs_min_mm`` [U]); it is negated by a later non-PD
  assessment ≥ 4 weeks on and confirmed otherwise (spec §3.4, ``burden.ProgressionConfirmation``), so the best
  overall response may come after an initial PD.

Categories come from ``rules/rulesets/imrecist.yaml``; the loop is ``burden.assess_burden``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rules.criteria.burden import TumourFilter, assess_tmtb
from rules.engine import Engine
from rules.results import CriterionAssessment
from rules.timeline import Timeline

CRITERION = "imRECIST"
CATEGORIES = {"CR": "CR", "PR": "PR", "SD": "SD", "PD": "PD", "NE": "NE"}
"""imRECIST uses the RECIST 1.1 category names (contract §5)."""


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: TumourFilter | None = None,
) -> CriterionAssessment:
    """imRECIST over the whole timeline; ``provisional`` because the rules rest on secondary sources and [U] items."""
    return assess_tmtb(
        engine,
        timeline,
        CRITERION,
        CATEGORIES,
        overrides,
        is_tumour=is_tumour,
        reader_review_table=False,
        provisional=True,
    )
