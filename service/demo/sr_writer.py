"""Builders for real DICOM objects: CT and PET images and TID 1500 Measurement Reports.

Used by the tests and by ``immunorad demo``: what they produce is sent over the wire (C-STORE) exactly as
a PACS or a reading workstation would send it, so they are part of the package (the service's, not the
listener's: the listener only reads SRs; the vocabulary of ``dicom_listener.tid1500.codes`` is shared). The SR is
written with highdicom 0.28.2 as ``interop-notes.md`` §2.1 shows (Comprehensive 3D SR, TID 1500 root, one
Measurement Group per lesion), with the project's private codes of contract §3 in the ``99IMMRAD`` scheme,
declared in the Coding Scheme Identification Sequence.

Codes written here and where they come from (all verified in pydicom's DICOM 2024c dictionaries unless
marked): Finding 121071, Tracking Identifier 112039, Tracking Unique Identifier 112040, Baseline
Category 112016 (CID 6145: 112074/112075/112076), Current Response 112048 (CID 6144: 112045/112046/112047),
Background for Lesion to Background SUV Ratio 126040, SUVbw 126401, SUVlbm 126402, Metabolic Volume 126032,
Total Lesion Glycolysis 126033, Peak Value Within ROI 126031 (DCM); Long Axis 103339001, Short Axis
103340004, Diameter 81827009, Maximum 56851009, Mean 373098007, Standard Deviation 386136009, Yes 373066001,
No 373067005, Lesion 52988006, Lymph node 59441001, Liver 10200004, Spleen 78961009, Bone marrow 14016003,
Aorta 15825003, Fluorodeoxyglucose F^18^ 35321007, ^18^Fluorine 77004003 (SCT); Time Point C2348792 (UMLS,
from highdicom's ``TimePointContext``; not in pydicom).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import highdicom as hd
import numpy as np
import pydicom
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
)

from dicom_listener.tid1500.codes import (
    BACKGROUND_FOR_SUV_RATIO,
    BASELINE_CATEGORY,
    CURRENT_RESPONSE,
    IMMRAD_EQUIVOCAL,
    IMMRAD_FRAGMENT,
    IMMRAD_INJECTED,
    IMMRAD_IRRADIATED,
    IMMRAD_MERGED_INTO,
    IMMRAD_NODAL,
    IMMRAD_NON_TARGET_CHANGE,
    IMMRAD_SCHEME,
    IMMRAD_TOO_SMALL,
    METABOLIC_VOLUME,
    NON_LESION_AT_BASELINE,
    NON_TARGET_CHANGE_VALUES,
    NON_TARGET_LESION_AT_BASELINE,
    NON_TARGET_LESION_COMPLETE_RESPONSE,
    NON_TARGET_LESION_INCOMPLETE_RESPONSE_OR_SD,
    NON_TARGET_LESION_PROGRESSIVE_DISEASE,
    PEAK_VALUE_WITHIN_ROI,
    SUVBW,
    SUVLBM,
    TARGET_LESION_AT_BASELINE,
    TOTAL_LESION_GLYCOLYSIS,
    UID_TEXT,
)

__all__ = [
    "LesionSpec",
    "ReferenceRegionSpec",
    "TimePointSpec",
    "build_ct_image",
    "build_measurement_report",
    "build_pet_image",
    "immrad_coding_scheme",
]

_BASELINE_CATEGORY_VALUES = {
    "target": TARGET_LESION_AT_BASELINE,
    "non-target": NON_TARGET_LESION_AT_BASELINE,
    "non-lesion": NON_LESION_AT_BASELINE,
}
_NONTARGET_STATUS_VALUES = {
    "absent": NON_TARGET_LESION_COMPLETE_RESPONSE,
    "present": NON_TARGET_LESION_INCOMPLETE_RESPONSE_OR_SD,
    "unequivocal-progression": NON_TARGET_LESION_PROGRESSIVE_DISEASE,
}
_REFERENCE_REGION_SITES = {
    "liver": codes.SCT.Liver,
    "spleen": codes.SCT.Spleen,
    "bone-marrow": codes.SCT.BoneMarrow,
    "blood-pool": codes.SCT.Aorta,
}
_SUV_CONCEPTS = {"SUVbw": SUVBW, "SUVlbm": SUVLBM}
UNIT_SUVBW = codes.UCUM.StandardizedUptakeValueBodyWeight
"""``g/ml{SUVbw}`` (DICOM 2024c, CID 85)."""
UNIT_SUVLBM = codes.UCUM.StandardizedUptakeValueLeanBodyMassJames
"""``g/ml{SUVlbm}`` (DICOM 2024c, CID 85)."""
UNIT_SUVBW_LEGACY = Code("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight")
"""Older spelling, as in dcmqi's ``sr-tid1500-qualitative.json`` (interop-notes §1.2)."""
UNIT_SUVLBM_LEGACY = Code("{SUVlbm}g/ml", "UCUM", "Standardized Uptake Value lean body mass")
_GRAM = Code("g", "UCUM", "gram")
"""TLG unit: SUV (g/ml) × volume (ml); the unit choice is ours (interop-notes §2.1 [inf])."""
_SUV_UNITS = {
    # (quantity, legacy spelling) -> UCUM unit. DICOM 2024c spells them g/ml{SUVbw}; dcmqi examples
    # use the older {SUVbw}g/ml (interop-notes §1.2).
    ("SUVbw", False): UNIT_SUVBW,
    ("SUVbw", True): UNIT_SUVBW_LEGACY,
    ("SUVlbm", False): UNIT_SUVLBM,
    ("SUVlbm", True): UNIT_SUVLBM_LEGACY,
}


