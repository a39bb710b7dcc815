"""DICOM Segmentation (SEG) reading with highdicom, and the geometry of the series a SEG is drawn on (contract §9.6).

- ``referenced_instances``: the source images a SEG names (Referenced Series Sequence > Referenced Instance
  Sequence, as highdicom and dcmqi write them) — read at C-STORE time, cheaply, to know what the SEG waits for;
- ``read_segmentation`` / ``segment_infos``: the segments (number, label, Segmented Property Category/Type,
  Tracking UID/Identifier), binary or fractional;
- ``order_slices``: the source images sorted along the slice normal, with the slice spacing measured from the
  Image Position (Patient) of neighbouring slices (never from Slice Thickness, which may differ from the spacing);
- ``segment_mask``: one segment as a boolean array (slices, rows, columns) aligned with ``order_slices``; a
  fractional segment's voxel belongs to it when its fraction is ≥ ``FRACTION_INSIDE`` (0.5, the usual reading of
  a fractional SEG as a binary mask — the fraction itself is kept available for feature extraction).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

SEG_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage"}
"""SOP classes read as segmentations (DICOM PS3.4 B.5; pynetdicom's storage contexts include them)."""

PIXEL_MODALITIES = frozenset({"CT", "MR", "PT"})
"""Modalities whose pixel data is kept for IMMUNORAD_PIXEL_RETENTION_DAYS (contract §9.6)."""

FRACTION_INSIDE = 0.5


class SegError(ValueError):
    """A SEG or its source images cannot be used (with the reason, for the listing)."""


@dataclass(frozen=True)
class SegmentInfo:
    number: int
    label: str
    category: tuple[str, str, str] | None
    """(scheme designator, code value, code meaning) of the Segmented Property Category."""
    property_type: tuple[str, str, str] | None
    tracking_uid: str | None
    tracking_id: str | None


@dataclass(frozen=True)
class SliceGeometry:
    sop_uid: str
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    """(row spacing, column spacing) in mm, DICOM Pixel Spacing order."""
    rows: int
    columns: int
    thickness: float | None
    spacing_between: float | None


@dataclass(frozen=True)
class SeriesGeometry:
    slices: tuple[SliceGeometry, ...]
    """Sorted along the slice normal (increasing projection of Image Position (Patient))."""
    slice_spacing_mm: float
    pixel_spacing_mm: tuple[float, float]

    @property
    def sop_uids(self) -> list[str]:
        return [s.sop_uid for s in self.slices]

    @property
    def voxel_mm3(self) -> float:
        return self.slice_spacing_mm * self.pixel_spacing_mm[0] * self.pixel_spacing_mm[1]

    @property
    def spacing_zyx_mm(self) -> tuple[float, float, float]:
        """(slice, row, column) spacing in mm — the axis order of the arrays."""
        return (self.slice_spacing_mm, self.pixel_spacing_mm[0], self.pixel_spacing_mm[1])


def referenced_instances(ds: Dataset) -> dict[str, list[str]]:
    """Series Instance UID → SOP Instance UIDs the SEG is drawn on (Referenced Series Sequence)."""
    found: dict[str, list[str]] = {}
    for series in ds.get("ReferencedSeriesSequence", []) or []:
        uid = str(series.get("SeriesInstanceUID", "") or "")
        if not uid:
            continue
        sops = [
            str(item.ReferencedSOPInstanceUID)
            for item in series.get("ReferencedInstanceSequence", []) or []
            if item.get("ReferencedSOPInstanceUID")
        ]
        found.setdefault(uid, []).extend(sops)
    return found


def read_segmentation(encoded: bytes) -> hd.seg.Segmentation:
    try:
        return hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(encoded)), copy=False)
    except Exception as exc:  # untrusted bytes: highdicom/pydicom raise many kinds
        raise SegError(f"not a readable DICOM Segmentation: {type(exc).__name__}: {str(exc)[:200]}") from exc


def _code(concept) -> tuple[str, str, str] | None:
    if concept is None:
        return None
    return (str(concept.scheme_designator), str(concept.value), str(concept.meaning))


def segment_infos(seg: hd.seg.Segmentation) -> list[SegmentInfo]:
    infos = []
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        infos.append(
            SegmentInfo(
                number=int(number),
                label=str(description.segment_label or "")[:64],
                category=_code(description.segmented_property_category),
                property_type=_code(description.segmented_property_type),
                tracking_uid=str(description.tracking_uid) if description.tracking_uid else None,
                tracking_id=str(description.tracking_id) if description.tracking_id else None,
            )
        )
    return infos


