"""What a DICOM Segmentation's segment is, from its Segmented Property Category / Type codes (contract §9.6).

A segment is
- a **lesion** when its Segmented Property Type is one of ``LESION_TYPES`` (tied to a tracked lesion by its
  Tracking UID (0062,0021) or Tracking Identifier (0062,0020));
- a **body-composition tissue** (skeletal muscle, subcutaneous or visceral adipose tissue) when its type is one of
  ``BODY_COMPOSITION``; these feed the L3 biomarkers (docs/clinical/criteria-kinetics-irae.md §6.3, §6.4);
- the **L3 vertebra** (``L3_VERTEBRA``), used to choose the L3 slice of a body-composition SEG;
- anything else is *other*: kept and listed, never used.

Codes and where each was checked: DICOM PS3.16 context groups as shipped in pydicom 3.0.2's concept dictionary
(``pydicom.sr._concepts_dict``, generated from DICOM PS3.16 2024c), which lists for each SNOMED CT concept id its
meaning and the CIDs that use it:

- SCT 52988006 "Lesion", SCT 4147007 "Mass", SCT 108369006 "Neoplasm" / "Tumor" — CID 7151 (Segmentation
  Property Types), CID 7159 / 7194 (lesion segmentation property types); category SCT 49755003
  "Morphologically Abnormal Structure" (CID 7150 Segmentation Property Categories);
- SCT 127954009 "Skeletal muscle" (CID 7710, 8134);
- SCT 71966008 "Subcutaneous tissue" (CID 7151, 7166 Tissue Segmentation Property Types, 7191) — the concept
  DICOM's tissue segmentation list offers for the subcutaneous compartment; at L3 on CT its adipose part is what
  body-composition tools label (the HU window is the tool's, not ours);
- SCT 36470004 "L3 vertebra" (CID 7151, 7192 Anatomical Structure Segmentation Property Types, 7602);
- visceral adipose tissue: **no SNOMED CT concept for it is in DICOM PS3.16 2024c** (none in pydicom's dictionary
  under "visceral"/"intra-abdominal" fat or adipose tissue), so none is asserted here; a SEG labels it with the
  project code ``(visceral-adipose-tissue, 99IMMRAD)`` until a verified code is added to this list.

Legacy SNOMED-RT (scheme SRT) equivalents are those pydicom's ``_snomed_dict`` maps to the SCT ids.
"""

from __future__ import annotations

from dataclasses import dataclass

LESION = "lesion"
SKELETAL_MUSCLE = "skeletal-muscle"
SUBCUTANEOUS_FAT = "subcutaneous-adipose-tissue"
VISCERAL_FAT = "visceral-adipose-tissue"
L3_VERTEBRA = "l3-vertebra"
OTHER = "other"

BODY_COMPOSITION_KINDS = (SKELETAL_MUSCLE, SUBCUTANEOUS_FAT, VISCERAL_FAT)

LESION_TYPES: frozenset[tuple[str, str]] = frozenset(
    {
        ("SCT", "52988006"),  # Lesion
        ("SCT", "4147007"),  # Mass
        ("SCT", "108369006"),  # Neoplasm / Tumor
        ("SRT", "M-01100"),  # legacy SNOMED-RT of 52988006
        ("SRT", "M-03000"),  # legacy SNOMED-RT of 4147007
        ("SRT", "M-8FFFF"),  # legacy SNOMED-RT of 108369006
    }
)
"""Segmented Property Types that make a segment a lesion (tumour) segment."""

BODY_COMPOSITION: dict[tuple[str, str], str] = {
    ("SCT", "127954009"): SKELETAL_MUSCLE,
    ("SRT", "T-D0684"): SKELETAL_MUSCLE,  # legacy SNOMED-RT of 127954009
    ("SCT", "71966008"): SUBCUTANEOUS_FAT,
    ("SRT", "T-03000"): SUBCUTANEOUS_FAT,  # legacy SNOMED-RT of 71966008
    ("99IMMRAD", "visceral-adipose-tissue"): VISCERAL_FAT,
}

L3_CODES: frozenset[tuple[str, str]] = frozenset({("SCT", "36470004"), ("SRT", "T-11930")})


@dataclass(frozen=True)
class SegmentKind:
    kind: str
    """``lesion`` | ``skeletal-muscle`` | ``subcutaneous-adipose-tissue`` | ``visceral-adipose-tissue`` |
    ``l3-vertebra`` | ``other``."""
    reason: str


def classify(property_type: tuple[str, str] | None) -> SegmentKind:
    """The kind of a segment from its Segmented Property Type (scheme designator, code value)."""
    if property_type is None:
        return SegmentKind(OTHER, "no Segmented Property Type")
    scheme, value = property_type[0].upper(), property_type[1]
    key = (scheme if scheme != "SNM3" else "SRT", value)
    if key in LESION_TYPES:
        return SegmentKind(LESION, f"Segmented Property Type ({value}, {scheme}) is a lesion/tumour code")
    if key in BODY_COMPOSITION:
        kind = BODY_COMPOSITION[key]
        return SegmentKind(kind, f"Segmented Property Type ({value}, {scheme}) is {kind}")
    if key in L3_CODES:
        return SegmentKind(L3_VERTEBRA, f"Segmented Property Type ({value}, {scheme}) is the L3 vertebra")
    return SegmentKind(OTHER, f"Segmented Property Type ({value}, {scheme}) is neither a lesion nor a body tissue")