def immrad_coding_scheme() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification Sequence item declaring ``99IMMRAD`` (contract §3), as dcmjs
    declares ``99dcmjs``. A new item per document: datasets are mutable."""
    return CodingSchemeIdentificationItem(
        designator=IMMRAD_SCHEME,
        name="immunorad private codes",
        responsible_organization="immunorad",
    )


# --------------------------------------------------------------------------------------------------
# Images


def _base_image(
    *,
    sop_class_uid: str,
    modality: str,
    patient_id: str,
    patient_name: str,
    study_instance_uid: str,
    study_date: dt.date,
    series_instance_uid: str | None,
    sop_instance_uid: str | None,
    rows: int,
    columns: int,
    pixel_spacing_mm: float,
    slice_thickness_mm: float,
    accession_number: str,
    birth_date: dt.date | None,
    sex: str | None,
    instance_number: int,
    series_time: dt.time,
) -> pydicom.FileDataset:
    """The attributes every single-frame cross-sectional image here shares (Patient, General Study,
    General Series, Frame of Reference, Image Plane, Image Pixel modules), with Part-10 file meta."""
    if rows <= 0 or columns <= 0:
        raise ValueError('Arguments "rows" and "columns" must be positive.')
    if pixel_spacing_mm <= 0:
        raise ValueError('Argument "pixel_spacing_mm" must be positive.')
    if sex not in (None, "M", "F", "O"):
        raise ValueError('Argument "sex" must be "M", "F", "O" or None.')
    series_instance_uid = series_instance_uid or hd.UID()
    sop_instance_uid = sop_instance_uid or hd.UID()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "IMMUNORAD_BLD"
    # The dataset's own encoding must match the file meta's transfer syntax (pydicom defaults to implicit VR),
    # or a sender such as pynetdicom warns about the mismatch and re-encodes.
    ds = pydicom.FileDataset(
        None,  # type: ignore[arg-type]  # pydicom takes None for an in-memory dataset; its annotation omits it
        Dataset(),
        file_meta=meta,
        preamble=b"\x00" * 128,
        is_implicit_VR=False,
        is_little_endian=True,
    )

    date = study_date.strftime("%Y%m%d")
    time = series_time.strftime("%H%M%S")
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = "090000"
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.AccessionNumber = accession_number
    ds.Modality = modality
    ds.Manufacturer = "immunorad synthetic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"{modality} synthetic study"
    ds.SeriesDescription = f"{modality} synthetic series"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date.strftime("%Y%m%d") if birth_date else ""
    ds.PatientSex = sex or ""
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = slice_thickness_mm
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 2 if modality == "CT" else 3
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance_number
    z = -float(instance_number - 1) * slice_thickness_mm
    half_fov = (columns * pixel_spacing_mm) / 2.0
    ds.ImagePositionPatient = [-half_fov + pixel_spacing_mm / 2, -half_fov + pixel_spacing_mm / 2, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    # One frame of reference per study (deterministic, so every slice of a study shares it).
    ds.FrameOfReferenceUID = pydicom.uid.generate_uid(entropy_srcs=[study_instance_uid, "FoR"])
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = z
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def build_ct_image(
    *,
    patient_id: str,
    patient_name: str,
    study_instance_uid: str,
    study_date: dt.date,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    rows: int = 64,
    columns: int = 64,
    pixel_spacing_mm: float = 1.0,
    slice_thickness_mm: float = 5.0,
    accession_number: str = "",
    birth_date: dt.date | None = None,
    sex: str | None = None,
    instance_number: int = 1,
) -> pydicom.FileDataset:
    """A small single-frame CT Image Storage instance (Explicit VR Little Endian, signed 16-bit pixels
    at -1000 HU with a soft-tissue disc), valid as highdicom SR evidence and for C-STORE."""
    ds = _base_image(
        sop_class_uid=CTImageStorage,
        modality="CT",
        patient_id=patient_id,
        patient_name=patient_name,
        study_instance_uid=study_instance_uid,
        study_date=study_date,
        series_instance_uid=series_instance_uid,
        sop_instance_uid=sop_instance_uid,
        rows=rows,
        columns=columns,
        pixel_spacing_mm=pixel_spacing_mm,
        slice_thickness_mm=slice_thickness_mm,
        accession_number=accession_number,
        birth_date=birth_date,
        sex=sex,
        instance_number=instance_number,
        series_time=dt.time(9, 0),
    )
    ds.KVP = 120
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    yy, xx = np.mgrid[0:rows, 0:columns]
    disc = (yy - rows / 2) ** 2 + (xx - columns / 2) ** 2 <= (min(rows, columns) * 0.4) ** 2
    pixels = np.where(disc, 40, -1000).astype(np.int16)
    ds.PixelData = pixels.tobytes()
    return ds


SYMPTOM_DRIVEN = Code("symptom-driven", IMMRAD_SCHEME, "Symptom-driven unscheduled assessment")
"""Contract §9.3: Reason for Requested Procedure of a scan done for a new symptom (iRECIST early confirmation)."""


_D = TypeVar("_D", bound=Dataset)


def mark_symptom_driven(ds: _D) -> _D:
    """Request Attributes Sequence (0040,0275) > Reason for Requested Procedure Code Sequence (0040,100A) =
    ``(symptom-driven, 99IMMRAD)`` on an image or SR header (contract §9.3); returns ``ds``."""
    request = Dataset()
    request.RequestedProcedureID = "UNSCHEDULED"
    request.ReasonForRequestedProcedureCodeSequence = [hd.sr.CodedConcept(*SYMPTOM_DRIVEN[:3])]
    ds.RequestAttributesSequence = [request]
    return ds


def build_pet_image(
    *,
    patient_id: str,
    patient_name: str,
    study_instance_uid: str,
    study_date: dt.date,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    rows: int = 64,
    columns: int = 64,
    pixel_spacing_mm: float = 4.0,
    slice_thickness_mm: float = 4.0,
    accession_number: str = "",
    birth_date: dt.date | None = None,
    sex: str | None = None,
    instance_number: int = 1,
    patient_weight_kg: float = 75.0,
    patient_size_m: float = 1.75,
    injected_dose_bq: float = 3.7e8,
    injection_time: dt.time = dt.time(8, 0),
    uptake_minutes: int = 60,
    radiopharmaceutical: Code | None = codes.SCT.FluorodeoxyglucoseF18,
    radiopharmaceutical_text: str | None = "Fluorodeoxyglucose",
    symptom_driven: bool = False,
) -> pydicom.FileDataset:
    """A small single-frame PET Image Storage instance carrying what SUV needs (PS3.3 C.8.9.1 PET
    Series, C.8.9.2 PET Isotope): FDG, total dose in Bq, injection start (time and date-time), F-18
    half life 6586.2 s, patient weight (kg) and size (m), Units BQML, decay corrected to START, and the
    series/acquisition time ``uptake_minutes`` after the injection.

    ``radiopharmaceutical`` (Radiopharmaceutical Code Sequence, CID 4021; ``None`` leaves it out) and
    ``radiopharmaceutical_text`` (Radiopharmaceutical, 0018,0031; ``None`` leaves it out) state the tracer
    (contract §9.3); ``symptom_driven`` writes the Request Attributes Sequence reason (``mark_symptom_driven``)."""
    if patient_weight_kg <= 0 or injected_dose_bq <= 0:
        raise ValueError('Arguments "patient_weight_kg" and "injected_dose_bq" must be positive.')
    if not 0 <= uptake_minutes < 24 * 60:
        raise ValueError('Argument "uptake_minutes" must be within one day.')
    injection = dt.datetime.combine(study_date, injection_time)
    acquisition = injection + dt.timedelta(minutes=uptake_minutes)
    ds = _base_image(
        sop_class_uid=PositronEmissionTomographyImageStorage,
        modality="PT",
        patient_id=patient_id,
        patient_name=patient_name,
        study_instance_uid=study_instance_uid,
        study_date=study_date,
        series_instance_uid=series_instance_uid,
        sop_instance_uid=sop_instance_uid,
        rows=rows,
        columns=columns,
        pixel_spacing_mm=pixel_spacing_mm,
        slice_thickness_mm=slice_thickness_mm,
        accession_number=accession_number,
        birth_date=birth_date,
        sex=sex,
        instance_number=instance_number,
        series_time=acquisition.time(),
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientWeight = patient_weight_kg
    ds.PatientSize = patient_size_m
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.Units = "BQML"
    ds.CountsSource = "EMISSION"
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["ATTN", "DECY"]
    ds.DecayFactor = 1
    ds.FrameReferenceTime = 0
    ds.ActualFrameDuration = 180000
    ds.NumberOfSlices = 1
    ds.ImageIndex = instance_number
    ds.AcquisitionDateTime = acquisition.strftime("%Y%m%d%H%M%S")
    tracer = radiopharmaceutical
    information = Dataset()
    if radiopharmaceutical_text is not None:
        information.Radiopharmaceutical = radiopharmaceutical_text
    information.RadiopharmaceuticalStartTime = injection.strftime("%H%M%S")
    information.RadiopharmaceuticalStartDateTime = injection.strftime("%Y%m%d%H%M%S")
    information.RadionuclideTotalDose = injected_dose_bq
    information.RadionuclideHalfLife = 6586.2
    information.RadionuclidePositronFraction = 0.9673
    information.RadionuclideCodeSequence = [hd.sr.CodedConcept(*codes.SCT._18Fluorine[:3])]
    if tracer is not None:
        information.RadiopharmaceuticalCodeSequence = [hd.sr.CodedConcept(*tracer[:3])]
    ds.RadiopharmaceuticalInformationSequence = [information]
    if symptom_driven:
        mark_symptom_driven(ds)
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    yy, xx = np.mgrid[0:rows, 0:columns]
    hot = (yy - rows / 2) ** 2 + (xx - columns / 2) ** 2 <= (min(rows, columns) * 0.1) ** 2
    ds.PixelData = np.where(hot, 20000, 2000).astype(np.uint16).tobytes()
    return ds


# --------------------------------------------------------------------------------------------------
# Measurement Report


@dataclass(frozen=True)
class TimePointSpec:
    """TID 1502 Time Point Context written into every group of the report."""

    time_point: str
    """Time Point (C2348792, UMLS) free text, e.g. ``"BL"``, ``"FU1"``."""
    time_point_type: Code | None = None
    """CID 6146 value, e.g. Baseline (C1442488, UMLS) or Posttreatment (126074, DCM)."""
    time_point_order: int | None = None


@dataclass(frozen=True)
class LesionSpec:
    """One lesion at one time point, as a reader would record it (contract §3)."""

    tracking_uid: str | None = None
    """Tracking Unique Identifier (112040); a new UID is generated when ``None``."""
    label: str | None = None
    """Tracking Identifier (112039), e.g. ``"T1 liver"``. highdicom requires one, so ``None`` writes
    ``"Lesion <n>"`` (n = position in ``lesions``, from 1)."""
    site: Code | None = None
    """Finding Site (363698007) value."""
    nodal: bool = False
    """Writes Lymph node (59441001, SCT) as the site when ``site`` is None, else the 99IMMRAD ``nodal``
    boolean (Yes) unless the site is Lymph node. A Lymph node site makes the lesion nodal anyway."""
    long_axis_mm: float | Decimal | None = None
    short_axis_mm: float | Decimal | None = None
    diameter_mm: float | Decimal | None = None
    baseline_category: str | None = None
    """``target`` | ``non-target`` | ``non-lesion`` → Baseline Category (112016, DCM)."""
    nontarget_status: str | None = None
    """``absent`` | ``present`` | ``unequivocal-progression`` → Current Response (112048, DCM)."""
    nontarget_change: str | None = None
    """``NC`` | ``INC`` | ``NCLA`` | ``INCLA`` | ``UNE`` → (non-target-change, 99IMMRAD)."""
    injected: bool | None = None
    irradiated: bool | None = None
    equivocal: bool | None = None
    too_small: bool | None = None
    finding: Code | None = None
    """Finding (121071); ``None`` writes Lesion (52988006, SCT)."""
    suv_max: float | Decimal | None = None
    suv_peak: float | Decimal | None = None
    sul_peak: float | Decimal | None = None
    sul_max: float | Decimal | None = None
    metabolic_volume_ml: float | Decimal | None = None
    tlg: float | Decimal | None = None
    legacy_suv_units: bool = False
    """Write the older ``{SUVbw}g/ml`` / ``{SUVlbm}g/ml`` spellings (as dcmqi's examples do)."""
    image_index: int = 0
    """Which ``evidence`` image the group's geometry and source reference point at."""
    merged_into: str | None = None
    """Contract §9.3: the Tracking UID (written as UIDREF) or, when it is not a UID, the label (TEXT) of the
    lesion this one coalesced with; send the lesion with 0 mm."""
    fragment: bool | None = None
    """Contract §9.3: 99IMMRAD ``fragment`` = Yes on each group of a lesion that split (same ``tracking_uid``)."""

    def __post_init__(self) -> None:
        if self.baseline_category not in (None, *_BASELINE_CATEGORY_VALUES):
            raise ValueError(f'Argument "baseline_category" is not one of {sorted(_BASELINE_CATEGORY_VALUES)}.')
        if self.nontarget_status not in (None, *_NONTARGET_STATUS_VALUES):
            raise ValueError(f'Argument "nontarget_status" is not one of {sorted(_NONTARGET_STATUS_VALUES)}.')
        if self.nontarget_change not in (None, *NON_TARGET_CHANGE_VALUES):
            raise ValueError(f'Argument "nontarget_change" is not one of {sorted(NON_TARGET_CHANGE_VALUES)}.')
        for name in (
            "long_axis_mm",
            "short_axis_mm",
            "diameter_mm",
            "suv_max",
            "suv_peak",
            "sul_peak",
            "sul_max",
            "metabolic_volume_ml",
            "tlg",
        ):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f'Argument "{name}" must be a non-negative number.')
        if self.image_index < 0:
            raise ValueError('Argument "image_index" must be non-negative.')

    @property
    def has_size(self) -> bool:
        return any(v is not None for v in (self.long_axis_mm, self.short_axis_mm, self.diameter_mm))


