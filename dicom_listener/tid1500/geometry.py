"""Units and geometry of TID 1500 measurements: the UCUM units accepted, and lengths written in pixels
recomputed in mm from their SCOORD and the referenced image's Pixel Spacing (fixtures README quirk 6)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import pydicom
from pydicom.dataset import Dataset

MM_PER_UNIT = {"mm": Decimal(1), "cm": Decimal(10), "um": Decimal("0.001")}
"""UCUM length units accepted (CID 7460 spellings)."""
PIXEL_UNITS = frozenset({"1", "px"})
"""``(1, UCUM, "px")`` from dcmjs's TID 300 fallback (quirk 6), or a bare ``px``: pixels, not mm."""
SUV_UNITS = {
    "SUVbw": frozenset({"g/ml{SUVbw}", "{SUVbw}g/ml"}),
    "SUVlbm": frozenset({"g/ml{SUVlbm}", "{SUVlbm}g/ml"}),
}
"""DICOM 2024c spelling first, then the older one in dcmqi's examples (interop-notes §1.2)."""
ML_PER_UNIT = {"ml": Decimal(1), "mL": Decimal(1), "cm3": Decimal(1), "mm3": Decimal("0.001")}
TLG_UNITS = frozenset({"g"})
"""SUV (g/ml) × volume (ml) = g. No DICOM rule fixes TLG's unit [unverified]; other spellings are
rejected rather than guessed."""


def referenced_sop_uid(item: Dataset) -> str | None:
    sequence = item.get("ReferencedSOPSequence") or []
    if not sequence:
        return None
    return str(sequence[0].get("ReferencedSOPInstanceUID", "") or "") or None


def referenced_frame(item: Dataset) -> int:
    sequence = item.get("ReferencedSOPSequence") or []
    if sequence and sequence[0].get("ReferencedFrameNumber"):
        frames = sequence[0].ReferencedFrameNumber
        first = frames[0] if isinstance(frames, (list, pydicom.multival.MultiValue)) else frames
        return int(first)
    return 1


def pixel_spacing(image: Dataset, frame: int) -> tuple[float, float] | None:
    """(row spacing, column spacing) in mm: Pixel Spacing, or the Pixel Measures functional group of
    an enhanced multi-frame image (shared, else the referenced frame's)."""
    spacing = image.get("PixelSpacing")
    if spacing is None:
        for groups in (image.get("SharedFunctionalGroupsSequence") or [],):
            if groups and groups[0].get("PixelMeasuresSequence"):
                spacing = groups[0].PixelMeasuresSequence[0].get("PixelSpacing")
        per_frame = image.get("PerFrameFunctionalGroupsSequence") or []
        if spacing is None and 0 < frame <= len(per_frame) and per_frame[frame - 1].get("PixelMeasuresSequence"):
            spacing = per_frame[frame - 1].PixelMeasuresSequence[0].get("PixelSpacing")
    if spacing is None or len(spacing) != 2:
        return None
    row_spacing, column_spacing = float(spacing[0]), float(spacing[1])
    if not (row_spacing > 0 and column_spacing > 0):
        return None
    return row_spacing, column_spacing


@dataclass(frozen=True)
class PixelLength:
    """What became of a length written in pixels: ``mm`` with a ``note``, or a ``problem``; when the problem is
    only that the image is not stored yet, ``waits`` is set and ``awaited`` names the images it waits for."""

    mm: Decimal | None = None
    note: str = ""
    problem: str = ""
    waits: bool = False
    awaited: tuple[str, ...] = ()


def pixel_length_mm(
    name: str, item: Dataset, unit: str, group_references: Sequence[str], images: Mapping[str, Dataset]
) -> PixelLength:
    """Recompute the pixel-unit length NUM ``item`` (``name``, e.g. "Long Axis") from its INFERRED FROM SCOORD
    (2 points, column/row) and the referenced image's Pixel Spacing; never take pixels as mm. Without an image
    reference of its own, the group's image references (``group_references``) are candidates."""
    coordinates = [c for c in item.get("ContentSequence", []) if c.get("ValueType") in ("SCOORD", "SCOORD3D")]
    if not coordinates:
        return PixelLength(problem=f"{name} is in pixels ({unit!r}) and has no SCOORD to recompute it from")
    scoord = coordinates[0]
    graphic_type = str(scoord.get("GraphicType", ""))
    data = [float(v) for v in (scoord.get("GraphicData") or [])]
    dimensions = 3 if scoord.get("ValueType") == "SCOORD3D" else 2
    if graphic_type != "POLYLINE" or len(data) != 2 * dimensions:
        return PixelLength(problem=f"{name} is in pixels and its SCOORD is not a 2-point POLYLINE")
    if dimensions == 3:
        # SCOORD3D is in patient coordinates (mm): no image needed.
        return PixelLength(
            mm=Decimal(repr(math.dist(data[:3], data[3:]))),
            note=f"{name} written in pixels: recomputed from its SCOORD3D end points",
        )
    image_ref = next(
        (referenced_sop_uid(child) for child in scoord.get("ContentSequence", []) if referenced_sop_uid(child)),
        None,
    )
    candidates = [image_ref] if image_ref else list(group_references)
    frame = next((referenced_frame(c) for c in scoord.get("ContentSequence", []) if referenced_sop_uid(c)), 1)
    image_uid = next((uid for uid in candidates if uid in images), None)
    if image_uid is None:
        wanted = image_ref or ", ".join(candidates) or "none"
        return PixelLength(
            problem=f"{name} is in pixels ({unit!r}) and the referenced image ({wanted}) is not available "
            "to recompute it in mm",
            waits=True,
            awaited=tuple(uid for uid in candidates if uid),
        )
    spacing = pixel_spacing(images[image_uid], frame)
    if spacing is None:
        return PixelLength(problem=f"{name} is in pixels and image {image_uid} has no usable Pixel Spacing")
    row_spacing, column_spacing = spacing
    # SCOORD points are (column, row); Pixel Spacing is (row spacing, column spacing).
    d_column = (data[2] - data[0]) * column_spacing
    d_row = (data[3] - data[1]) * row_spacing
    return PixelLength(
        mm=Decimal(repr(math.hypot(d_column, d_row))),
        note=f"{name} written in pixels ({unit!r}): recomputed from its SCOORD and the Pixel Spacing of {image_uid}",
    )
