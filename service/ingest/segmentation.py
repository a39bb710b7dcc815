"""DICOM SEG measurement by the worker (contract §9.6), pixel retention, and (image, mask, spacing) for features.

Flow: the listener stores a SEG as received and queues a ``seg`` job (``service/ingest/dicom_ingest.py``). The job
(``process_seg``) checks that every source image the SEG names is stored with its pixel data:
- images missing → the SEG is *pending* (``PendingInput`` ``dicom-seg`` rows, one per awaited series, listed in
  ``/api/pending``); each arriving image of such a series re-queues the job, postponed to the settle time;
- pixels dropped after IMMUNORAD_PIXEL_RETENTION_DAYS (or never kept) → the SEG stays listed, ``unresolvable``,
  with that reason, and its segments are listed *not computed* with it;
- otherwise each segment is decoded (highdicom), classified by its Segmented Property Type
  (``rules.segment_codes``), measured — voxel count and volume (count × slice spacing × row × column spacing),
  area per slice — and stored (``Segment``) with its mask; a lesion segment is tied to its tracked lesion by
  Tracking UID / Tracking Identifier (the identity rules of contract §3: never by position or size); the
  patient is re-evaluated.

``load_segment_volume`` is the entry point for feature extraction: the segment's image volume (modality values:
CT in HU after Rescale Slope/Intercept), its boolean mask and the voxel spacing (slice, row, column) in mm.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import zlib
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from dicom_listener.seg import (
    FRACTION_INSIDE,
    SegError,
    SegmentInfo,
    SeriesGeometry,
    order_slices,
    read_segmentation,
    referenced_instances,
    segment_fraction,
    segment_infos,
    slice_geometry,
    suv_bw_factor,
)
from fhir_mappings.codes import LocalSystems
from fhir_mappings.features import VOLUME_VOXEL_COUNTING, Feature, merge_features
from rules.body_composition import choose_l3_slice
from rules.engine import get_engine
from rules.segment_codes import (
    BODY_COMPOSITION_KINDS,
    L3_VERTEBRA,
    LESION,
    SKELETAL_MUSCLE,
    classify,
)
from service.assessment.evaluation import patient_ref
from service.ops.config import Settings
from service.ops.logs import pseudonym
from service.persistence.fhir_store import get_resource, save_resource
from service.persistence.models import (
    Instance,
    Lesion,
    Patient,
    PendingInput,
    PixelData,
    RejectedInstance,
    Segment,
    Study,
    utcnow,
)
from service.persistence.store import audit, enqueue, ensure_lesion, evaluate_soon

logger = logging.getLogger(__name__)

JOB_KIND = "seg"
PURGE_BATCH = 500
"""Pixel rows dropped per transaction (short transactions: C-STORE writers never wait long)."""
_UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")


class PixelsUnavailable(Exception):
    """The pixel data of a segment's series is no longer (or was never) kept."""


@dataclass(frozen=True)
class SegmentVolume:
    """What a feature extractor needs for one segment at one timepoint."""

    segment_id: int
    image: np.ndarray
    """float64 (slices, rows, columns), modality values (CT: HU), cropped to the mask's bounding box + margin."""
    mask: np.ndarray
    """bool, same shape as ``image``."""
    spacing_mm: tuple[float, float, float]
    """(slice, row, column) voxel spacing in mm."""
    modality: str | None
    scan_date: dt.date | None
    lesion_id: int | None


