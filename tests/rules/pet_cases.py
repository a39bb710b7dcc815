"""PET, lymphoma and neuro-oncology timelines for the criteria tests: the worked examples P1, E5/E7 (PET add-ons)
and L1 of docs/clinical/criteria-size-pet.md §11 as facts, plus small builders for boundary cases.

Values are copied from the spec tables (SULpeak in SUL units, liver SULmean and SD). Where the spec leaves a value
out, the comment says which value was chosen and why (it never changes a category of the spec).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from rules.engine import get_engine
from rules.evaluate import make_timeline
from rules.facts import (
    ClinicalObservation,
    LesionMeasurement,
    LesionRole,
    LesionStatus,
    LocalTherapy,
    LocalTherapyKind,
    PatientFacts,
    ReferenceMeasurement,
    ReferenceRegion,
    TherapyLine,
)
from rules.results import CriterionAssessment
from tests.rules import cases

D = dt.date.fromisoformat


def run(module, facts: PatientFacts, overrides: Mapping[str, Any] | None = None) -> CriterionAssessment:
    """Assess one criterion module, building the timeline the way ``rules.evaluate`` does."""
    engine = get_engine()
    return module.assess(engine, make_timeline(facts, engine, overrides), overrides)


def categories(assessment: CriterionAssessment) -> list[str]:
    return [tp.category for tp in assessment.timepoints]


def liver(day: dt.date, mean: str, sd: str | None = "0.25") -> ReferenceMeasurement:
    return ReferenceMeasurement(
        ReferenceRegion.LIVER, day, sul_mean=Decimal(mean), sul_sd=None if sd is None else Decimal(sd), source="test"
    )


@dataclasses.dataclass(frozen=True)
class PetLesion:
    """A lesion's SULpeak per scan label (``None`` in a cell = reported present without a SULpeak; ``"absent"``)."""

    key: str
    organ: str
    sul: Mapping[str, Any]
    nodal: bool = False
    role: LesionRole | None = None
    long_axis: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tlg: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    equivocal_at: tuple[str, ...] = ()


def pet_facts(
    name: str,
    c1d1: dt.date,
    scans: Mapping[str, dt.date],
    lesions: Iterable[PetLesion],
    livers: Mapping[str, tuple[str, str | None]],
    *,
    cancer_type: str | None = None,
    observations: Iterable[ClinicalObservation] = (),
) -> PatientFacts:
    """Facts for a PET-only timeline: lesions first seen after ``BL`` are new lesions."""
    measurements = []
    for lesion in lesions:
        for label, value in lesion.sul.items():
            absent = value == "absent"
            ld = lesion.long_axis.get(label)
            measurements.append(
                LesionMeasurement(
                    lesion_id=lesion.key,
                    scan_date=scans[label],
                    status=LesionStatus.ABSENT if absent else LesionStatus.PRESENT,
                    role=lesion.role if label == "BL" else (LesionRole.NEW if "BL" not in lesion.sul else None),
                    nodal=lesion.nodal,
                    organ=lesion.organ,
                    long_axis_mm=None if ld is None else Decimal(str(ld)),
                    sul_peak=None if (absent or value is None) else Decimal(str(value)),
                    tlg=None if lesion.tlg.get(label) is None else Decimal(str(lesion.tlg[label])),
                    equivocal=label in lesion.equivocal_at,
                    label=lesion.key,
                    source="test",
                )
            )
    references = tuple(liver(scans[label], mean, sd) for label, (mean, sd) in livers.items())
    return PatientFacts(
        patient_ref=name,
        cancer_type=cancer_type,
        therapy_lines=(TherapyLine(agent="nivolumab", start_date=c1d1),),
        measurements=tuple(measurements),
        references=references,
        observations=tuple(observations),
    )


def with_pet(
    facts: PatientFacts,
    scans: Mapping[str, dt.date],
    sul: Mapping[tuple[str, str], Any],
    livers: Mapping[str, tuple[str, str | None]],
) -> PatientFacts:
    """Add SULpeak values (``(lesion, scan label) → value``) and liver references to a CT case's facts."""
    by_date = {day: label for label, day in scans.items()}
    measurements = []
    for m in facts.measurements:
        key = (m.lesion_id, by_date[m.scan_date])
        if key in sul:
            measurements.append(dataclasses.replace(m, sul_peak=None if sul[key] is None else Decimal(str(sul[key]))))
        else:
            measurements.append(m)
    references = tuple(liver(scans[label], mean, sd) for label, (mean, sd) in livers.items())
    return dataclasses.replace(facts, measurements=tuple(measurements), references=facts.references + references)


# --- P1 — PERCIST edge cases: hottest-lesion identity, reference = baseline, liver quality control ------------
# Baseline 2024-02-01: liver SULmean 2.0, SD 0.25 → measurability limit 1.5 × 2.0 + 2 × 0.25 = 3.5.
# C1D1 is not given ("patient on anti-PD-1"): 2024-02-05 is used. The follow-up liver SDs are not given: 0.25.
P1_SCANS = {"BL": D("2024-02-01"), "FU1": D("2024-04-01"), "FU2": D("2024-06-03"), "FU3": D("2024-08-05")}
P1_LESIONS = (
    PetLesion("A lung", "lung", {"BL": "8.0", "FU1": "5.0", "FU2": "7.0", "FU3": "7.2"}),
    PetLesion("B node", "lymph node", {"BL": "5.0", "FU1": "5.5", "FU2": "6.5", "FU3": "6.6"}, nodal=True),
    PetLesion("C bone", "bone", {"BL": "4.2", "FU1": "3.0", "FU2": "3.2", "FU3": "3.1"}),
)
P1_LIVERS = {"BL": ("2.0", "0.25"), "FU1": ("2.1", "0.25"), "FU2": ("2.0", "0.25"), "FU3": ("2.6", "0.25")}


