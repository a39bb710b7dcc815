"""Worker job ``radiomics``: the IBSI features of one computed lesion segment, then the signatures over them.

Queued by the SEG job (``service/ingest/segmentation.py``) for every computed lesion segment, so a lesion's features are
computed off the DICOM path and published as soon as they are (baseline included, contract §9.6): added to the
lesion's feature Observation at that scan date (one Observation, one component per IBSI feature, next to the SEG
volume), then one signature Observation per model card whose inputs are all present (``derivedFrom`` the feature
Observation). Anything that stops it — the ``imaging`` extra missing, the ROI above the bound, the child over its
time or memory bound, the pixels dropped — is kept on the segment (``stats['radiomics']``) with the reason and
shown in ``/api/patients/<id>/segments``; the volume stays.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from fhir_mappings.codes import LocalSystems
from fhir_mappings.features import VOLUME_VOXEL_COUNTING, Feature, feature_identifier
from fhir_mappings.outbound import resource_id
from fhir_mappings.signatures import signature_observation
from service.assessment.evaluation import patient_ref
from service.features.radiomics import FeatureSet, RadiomicsError, RadiomicsSettings, extract_features
from service.features.signature_cards import SignatureNotComputable, load_cards
from service.ingest.segmentation import LESION, PixelsUnavailable, load_segment_volume, publish_lesion_features
from service.ops.config import Settings
from service.ops.logs import pseudonym
from service.persistence.db import Database
from service.persistence.fhir_store import get_resource, save_resource
from service.persistence.models import Lesion, Patient, Segment, utcnow

logger = logging.getLogger(__name__)

JOB_KIND = "radiomics"
INTENSITY_UNITS = {"CT": "[hnsf'U]"}
"""UCUM unit of the modality-LUT output (Hounsfield units on CT); other modalities: unit not stated."""


def radiomics_settings(settings: Settings) -> RadiomicsSettings:
    return RadiomicsSettings(
        bin_width=settings.radiomics_bin_width,
        max_voxels=settings.radiomics_max_voxels,
        time_limit_seconds=float(settings.radiomics_time_limit_seconds),
        memory_limit_mb=settings.radiomics_memory_limit_mb,
    )


def _record(segment: Segment, status: str, reason: str | None = None) -> None:
    stats = dict(segment.stats or {})
    stats["radiomics"] = {"status": status, **({"reason": reason} if reason else {})}
    segment.stats = stats


@dataclass(frozen=True)
class Extraction:
    """The outcome of one lesion's extraction, computed outside any database transaction."""

    result: FeatureSet | None = None
    reason: str | None = None


def extract_outside_transaction(db: Database, settings: Settings, segment_id: int) -> Extraction | None:
    """Read the segment's image and mask (a read-only session), then run the bounded extraction with no transaction
    open: a long extraction never holds a database lock (SQLite's writer lock would stall the DICOM listener).
    ``None`` when the segment is not (or no longer) a computed, tracked lesion segment."""
    with db.read() as session:
        segment = session.get(Segment, segment_id)
        if segment is None or not _eligible(segment):
            return None
        modality = segment.modality or ""
        try:
            volume = load_segment_volume(session, segment.id)
        except PixelsUnavailable as exc:
            return Extraction(reason=str(exc))
    try:
        result = extract_features(
            volume.image,
            volume.mask,
            volume.spacing_mm,
            radiomics_settings(settings),
            intensity_unit=INTENSITY_UNITS.get(modality),
        )
    except RadiomicsError as exc:
        return Extraction(reason=exc.reason)
    return Extraction(result=result)


def _eligible(segment: Segment | None) -> bool:
    return (
        segment is not None
        and segment.kind == LESION
        and segment.status == "computed"
        and segment.lesion_id is not None
        and segment.patient_id is not None
        and segment.scan_date is not None
    )


def process_radiomics(session: Session, settings: Settings, segment_id: int, extraction: Extraction | None) -> None:
    """Store ``extraction`` (from :func:`extract_outside_transaction`) on the segment and on /fhir."""
    segment = session.get(Segment, segment_id)
    if extraction is None or segment is None or not _eligible(segment):
        return
    patient = session.get(Patient, segment.patient_id)
    lesion = session.get(Lesion, segment.lesion_id)
    if patient is None or lesion is None:
        return
    result = extraction.result
    if result is None:
        reason = extraction.reason or "not computed"
        _record(segment, "not-computed", reason)
        logger.info("radiomic features not computed", extra={"fields": {"segment": segment.id, "reason": reason}})
        return
    # YEKZ comes from the SEG measurement (same definition, its own method line); non-finite values (e.g. the
    # skewness of a uniform ROI) are left out rather than sent as numbers FHIR cannot carry.
    finite = [f for f in result.features if math.isfinite(f.value) and f.ibsi_id != VOLUME_VOXEL_COUNTING]
    features = [Feature(f.ibsi_id, f.name, Decimal(f"{f.value:.6g}"), f.unit) for f in finite]
    publish_lesion_features(session, settings, patient, segment, features, result.method)
    _record(segment, "computed")
    _publish_signatures(session, settings, patient, segment, lesion, {f.ibsi_id: f.value for f in finite})
    logger.info(
        "radiomic features computed",
        extra={"fields": {"segment": segment.id, "features": len(features), "lesion": pseudonym(lesion.identity_key)}},
    )


def _publish_signatures(
    session: Session, settings: Settings, patient: Patient, segment: Segment, lesion: Lesion, values: dict[str, float]
) -> None:
    if segment.scan_date is None:
        return
    ref = patient_ref(settings, patient)
    systems = LocalSystems.from_canonical(settings.fhir_canonical)
    feature_id = resource_id(
        systems.observation_identifier, feature_identifier(ref, lesion.identity_key, segment.scan_date)
    )
    stored = get_resource(session, "Observation", feature_id)
    if stored is None:
        return
    outcomes: dict[str, str] = {}
    for card in load_cards(settings.signatures_dir):
        try:
            score = card.score(values)
        except SignatureNotComputable as exc:
            outcomes[f"{card.name} {card.version}"] = f"not computed: {exc.reason}"
            continue
        resource = signature_observation(
            systems,
            ref,
            name=card.name,
            version=card.version,
            method_text=card.method_text,
            provisional=card.provisional,
            score=score,
            scan_date=segment.scan_date,
            lesion_key=lesion.identity_key,
            derived_from=[stored.content],
            issued=utcnow(),
        )
        save_resource(session, resource, patient_id=patient.id, origin="immunorad")
        outcomes[f"{card.name} {card.version}"] = "computed"
    stats = dict(segment.stats or {})
    stats["signatures"] = outcomes
    segment.stats = stats
