"""EORTC 1999 PET recommendations from the worked examples of size spec §11 (P1, E5 and E7 PET add-ons) and the
boundaries of §7.2: the tumour region defined at baseline; 15 % after one cycle, > 25 % after more; PMD > 25 %."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest

from rules.criteria import eortc_pet
from tests.rules import pet_cases as pc
from tests.rules.pet_cases import PetLesion, categories, pet_facts

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
LIVERS = ("1.0", "0.1")


def assess(facts, overrides=None):
    return pc.run(eortc_pet, facts, overrides)


def region_case(fu, *, day=56, bl="10.0", bl_ld=None, fu_ld=None):
    scans = {"BL": D("2024-01-02"), "FU1": C1D1 + dt.timedelta(days=day)}
    lesion = PetLesion("A lung", "lung", {"BL": bl, "FU1": fu}, long_axis={"BL": bl_ld, "FU1": fu_ld} if bl_ld else {})
    return pet_facts("eortc", C1D1, scans, (lesion,), {"BL": LIVERS, "FU1": LIVERS})


def test_p1_lesion_a_region():
    a = assess(pc.p1())
    fu1, fu2, fu3 = a.timepoints
    assert fu1.extra["region_lesion"] == "A lung"
    # FU1: A 8.0 → 5.0 = −37.5 % → PMR (> 25 % after more than one cycle: day 56).
    assert fu1.category == "PMR" and fu1.percent_from_baseline == Fraction(-375, 10) and fu1.extra["cycles"] == "more"
    # FU2: 7.0 = −12.5 % → SMD (decrease < 15 %).
    assert fu2.category == "SMD"
    # FU3: liver +30 % (> ±25 % reproducibility) → NE.
    assert fu3.category == "NE"


def test_e5_new_uptake_is_pmd():
    # New uptake in N1 (6.0, then 7.5) → PMD at TP2 and TP3; the T1 region is −5.56 % and −2.22 %.
    assert categories(assess(pc.e5_pet())) == ["PMD", "PMD"]


def test_e7_region_t2_graded_on_each_scan():
    tp1, tp2 = assess(pc.e7_pet()).timepoints
    # TP1: new uptake (N1 2.8 > liver 2.3) → PMD, although the T2 region is −50 %.
    assert tp1.category == "PMD" and tp1.percent_from_baseline == Fraction(-50)
    # TP2: N1 at background; T2 10.0 → 3.0 = −70 % (> 25 %) → PMR.
    assert tp2.category == "PMR" and tp2.extra["region_lesion"] == "T2 liver"


@pytest.mark.parametrize(
    "fu, day, overrides, expected",
    [
        # After one cycle (day 21 ≤ 21): PMR at ≥ 15 % decrease: 8.5 = −15 % exactly → PMR; 8.51 → SMD.
        ("8.5", 21, None, "PMR"),
        ("8.51", 21, None, "SMD"),
        # Day 22 is after more than one cycle: −15 % is in the 15-25 % gap → SMD (eortc.gap_policy default).
        ("8.5", 22, None, "SMD"),
        ("8.5", 22, {"eortc.gap_policy": "PMR"}, "PMR"),
        # After more than one cycle: > 25 % needed: 7.5 = −25 % exactly → gap → SMD; 7.49 → PMR.
        ("7.5", 56, None, "SMD"),
        ("7.5", 56, {"eortc.gap_policy": "PMR"}, "PMR"),
        ("7.49", 56, None, "PMR"),
        # 8.6 = −14 %: below 15 % → SMD whatever the gap policy.
        ("8.6", 56, {"eortc.gap_policy": "PMR"}, "SMD"),
        # PMD at > 25 % increase: 12.5 = +25 % exactly → SMD; 12.51 → PMD.
        ("12.5", 56, None, "SMD"),
        ("12.51", 56, None, "PMD"),
        # eortc.one_cycle_max_days moves the one-cycle boundary: day 22 counts as one cycle with 28.
        ("8.5", 22, {"eortc.one_cycle_max_days": 28}, "PMR"),
    ],
)
def test_25_and_15_percent_boundaries(fu, day, overrides, expected):
    assert categories(assess(region_case(fu, day=day), overrides)) == [expected]


def test_visible_increase_in_extent_is_pmd():
    # Uptake unchanged (10.0), longest dimension 20 → 24.1 mm (+20.5 % > 20 %) → PMD; 24.0 (+20 % exactly) → SMD.
    assert categories(assess(region_case("10.0", bl_ld=20, fu_ld=24.1))) == ["PMD"]
    assert categories(assess(region_case("10.0", bl_ld=20, fu_ld=24))) == ["SMD"]


def test_liver_qc_flag():
    # P1 FU3 with the liver check off: A 7.2 vs 8.0 = −10 % → SMD.
    assert categories(assess(pc.p1(), {"eortc.liver_qc": False})) == ["PMR", "SMD", "SMD"]