@dataclass(frozen=True)
class ReferenceRegionSpec:
    """A PET background region: Finding = Background for Lesion to Background SUV Ratio (126040, DCM)."""

    region: str
    """``liver`` | ``spleen`` | ``bone-marrow`` | ``blood-pool`` (written as Aorta 15825003)."""
    mean: float | Decimal
    sd: float | Decimal | None = None
    unit: str = "SUVlbm"
    """``SUVlbm`` (PERCIST SUL) or ``SUVbw``."""
    tracking_uid: str | None = None
    label: str | None = None
    """Tracking Identifier (112039); ``None`` writes ``"<region> reference"``."""
    legacy_suv_units: bool = False
    image_index: int = 0

    def __post_init__(self) -> None:
        if self.region not in _REFERENCE_REGION_SITES:
            raise ValueError(f'Argument "region" is not one of {sorted(_REFERENCE_REGION_SITES)}.')
        if self.unit not in _SUV_CONCEPTS:
            raise ValueError(f'Argument "unit" is not one of {sorted(_SUV_CONCEPTS)}.')
        if not self.mean >= 0 or (self.sd is not None and not self.sd >= 0):
            raise ValueError('Arguments "mean" and "sd" must be non-negative numbers.')
        if self.image_index < 0:
            raise ValueError('Argument "image_index" must be non-negative.')


