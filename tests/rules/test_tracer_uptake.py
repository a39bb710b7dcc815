"""Tracer-specific uptake per lesion and its heterogeneity across lesions (contract §9.6; rules/tracer_uptake.py).

Informational facts: Bensch et al. (Nat Med 2018) describe heterogeneous 89Zr-atezolizumab uptake between and within
patients without a cut-off, so the numbers are reported, never read by a criterion.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from rules.evaluate import evaluate_patient
from rules.facts import LesionMeasurement, LesionRole, LesionStatus, PatientFacts, Scan, TherapyLine
from rules.pet_tracers import identify
from rules.tracer_uptake import LesionUptake, heterogeneity

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
BL, FU = D("2024-01-02"), D("2024-03-04")
ATEZO = identify(text="89Zr-atezolizumab")
FDG = identify(code="35321007", scheme="SCT")


def m(lesion: str, day: dt.date, suv_max: str | None, sul_peak: str | None = None) -> LesionMeasurement:
    return LesionMeasurement(
        lesion_id=lesion,
        scan_date=day,
        role=LesionRole.TARGET if day == BL else None,
        status=LesionStatus.PRESENT,
        organ="lung",
        long_axis_mm=Decimal(20),
        short_axis_mm=Decimal(15),
        label=lesion,
        suv_max=None if suv_max is None else Decimal(suv_max),
        sul_peak=None if sul_peak is None else Decimal(sul_peak),
    )


def facts(fu_tracer, *fu: LesionMeasurement) -> PatientFacts:
    baseline = (m("A", BL, "9.0"), m("B", BL, "7.0"), m("C", BL, "5.0"))
    return PatientFacts(
        patient_ref="p",
        therapy_lines=(TherapyLine("atezolizumab", C1D1),),
        scans=(Scan(BL, modalities=("PT",), pet_tracer=FDG), Scan(FU, modalities=("PT",), pet_tracer=fu_tracer)),
        measurements=(*baseline, *fu),
    )


# Worked example: three lesions on 89Zr-atezolizumab PET, SUVmax 4.0, 6.0, 12.0.
#   n = 3; min 4.0; median (middle of 4.0, 6.0, 12.0) = 6.0; max 12.0; max/min = 12.0 / 4.0 = 3.0.
#   mean = 22.0 / 3 = 7.333; population SD = sqrt(((4 − 7.333)² + (6 − 7.333)² + (12 − 7.333)²) / 3)
#     = sqrt((11.111 + 1.778 + 21.778) / 3) = sqrt(11.556) = 3.399; CV = 3.399 / 7.333 = 46.4 %.
def test_three_lesions_on_89zr_atezolizumab_worked_example():
    assert ATEZO is not None and ATEZO.key == "zr89-atezolizumab"
    a = evaluate_patient(facts(ATEZO, m("A", FU, "12.0"), m("B", FU, "4.0"), m("C", FU, "6.0")))
    (uptake,) = a.tracer_uptake
    assert (uptake.scan_date, uptake.tracer, uptake.metric, uptake.count) == (FU, "zr89-atezolizumab", "SUVmax", 3)
    assert (uptake.minimum, uptake.median, uptake.maximum) == (Decimal("4.0"), Decimal("6.00"), Decimal("12.0"))
    assert uptake.max_min_ratio == Decimal("3.00")
    assert uptake.cv_percent == Decimal("46.4")
    assert [(r.lesion, r.suv_max) for r in uptake.lesions] == [
        ("A", Decimal("12.0")),
        ("B", Decimal("4.0")),
        ("C", Decimal("6.0")),
    ]
    assert "Bensch" in uptake.source and "Nat Med 2018" in uptake.source
    # The FDG baseline is not a tracer-specific fact (FDG uptake is read by the FDG criteria) …
    assert all(u.scan_date != BL for u in a.tracer_uptake)
    # … and no FDG criterion reads the 89Zr follow-up.
    percist = a.criterion("PERCIST-1.0")
    assert percist is not None and percist.at(FU).category == "NE"
    assert "89Zr-atezolizumab (PD-L1)" in percist.at(FU).trace[0]


def test_an_fdg_follow_up_has_no_tracer_uptake_facts():
    a = evaluate_patient(facts(FDG, m("A", FU, "12.0"), m("B", FU, "4.0"), m("C", FU, "6.0")))
    assert a.tracer_uptake == ()


# 89Zr-Df-IAB22M2C (CD8) with SUL peak only: the heterogeneity is on the SUL peak, as stated in ``metric``.
#   Two lesions 3.0 and 3.0: median 3.0, max/min 1.0, CV 0.0 % (boundary: identical uptake is no spread).
def test_cd8_minibody_with_sul_peak_only_and_identical_values():
    cd8 = identify(code="126511", scheme="DCM", text="89Zr-Df-IAB22M2C")
    assert cd8 is not None and cd8.key == "zr89-iab22m2c" and (cd8.scheme, cd8.code) == ("DCM", "126511")
    a = evaluate_patient(facts(cd8, m("A", FU, None, "3.0"), m("B", FU, None, "3.0"), m("C", FU, None, None)))
    (uptake,) = a.tracer_uptake
    assert (uptake.metric, uptake.count, uptake.median, uptake.max_min_ratio, uptake.cv_percent) == (
        "SULpeak",
        2,
        Decimal("3.00"),
        Decimal("1.00"),
        Decimal("0.0"),
    )
    assert "Farwell" in uptake.source and "J Nucl Med 2022" in uptake.source


def test_heterogeneity_edges_single_lesion_zero_minimum_and_no_values():
    # One lesion: no spread (CV undefined), ratio 1.0. A minimum of 0: the ratio is undefined, not infinite.
    one = heterogeneity(FU, ATEZO, [LesionUptake("A", Decimal("5.0"), None)])
    assert one is not None and (one.count, one.max_min_ratio, one.cv_percent) == (1, Decimal("1.00"), None)
    zero = heterogeneity(FU, ATEZO, [LesionUptake("A", Decimal("0"), None), LesionUptake("B", Decimal("2"), None)])
    assert zero is not None and zero.max_min_ratio is None and zero.median == Decimal("1.00")
    assert heterogeneity(FU, ATEZO, [LesionUptake("A", None, None)]) is None
