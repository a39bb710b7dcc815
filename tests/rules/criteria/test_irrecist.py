"""irRECIST (Nishino 2013/2014, Bohnsack 2014) from the worked examples of size spec §11 (irRECIST columns)
and the boundaries of §4.

TMTB = target SoD (LD; nodes SA) + new measurable lesions (LD ≥ 10 mm, node SA ≥ 15 mm; ≤ 5 in total, ≤ 2 per
organ); irPR ≤ 70 % of baseline; irPD ≥ 120 % of the nadir and ≥ +5 mm, confirmed ≥ 28 days later (§3.4).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest

from rules.criteria import irrecist
from rules.engine import get_engine
from rules.facts import NonTargetStatus
from tests.rules import cases
from tests.rules.ir_cases import ABSENT, NEW, NT, Cell, Lesion, T, c, case, categories, labels, run

D = dt.date.fromisoformat


def assess(case_, overrides=None):
    return run(irrecist, case_, overrides)


# --- worked examples (spec §11, irRECIST column) ---------------------------------------------------------


def test_e1_irpr_at_exactly_minus_30_percent():
    a = assess(cases.E1)
    # TMTB BL 40 + 30 + 20 = 90; TP1 28 + 21 + 14 = 63: 63 × 10 = 630 ≤ 90 × 7 = 630 → irPR (−30.00 %).
    # TP2 26 + 20 + 12 = 58 → irPR; TP3 27 + 21 + 13 = 61: +3 mm from nadir 58 (not irPD), 61 ≤ 63 → irPR.
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(63), Decimal(58), Decimal(61)]
    assert a.timepoints[0].percent_from_baseline == Fraction(-30)
    assert categories(a) == ["irPR", "irPR", "irPR"]
    assert a.timepoints[2].absolute_from_nadir == Decimal(3)
    # BOR irPR (confirmed too: TP1 → TP2, 56 days).
    assert a.best_response.category == "irPR" and a.best_response_confirmed.category == "irPR"


def test_e3_plus_20_percent_needs_5_mm_then_confirmed():
    a = assess(cases.E3)
    # TP1 24 ≥ 1.2 × 20 = 24 (exactly +20 %) but 24 − 20 = 4 < 5 → irSD.
    # TP2 25: +25 %, +5 mm → irPD-u (2024-06-24). TP3 31 ≥ 24 and +11 mm, 28 days later → irPD-c (→ 2024-06-24).
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(24), Decimal(25), Decimal(31)]
    assert labels(a) == ["irSD", "irPD-u", "irPD-c"]
    assert a.timepoints[0].percent_from_nadir == Fraction(20) and a.timepoints[0].absolute_from_nadir == Decimal(4)
    assert a.progression_date == D("2024-06-24") and a.timepoints[2].progression_date == D("2024-06-24")
    # BOR irSD (TP1 on day 56).
    assert a.best_response.category == "irSD"


def test_e3_absolute_minimum_is_a_flag():
    # irrecist.abs_min_mm = 0: 24 ≥ 24 is irPD-u at TP1; TP2 (56 days later) 25 ≥ 24 confirms it (→ 2024-04-29).
    a = assess(cases.E3, {"irrecist.abs_min_mm": 0})
    assert labels(a) == ["irPD-u", "irPD-c", "irPD-c"]
    assert a.progression_date == D("2024-04-29")


def test_e5_new_measurable_lesion_in_tmtb():
    a = assess(cases.E5)
    # TMTB 48 → 45 → 45 + N1 12 = 57 → 46 + 18 = 64 → 48 + 22 = 70.
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(45), Decimal(57), Decimal(64), Decimal(70)]
    # TP2: 57 vs nadir 45 → +26.67 %, +12 mm → irPD-u; TP3 (28 days later) 64 (+42.22 %) → irPD-c (→ 2024-05-06).
    assert labels(a) == ["irSD", "irPD-u", "irPD-c", "irPD-c"]
    assert a.timepoints[1].percent_from_nadir == Fraction(57 - 45, 45) * 100
    assert a.progression_date == D("2024-05-06")
    assert a.best_response.category == "irSD"


def test_e7_new_non_measurable_lesion_precludes_ircr():
    a = assess(cases.E7)
    # TMTB 80 → 52 (−35 %) → 40 → 33; N1 6 mm < 10 → not in TMTB, precludes irCR.
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(52), Decimal(40), Decimal(33)]
    assert categories(a) == ["irPR", "irPR", "irPR"]
    assert a.timepoints[0].extra["new_lesions_outside_burden"] == ("N1 lung",)
    assert a.best_response.category == "irPR" and a.best_response_confirmed.category == "irPR"


def test_e9_ne_then_irpd_unconfirmed_at_exact_boundary():
    a = assess(cases.E9)
    # 75 → 60 (−20 %) irSD → NE (partial 41 < 72) → 72: 72 × 5 = 360 ≥ 60 × 6 = 360 and +12 mm → irPD-u.
    assert labels(a) == ["irSD", "NE", "irPD-u"]
    assert a.timepoints[2].nadir_sum == Decimal(60) and a.timepoints[2].percent_from_nadir == Fraction(20)
    assert a.best_response.category == "irSD" and a.progression_date is None


def test_e9b_partial_tmtb_irpd():
    # Partial TMTB 40 + 34 = 74 ≥ 72 and +14 mm → irPD-u; with recist.ne_partial_pd off → NE.
    assert labels(assess(cases.E9B)) == ["irSD", "irPD-u"]
    assert categories(assess(cases.E9B, {"recist.ne_partial_pd": False})) == ["irSD", "NE"]


def test_e11_tstm_5_mm_and_ircr():
    a = assess(cases.E11)
    # TMTB 27 → TSTM 5 + 3 = 8 (−70.37 %) → irPR → 0 → 0 → irCR, irCR.
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(8), Decimal(0), Decimal(0)]
    assert categories(a) == ["irPR", "irCR", "irCR"]
    assert a.best_response.category == "irCR" and a.best_response_confirmed.category == "irCR"


def test_e13_small_new_lesion_invisible_to_irrecist():
    a = assess(cases.E13)
    # TMTB 53 → 46 (−13.21 %) → 46 → 46: N1 8 mm < 10 is not measurable (not in TMTB; precludes irCR).
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(46)] * 3
    assert categories(a) == ["irSD", "irSD", "irSD"]
    assert a.timepoints[1].extra["new_lesions_outside_burden"] == ("N1 lung",)
    assert a.best_response.category == "irSD"


def test_e15_no_sticky_pr_in_irrecist():
    a = assess(cases.E15)
    # 100 → 70 → 70 → 80: −20 % from baseline (not irPR), +14.29 % / +10 mm from nadir 70 (not irPD) → irSD.
    assert categories(a) == ["irPR", "irPR", "irSD", "irSD", "irSD"]
    assert a.best_response.category == "irPR"


# --- boundaries ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        # baseline 100: irPR at ≤ 70 (inclusive); irPD at ≥ 120 and ≥ +5 mm (inclusive).
        (70, "irPR"),
        (70.1, "irSD"),
        (119.9, "irSD"),
        (120, "irPD"),
    ],
)
def test_boundaries_against_100_mm(value, expected):
    a = assess(case("bound", [56], Lesion("T1", T, "liver", cells={"BL": c(100, 50), "TP1": c(value, 40)})))
    assert categories(a) == [expected]


@pytest.mark.parametrize(
    "ld, expected_sum, expected",
    [
        # T1 50 → 50; new N1 LD 10 ≥ 10 → measurable: TMTB 60 = 1.2 × 50, +10 mm → irPD-u.
        (10, Decimal(60), "irPD"),
        # N1 LD 9.9 < 10 → not measurable: TMTB 50 → irSD (N1 precludes irCR only).
        (9.9, Decimal(50), "irSD"),
    ],
)
def test_new_lesion_10_mm_is_measurable_9_9_is_not(ld, expected_sum, expected):
    a = assess(
        case(
            "new-10",
            [56],
            Lesion("T1", T, "lung", cells={"BL": c(50, 30), "TP1": c(50, 30)}),
            Lesion("N1", NEW, "liver", cells={"TP1": c(ld, 8)}),
        )
    )
    assert a.timepoints[0].sum_mm == expected_sum and categories(a) == [expected]


@pytest.mark.parametrize("short_axis, expected_sum", [(15, Decimal(65)), (14.9, Decimal(50))])
def test_new_node_needs_15_mm_short_axis(short_axis, expected_sum):
    # A new node counts by its short axis when ≥ 15 mm: 50 + 15 = 65; 14.9 is not measurable.
    a = assess(
        case(
            "new-node",
            [56],
            Lesion("T1", T, "lung", cells={"BL": c(50, 30), "TP1": c(50, 30)}),
            Lesion("N1 node", NEW, "lymph node", nodal=True, cells={"TP1": c(20, short_axis)}),
        )
    )
    assert a.timepoints[0].sum_mm == expected_sum


def test_new_lesion_cap_2_per_organ_is_a_flag():
    # Three new 10 mm liver lesions: 2 per organ counted → 50 + 20 = 70 (+40 %); the third is outside the TMTB.
    news = [Lesion(f"N{i}", NEW, "liver", cells={"TP1": c(10, 8)}) for i in (1, 2, 3)]
    three = case("cap", [56], Lesion("T1", T, "lung", cells={"BL": c(50, 30), "TP1": c(50, 30)}), *news)
    tp = assess(three).timepoints[0]
    assert tp.sum_mm == Decimal(70) and tp.extra["new_lesions_outside_burden"] == ("N3",)
    assert assess(three, {"irrecist.new_lesion_cap": {"total": 5, "per_organ": 5}}).timepoints[0].sum_mm == Decimal(80)
    assert assess(three, {"irrecist.new_lesion_cap": None}).timepoints[0].sum_mm == Decimal(80)


def test_new_lesion_cap_5_in_total():
    # Seven new 10 mm lesions, one per organ: only 5 counted → 50 + 50 = 100.
    news = [Lesion(f"N{i}", NEW, f"organ {i}", cells={"TP1": c(10, 8)}) for i in range(7)]
    a = assess(case("cap-total", [56], Lesion("T1", T, "lung", cells={"BL": c(50, 30), "TP1": c(50, 30)}), *news))
    assert a.timepoints[0].sum_mm == Decimal(100)


@pytest.mark.parametrize("days, expected", [(83, ["irPD-u", "irPD-u"]), (84, ["irPD-u", "irPD-c"])])
def test_confirmation_27_versus_28_days(days, expected):
    # T1 50 → TP1 (day 56) 60: +20 %, +10 mm → irPD-u; TP2 62 is irPD again: 27 days later it cannot confirm,
    # 28 days later it does (against the same nadir 50), dated to TP1.
    a = assess(
        case(
            "confirm", [56, days], Lesion("T1", T, "liver", cells={"BL": c(50, 30), "TP1": c(60, 30), "TP2": c(62, 30)})
        )
    )
    assert labels(a) == expected
    assert a.progression_date == (D("2024-03-04") if days == 84 else None)


def test_later_non_progression_negates_irpd():
    # TP1 60 irPD-u; TP2 28 days later 55 < 60 (= 1.2 × 50) → negated, irSD; BOR irSD.
    a = assess(
        case("negate", [56, 84], Lesion("T1", T, "liver", cells={"BL": c(50, 30), "TP1": c(60, 30), "TP2": c(55, 30)}))
    )
    assert labels(a) == ["irPD-u", "irSD"]
    assert a.progression_date is None and a.best_response.category == "irSD"


def test_nontarget_progression_raises_reader_review_only():
    # E1 with the bone non-target unequivocally progressing at TP2: still irPR (policy), with a reader-review warning.
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
    assert categories(a) == ["irPR", "irPR", "irPR"]
    tp2 = a.timepoints[1]
    assert tp2.extra["reader_review"] is True
    assert any("reader review" in w for w in tp2.warnings)
    assert a.timepoints[0].extra["reader_review"] is False


def test_reappearance_after_ircr_graded_on_tmtb_and_flagged():
    # E11 plus TP4: after irCR (nadir 0), T1 reappears at 6 mm: 6 − 0 ≥ 5 → irPD-u; at 4 mm: +4 < 5 → not irPD,
    # 4 ≤ 0.7 × 27 → irPR. Either way the reappearance is flagged for the reader (policy [D], E4).
    for ld, expected in ((6, "irPD"), (4, "irPR")):
        e11 = cases.E11
        reappear = cases.Case(
            "E11-back",
            e11.c1d1,
            e11.scans | {"TP4": D("2024-11-18")},
            (
                Lesion("T1 lung", T, "lung", cells=e11.lesions[0].cells | {"TP4": c(ld, ld)}),
                Lesion("T2 lung", T, "lung", cells=e11.lesions[1].cells | {"TP4": ABSENT}),
            ),
        )
        tp4 = assess(reappear).timepoints[3]
        assert tp4.category == expected
        assert any("reappeared after irCR" in w for w in tp4.warnings)


def test_node_target_below_10_mm_allows_ircr():
    # Nodal target 18 → 9 mm SA, lung target 20 → absent: TMTB 9 > 0 but the nodes are normal → irCR.
    a = assess(
        case(
            "node",
            [56],
            Lesion("T1 node", T, "lymph node", nodal=True, cells={"BL": c(25, 18), "TP1": c(12, 9)}),
            Lesion("T2 lung", T, "lung", cells={"BL": c(20, 15), "TP1": ABSENT}),
        )
    )
    assert a.timepoints[0].sum_mm == Decimal(9) and categories(a) == ["irCR"]


@pytest.mark.parametrize(
    "burden, nadir, overrides, expected",
    [
        # conditions.burden_meets_progression in irrecist.yaml: B ≥ 1.2 × N AND B − N ≥ 5 mm (irrecist.abs_min_mm) AND B > 0.
        # Nadir 25: 1.2 × 25 = 30 → B 30 is +20 % exactly and +5 mm exactly → both inclusive → progression.
        ("30", "25", None, True),
        ("29.9", "25", None, False),  # +19.6 %, +4.9 mm
        # Nadir 20: 24 = 1.2 × 20 (+20 % exactly) but +4 mm < 5 → not; with the floor off (null, or 0: +4 ≥ 0) → yes.
        ("24", "20", None, False),
        ("24", "20", {"irrecist.abs_min_mm": None}, True),
        ("24", "20", {"irrecist.abs_min_mm": 0}, True),
        # Nadir 50: B 59.9 is +9.9 mm but 59.9 < 60 = 1.2 × 50 (+19.8 %) → not, floor or no floor.
        ("59.9", "50", {"irrecist.abs_min_mm": None}, False),
        # Zero nadir (spec §3.2 [D]): B 5 is +5 mm and > 0 → progression; 4.9 fails the floor; with the floor off
        # any B > 0 is progression and B 0 is not.
        ("5", "0", None, True),
        ("4.9", "0", None, False),
        ("0.1", "0", {"irrecist.abs_min_mm": None}, True),
        ("0", "0", {"irrecist.abs_min_mm": None}, False),
    ],
)
def test_burden_progression_conjunction_20_percent_and_5_mm(burden, nadir, overrides, expected):
    ruleset = get_engine().rulebase[irrecist.CRITERION]
    flags = ruleset.flag_values(overrides)
    assert ruleset.holds("burden_meets_progression", flags, burden=Decimal(burden), nadir=Decimal(nadir)) is expected