def _pick_image(evidence: Sequence[Dataset], index: int) -> Dataset:
    if index >= len(evidence):
        raise ValueError(f'"image_index" {index} is out of range for {len(evidence)} evidence images.')
    return evidence[index]


def _boolean(concept: Code, value: bool) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(name=concept, value=codes.SCT.Yes if value else codes.SCT.No)


def _time_point_context(time_point: TimePointSpec | None) -> hd.sr.TimePointContext | None:
    if time_point is None:
        return None
    return hd.sr.TimePointContext(
        time_point=time_point.time_point,
        time_point_type=time_point.time_point_type,
        time_point_order=time_point.time_point_order,
    )


def _lesion_region(image: Dataset, lesion: LesionSpec) -> hd.sr.ImageRegion:
    """A planar Image Region (111030) on ``image``: the long axis as a horizontal 2-point polyline in
    pixel coordinates (column, row), or a point when the lesion measures 0 mm."""
    length_mm = max(float(v) for v in (lesion.long_axis_mm, lesion.diameter_mm, lesion.short_axis_mm) if v is not None)
    spacing = float(image.PixelSpacing[1])
    columns, rows = int(image.Columns), int(image.Rows)
    length_px = min(length_mm / spacing, columns - 2.0)
    centre = (columns / 2.0, rows / 2.0)
    source = hd.sr.SourceImageForRegion.from_source_image(image)
    if length_px <= 0:
        return hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POINT,
            graphic_data=np.array([centre]),
            source_image=source,
        )
    data = np.array([[centre[0] - length_px / 2, centre[1]], [centre[0] + length_px / 2, centre[1]]])
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=data, source_image=source)


