"""Which slice of a body-composition SEG is "the L3 slice" (docs/clinical/criteria-kinetics-irae.md §6.3, §6.4).

The spec requires the L3 slice to be *identified* (manually or automatically) before an L3 area feeds SMI and the
sarcopenia flags; it does not say how a multi-slice segmentation is reduced to one slice. Our rule [D], in order:

1. the SEG has an **L3 vertebra segment** (SCT 36470004): the slice in the middle of the slices that segment covers
   (the lower middle for an even count) — the single-slice L3 landmark body-composition studies measure at;
2. else the body-composition segments together cover **exactly one slice** (the single-frame L3 SEG that L3
   body-composition tools write): that slice — the producer identified it;
3. else no slice is chosen: the areas are not used, with the reason (never a guess from the anatomy).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class L3Choice:
    slice_index: int | None
    rule: str


def choose_l3_slice(l3_slices: Iterable[int], tissue_slices: Iterable[int]) -> L3Choice:
    """``l3_slices``: slice indices holding the L3 vertebra segment; ``tissue_slices``: those holding any
    body-composition segment (indices along the series, in slice order)."""
    vertebra = sorted(set(l3_slices))
    tissue = sorted(set(tissue_slices))
    if vertebra:
        middle = vertebra[(len(vertebra) - 1) // 2]
        return L3Choice(middle, f"middle slice of the L3 vertebra segment (slices {vertebra[0]}-{vertebra[-1]})")
    if len(tissue) == 1:
        return L3Choice(tissue[0], "the SEG's single body-composition slice (identified by its producer)")
    if not tissue:
        return L3Choice(None, "no body-composition voxel in the SEG")
    return L3Choice(
        None,
        f"body-composition segments over {len(tissue)} slices and no L3 vertebra segment: the L3 slice is not "
        "identified, the areas are not used",
    )