# -- the job ---------------------------------------------------------------------------------------------
def process_seg(session: Session, settings: Settings, sop_uid: str) -> None:
    seg_instance = session.scalars(select(Instance).where(Instance.sop_uid == sop_uid)).first()
    if seg_instance is None or seg_instance.content is None:
        return
    if session.get(RejectedInstance, sop_uid) is not None:
        return  # rejected by an IOCM note after it was queued (dicom_listener/rejection.py): never measured
    study = session.get(Study, seg_instance.study_id)
    session.execute(delete(PendingInput).where(PendingInput.source_ref == sop_uid))
    header = pydicom.dcmread(io.BytesIO(seg_instance.content), stop_before_pixels=True)
    references = referenced_instances(header)
    if not references:
        _unresolvable(session, seg_instance, study, "the SEG names no source series (Referenced Series Sequence)")
        return
    wanted = [uid for uids in references.values() for uid in uids]
    stored = {row.sop_uid: row for row in session.scalars(select(Instance).where(Instance.sop_uid.in_(wanted)))}
    waiting = {series: uids for series, uids in references.items() if any(uid not in stored for uid in uids)}
    if waiting:
        now = utcnow()
        for series, uids in sorted(waiting.items()):
            have = sum(uid in stored for uid in uids)
            session.add(
                PendingInput(
                    study_id=study.id if study else None,
                    source_kind="dicom-seg",
                    source_ref=sop_uid,
                    group_index=0,
                    label=_seg_label(header),
                    waits_for_kind="series",
                    waits_for_uid=series,
                    status="waiting",
                    reason=f"DICOM SEG waits for its referenced series ({have} of {len(uids)} images stored)",
                    created_at=now,
                    updated_at=now,
                )
            )
        return
    if len(references) > 1:
        _not_computed(session, seg_instance, study, "the SEG is drawn on several series: not measured")
        return
    series_uid = next(iter(references))
    pixels = {
        row.instance_id: row
        for row in session.scalars(
            select(PixelData).where(PixelData.instance_id.in_([stored[uid].id for uid in wanted]))
        )
    }
    unavailable = _pixels_unavailable(settings, [stored[uid] for uid in wanted], pixels)
    if unavailable:
        _not_computed(session, seg_instance, study, unavailable)
        return
    source_study = session.get(Study, stored[wanted[0]].study_id)
    try:
        datasets = {uid: _dataset(pixels[stored[uid].id], stop_before_pixels=True) for uid in wanted}
        geometry = order_slices([slice_geometry(ds) for ds in datasets.values()])
        seg = read_segmentation(seg_instance.content)
        infos = segment_infos(seg)
    except SegError as exc:
        _not_computed(session, seg_instance, study, str(exc))
        return
    modality = stored[wanted[0]].modality
    scan_date = source_study.study_date if source_study else None
    patient_id = (source_study.patient_id if source_study else None) or (study.patient_id if study else None)
    session.execute(delete(Segment).where(Segment.seg_sop_uid == sop_uid))
    counts: dict[str, int] = {}
    anatomy: dict[int, np.ndarray] = {}
    lesion_masks: dict[int, np.ndarray] = {}
    rows: list[Segment] = []
    for info in infos:
        row = _segment_row(info, sop_uid, series_uid, modality, scan_date, patient_id, source_study or study)
        try:
            fraction = segment_fraction(seg, info.number, geometry)
            _measure(row, fraction, geometry, fractional=str(seg.segmentation_type.value) == "FRACTIONAL")
            if row.kind in (*BODY_COMPOSITION_KINDS, L3_VERTEBRA):
                anatomy[info.number] = fraction >= FRACTION_INSIDE
            elif row.kind == LESION and modality in ("MR", "PT"):
                lesion_masks[info.number] = fraction >= FRACTION_INSIDE
        except SegError as exc:
            row.status, row.reason = "not-computed", str(exc)
        if row.kind == LESION and row.identity_key and patient_id and row.status == "computed":
            row.lesion_id = ensure_lesion(session, patient_id, row.identity_key, row.identity_source, row.label).id
        session.add(row)
        rows.append(row)
        counts[row.kind] = counts.get(row.kind, 0) + 1
    read = _SliceReader(lambda sop: _dataset(pixels[stored[sop].id]), geometry)
    if any(r.kind in BODY_COMPOSITION_KINDS for r in rows):
        _body_composition_at_l3(rows, anatomy, geometry, lambda sop: _dataset(pixels[stored[sop].id]))
    if modality == "PT":
        factor, why = suv_bw_factor(datasets[geometry.sop_uids[0]])
        for row in rows:
            if row.kind == LESION and row.status == "computed" and row.voxel_count:
                _metabolic(row, lesion_masks[row.segment_number], read, factor, why)
    if modality == "MR" and all(_is_adc_map(ds) for ds in datasets.values()):
        for row in rows:
            if row.kind == LESION and row.status == "computed" and row.voxel_count:
                _adc(row, lesion_masks[row.segment_number], read)
    session.flush()
    if patient_id:
        patient = session.get(Patient, patient_id)
        if patient is not None and scan_date is not None:
            for row in rows:
                if row.kind == LESION and row.lesion_id is not None and row.voxel_count:
                    publish_volume(session, settings, patient, row)
                    if "adc_mean" in row.stats:
                        publish_adc(session, settings, patient, row)
                    if "mtv_cm3" in row.stats:
                        publish_metabolic(session, settings, patient, row)
                    # the IBSI features, off the DICOM path and bounded (service/features/radiomics_job.py)
                    enqueue(
                        session,
                        "radiomics",
                        f"radiomics:{row.id}",
                        patient_id=patient_id,
                        payload={"segment_id": row.id},
                    )
        evaluate_soon(session, patient_id, "dicom-seg", settings)
    audit(
        session,
        action="C",
        kind="dicom-seg-measured",
        source="worker",
        entity_type="Instance",
        entity_ref=pseudonym(sop_uid),
        patient_id=patient_id,
        detail={"segments": counts, "slices": len(geometry.slices)},
    )
    logger.info(
        "segmentation measured",
        extra={"fields": {"seg": pseudonym(sop_uid), "segments": counts, "slices": len(geometry.slices)}},
    )


