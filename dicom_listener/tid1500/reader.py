"""Read a DICOM TID 1500 Measurement Report into ``ParsedReport`` (contract §3, "DICOM in").

One reader for the three producers the contract names (highdicom, dcmqi/DCMTK, dcmjs/OHIF). The content tree is
read as pydicom decoded it, checked and its groups found as highdicom would (``structure``; ``interop-notes.md``
§2.2); every concept is then resolved **by code** (``codes``),
never by Code Meaning and never by relationship type (dcmjs writes Finding Site as CONTAINS). The producers'
differences absorbed are in ``quirks`` (listed in ``docs/interop-notes.md`` §1.4 and
``tests/fixtures/ohif-dcmjs/README.md``); units and pixel lengths in ``geometry``.

``structure`` finds the groups; each group's items are then read here in a single pass (no further tree walks). The
received dataset is never modified.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from os import PathLike
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from dicom_listener.headers import TID1500_SR_CLASSES, parse_da
from dicom_listener.tid1500.codes import (
    ALGORITHM_NAME,
    ALGORITHM_PARAMETERS,
    ALGORITHM_VERSION,
    BACKGROUND_FOR_SUV_RATIO,
    BASELINE_CATEGORIES,
    BASELINE_CATEGORY,
    COMMENT,
    CONTROL_CHARACTERS,
    CURRENT_RESPONSE,
    DERIVATION,
    FINDING,
    FINDING_SITE,
    IMAGING_MEASUREMENT_REPORT,
    IMAGING_MEASUREMENTS,
    IMMRAD_MERGED_INTO,
    IMMRAD_NON_TARGET_CHANGE,
    IMMRAD_SCHEME,
    LYMPH_NODE,
    MEASUREMENT_GROUP,
    METABOLIC_VOLUME,
    NO,
    NON_TARGET_CHANGE_VALUES,
    NONTARGET_STATUSES,
    REFERENCE_REGIONS,
    SIZE_CONCEPTS,
    SIZE_NAMES,
    SUV_DERIVATION_NAMES,
    SUV_DERIVATIONS,
    SUVBW,
    SUVLBM,
    TIME_POINT,
    TIME_POINT_ORDER,
    TIME_POINT_TYPE,
    TOTAL_LESION_GLYCOLYSIS,
    TRACKING_IDENTIFIER,
    TRACKING_UNIQUE_IDENTIFIER,
    UID_TEXT,
    YES,
    coded,
    lookup,
    plain,
    usable_code,
)
from dicom_listener.tid1500.geometry import (
    ML_PER_UNIT,
    MM_PER_UNIT,
    PIXEL_UNITS,
    SUV_UNITS,
    TLG_UNITS,
    pixel_length_mm,
    referenced_sop_uid,
)
from dicom_listener.tid1500.model import AlgorithmResult, ParsedGroup, ParsedReport, SRParseError
from dicom_listener.tid1500.quirks import DCMJS_FREE_TEXT_CODE_VALUES, guess_producer, is_tool_name, producer_notes
from dicom_listener.tid1500.structure import check_content_tree, measurement_groups
from rules.facts import to_mm, to_suv
from rules.plausibility import (
    DEFAULT_LIMITS,
    PlausibilityLimits,
    as_number,
    length_problem,
    suv_problem,
    volume_problem,
)

__all__ = ["parse_measurement_report", "parse_measurement_report_file"]


# --------------------------------------------------------------------------------------------------
# Public API


def parse_measurement_report(
    ds: Dataset,
    referenced_images: Mapping[str, Dataset] | None = None,
    limits: PlausibilityLimits = DEFAULT_LIMITS,
) -> ParsedReport:
    """Parse one TID 1500 Measurement Report (Enhanced, Comprehensive or Comprehensive 3D SR).

    ``referenced_images`` maps SOP Instance UID → image header; it is only used to recompute lengths
    written in pixels (older dcmjs) from their SCOORD and the image's Pixel Spacing. A group with an
    implausible value (``rules.plausibility``, contract §9.2) is rejected with the reason. The caller's
    dataset is not modified. Raises ``SRParseError`` for anything that is not such a report or whose
    content tree cannot be read.
    """
    if not isinstance(ds, Dataset):
        raise SRParseError(f"expected a pydicom Dataset, got {type(ds).__name__}")
    images = referenced_images or {}
    try:
        sop_class_uid = str(ds.get("SOPClassUID", "") or "")
        if sop_class_uid not in TID1500_SR_CLASSES:
            name = pydicom.uid.UID(sop_class_uid).name if sop_class_uid else "no SOP Class UID"
            raise SRParseError(
                f"SOP Class {sop_class_uid or '-'} ({name}) is not Enhanced, Comprehensive or Comprehensive 3D SR"
            )
        header = _read_header(ds)
        report_notes: list[str] = list(header.notes)
        groups = _read_measurement_groups(ds, report_notes)
        parsed = tuple(_parse_group(group, images, limits) for group in groups)
        report_notes.extend(_shared_identity_notes(parsed))
        producer = guess_producer(ds, parsed)
    except SRParseError:
        raise
    except Exception as exc:  # pydicom/highdicom raise many types; the edge needs one
        raise SRParseError(f"measurement report cannot be read: {_describe(exc)}") from exc
    return ParsedReport(
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=sop_class_uid,
        study_instance_uid=header.study_instance_uid,
        series_instance_uid=header.series_instance_uid,
        patient_id=header.patient_id,
        study_date=header.study_date,
        producer=producer,
        groups=parsed,
        notes=tuple(report_notes),
    )


def parse_measurement_report_file(
    source: str | PathLike[str] | BinaryIO,
    referenced_images: Mapping[str, Dataset] | None = None,
    limits: PlausibilityLimits = DEFAULT_LIMITS,
) -> ParsedReport:
    """Read a Part-10 file (path or binary file object) with pydicom and parse it; a file pydicom
    cannot read (truncated, not DICOM) raises ``SRParseError`` too."""
    try:
        ds = pydicom.dcmread(source)
    except Exception as exc:  # InvalidDicomError, OSError, EOFError, struct.error, ...
        raise SRParseError(f"not a readable DICOM file: {_describe(exc)}") from exc
    return parse_measurement_report(ds, referenced_images, limits)


def _describe(exc: BaseException) -> str:
    """The exception's type and first line, short: highdicom messages may embed a whole dataset dump."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    if len(first_line) > 160:
        first_line = first_line[:157] + "..."
    return f"{type(exc).__name__}: {first_line}"