def _measurement(name: Code, value: float | Decimal, unit: Code, derivation: Code | None = None) -> hd.sr.Measurement:
    # highdicom's NUM takes int or float only; callers may hold Decimal millimetres (rules.facts).
    return hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation)


def _lesion_measurements(lesion: LesionSpec) -> list[hd.sr.Measurement]:
    items: list[hd.sr.Measurement] = []
    for concept, value in (
        (codes.SCT.LongAxis, lesion.long_axis_mm),
        (codes.SCT.ShortAxis, lesion.short_axis_mm),
        (codes.SCT.Diameter, lesion.diameter_mm),
    ):
        if value is not None:
            items.append(_measurement(concept, value, codes.UCUM.Millimeter))
    for quantity, derivation, value in (
        ("SUVbw", codes.SCT.Maximum, lesion.suv_max),
        ("SUVbw", PEAK_VALUE_WITHIN_ROI, lesion.suv_peak),
        ("SUVlbm", codes.SCT.Maximum, lesion.sul_max),
        ("SUVlbm", PEAK_VALUE_WITHIN_ROI, lesion.sul_peak),
    ):
        if value is not None:
            unit = _SUV_UNITS[(quantity, lesion.legacy_suv_units)]
            items.append(_measurement(_SUV_CONCEPTS[quantity], value, unit, derivation))
    if lesion.metabolic_volume_ml is not None:
        items.append(_measurement(METABOLIC_VOLUME, lesion.metabolic_volume_ml, codes.UCUM.CubicCentimeter))
    if lesion.tlg is not None:
        items.append(_measurement(TOTAL_LESION_GLYCOLYSIS, lesion.tlg, _GRAM))
    return items