def _seg_label(header) -> str | None:
    text = str(header.get("SeriesDescription", "") or header.get("ContentLabel", "") or "").strip()
    return text[:255] or None


def _pixels_unavailable(settings: Settings, instances: list[Instance], pixels: dict[int, PixelData]) -> str | None:
    dropped = [p for p in pixels.values() if p.data is None]
    if dropped:
        when = max(p.dropped_at for p in dropped if p.dropped_at is not None).date().isoformat()
        return (
            f"the pixel data of its series was dropped on {when}, after the retention window "
            f"(IMMUNORAD_PIXEL_RETENTION_DAYS={settings.pixel_retention_days})"
        )
    missing = [i for i in instances if i.id not in pixels]
    if missing:
        modalities = sorted({i.modality or "?" for i in missing})
        return (
            f"the pixel data of its series was not kept (modality {', '.join(modalities)}; CT, MR and PET pixels are "
            f"kept for IMMUNORAD_PIXEL_RETENTION_DAYS={settings.pixel_retention_days})"
        )
    return None


def _unresolvable(session: Session, seg_instance: Instance, study: Study | None, reason: str) -> None:
    now = utcnow()
    session.add(
        PendingInput(
            study_id=study.id if study else None,
            source_kind="dicom-seg",
            source_ref=seg_instance.sop_uid,
            group_index=0,
            label=None,
            waits_for_kind="series",
            waits_for_uid="",
            status="unresolvable",
            reason=reason[:1000],
            created_at=now,
            updated_at=now,
        )
    )


def _not_computed(session: Session, seg_instance: Instance, study: Study | None, reason: str) -> None:
    """The SEG stays listed (pending ``unresolvable``) and so do its segments, *not computed*, with the reason."""
    _unresolvable(session, seg_instance, study, reason)
    session.execute(delete(Segment).where(Segment.seg_sop_uid == seg_instance.sop_uid))
    try:
        infos = segment_infos(read_segmentation(seg_instance.content or b""))
    except SegError:
        return
    header = pydicom.dcmread(io.BytesIO(seg_instance.content or b""), stop_before_pixels=True)
    series_uid = next(iter(referenced_instances(header)), None)
    for info in infos:
        row = _segment_row(
            info,
            seg_instance.sop_uid,
            series_uid,
            None,
            study.study_date if study else None,
            study.patient_id if study else None,
            study,
        )
        row.status, row.reason = "not-computed", reason[:1000]
        session.add(row)


def _identity(info: SegmentInfo) -> tuple[str | None, str, str | None]:
    """(identity key, source, label) as for SR groups (contract §3): the Tracking UID when it is a valid UID, else
    the Tracking Identifier as a label; never position or size."""
    label = (info.tracking_id or info.label or "").strip() or None
    if info.tracking_uid and len(info.tracking_uid) <= 64 and _UID_PATTERN.fullmatch(info.tracking_uid):
        return info.tracking_uid, "tracking-uid", label
    if info.tracking_id and info.tracking_id.strip():
        return f"label:{info.tracking_id.strip()}", "tracking-identifier", info.tracking_id.strip()
    return None, "none", label


