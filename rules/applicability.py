"""Which response criteria to report for a patient: by cancer type and by the data available.

``applicable_criteria(facts, timeline)`` returns the set of criterion codes (contract §5 method codes):

- **solid tumours** (``PatientFacts.cancer_type`` ``solid``, ``None``, or any value not recognised below): the RECIST
  family — ``RECIST-1.1``, ``iRECIST``, ``irRECIST``, ``irRC``, ``imRECIST``, ``itRECIST`` — and, when the baseline
  and at least one follow-up are PET scans with values (a lesion SULpeak/SUVmax or a reference region:
  ``pet.has_pet_values``), the PET criteria ``PERCIST-1.0``, ``imPERCIST5``, ``PERCIMT``, ``iPERCIST``, ``EORTC-PET``
  (size spec §7: PET criteria for solid tumours);
- **lymphoma**: ``Lugano-2014`` and ``LYRIC`` (spec §9; the Deauville-based PET response is part of Lugano's result,
  so PERCIST and the RECIST family are not reported);
- **glioma**: ``RANO`` and ``iRANO`` (spec §10; RANO 2.0 is not encoded).

``cancer_type`` is matched case-insensitively as a word (``solid``, ``lymphoma``, ``glioma``, and the synonyms in
``SYNONYMS``) or as a SNOMED CT code (``CANCER_TYPE_CODES``, with or without a ``http://snomed.info/sct|`` prefix).
The SNOMED CT codes are **secondary [S]**: each was seen with the stated display in public FHIR Shorthand examples
and code tables (not checked in a SNOMED CT release); the clinical lead should verify them before relying on them.
An unrecognised value is treated as a solid tumour, the most common case, and the RECIST family is reported.
"""

from __future__ import annotations

from collections.abc import Mapping

from rules.criteria import (
    eortc_pet,
    impercist5,
    imrecist,
    ipercist,
    irano,
    irecist,
    irrc,
    irrecist,
    itrecist,
    lugano,
    lyric,
    percimt,
    percist,
    pet,
    rano,
    recist11,
)
from rules.facts import PatientFacts
from rules.timeline import Timeline

SOLID = "solid"
LYMPHOMA = "lymphoma"
GLIOMA = "glioma"

RECIST_FAMILY: tuple[str, ...] = (
    recist11.CRITERION,
    irecist.CRITERION,
    irrecist.CRITERION,
    irrc.CRITERION,
    imrecist.CRITERION,
    itrecist.CRITERION,
)
"""Size-based criteria for solid tumours (spec §1–§6)."""
PET_SOLID: tuple[str, ...] = (
    percist.CRITERION,
    impercist5.CRITERION,
    percimt.CRITERION,
    ipercist.CRITERION,
    eortc_pet.CRITERION,
)
"""FDG-PET criteria for solid tumours (spec §7), reported only when PET values exist."""
LYMPHOMA_CRITERIA: tuple[str, ...] = (lugano.CRITERION, lyric.CRITERION)
"""Lymphoma criteria (spec §9)."""
GLIOMA_CRITERIA: tuple[str, ...] = (rano.CRITERION, irano.CRITERION)
"""Neuro-oncology criteria (spec §10)."""

SYNONYMS: Mapping[str, str] = {
    "solid": SOLID,
    "solid tumour": SOLID,
    "solid tumor": SOLID,
    "solid-tumour": SOLID,
    "solid-tumor": SOLID,
    "lymphoma": LYMPHOMA,
    "hodgkin lymphoma": LYMPHOMA,
    "non-hodgkin lymphoma": LYMPHOMA,
    "malignant lymphoma": LYMPHOMA,
    "glioma": GLIOMA,
    "high-grade glioma": GLIOMA,
    "glioblastoma": GLIOMA,
    "gbm": GLIOMA,
}
"""Free-text values of ``cancer_type`` (lower case) and the category they mean."""

CANCER_TYPE_CODES: Mapping[str, tuple[str, str, str]] = {
    "118600007": (LYMPHOMA, "Malignant lymphoma (disorder)", "S: FSH example 'SCT#118600007', public code tables"),
    "118599009": (LYMPHOMA, "Hodgkin's disease (disorder)", "S: FSH example 'SCT#118599009', HemOnc mapping note"),
    "118601006": (LYMPHOMA, "Non-Hodgkin's lymphoma (disorder)", "S: public ICD-10 C85 → SNOMED CT tables"),
    "393563007": (GLIOMA, "Glioblastoma multiforme (disorder)", "S: FSH Condition example, TCGA GBM code table"),
}
"""SNOMED CT codes of ``cancer_type`` → (category, display, where it was seen). Secondary [S], see module docstring."""


def cancer_category(cancer_type: str | None) -> str:
    """``solid``, ``lymphoma`` or ``glioma`` for a ``PatientFacts.cancer_type`` value (``None`` → solid)."""
    if cancer_type is None or not cancer_type.strip():
        return SOLID
    text = cancer_type.strip().lower()
    code = text.rsplit("|", 1)[-1].strip()
    if code in CANCER_TYPE_CODES:
        return CANCER_TYPE_CODES[code][0]
    if text in SYNONYMS:
        return SYNONYMS[text]
    # A diagnosis written out ("nodular sclerosis Hodgkin lymphoma", "IDH-wildtype glioblastoma").
    words = set(text.replace(",", " ").replace("-", " ").split())
    for word, category in (
        ("lymphoma", LYMPHOMA),
        ("glioma", GLIOMA),
        ("glioblastoma", GLIOMA),
        ("astrocytoma", GLIOMA),
    ):
        if word in words:
            return category
    return SOLID


def has_pet_data(timeline: Timeline) -> bool:
    """A baseline PET and at least one follow-up PET with values: the PET criteria can say something."""
    return pet.has_pet_values(timeline.baseline) and any(pet.has_pet_values(tp) for tp in timeline.followups)


def applicable_criteria(facts: PatientFacts, timeline: Timeline) -> set[str]:
    """The criterion codes to report for this patient (module docstring)."""
    category = cancer_category(facts.cancer_type)
    if category == LYMPHOMA:
        return set(LYMPHOMA_CRITERIA)
    if category == GLIOMA:
        return set(GLIOMA_CRITERIA)
    chosen = set(RECIST_FAMILY)
    if has_pet_data(timeline):
        chosen.update(PET_SOLID)
    return chosen