def _lesion_evaluations(lesion: LesionSpec, site: Code | None) -> list[hd.sr.QualitativeEvaluation]:
    items: list[hd.sr.QualitativeEvaluation] = []
    if lesion.baseline_category is not None:
        items.append(
            hd.sr.QualitativeEvaluation(
                name=BASELINE_CATEGORY,
                value=_BASELINE_CATEGORY_VALUES[lesion.baseline_category],
            )
        )
    if lesion.nontarget_status is not None:
        items.append(
            hd.sr.QualitativeEvaluation(
                name=CURRENT_RESPONSE,
                value=_NONTARGET_STATUS_VALUES[lesion.nontarget_status],
            )
        )
    if lesion.nontarget_change is not None:
        items.append(
            hd.sr.QualitativeEvaluation(
                name=IMMRAD_NON_TARGET_CHANGE,
                value=NON_TARGET_CHANGE_VALUES[lesion.nontarget_change],
            )
        )
    for concept, value in (
        (IMMRAD_INJECTED, lesion.injected),
        (IMMRAD_IRRADIATED, lesion.irradiated),
        (IMMRAD_EQUIVOCAL, lesion.equivocal),
        (IMMRAD_TOO_SMALL, lesion.too_small),
        (IMMRAD_FRAGMENT, lesion.fragment),
    ):
        if value is not None:
            items.append(_boolean(concept, value))
    if lesion.nodal and not (site is not None and site == codes.SCT.LymphNode):
        items.append(_boolean(IMMRAD_NODAL, True))
    return items


