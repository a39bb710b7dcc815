"""The one mapping between a measurement fact and its ``measurements`` row, both ways.

``row_for`` stores what an adapter read (``fhir_mappings.measurement_input.MeasurementInput``: the core's fact and
its provenance) — used by the DICOM SR intake and the FHIR intake; ``fact_from`` reads a row back as the core's fact
— used by the facts loader.
"""

from __future__ import annotations

import datetime as dt

from fhir_mappings.measurement_input import MeasurementInput
from rules.facts import (
    LesionMeasurement,
    LesionRole,
    LesionStatus,
    NonTargetChange,
    NonTargetStatus,
    ReferenceMeasurement,
    ReferenceRegion,
)
from service.ops.logs import pseudonym
from service.persistence.models import Measurement

ROLES = {"target": LesionRole.TARGET, "non-target": LesionRole.NON_TARGET, "new": LesionRole.NEW}
NON_LESION = "non-lesion"


def row_for(item: MeasurementInput, *, study_id: int | None) -> Measurement:
    """The row that stores one measurement (identity kept as read: a lesion without identity has none)."""
    fact, source = item.fact, item.source
    row = Measurement(
        study_id=study_id,
        scan_date=source.scan_date,
        source_kind=source.kind,
        source_ref=source.ref,
        group_index=source.index,
        rejected_reason=source.rejected_reason,
        notes=list(source.notes),
        symptom_driven=source.symptom_driven,
        tracer=source.tracer,
        role=NON_LESION if source.non_lesion else None,
    )
    if isinstance(fact, ReferenceMeasurement):
        row.identity_key = f"reference:{fact.region.value}"
        row.identity_source = "reference"
        row.status = LesionStatus.PRESENT.value
        row.nodal = False
        row.equivocal = False
        row.fragment = False
        row.reference_region = fact.region.value
        row.reference_mean = fact.sul_mean
        row.reference_sd = fact.sul_sd
        row.suv_max = fact.suv_max
        return row
    row.identity_key = None if fact.identity_source == "none" else fact.lesion_id
    row.identity_source = fact.identity_source
    row.label = fact.label
    if fact.role is not None and not source.non_lesion:
        row.role = fact.role.value
    row.status = fact.status.value
    row.nodal = fact.nodal
    row.organ = fact.organ
    row.long_axis_mm = fact.long_axis_mm
    row.short_axis_mm = fact.short_axis_mm
    row.nontarget_status = fact.nontarget_status.value if fact.nontarget_status else None
    row.nontarget_change = fact.nontarget_change.value if fact.nontarget_change else None
    row.injected = fact.injected
    row.irradiated = fact.irradiated
    row.equivocal = fact.equivocal
    row.finding_code = fact.finding_code
    row.suv_max = fact.suv_max
    row.sul_peak = fact.sul_peak
    row.metabolic_volume_ml = fact.metabolic_volume_ml
    row.tlg = fact.tlg
    row.merged_into = fact.merged_into
    row.fragment = fact.fragment
    return row


def fact_from(
    row: Measurement, scan_date: dt.date, notes: list[str]
) -> LesionMeasurement | ReferenceMeasurement | None:
    """The core's fact a stored row gives at ``scan_date`` (the row's, else its study's), or None when it gives
    none (a non-lesion group; a refused reference region or lesion without identity; an unknown region), with
    what could not be used added to ``notes``."""
    if row.role == NON_LESION:
        return None
    source = f"{row.source_kind}:{pseudonym(row.source_ref)}"
    if row.rejected_reason:
        notes.append(f"a measurement group was not used: {row.rejected_reason}")
        if row.identity_key is None or row.reference_region:
            return None
        # Contract §9.2: a refused value never yields a category; its lesion is *not assessed* at this scan.
        return LesionMeasurement(
            lesion_id=row.identity_key,
            scan_date=scan_date,
            status=LesionStatus.NOT_ASSESSED,
            role=ROLES.get(row.role or ""),
            nodal=bool(row.nodal),
            organ=row.organ,
            identity_source=row.identity_source,
            source=source,
            label=row.label,
        )
    if row.reference_region:
        try:
            region = ReferenceRegion(row.reference_region)
        except ValueError:
            notes.append(f"unknown reference region {row.reference_region!r}")
            return None
        return ReferenceMeasurement(
            region=region,
            scan_date=scan_date,
            sul_mean=row.reference_mean,
            sul_sd=row.reference_sd,
            suv_max=row.suv_max,
            source=f"{row.source_kind}:{row.source_ref}",
        )
    return LesionMeasurement(
        lesion_id=lesion_key(row),
        scan_date=scan_date,
        status=LesionStatus(row.status),
        role=ROLES.get(row.role or ""),
        nodal=bool(row.nodal),
        organ=row.organ,
        long_axis_mm=row.long_axis_mm,
        short_axis_mm=row.short_axis_mm,
        nontarget_status=NonTargetStatus(row.nontarget_status) if row.nontarget_status else None,
        nontarget_change=NonTargetChange(row.nontarget_change) if row.nontarget_change else None,
        injected=row.injected,
        irradiated=row.irradiated,
        equivocal=bool(row.equivocal),
        finding_code=row.finding_code,
        suv_max=row.suv_max,
        sul_peak=row.sul_peak,
        metabolic_volume_ml=row.metabolic_volume_ml,
        tlg=row.tlg,
        identity_source=row.identity_source if row.identity_key else "none",
        source=source,
        label=row.label,
        merged_into=row.merged_into,
        fragment=bool(row.fragment),
    )


def lesion_key(row: Measurement) -> str:
    """The lesion identity of a row: its identity key, or one of its own for a group without identity (never
    matched with another)."""
    return row.identity_key or f"unmatched:{row.source_ref}:{row.group_index}"
