"""What a TID 1500 Measurement Report yields once parsed: one ``ParsedGroup`` per measurement group.

The reader (``dicom_listener.tid1500.reader``) fills these from any of the three producers contract §3 names
(highdicom, dcmqi, dcmjs/OHIF). They are adapter output, not clinical facts: ``service`` stores them and
turns them into ``rules.facts.LesionMeasurement`` once the study's date and patient are known.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal


class SRParseError(ValueError):
    """The object claims to be a TID 1500 report but cannot be read (C-STORE answers 0xC000-range)."""


@dataclass(frozen=True)
class Coded:
    """A coded concept as received (scheme as written, e.g. SCT, SRT, DCM, 99IMMRAD)."""

    value: str
    scheme: str
    meaning: str = ""


@dataclass(frozen=True)
class AlgorithmResult:
    """A measurement made by an algorithm (an AI score), kept with its identity: TID 300 Measurement with TID 4019
    Algorithm Identification (Algorithm Name 111001, Algorithm Version 111003, Algorithm Parameters 111002, DCM)."""

    concept: Coded
    value: Decimal
    unit: str
    """UCUM code value as written (e.g. ``1`` for a unitless score)."""
    algorithm_name: str
    algorithm_version: str
    algorithm_parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedGroup:
    """One Measurement Group (125007, DCM): one lesion (or reference region) at one timepoint."""

    identity_key: str | None
    """Stable lesion identity within the patient: the Tracking UID, or ``label:<text>`` for producers that
    regenerate Tracking UIDs (OHIF). ``None`` when neither exists: such a lesion is never matched."""
    identity_source: str
    """Which item gave the identity: ``tracking-uid``, ``tracking-identifier``, ``finding-label``,
    ``finding-site-label`` (an OHIF free-text code written as Finding Site), ``comment-label`` or
    ``none``."""
    tracking_uid: str | None = None
    tracking_identifier: str | None = None
    label: str | None = None
    finding: Coded | None = None
    finding_sites: tuple[Coded, ...] = ()
    nodal: bool = False
    long_axis_mm: Decimal | None = None
    short_axis_mm: Decimal | None = None
    diameter_mm: Decimal | None = None
    baseline_category: str | None = None
    """``target`` | ``non-target`` | ``non-lesion`` (CID 6145) when coded."""
    nontarget_status: str | None = None
    """``absent`` | ``present`` | ``unequivocal-progression`` from *Current Response* (112048, DCM)."""
    nontarget_change: str | None = None
    """``NC`` | ``INC`` | ``NCLA`` | ``INCLA`` | ``UNE`` (99IMMRAD non-target-change)."""
    injected: bool | None = None
    irradiated: bool | None = None
    equivocal: bool = False
    too_small: bool = False
    disappeared: bool = False
    """All size measurements are 0 mm."""
    merged_into: str | None = None
    """Identity (Tracking UID, or ``label:<text>``) of the lesion this one coalesced with (99IMMRAD merged-into)."""
    fragment: bool = False
    """99IMMRAD fragment = Yes: one of several groups of a lesion that split (contract §9.3)."""
    suv_max: Decimal | None = None
    suv_peak: Decimal | None = None
    sul_max: Decimal | None = None
    sul_peak: Decimal | None = None
    metabolic_volume_ml: Decimal | None = None
    tlg: Decimal | None = None
    reference_region: str | None = None
    """``liver`` | ``spleen`` | ``bone-marrow`` | ``blood-pool`` when the Finding is 126040 (DCM)."""
    reference_mean: Decimal | None = None
    reference_sd: Decimal | None = None
    reference_unit: str | None = None
    """``SUVbw`` or ``SUVlbm``: what ``reference_mean``/``reference_sd`` are measured in."""
    time_point: str | None = None
    time_point_type: Coded | None = None
    time_point_order: int | None = None
    referenced_sop_instance_uids: tuple[str, ...] = ()
    algorithm_results: tuple[AlgorithmResult, ...] = ()
    """Measurements carrying a TID 4019 Algorithm Identification (AI results), contract §9.6 "Signatures"."""
    notes: tuple[str, ...] = ()
    """Non-fatal oddities absorbed while parsing (e.g. ``px`` recomputed from Pixel Spacing)."""
    rejected_reason: str | None = None
    """Set when the group cannot be used (e.g. a ``px`` length with no referenced image to recompute
    it from, an implausible value, contract §9.2); the group is kept for the audit trail but yields no
    measurement."""
    awaited_images: tuple[str, ...] = ()
    """SOP Instance UIDs of images not available yet whose Pixel Spacing would convert this group's ``px``
    lengths to mm (contract §9.3 "SR order"): the group is *pending* until one of them arrives, not rejected
    for good. Empty when the group is usable or its rejection is final."""


@dataclass(frozen=True)
class ParsedReport:
    """The header facts and measurement groups of one SR instance."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str | None
    """DICOM PatientID; ``None`` when the header leaves it empty (dcmjs)."""
    study_date: dt.date | None
    """StudyDate of the SR's study; ``None`` when empty (the images' date is used instead)."""
    producer: str = ""
    """Best guess of the writer (``highdicom``, ``dcmjs``, ``cornerstone-adapters``, ``dcmqi``, ``other``)."""
    groups: tuple[ParsedGroup, ...] = ()
    notes: tuple[str, ...] = field(default=())