def _lesion_group(
    lesion: LesionSpec,
    position: int,
    evidence: Sequence[Dataset],
    time_point: hd.sr.TimePointContext | None,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations:
    image = _pick_image(evidence, lesion.image_index)
    site = lesion.site if lesion.site is not None else (codes.SCT.LymphNode if lesion.nodal else None)
    common: dict[str, Any] = dict(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=lesion.tracking_uid or hd.UID(),
            identifier=lesion.label if lesion.label is not None else f"Lesion {position}",
        ),
        time_point_context=time_point,
        finding_type=lesion.finding if lesion.finding is not None else codes.SCT.Lesion,
        finding_sites=[hd.sr.FindingSite(anatomic_location=site)] if site is not None else None,
        measurements=_lesion_measurements(lesion) or None,
        qualitative_evaluations=_lesion_evaluations(lesion, site) or None,
    )
    group: hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    if lesion.has_size:
        # TID 1410 planar group: geometry on the image, method RECIST 1.1 (126081, DCM; CID 6147).
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_region=_lesion_region(image, lesion),
            method=codes.DCM.RECIST1Point1,
            **common,
        )
    else:
        # TID 1501 group without geometry (a non-target lesion that is only "present", a PET-only lesion).
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(image)],
            **common,
        )
    if lesion.merged_into:
        # highdicom has no slot for it: a CONTAINS item of the group container (contract §9.3 merged-into).
        kind = hd.sr.UIDRefContentItem if UID_TEXT.fullmatch(lesion.merged_into) else hd.sr.TextContentItem
        group[0].ContentSequence.append(
            kind(
                name=IMMRAD_MERGED_INTO,
                value=lesion.merged_into,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    return group


def _reference_group(
    reference: ReferenceRegionSpec,
    evidence: Sequence[Dataset],
    time_point: hd.sr.TimePointContext | None,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    image = _pick_image(evidence, reference.image_index)
    concept = _SUV_CONCEPTS[reference.unit]
    unit = _SUV_UNITS[(reference.unit, reference.legacy_suv_units)]
    measurements = [_measurement(concept, reference.mean, unit, codes.SCT.Mean)]
    if reference.sd is not None:
        measurements.append(_measurement(concept, reference.sd, unit, codes.SCT.StandardDeviation))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=reference.tracking_uid or hd.UID(),
            identifier=reference.label if reference.label is not None else f"{reference.region} reference",
        ),
        time_point_context=time_point,
        finding_type=BACKGROUND_FOR_SUV_RATIO,
        finding_sites=[hd.sr.FindingSite(anatomic_location=_REFERENCE_REGION_SITES[reference.region])],
        measurements=measurements,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(image)],
    )


