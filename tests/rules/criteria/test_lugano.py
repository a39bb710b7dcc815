"""Lugano 2014 from the worked example L1 of size spec §11 and the boundaries of §9.1 (CT: SPD, lesion-level PD
relative to each lesion's nadir, new lesions; PET: Deauville 5-point scale), with the arithmetic in comments."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest

from rules.criteria import lugano
from rules.engine import get_engine
from tests.rules import cases
from tests.rules import pet_cases as pc
from tests.rules.cases import ABSENT, NEW, NOT_ASSESSED, NT, TSTM, Case, Lesion, T, c
from tests.rules.pet_cases import categories, deauville

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
SCANS = {"BL": D("2024-01-02"), "TP1": D("2024-03-04"), "TP2": D("2024-04-29")}


def assess(facts, overrides=None):
    return pc.run(lugano, facts, overrides)


def case(*lesions):
    return Case("lugano", C1D1, SCANS, tuple(lesions)).facts()


# --- L1 ------------------------------------------------------------------------------------------------------


def test_l1_week_8_lesion_level_pd_and_week_16_sd():
    a = assess(pc.l1())
    w8, w16 = a.timepoints
    # SPD BL 40×30 + 30×20 + 25×20 = 1200 + 600 + 500 = 2300.
    assert w8.baseline_sum == Decimal(2300) and w8.sum_unit == "mm2"
    # Week 8: 52×40 + 36×26 + 30×24 = 2080 + 936 + 720 = 3736 (+62.43 %).
    assert w8.sum_mm == Decimal(3736) and w8.percent_from_baseline == Fraction(3736 - 2300, 2300) * 100
    # N1: LDi 52 > 15 mm; PPD 2080 vs nadir 1200 = +73.33 % ≥ 50 %; LDi +12 mm ≥ 10 mm (lesion > 2 cm) → PD.
    # (N2: +56 % but +6 mm < 10 mm; N3: +44 % < 50 %: neither alone is PD.)
    assert w8.category == "PD" and w8.extra["progressing_lesions"] == "N1"
    # Week 16: 720 + 330 + 300 = 1350 → −41.30 % from baseline, short of −50 % → SD (nadirs are the baseline sizes).
    assert w16.sum_mm == Decimal(1350) and w16.category == "SD"
    assert w16.percent_from_baseline == Fraction(1350 - 2300, 2300) * 100
    assert a.progression_date == D("2024-03-04")
    assert w8.extra["metabolic_category"] is None


def test_l1_pet_version_deauville():
    w8, w16 = assess(pc.l1(pet=True)).timepoints
    # Deauville 5 → 5 with increased uptake (hottest SUVmax 10.0 → 15.0 = +50 % > 30 %) → PMD (metabolic, in extra);
    # the CT category stays the Observation value.
    assert (w8.category, w8.extra["metabolic_category"], w8.extra["deauville_score"]) == ("PD", "PMD", 5)
    # Week 16: Deauville 3 → CMR.
    assert (w16.category, w16.extra["metabolic_category"]) == ("SD", "CMR")


# --- CT boundaries ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fu, expected",
    [
        # One node 40×25 = 1000; PR at ≥ 50 % decrease (inclusive): 25×20 = 500 → PR; 25.1×20 = 502 → SD.
        (c(25, 20), "PR"),
        (c(25.1, 20), "SD"),
    ],
)
def test_pr_50_percent_boundary(fu, expected):
    assert categories(assess(case(Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 25), "TP1": fu})))) == [
        expected
    ]


@pytest.mark.parametrize(
    "bl, fu, expected",
    [
        # LDi must be > 15 mm: 10×8 = 80 → 15×12 = 180 (+125 %, +5 mm) but LDi 15 → not PD (SD).
        (c(10, 8), c(15, 12), "SD"),
        (c(10, 8), c(15.1, 12), "PD"),
        # PPD ≥ +50 % from nadir (lesion > 2 cm: +10 mm): 30×20 = 600 → 40×22.5 = 900 (+50 % exactly, +10 mm) → PD;
        # 40×22.4 = 896 (+49.33 %) → SD.
        (c(30, 20), c(40, 22.5), "PD"),
        (c(30, 20), c(40, 22.4), "SD"),
        # Lesion ≤ 2 cm at nadir needs +5 mm: 20×10 = 200 → 25×12 = 300 (+50 %, +5 mm) → PD;
        # 24.9×12.1 = 301.29 (+50.6 %) but +4.9 mm → SD.
        (c(20, 10), c(25, 12), "PD"),
        (c(20, 10), c(24.9, 12.1), "SD"),
        # Lesion > 2 cm (21 mm) needs +10 mm: 21×10 = 210 → 30×12 = 360 (+71 %, +9 mm) → SD; 31×12 (+10 mm) → PD.
        (c(21, 10), c(30, 12), "SD"),
        (c(21, 10), c(31, 12), "PD"),
    ],
)
def test_lesion_level_progression_boundaries(bl, fu, expected):
    # A stable extranodal target (liver 20×20) keeps the first case from being CR (a node ≤ 15 mm LDi is normal).
    assert categories(
        assess(
            case(
                Lesion("N1", T, "lymph node", nodal=True, cells={"BL": bl, "TP1": fu}),
                Lesion("L1", T, "liver", cells={"BL": c(20, 20), "TP1": c(20, 20)}),
            )
        )
    ) == [expected]


@pytest.mark.parametrize(
    "condition, ldi, ppd, reference_ppd, rise, expected",
    [
        # conditions.small_lesion_progression / large_lesion_progression in lugano.yaml:
        # LDi > 15 mm AND PPD ≥ 1.5 × reference PPD AND max(ΔLDi, ΔSDi) ≥ 5 mm (reference LDi ≤ 20) or ≥ 10 mm.
        # Reference 20×10 = 200: 25×12 = 300 = 1.5 × 200 (+50 % exactly), LDi 25 > 15, +5 mm exactly → PD.
        ("small_lesion_progression", "25", "300", "200", "5", True),
        ("small_lesion_progression", "25", "299.9", "200", "5", False),  # +49.95 %
        ("small_lesion_progression", "25", "300", "200", "4.9", False),  # +4.9 mm
        # LDi exactly 15 is not > 15 (strict), whatever the growth.
        ("small_lesion_progression", "15", "180", "80", "5", False),
        ("small_lesion_progression", "15.1", "180", "80", "5", True),
        # A lesion > 2 cm at the reference needs +10 mm: +9.9 → not; +10 exactly → PD.
        ("large_lesion_progression", "31", "372", "210", "9.9", False),
        ("large_lesion_progression", "31", "372", "210", "10", True),
    ],
)
def test_lesion_progression_conjunctions(condition, ldi, ppd, reference_ppd, rise, expected):
    ruleset = get_engine().rulebase[lugano.CRITERION]
    quantities = dict(ldi=Decimal(ldi), ppd=Decimal(ppd), reference_ppd=Decimal(reference_ppd), rise=Decimal(rise))
    assert ruleset.holds(condition, ruleset.flag_values(), **quantities) is expected


def test_pd_relative_to_each_lesions_nadir():
    # 40×30 = 1200 → 20×15 = 300 (nadir; −75 % → PR) → 30×23 = 690: +130 % from the nadir, LDi 30 > 15, +10 mm
    # (nadir LDi 20 ≤ 2 cm needs +5) → PD, although the SPD is still −42.5 % from baseline.
    a = assess(
        case(Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": c(20, 15), "TP2": c(30, 23)}))
    )
    assert categories(a) == ["PR", "PD"]


@pytest.mark.parametrize(
    "new_cell, nodal, overrides, expected",
    [
        # New node must be > 1.5 cm in any axis: 15 mm → not PD; 15.1 → PD.
        (c(15, 10), True, None, "SD"),
        (c(15.1, 10), True, None, "PD"),
        # New extranodal site > 1.0 cm → PD.
        (c(10.1, 8), False, None, "PD"),
        # ≤ 1.0 cm: PD when not equivocal (unequivocally lymphoma, lugano.small_new_extranodal_is_pd), else not.
        (c(8, 6), False, None, "PD"),
        (c(8, 6), False, {"lugano.small_new_extranodal_is_pd": False}, "SD"),
        (c(8, 6, equivocal=True), False, None, "SD"),
    ],
)
def test_new_lesions(new_cell, nodal, overrides, expected):
    facts = case(
        Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": c(38, 28)}),
        Lesion("X1", NEW, "lymph node" if nodal else "liver", nodal=nodal, cells={"TP1": new_cell}),
    )
    assert categories(assess(facts, overrides)) == [expected]


def test_too_small_to_measure_counts_5_by_5_and_cr():
    # Node 40×30 = 1200 + liver 20×20 = 400 = 1600 → node 15×10 (LDi ≤ 15 mm: normal) + liver TSTM (5×5 = 25):
    # SPD 150 + 25 = 175 (−89 %) → PR (the extranodal lesion is still present) → CR when it is gone.
    a = assess(
        case(
            Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": c(15, 10), "TP2": c(15, 10)}),
            Lesion("L1", T, "liver", cells={"BL": c(20, 20), "TP1": TSTM, "TP2": ABSENT}),
        )
    )
    assert a.timepoints[0].sum_mm == Decimal(175)
    assert categories(a) == ["PR", "CR"]


def test_not_assessed_target_is_ne_and_regrowth_is_pd():
    a = assess(
        case(
            Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": NOT_ASSESSED, "TP2": c(30, 20)}),
            Lesion("L1", T, "liver", cells={"BL": c(20, 20), "TP1": ABSENT, "TP2": c(8, 6)}),
        )
    )
    # TP1: N1 not assessed → NE. TP2: L1 resolved (nadir 0 × 0) and regrew → PD.
    assert categories(a) == ["NE", "PD"]


def test_nontarget_unequivocal_progression_is_pd():
    from rules.facts import NonTargetStatus
    from rules.scenario import Cell

    a = assess(
        case(
            Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": c(38, 28)}),
            Lesion(
                "S1",
                NT,
                "spleen",
                cells={"BL": cases.NT_PRESENT, "TP1": Cell(nontarget_status=NonTargetStatus.UNEQUIVOCAL_PROGRESSION)},
            ),
        )
    )
    assert categories(a) == ["PD"]


# --- PET (Deauville) ------------------------------------------------------------------------------------------


def pet_case(bl_score, fu_score, bl_suv="10.0", fu_suv="10.0", extra_observations=()):
    facts = case(Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": c(38, 28)}))
    suv = {SCANS["BL"]: bl_suv, SCANS["TP1"]: fu_suv}
    measurements = tuple(dataclasses.replace(m, suv_max=Decimal(suv[m.scan_date])) for m in facts.measurements)
    observations = tuple(
        o
        for o in (
            deauville(SCANS["BL"], bl_score) if bl_score else None,
            deauville(SCANS["TP1"], fu_score) if fu_score else None,
        )
        if o
    )
    return dataclasses.replace(facts, measurements=measurements, observations=observations + tuple(extra_observations))


@pytest.mark.parametrize(
    "bl, fu, bl_suv, fu_suv, expected",
    [
        (5, 3, "10.0", "4.0", "CMR"),
        (5, 1, "10.0", "1.0", "CMR"),
        # Deauville 5 → 4: reduced uptake → PMR.
        (5, 4, "10.0", "9.0", "PMR"),
        # 4 → 5: increased → PMD.
        (4, 5, "10.0", "10.0", "PMD"),
        # Same score: SUVmax change beyond ±30 % (strict): 10.0 → 13.0 (+30 % exactly) → NMR; 13.01 → PMD;
        # 7.0 (−30 % exactly) → NMR; 6.99 → PMR.
        (5, 5, "10.0", "13.0", "NMR"),
        (5, 5, "10.0", "13.01", "PMD"),
        (5, 5, "10.0", "7.0", "NMR"),
        (5, 5, "10.0", "6.99", "PMR"),
        # No baseline score and no comparable uptake values: NE.
        (None, 4, None, None, "NE"),
    ],
)
def test_deauville_metabolic_response(bl, fu, bl_suv, fu_suv, expected):
    if bl_suv is None:
        facts = case(Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": c(38, 28)}))
        facts = dataclasses.replace(facts, observations=(deauville(SCANS["TP1"], fu),))
    else:
        facts = pet_case(bl, fu, bl_suv, fu_suv)
    assert assess(facts).timepoints[0].extra["metabolic_category"] == expected


def test_uptake_change_flag():
    # With lugano.uptake_change_percent 20: +25 % is an increase → PMD.
    facts = pet_case(5, 5, "10.0", "12.5")
    assert assess(facts).timepoints[0].extra["metabolic_category"] == "NMR"
    assert assess(facts, {"lugano.uptake_change_percent": 20}).timepoints[0].extra["metabolic_category"] == "PMD"
