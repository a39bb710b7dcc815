"""PERCIMT from the worked examples of size spec §11 (P1, E5 and E7 PET add-ons) and the count boundaries of §7.3:
≥ 4 new lesions < 1.0 cm, ≥ 3 > 1.0 cm or ≥ 2 > 1.5 cm (functional diameter = reported long axis), each separately."""

from __future__ import annotations

import datetime as dt

import pytest

from rules.criteria import percimt
from tests.rules import pet_cases as pc
from tests.rules.pet_cases import PetLesion, categories, pet_facts

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
SCANS = {"BL": D("2024-01-02"), "FU1": D("2024-03-04")}
LIVERS = {"BL": ("1.0", "0.1"), "FU1": ("1.0", "0.1")}


def assess(facts, overrides=None):
    return pc.run(percimt, facts, overrides)


def with_new_lesions(*diameters, a_fu="6.0"):
    """Baseline lesion A 6.0; new FDG-avid lesions (SULpeak 4.0 > liver 1.0) of the given long axes at FU1."""
    lesions = [PetLesion("A lung", "lung", {"BL": "6.0", "FU1": a_fu})]
    lesions += [
        PetLesion(f"N{i} bone", "bone", {"FU1": "4.0"}, long_axis={"FU1": d}) for i, d in enumerate(diameters, 1)
    ]
    return pet_facts("percimt", C1D1, SCANS, lesions, LIVERS)


def test_p1_no_new_lesions_nothing_resolved():
    # Count-based: the liver change at FU3 does not matter → SMD, SMD, SMD.
    assert categories(assess(pc.p1())) == ["SMD", "SMD", "SMD"]


def test_e5_one_new_lesion_is_below_every_count():
    tp2, tp3 = assess(pc.e5_pet()).timepoints
    # N1 12 mm (> 1.0 cm): 1 < 3 → SMD; TP3 18 mm (> 1.5 cm): 1 < 2 → SMD.
    assert (tp2.category, tp2.extra["new_lesions_above_1_cm"]) == ("SMD", 1)
    assert (tp3.category, tp3.extra["new_lesions_above_1_5_cm"]) == ("SMD", 1)


def test_e7_small_new_lesion_then_background():
    tp1, tp2 = assess(pc.e7_pet()).timepoints
    # TP1: N1 6 mm (< 1 cm): 1 < 4 → SMD; TP2: N1 at background, nothing resolved → SMD.
    assert (tp1.category, tp1.extra["new_lesions_below_1_cm"]) == ("SMD", 1)
    assert tp2.category == "SMD"


@pytest.mark.parametrize(
    "diameters, overrides, expected",
    [
        # < 1.0 cm: 3 lesions → SMD; 4 → PMD (≥ 4).
        ((5, 6, 7), None, "SMD"),
        ((5, 6, 7, 8), None, "PMD"),
        # percimt.count_rule read as "> 4": 4 → SMD, 5 → PMD.
        (
            (5, 6, 7, 8),
            {
                "percimt.count_rule": {
                    "small_count": 4,
                    "large_count": 3,
                    "very_large_count": 2,
                    "counts_inclusive": False,
                }
            },
            "SMD",
        ),
        (
            (5, 6, 7, 8, 9),
            {
                "percimt.count_rule": {
                    "small_count": 4,
                    "large_count": 3,
                    "very_large_count": 2,
                    "counts_inclusive": False,
                }
            },
            "PMD",
        ),
        # > 1.0 cm: 2 → SMD; 3 → PMD.
        ((11, 12), None, "SMD"),
        ((11, 12, 13), None, "PMD"),
        # > 1.5 cm: 1 → SMD (and 1 < 3 above 1 cm); 2 → PMD.
        ((16,), None, "SMD"),
        ((16, 17), None, "PMD"),
        # 15.0 mm is not > 1.5 cm: two lesions of 15 mm are 2 > 1.0 cm (< 3) → SMD.
        ((15, 15), None, "SMD"),
        # Mixed counts do not combine: 2 > 1.0 cm + 2 < 1.0 cm → SMD (each rule separately).
        ((11, 12, 5, 6), None, "SMD"),
    ],
)
def test_count_rules_each_separately(diameters, overrides, expected):
    assert categories(assess(with_new_lesions(*diameters), overrides)) == [expected]


def test_exactly_1_cm_is_in_neither_group():
    a = assess(with_new_lesions(10, 10, 10, 10))
    tp = a.timepoints[0]
    assert tp.category == "SMD" and tp.extra["new_lesions_below_1_cm"] == 0 and tp.extra["new_lesions_above_1_cm"] == 0
    assert any("exactly 1.0 cm" in w for w in tp.warnings)


def test_cmr_and_pmr_by_resolution():
    lesions = (
        PetLesion("A lung", "lung", {"BL": "6.0", "FU1": "absent"}),
        PetLesion("B bone", "bone", {"BL": "5.0", "FU1": "0.8"}),
    )
    # Both pre-existing lesions resolved (absent; 0.8 < liver 1.0), no new lesion → CMR.
    assert categories(assess(pet_facts("cmr", C1D1, SCANS, lesions, LIVERS))) == ["CMR"]
    lesions = (
        PetLesion("A lung", "lung", {"BL": "6.0", "FU1": "absent"}),
        PetLesion("B bone", "bone", {"BL": "5.0", "FU1": "4.0"}),
    )
    # Some resolved → PMR.
    assert categories(assess(pet_facts("pmr", C1D1, SCANS, lesions, LIVERS))) == ["PMR"]
    # Some resolved but a new lesion → SMD (PMR requires no new lesion).
    facts = with_new_lesions(12, a_fu="absent")
    assert categories(assess(facts)) == ["SMD"]