def _segment_row(
    info: SegmentInfo,
    sop_uid: str,
    series_uid: str | None,
    modality: str | None,
    scan_date: dt.date | None,
    patient_id: str | None,
    study: Study | None,
) -> Segment:
    kind = classify(info.property_type[:2] if info.property_type else None)
    identity_key, identity_source, label = _identity(info) if kind.kind == LESION else (None, "none", info.label)
    row = Segment(
        seg_sop_uid=sop_uid,
        segment_number=info.number,
        patient_id=patient_id,
        study_id=study.id if study else None,
        series_uid=series_uid,
        modality=modality,
        scan_date=scan_date,
        label=(label or info.label or None),
        category=list(info.category) if info.category else None,
        property_type=list(info.property_type) if info.property_type else None,
        kind=kind.kind,
        identity_key=identity_key,
        identity_source=identity_source,
        status="computed",
        reason=None,
        geometry={},
        stats={},
        computed_at=utcnow(),
    )
    if kind.kind == LESION and identity_key is None:
        row.reason = "lesion segment without Tracking UID or Tracking Identifier: not tied to a tracked lesion"
    return row


def _measure(row: Segment, fraction: np.ndarray, geometry: SeriesGeometry, *, fractional: bool) -> None:
    mask = fraction >= FRACTION_INSIDE
    count = int(mask.sum())
    row.voxel_count = count
    row.volume_cm3 = (Decimal(repr(count * geometry.voxel_mm3)) / 1000).quantize(
        Decimal("0.001"), rounding=ROUND_HALF_EVEN
    )
    pixel_area_cm2 = geometry.pixel_spacing_mm[0] * geometry.pixel_spacing_mm[1] / 100.0
    per_slice = mask.sum(axis=(1, 2))
    row.stats = {
        "fractional": fractional,
        "fraction_inside": FRACTION_INSIDE if fractional else None,
        "area_cm2_by_slice": {
            str(index): round(float(n) * pixel_area_cm2, 3) for index, n in enumerate(per_slice) if n
        },
    }
    geometry_info: dict[str, Any] = {
        "spacing_zyx_mm": list(geometry.spacing_zyx_mm),
        "shape": list(mask.shape),
        "source_sops": geometry.sop_uids,
        "slice_positions": [list(s.position) for s in geometry.slices],
    }
    if count:
        nz = np.nonzero(mask)
        bbox = [int(nz[0].min()), int(nz[0].max()) + 1, int(nz[1].min()), int(nz[1].max()) + 1]
        bbox += [int(nz[2].min()), int(nz[2].max()) + 1]
        cropped = mask[bbox[0] : bbox[1], bbox[2] : bbox[3], bbox[4] : bbox[5]]
        geometry_info["bbox"] = bbox
        row.mask = zlib.compress(np.packbits(cropped.ravel()).tobytes(), 6)
    else:
        row.reason = row.reason or "empty segment (no voxel inside)"
    row.geometry = geometry_info


# -- body composition at L3 (docs/clinical/criteria-kinetics-irae.md §6.3, §6.4) --------------------------------
def _body_composition_at_l3(rows: list[Segment], masks: dict[int, np.ndarray], geometry: SeriesGeometry, read) -> None:
    """Area of each body-composition segment on the L3 slice (``rules.body_composition.choose_l3_slice``); the
    muscle area only within the muscle attenuation window of rules/rulesets/biomarkers.yaml."""

    def slices(kinds) -> set[int]:
        return {
            int(i)
            for r in rows
            if r.kind in kinds and r.segment_number in masks
            for i in np.nonzero(masks[r.segment_number].any(axis=(1, 2)))[0]
        }

    choice = choose_l3_slice(slices((L3_VERTEBRA,)), slices(BODY_COMPOSITION_KINDS))
    pixel_area_cm2 = geometry.pixel_spacing_mm[0] * geometry.pixel_spacing_mm[1] / 100.0
    window = get_engine().rulebase["imaging-biomarkers"].parameters["muscle_hu_window"]
    image = None
    for row in rows:
        if row.kind not in BODY_COMPOSITION_KINDS or row.status != "computed":
            continue
        stats = dict(row.stats)
        stats["l3_rule"] = choice.rule
        if choice.slice_index is not None and row.segment_number in masks:
            mask = masks[row.segment_number][choice.slice_index]
            stats["l3_slice"] = choice.slice_index
            if row.kind == SKELETAL_MUSCLE:
                if image is None:
                    ds = read(geometry.sop_uids[choice.slice_index])
                    image = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
                inside = mask & (image >= window["low"]) & (image <= window["high"])
                stats["l3_area_unwindowed_cm2"] = round(float(mask.sum()) * pixel_area_cm2, 2)
                stats["hu_window"] = [window["low"], window["high"]]
                stats["l3_area_cm2"] = round(float(inside.sum()) * pixel_area_cm2, 2)
            else:
                stats["l3_area_cm2"] = round(float(mask.sum()) * pixel_area_cm2, 2)
        else:
            row.reason = choice.rule
        row.stats = stats


