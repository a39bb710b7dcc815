"""irRC (Wolchok 2009) from the worked examples of size spec §11 (irRC columns) and the boundaries of §3.

Products are LD × perpendicular (nodes LD × SA); TB = SPD of index lesions + new measurable lesions (≥ 5 × 5 mm);
irPR ≤ 50 % of baseline; irPD ≥ 125 % of the nadir, confirmed ≥ 28 days later against the same nadir (§3.4).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest

from rules.criteria import irrc
from rules.engine import get_engine
from rules.facts import LesionStatus, NonTargetStatus
from tests.rules import cases
from tests.rules.ir_cases import ABSENT, NEW, NT, Cell, Lesion, T, c, case, categories, labels, run

D = dt.date.fromisoformat


def assess(case_, overrides=None):
    return run(irrc, case_, overrides)


# --- worked examples (spec §11, irRC column) -------------------------------------------------------------


def test_e1_irpr_needs_minus_50_percent_and_a_repeat():
    a = assess(cases.E1)
    tp1, tp2, tp3 = a.timepoints
    # SPD BL 40×30 + 30×25 + 25×20 = 1200 + 750 + 500 = 2450.
    assert tp1.baseline_sum == Decimal(2450) and tp1.sum_unit == "mm2"
    # TP1 28×21 + 21×18 + 20×14 = 588 + 378 + 280 = 1246 > 1225 = 50 % of 2450 → irSD (−49.14 %).
    assert tp1.sum_mm == Decimal(1246) and tp1.category == "irSD"
    # TP2 26×20 + 20×16 + 18×12 = 520 + 320 + 216 = 1056 ≤ 1225 → irPR (−56.90 %).
    assert tp2.sum_mm == Decimal(1056) and tp2.category == "irPR"
    # TP3 27×20 + 21×17 + 19×13 = 540 + 357 + 247 = 1144: +8.33 % from nadir 1056 (< 25 %), ≤ 1225 → irPR.
    assert tp3.sum_mm == Decimal(1144) and tp3.nadir_sum == Decimal(1056) and tp3.category == "irPR"
    assert tp3.percent_from_nadir == Fraction(1144 - 1056, 1056) * 100
    # BOR irPR: first at TP2 (2024-05-06), confirmed by TP3 56 days later (≥ 28).
    assert a.best_response.category == "irPR" and a.best_response.scan_date == D("2024-05-06")
    assert a.best_response.confirmed and a.best_response_confirmed == a.best_response
    assert a.progression_date is None


def test_e3_no_absolute_floor_irpd_unconfirmed_then_confirmed():
    a = assess(cases.E3)
    # SPD 10×10 + 10×10 = 200 → 12×11 + 12×11 = 264 → 13×12 + 12×11 = 288 → 16×14 + 15×13 = 419.
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(264), Decimal(288), Decimal(419)]
    # TP1: 264 ≥ 1.25 × 200 = 250 → irPD-u at TP1 (+32 %), although the diameters rose only 4 mm.
    # TP2 (56 days later): 288 ≥ 250 against the same nadir 200 → irPD-c, dated 2024-04-29. TP3: irPD (final).
    assert labels(a) == ["irPD-u", "irPD-c", "irPD-c"]
    assert a.timepoints[0].progression_date is None
    assert a.timepoints[1].progression_date == D("2024-04-29")
    assert a.progression_date == D("2024-04-29")
    # BOR irPD (no irSD before it), progression 2024-04-29.
    assert a.best_response.category == "irPD" and a.best_response.scan_date == D("2024-04-29")


def test_e5_new_measurable_lesion_product_added_to_the_burden():
    a = assess(cases.E5)
    # SPD BL 30×24 + 24×18 = 720 + 432 = 1152; TP1 28×22 + 22×17 = 616 + 374 = 990 (−14.06 %) → irSD.
    # TP2 990 + N1 12×10 = 120 → 1110 < 1.25 × 990 = 1237.5 → irSD (+12.12 %), not irPD.
    # TP3 29×22 + 374 + 18×15 = 638 + 374 + 270 = 1282 ≥ 1237.5 → irPD-u (+29.49 %).
    # TP4 30×23 + 23×18 + 22×18 = 690 + 414 + 396 = 1500 ≥ 1237.5, 28 days later → irPD-c (→ 2024-06-03).
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(990), Decimal(1110), Decimal(1282), Decimal(1500)]
    assert labels(a) == ["irSD", "irSD", "irPD-u", "irPD-c"]
    assert a.timepoints[1].extra["new_lesions_in_burden"] == ("N1 liver",)
    assert a.timepoints[3].progression_date == D("2024-06-03")
    assert a.progression_date == D("2024-06-03")
    # BOR irSD (TP1 on day 56 ≥ 42).
    assert a.best_response.category == "irSD"


def test_e7_new_non_measurable_lesion_precludes_ircr_only():
    a = assess(cases.E7)
    # SPD BL 30×25 + 30×26 + 28×20 = 750 + 780 + 560 = 2090; TP1 270 + 320 + 280 = 870 ≤ 1045 → irPR;
    # N1 6×4: 4 < 5 → not measurable, not in TB (precludes irCR). TP2 168 + 180 + 176 = 524; TP3 120 + 120 + 117 = 357.
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(870), Decimal(524), Decimal(357)]
    assert categories(a) == ["irPR", "irPR", "irPR"]
    assert a.timepoints[0].extra["new_lesions_outside_burden"] == ("N1 lung",)
    assert a.timepoints[0].new_lesions == "present"
    # BOR irPR: TP1 confirmed by TP2 (56 days).
    assert a.best_response.category == "irPR" and a.best_response.scan_date == D("2024-07-01")


def test_e9_not_evaluable_timepoint_keeps_the_nadir():
    a = assess(cases.E9)
    # SPD BL 30×22 + 20×16 + 25×20 = 660 + 320 + 500 = 1480; TP1 24×18 + 16×12 + 20×16 = 432 + 192 + 320 = 944.
    # TP2: T3 not imaged; partial 25×18 + 16×12 = 450 + 192 = 642 < 1.25 × 944 = 1180 → NE.
    # TP3: nadir still 944; 660 + 320 + 22×18 = 1376 ≥ 1180 → irPD-u (+45.76 %).
    assert labels(a) == ["irSD", "NE", "irPD-u"]
    assert a.timepoints[1].sum_mm == Decimal(642) and a.timepoints[1].percent_from_nadir is None
    assert a.timepoints[2].nadir_sum == Decimal(944) and a.timepoints[2].sum_mm == Decimal(1376)
    assert a.best_response.category == "irSD" and a.progression_date is None
    assert any("unconfirmed" in w for w in a.warnings)


def test_e9b_partial_burden_already_irpd():
    # TP2 partial 40×30 + 34×26 = 1200 + 884 = 2084 ≥ 1180 (+120.76 %) → irPD-u even with T3 missing.
    assert labels(assess(cases.E9B)) == ["irSD", "irPD-u"]
    # The policy is recist.ne_partial_pd (E9b: all four criteria say NE with it off); irrc.ne_partial_pd wins.
    assert categories(assess(cases.E9B, {"recist.ne_partial_pd": False})) == ["irSD", "NE"]
    assert categories(assess(cases.E9B, {"irrc.ne_partial_pd": False})) == ["irSD", "NE"]
    assert categories(assess(cases.E9B, {"recist.ne_partial_pd": False, "irrc.ne_partial_pd": True})) == [
        "irSD",
        "irPD",
    ]


def test_e11_too_small_to_measure_is_25_mm2_and_ircr_is_confirmed():
    a = assess(cases.E11)
    # SPD BL 15×12 + 12×10 = 180 + 120 = 300; TP1 TSTM 5×5 = 25 (policy) + 3×3 = 9 → 34 (−88.67 %) → irPR.
    assert a.timepoints[0].sum_mm == Decimal(34)
    assert a.timepoints[0].percent_from_baseline == Fraction(34 - 300, 300) * 100
    # TP2 and TP3: 0 mm², no non-index lesions, no new lesions → irCR; a zero burden over a zero nadir is not irPD.
    assert categories(a) == ["irPR", "irCR", "irCR"]
    # BOR irCR: TP2 confirmed by TP3 28 days later.
    assert a.best_response.category == "irCR" and a.best_response.scan_date == D("2024-09-23")
    # The TSTM product is a policy flag (irrc.tstm_product_mm2): 16 + 9 = 25.
    assert assess(cases.E11, {"irrc.tstm_product_mm2": 16}).timepoints[0].sum_mm == Decimal(25)


def test_e13_small_new_lesion_counted_by_irrc():
    a = assess(cases.E13)
    # SPD BL 35×30 + 25×18 = 1050 + 450 = 1500; TP1 30×26 + 22×16 = 780 + 352 = 1132 (−24.53 %) → irSD.
    # TP2 N1 8×6 ≥ 5×5 → measurable: 1132 + 48 = 1180 (+4.24 %) → irSD; TP3 1132 + 9×7 = 1195 (+5.57 %) → irSD.
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(1132), Decimal(1180), Decimal(1195)]
    assert categories(a) == ["irSD", "irSD", "irSD"]
    assert a.timepoints[1].extra["new_lesions_in_burden"] == ("N1 lung",)
    assert a.best_response.category == "irSD"


def test_e15_bidimensional_amplification():
    a = assess(cases.E15)
    # SPD BL 60×50 + 40×30 = 3000 + 1200 = 4200; TP1/TP2 42×35 + 28×21 = 1470 + 588 = 2058 ≤ 2100 → irPR (−51 %).
    # TP3 48×40 + 32×24 = 1920 + 768 = 2688 ≥ 1.25 × 2058 = 2572.5 → irPD-u (+30.61 %): (80/70)² = 1.306.
    # TP4 2688, 56 days later → irPD-c (→ 2024-06-24); TP5 irPD.
    assert labels(a) == ["irPR", "irPR", "irPD-u", "irPD-c", "irPD-c"]
    assert a.timepoints[2].sum_mm == Decimal(2688) and a.timepoints[2].nadir_sum == Decimal(2058)
    assert a.progression_date == D("2024-06-24")
    # BOR irPR: TP1 confirmed by TP2 (56 days).
    assert a.best_response.category == "irPR" and a.best_response.scan_date == D("2024-03-04")


# --- boundaries ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ld, expected",
    [
        # BL 20×10 = 200; 50 % of 200 = 100: 10×10 = 100 → irPR (inclusive); 10.1×10 = 101 → irSD.
        (10, "irPR"),
        (10.1, "irSD"),
        # nadir 200; 125 % of 200 = 250: 25×10 = 250 → irPD (inclusive); 24.9×10 = 249 → irSD.
        (25, "irPD"),
        (24.9, "irSD"),
    ],
)
def test_minus_50_and_plus_25_percent_are_inclusive(ld, expected):
    a = assess(case("bound", [56], Lesion("T1", T, "liver", cells={"BL": c(20, 10), "TP1": c(ld, 10)})))
    assert categories(a) == [expected]


@pytest.mark.parametrize("perpendicular, in_burden", [(5, True), (4.9, False)])
def test_new_lesion_5x5_is_measurable_5x4_9_is_not(perpendicular, in_burden):
    # T1 20×20 = 400 throughout; N1 5×5 = 25 joins the TB (425, +6.25 %); 5×4.9 does not (400).
    a = assess(
        case(
            "new-5x5",
            [56],
            Lesion("T1", T, "lung", cells={"BL": c(20, 20), "TP1": c(20, 20)}),
            Lesion("N1", NEW, "liver", cells={"TP1": c(5, perpendicular)}),
        )
    )
    tp = a.timepoints[0]
    assert tp.sum_mm == (Decimal(425) if in_burden else Decimal(400))
    assert (tp.extra["new_lesions_in_burden"] == ("N1",)) is in_burden
    assert tp.category == "irSD"


def test_new_non_measurable_lesion_turns_ircr_into_irpr():
    # T1 20×20 → absent (TB ↓ 100 %). N1 5×4.9 is not measurable: precludes irCR → irPR (Table 1).
    # N1 5×5 is measurable: TB 25 ≤ 200 → irPR on the burden.
    for perpendicular, burden_category in ((4.9, "irCR"), (5, "irPR")):
        a = assess(
            case(
                "ircr",
                [56],
                Lesion("T1", T, "lung", cells={"BL": c(20, 20), "TP1": ABSENT}),
                Lesion("N1", NEW, "liver", cells={"TP1": c(5, perpendicular)}),
            )
        )
        assert a.timepoints[0].category == "irPR"
        assert a.timepoints[0].target_response == burden_category


def test_new_measurable_lesion_flag():
    # irrc.new_measurable_min_mm = 6: a 5×5 new lesion is no longer measurable.
    a = assess(
        case(
            "new-flag",
            [56],
            Lesion("T1", T, "lung", cells={"BL": c(20, 20), "TP1": c(20, 20)}),
            Lesion("N1", NEW, "liver", cells={"TP1": c(5, 5)}),
        ),
        {"irrc.new_measurable_min_mm": 6},
    )
    assert a.timepoints[0].sum_mm == Decimal(400)


def bl_250_case(*cells_and_days):
    """T1 liver 20×10 = 200 at baseline, then (day, cell) pairs."""
    days = [d for d, _ in cells_and_days]
    cells = {"BL": c(20, 10)} | {f"TP{i}": cell for i, (_, cell) in enumerate(cells_and_days, start=1)}
    return case("confirm", days, Lesion("T1", T, "liver", cells=cells))


def test_confirmation_at_27_days_neither_confirms_nor_negates():
    # TP1 (day 56) 25×10 = 250 ≥ 250 → irPD-u. TP2 27 days later 26×10 = 260: still irPD but unconfirmed.
    a = assess(bl_250_case((56, c(25, 10)), (83, c(26, 10))))
    assert labels(a) == ["irPD-u", "irPD-u"]
    assert a.progression_date is None and a.timepoints[1].progression_date is None


def test_confirmation_at_28_days_confirms_against_the_same_nadir():
    # TP2 28 days after TP1: 260 ≥ 1.25 × 200 → irPD-c, dated to TP1 (2024-03-04).
    a = assess(bl_250_case((56, c(25, 10)), (84, c(26, 10))))
    assert labels(a) == ["irPD-u", "irPD-c"]
    assert a.progression_date == D("2024-03-04") and a.timepoints[1].progression_date == D("2024-03-04")
    assert a.best_response.category == "irPD"


def test_non_progression_28_days_later_negates():
    # TP2 28 days later 22×10 = 220 < 250 → the irPD of TP1 is negated; TP2 is irSD (day 84 ≥ 42 → BOR irSD).
    a = assess(bl_250_case((56, c(25, 10)), (84, c(22, 10))))
    assert labels(a) == ["irPD-u", "irSD"]
    assert a.progression_date is None
    assert a.best_response.category == "irSD" and a.best_response.scan_date == D("2024-04-01")
    assert any("negates" in line for line in a.timepoints[1].trace)


def test_non_progression_27_days_later_does_not_negate():
    # TP2 27 days after TP1: 220 → irSD, the candidate stays open; TP3 28 days after TP1: 260 → confirms TP1.
    a = assess(bl_250_case((56, c(25, 10)), (83, c(22, 10)), (84, c(26, 10))))
    assert labels(a) == ["irPD-u", "irSD", "irPD-c"]
    assert a.progression_date == D("2024-03-04")


def test_not_evaluable_timepoint_neither_confirms_nor_negates():
    a = assess(bl_250_case((56, c(25, 10)), (84, Cell(None, None, LesionStatus.NOT_ASSESSED)), (112, c(26, 10))))
    assert labels(a) == ["irPD-u", "NE", "irPD-c"]
    assert a.progression_date == D("2024-03-04")


def test_confirmed_irpd_is_final():
    # After irPD-c, a burden of 10×10 = 100 (≤ 50 % of 200) stays irPD; the burden's own verdict is kept in extra.
    a = assess(bl_250_case((56, c(25, 10)), (84, c(26, 10)), (112, c(10, 10))))
    assert labels(a) == ["irPD-u", "irPD-c", "irPD-c"]
    assert a.timepoints[2].extra["raw_category"] == "irPR"


def test_irpd_is_tested_before_irpr():
    # BL 40×25 = 1000; TP1 10×10 = 100 → irPR; TP2 13×10 = 130 ≥ 1.25 × 100 = 125 and ≤ 500 (−87 %) → irPD.
    a = assess(
        case(
            "pd-first", [56, 112], Lesion("T1", T, "liver", cells={"BL": c(40, 25), "TP1": c(10, 10), "TP2": c(13, 10)})
        )
    )
    assert labels(a) == ["irPR", "irPD-u"]


def test_zero_nadir_any_reappearance_is_irpd():
    # E11 plus TP4: after irCR (nadir 0), T1 back at 4×4 = 16 mm² > 0 → irPD-u (spec §3.2 zero-nadir rule).
    e11 = cases.E11
    reappear = cases.Case(
        "E11-reappear",
        e11.c1d1,
        e11.scans | {"TP4": D("2024-11-18")},
        (
            Lesion("T1 lung", T, "lung", cells=e11.lesions[0].cells | {"TP4": c(4, 4)}),
            Lesion("T2 lung", T, "lung", cells=e11.lesions[1].cells | {"TP4": ABSENT}),
        ),
    )
    a = assess(reappear)
    assert labels(a) == ["irPR", "irCR", "irCR", "irPD-u"]
    assert a.timepoints[3].nadir_sum == 0
    assert any("reappeared" in w for w in a.timepoints[3].warnings)


@pytest.mark.parametrize(
    "short_axis, normalised, expected",
    [
        # T1 lung 20×20 = 400 → absent; T2 node 25×18 = 450 → 12×SA. Baseline SPD 850.
        (9, False, "irPR"),  # default: a residual node (12×9 = 108 mm²) prevents irCR (E4); 108 ≤ 425 → irPR
        (9, True, "irCR"),  # irrc.node_normalisation: SA 9 < 10 is normal → irCR
        (10, True, "irPR"),  # SA 10 is not < 10
    ],
)
def test_node_normalisation_flag(short_axis, normalised, expected):
    a = assess(
        case(
            "node",
            [56],
            Lesion("T1", T, "lung", cells={"BL": c(20, 20), "TP1": ABSENT}),
            Lesion("T2 node", T, "lymph node", nodal=True, cells={"BL": c(25, 18), "TP1": c(12, short_axis)}),
        ),
        {"irrc.node_normalisation": normalised},
    )
    assert categories(a) == [expected]


def test_baseline_index_lesion_minimum_is_a_conformance_warning():
    # 12×9 is below the 10 × 10 policy (irrc.baseline_min_mm) in one diameter; 10×10 (E3) conforms.
    small = case("small-bl", [56], Lesion("T1", T, "lung", cells={"BL": c(12, 9), "TP1": c(12, 9)}))
    assert any("below the irRC baseline minimum" in w for w in assess(small).warnings)
    assert not any("baseline minimum" in w for w in assess(small, {"irrc.baseline_min_mm": 5}).warnings)
    assert not any("baseline minimum" in w for w in assess(cases.E3).warnings)


def test_new_lesion_cap_5_per_organ():
    # T1 20×20 = 400; six new 10×10 liver lesions: only 5 are counted (5 per organ) → 400 + 500 = 900 ≥ 500 → irPD-u.
    news = [Lesion(f"N{i}", NEW, "liver", cells={"TP1": c(10, 10)}) for i in range(1, 7)]
    a = assess(case("cap", [56], Lesion("T1", T, "lung", cells={"BL": c(20, 20), "TP1": c(20, 20)}), *news))
    tp = a.timepoints[0]
    assert tp.sum_mm == Decimal(900)
    assert tp.extra["new_lesions_outside_burden"] == ("N6",)


def test_new_lesion_cap_10_visceral():
    # 12 new 10×10 lesions over 3 organs (4 each, under 5 per organ): only 10 visceral are counted → 400 + 1000.
    news = [
        Lesion(f"N{organ}{i}", NEW, organ, cells={"TP1": c(10, 10)})
        for organ in ("liver", "lung", "bone")
        for i in range(4)
    ]
    a = assess(case("cap-visceral", [56], Lesion("T1", T, "lung", cells={"BL": c(20, 20), "TP1": c(20, 20)}), *news))
    assert a.timepoints[0].sum_mm == Decimal(1400)
    assert len(a.timepoints[0].extra["new_lesions_outside_burden"]) == 2


def test_nonindex_progression_does_not_define_irpd():
    # E1 with the bone non-index lesion unequivocally progressing at TP2: irRC Table 2 keeps irPR.
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
    e1 = cases.Case("E1-nt", cases.E1.c1d1, cases.E1.scans, cases.E1.lesions[:3] + (nt,))
    a = assess(e1)
    assert categories(a) == ["irSD", "irPR", "irPR"]
    assert a.timepoints[1].nontarget_response == "PD"


def test_flagged_thresholds_default_to_the_flag_defaults():
    # Every threshold whose value a flag sets takes the flag's default (stored once, in the flag; no silent drift).
    rulebase = get_engine().rulebase
    flagged = {
        "irRC": {"index_lesion_min_diameter", "new_measurable_min_diameter"},
        "irRECIST": {"progression_absolute_increase", "new_lesions_max_total", "new_lesions_max_per_organ"},
        "imRECIST": {"progression_absolute_increase", "new_lesions_max_total", "new_lesions_max_per_organ"},
    }
    for name, expected in flagged.items():
        ruleset = rulebase[name]
        flags = ruleset.flag_values(None)
        assert {t for t, spec in ruleset.thresholds.items() if spec.flag} == expected, name
        for threshold in expected:
            configured = ruleset.configured_threshold(threshold, flags)
            assert configured is not None and configured.value == ruleset.threshold(threshold).value, (
                name,
                threshold,
            )


@pytest.mark.parametrize(
    "burden, nadir, expected",
    [
        # conditions.burden_meets_progression in irrc.yaml: TB ≥ 1.25 × N AND TB > 0 (no absolute minimum).
        # Nadir 200 mm²: 1.25 × 200 = 250 → TB 250 is +25 % exactly (inclusive) → irPD; 249.9 → not.
        ("250", "200", True),
        ("249.9", "200", False),
        # Nadir 4: TB 5 = 1.25 × 4 → irPD though only +1 mm² (no absolute floor in irRC).
        ("5", "4", True),
        # Zero nadir (spec §3.2 [D]): any TB > 0 is irPD (1.25 × 0 = 0 holds for any TB); TB 0 is not.
        ("16", "0", True),
        ("0", "0", False),
    ],
)
def test_burden_progression_conjunction_25_percent_and_zero_nadir(burden, nadir, expected):
    ruleset = get_engine().rulebase[irrc.CRITERION]
    flags = ruleset.flag_values()
    assert ruleset.holds("burden_meets_progression", flags, burden=Decimal(burden), nadir=Decimal(nadir)) is expected


@pytest.mark.parametrize(
    "condition, long_axis, short_axis, overrides, expected",
    [
        # conditions.new_lesion_measurable in irrc.yaml: LD ≥ 5 mm AND perpendicular ≥ 5 mm (irrc.new_measurable_min_mm).
        ("new_lesion_measurable", "5", "5", None, True),  # 5 × 5 exactly (inclusive)
        ("new_lesion_measurable", "5", "4.9", None, False),
        ("new_lesion_measurable", "4.9", "8", None, False),
        ("new_lesion_measurable", "5", "5", {"irrc.new_measurable_min_mm": 6}, False),
        # conditions.index_lesion_measurable: both diameters ≥ 10 mm (irrc.baseline_min_mm).
        ("index_lesion_measurable", "10", "10", None, True),
        ("index_lesion_measurable", "12", "9.9", None, False),
        ("index_lesion_measurable", "12", "9.9", {"irrc.baseline_min_mm": 5}, True),
        # A diameter not measured fails.
        ("index_lesion_measurable", "12", None, None, False),
    ],
)
def test_both_diameters_conjunctions(condition, long_axis, short_axis, overrides, expected):
    ruleset = get_engine().rulebase[irrc.CRITERION]
    flags = ruleset.flag_values(overrides)
    short = None if short_axis is None else Decimal(short_axis)
    assert ruleset.holds(condition, flags, long_axis=Decimal(long_axis), short_axis=short) is expected
