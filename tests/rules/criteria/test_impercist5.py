"""imPERCIST5 from the worked examples of size spec §11 (P1, E5 and E7 PET add-ons) and the boundaries of §7.3:
sum of SULpeak of up to 5 lesions (≤ 2 per organ), new lesions included; PMD/PMR at ≥ 30 % from baseline."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest

from rules.criteria import impercist5
from tests.rules import pet_cases as pc
from tests.rules.pet_cases import PetLesion, categories, pet_facts

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
SCANS = {"BL": D("2024-01-02"), "FU1": D("2024-03-04"), "FU2": D("2024-04-29")}
LIVERS = {"BL": ("1.0", "0.1"), "FU1": ("1.0", "0.1")}


def assess(facts, overrides=None):
    return pc.run(impercist5, facts, overrides)


def test_p1_sum_of_up_to_5():
    a = assess(pc.p1())
    fu1, fu2, fu3 = a.timepoints
    # Baseline 8.0 + 5.0 + 4.2 = 17.2 (all ≥ the limit 3.5).
    assert fu1.extra["baseline_sul_peak_sum"] == Decimal("17.2")
    # FU1 5.5 + 5.0 + 3.0 = 13.5 vs 17.2 → −21.51 % → SMD.
    assert fu1.extra["sul_peak_sum"] == Decimal("13.5") and fu1.category == "SMD"
    assert fu1.percent_from_baseline == Fraction(135 - 172, 172) * 100
    # FU2 7.0 + 6.5 + 3.2 = 16.7 → −2.91 % → SMD.
    assert fu2.extra["sul_peak_sum"] == Decimal("16.7") and fu2.category == "SMD"
    # FU3: liver +30 %, +0.6 → NE (PERCIST quality control).
    assert fu3.category == "NE"
    assert categories(a) == ["SMD", "SMD", "NE"]


def test_e5_new_lesion_joins_the_sum():
    tp2, tp3 = assess(pc.e5_pet()).timepoints
    # Baseline 9.0 + 6.0 = 15.0; TP2 8.5 + 6.0 (N1, new) + 5.5 = 20.0 → +33.33 % ≥ 30 % → PMD.
    assert tp2.extra["sul_peak_sum"] == Decimal("20.0") and tp2.extra["new_lesions_in_sum"] == "N1 liver"
    assert tp2.category == "PMD" and tp2.percent_from_baseline == Fraction(100, 3)
    # TP3 8.8 + 7.5 + 5.6 = 21.9 → +46.00 % → PMD.
    assert tp3.extra["sul_peak_sum"] == Decimal("21.9") and tp3.category == "PMD"
    assert tp3.percent_from_baseline == Fraction(46)


def test_e7_new_lesion_does_not_define_pmd():
    tp1, tp2 = assess(pc.e7_pet()).timepoints
    # Baseline 10.0 + 7.0 + 6.0 = 23.0; TP1 5.0 + 3.5 + 3.0 + 2.8 (N1) = 14.3 → −37.83 % → PMR.
    assert tp1.extra["sul_peak_sum"] == Decimal("14.3") and tp1.category == "PMR"
    # TP2: N1 at background (not summed): 3.0 + 2.5 + 2.4 = 7.9 → −65.65 % → PMR.
    assert tp2.extra["sul_peak_sum"] == Decimal("7.9") and tp2.category == "PMR"
    assert tp2.extra["new_lesions_in_sum"] is None


@pytest.mark.parametrize(
    "fu, expected",
    [
        # Baseline 6.0 + 4.0 = 10.0. PMD ≥ +30 % (inclusive): 13.0 exactly → PMD; 12.99 → SMD.
        (("8.0", "5.0"), "PMD"),
        (("7.99", "5.0"), "SMD"),
        # PMR ≥ −30 % (inclusive): 7.0 exactly → PMR; 7.01 → SMD.
        (("4.0", "3.0"), "PMR"),
        (("4.01", "3.0"), "SMD"),
    ],
)
def test_30_percent_boundaries_inclusive(fu, expected):
    lesions = (
        PetLesion("A lung", "lung", {"BL": "6.0", "FU1": fu[0]}),
        PetLesion("B bone", "bone", {"BL": "4.0", "FU1": fu[1]}),
    )
    assert categories(assess(pet_facts("b", C1D1, SCANS, lesions, LIVERS))) == [expected]


def test_at_most_5_lesions_and_2_per_organ():
    # Three lung lesions (9, 8, 7): only two count (≤ 2 per organ); plus 6, 5, 4 in three organs: the fifth is 5.
    lesions = (
        PetLesion("L1 lung", "lung", {"BL": "9.0", "FU1": "9.0"}),
        PetLesion("L2 lung", "lung", {"BL": "8.0", "FU1": "8.0"}),
        PetLesion("L3 lung", "lung", {"BL": "7.0", "FU1": "7.0"}),
        PetLesion("B bone", "bone", {"BL": "6.0", "FU1": "6.0"}),
        PetLesion("K liver", "liver", {"BL": "5.0", "FU1": "5.0"}),
        PetLesion("S skin", "skin", {"BL": "4.0", "FU1": "4.0"}),
    )
    tp = assess(pet_facts("cap", C1D1, SCANS, lesions, LIVERS)).timepoints[0]
    # 9 + 8 + 6 + 5 + 4 = 32 (L3 left out: third lung lesion; then only 5 lesions).
    assert tp.extra["sul_peak_sum"] == Decimal("32.0")
    assert tp.extra["summed_lesions"] == "L1 lung, L2 lung, B bone, K liver, S skin"


def test_reference_flag_nadir():
    # Baseline 10.0 → FU1 6.0 (−40 %, PMR) → FU2 8.0: vs baseline −20 % → SMD; vs nadir 6.0 +33.33 % → PMD.
    lesions = (PetLesion("A lung", "lung", {"BL": "10.0", "FU1": "6.0", "FU2": "8.0"}),)
    facts = pet_facts("nadir", C1D1, SCANS, lesions, {**LIVERS, "FU2": ("1.0", "0.1")})
    assert categories(assess(facts)) == ["PMR", "SMD"]
    assert categories(assess(facts, {"impercist5.reference": "nadir"})) == ["PMR", "PMD"]
