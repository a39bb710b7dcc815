"""irRECIST — unidimensional immune-related criteria (Nishino 2013/2014, Bohnsack 2014): size spec §4.

- Total measured tumour burden (TMTB) = target sum of diameters (RECIST 1.1: LD, nodes short axis) + the
  diameters of new measurable lesions (LD ≥ 10 mm, node SA ≥ 15 mm; at most 5 in total and 2 per organ,
  flag ``irrecist.new_lesion_cap`` [D]).
- irPR: TMTB ≤ 70 % of baseline; irPD: TMTB ≥ 120 % of the nadir and ≥ 5 mm above it (flag
  ``irrecist.abs_min_mm``), tested first and confirmed as in spec §3.4 (``burden.ProgressionConfirmation``).
- Non-target lesions and new non-measurable lesions count only toward irCR; their unequivocal progression raises a
  reader-review warning, never a category (policy [D], table ``reader_review``). Reappearance after irCR is graded
  on the TMTB only and flagged (policy [D], E4).

Categories come from ``rules/rulesets/irrecist.yaml``; the loop is ``burden.assess_burden``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rules.criteria.burden import TumourFilter, assess_tmtb
from rules.engine import Engine
from rules.results import CriterionAssessment
from rules.timeline import Timeline

CRITERION = "irRECIST"
CATEGORIES = {"CR": "irCR", "PR": "irPR", "SD": "irSD", "PD": "irPD", "NE": "NE"}
"""irRECIST category names (contract §5 codes)."""


def assess(
    engine: Engine,
    timeline: Timeline,
    overrides: Mapping[str, Any] | None = None,
    *,
    is_tumour: TumourFilter | None = None,
) -> CriterionAssessment:
    """irRECIST over the whole timeline. ``best_response`` does not need confirmation of the response ("not
    mandatory", spec §4.2 [U]); ``best_response_confirmed`` does. Progression counts only once confirmed."""
    return assess_tmtb(
        engine,
        timeline,
        CRITERION,
        CATEGORIES,
        overrides,
        is_tumour=is_tumour,
        reader_review_table=True,
        provisional=False,
    )