def p1(**kwargs: Any) -> PatientFacts:
    return pet_facts("P1", D("2024-02-05"), P1_SCANS, P1_LESIONS, P1_LIVERS, **kwargs)


# --- E5 PET add-on: FDG PET/CT on the CT dates BL, TP2, TP3 (TP1 and TP4 are CT only) --------------------------
# Baseline liver 2.0 (SD 0.25) → limit 3.5; TP2 liver 2.1 (+5 %, +0.1: comparable). TP3's liver is not given: 2.0.
E5_SUL = {
    ("T1 lung", "BL"): "9.0",
    ("T2 mediastinal node", "BL"): "6.0",
    ("T1 lung", "TP2"): "8.5",
    ("T2 mediastinal node", "TP2"): "5.5",
    ("N1 liver", "TP2"): "6.0",
    ("T1 lung", "TP3"): "8.8",
    ("T2 mediastinal node", "TP3"): "5.6",
    ("N1 liver", "TP3"): "7.5",
}
E5_LIVERS = {"BL": ("2.0", "0.25"), "TP2": ("2.1", "0.25"), "TP3": ("2.0", "0.25")}


def e5_pet() -> PatientFacts:
    return with_pet(cases.E5.facts(), cases.E5.scans, E5_SUL, E5_LIVERS)


# --- E7 PET add-on: PET on BL, TP1, TP2 (TP3 is CT only) ------------------------------------------------------
# Baseline liver 2.2 (SD 0.3) → limit 1.5 × 2.2 + 2 × 0.3 = 3.9. TP1 liver 2.3 (+4.5 %, +0.1: comparable).
# TP2's liver is not given: 2.2 (comparable). "At TP2 N1 has no uptake above background": SULpeak 1.8 ≤ liver 2.2.
E7_SUL = {
    ("T2 liver", "BL"): "10.0",
    ("T1 lung", "BL"): "7.0",
    ("T3 node", "BL"): "6.0",
    ("T2 liver", "TP1"): "5.0",
    ("T1 lung", "TP1"): "3.5",
    ("T3 node", "TP1"): "3.0",
    ("N1 lung", "TP1"): "2.8",
    ("T2 liver", "TP2"): "3.0",
    ("T1 lung", "TP2"): "2.5",
    ("T3 node", "TP2"): "2.4",
    ("N1 lung", "TP2"): "1.8",
}
E7_LIVERS = {"BL": ("2.2", "0.3"), "TP1": ("2.3", "0.3"), "TP2": ("2.2", "0.3")}


def e7_pet() -> PatientFacts:
    return with_pet(cases.E7.facts(), cases.E7.scans, E7_SUL, E7_LIVERS)


# --- L1 — Hodgkin lymphoma on anti-PD-1: Lugano PD versus LYRIC IR1 --------------------------------------------
# Three target nodes (LDi × SDi, mm). PET version: Deauville 5 at baseline and week 8 with increased uptake
# (hottest SUVmax 10.0 → 15.0 is the "increased uptake" the example states; week 16 Deauville 3).
L1_SCANS = {"BL": D("2024-01-02"), "TP1": D("2024-03-04"), "TP2": D("2024-04-29")}
L1 = cases.Case(
    "L1",
    D("2024-01-08"),
    L1_SCANS,
    (
        cases.Lesion(
            "N1",
            cases.T,
            "lymph node",
            nodal=True,
            cells={"BL": cases.c(40, 30), "TP1": cases.c(52, 40), "TP2": cases.c(30, 24)},
        ),
        cases.Lesion(
            "N2",
            cases.T,
            "lymph node",
            nodal=True,
            cells={"BL": cases.c(30, 20), "TP1": cases.c(36, 26), "TP2": cases.c(22, 15)},
        ),
        cases.Lesion(
            "N3",
            cases.T,
            "lymph node",
            nodal=True,
            cells={"BL": cases.c(25, 20), "TP1": cases.c(30, 24), "TP2": cases.c(20, 15)},
        ),
    ),
)


def deauville(day: dt.date, score: int) -> ClinicalObservation:
    return ClinicalObservation("deauville", day, Decimal(score), source="test")


def observation(code: str, day: dt.date, value: Any) -> ClinicalObservation:
    return ClinicalObservation(code, day, Decimal(str(value)), source="test")


def l1(*, pet: bool = False, cancer_type: str | None = "lymphoma") -> PatientFacts:
    facts = dataclasses.replace(L1.facts(), cancer_type=cancer_type)
    if not pet:
        return facts
    suv = {("N1", "BL"): "10.0", ("N1", "TP1"): "15.0", ("N1", "TP2"): "3.0"}
    by_date = {day: label for label, day in L1_SCANS.items()}
    measurements = tuple(
        dataclasses.replace(m, suv_max=Decimal(suv[(m.lesion_id, by_date[m.scan_date])]))
        if (m.lesion_id, by_date[m.scan_date]) in suv
        else m
        for m in facts.measurements
    )
    observations = (deauville(L1_SCANS["BL"], 5), deauville(L1_SCANS["TP1"], 5), deauville(L1_SCANS["TP2"], 3))
    return dataclasses.replace(facts, measurements=measurements, observations=observations)


def radiotherapy(day: dt.date, *lesion_ids: str) -> LocalTherapy:
    return LocalTherapy(LocalTherapyKind.RADIOTHERAPY, day, lesion_ids=tuple(lesion_ids), source="test")
