"""RECIST 1.1 from the worked examples of size spec §11, with the arithmetic in the comments."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest

from rules.engine import get_engine
from rules.evaluate import evaluate_patient
from tests.rules import cases


def recist(case, overrides=None):
    return evaluate_patient(case.facts(), overrides).criterion("RECIST-1.1")


def categories(assessment):
    return [tp.category for tp in assessment.timepoints]


def test_e1_pr_at_exactly_minus_30_percent_is_inclusive():
    # SoD BL 40+30+20 = 90; TP1 28+21+14 = 63; 63 × 10 = 630 ≤ 90 × 7 = 630 → PR (exactly −30.00 %).
    a = recist(cases.E1)
    tp1, tp2, tp3 = a.timepoints
    assert tp1.sum_mm == Decimal("63") and tp1.baseline_sum == Decimal("90")
    assert tp1.percent_from_baseline == Fraction(-30)
    assert categories(a) == ["PR", "PR", "PR"]
    # TP3: 61 vs nadir 58 → +5.17 %, +3 mm: not PD; 61 ≤ 63 → still PR by the 30 % rule.
    assert tp3.nadir_sum == Decimal("58") and tp3.absolute_from_nadir == Decimal("3")
    assert a.best_response.category == "PR"
    # Confirmed: TP1 PR, TP2 PR 56 days later (≥ 28).
    assert a.best_response_confirmed.category == "PR" and a.best_response_confirmed.confirmed


def test_e3_plus_20_percent_but_4_mm_is_not_progression():
    # TP1: 24 ≥ 1.2 × 20 = 24 (exactly +20 %) but 24 − 20 = 4 < 5 → SD.
    # TP2: 25 − 20 = 5 ≥ 5 and +25 % → PD; RECIST ends there (TP3 is post-PD, not re-graded).
    a = recist(cases.E3)
    assert categories(a) == ["SD", "PD"]
    assert a.timepoints[0].percent_from_nadir == Fraction(20)
    assert a.progression_date == dt.date(2024, 6, 24)
    # BOR SD: TP1 on day 56 ≥ 42 days after C1D1.
    assert a.best_response.category == "SD"


def test_e5_new_measurable_lesion_is_pd():
    a = recist(cases.E5)
    # SoD 48 → 45 (−6.25 %) → SD; TP2 new lesion N1 → PD.
    assert categories(a) == ["SD", "PD"]
    assert a.timepoints[0].percent_from_baseline == Fraction(-625, 100)
    assert a.timepoints[1].new_lesions == "present"
    assert a.best_response.category == "SD"


def test_e7_new_small_lesion_is_pd_and_bor_pd():
    a = recist(cases.E7)
    # SoD 80 → 52 (target PR) but new lesion N1 → PD at the first assessment; BOR PD.
    assert categories(a) == ["PD"]
    assert a.timepoints[0].target_response == "PR"
    assert a.best_response.category == "PD"


def test_e9_missing_target_is_ne_and_ne_never_updates_the_nadir():
    a = recist(cases.E9)
    # SoD 75 → 60 (SD, −20 %) → NE (partial 41 < 72 = 1.2 × 60) → 72.
    # TP3: nadir stays 60 (TP2 is NE); 72 × 5 = 360 ≥ 60 × 6 = 360 and 72 − 60 = 12 ≥ 5 → PD.
    # (72/60 − 1 >= 0.2 is False in binary floating point: exact arithmetic is required.)
    assert categories(a) == ["SD", "NE", "PD"]
    assert a.timepoints[1].target_response == "NE"
    assert a.timepoints[2].nadir_sum == Decimal("60")
    assert a.timepoints[2].percent_from_nadir == Fraction(20)
    assert a.best_response.category == "SD"


def test_e9b_partial_sum_already_pd():
    # TP2 partial 40 + 34 = 74 ≥ 72 and 74 − 60 = 14 ≥ 5 → PD even with T3 missing.
    assert categories(recist(cases.E9B)) == ["SD", "PD"]
    # With recist.ne_partial_pd off, a missing target is always NE.
    assert categories(recist(cases.E9B, {"recist.ne_partial_pd": False})) == ["SD", "NE"]


def test_e11_too_small_to_measure_counts_5_mm_and_cr_is_confirmed():
    a = recist(cases.E11)
    # TP1 SoD 5 (TSTM default) + 3 (measured) = 8 → −70.37 % → PR; then CR, CR.
    assert a.timepoints[0].sum_mm == Decimal("8")
    assert categories(a) == ["PR", "CR", "CR"]
    assert a.best_response_confirmed.category == "CR"


def test_e11_empty_measurement_is_not_zero():
    # Negative test: an empty measurement field must give NE, never 0 (C-RT's Number(null) === 0 trap).
    import dataclasses

    from rules.facts import LesionStatus

    facts = cases.E11.facts()
    tp1 = cases.E11.scans["TP1"]
    measurements = tuple(
        dataclasses.replace(m, status=LesionStatus.PRESENT, long_axis_mm=None, short_axis_mm=None)
        if m.scan_date == tp1 and m.lesion_id == "T1 lung"
        else m
        for m in facts.measurements
    )
    a = evaluate_patient(dataclasses.replace(facts, measurements=measurements)).criterion("RECIST-1.1")
    assert a.timepoints[0].category == "NE"


def test_e15_sticky_pr_and_strict_reading():
    # SoD 100 → 70 → 70 → 80 → 80 → 80; TP3: 80 vs nadir 70 = +14.29 %, +10 mm → not PD;
    # vs baseline −20 % → not PR by a strict reading; sticky PR keeps PR (WG FAQ).
    assert categories(recist(cases.E15)) == ["PR"] * 5
    assert categories(recist(cases.E15, {"recist.sticky_pr": False})) == ["PR", "PR", "SD", "SD", "SD"]


def test_node_below_10_mm_allows_cr_with_a_positive_sum():
    # A nodal target at 9 mm SA is normal: target CR with SoD 9 > 0 (C-DTT tests "sum == 0": wrong).
    case = cases.Case(
        "node-cr",
        dt.date(2024, 1, 8),
        {"BL": dt.date(2024, 1, 2), "TP1": dt.date(2024, 3, 4)},
        (
            cases.Lesion(
                "T1 node", cases.T, "lymph node", nodal=True, cells={"BL": cases.c(25, 18), "TP1": cases.c(12, 9)}
            ),
            cases.Lesion("T2 lung", cases.T, "lung", cells={"BL": cases.c(20, 15), "TP1": cases.ABSENT}),
        ),
    )
    tp = recist(case).timepoints[0]
    assert tp.target_response == "CR" and tp.sum_mm == Decimal("9") and tp.category == "CR"
    # 10 mm is not < 10 mm: not CR (−73.68 % → PR).
    case10 = cases.Case(
        "node-10",
        case.c1d1,
        case.scans,
        (
            cases.Lesion(
                "T1 node", cases.T, "lymph node", nodal=True, cells={"BL": cases.c(25, 18), "TP1": cases.c(12, 10)}
            ),
            case.lesions[1],
        ),
    )
    assert recist(case10).timepoints[0].target_response == "PR"


@pytest.mark.parametrize(
    "current, expected",
    [
        # baseline 100, nadir 100: PR boundary at 70 (inclusive), PD needs ≥ 120 and ≥ +5 mm.
        ("70.0", "PR"),
        ("70.1", "SD"),
        ("119.9", "SD"),
        ("120.0", "PD"),
    ],
)
def test_boundaries_against_a_100_mm_baseline(current, expected):
    case = cases.Case(
        "bound",
        dt.date(2024, 1, 8),
        {"BL": dt.date(2024, 1, 2), "TP1": dt.date(2024, 3, 4)},
        (cases.Lesion("T1", cases.T, "liver", cells={"BL": cases.c(100, 50), "TP1": cases.c(float(current), 40)}),),
    )
    assert categories(recist(case)) == [expected]


def test_small_nadir_needs_5_mm():
    # nadir 20: 24 is +20 % but +4 mm → SD; 25 is +25 % and +5 mm → PD (E3 logic at both boundaries).
    for value, expected in (("24", "SD"), ("25", "PD")):
        case = cases.Case(
            "small",
            dt.date(2024, 1, 8),
            {"BL": dt.date(2024, 1, 2), "TP1": dt.date(2024, 3, 4)},
            (cases.Lesion("T1", cases.T, "lung", cells={"BL": cases.c(20, 10), "TP1": cases.c(float(value), 10)}),),
        )
        assert categories(recist(case)) == [expected]


@pytest.mark.parametrize("criterion", ["RECIST-1.1", "iRECIST"])
@pytest.mark.parametrize(
    "total, nadir, expected",
    [
        # conditions.sum_meets_progression (recist11.yaml, irecist.yaml): S ≥ 1.2 × N AND S − N ≥ 5 mm.
        # Nadir 25: 1.2 × 25 = 30 → S 30 is +20 % exactly and +5 mm exactly → both inclusive → PD.
        ("30", "25", True),
        ("29.9", "25", False),  # +19.6 %, +4.9 mm
        # Nadir 20: S 24 = 1.2 × 20 (+20 % exactly) but 24 − 20 = 4 mm < 5 → not PD (E3).
        ("24", "20", False),
        # Nadir 12: S 17 is +5 mm exactly and 17 ≥ 14.4 (+41.7 %) → PD; 16.9 is +4.9 mm → not.
        ("17", "12", True),
        ("16.9", "12", False),
        # Nadir 50: S 59.9 is +9.9 mm but 59.9 < 60 = 1.2 × 50 (+19.8 %) → not PD; 60 → PD.
        ("59.9", "50", False),
        ("60", "50", True),
        # Nadir 0 (every target gone): S 5 is +5 mm and 5 ≥ 1.2 × 0 → PD; S 4.9 is +4.9 mm → not.
        ("5", "0", True),
        ("4.9", "0", False),
    ],
)
def test_sum_progression_conjunction_20_percent_and_5_mm(criterion, total, nadir, expected):
    ruleset = get_engine().rulebase[criterion]
    flags = ruleset.flag_values()
    assert ruleset.holds("sum_meets_progression", flags, total=Decimal(total), nadir=Decimal(nadir)) is expected


def test_baseline_conformance_is_reported_as_warnings():
    # 6 targets (> 5), 3 in the lung (> 2 per organ), a 9 mm non-nodal target (< 10 mm: not measurable),
    # baseline 35 days before C1D1 (> 28).
    lesions = tuple(
        cases.Lesion(
            f"T{i} lung" if i < 3 else f"T{i} liver",
            cases.T,
            "lung" if i < 3 else "liver",
            cells={"BL": cases.c(9 if i == 5 else 20, 10), "TP1": cases.c(20, 10)},
        )
        for i in range(6)
    )
    case = cases.Case(
        "conformance", dt.date(2024, 2, 5), {"BL": dt.date(2024, 1, 1), "TP1": dt.date(2024, 3, 4)}, lesions
    )
    warnings = " | ".join(recist(case).warnings)
    assert "6 target lesions at baseline" in warnings
    assert "3 target lesions in lung" in warnings
    assert "not measurable at baseline" in warnings
    assert "35 days before treatment" in warnings


def test_stable_disease_needs_42_days_from_c1d1():
    # SD on day 41 then PD: the SD minimum duration (42 days, spec §12) is not met → BOR PD (E16 logic).
    case = cases.Case(
        "sd-duration",
        dt.date(2024, 1, 8),
        {"BL": dt.date(2024, 1, 2), "TP1": dt.date(2024, 2, 18), "TP2": dt.date(2024, 4, 1)},
        (
            cases.Lesion(
                "T1", cases.T, "liver", cells={"BL": cases.c(50, 30), "TP1": cases.c(48, 30), "TP2": cases.c(70, 40)}
            ),
        ),
    )
    a = recist(case)
    assert categories(a) == ["SD", "PD"]
    assert (dt.date(2024, 2, 18) - dt.date(2024, 1, 8)).days == 41
    assert a.best_response.category == "PD"
    # One day later the SD counts: day 42 ≥ 42 → BOR SD.
    later = cases.Case("sd-duration-42", case.c1d1, {**case.scans, "TP1": dt.date(2024, 2, 19)}, case.lesions)
    assert recist(later).best_response.category == "SD"


def test_confirmed_response_needs_28_days():
    # PR on day 56 and again 27 days later: not confirmed (< 28) → confirmed BOR SD; unconfirmed BOR PR.
    case = cases.Case(
        "confirm",
        dt.date(2024, 1, 8),
        {"BL": dt.date(2024, 1, 2), "TP1": dt.date(2024, 3, 4), "TP2": dt.date(2024, 3, 31)},
        (
            cases.Lesion(
                "T1", cases.T, "liver", cells={"BL": cases.c(50, 30), "TP1": cases.c(30, 20), "TP2": cases.c(30, 20)}
            ),
        ),
    )
    a = recist(case)
    assert categories(a) == ["PR", "PR"]
    assert a.best_response.category == "PR"
    assert a.best_response_confirmed.category == "SD"
    later = cases.Case("confirm-28", case.c1d1, {**case.scans, "TP2": dt.date(2024, 4, 1)}, case.lesions)
    assert recist(later).best_response_confirmed.category == "PR"


def test_non_target_only_disease_uses_table_2():
    # No targets: Table 2 — persisting non-target disease is NON-CR/NON-PD (never "SD"); all absent → CR.
    case = cases.Case(
        "nt-only",
        dt.date(2024, 1, 8),
        {"BL": dt.date(2024, 1, 2), "TP1": dt.date(2024, 3, 4), "TP2": dt.date(2024, 5, 6)},
        (
            cases.Lesion(
                "NT1", cases.NT, "bone", cells={"BL": cases.NT_PRESENT, "TP1": cases.NT_PRESENT, "TP2": cases.ABSENT}
            ),
        ),
    )
    assert categories(recist(case)) == ["NON-CR/NON-PD", "CR"]


def test_unequivocal_non_target_progression_and_reappearance_after_cr():
    from rules.facts import NonTargetStatus

    unequivocal = cases.Cell(nontarget_status=NonTargetStatus.UNEQUIVOCAL_PROGRESSION)
    case = cases.Case(
        "nt-pd",
        dt.date(2024, 1, 8),
        {"BL": dt.date(2024, 1, 2), "TP1": dt.date(2024, 3, 4)},
        (
            cases.Lesion("T1", cases.T, "liver", cells={"BL": cases.c(40, 30), "TP1": cases.c(20, 15)}),
            cases.Lesion("NT1", cases.NT, "bone", cells={"BL": cases.NT_PRESENT, "TP1": unequivocal}),
        ),
    )
    tp = recist(case).timepoints[0]
    assert (tp.target_response, tp.nontarget_response, tp.category) == ("PR", "PD", "PD")
    # CR, then a target back at 3 mm: after a complete response any reappearance is PD (WG FAQ).
    back = cases.Case(
        "reappear",
        dt.date(2024, 1, 8),
        {"BL": dt.date(2024, 1, 2), "TP1": dt.date(2024, 3, 4), "TP2": dt.date(2024, 5, 6)},
        (
            cases.Lesion(
                "T1", cases.T, "liver", cells={"BL": cases.c(40, 30), "TP1": cases.ABSENT, "TP2": cases.c(3, 3)}
            ),
        ),
    )
    assert categories(recist(back)) == ["CR", "PD"]


def test_equivocal_new_lesion_is_followed_then_dated_back():
    # TP1: an equivocal new lesion → not PD yet; TP2: unequivocal → PD dated to TP1 (RECIST 1.1 §4.3.2).
    case = cases.Case(
        "equivocal",
        dt.date(2024, 1, 8),
        {"BL": dt.date(2024, 1, 2), "TP1": dt.date(2024, 3, 4), "TP2": dt.date(2024, 5, 6)},
        (
            cases.Lesion(
                "T1", cases.T, "liver", cells={"BL": cases.c(40, 30), "TP1": cases.c(38, 30), "TP2": cases.c(38, 30)}
            ),
            cases.Lesion("N1", cases.NEW, "lung", cells={"TP1": cases.c(6, 5, equivocal=True), "TP2": cases.c(8, 6)}),
        ),
    )
    a = recist(case)
    assert categories(a) == ["SD", "PD"]
    assert a.timepoints[0].new_lesions == "equivocal"
    assert a.progression_date == dt.date(2024, 3, 4)
