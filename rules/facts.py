"""Typed facts the rule base reasons over.

Everything here is plain data: the DICOM listener and the FHIR mappings turn wire formats into these
objects, the criteria read them. Lengths are ``Decimal`` millimetres at 0.1 mm resolution and SUV-type
values ``Decimal`` at 0.01 resolution, so every threshold comparison can be exact
(``clinical/criteria-size-pet.md`` §0: "compare thresholds with exact rational or integer arithmetic").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum

from rules.pet_tracers import PetTracer

MM_RESOLUTION = Decimal("0.1")
SUV_RESOLUTION = Decimal("0.01")


def to_mm(value: float | int | str | Decimal | None) -> Decimal | None:
    """Round a length in millimetres to the stored 0.1 mm resolution.

    Producers write float noise such as ``24.9999999999999`` (dcmjs cuts DS strings to 16
    characters); contract §3 stores lengths at 0.1 mm so that such noise never decides a category.
    """
    if value is None:
        return None
    return Decimal(str(value)).quantize(MM_RESOLUTION, rounding=ROUND_HALF_UP)


def to_suv(value: float | int | str | Decimal | None) -> Decimal | None:
    """Round an SUV/SUL value to 0.01 (PERCIST thresholds are stated to one decimal)."""
    if value is None:
        return None
    return Decimal(str(value)).quantize(SUV_RESOLUTION, rounding=ROUND_HALF_UP)


class LesionRole(str, Enum):
    """Role of a lesion, fixed at baseline (contract §3 *Baseline Category*)."""

    TARGET = "target"
    """Target Lesion at Baseline (112074, DCM)."""
    NON_TARGET = "non-target"
    """Non-Target Lesion at Baseline (112075, DCM)."""
    NEW = "new"
    """First seen after baseline (RECIST 1.1 §4.3.2)."""


class LesionStatus(str, Enum):
    """How a lesion was found at one scan."""

    PRESENT = "present"
    """Measured (or, for a non-target lesion, seen)."""
    ABSENT = "absent"
    """Disappeared: measured as 0 mm (contract §3)."""
    TOO_SMALL = "too-small"
    """Present but too small to measure (RECIST 1.1 §Appendix I: default 5 mm)."""
    NOT_ASSESSED = "not-assessed"
    """Not imaged or not evaluable at this scan."""


class NonTargetStatus(str, Enum):
    """Non-target qualitative evaluation (DCM CID 6144 112045/112046/112047)."""

    ABSENT = "absent"
    PRESENT = "present"
    UNEQUIVOCAL_PROGRESSION = "unequivocal-progression"


def reported_status(*, too_small: bool, disappeared: bool, nontarget_status: str | None) -> LesionStatus:
    """A lesion's status from what a report says about it (contract §3): "too small to measure" wins, then
    disappeared (measured as 0 mm, or a non-target evaluated as absent), else present."""
    if too_small:
        return LesionStatus.TOO_SMALL
    if disappeared or nontarget_status == NonTargetStatus.ABSENT.value:
        return LesionStatus.ABSENT
    return LesionStatus.PRESENT


class NonTargetChange(str, Enum):
    """iRECIST working group change grades for non-target lesions and NLNT (size spec §2.2)."""

    NC = "NC"
    """No change from baseline or nadir."""
    INC = "INC"
    """Increased from baseline or nadir."""
    NCLA = "NCLA"
    """No change from the last assessment."""
    INCLA = "INCLA"
    """Further increase from the last assessment."""
    UNE = "UNE"
    """Unequivocal increase."""


class ReferenceRegion(str, Enum):
    """Background regions for PET (contract §3: Finding = 126040 DCM)."""

    LIVER = "liver"
    BLOOD_POOL = "blood-pool"
    SPLEEN = "spleen"
    BONE_MARROW = "bone-marrow"


class LocalTherapyKind(str, Enum):
    RADIOTHERAPY = "radiotherapy"
    """SCT 108290001 Radiation oncology AND/OR radiotherapy."""
    INTRATUMORAL_INJECTION = "intratumoral-injection"


@dataclass(frozen=True)
class LesionMeasurement:
    """One lesion at one scan, as the reader reported it."""

    lesion_id: str
    """Identity of the lesion within the patient (Tracking UID, or the label for OHIF; contract §3)."""
    scan_date: dt.date
    status: LesionStatus = LesionStatus.PRESENT
    role: LesionRole | None = None
    """Role as reported with this measurement (only meaningful at baseline)."""
    nodal: bool = False
    organ: str | None = None
    """Finding site (SNOMED CT code, or a free-text organ name)."""
    long_axis_mm: Decimal | None = None
    short_axis_mm: Decimal | None = None
    """Short axis for nodes; the greatest perpendicular diameter for other lesions."""
    nontarget_status: NonTargetStatus | None = None
    nontarget_change: NonTargetChange | None = None
    injected: bool | None = None
    irradiated: bool | None = None
    equivocal: bool = False
    """A new lesion not yet unequivocal (RECIST 1.1 §4.3.2: keep following it)."""
    finding_code: str | None = None
    """Coded finding (SNOMED CT), e.g. an irAE pattern rather than a tumour."""
    suv_max: Decimal | None = None
    sul_peak: Decimal | None = None
    metabolic_volume_ml: Decimal | None = None
    tlg: Decimal | None = None
    identity_source: str = "tracking-uid"
    source: str = ""
    """Where the fact came from (``dicom-sr:<SOP Instance UID>`` or ``fhir:Observation/<id>``)."""
    label: str | None = None
    merged_into: str | None = None
    """Identity of the lesion this one coalesced with (contract §9.3): it counts 0 mm, the coalesced lesion is
    measured as one (RECIST 1.1 §4.3 note on coalescing lesions; size spec §1.6)."""
    fragment: bool = False
    """One fragment of a lesion that split (contract §9.3 ``fragment`` = Yes)."""
    fragments: tuple[LesionMeasurement, ...] = ()
    """The fragments this measurement adds up (set by the timeline when a lesion is reported in fragments):
    ``long_axis_mm``/``short_axis_mm`` are then the sums of the fragments' diameters (RECIST 1.1), and
    bidimensional criteria add the fragments' products (irRC, size spec §1.6, §3.1)."""
    conflict: str | None = None
    """Why the lesion is *not assessed* at this scan although it was reported (e.g. two groups without the
    fragment marker, contract §9.3)."""

    @property
    def recist_diameter_mm(self) -> Decimal | None:
        """The RECIST 1.1 diameter: short axis for nodes, longest diameter otherwise (``recist_axis_mm``)."""
        return recist_axis_mm(self, nodal=self.nodal)