# --------------------------------------------------------------------------------------------------
# Header


@dataclass(frozen=True)
class _Header:
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str | None
    study_date: dt.date | None
    notes: tuple[str, ...]


def _required_uid(ds: Dataset, keyword: str) -> str:
    value = str(ds.get(keyword, "") or "").strip()
    if not value:
        raise SRParseError(f"the SR header has no {keyword}")
    return value


def _read_header(ds: Dataset) -> _Header:
    """SOP/Study/Series UIDs, PatientID and StudyDate. The study date is never taken from ContentDate
    or SeriesDate: those are the export time (fixtures README quirk 9)."""
    notes: list[str] = []
    patient_id = str(ds.get("PatientID", "") or "").strip() or None
    raw_date = ds.get("StudyDate", "")
    study_date = parse_da(raw_date)
    if study_date is None and str(raw_date or "").strip():
        notes.append(f"StudyDate {str(raw_date)!r} is not a valid DA date: ignored")
    return _Header(
        sop_instance_uid=_required_uid(ds, "SOPInstanceUID"),
        study_instance_uid=_required_uid(ds, "StudyInstanceUID"),
        series_instance_uid=_required_uid(ds, "SeriesInstanceUID"),
        patient_id=patient_id,
        study_date=study_date,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------------
# Content tree


_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
MAX_LABEL = 128
"""A lesion label longer than this is not a label (a pasted report, a fuzzer): it never becomes an identity."""


def _usable_label(text: str | None) -> bool:
    if not text:
        return False
    return len(text) <= MAX_LABEL and not CONTROL_CHARACTERS.search(text)


def _read_measurement_groups(ds: Dataset, notes: list[str]) -> list[Dataset]:
    """All Measurement Groups (planar TID 1410, volumetric TID 1411 and image TID 1501 groups; every dcmjs group is
    of the last kind), from a content tree checked as highdicom checks it (``structure``), read in place."""
    if str(ds.get("ValueType", "")) != "CONTAINER" or not ds.get("ConceptNameCodeSequence"):
        raise SRParseError("the SR root is not a CONTAINER with a concept name")
    root_concept = plain(ds.ConceptNameCodeSequence[0])
    if root_concept != IMAGING_MEASUREMENT_REPORT:
        raise SRParseError(
            f"the SR root is ({root_concept.value}, {root_concept.scheme_designator}, "
            f'"{root_concept.meaning}"), not Imaging Measurement Report (126000, DCM): not TID 1500'
        )
    if "ContentSequence" not in ds:
        raise SRParseError("the SR root has no ContentSequence")
    notes.extend(producer_notes(ds))
    check_content_tree(ds)
    groups = measurement_groups(ds)
    declared = _count_declared_groups(ds)
    if declared == 0:
        notes.append("the report has no Measurement Group")
    elif declared != len(groups):
        notes.append(
            f"{declared} Measurement Group(s) in Imaging Measurements, {len(groups)} readable as "
            "TID 1410/1411/1501: the others were skipped"
        )
    return groups


def _count_declared_groups(work: Dataset) -> int:
    """Measurement Groups directly under Imaging Measurements (126010): two levels, no deep walk."""
    count = 0
    for item in work.ContentSequence:
        if item.get("ValueType") == "CONTAINER" and item.get("ConceptNameCodeSequence"):
            if plain(item.ConceptNameCodeSequence[0]) == IMAGING_MEASUREMENTS:
                for child in item.get("ContentSequence", []):
                    if (
                        child.get("ConceptNameCodeSequence")
                        and plain(child.ConceptNameCodeSequence[0]) == MEASUREMENT_GROUP
                    ):
                        count += 1
    return count


def _shared_identity_notes(groups: tuple[ParsedGroup, ...]) -> list[str]:
    """Two groups of one report with one identity (e.g. two OHIF annotations labelled alike) are kept
    as they are, but said: the label no longer tells the lesions apart."""
    counts: dict[str, int] = {}
    fragments: dict[str, bool] = {}
    for group in groups:
        if group.identity_key is not None:
            counts[group.identity_key] = counts.get(group.identity_key, 0) + 1
            fragments[group.identity_key] = fragments.get(group.identity_key, True) and group.fragment
    # Fragments of a lesion that split share its identity by design (contract §9.3); without the marker the
    # evaluation treats them as a conflict (the lesion is not assessed at that scan).
    return [f"{n} groups share the identity {key!r}" for key, n in counts.items() if n > 1 and not fragments[key]]


# --------------------------------------------------------------------------------------------------
# One Measurement Group


@dataclass
class _PixelLength:
    """A length NUM written in pixels, resolved once the group's image references are all known."""

    role: str
    item: Dataset
    unit: str


@dataclass
class _GroupReader:
    """What one pass over a Measurement Group's content items collects."""

    algorithm_results: list[AlgorithmResult] = field(default_factory=list)
    tracking_uid: str | None = None
    tracking_identifier: str | None = None
    finding: Code | None = None
    finding_label: str | None = None
    site_label: str | None = None
    comment_label: str | None = None
    sites: list[Code] = field(default_factory=list)
    baseline_category: str | None = None
    nontarget_status: str | None = None
    nontarget_change: str | None = None
    booleans: dict[str, bool] = field(default_factory=dict)
    merged_into: str | None = None
    sizes: dict[str, Decimal | None] = field(default_factory=dict)
    pixel_lengths: list[_PixelLength] = field(default_factory=list)
    suv: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    metabolic_volume_ml: Decimal | None = None
    tlg: Decimal | None = None
    time_point: str | None = None
    time_point_type: Code | None = None
    time_point_order: int | None = None
    references: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    awaited_images: list[str] = field(default_factory=list)
    waiting: int = 0
    """How many of ``rejections`` only wait for an image (a ``px`` length, contract §9.3)."""
    implausible: bool = False
    """A value was not a finite number (contract §9.2): the group keeps no value at all."""

    def reference(self, uid: str | None) -> None:
        if uid and uid not in self.references:
            self.references.append(uid)


def _parse_group(
    group: Dataset,
    images: Mapping[str, Dataset],
    limits: PlausibilityLimits = DEFAULT_LIMITS,
) -> ParsedGroup:
    reader = _GroupReader()
    for item in group.get("ContentSequence", []):
        _read_item(item, reader)
    for pending in reader.pixel_lengths:
        _resolve_pixel_length(pending, reader, images)
    _check_plausibility(reader, limits)
    return _assemble(reader)


def _check_plausibility(reader: _GroupReader, limits: PlausibilityLimits) -> None:
    """Contract §9.2: a group with an implausible value is rejected with the reason (never its value: the
    reason goes to the assessment's warnings and the audit log)."""
    before = len(reader.rejections)
    for role, value in reader.sizes.items():
        reader.rejections.extend(filter(None, [length_problem(value, SIZE_NAMES[role], limits)]))
    for (quantity, derivation), value in reader.suv.items():
        what = f"{quantity} {SUV_DERIVATION_NAMES[derivation]}"
        reader.rejections.extend(filter(None, [suv_problem(value, what, limits)]))
    for what, value in (("Metabolic Volume", reader.metabolic_volume_ml), ("Total Lesion Glycolysis", reader.tlg)):
        reader.rejections.extend(filter(None, [volume_problem(value, what)]))
    if reader.implausible or len(reader.rejections) > before:
        # The group keeps its identity for the audit trail, never a value: none of them is stored (contract §9.2).
        reader.sizes = {role: None for role in reader.sizes}
        reader.suv = {}
        reader.metabolic_volume_ml = reader.tlg = None


def _read_item(item: Dataset, reader: _GroupReader) -> None:
    value_type = str(item.get("ValueType", ""))
    if value_type == "IMAGE":
        # Source of Measurement / Source (TID 1501), Referenced Segment (TID 1411), ... Real World
        # Value Maps and RT structure sets (COMPOSITE) are not images and are left out.
        reader.reference(referenced_sop_uid(item))
        return
    if value_type in ("SCOORD", "SCOORD3D"):
        # Group-level Image Region (TID 1410): its SELECTED FROM image is a group reference.
        for child in item.get("ContentSequence", []):
            reader.reference(referenced_sop_uid(child))
        return
    if not item.get("ConceptNameCodeSequence"):
        return
    name = plain(item.ConceptNameCodeSequence[0])
    if not usable_code(name):
        reader.notes.append(f"{value_type} content item with an invalid concept name code: ignored")
        return
    if value_type == "TEXT":
        text = str(item.get("TextValue", "") or "")
        if name == TRACKING_IDENTIFIER:
            reader.tracking_identifier = reader.tracking_identifier or text
        elif name == TIME_POINT:
            reader.time_point = reader.time_point or text
        elif name == COMMENT and text.strip() and reader.comment_label is None:
            reader.comment_label = text.strip()
        elif name == IMMRAD_MERGED_INTO and text.strip():
            # A label (producers without stable UIDs), or a UID written as text.
            value = text.strip()
            reader.merged_into = reader.merged_into or (value if UID_TEXT.fullmatch(value) else f"label:{value}")
    elif value_type == "UIDREF":
        if name == TRACKING_UNIQUE_IDENTIFIER:
            reader.tracking_uid = reader.tracking_uid or str(item.get("UID", "") or "") or None
        elif name == IMMRAD_MERGED_INTO and str(item.get("UID", "") or "").strip():
            reader.merged_into = reader.merged_into or str(item.UID).strip()
    elif value_type == "CODE":
        if item.get("ConceptCodeSequence"):
            code = plain(item.ConceptCodeSequence[0])
            if usable_code(code):
                _read_code_item(name, code, reader)
            else:
                reader.notes.append(f"{name.meaning or name.value}: the coded value is not a valid code: ignored")
    elif value_type == "NUM":
        _read_num_item(name, item, reader)


def _read_code_item(name: Code, value: Code, reader: _GroupReader) -> None:
    free_text = value.value in DCMJS_FREE_TEXT_CODE_VALUES
    if name == FINDING:
        if free_text:
            reader.finding_label = reader.finding_label or value.meaning.strip() or None
        elif reader.finding is None:
            reader.finding = value
    elif name == FINDING_SITE:
        if free_text:
            # OHIF passes the label as a "site" for tools outside additionalFindingTypes: not anatomy.
            reader.site_label = reader.site_label or value.meaning.strip() or None
        else:
            reader.sites.append(value)
    elif name == BASELINE_CATEGORY:
        category = lookup(value, BASELINE_CATEGORIES)
        if category is None:
            reader.notes.append(f"Baseline Category value ({value.value}, {value.scheme_designator}) not in CID 6145")
        reader.baseline_category = reader.baseline_category or category
    elif name == CURRENT_RESPONSE:
        status = lookup(value, NONTARGET_STATUSES)
        if status is None:
            reader.notes.append(
                f"Current Response value ({value.value}, {value.scheme_designator}) is not a non-target "
                "response of CID 6144: ignored"
            )
        reader.nontarget_status = reader.nontarget_status or status
    elif name == TIME_POINT_TYPE:
        reader.time_point_type = reader.time_point_type or value
    elif name.scheme_designator == IMMRAD_SCHEME:
        _read_immrad_item(name, value, reader)


def _read_immrad_item(name: Code, value: Code, reader: _GroupReader) -> None:
    """Contract §3 private qualitative evaluations: concept name = ``(name, 99IMMRAD)``."""
    if name == IMMRAD_NON_TARGET_CHANGE:
        if value.scheme_designator == IMMRAD_SCHEME and value.value in NON_TARGET_CHANGE_VALUES:
            reader.nontarget_change = reader.nontarget_change or value.value
        else:
            reader.notes.append(f"non-target-change value ({value.value}, {value.scheme_designator}) unknown: ignored")
        return
    if name.value not in ("injected", "irradiated", "equivocal", "too-small", "nodal", "fragment"):
        reader.notes.append(f"unknown 99IMMRAD concept {name.value!r}: ignored")
        return
    if value == YES:
        reader.booleans.setdefault(name.value, True)
    elif value == NO:
        reader.booleans.setdefault(name.value, False)
    else:
        reader.notes.append(f"99IMMRAD {name.value} value ({value.value}, {value.scheme_designator}) is not SCT Yes/No")


def _measured_value(item: Dataset) -> tuple[Decimal | None, str] | None:
    """(value, unit code value) of a NUM, from Numeric Value (DS, the string as written); the value is
    ``None`` when it is not a finite number (NaN, Infinity, text)."""
    measured = item.get("MeasuredValueSequence") or []
    if not measured or "NumericValue" not in measured[0] or not measured[0].get("MeasurementUnitsCodeSequence"):
        return None
    raw = measured[0].NumericValue
    text = getattr(raw, "original_string", None) or str(raw)
    return as_number(text), plain(measured[0].MeasurementUnitsCodeSequence[0]).value


def _derivation(item: Dataset) -> Code | None:
    for child in item.get("ContentSequence", []):
        if child.get("ValueType") == "CODE" and child.get("ConceptNameCodeSequence"):
            if plain(child.ConceptNameCodeSequence[0]) == DERIVATION and child.get("ConceptCodeSequence"):
                return plain(child.ConceptCodeSequence[0])
    return None


def _read_num_item(name: Code, item: Dataset, reader: _GroupReader) -> None:
    for child in item.get("ContentSequence", []):
        if child.get("ValueType") in ("SCOORD", "SCOORD3D"):
            for grandchild in child.get("ContentSequence", []):
                reader.reference(referenced_sop_uid(grandchild))
        elif child.get("ValueType") == "IMAGE":
            reader.reference(referenced_sop_uid(child))
    if name == TIME_POINT_ORDER:
        measured = _measured_value(item)
        if measured is not None and measured[0] is not None and measured[0] == measured[0].to_integral_value():
            reader.time_point_order = int(measured[0])
        return
    role = lookup(name, SIZE_CONCEPTS)
    is_suv = name == SUVBW or name == SUVLBM
    if role is None and not is_suv and name != METABOLIC_VOLUME and name != TOTAL_LESION_GLYCOLYSIS:
        _read_algorithm_result(name, item, reader)
        return  # area, mean HU, ...: not used by any criterion
    measured = _measured_value(item)
    if measured is None:
        reader.notes.append(f"NUM ({name.value}, {name.scheme_designator}) has no numeric value: ignored")
        return
    value, unit = measured
    if value is None:
        # Contract §9.2: a measurement that is not a number is refused with the group (never "no value").
        what = SIZE_NAMES[role] if role is not None else name.meaning or name.value
        reader.rejections.append(f"{what} is not a finite number")
        reader.implausible = True
        if role is not None:
            reader.sizes.setdefault(role, None)
        return
    if role is not None:
        _read_size(role, value, unit, item, reader)
    elif is_suv:
        quantity = "SUVbw" if name == SUVBW else "SUVlbm"
        if unit not in SUV_UNITS[quantity]:
            reader.rejections.append(f"{quantity} in unknown unit {unit!r}")
            return
        derivation = _derivation(item)
        key = lookup(derivation, SUV_DERIVATIONS) if derivation is not None else None
        if key is None:
            reader.notes.append(f"{quantity} without a Maximum/Peak/Mean/SD Derivation: ignored")
            return
        reader.suv.setdefault((quantity, key), value)
    elif name == METABOLIC_VOLUME:
        if unit not in ML_PER_UNIT:
            reader.rejections.append(f"Metabolic Volume in unknown unit {unit!r}")
            return
        reader.metabolic_volume_ml = value * ML_PER_UNIT[unit]
    else:
        if unit not in TLG_UNITS:
            reader.rejections.append(f"Total Lesion Glycolysis in unknown unit {unit!r}")
            return
        reader.tlg = value


def _algorithm_identification(item: Dataset) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(name, version, parameters) of the TID 4019 items among a content item's children."""
    name = version = None
    parameters: list[str] = []
    for child in item.get("ContentSequence", []):
        if child.get("ValueType") != "TEXT" or not child.get("ConceptNameCodeSequence"):
            continue
        concept, text = plain(child.ConceptNameCodeSequence[0]), str(child.get("TextValue", "") or "").strip()
        if concept == ALGORITHM_NAME and text:
            name = name or text
        elif concept == ALGORITHM_VERSION and text:
            version = version or text
        elif concept == ALGORITHM_PARAMETERS and text:
            parameters.append(text)
    return name, version, tuple(parameters)


def _read_algorithm_result(name: Code, item: Dataset, reader: _GroupReader) -> None:
    """Contract §9.6: a NUM with Algorithm Identification (TID 4019) is an AI result kept with that identity."""
    algorithm, version, parameters = _algorithm_identification(item)
    if algorithm is None:
        return
    if version is None:
        reader.notes.append(f"AI result {name.meaning or name.value!r} without an Algorithm Version: ignored")
        return
    measured = _measured_value(item)
    if measured is None or measured[0] is None:
        reader.notes.append(f"AI result {name.meaning or name.value!r} has no finite numeric value: ignored")
        return
    reader.algorithm_results.append(
        AlgorithmResult(coded(name), measured[0], measured[1], algorithm, version, parameters)
    )


def _read_size(role: str, value: Decimal, unit: str, item: Dataset, reader: _GroupReader) -> None:
    if role in reader.sizes or any(p.role == role for p in reader.pixel_lengths):
        reader.notes.append(f"second {SIZE_NAMES[role]} in the group: ignored")
        return
    if unit in MM_PER_UNIT:
        reader.sizes[role] = value * MM_PER_UNIT[unit]
    elif unit in PIXEL_UNITS:
        reader.pixel_lengths.append(_PixelLength(role=role, item=item, unit=unit))
    else:
        reader.sizes[role] = None
        reader.rejections.append(f"{SIZE_NAMES[role]} in unknown unit {unit!r}")


def _resolve_pixel_length(pending: _PixelLength, reader: _GroupReader, images: Mapping[str, Dataset]) -> None:
    """A length written in pixels, in mm (``geometry.pixel_length_mm``), or the group's rejection with its reason."""
    outcome = pixel_length_mm(SIZE_NAMES[pending.role], pending.item, pending.unit, reader.references, images)
    if outcome.mm is not None:
        reader.sizes[pending.role] = outcome.mm
        reader.notes.append(outcome.note)
        return
    for uid in outcome.awaited:
        if uid not in reader.awaited_images:
            reader.awaited_images.append(uid)
    if outcome.waits:
        reader.waiting += 1
    reader.rejections.append(outcome.problem)


def _identity(reader: _GroupReader) -> tuple[str | None, str, str | None]:
    """(identity_key, identity_source, label) by contract §3: the Tracking UID, unless the producer
    regenerates it at every export (OHIF: tool-name Tracking Identifier or a dcmjs free-text code);
    then the lesion label, looked for in Tracking Identifier, free-text Finding, free-text Finding
    Site, TEXT Comment, in that order. Never by location or size."""
    if reader.tracking_uid and (len(reader.tracking_uid) > 64 or not _UID.fullmatch(reader.tracking_uid)):
        reader.notes.append("Tracking UID is not a valid UID: not used as identity")
        reader.tracking_uid = None
    for attribute, what in (
        ("tracking_identifier", "Tracking Identifier"),
        ("finding_label", "free-text Finding"),
        ("site_label", "free-text Finding Site"),
        ("comment_label", "Comment"),
    ):
        text = getattr(reader, attribute)
        if text is not None and text.strip() and not _usable_label(text.strip()):
            reader.notes.append(
                f"{what} longer than {MAX_LABEL} characters or with control characters: not used as a lesion label"
            )
            setattr(reader, attribute, None)
    identifier = (reader.tracking_identifier or "").strip()
    tool_named = bool(identifier) and is_tool_name(identifier)
    labels = (
        ("tracking-identifier", identifier if identifier and not tool_named else None),
        ("finding-label", reader.finding_label),
        ("finding-site-label", reader.site_label),
        ("comment-label", reader.comment_label),
    )
    label_source, label = next(((s, text.strip()) for s, text in labels if text and text.strip()), ("none", None))
    regenerated = tool_named or reader.finding_label is not None or reader.site_label is not None
    if reader.tracking_uid and not regenerated:
        return reader.tracking_uid, "tracking-uid", label
    if reader.tracking_uid:
        reader.notes.append("Tracking UID not used as identity: this producer regenerates it at every export")
    if label is None:
        return None, "none", None
    return f"label:{label}", label_source, label


def _assemble(reader: _GroupReader) -> ParsedGroup:
    identity_key, identity_source, label = _identity(reader)
    sizes = dict(reader.sizes)
    length = sizes.pop("length", None)
    if "length" in reader.sizes and "long" not in sizes:
        sizes["long"] = length
    elif "length" in reader.sizes:
        reader.notes.append("Length ignored: the group has a Long Axis")
    long_axis, short_axis, diameter = (to_mm(sizes.get(k)) for k in ("long", "short", "diameter"))
    measured = [v for v in (long_axis, short_axis, diameter) if v is not None]
    disappeared = bool(measured) and all(v == 0 for v in measured)

    finding = reader.finding
    site_nodal = any(site == LYMPH_NODE for site in reader.sites) or (finding is not None and finding == LYMPH_NODE)
    # Contract §3: a lymph-node site or finding makes the lesion nodal; the 99IMMRAD boolean adds
    # nodes whose site is coded more specifically (e.g. a named nodal station).
    nodal = site_nodal or reader.booleans.get("nodal", False)
    if site_nodal and reader.booleans.get("nodal") is False:
        reader.notes.append("99IMMRAD nodal=No contradicts the lymph node site: nodal by the site")

    reference_region = reference_mean = reference_sd = reference_unit = None
    is_reference = finding is not None and finding == BACKGROUND_FOR_SUV_RATIO
    if is_reference:
        reference_region = next(
            (r for r in (lookup(site, REFERENCE_REGIONS) for site in reader.sites) if r is not None), None
        )
        if reference_region is None:
            reader.rejections.append("reference region (126040) without a liver, spleen, bone marrow or aorta site")
        # PERCIST uses SUL (SUVlbm); SUVbw is the fallback when no SUVlbm mean is given.
        for quantity in ("SUVlbm", "SUVbw"):
            if (quantity, "mean") in reader.suv:
                reference_unit = quantity
                reference_mean = to_suv(reader.suv[(quantity, "mean")])
                reference_sd = to_suv(reader.suv.get((quantity, "sd")))
                break
        if reference_mean is None:
            reader.rejections.append("reference region without an SUVlbm or SUVbw Mean")

    return ParsedGroup(
        identity_key=identity_key,
        identity_source=identity_source,
        tracking_uid=reader.tracking_uid,
        tracking_identifier=reader.tracking_identifier,
        label=label,
        finding=coded(finding) if finding is not None else None,
        finding_sites=tuple(coded(site) for site in reader.sites),
        nodal=nodal,
        long_axis_mm=long_axis,
        short_axis_mm=short_axis,
        diameter_mm=diameter,
        baseline_category=reader.baseline_category,
        nontarget_status=reader.nontarget_status,
        nontarget_change=reader.nontarget_change,
        injected=reader.booleans.get("injected"),
        irradiated=reader.booleans.get("irradiated"),
        equivocal=reader.booleans.get("equivocal", False),
        too_small=reader.booleans.get("too-small", False),
        disappeared=disappeared,
        merged_into=reader.merged_into,
        fragment=reader.booleans.get("fragment", False),
        suv_max=None if is_reference else to_suv(reader.suv.get(("SUVbw", "max"))),
        suv_peak=None if is_reference else to_suv(reader.suv.get(("SUVbw", "peak"))),
        sul_max=None if is_reference else to_suv(reader.suv.get(("SUVlbm", "max"))),
        sul_peak=None if is_reference else to_suv(reader.suv.get(("SUVlbm", "peak"))),
        metabolic_volume_ml=to_suv(reader.metabolic_volume_ml),
        tlg=to_suv(reader.tlg),
        reference_region=reference_region,
        reference_mean=reference_mean,
        reference_sd=reference_sd,
        reference_unit=reference_unit,
        time_point=reader.time_point,
        time_point_type=coded(reader.time_point_type) if reader.time_point_type is not None else None,
        time_point_order=reader.time_point_order,
        referenced_sop_instance_uids=tuple(reader.references),
        algorithm_results=tuple(reader.algorithm_results),
        notes=tuple(reader.notes),
        rejected_reason="; ".join(reader.rejections) or None,
        # Pending only when waiting for an image is the group's sole problem (contract §9.3).
        awaited_images=tuple(reader.awaited_images) if reader.waiting == len(reader.rejections) else (),
    )