_DOCUMENT_CLASSES = {
    "comprehensive-3d": hd.sr.Comprehensive3DSR,
    "comprehensive": hd.sr.ComprehensiveSR,
    "enhanced": hd.sr.EnhancedSR,
}


def build_measurement_report(
    *,
    evidence: Sequence[Dataset],
    lesions: Sequence[LesionSpec],
    references: Sequence[ReferenceRegionSpec] = (),
    time_point: TimePointSpec | None = None,
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    observer_name: str = "Reader^Test",
    document_class: str = "comprehensive-3d",
    symptom_driven: bool = False,
) -> hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR | hd.sr.EnhancedSR:
    """A TID 1500 Imaging Measurement Report (126000, DCM) over ``evidence`` with one Measurement Group
    per lesion and per reference region. Patient and study attributes come from ``evidence[0]``.

    ``document_class`` picks the SOP class: ``comprehensive-3d`` (default), ``comprehensive`` or
    ``enhanced`` (what dcmjs writes). Lesions with a size get a TID 1410 planar group with a 2D Image
    Region on their evidence image; the others a TID 1501 group that names its source image.
    ``symptom_driven`` marks the scan as done for a new symptom (``mark_symptom_driven``, contract §9.3).
    """
    if len(evidence) == 0:
        raise ValueError('Argument "evidence" must contain at least one image.')
    if len(lesions) + len(references) == 0:
        raise ValueError('Arguments "lesions" and "references" are both empty: TID 1500 needs one group.')
    if document_class not in _DOCUMENT_CLASSES:
        raise ValueError(f'Argument "document_class" is not one of {sorted(_DOCUMENT_CLASSES)}.')
    # One TID 1502 context per group: content items are datasets, never shared between groups.
    groups = [
        _lesion_group(lesion, n, evidence, _time_point_context(time_point)) for n, lesion in enumerate(lesions, 1)
    ]
    groups += [_reference_group(ref, evidence, _time_point_context(time_point)) for ref in references]
    modality = str(evidence[0].get("Modality", ""))
    procedure = codes.LN.PETWholeBody if modality == "PT" else codes.LN.CTUnspecifiedBodyRegion
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=hd.sr.ObserverContext(
                observer_type=codes.DCM.Person,
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=observer_name),
            )
        ),
        procedure_reported=procedure,
        imaging_measurements=groups,
        referenced_images=list(evidence),
    )
    sr = _DOCUMENT_CLASSES[document_class](
        evidence=list(evidence),
        content=report,
        series_number=99,
        series_instance_uid=series_instance_uid or hd.UID(),
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=1,
        manufacturer="immunorad",
        is_complete=True,
        is_final=False,
        coding_schemes=[immrad_coding_scheme()],
    )
    return mark_symptom_driven(sr) if symptom_driven else sr
