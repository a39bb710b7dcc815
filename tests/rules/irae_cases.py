"""Worked examples of docs/clinical/criteria-kinetics-irae.md (K9, K9b, K13) and irAE / pattern cases
as plain facts. Numbers are copied from the spec; the arithmetic is in the tests' comments.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from rules.facts import (
    ClinicalObservation,
    FindingReport,
    LesionMeasurement,
    LesionRole,
    LesionStatus,
    LocalTherapy,
    LocalTherapyKind,
    NonTargetStatus,
    PatientFacts,
    ReferenceMeasurement,
    ReferenceRegion,
    TherapyLine,
)

D = dt.date.fromisoformat
T, NT, NEW = LesionRole.TARGET, LesionRole.NON_TARGET, LesionRole.NEW

SARCOIDOSIS = "31541009"
MEDIASTINAL_LYMPHADENOPATHY = "52324001"
LYMPHADENOPATHY = "30746006"


def m(
    lesion: str,
    day: str,
    ld: float | None = None,
    sa: float | None = None,
    *,
    role: LesionRole | None = None,
    organ: str = "lung",
    nodal: bool = False,
    status: LesionStatus = LesionStatus.PRESENT,
    **kw,
) -> LesionMeasurement:
    """One lesion at one scan (label = id)."""
    return LesionMeasurement(
        lesion_id=lesion,
        scan_date=D(day),
        status=status,
        role=role,
        nodal=nodal,
        organ=organ,
        long_axis_mm=None if ld is None else Decimal(str(ld)),
        short_axis_mm=None if sa is None else Decimal(str(sa if sa is not None else ld)),
        label=lesion,
        source="test",
        **kw,
    )


def facts(name: str, c1d1: str, measurements, **kw) -> PatientFacts:
    return PatientFacts(
        patient_ref=name, therapy_lines=(TherapyLine("pembrolizumab", D(c1d1)),), measurements=tuple(measurements), **kw
    )


# K9 — dissociated response, lesion-level. E1 2024-01-10, follow-up 2024-03-06 (C1D1 not given: 2024-01-15).
K9_BL, K9_FU = "2024-01-10", "2024-03-06"


def k9(*, with_new_lesion: bool = False) -> PatientFacts:
    ms = [
        m("L1 liver", K9_BL, 30, 25, role=T, organ="liver"),
        m("L1 liver", K9_FU, 15, 12, organ="liver"),
        m("L2 lung", K9_BL, 20, 15, role=T, organ="lung"),
        m("L2 lung", K9_FU, 27, 20, organ="lung"),
        m("L3 node", K9_BL, 25, 18, role=T, organ="lymph node", nodal=True),
        m("L3 node", K9_FU, 20, 12, organ="lymph node", nodal=True),
    ]
    if with_new_lesion:  # K9b: a new 12 mm lung nodule at follow-up
        ms.append(m("N1 lung", K9_FU, 12, 9, role=NEW, organ="lung"))
    return facts("K9b" if with_new_lesion else "K9", "2024-01-15", ms)


def two_lesions(base: tuple[float, float], follow: tuple[float, float], name: str = "DR-boundary") -> PatientFacts:
    """Two non-nodal targets, baseline and one follow-up (boundary tests of §4.2)."""
    a0, b0 = base
    a1, b1 = follow
    return facts(
        name,
        "2024-01-15",
        [
            m("A liver", "2024-01-10", a0, role=T, organ="liver"),
            m("A liver", "2024-03-06", a1, organ="liver"),
            m("B lung", "2024-01-10", b0, role=T, organ="lung"),
            m("B lung", "2024-03-06", b1, organ="lung"),
        ],
    )


# K13 — baseline prognostic panel.
K13_BL, K13_C1D1 = "2024-01-08", "2024-01-15"


def obs(
    code: str, value: str, unit: str | None = None, day: str = K13_BL, reference_high: str | None = None
) -> ClinicalObservation:
    return ClinicalObservation(
        code, D(day), Decimal(value), unit, None if reference_high is None else Decimal(reference_high), "test"
    )


def k13(*, observations=None, references=None, sex: str = "male", measurements=None) -> PatientFacts:
    """WBC 9.0, neutrophils 7.2; LDH 300 (ULN 250); L3 muscle 140 cm²; male 1.75 m, BMI 27; target sum 95 mm with a
    liver metastasis; PET SUVmax marrow 2.6, spleen 2.4, liver 3.0; TMTV 110 cm³."""
    if observations is None:
        observations = (
            obs("leukocytes", "9.0", "10*9/L"),
            obs("neutrophils", "7.2", "10*9/L"),
            obs("ldh", "300", "U/L", reference_high="250"),
            obs("skeletal-muscle-area-l3", "140", "cm2"),
            obs("height", "1.75", "m"),
            obs("weight", "82.7", "kg"),  # 82.7 / 1.75² = 27.0 kg/m²
            obs("tmtv", "110", "cm3"),
        )
    if references is None:
        references = (
            ReferenceMeasurement(ReferenceRegion.BONE_MARROW, D(K13_BL), suv_max=Decimal("2.6"), source="test"),
            ReferenceMeasurement(ReferenceRegion.SPLEEN, D(K13_BL), suv_max=Decimal("2.4"), source="test"),
            ReferenceMeasurement(ReferenceRegion.LIVER, D(K13_BL), suv_max=Decimal("3.0"), source="test"),
        )
    if measurements is None:
        measurements = (
            m("T1 liver", K13_BL, 55, 40, role=T, organ="liver"),
            m("T2 lung", K13_BL, 40, 30, role=T, organ="lung"),
        )
    return PatientFacts(
        patient_ref="K13",
        sex=sex,
        therapy_lines=(TherapyLine("pembrolizumab", D(K13_C1D1)),),
        measurements=tuple(measurements),
        references=tuple(references),
        observations=tuple(observations),
    )


# Sarcoid-like reaction in a responding patient: size spec E1 numbers (PR at −30 %), then new hilar/mediastinal nodes.
E1_SCANS = {"BL": "2024-01-08", "TP1": "2024-03-11", "TP2": "2024-05-06", "TP3": "2024-07-01"}
E1_C1D1 = "2024-01-15"


def e1_responding(extra=()) -> list[LesionMeasurement]:
    s = E1_SCANS
    ms = [
        m("T1 lung", s["BL"], 40, 30, role=T, organ="lung"),
        m("T1 lung", s["TP1"], 28, 21),
        m("T1 lung", s["TP2"], 26, 20),
        m("T1 lung", s["TP3"], 27, 20),
        m("T2 liver", s["BL"], 30, 25, role=T, organ="liver"),
        m("T2 liver", s["TP1"], 21, 18, organ="liver"),
        m("T2 liver", s["TP2"], 20, 16, organ="liver"),
        m("T2 liver", s["TP3"], 21, 17, organ="liver"),
        m("T3 node", s["BL"], 25, 20, role=T, organ="lymph node", nodal=True),
        m("T3 node", s["TP1"], 20, 14, organ="lymph node", nodal=True),
        m("T3 node", s["TP2"], 18, 12, organ="lymph node", nodal=True),
        m("T3 node", s["TP3"], 19, 13, organ="lymph node", nodal=True),
    ]
    for label in ("BL", "TP1", "TP2", "TP3"):
        ms.append(
            m(
                "NT bone",
                s[label],
                role=NT if label == "BL" else None,
                organ="bone",
                nontarget_status=NonTargetStatus.PRESENT,
            )
        )
    return ms + list(extra)


def sarcoid_like() -> PatientFacts:
    """E1 plus, from TP2, new bilateral hilar/mediastinal nodes coded sarcoidosis / mediastinal lymphadenopathy."""
    s = E1_SCANS
    nodes = []
    for label in ("TP2", "TP3"):
        nodes.append(
            m(
                "N1 right hilar node",
                s[label],
                22,
                16,
                role=NEW,
                organ="right hilar lymph node",
                nodal=True,
                finding_code=SARCOIDOSIS,
            )
        )
        nodes.append(
            m("N2 left hilar node", s[label], 21, 15, role=NEW, organ="53074004", nodal=True, finding_code=SARCOIDOSIS)
        )
        nodes.append(
            m(
                "N3 subcarinal node",
                s[label],
                20,
                15,
                role=NEW,
                organ="mediastinal lymph node",
                nodal=True,
                finding_code=MEDIASTINAL_LYMPHADENOPATHY,
            )
        )
    return facts("sarcoid-like", E1_C1D1, e1_responding(nodes))


def with_irae_lesion(code: str, organ: str, *, nodal: bool = False, day: str = E1_SCANS["TP2"], **kw) -> PatientFacts:
    """E1 plus one new coded finding measured at TP2."""
    return facts(
        f"irae-{code}",
        E1_C1D1,
        e1_responding([m("N1 finding", day, 20, 15, role=NEW, organ=organ, nodal=nodal, finding_code=code)]),
        **kw,
    )


def with_finding_report(code: str, day: str, *, body_site: str | None = None, **kw) -> PatientFacts:
    """E1 plus a FHIR Observation/Condition irAE finding (no lesion)."""
    return facts(
        f"report-{code}",
        E1_C1D1,
        e1_responding(),
        findings=(FindingReport(code, D(day), body_site=body_site, source="test"),),
        **kw,
    )


# Abscopal: radiotherapy of L1 on 2024-03-15; L2 (untreated) shrinks.
def abscopal(l2_after: float, *, after_day: str = "2024-06-10", flag_irradiated_l2: bool = False) -> PatientFacts:
    return facts(
        "abscopal",
        "2024-01-15",
        [
            m("L1 lung", "2024-01-10", 30, role=T, organ="lung"),
            m("L1 lung", "2024-03-06", 32, organ="lung"),
            m("L1 lung", after_day, 12, organ="lung", irradiated=True),
            m("L2 liver", "2024-01-10", 20, role=T, organ="liver"),
            m("L2 liver", "2024-03-06", 20, organ="liver"),
            m("L2 liver", after_day, l2_after, organ="liver", irradiated=flag_irradiated_l2 or None),
        ],
        local_therapies=(LocalTherapy(LocalTherapyKind.RADIOTHERAPY, D("2024-03-15"), ("L1 lung",), source="test"),),
    )