def slice_geometry(ds: Dataset) -> SliceGeometry:
    try:
        position = tuple(float(v) for v in ds.ImagePositionPatient)
        orientation = tuple(float(v) for v in ds.ImageOrientationPatient)
        spacing = tuple(float(v) for v in ds.PixelSpacing)
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise SegError(f"a source image lacks its plane geometry ({type(exc).__name__})") from exc
    if len(position) != 3 or len(orientation) != 6 or len(spacing) != 2 or min(spacing) <= 0:
        raise SegError("a source image has an invalid Image Position / Orientation / Pixel Spacing")
    thickness = ds.get("SliceThickness")
    between = ds.get("SpacingBetweenSlices")
    return SliceGeometry(
        sop_uid=str(ds.SOPInstanceUID),
        position=position,
        orientation=orientation,
        pixel_spacing=(spacing[0], spacing[1]),
        rows=rows,
        columns=columns,
        thickness=float(thickness) if thickness not in (None, "") else None,
        spacing_between=float(between) if between not in (None, "") else None,
    )


def order_slices(slices: Sequence[SliceGeometry]) -> SeriesGeometry:
    """Sort single-frame slices along their normal; the slice spacing is the median distance between neighbours
    (a single slice: Spacing Between Slices, else Slice Thickness)."""
    if not slices:
        raise SegError("no source image")
    first = slices[0]
    if any(
        s.orientation != first.orientation
        or s.pixel_spacing != first.pixel_spacing
        or (s.rows, s.columns) != (first.rows, first.columns)
        for s in slices
    ):
        raise SegError("the source images do not share one orientation, pixel spacing and matrix")
    row, col = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    normal = np.cross(row, col)
    ordered = sorted(slices, key=lambda s: float(np.dot(normal, s.position)))
    distances = np.diff([float(np.dot(normal, s.position)) for s in ordered])
    if len(ordered) > 1:
        if np.any(distances <= 1e-3):
            raise SegError("two source images share one slice position")
        spacing = float(np.median(distances))
    else:
        spacing = first.spacing_between or first.thickness or 0.0
        if spacing <= 0:
            raise SegError("a single source image without Slice Thickness: its voxel depth is unknown")
    return SeriesGeometry(slices=tuple(ordered), slice_spacing_mm=spacing, pixel_spacing_mm=first.pixel_spacing)


def segment_fraction(seg: hd.seg.Segmentation, number: int, geometry: SeriesGeometry) -> np.ndarray:
    """One segment over the ordered source slices: float fractions 0..1 (binary SEG: 0 or 1), (slices, rows, cols)."""
    try:
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=geometry.sop_uids,
            segment_numbers=[number],
            assert_missing_frames_are_empty=True,
            rescale_fractional=True,
            dtype=np.float32,
        )
    except Exception as exc:
        raise SegError(f"segment {number} cannot be mapped onto its source images: {str(exc)[:200]}") from exc
    return pixels[..., 0]


def segment_mask(seg: hd.seg.Segmentation, number: int, geometry: SeriesGeometry) -> np.ndarray:
    return segment_fraction(seg, number, geometry) >= FRACTION_INSIDE


def suv_bw_factor(ds: Dataset) -> tuple[float | None, str]:
    """Factor turning a PET image's values (Units BQML, decay-corrected to START) into SUV body weight:
    SUVbw = value × weight (g) / (injected dose (Bq) × 2^(−Δt / T½)), Δt = series start − injection start.
    ``(None, reason)`` when the header does not allow it."""
    try:
        if str(ds.get("Units", "")).upper() != "BQML":
            return None, f"PET Units {ds.get('Units')!r} are not BQML"
        if str(ds.get("DecayCorrection", "START")).upper() != "START":
            return None, "PET decay correction is not to the series start"
        info = ds.RadiopharmaceuticalInformationSequence[0]
        dose, half_life = float(info.RadionuclideTotalDose), float(info.RadionuclideHalfLife)
        weight = float(ds.PatientWeight)
        start = _seconds(str(info.RadiopharmaceuticalStartTime))
        series = _seconds(str(ds.SeriesTime))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None, "PET header lacks the dose, half-life, injection time or patient weight SUV needs"
    if dose <= 0 or half_life <= 0 or weight <= 0:
        return None, "PET dose, half-life or weight is not positive"
    elapsed = series - start
    if elapsed < 0:
        elapsed += 24 * 3600  # injection the day before midnight
    return weight * 1000.0 / (dose * 2 ** (-elapsed / half_life)), ""


def _seconds(value: str) -> float:
    hours, minutes = int(value[0:2]), int(value[2:4])
    seconds = float(value[4:] or 0)
    return hours * 3600 + minutes * 60 + seconds