def recist_axis_mm(measurement: LesionMeasurement, *, nodal: bool) -> Decimal | None:
    """The axis RECIST 1.1 measures (§3.1.1): the short axis of a lymph node, the longest diameter of any other
    lesion — as reported (no 0 mm for an absent lesion, no 5 mm default for one too small to measure). The one place
    this choice is made: the criteria and the pages (``lesion_table`` cells, ``recist_axis_mm``) read it from here."""
    return measurement.short_axis_mm if nodal else measurement.long_axis_mm


@dataclass(frozen=True)
class ReferenceMeasurement:
    """A PET background region at one scan (PERCIST liver reference, BLR/SLR)."""

    region: ReferenceRegion
    scan_date: dt.date
    sul_mean: Decimal | None = None
    sul_sd: Decimal | None = None
    suv_mean: Decimal | None = None
    suv_max: Decimal | None = None
    source: str = ""


@dataclass(frozen=True)
class Scan:
    """One imaging timepoint: all studies of one patient on one calendar day."""

    scan_date: dt.date
    modalities: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()
    slice_thickness_mm: Decimal | None = None
    pet_uptake_minutes: Decimal | None = None
    pet_injected_dose_mbq: Decimal | None = None
    patient_weight_kg: Decimal | None = None
    symptom_driven: bool = False
    """Scan done for new symptoms (iRECIST early-scan exception, size spec §2.4)."""
    pet_tracer: PetTracer | None = None
    """The PET tracer of this timepoint (contract §9.3); ``None`` when the scan states none and no default was
    applied (the rules then treat it as FDG assumed, ``rules.pet_tracers``)."""


