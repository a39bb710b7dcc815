"""What both inbound adapters hand over for one measurement: the core's fact and where it came from.

The TID 1500 adapter (``dicom_listener.tid1500.facts``) and the FHIR inbound mapper (``fhir_mappings.inbound``)
each return ``MeasurementInput``: the fact is ``rules.facts.LesionMeasurement`` (a lesion) or
``rules.facts.ReferenceMeasurement`` (a PET reference region); ``MeasurementSource`` holds what is not a clinical
fact about the lesion (source, identifiers, producer, notes, a refusal) and what the source says about its scan.
``service.persistence.measurements`` turns the pair into a row and a row back into the fact. This module imports
only ``rules`` so that both adapters can use it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rules.facts import LesionMeasurement, ReferenceMeasurement

UNDATED = dt.date.min
"""``scan_date`` of a fact whose source states no date (an SR without StudyDate): its study's date applies once
known. ``MeasurementSource.scan_date`` is then ``None`` and the stored row carries no date."""


@dataclass(frozen=True)
class MeasurementSource:
    """Where one measurement came from (adapter provenance, never read by the rules)."""

    kind: str
    """``dicom-sr`` or ``fhir``."""
    ref: str
    """SOP Instance UID of the SR, or ``Observation/<id>``."""
    index: int = 0
    """Measurement group index within the SR (0 for an Observation)."""
    scan_date: dt.date | None = None
    """The date as the source states it (SR StudyDate, Observation effective); ``None``: the study's date."""
    study_uid: str | None = None
    """The study the measurement was made on (SR header; Observation ``derivedFrom``), when stated."""
    producer: str = ""
    """Best guess of the SR writer (``highdicom``, ``dcmjs``…); empty for FHIR."""
    notes: tuple[str, ...] = ()
    """Non-fatal oddities absorbed while reading."""
    rejected_reason: str | None = None
    """Why the measurement cannot be used (contract §9.2): kept for the audit, its lesion is *not assessed*."""
    non_lesion: bool = False
    """The SR's Baseline Category says the group measures no lesion (CID 6145 non-lesion): stored, never a fact."""
    symptom_driven: bool = False
    """The source says the scan was done for a new symptom (FHIR component ``symptom-driven``)."""
    tracer: dict[str, str] | None = None
    """PET tracer as stated with the measurement: ``{"code", "scheme", "text"}`` (FHIR ``radiopharmaceutical``)."""


@dataclass(frozen=True)
class MeasurementInput:
    """One measurement as an adapter read it: the core's fact plus its provenance."""

    fact: LesionMeasurement | ReferenceMeasurement
    source: MeasurementSource


def source_label(kind: str, ref: str) -> str:
    """``LesionMeasurement.source`` as the adapters write it (``dicom-sr:<SOP Instance UID>``,
    ``fhir:Observation/<id>``)."""
    return f"{kind}:{ref}"
