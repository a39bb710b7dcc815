"""What leaves the TID 1500 adapter: each measurement group of a parsed report as the core's fact plus provenance.

``ParsedGroup`` stays the reader's own parse result (identity sources, producer quirks, pending images, AI results);
``measurements_of`` is the one conversion to ``fhir_mappings.measurement_input.MeasurementInput``, as the FHIR
inbound mapper returns it.
"""

from __future__ import annotations

from dicom_listener.tid1500.model import ParsedGroup, ParsedReport
from fhir_mappings.measurement_input import UNDATED, MeasurementInput, MeasurementSource, source_label
from rules.codes import specific_finding_code
from rules.facts import (
    LesionMeasurement,
    LesionRole,
    NonTargetChange,
    NonTargetStatus,
    ReferenceMeasurement,
    ReferenceRegion,
    reported_status,
)

ROLES = {"target": LesionRole.TARGET, "non-target": LesionRole.NON_TARGET}
"""Baseline Category (CID 6145) → role; ``non-lesion`` is no role (``MeasurementSource.non_lesion``)."""


def measurements_of(report: ParsedReport) -> list[MeasurementInput]:
    """Every group of ``report``, in order (``MeasurementSource.index`` is the group's index)."""
    return [measurement_of(report, index, group) for index, group in enumerate(report.groups)]


def measurement_of(report: ParsedReport, index: int, group: ParsedGroup) -> MeasurementInput:
    """One measurement group (identity kept as parsed: never guessed)."""
    source = MeasurementSource(
        kind="dicom-sr",
        ref=report.sop_instance_uid,
        index=index,
        scan_date=report.study_date,
        study_uid=report.study_instance_uid,
        producer=report.producer,
        notes=group.notes,
        rejected_reason=group.rejected_reason,
        non_lesion=group.baseline_category == "non-lesion",
    )
    scan_date = report.study_date or UNDATED
    label = source_label(source.kind, source.ref)
    if group.reference_region is not None:
        reference = ReferenceMeasurement(
            region=ReferenceRegion(group.reference_region),
            scan_date=scan_date,
            sul_mean=group.reference_mean,
            sul_sd=group.reference_sd,
            suv_max=group.suv_max,
            source=label,
        )
        return MeasurementInput(reference, source)
    sites = [s.value for s in group.finding_sites]
    fact = LesionMeasurement(
        lesion_id=group.identity_key or f"unmatched:{report.sop_instance_uid}:{index}",
        scan_date=scan_date,
        status=reported_status(
            too_small=group.too_small, disappeared=group.disappeared, nontarget_status=group.nontarget_status
        ),
        role=ROLES.get(group.baseline_category or ""),
        nodal=group.nodal,
        organ=sites[0] if sites else None,
        long_axis_mm=group.long_axis_mm if group.long_axis_mm is not None else group.diameter_mm,
        short_axis_mm=group.short_axis_mm,
        nontarget_status=NonTargetStatus(group.nontarget_status) if group.nontarget_status else None,
        nontarget_change=NonTargetChange(group.nontarget_change) if group.nontarget_change else None,
        injected=group.injected,
        irradiated=group.irradiated,
        equivocal=group.equivocal,
        finding_code=specific_finding_code(group.finding.value if group.finding is not None else None),
        suv_max=group.suv_max,
        sul_peak=group.sul_peak,
        metabolic_volume_ml=group.metabolic_volume_ml,
        tlg=group.tlg,
        identity_source=group.identity_source if group.identity_key else "none",
        source=label,
        label=group.label,
        merged_into=group.merged_into,
        fragment=group.fragment,
    )
    return MeasurementInput(fact, source)