@dataclass(frozen=True)
class TherapyLine:
    """An immunotherapy line (contract §4, §9.3: every immunotherapy class, or an unclassified systemic drug)."""

    agent: str
    start_date: dt.date
    drug_class: str | None = None
    """Mechanism in short (``anti-PD-1``, ``CD19 CAR-T``, ``CD20×CD3``…)."""
    stop_date: dt.date | None = None
    stop_reason: str | None = None
    source: str = ""
    therapy_class: str = "immune-checkpoint-inhibitor"
    """``rules.therapy_classes`` class; ``unclassified`` lines are kept and warned about, never day 0. The
    default is the only class contract v1 carried."""


@dataclass(frozen=True)
class LocalTherapy:
    """Radiotherapy or intratumoral injection of named lesions (contract §4 ``Procedure``)."""

    kind: LocalTherapyKind
    performed_date: dt.date
    lesion_ids: tuple[str, ...] = ()
    body_site: str | None = None
    source: str = ""


@dataclass(frozen=True)
class ClinicalObservation:
    """A lab, vital sign, performance status or imaging biomarker value."""

    code: str
    """Our name for it, e.g. ``ecog``, ``ldh``, ``leukocytes``, ``neutrophils``, ``height``."""
    effective_date: dt.date
    value: Decimal | None = None
    unit: str | None = None
    reference_high: Decimal | None = None
    source: str = ""


@dataclass(frozen=True)
class LesionVolume:
    """A lesion's segmented volume at one scan (contract §9.6: voxel counting over a DICOM SEG segment)."""

    lesion_id: str
    """The lesion's identity key (Tracking UID or ``label:<text>``), as ``LesionMeasurement.lesion_id``."""
    scan_date: dt.date
    volume_cm3: Decimal
    source: str = ""
    modality: str | None = None
    """``CT`` / ``MR`` (anatomical volume) or ``PT`` (metabolic tumour volume)."""
    tlg: Decimal | None = None
    """PET: total lesion glycolysis (MTV × SUVmean), when the header allowed SUV."""


@dataclass(frozen=True)
class FindingReport:
    """A coded non-tumour finding (irAE pattern, sarcoid-like reaction) at a date."""

    finding_code: str
    effective_date: dt.date
    body_site: str | None = None
    lesion_id: str | None = None
    text: str | None = None
    source: str = ""


@dataclass(frozen=True)
class PatientFacts:
    """Everything the rule base may look at for one patient. Carries no direct identifiers."""

    patient_ref: str
    """Pseudonymous key (never the MRN or the name)."""
    sex: str | None = None
    birth_date: dt.date | None = None
    deceased_date: dt.date | None = None
    death_from_progression: bool | None = None
    cancer_type: str | None = None
    therapy_lines: tuple[TherapyLine, ...] = ()
    local_therapies: tuple[LocalTherapy, ...] = ()
    scans: tuple[Scan, ...] = ()
    measurements: tuple[LesionMeasurement, ...] = ()
    references: tuple[ReferenceMeasurement, ...] = ()
    observations: tuple[ClinicalObservation, ...] = ()
    findings: tuple[FindingReport, ...] = ()
    volumes: tuple[LesionVolume, ...] = ()
    """Segmented lesion volumes (contract §9.6); the volumetric response and volume kinetics use them."""
    notes: tuple[str, ...] = field(default=())
    """Facts the adapters could not use, stated for the assessment's provenance."""
