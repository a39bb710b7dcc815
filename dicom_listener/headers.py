"""Header facts of a received instance: patient, study, series, modality, dates, and what SUV needs (PET).

Images contribute headers only (contract §3); the pixel data is never decoded.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

TID1500_SR_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
}
"""SR classes that can carry TID 1500 (highdicom's ``srread`` accepts exactly these)."""

OTHER_SR_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR",
}


class HeaderError(ValueError):
    """The received bytes are not a readable DICOM data set."""


@dataclass(frozen=True)
class InstanceHeader:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str | None
    patient_id: str | None
    birth_date: dt.date | None
    sex: str | None
    study_date: dt.date | None
    modality: str | None
    accession: str | None
    slice_thickness_mm: Decimal | None
    pixel_spacing_mm: tuple[Decimal, Decimal] | None
    pet: dict[str, Any] = field(default_factory=dict)
    symptom_driven: bool = False
    """Request Attributes Sequence > Reason for Requested Procedure Code Sequence holds
    ``(symptom-driven, 99IMMRAD)`` (contract §9.3: an unscheduled scan done for a new symptom)."""

    @property
    def is_sr(self) -> bool:
        return self.sop_class_uid in TID1500_SR_CLASSES or self.sop_class_uid in OTHER_SR_CLASSES


MAX_LENGTH = {"UI": 64, "LO": 64, "SH": 16, "CS": 16}
"""Maximum value lengths of the VRs we keep (PS3.5 Table 6.2-1)."""
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_CONTROL = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f]")
"""Control characters no string VR we keep may hold (ESC, 0x1b, introduces character-set escapes)."""


def _text(ds: Dataset, keyword: str, vr: str = "LO") -> str | None:
    """A descriptive value (Units, Radiopharmaceutical…): ``None`` when absent or not a valid ``vr`` value."""
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    if len(text) > MAX_LENGTH[vr] or _CONTROL.search(text):
        return None
    return text or None


def _identifying(ds: Dataset, keyword: str, vr: str) -> str | None:
    """A value that identifies or files the instance (UIDs, Patient ID, Modality…): absent → ``None``,
    invalid → ``HeaderError``. Never truncated or cleaned up: a changed identifier would file the data under
    another patient, study or series."""
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if len(text) > MAX_LENGTH[vr]:
        raise HeaderError(f"{keyword} is longer than the {MAX_LENGTH[vr]} characters a {vr} value may hold")
    if _CONTROL.search(text) or (vr == "UI" and not _UID.fullmatch(text)):
        raise HeaderError(f"{keyword} is not a valid {vr} value")
    return text


_DA = re.compile(r"[0-9]{8}")


def parse_da(value: Any) -> dt.date | None:
    """A DICOM DA value (PS3.5 §6.2) as a date, the one DA parser of the listener (headers and SR reader).

    Strict: exactly eight ASCII digits ``YYYYMMDD`` naming a real calendar date (a ``date`` passes through),
    surrounding spaces aside; anything else is ``None``, never guessed: a longer value (a DT written as DA, two
    values), a short one, 20240230. The ACR-NEMA form ``YYYY.MM.DD``, which PS3.5 §6.2 mentions only as not
    compliant with DICOM, is refused too: no producer we read writes it, and a date read from it would decide
    plausibility and the scan's timepoint on a value the standard does not define.
    """
    if isinstance(value, dt.date):
        return value
    text = str(value or "").strip()
    if not _DA.fullmatch(text):
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _tm_seconds(value: Any) -> float | None:
    text = str(value or "").strip()
    if len(text) < 4:
        return None
    try:
        hours, minutes = int(text[0:2]), int(text[2:4])
        seconds = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds


def pet_facts(ds: Dataset) -> dict[str, Any]:
    """What SUV and PERCIST quality control need: injected dose, uptake time, weight, height."""
    facts: dict[str, Any] = {}
    weight = _decimal(ds.get("PatientWeight"))
    if weight:
        facts["patient_weight_kg"] = str(weight)
    height = _decimal(ds.get("PatientSize"))
    if height:
        facts["patient_height_m"] = str(height)
    facts["units"] = _text(ds, "Units", "CS")
    facts["decay_correction"] = _text(ds, "DecayCorrection", "CS")
    info = ds.get("RadiopharmaceuticalInformationSequence")
    if info:
        item = info[0]
        dose = _decimal(item.get("RadionuclideTotalDose"))
        if dose is not None:
            facts["injected_dose_mbq"] = str((dose / Decimal(1_000_000)).quantize(Decimal("0.1")))
        facts["radiopharmaceutical"] = _text(item, "Radiopharmaceutical")
        # Contract §9.3: the tracer as coded (CID 4021: SNOMED CT, legacy SRT, DCM/NCIt/UMLS), read by rules.pet_tracers.
        coded = item.get("RadiopharmaceuticalCodeSequence")
        if coded:
            facts["tracer_code"] = _text(coded[0], "CodeValue", "SH")
            facts["tracer_scheme"] = _text(coded[0], "CodingSchemeDesignator", "SH")
            facts["tracer_meaning"] = _text(coded[0], "CodeMeaning")
        half_life = _decimal(item.get("RadionuclideHalfLife"))
        if half_life is not None:
            facts["half_life_s"] = str(half_life)
        start = _tm_seconds(item.get("RadiopharmaceuticalStartTime"))
        start_dt = _text(item, "RadiopharmaceuticalStartDateTime")
        if start is None and start_dt and len(start_dt) >= 12:
            start = _tm_seconds(start_dt[8:])
        acquisition = _tm_seconds(ds.get("AcquisitionTime")) or _tm_seconds(ds.get("SeriesTime"))
        if start is not None and acquisition is not None:
            minutes = (acquisition - start) / 60.0
            if minutes < 0:
                minutes += 24 * 60
            facts["uptake_minutes"] = f"{minutes:.1f}"
    return {k: v for k, v in facts.items() if v is not None}


