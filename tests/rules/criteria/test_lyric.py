"""LYRIC from the worked example L1 of size spec §11 and the rules of §9.2: IR1 (SPD ≥ +50 % within 12 weeks),
IR2a/IR2b (Lugano PD with SPD < +50 %), IR3 (uptake up without size PD), and the IR resolution policy [D]."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from rules.criteria import lyric
from rules.engine import get_engine
from tests.rules import pet_cases as pc
from tests.rules.cases import NEW, Case, Lesion, T, c
from tests.rules.pet_cases import categories, deauville, observation

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")


def assess(facts, overrides=None):
    return pc.run(lyric, facts, overrides)


def test_l1_ir1_then_resolved_as_flare():
    a = assess(pc.l1())
    w8, w16 = a.timepoints
    # Week 8 (day 56 ≤ 84): SPD 3736 vs nadir 2300 = +62.43 % ≥ 50 % → IR1, not PD (Lugano says PD).
    assert (w8.category, w8.extra["ir_subtype"], w8.extra["lugano_category"]) == ("IR1", "IR1", "PD")
    assert w8.confirmed is False and w8.progression_date is None
    # Week 16: −41.30 % from baseline → Lugano SD; the IR resolves as flare → SD (L1 [D]).
    assert w16.category == "SD" and w16.extra["ir_subtype"] is None
    assert a.progression_date is None and a.provisional is False


def test_l1_pet_version_is_still_ir1():
    # Deauville 5 → 5 with increased uptake (metabolic PMD) and the CT IR1 increase → IR1 (size criteria met).
    w8, _ = assess(pc.l1(pet=True)).timepoints
    assert (w8.category, w8.extra["metabolic_category"]) == ("IR1", "PMD")


def shifted_l1(day):
    """L1 with the week-8 scan moved to ``day`` after C1D1."""
    scans = dict(pc.L1_SCANS, TP1=C1D1 + dt.timedelta(days=day))
    return dataclasses.replace(Case("L1-shift", C1D1, scans, pc.L1.lesions).facts(), cancer_type="lymphoma")


@pytest.mark.parametrize(
    "day, expected",
    [
        # "Within the first 12 weeks": day 84 → IR1; day 85 → Lugano PD stands.
        (84, "IR1"),
        (85, "PD"),
    ],
)
def test_12_week_boundary(day, expected):
    assert categories(assess(shifted_l1(day)))[0] == expected


def test_ir2a_new_lesion_with_spd_below_50_percent():
    # N1 40×30 = 1200 → 40×30; a new node 20×16 (> 1.5 cm) → Lugano PD; SPD +0 % < 50 % → IR2 (a).
    facts = Case(
        "ir2a",
        C1D1,
        {"BL": D("2024-01-02"), "TP1": D("2024-03-04")},
        (
            Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": c(40, 30)}),
            Lesion("X1", NEW, "lymph node", nodal=True, cells={"TP1": c(20, 16)}),
        ),
    ).facts()
    tp = assess(facts).timepoints[0]
    assert (tp.category, tp.extra["ir_subtype"]) == ("IR2", "IR2a")


def test_ir2b_lesion_ppd_increase_with_spd_below_50_percent():
    # N1 40×30 = 1200 unchanged; N2 20×10 = 200 → 26×12 = 312: +56 %, LDi 26 > 15, +6 mm (≤ 2 cm needs 5) → Lugano PD;
    # SPD 1400 → 1512 (+8 %) < 50 % → IR2 (b).
    facts = Case(
        "ir2b",
        C1D1,
        {"BL": D("2024-01-02"), "TP1": D("2024-03-04")},
        (
            Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": c(40, 30)}),
            Lesion("N2", T, "lymph node", nodal=True, cells={"BL": c(20, 10), "TP1": c(26, 12)}),
        ),
    ).facts()
    tp = assess(facts).timepoints[0]
    assert (tp.category, tp.extra["ir_subtype"]) == ("IR2", "IR2b")


def test_ir3_uptake_increase_without_size_progression():
    # CT: 40×30 → 38×28 (SD); Deauville 4 → 5 (increased uptake) → Lugano metabolic PMD → IR3.
    facts = Case(
        "ir3",
        C1D1,
        {"BL": D("2024-01-02"), "TP1": D("2024-03-04")},
        (Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": c(38, 28)}),),
    ).facts()
    facts = dataclasses.replace(facts, observations=(deauville(D("2024-01-02"), 4), deauville(D("2024-03-04"), 5)))
    tp = assess(facts).timepoints[0]
    assert (tp.category, tp.extra["ir_subtype"], tp.extra["lugano_category"]) == ("IR3", "IR3", "SD")


def l1_with_week_16(cell):
    lesions = (
        Lesion("N1", T, "lymph node", nodal=True, cells={"BL": c(40, 30), "TP1": c(52, 40), "TP2": cell}),
        *pc.L1.lesions[1:],
    )
    return Case("L1-w16", C1D1, pc.L1_SCANS, lesions).facts()


def test_ir_becomes_pd_relative_to_the_ir_scan_back_dated():
    # Week 16: N1 52×40 = 2080 (IR scan) → 70×50 = 3500: +68 % vs the IR scan, LDi +18 mm → Lugano PD relative to IR
    # → PD dated to the IR scan (week 8).
    a = assess(l1_with_week_16(c(70, 50)))
    assert categories(a) == ["IR1", "PD"]
    assert a.timepoints[1].progression_date == D("2024-03-04") and a.progression_date == D("2024-03-04")


def test_ir_held_while_not_pd_relative_to_the_ir_scan():
    # Week 16: N1 55×42 = 2310: +11 % vs the IR scan → no PD relative to the IR; still PD vs the baseline nadir →
    # IR1 held.
    assert categories(assess(l1_with_week_16(c(55, 42)))) == ["IR1", "IR1"]


def test_resolution_policy_persist():
    # lyric.ir_resolution = persist: a later SD does not resolve the IR.
    assert categories(assess(pc.l1(), {"lyric.ir_resolution": "persist"})) == ["IR1", "IR1"]


def test_biopsy_proven_progression_confirms_pd():
    facts = dataclasses.replace(pc.l1(), observations=(observation("biopsy-progression", D("2024-04-01"), 1),))
    a = assess(facts)
    assert categories(a) == ["IR1", "PD"] and a.progression_date == D("2024-03-04")


def test_clinical_deterioration_qualifier_is_provisional_and_off_by_default():
    facts = dataclasses.replace(pc.l1(), observations=(observation("clinical-deterioration", D("2024-03-01"), 1),))
    a = assess(facts)
    assert categories(a) == ["IR1", "SD"] and a.provisional is False
    b = assess(facts, {"lyric.ir1_requires_no_clinical_deterioration": True})
    # [U] qualifier on: SPD +62 % within 12 weeks but clinical deterioration → PD; the assessment is provisional.
    assert categories(b) == ["PD", "PD"] and b.provisional is True


@pytest.mark.parametrize(
    "spd_complete, spd, nadir, expected",
    [
        # conditions.spd_increase_meets_ir1 (lyric.yaml): SPD complete AND SPD ≥ 1.5 × nadir AND nadir > 0.
        (True, "3450", "2300", True),  # 1.5 × 2300 = 3450: +50 % exactly (inclusive)
        (True, "3449", "2300", False),
        (False, "3736", "2300", False),  # a target not measured
        (True, "100", "0", False),  # zero nadir [D]
    ],
)
def test_ir1_spd_conjunction(spd_complete, spd, nadir, expected):
    ruleset = get_engine().rulebase[lyric.CRITERION]
    quantities = {"spd_complete": spd_complete, "spd": Decimal(spd), "nadir": Decimal(nadir)}
    assert ruleset.holds("spd_increase_meets_ir1", ruleset.flag_values(), **quantities) is expected