# -- MR ADC over a lesion segment (contract §9.6) ---------------------------------------------------------------
class _SliceReader:
    """Pixel arrays (modality values) of the series' slices, read once each."""

    def __init__(self, read, geometry: SeriesGeometry) -> None:
        self._read = read
        self._geometry = geometry
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, index: int) -> np.ndarray:
        if index not in self._cache:
            ds = self._read(self._geometry.sop_uids[index])
            self._cache[index] = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
        return self._cache[index]


def _is_adc_map(ds) -> bool:
    """An MR ADC map: Image Type (0008,0008) holds ``ADC`` (the value 3/4 vendors and the Enhanced MR defined terms
    use for apparent diffusion coefficient maps)."""
    return any(str(v).strip().upper() == "ADC" for v in (ds.get("ImageType") or []))


def _adc(row: Segment, mask: np.ndarray, read: _SliceReader) -> None:
    """Mean and minimum ADC (10⁻⁶ mm²/s) over the lesion segment; an implausible mean is not used (reason kept)."""
    values = np.concatenate([read(int(z))[mask[z]] for z in np.nonzero(mask.any(axis=(1, 2)))[0]])
    mean, minimum = float(values.mean()), float(values.min())
    bounds = get_engine().rulebase["imaging-biomarkers"].parameters["adc_plausible_range"]
    stats = dict(row.stats)
    if not bounds["low"] <= mean <= bounds["high"]:
        stats["adc_rejected"] = (
            f"mean ADC {mean:.0f} outside {bounds['low']}-{bounds['high']} x 10^-6 mm2/s: not an ADC map in "
            "10^-6 mm2/s, not used"
        )
    else:
        stats["adc_mean"] = round(mean, 1)
        stats["adc_min"] = round(minimum, 1)
        stats["adc_unit"] = "10*-6.mm2/s"
    row.stats = stats


ADC_UNIT = "10*-6.mm2/s"
ADC_METHOD = (
    "ADC mean (IBSI Q4LE mean intensity) and minimum (IBSI 1GSF) over the DICOM SEG lesion segment on the MR ADC "
    "map, values read in 10^-6 mm2/s; change: mean ADC against the lesion's first ADC measurement"
)


def publish_adc(session: Session, settings: Settings, patient: Patient, segment: Segment) -> None:
    features = [
        Feature("Q4LE", "ADC mean", Decimal(str(segment.stats["adc_mean"])), ADC_UNIT, "adc-mean"),
        Feature("1GSF", "ADC minimum", Decimal(str(segment.stats["adc_min"])), ADC_UNIT, "adc-min"),
    ]
    first = session.scalars(
        select(Segment)
        .where(
            Segment.lesion_id == segment.lesion_id,
            Segment.status == "computed",
            Segment.scan_date < segment.scan_date,
        )
        .order_by(Segment.scan_date, Segment.id)
    ).all()
    earlier = [s for s in first if "adc_mean" in (s.stats or {})]
    if earlier and earlier[0].stats["adc_mean"]:
        base = Decimal(str(earlier[0].stats["adc_mean"]))
        change = ((Decimal(str(segment.stats["adc_mean"])) - base) / base * 100).quantize(Decimal("0.1"))
        features.append(Feature(None, f"ADC mean change from {earlier[0].scan_date}", change, "%", "adc-mean-change"))
    publish_lesion_features(session, settings, patient, segment, features, ADC_METHOD)


# -- PET: metabolic tumour volume and total lesion glycolysis of a lesion segment ---------------------------------
def _metabolic(row: Segment, mask: np.ndarray, read: _SliceReader, factor: float | None, why: str) -> None:
    """MTV = the segment's volume on the PET series (its delineation is the producer's: the method, e.g. 41 %
    SUVmax, is theirs and must be recorded by them — spec kinetics §6.2); SUVmean (body weight) over it and
    TLG = MTV × SUVmean."""
    stats = dict(row.stats)
    stats["mtv_cm3"] = float(row.volume_cm3) if row.volume_cm3 is not None else None
    if factor is None:
        stats["tlg_not_computed"] = why
    else:
        values = np.concatenate([read(int(z))[mask[z]] for z in np.nonzero(mask.any(axis=(1, 2)))[0]])
        suv_mean = float(values.mean()) * factor
        stats["suv_mean"] = round(suv_mean, 2)
        stats["tlg"] = round(suv_mean * float(row.volume_cm3 or 0), 2)
    row.stats = stats