SYMPTOM_DRIVEN = ("symptom-driven", "99IMMRAD")
"""Contract §9.3 ``(symptom-driven, 99IMMRAD, "Symptom-driven unscheduled assessment")``."""


def is_symptom_driven(ds: Dataset) -> bool:
    """Request Attributes Sequence (0040,0275) > Reason for Requested Procedure Code Sequence (0040,100A)."""
    for request in ds.get("RequestAttributesSequence") or []:
        for code in request.get("ReasonForRequestedProcedureCodeSequence") or []:
            if (str(code.get("CodeValue", "")).strip(), str(code.get("CodingSchemeDesignator", "")).strip()) == (
                SYMPTOM_DRIVEN
            ):
                return True
    return False


UNDEFINED_LENGTH = 0xFFFFFFFF


def check_complete(ds: Dataset) -> None:
    """Refuse truncated data sets: pydicom reads a cut-off stream silently, so look for the signs.

    - an element whose value is shorter than its declared length (the stream ended inside it);
    - an image whose Pixel Data is missing (the stream ended before it) or, for a native (uncompressed)
      transfer syntax, shorter than Rows × Columns × Samples × Bits Allocated × Frames.
    """
    for tag in list(ds.keys())[-3:]:
        raw = ds.get_item(tag)
        length = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if length not in (None, UNDEFINED_LENGTH) and isinstance(value, (bytes, bytearray)) and len(value) < length:
            raise HeaderError(f"truncated data set: element {tag} holds {len(value)} of {length} bytes")
    sop_class = pydicom.uid.UID(str(ds.get("SOPClassUID", "")))
    if "Image Storage" not in sop_class.name or sop_class.name.startswith("Secondary Capture"):
        return
    if not any(keyword in ds for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise HeaderError("image without Pixel Data (truncated?)")
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if "PixelData" in ds and syntax is not None and not pydicom.uid.UID(str(syntax)).is_compressed:
        try:
            expected = (
                int(ds.Rows)
                * int(ds.Columns)
                * int(ds.get("SamplesPerPixel", 1))
                * int(ds.BitsAllocated)
                // 8
                * int(ds.get("NumberOfFrames", 1) or 1)
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise HeaderError(f"image description incomplete: {type(exc).__name__}") from exc
        actual = len(ds.get_item("PixelData").value or b"")
        if actual < expected:
            raise HeaderError(f"truncated Pixel Data: {actual} of {expected} bytes")


def read_header(encoded: bytes) -> tuple[Dataset, InstanceHeader]:
    """Read the data set (pixel data as raw bytes, never decoded), check it is complete, extract the header facts.

    Any failure to read the bytes is a ``HeaderError``: the sender gets a 0xC000 "cannot understand" with the
    reason, never the 0xA700 "retry later" an escaping exception would become.
    """
    try:
        return _read_header(encoded)
    except HeaderError:
        raise
    except Exception as exc:  # untrusted bytes: pydicom raises OSError, struct.error, ValueError…
        raise HeaderError(f"cannot read the data set: {type(exc).__name__}: {str(exc)[:200]}") from exc


def _read_header(encoded: bytes) -> tuple[Dataset, InstanceHeader]:
    try:
        ds = pydicom.dcmread(io.BytesIO(encoded), force=False)
    except InvalidDicomError as exc:
        raise HeaderError(f"not a DICOM data set: {str(exc)[:200]}") from exc
    sop_uid = _identifying(ds, "SOPInstanceUID", "UI")
    sop_class = _identifying(ds, "SOPClassUID", "UI")
    study_uid = _identifying(ds, "StudyInstanceUID", "UI")
    if not sop_uid or not sop_class:
        raise HeaderError("SOP Instance UID or SOP Class UID is missing")
    if not study_uid:
        raise HeaderError("Study Instance UID is missing")
    modality = _identifying(ds, "Modality", "CS")
    check_complete(ds)
    spacing = None
    try:
        raw = ds.get("PixelSpacing")
        if raw is not None and len(raw) == 2:
            spacing = (Decimal(str(raw[0])), Decimal(str(raw[1])))
            if not all(value.is_finite() for value in spacing):
                spacing = None
    except (TypeError, ValueError, InvalidOperation):
        spacing = None
    header = InstanceHeader(
        sop_instance_uid=sop_uid,
        sop_class_uid=sop_class,
        study_instance_uid=study_uid,
        series_instance_uid=_identifying(ds, "SeriesInstanceUID", "UI"),
        patient_id=_identifying(ds, "PatientID", "LO"),
        birth_date=parse_da(ds.get("PatientBirthDate")),
        sex=_text(ds, "PatientSex", "CS"),
        study_date=parse_da(ds.get("StudyDate")),
        modality=modality,
        accession=_identifying(ds, "AccessionNumber", "SH"),
        slice_thickness_mm=_decimal(ds.get("SliceThickness")),
        pixel_spacing_mm=spacing,
        pet=pet_facts(ds) if modality == "PT" else {},
        symptom_driven=is_symptom_driven(ds),
    )
    return ds, header
