"""service.persistence.measurements: the one mapping between a measurement fact and its row gives back the fact
the adapter read (the source label aside, which the loader pseudonymises)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from fhir_mappings.measurement_input import UNDATED, MeasurementInput, MeasurementSource
from rules.facts import (
    LesionMeasurement,
    LesionRole,
    LesionStatus,
    NonTargetChange,
    NonTargetStatus,
    ReferenceMeasurement,
    ReferenceRegion,
)
from service.persistence.measurements import fact_from, row_for

DAY = dt.date(2024, 3, 4)


def test_a_lesion_fact_comes_back_from_its_row():
    fact = LesionMeasurement(
        lesion_id="1.2.3.4",
        scan_date=DAY,
        status=LesionStatus.PRESENT,
        role=LesionRole.NON_TARGET,
        nodal=True,
        organ="59441001",
        long_axis_mm=Decimal("21.0"),
        short_axis_mm=Decimal("12.5"),
        nontarget_status=NonTargetStatus.PRESENT,
        nontarget_change=NonTargetChange.INC,
        injected=True,
        irradiated=False,
        equivocal=True,
        suv_max=Decimal("4.20"),
        sul_peak=Decimal("3.10"),
        metabolic_volume_ml=Decimal("5.5"),
        tlg=Decimal("12.25"),
        identity_source="tracking-uid",
        source="fhir:Observation/o1",
        label="N1",
        merged_into="label:N2",
        fragment=True,
    )
    source = MeasurementSource(kind="fhir", ref="Observation/o1", scan_date=DAY, symptom_driven=True)
    row = row_for(MeasurementInput(fact, source), study_id=None)
    assert (row.identity_key, row.source_ref, row.scan_date, row.symptom_driven) == (
        "1.2.3.4",
        "Observation/o1",
        DAY,
        True,
    )
    notes: list[str] = []
    back = fact_from(row, DAY, notes)
    assert isinstance(back, LesionMeasurement) and notes == []
    assert dataclasses.replace(back, source=fact.source) == fact


def test_an_sr_group_without_identity_or_date_is_stored_without_them():
    fact = LesionMeasurement(
        lesion_id="unmatched:1.2.9:3", scan_date=UNDATED, long_axis_mm=Decimal(10), identity_source="none"
    )
    source = MeasurementSource(kind="dicom-sr", ref="1.2.9", index=3)
    row = row_for(MeasurementInput(fact, source), study_id=7)
    assert (row.identity_key, row.scan_date, row.group_index, row.study_id) == (None, None, 3, 7)
    back = fact_from(row, DAY, [])
    assert isinstance(back, LesionMeasurement)
    assert (back.lesion_id, back.scan_date, back.identity_source) == ("unmatched:1.2.9:3", DAY, "none")


def test_a_refused_group_is_not_assessed_and_a_non_lesion_gives_no_fact():
    fact = LesionMeasurement(lesion_id="T1", scan_date=DAY, role=LesionRole.TARGET, identity_source="finding-label")
    refused = MeasurementSource(kind="dicom-sr", ref="1.2.9", rejected_reason="Long Axis is negative")
    notes: list[str] = []
    back = fact_from(row_for(MeasurementInput(fact, refused), study_id=None), DAY, notes)
    assert isinstance(back, LesionMeasurement) and back.status is LesionStatus.NOT_ASSESSED
    assert notes == ["a measurement group was not used: Long Axis is negative"]
    non_lesion = MeasurementSource(kind="dicom-sr", ref="1.2.9", non_lesion=True)
    row = row_for(MeasurementInput(fact, non_lesion), study_id=None)
    assert row.role == "non-lesion" and fact_from(row, DAY, []) is None


def test_a_reference_region_comes_back_as_one():
    fact = ReferenceMeasurement(
        ReferenceRegion.LIVER, DAY, sul_mean=Decimal("2.10"), sul_sd=Decimal("0.30"), source="fhir:Observation/r"
    )
    row = row_for(MeasurementInput(fact, MeasurementSource(kind="fhir", ref="Observation/r")), study_id=None)
    assert (row.identity_key, row.reference_region) == ("reference:liver", "liver")
    assert fact_from(row, DAY, []) == fact