PET_METHOD = (
    "PET lesion segment: MTV = segment volume (voxel counting); SUVmean (body weight, decay-corrected dose) over "
    "the segment; TLG = MTV x SUVmean"
)


def publish_metabolic(session: Session, settings: Settings, patient: Patient, segment: Segment) -> None:
    features = [Feature(None, "Metabolic tumour volume", Decimal(str(segment.stats["mtv_cm3"])), "cm3", "mtv")]
    if "tlg" in segment.stats:
        features.append(
            Feature(None, "SUVmean (body weight)", Decimal(str(segment.stats["suv_mean"])), "g/mL", "suv-mean")
        )
        features.append(Feature(None, "Total lesion glycolysis", Decimal(str(segment.stats["tlg"])), "g", "tlg"))
    publish_lesion_features(session, settings, patient, segment, features, PET_METHOD)


# -- the §9.6 feature Observation (volume) ----------------------------------------------------------------------
VOLUME_METHOD = (
    "YEKZ volume (voxel counting) by immunorad: voxels of the DICOM SEG segment (fractional: fraction >= 0.5) x "
    "slice spacing (from Image Position Patient) x pixel spacing; no resampling, no discretisation"
)


def publish_lesion_features(
    session: Session,
    settings: Settings,
    patient: Patient,
    segment: Segment,
    features: list[Feature],
    method: str,
) -> None:
    """Add ``features`` to the lesion's §9.6 feature Observation at the segment's scan date, searchable on /fhir at
    once (radiomic feature extractors add theirs through this too: same Observation, one component per IBSI id)."""
    lesion = session.get(Lesion, segment.lesion_id) if segment.lesion_id else None
    if lesion is None or segment.scan_date is None:
        return
    ref = patient_ref(settings, patient)
    systems = LocalSystems.from_canonical(settings.fhir_canonical)
    probe = merge_features(
        None,
        systems,
        ref,
        lesion_key=lesion.identity_key,
        lesion_label=lesion.label,
        scan_date=segment.scan_date,
        features=[],
        method=method,
        issued=utcnow(),
    )
    existing = get_resource(session, "Observation", probe["id"])
    resource = merge_features(
        existing.content if existing else None,
        systems,
        ref,
        lesion_key=lesion.identity_key,
        lesion_label=lesion.label,
        scan_date=segment.scan_date,
        features=features,
        method=method,
        issued=utcnow(),
    )
    save_resource(session, resource, patient_id=patient.id, origin="immunorad")


def publish_volume(session: Session, settings: Settings, patient: Patient, segment: Segment) -> None:
    if segment.volume_cm3 is None:  # _measure sets it with voxel_count, which the caller checked
        raise ValueError(f"segment {segment.id} has no measured volume")
    volume = Feature(VOLUME_VOXEL_COUNTING, "Volume (voxel counting)", segment.volume_cm3, "cm3")
    publish_lesion_features(session, settings, patient, segment, [volume], VOLUME_METHOD)


# -- feature extraction entry point ----------------------------------------------------------------------
def segment_mask(row: Segment) -> np.ndarray:
    """The segment's full-size boolean mask on its series (slices, rows, columns)."""
    shape = tuple(row.geometry.get("shape") or ())
    full = np.zeros(shape, dtype=bool)
    bbox = row.geometry.get("bbox")
    if row.mask is None or not bbox:
        return full
    z0, z1, y0, y1, x0, x1 = bbox
    size = (z1 - z0) * (y1 - y0) * (x1 - x0)
    bits = np.unpackbits(np.frombuffer(zlib.decompress(row.mask), dtype=np.uint8))[:size]
    full[z0:z1, y0:y1, x0:x1] = bits.reshape(z1 - z0, y1 - y0, x1 - x0).astype(bool)
    return full


