"""imRECIST (Hodi 2018), size spec §5 — provisional: worked tests built from the rules, arithmetic in comments.

Sum = targets (LD; nodes SA) + new measurable lesions (RECIST 1.1 size); new lesions never define PD by
themselves; non-targets only for CR; PD ≥ 20 % over the nadir (and ≥ 5 mm, flag ``imrecist.abs_min_mm`` [U]),
negated by a later non-PD ≥ 4 weeks on (§3.4 logic); RECIST 1.1 category names.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest

from rules.criteria import imrecist
from rules.engine import get_engine
from rules.evaluate import evaluate_patient
from rules.facts import NonTargetStatus
from tests.rules import cases
from tests.rules.ir_cases import ABSENT, NEW, NT, Cell, Lesion, T, c, case, categories, labels, run

D = dt.date.fromisoformat


def assess(case_, overrides=None):
    return run(imrecist, case_, overrides)


# Initial PD from a new measurable lesion, negated 4 weeks later by shrinkage (pseudoprogression).
PSEUDO = case(
    "im-pseudo",
    [56, 112, 140, 168],
    Lesion(
        "T1 lung",
        T,
        "lung",
        cells={"BL": c(40, 30), "TP1": c(30, 22), "TP2": c(30, 22), "TP3": c(20, 15), "TP4": c(18, 12)},
    ),
    Lesion(
        "T2 liver",
        T,
        "liver",
        cells={"BL": c(30, 20), "TP1": c(20, 15), "TP2": c(20, 15), "TP3": c(14, 10), "TP4": c(12, 9)},
    ),
    Lesion("N1 liver", NEW, "liver", cells={"TP2": c(12, 10), "TP3": c(8, 6), "TP4": ABSENT}),
)


def test_provisional_and_recist_category_names():
    a = assess(cases.E1)
    assert a.provisional is True and a.criterion == "imRECIST"
    # E1 sums as irRECIST: 90 → 63 (exactly −30 %) → 58 → 61 → PR, PR, PR.
    assert categories(a) == ["PR", "PR", "PR"]


def test_initial_pd_negated_by_later_non_pd_and_bor_after_it():
    a = assess(PSEUDO)
    # BL 40 + 30 = 70. TP1 30 + 20 = 50: −28.57 % (50 > 49 = 0.7 × 70) → SD; nadir 50.
    # TP2 30 + 20 + N1 12 (new, LD ≥ 10: added) = 62 ≥ 60 = 1.2 × 50 and +12 mm → PD, unconfirmed.
    # TP3 (28 days later) 20 + 14 + N1 8 (counted since TP2) = 42 < 60 against the same nadir → PD negated;
    #     42 ≤ 49 → PR (−40 %).
    # TP4 18 + 12 + 0 = 30 → PR (−57.14 %).
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(50), Decimal(62), Decimal(42), Decimal(30)]
    assert labels(a, "PD") == ["SD", "PD-u", "PR", "PR"]
    assert a.timepoints[1].percent_from_nadir == Fraction(62 - 50, 50) * 100
    assert any("negates" in line for line in a.timepoints[2].trace)
    assert a.progression_date is None
    # BOR may be assessed after an initial PD: PR (TP3), and confirmed by TP4 28 days later.
    assert a.best_response.category == "PR" and a.best_response.scan_date == D("2024-05-27")
    assert a.best_response_confirmed.category == "PR" and a.best_response_confirmed.confirmed
    # RECIST 1.1 calls TP2 PD (new lesion) and stops there.
    assert [tp.category for tp in evaluate_patient(PSEUDO.facts()).criterion("RECIST-1.1").timepoints] == ["SD", "PD"]


def test_pd_confirmed_by_a_repeat_4_weeks_later():
    # E5: 45 → 57 (+26.67 %, +12 mm) PD-u → 64 (28 days later, vs the same nadir 45) PD-c (→ 2024-05-06) → 70.
    a = assess(cases.E5)
    assert labels(a, "PD") == ["SD", "PD-u", "PD-c", "PD-c"]
    assert a.progression_date == D("2024-05-06") and a.best_response.category == "SD"


def test_new_non_measurable_lesions_never_define_pd():
    # E7: N1 6 mm (< 10) ignored for PD: 80 → 52 → 40 → 33 → PR, PR, PR (RECIST 1.1: PD at TP1).
    assert categories(assess(cases.E7)) == ["PR", "PR", "PR"]
    # E13: N1 8 mm: 53 → 46 → 46 → 46 → SD throughout (its INCLA grade does not matter).
    assert categories(assess(cases.E13)) == ["SD", "SD", "SD"]


def test_nontarget_progression_does_not_define_pd():
    nt = Lesion(
        "NT bone",
        NT,
        "bone",
        cells={
            "BL": cases.NT_PRESENT,
            "TP1": cases.NT_PRESENT,
            "TP2": Cell(nontarget_status=NonTargetStatus.UNEQUIVOCAL_PROGRESSION),
            "TP3": cases.NT_PRESENT,
        },
    )
    a = assess(cases.Case("E1-nt", cases.E1.c1d1, cases.E1.scans, cases.E1.lesions[:3] + (nt,)))
    assert categories(a) == ["PR", "PR", "PR"]
    assert a.timepoints[1].nontarget_response == "PD"


def test_5_mm_rule_is_a_flag():
    # E3: nadir 20 → 24 is exactly +20 % but +4 mm: SD with imrecist.abs_min_mm = 5 (default), PD-u with 0.
    assert labels(assess(cases.E3), "PD") == ["SD", "PD-u", "PD-c"]
    assert labels(assess(cases.E3, {"imrecist.abs_min_mm": 0}), "PD")[0] == "PD-u"


def test_complete_response_needs_new_lesions_gone():
    # T1 20 → absent; new N1 6 mm (non-measurable) present → targets gone but CR precluded → PR.
    a = assess(
        case(
            "im-cr",
            [56, 84],
            Lesion("T1", T, "lung", cells={"BL": c(20, 15), "TP1": ABSENT, "TP2": ABSENT}),
            Lesion("N1", NEW, "liver", cells={"TP1": c(6, 4), "TP2": ABSENT}),
        )
    )
    # TP1 sum 0 → burden CR, but N1 present → PR; TP2 N1 gone → CR.
    assert categories(a) == ["PR", "CR"]
    assert a.timepoints[0].target_response == "CR"


@pytest.mark.parametrize(
    "burden, nadir, overrides, expected",
    [
        # conditions.burden_meets_progression in imrecist.yaml: B ≥ 1.2 × N AND B − N ≥ 5 mm (imrecist.abs_min_mm) AND B > 0.
        # Nadir 25: 1.2 × 25 = 30 → B 30 is +20 % exactly and +5 mm exactly → both inclusive → progression.
        ("30", "25", None, True),
        ("29.9", "25", None, False),  # +19.6 %, +4.9 mm
        # Nadir 20: 24 = 1.2 × 20 (+20 % exactly) but +4 mm < 5 → not; with the floor off (null, or 0: +4 ≥ 0) → yes.
        ("24", "20", None, False),
        ("24", "20", {"imrecist.abs_min_mm": None}, True),
        ("24", "20", {"imrecist.abs_min_mm": 0}, True),
        # Nadir 50: B 59.9 is +9.9 mm but 59.9 < 60 = 1.2 × 50 (+19.8 %) → not, floor or no floor.
        ("59.9", "50", {"imrecist.abs_min_mm": None}, False),
        # Zero nadir (spec §3.2 [D]): B 5 is +5 mm and > 0 → progression; 4.9 fails the floor; with the floor off
        # any B > 0 is progression and B 0 is not.
        ("5", "0", None, True),
        ("4.9", "0", None, False),
        ("0.1", "0", {"imrecist.abs_min_mm": None}, True),
        ("0", "0", {"imrecist.abs_min_mm": None}, False),
    ],
)
def test_burden_progression_conjunction_20_percent_and_5_mm(burden, nadir, overrides, expected):
    ruleset = get_engine().rulebase[imrecist.CRITERION]
    flags = ruleset.flag_values(overrides)
    assert ruleset.holds("burden_meets_progression", flags, burden=Decimal(burden), nadir=Decimal(nadir)) is expected