def load_segment_volume(session: Session, segment_id: int, *, margin: int = 2) -> SegmentVolume:
    """(image volume, mask, voxel spacing) of one computed segment, cropped to its bounding box plus ``margin``
    voxels in-plane and between slices. Raises ``PixelsUnavailable`` once the series' pixels are dropped."""
    row = session.get(Segment, segment_id)
    if row is None or row.status != "computed" or not row.geometry.get("bbox"):
        raise PixelsUnavailable("the segment has no computed mask")
    sops: list[str] = row.geometry["source_sops"]
    z0, z1, y0, y1, x0, x1 = row.geometry["bbox"]
    shape = row.geometry["shape"]
    z0, y0, x0 = max(0, z0 - margin), max(0, y0 - margin), max(0, x0 - margin)
    z1, y1, x1 = min(shape[0], z1 + margin), min(shape[1], y1 + margin), min(shape[2], x1 + margin)
    rows = {
        sop: pixel
        for sop, pixel in session.execute(
            select(Instance.sop_uid, PixelData)
            .join(PixelData, PixelData.instance_id == Instance.id)
            .where(Instance.sop_uid.in_(sops[z0:z1]))
        )
    }
    slices = []
    for sop in sops[z0:z1]:
        pixel = rows.get(sop)
        if pixel is None or pixel.data is None:
            raise PixelsUnavailable("the pixel data of the segment's series is no longer kept")
        ds = _dataset(pixel)
        slices.append(np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)[y0:y1, x0:x1])
    mask = segment_mask(row)[z0:z1, y0:y1, x0:x1]
    z_mm, y_mm, x_mm = (float(v) for v in row.geometry["spacing_zyx_mm"])
    spacing = (z_mm, y_mm, x_mm)
    return SegmentVolume(
        segment_id=row.id,
        image=np.stack(slices),
        mask=mask,
        spacing_mm=spacing,
        modality=row.modality,
        scan_date=row.scan_date,
        lesion_id=row.lesion_id,
    )


def _dataset(pixel: PixelData, *, stop_before_pixels: bool = False):
    if pixel.data is None:
        raise PixelsUnavailable("dropped")
    return pydicom.dcmread(io.BytesIO(zlib.decompress(pixel.data)), stop_before_pixels=stop_before_pixels)


# -- retention --------------------------------------------------------------------------------------------
def purge_expired_pixels(session: Session, now: dt.datetime | None = None) -> int:
    """Drop one batch of pixel data past its retention (the row stays, marked dropped); returns how many."""
    now = now or utcnow()
    ids = list(
        session.scalars(
            select(PixelData.id)
            .where(PixelData.expires_at <= now, PixelData.data.is_not(None))
            .order_by(PixelData.id)
            .limit(PURGE_BATCH)
        )
    )
    if ids:
        session.execute(update(PixelData).where(PixelData.id.in_(ids)).values(data=None, dropped_at=now))
    return len(ids)


# -- listing ----------------------------------------------------------------------------------------------
def segments_listing(session: Session, patient_id: str) -> list[dict[str, Any]]:
    """Every segment of the patient's SEGs (lesion, body composition, other), as ``/api`` shows them."""
    rows = session.scalars(
        select(Segment)
        .where(Segment.patient_id == patient_id)
        .order_by(Segment.scan_date, Segment.seg_sop_uid, Segment.segment_number)
    )
    return [
        {
            "id": r.id,
            "seg": r.seg_sop_uid,
            "segment_number": r.segment_number,
            "label": r.label,
            "kind": r.kind,
            "property_type": r.property_type,
            "category": r.category,
            "lesion": r.identity_key,
            "lesion_id": r.lesion_id,
            "scan_date": r.scan_date.isoformat() if r.scan_date else None,
            "series": r.series_uid,
            "modality": r.modality,
            "status": r.status,
            "reason": r.reason,
            "voxel_count": r.voxel_count,
            "volume_cm3": str(r.volume_cm3) if r.volume_cm3 is not None else None,
            "spacing_mm": r.geometry.get("spacing_zyx_mm"),
            "radiomics": (r.stats or {}).get("radiomics"),
            "signatures": (r.stats or {}).get("signatures"),
        }
        for r in rows
    ]


__all__ = [
    "BODY_COMPOSITION_KINDS",
    "JOB_KIND",
    "PixelsUnavailable",
    "SegmentVolume",
    "load_segment_volume",
    "process_seg",
    "purge_expired_pixels",
    "segment_mask",
    "segments_listing",
]
