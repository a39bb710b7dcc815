"""iRECIST (size spec §2) from the worked examples of §11, every decision-table row, every named boundary,
and properties over random timelines (agreement with RECIST 1.1 up to its first PD; order independence)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.criteria import irecist, recist11
from rules.engine import RULESET_DIR, get_engine, load_ruleset
from rules.facts import (
    LesionMeasurement,
    LesionRole,
    LesionStatus,
    NonTargetChange,
    NonTargetStatus,
    PatientFacts,
    Scan,
    TherapyLine,
)
from rules.results import TimepointResponse
from tests.rules import cases
from tests.rules.irecist_cases import (
    ABSENT,
    C1D1,
    CUMULATIVE,
    IMPROVED_CATEGORY,
    IUPD_THEN_NE,
    NOT_ASSESSED,
    NT_GONE,
    NT_INCLA,
    NT_NC,
    NT_NCLA,
    NT_SEEN,
    NT_STILL_UNEQUIVOCAL,
    NT_UNE,
    PLUS_4_9,
    PLUS_5,
    SCENARIO_F,
    TWO_EPISODES,
    Case,
    D,
    Lesion,
    T,
    c,
    categories,
    early_scan_case,
    every_8_weeks,
    measurability_case,
    new_lesion,
    new_lesion_reset,
    non_target,
    run,
    run_both,
    shuffled,
    single_target,
    window_case,
    with_symptom_driven,
)

ENGINE = get_engine()
RULESET = ENGINE.rulebase[irecist.CRITERION]


# --- worked examples (size spec §11, iRECIST columns) ----------------------------------------------------


def test_e1_ipr_at_exactly_minus_30_percent():
    # SoD 90 → 63: 63 × 10 = 630 ≤ 90 × 7 = 630 → iPR (exactly −30.00 %); 58 → iPR; 61 (+3 mm vs nadir 58) → iPR.
    a = run(cases.E1)
    assert categories(a) == ["iPR", "iPR", "iPR"]
    assert [tp.sum_mm for tp in a.timepoints] == [Decimal(63), Decimal(58), Decimal(61)]
    assert a.timepoints[0].percent_from_baseline == Fraction(-30)
    assert a.timepoints[2].nadir_sum == Decimal(58) and a.timepoints[2].absolute_from_nadir == Decimal(3)
    assert a.best_response.category == "iPR"
    # Confirmed: iPR on TP1 and TP2, 56 days apart (≥ 28).
    assert a.best_response_confirmed.category == "iPR" and a.best_response_confirmed.confirmed
    assert a.progression_date is None


def test_e3_target_iupd_confirmed_by_a_further_6_mm():
    # TP1 24: ≥ 1.2 × 20 = 24 but 24 − 20 = 4 < 5 → iSD. TP2 25: +5 and +25 % → iUPD (anchor 25).
    # TP3 31 − 25 (the sum at the iUPD) = 6 ≥ 5 → iCPD, progression dated to the iUPD, 2024-06-24.
    a = run(cases.E3)
    assert categories(a) == ["iSD", "iUPD", "iCPD"]
    tp1, tp2, tp3 = a.timepoints
    assert tp1.percent_from_nadir == Fraction(20) and tp1.absolute_from_nadir == Decimal(4)
    assert tp2.confirmed is False and tp2.progression_date is None
    assert tp2.extra["episode"]["causes"] == ["target"] and tp2.extra["episode"]["anchor_sum_mm"] == Decimal(25)
    # Confirmation window: 2024-06-24 + 28 days = 2024-07-22, + 56 days = 2024-08-19.
    assert tp2.extra["confirmation_window"] == {"start": "2024-07-22", "end": "2024-08-19"}
    assert tp3.confirmed is True and tp3.progression_date == D("2024-06-24")
    assert tp3.extra["confirmation"] == ["target-increment"]
    assert a.progression_date == D("2024-06-24")
    # iBOR iSD: TP1 on day 56 ≥ 42.
    assert a.best_response.category == "iSD" and a.best_response_confirmed.category == "iSD"


def test_e5_new_measurable_lesion_is_nlt_and_its_sum_of_measures_confirms():
    # N1 LD 12 ≥ 10 → NLT. SoD 48 → 45 (iSD, −6.25 %) → 45 + N1 → iUPD (NLT SOM 12, not added to the SoD).
    # TP3: NLT SOM 18 − 12 = 6 ≥ 5 → iCPD (→ 2024-05-06); TP4 stays iCPD (final).
    a = run(cases.E5)
    assert categories(a) == ["iSD", "iUPD", "iCPD", "iCPD"]
    assert [tp.extra["nlt_som_mm"] for tp in a.timepoints] == [None, Decimal(12), Decimal(18), Decimal(22)]
    assert a.timepoints[1].sum_mm == Decimal(45)  # the NLT sum of measures is kept apart from the target sum
    assert a.timepoints[1].extra["nlt"] == ["N1 liver"] and a.timepoints[1].extra["nlnt"] == []
    assert a.timepoints[1].new_lesions == "present"
    assert a.timepoints[2].extra["confirmation"] == ["nlt-increment"]
    assert a.timepoints[3].progression_date == D("2024-05-06") and a.timepoints[3].confirmed is True
    assert a.progression_date == D("2024-05-06")
    assert a.best_response.category == "iSD"


def test_e7_new_lesion_iupd_reset_by_12_mm_shrinkage_to_ipr():
    # TP1: target PR (52, −35 %) but N1 6×4 (LD 6 < 10 → NLNT) → iUPD.
    # TP2: N1 unchanged, no new lesion; SoD 52 → 40 = −12 mm ≥ 5 → reset (policy (iii)) → iPR (−50 %).
    # TP3: 33 (−58.75 %), N1 gone → iPR. RECIST 1.1 says PD at TP1: the pseudoprogression divergence.
    timeline, a, r = run_both(cases.E7)
    assert categories(a) == ["iUPD", "iPR", "iPR"]
    assert categories(r) == ["PD"]
    tp1, tp2, tp3 = a.timepoints
    assert tp1.target_response == "iPR" and tp1.extra["nlnt"] == ["N1 lung"]
    assert tp1.extra["episode"]["causes"] == ["new-lesions"]
    assert tp2.extra["reset_from_iupd"] == "2024-07-01" and tp2.extra["episode"]["status"] == "reset"
    assert any("TARGETS-SHRANK" in line for line in tp2.trace)
    assert tp2.percent_from_baseline == Fraction(-50)
    assert tp3.new_lesions == "absent" and tp3.extra["episode"] is None
    assert a.best_response.category == "iPR" and a.progression_date is None


def test_e7_with_a_larger_reset_minimum_stays_iupd_until_the_new_lesion_resolves():
    # irecist.nl_reset_min_decrease_mm = 13: −12 mm < 13 → stays iUPD; TP3 N1 absent → policy (i) → iPR.
    a = run(cases.E7, {"irecist.nl_reset_min_decrease_mm": 13})
    assert categories(a) == ["iUPD", "iUPD", "iPR"]
    assert any("NEW-LESIONS-RESOLVED" in line for line in a.timepoints[2].trace)


def test_e9_ne_timepoint_does_not_update_the_nadir():
    # 75 → 60 (iSD) → NE (partial 41 < 72) → 72: nadir still 60; 72 ≥ 72 and +12 → iUPD (left open).
    a = run(cases.E9)
    assert categories(a) == ["iSD", "NE", "iUPD"]
    assert a.timepoints[2].nadir_sum == Decimal(60) and a.timepoints[2].percent_from_nadir == Fraction(20)
    assert a.timepoints[2].extra["episode"]["status"] == "open"
    assert a.best_response.category == "iSD" and a.progression_date is None


def test_e9b_partial_sum_already_iupd():
    # Partial 40 + 34 = 74 ≥ 72 and 74 − 60 = 14 ≥ 5 → iUPD with T3 missing (recist.ne_partial_pd inherited).
    assert categories(run(cases.E9B)) == ["iSD", "iUPD"]
    assert categories(run(cases.E9B, {"recist.ne_partial_pd": False})) == ["iSD", "NE"]
    assert categories(run(cases.E9B, {"irecist.ne_partial_pd": False})) == ["iSD", "NE"]


def test_e11_too_small_to_measure_and_icr():
    # TP1 5 (TSTM) + 3 = 8 → −70.37 % → iPR; then iCR, iCR; iBOR iCR (confirmed 28 days later).
    a = run(cases.E11)
    assert categories(a) == ["iPR", "iCR", "iCR"]
    assert a.timepoints[0].sum_mm == Decimal(8)
    assert a.best_response.category == "iCR" and a.best_response_confirmed.category == "iCR"


def test_e13_nlnt_incla_confirms_icpd():
    # N1 8×6: LD 8 < 10 → NLNT; TP2 iUPD; TP3 reader INCLA (+1 mm, within measurement error: the reader's code
    # decides, not the millimetres) → any NLNT increase → iCPD (→ 2024-07-08).
    a = run(cases.E13)
    assert categories(a) == ["iSD", "iUPD", "iCPD"]
    assert a.timepoints[1].extra["nlnt"] == ["N1 lung"] and a.timepoints[1].extra["nlt_som_mm"] is None
    assert a.timepoints[2].extra["confirmation"] == ["nlnt-increase"]
    assert a.progression_date == D("2024-07-08")
    assert a.best_response.category == "iSD"


def test_e15_sticky_ipr_and_its_flags():
    # 100 → 70 → 70 → 80 → 80 → 80: TP3 80 vs nadir 70 = +14.29 %, +10 mm → not iUPD; −20 % from baseline
    # → not iPR by a strict reading; the WG keeps iPR (sticky PR, for RECIST and iRECIST).
    assert categories(run(cases.E15)) == ["iPR"] * 5
    strict = ["iPR", "iPR", "iSD", "iSD", "iSD"]
    assert categories(run(cases.E15, {"irecist.sticky_pr": False})) == strict
    # iRECIST §2.1: the RECIST flag applies to iRECIST too, unless irecist.<flag> says otherwise.
    assert categories(run(cases.E15, {"recist.sticky_pr": False})) == strict
    assert categories(run(cases.E15, {"recist.sticky_pr": False, "irecist.sticky_pr": True})) == ["iPR"] * 5


# --- boundaries the spec names ---------------------------------------------------------------------------


def test_cumulative_increment_4_then_2_mm_confirms():
    # BL 50; 50 (iSD); 60 (+20 %, +10 → iUPD, anchor 60); 64 (+4 vs anchor → iUPD); 66 (+6 cumulative ≥ 5 → iCPD).
    a = run(CUMULATIVE)
    assert categories(a) == ["iSD", "iUPD", "iUPD", "iCPD"]
    assert a.progression_date == a.timepoints[1].scan_date


@pytest.mark.parametrize("case, expected", [(PLUS_5, "iCPD"), (PLUS_4_9, "iUPD")])
def test_confirmation_increment_is_inclusive_5_mm(case, expected):
    # Anchor 60: 65 − 60 = 5 ≥ 5 → iCPD; 64.9 − 60 = 4.9 < 5 → stays iUPD (still ≥ 20 % over the nadir 50).
    assert categories(run(case))[-1] == expected


def test_confirmation_increment_flag():
    # irecist.confirm_increment_mm = 6: +5 no longer confirms.
    assert categories(run(PLUS_5, {"irecist.confirm_increment_mm": 6}))[-1] == "iUPD"


@pytest.mark.parametrize("days, expected, disregarded", [(25, "iUPD", True), (26, "iCPD", False)])
def test_early_scan_cut_off_26_days(days, expected, disregarded):
    # iUPD at 60; next scan at 70 (+10): 25 days after the iUPD < 26 → disregarded (stays iUPD, growth does not
    # count); exactly 26 days → evaluated → +10 ≥ 5 → iCPD.
    tp = run(early_scan_case(days, 70)).timepoints[-1]
    assert tp.category == expected
    assert tp.extra["early_scan_disregarded"] is disregarded


def test_early_scan_flag():
    # irecist.early_scan_min_days = 28: 26 days is now early.
    assert run(early_scan_case(26, 70), {"irecist.early_scan_min_days": 28}).timepoints[-1].category == "iUPD"


def test_early_symptom_driven_scan_with_an_additional_new_lesion_confirms():
    # 10 days after the iUPD, a scan done for new symptoms shows a new lesion N9 → iCPD (WG FAQ exception).
    case = early_scan_case(10, 60, new_at_early=True)
    facts = with_symptom_driven(case.facts(), case.scans["TP2"])
    a = run(facts)
    assert categories(a) == ["iUPD", "iCPD"]
    assert a.timepoints[1].extra["confirmation"] == ["early-symptomatic-additional-new-lesion"]
    assert a.progression_date == case.scans["TP1"]


def test_early_scan_without_symptoms_is_disregarded_even_with_a_new_lesion_which_then_counts_later():
    # Not symptom-driven: the early scan with N9 is disregarded; at the next regular scan (38 days after the iUPD)
    # N9 is still there and was never recorded at an iUPD → an additional new lesion → iCPD.
    scans = {"BL": D("2024-01-02"), "TP1": D("2024-03-04"), "TP2": D("2024-03-14"), "TP3": D("2024-04-11")}
    case = Case(
        "early-nl",
        C1D1,
        scans,
        (
            Lesion(
                "T1 liver", T, "liver", cells={"BL": c(50, 50), "TP1": c(60, 60), "TP2": c(60, 60), "TP3": c(60, 60)}
            ),
            new_lesion("N9 lung", {"TP2": c(12, 10), "TP3": c(12, 10)}),
        ),
    )
    a = run(case)
    assert categories(a) == ["iUPD", "iUPD", "iCPD"]
    assert a.timepoints[1].extra["early_scan_disregarded"] is True
    assert a.timepoints[2].extra["confirmation"] == ["additional-new-lesion"]


def test_early_symptom_driven_scan_with_growth_only_is_disregarded():
    # Symptom-driven but no additional new lesion: growth of existing lesions does not count on an early scan.
    case = early_scan_case(10, 80)
    a = run(with_symptom_driven(case.facts(), case.scans["TP2"]))
    assert categories(a) == ["iUPD", "iUPD"] and a.timepoints[1].extra["early_scan_disregarded"]


def test_early_scan_never_updates_nadir_or_anchor():
    # BL 80; TP1 60 (iSD); TP2 50 + N1 → iUPD (anchor 50, nadir 50); early scan 10 days later at 40 (−10) is
    # disregarded; TP4 at 50: vs the anchor 50 → 0 mm (the early 40 is not a new anchor or nadir) → stays iUPD.
    scans = {
        "BL": D("2024-01-02"),
        "TP1": D("2024-03-04"),
        "TP2": D("2024-04-29"),
        "TP3": D("2024-05-09"),
        "TP4": D("2024-06-24"),
    }
    case = Case(
        "early-nadir",
        C1D1,
        scans,
        (
            Lesion(
                "T1 liver",
                T,
                "liver",
                cells={"BL": c(80, 80), "TP1": c(60, 60), "TP2": c(50, 50), "TP3": c(40, 40), "TP4": c(50, 50)},
            ),
            new_lesion("N1 lung", {"TP2": c(6, 4), "TP3": c(6, 4), "TP4": c(6, 4)}),
        ),
    )
    a = run(case)
    assert categories(a) == ["iSD", "iUPD", "iUPD", "iUPD"]
    assert a.timepoints[3].nadir_sum == Decimal(50)


@pytest.mark.parametrize("days, warned", [(56, False), (57, True)])
def test_confirmation_window_warning_after_56_days(days, warned):
    # 56 days after the iUPD is inside the 4–8 week window; 57 is evaluated (iCPD, +10 mm) with a warning.
    tp = run(window_case(days)).timepoints[-1]
    assert tp.category == "iCPD"
    assert any("outside the confirmation window (28–56 days" in w for w in tp.warnings) is warned


def test_confirmation_window_flag_moves_the_window_end():
    a = run(window_case(57), {"irecist.confirm_window_warn_days": 63})
    assert not a.timepoints[-1].warnings
    anchor = a.timepoints[0].scan_date
    assert a.timepoints[0].extra["confirmation_window"]["end"] == (anchor + dt.timedelta(days=63)).isoformat()


@pytest.mark.parametrize("value, expected", [(45, "iPR"), (46, "iUPD")])
def test_new_lesion_reset_minimum_decrease_5_mm(value, expected):
    # New-lesion iUPD with targets at 50 (iPR ignoring N1); N1 unchanged: 45 is −5 mm ≥ 5 → reset (iii) → iPR;
    # 46 is −4 mm < 5 → remains iUPD.
    assert categories(run(new_lesion_reset(value))) == ["iSD", "iUPD", expected]


def test_reset_policy_ii_category_improved():
    # iSD (72, −28 %) at the new-lesion iUPD; then 69 ≤ 70 → iPR: only −3 mm, but iSD → iPR is better → reset.
    a = run(IMPROVED_CATEGORY)
    assert categories(a) == ["iSD", "iUPD", "iPR"]
    assert any("CATEGORY-IMPROVED" in line for line in a.timepoints[2].trace)


def test_scenario_f_no_change_remains_iupd():
    # PR reached (60), new lesion → iUPD, then no change in any measurement → remains iUPD (WG scenario F).
    assert categories(run(SCENARIO_F)) == ["iPR", "iUPD", "iUPD"]


@pytest.mark.parametrize(
    "diameter, nodal, kind, last",
    [
        (10, False, "NLT", "iCPD"),  # LD 10 ≥ 10 → NLT; SOM 10 → 15 = +5 → iCPD
        (9.9, False, "NLNT", "iUPD"),  # LD 9.9 < 10 → NLNT; +5 mm without a reader grade does not confirm
        (15, True, "NLT", "iCPD"),  # node SA 15 ≥ 15 → NLT
        (14.9, True, "NLNT", "iUPD"),  # node SA 14.9 (10–15 mm) → NLNT
    ],
)
def test_new_lesion_measurability(diameter, nodal, kind, last):
    a = run(measurability_case(diameter, nodal=nodal))
    tp = a.timepoints[1]
    assert tp.extra["nlt" if kind == "NLT" else "nlnt"] == ["N1"]
    assert categories(a)[-1] == last


def test_new_lesion_target_cap_5_in_total_and_2_per_organ():
    # Seven measurable new lesions at TP2: lung 20, 19, 18 (3 in lung), liver 17, 16, node SA 16 and 15 (nodes are
    # one organ). Largest first: lung 20, lung 19 → NLT; lung 18 → NLNT (2 per organ); liver 17, 16 → NLT (4);
    # node 16 → NLT (5 in total); node 15 → NLNT (cap). The cap is [U]: the assessment is provisional.
    sizes = [
        ("L1", "lung", False, 20),
        ("L2", "lung", False, 19),
        ("L3", "lung", False, 18),
        ("H1", "liver", False, 17),
        ("H2", "liver", False, 16),
        ("N1", "mediastinum node", True, 16),
        ("N2", "axillary node", True, 15),
    ]
    new = [
        new_lesion(name, {"TP2": c(30, size) if nodal else c(size, size)}, organ=organ, nodal=nodal)
        for name, organ, nodal, size in sizes
    ]
    a = run(single_target("cap", [50, 50, 50], None, *new))
    tp = a.timepoints[1]
    assert tp.extra["nlt"] == ["H1", "H2", "L1", "L2", "N1"]
    assert tp.extra["nlnt"] == ["L3", "N2"]
    # NLT SOM = 20 + 19 + 17 + 16 + 16 = 88 (not added to the target sum 50).
    assert tp.extra["nlt_som_mm"] == Decimal(88) and tp.sum_mm == Decimal(50)
    assert a.provisional and any("[U]" in w for w in a.warnings)
    assert not run(cases.E5).provisional


def test_ne_keeps_the_episode_open_table_3_example_8():
    # iUPD, NE, NE → iBOR iUPD (never confirmed, nothing better).
    a = run(IUPD_THEN_NE)
    assert categories(a) == ["iUPD", "NE", "NE"]
    assert all(tp.extra["episode"]["status"] == "open" for tp in a.timepoints)
    assert a.best_response.category == "iUPD" and a.best_response_confirmed.category == "iUPD"


def test_ne_then_growth_confirms_against_the_anchor():
    # BL 50; 60 → iUPD; NE; 65 → +5 over the anchor 60 → iCPD (the NE kept the episode open).
    a = run(single_target("ne-open", [50, 60, NOT_ASSESSED, 65]))
    assert categories(a) == ["iUPD", "NE", "iCPD"]


def test_progression_date_is_the_iupd_of_the_confirmed_episode():
    # SD, SD, iUPD, iPR, iPR, iUPD, iCPD → the second iUPD (C-ADM vignette, spec §2.4).
    a = run(TWO_EPISODES)
    assert categories(a) == ["iSD", "iSD", "iUPD", "iPR", "iPR", "iUPD", "iCPD"]
    second_iupd = a.timepoints[5].scan_date
    assert a.progression_date == second_iupd and a.timepoints[6].progression_date == second_iupd
    # The nadir keeps its value after the reset: at TP4 it is still 100 (the iUPD sum 120 never lowers it).
    assert a.timepoints[3].nadir_sum == Decimal(100)
    assert a.best_response.category == "iPR"


def test_icpd_is_final_even_if_the_lesions_respond_later():
    # BL 50; 60 iUPD; 70 iCPD; 20 (−60 %) → still iCPD; the strict response is recorded for the late-response label.
    a = run(single_target("final", [50, 60, 70, 20]))
    assert categories(a) == ["iUPD", "iCPD", "iCPD"]
    assert a.timepoints[2].extra["after_icpd_response"] == "iPR"
    assert a.timepoints[2].target_response == "iPR" and a.timepoints[2].confirmed is True


def test_target_iupd_reset_keeps_the_nadir_and_sticky_pr_ends():
    # BL 100; 70 (iPR); 85: 85 ≥ 84 and +15 → iUPD; 80: < 84 → reset; −20 % from baseline, and sticky PR ended with
    # the target iUPD (PD criteria were met) → iSD. The nadir stays 70.
    a = run(single_target("reset-sd", [100, 70, 85, 80]))
    assert categories(a) == ["iPR", "iUPD", "iSD"]
    assert a.timepoints[2].nadir_sum == Decimal(70)


@pytest.mark.parametrize("flag, expected", [(True, "iCPD"), (False, "iUPD")])
def test_new_lesion_iupd_sum_and_the_nadir(flag, expected):
    # BL 100; 80 (iSD); 60 + N1 → iUPD; 58 (N1 unchanged, −2 mm, iPR both times) → iUPD; 72 with N1 unchanged.
    # irecist.nadir_includes_iupd_timepoints on (default): nadir 58, 72 ≥ 69.6 and +14 → target PD in a category that
    # had not progressed → iCPD. Off: the iUPD sums never lower the nadir, which stays 80 → 72 is not PD → iUPD.
    case = single_target(
        "nl-nadir", [100, 80, 60, 58, 72], None, new_lesion("N1 lung", {"TP2": c(6, 4), "TP3": c(6, 4), "TP4": c(6, 4)})
    )
    a = run(case, {"irecist.nadir_includes_iupd_timepoints": flag})
    assert categories(a) == ["iSD", "iUPD", "iUPD", expected]


def test_pd_in_a_category_that_had_not_progressed_confirms():
    # Target-driven iUPD (60 over 50), then a new lesion → iCPD (additional new lesion).
    a = run(single_target("t-then-nl", [50, 60, 60], None, new_lesion("N1 lung", {"TP2": c(6, 4)})))
    assert categories(a) == ["iUPD", "iCPD"] and a.timepoints[1].extra["confirmation"] == ["additional-new-lesion"]
    # New-lesion iUPD, then target PD (72 ≥ 1.2 × nadir 60 = 72, +12) → iCPD (target now progressed).
    a = run(single_target("nl-then-t", [60, 60, 60, 72], None, new_lesion("N1 lung", {"TP2": c(6, 4), "TP3": c(6, 4)})))
    assert categories(a) == ["iSD", "iUPD", "iCPD"]
    assert a.timepoints[2].extra["confirmation"] == ["target-now-progressed"]
    # New-lesion iUPD, then unequivocal non-target progression → iCPD (non-target now progressed).
    a = run(
        single_target(
            "nl-then-nt",
            [50, 50, 50, 50],
            None,
            new_lesion("N1 lung", {"TP2": c(6, 4), "TP3": c(6, 4)}),
            non_target({"BL": NT_SEEN, "TP1": NT_SEEN, "TP2": NT_SEEN, "TP3": NT_UNE}),
        )
    )
    assert categories(a) == ["iSD", "iUPD", "iCPD"]
    assert a.timepoints[2].extra["confirmation"] == ["nontarget-now-progressed"]


def test_non_target_iupd_confirmed_by_any_further_increase():
    # UNE → iUPD (cause non-target); next INCLA (need not be unequivocal again) → iCPD.
    a = run(
        single_target(
            "nt-incla",
            [50, 50, 50, 50],
            None,
            non_target({"BL": NT_SEEN, "TP1": NT_SEEN, "TP2": NT_UNE, "TP3": NT_INCLA}),
        )
    )
    assert categories(a) == ["iSD", "iUPD", "iCPD"]
    assert a.timepoints[1].extra["episode"]["cause_codes"] == ["nontarget-unequivocal"]


@pytest.mark.parametrize(
    "cell, expected",
    [
        (NT_NC, "iSD"),  # graded without UNE → no longer unequivocally progressed → reset
        (NT_NCLA, "iSD"),  # no change from last, without UNE → reset (spec §2.5 [D])
        (NT_STILL_UNEQUIVOCAL, "iUPD"),  # status still unequivocal progression, no further increase → stays iUPD
    ],
)
def test_non_target_iupd_reset_or_stay(cell, expected):
    a = run(
        single_target(
            "nt-reset", [50, 50, 50, 50], None, non_target({"BL": NT_SEEN, "TP1": NT_SEEN, "TP2": NT_UNE, "TP3": cell})
        )
    )
    assert categories(a) == ["iSD", "iUPD", expected]


def test_reappearance_after_icr():
    # Target: 20 → gone (iCR) → 6 mm again → iUPD (reappearance after iCR), although 6 − 0 ≥ 5 only just.
    a = run(single_target("reappear-target", [20, ABSENT, ABSENT, c(3, 3)]))
    assert categories(a) == ["iCR", "iCR", "iUPD"]
    assert a.timepoints[2].extra["episode"]["cause_codes"] == ["target-reappearance"]
    # Non-target only: gone (iCR) → present again → iUPD.
    case = Case(
        "reappear-nt",
        C1D1,
        every_8_weeks(3),
        (non_target({"BL": NT_SEEN, "TP1": NT_GONE, "TP2": NT_GONE, "TP3": NT_SEEN}),),
    )
    a = run(case)
    assert categories(a) == ["iCR", "iCR", "iUPD"]
    assert a.timepoints[2].extra["episode"]["cause_codes"] == ["nontarget-reappearance"]


def test_new_lesion_resolved_then_reappearing_is_a_new_lesion_again():
    # 40 → 20 + N1 (iUPD) → 0, N1 gone → reset (i) → iCR → N1 back → iUPD (a new lesion after iCR).
    a = run(
        single_target(
            "nl-back",
            [40, 20, ABSENT, ABSENT],
            None,
            new_lesion("N1 lung", {"TP1": c(6, 4), "TP2": ABSENT, "TP3": c(6, 4)}),
        )
    )
    assert categories(a) == ["iUPD", "iCR", "iUPD"]


@pytest.mark.parametrize("flag, expected", [(True, "iPR"), (False, "iCR")])
def test_icr_requires_new_lesions_resolved(flag, expected):
    # Targets gone while N1 persists: after the reset (policy (ii): iPR → iCR ignoring N1) the category is iPR
    # unless irecist.icr_requires_nl_resolved is off.
    a = run(
        single_target("icr-nl", [40, 20, 20, ABSENT], None, new_lesion("N1 lung", {"TP2": c(6, 4), "TP3": c(6, 4)})),
        {"irecist.icr_requires_nl_resolved": flag},
    )
    assert categories(a) == ["iPR", "iUPD", expected]


def test_recorded_nlt_progressing_after_a_reset_opens_a_new_episode():
    # N1 NLT 12 → iUPD; shrinkage resets (targets 50 → 40); NLT nadir 12. N1 at 18: 18 ≥ 14.4 and +6 → iUPD again
    # (§2.3(d)), cause new-lesion-progression.
    case = single_target(
        "nlt-d",
        [80, 50, 50, 40, 40],
        None,
        new_lesion("N1 liver", {"TP2": c(12, 10), "TP3": c(12, 10), "TP4": c(18, 15)}, organ="liver"),
    )
    a = run(case)
    assert categories(a) == ["iPR", "iUPD", "iPR", "iUPD"]
    assert a.timepoints[3].extra["episode"]["cause_codes"] == ["new-lesion-progression"]


@pytest.mark.parametrize(
    "som, nadir, complete, overrides, expected",
    [
        # conditions.recorded_nlt_progressed in irecist.yaml: SOM ≥ 1.2 × nadir AND SOM − nadir ≥ 5 mm, with every
        # recorded NLT assessed (or irecist.ne_partial_pd).
        # Nadir 25: 1.2 × 25 = 30 → SOM 30 is +20 % exactly and +5 mm exactly → both inclusive → progressed.
        ("30", "25", True, None, True),
        ("29.9", "25", True, None, False),  # +19.6 %, +4.9 mm
        # Nadir 12: SOM 17 is +5 mm exactly but 17 ≥ 14.4 (+41.7 %) → progressed; SOM 16.9: +4.9 mm → not.
        ("17", "12", True, None, True),
        ("16.9", "12", True, None, False),
        # Nadir 50: SOM 59.9 is +9.9 mm but 59.9 < 1.2 × 50 = 60 (+19.8 %) → not progressed; 60 → progressed.
        ("59.9", "50", True, None, False),
        ("60", "50", True, None, True),
        # A partial SOM (a recorded NLT not assessed, counted as 0) proves progression only with ne_partial_pd.
        ("30", "25", False, None, True),
        ("30", "25", False, {"irecist.ne_partial_pd": False}, False),
        ("30", "25", False, {"recist.ne_partial_pd": False}, False),
        # No nadir (no complete NLT set measured since it last changed) → not progressed.
        ("30", None, True, None, False),
    ],
)
def test_recorded_nlt_progression_conjunction_20_percent_and_5_mm(som, nadir, complete, overrides, expected):
    ruleset = get_engine().rulebase[irecist.CRITERION]
    flags = ruleset.flag_values(overrides)
    assert (
        ruleset.holds(
            "recorded_nlt_progressed",
            flags,
            som=Decimal(som),
            nadir=None if nadir is None else Decimal(nadir),
            complete=complete,
        )
        is expected
    )


@pytest.mark.parametrize(
    "now, at_iupd, complete, overrides, increment, decrease",
    [
        # conditions.confirmation_increment_met: now − at iUPD ≥ 5 mm (cumulative), complete or ne_partial_pd.
        # 65 − 60 = 5 exactly → met (≥ inclusive); 64.9 − 60 = 4.9 → not.
        ("65", "60", True, None, True, False),
        ("64.9", "60", True, None, False, False),
        # A partial sum (lesion not assessed counted as 0) is a lower bound: it proves an increase with
        # ne_partial_pd, never without it, and never a decrease (conditions.reset_target_decrease_met).
        ("65", "60", False, None, True, False),
        ("65", "60", False, {"irecist.ne_partial_pd": False}, False, False),
        ("40", "50", False, None, False, False),
        # reset_target_decrease_met: at iUPD − now ≥ 5 mm: 50 − 45 = 5 exactly → met; 50 − 46 = 4 → not.
        ("45", "50", True, None, False, True),
        ("46", "50", True, None, False, False),
        # irecist.confirm_increment_mm = 6 moves the increment: +5 no longer confirms.
        ("65", "60", True, {"irecist.confirm_increment_mm": 6}, False, False),
        # No sum at the iUPD (no anchor lesions) → neither.
        (None, None, None, None, False, False),
    ],
)
def test_confirmation_increment_and_reset_decrease_conjunctions(now, at_iupd, complete, overrides, increment, decrease):
    ruleset = get_engine().rulebase[irecist.CRITERION]
    flags = ruleset.flag_values(overrides)
    sums = {
        "now": None if now is None else Decimal(now),
        "at_iupd": None if at_iupd is None else Decimal(at_iupd),
        "complete": complete,
    }
    assert ruleset.holds("confirmation_increment_met", flags, **sums) is increment
    assert ruleset.holds("reset_target_decrease_met", flags, **sums) is decrease


def test_equivocal_new_lesion_dates_progression_to_its_first_scan():
    # N1 equivocal at TP1, unequivocal at TP2 (iUPD), grows as NLT +5 at TP3 → iCPD dated TP1 (RECIST 1.1 §4.3.2).
    case = single_target(
        "equivocal",
        [50, 50, 50, 50],
        None,
        new_lesion("N1 liver", {"TP1": c(12, 10, equivocal=True), "TP2": c(12, 10), "TP3": c(17, 12)}, organ="liver"),
    )
    a = run(case)
    assert categories(a) == ["iSD", "iUPD", "iCPD"]
    assert a.progression_date == case.scans["TP1"]


def test_non_target_only_disease():
    case = Case("nt-only", C1D1, every_8_weeks(2), (non_target({"BL": NT_SEEN, "TP1": NT_SEEN, "TP2": NT_SEEN}),))
    a = run(case)
    assert categories(a) == ["NON-iCR/NON-iUPD"] * 2
    assert all(tp.target_response is None and tp.sum_mm is None for tp in a.timepoints)
    assert a.best_response.category == "NON-iCR/NON-iUPD"


def test_no_baseline():
    facts = PatientFacts(patient_ref="empty", therapy_lines=(TherapyLine("nivolumab", C1D1),))
    a = run(facts)
    assert a.timepoints == () and a.warnings == ("no baseline",)


# --- iBOR (spec §2.7, Table 3) -----------------------------------------------------------------------------


def _responses(*cats: str) -> list[TimepointResponse]:
    return [TimepointResponse("iRECIST", C1D1 + dt.timedelta(days=56 * (i + 1)), cat) for i, cat in enumerate(cats)]


@pytest.mark.parametrize(
    "sequence, expected",
    [
        (("iCR", "iPR", "iUPD", "iUPD", "iCPD"), "iCR"),  # example 1
        (("iUPD", "iPR", "iCR", "iUPD", "NE"), "iCR"),  # example 2
        (("iUPD", "iPR", "iSD", "iUPD", "iCPD"), "iPR"),  # example 3
        (("iUPD", "NE", "iPR", "iUPD", "iCPD"), "iPR"),  # example 4
        (("iUPD", "iSD", "iUPD", "iCPD", "iCPD"), "iSD"),  # example 5 (iSD on day 112 ≥ 42)
        (("iUPD", "iCPD", "iCPD", "iCPD", "iCPD"), "iCPD"),  # example 6
        (("iUPD", "iUPD", "iCPD", "iCPD", "iCPD"), "iCPD"),  # example 7: iCPD wins over the earlier iUPD
        (("iUPD", "NE", "NE", "NE", "NE"), "iUPD"),  # example 8
        (("NE", "NE"), "NE"),
        (("NON-iCR/NON-iUPD", "iUPD"), "NON-iCR/NON-iUPD"),
    ],
)
def test_ibor_table_3(sequence, expected):
    best = irecist.best_overall_response(
        _responses(*sequence), anchor=C1D1, stable_min_days=42, confirm_min_days=28, confirmed=False
    )
    assert best.category == expected


def test_ibor_stable_disease_minimum_duration():
    # iSD only on day 41 < 42, then iUPD never confirmed → iUPD; on day 42 → iSD.
    for day, expected in ((41, "iUPD"), (42, "iSD")):
        responses = [
            TimepointResponse("iRECIST", C1D1 + dt.timedelta(days=day), "iSD"),
            TimepointResponse("iRECIST", C1D1 + dt.timedelta(days=day + 56), "iUPD"),
        ]
        assert (
            irecist.best_overall_response(
                responses, anchor=C1D1, stable_min_days=42, confirm_min_days=28, confirmed=False
            ).category
            == expected
        )


@pytest.mark.parametrize(
    "sequence, expected",
    [
        (("iPR", "iPR"), "iPR"),  # 56 days ≥ 28
        (("iPR", "NE", "iPR"), "iPR"),  # one NE in between is allowed
        (("iPR", "NE", "NE", "iPR"), "iSD"),  # two NE: not confirmed; iPR counts as iSD (day 56 ≥ 42)
        (("iCR", "iPR"), "iPR"),  # no iPR after iCR for iCR; the pair confirms iPR
        (("iCR", "iCR"), "iCR"),
        (("iPR", "iUPD", "iPR"), "iSD"),  # an iUPD in between breaks confirmation
    ],
)
def test_ibor_confirmed(sequence, expected):
    best = irecist.best_overall_response(
        _responses(*sequence), anchor=C1D1, stable_min_days=42, confirm_min_days=28, confirmed=True
    )
    assert best.category == expected


# --- the rule file --------------------------------------------------------------------------------------


def test_rule_file_loads_total_and_exclusive():
    ruleset = load_ruleset(RULESET_DIR / "irecist.yaml")
    assert ruleset.criterion == "iRECIST" and ruleset.flag_prefix == "irecist"
    assert set(ruleset.tables) == {
        "target_component",
        "nontarget_component",
        "timepoint_response",
        "improvement",
        "iupd_cause",
        "confirmation",
        "reset",
        "episode",
    }


def test_thresholds_restated_from_recist_are_identical():
    # iRECIST §2.1: measurability, the PR/PD thresholds and baseline rules are RECIST 1.1's.
    recist = ENGINE.rulebase[recist11.CRITERION]
    for name in (
        "partial_response_fraction_of_baseline",
        "progression_fraction_of_nadir",
        "progression_absolute_increase",
        "node_normal_short_axis",
        "too_small_default_diameter",
        "measurable_lesion_min_longest_diameter",
        "measurable_node_min_short_axis",
        "max_targets",
        "max_targets_per_organ",
        "baseline_max_days_before_treatment",
        "confirmation_min_days",
        "stable_disease_min_days",
    ):
        mine, theirs = RULESET.threshold(name), recist.threshold(name)
        assert (mine.value, mine.direction, mine.inclusive) == (theirs.value, theirs.direction, theirs.inclusive), name
        assert mine.source, name
    assert RULESET.inherit_from == recist.flag_prefix
    assert set(RULESET.inherited) == {
        "sticky_pr",
        "ne_partial_pd",
        "confirmation_required",
        "locally_treated_target_not_assessable",
    }
    for name in RULESET.inherited:
        assert RULESET.flags[name].default == recist.flags[name].default, name


def test_numeric_flags_default_to_their_thresholds():
    # Spec §12 defaults: 26 days, 56 days, ≥ 5 mm, 5 mm.
    expected = {
        "early_scan_min_days": 26,
        "confirm_window_warn_days": 56,
        "confirm_increment_mm": 5,
        "nl_reset_min_decrease_mm": 5,
    }
    flag_thresholds = {spec.flag: name for name, spec in RULESET.thresholds.items() if spec.flag}
    assert set(flag_thresholds) == set(expected)
    for flag, threshold in flag_thresholds.items():
        assert RULESET.flags[flag].default == expected[flag]
        assert RULESET.threshold(threshold).value == expected[flag]
    assert RULESET.flags["icr_requires_nl_resolved"].default is True


# Every row of every table, with an input that must select it and the clinical outputs it must give.
ROWS = {
    "target_component": [
        ({"recist_target": "CR"}, "iCR", {"target": "iCR"}),
        ({"recist_target": "PR"}, "iPR", {"target": "iPR"}),
        ({"recist_target": "SD"}, "iSD", {"target": "iSD"}),
        ({"recist_target": "PD"}, "iUPD", {"target": "iUPD"}),
        ({"recist_target": "NE"}, "NE", {"target": "NE"}),
        ({"recist_target": "NA"}, "NONE", {"target": "NONE"}),
    ],
    "nontarget_component": [
        ({"recist_nontarget": "CR"}, "iCR", {"nontarget": "iCR"}),
        ({"recist_nontarget": "NON-CR/NON-PD"}, "NON-iCR-NON-iUPD", {"nontarget": "NON-iCR/NON-iUPD"}),
        ({"recist_nontarget": "PD"}, "iUPD", {"nontarget": "iUPD"}),
        ({"recist_nontarget": "NE"}, "NE", {"nontarget": "NE"}),
        ({"recist_nontarget": "NONE"}, "NONE", {"nontarget": "NONE"}),
    ],
    "timepoint_response": [
        (
            dict(target="iUPD", nontarget="iCR", new_lesions="absent", icr_requires_nl_resolved=True),
            "iUPD-TARGET",
            {"response": "iUPD"},
        ),
        (
            dict(target="iPR", nontarget="iUPD", new_lesions="recorded", icr_requires_nl_resolved=True),
            "iUPD-NONTARGET",
            {"response": "iUPD"},
        ),
        (
            dict(target="iCR", nontarget="iCR", new_lesions="progressed", icr_requires_nl_resolved=True),
            "iUPD-NEW-LESION",
            {"response": "iUPD"},
        ),
        (
            dict(target="NE", nontarget="NE", new_lesions="progressed", icr_requires_nl_resolved=True),
            "iUPD-NEW-LESION",
            {"response": "iUPD"},
        ),
        (
            dict(target="iCR", nontarget="NONE", new_lesions="absent", icr_requires_nl_resolved=True),
            "iCR",
            {"response": "iCR"},
        ),
        (
            dict(target="iCR", nontarget="iCR", new_lesions="recorded", icr_requires_nl_resolved=True),
            "iPR-NEW-LESION-PERSISTS",
            {"response": "iPR"},
        ),
        (
            dict(target="iCR", nontarget="iCR", new_lesions="recorded", icr_requires_nl_resolved=False),
            "iCR-NEW-LESION-PERSISTS",
            {"response": "iCR"},
        ),
        (
            dict(target="iCR", nontarget="NE", new_lesions="absent", icr_requires_nl_resolved=True),
            "iPR-TARGET-iCR",
            {"response": "iPR"},
        ),
        (
            dict(target="iCR", nontarget="NON-iCR/NON-iUPD", new_lesions="recorded", icr_requires_nl_resolved=False),
            "iPR-TARGET-iCR",
            {"response": "iPR"},
        ),
        (
            dict(target="iPR", nontarget="NE", new_lesions="absent", icr_requires_nl_resolved=True),
            "iPR",
            {"response": "iPR"},
        ),
        (
            dict(target="iSD", nontarget="NON-iCR/NON-iUPD", new_lesions="recorded", icr_requires_nl_resolved=True),
            "iSD",
            {"response": "iSD"},
        ),
        (
            dict(target="NE", nontarget="NON-iCR/NON-iUPD", new_lesions="absent", icr_requires_nl_resolved=True),
            "NE-TARGET",
            {"response": "NE"},
        ),
        (
            dict(target="NONE", nontarget="iCR", new_lesions="absent", icr_requires_nl_resolved=True),
            "NT-ONLY-iCR",
            {"response": "iCR"},
        ),
        (
            dict(target="NONE", nontarget="iCR", new_lesions="recorded", icr_requires_nl_resolved=True),
            "NT-ONLY-NEW-LESION-PERSISTS",
            {"response": "NON-iCR/NON-iUPD"},
        ),
        (
            dict(target="NONE", nontarget="iCR", new_lesions="recorded", icr_requires_nl_resolved=False),
            "NT-ONLY-iCR-NEW-LESION-PERSISTS",
            {"response": "iCR"},
        ),
        (
            dict(target="NONE", nontarget="NON-iCR/NON-iUPD", new_lesions="recorded", icr_requires_nl_resolved=True),
            "NT-ONLY-NON-iCR-NON-iUPD",
            {"response": "NON-iCR/NON-iUPD"},
        ),
        (
            dict(target="NONE", nontarget="NE", new_lesions="absent", icr_requires_nl_resolved=True),
            "NT-ONLY-NE",
            {"response": "NE"},
        ),
        (
            dict(target="NONE", nontarget="NONE", new_lesions="absent", icr_requires_nl_resolved=True),
            "NO-DISEASE",
            {"response": "NE"},
        ),
    ],
    "improvement": [
        ({"at_iupd": "iSD", "now": "iPR"}, "SD-TO-RESPONSE", {"improved": True}),
        ({"at_iupd": "iSD", "now": "iSD"}, "SD-NOT-IMPROVED", {"improved": False}),
        ({"at_iupd": "iPR", "now": "iCR"}, "PR-TO-CR", {"improved": True}),
        ({"at_iupd": "iPR", "now": "iPR"}, "PR-NOT-IMPROVED", {"improved": False}),
        ({"at_iupd": "NON-iCR/NON-iUPD", "now": "iCR"}, "NONCR-TO-CR", {"improved": True}),
        ({"at_iupd": "NON-iCR/NON-iUPD", "now": "NON-iCR/NON-iUPD"}, "NONCR-NOT-IMPROVED", {"improved": False}),
        ({"at_iupd": "iCR", "now": "iCR"}, "CR-CANNOT-IMPROVE", {"improved": False}),
        ({"at_iupd": "iUPD", "now": "iSD"}, "PROGRESSION-OR-NE-AT-IUPD", {"improved": False}),
    ],
    "iupd_cause": [
        (
            dict(category="target", progressed=True, reappearance_after_icr=False, additional_new_lesion=True),
            "TARGET-SUM",
            {"cause": True, "code": "target-sum"},
        ),
        (
            dict(category="target", progressed=True, reappearance_after_icr=True, additional_new_lesion=False),
            "TARGET-REAPPEARANCE",
            {"cause": True, "code": "target-reappearance"},
        ),
        (
            dict(category="target", progressed=False, reappearance_after_icr=True, additional_new_lesion=True),
            "TARGET-NOT-PROGRESSED",
            {"cause": False},
        ),
        (
            dict(category="non-target", progressed=True, reappearance_after_icr=False, additional_new_lesion=False),
            "NONTARGET-UNEQUIVOCAL",
            {"cause": True, "code": "nontarget-unequivocal"},
        ),
        (
            dict(category="non-target", progressed=True, reappearance_after_icr=True, additional_new_lesion=False),
            "NONTARGET-REAPPEARANCE",
            {"cause": True, "code": "nontarget-reappearance"},
        ),
        (
            dict(category="non-target", progressed=False, reappearance_after_icr=False, additional_new_lesion=True),
            "NONTARGET-NOT-PROGRESSED",
            {"cause": False},
        ),
        (
            dict(category="new-lesions", progressed=False, reappearance_after_icr=False, additional_new_lesion=True),
            "NEW-LESION",
            {"cause": True, "code": "new-lesion"},
        ),
        (
            dict(category="new-lesions", progressed=True, reappearance_after_icr=False, additional_new_lesion=False),
            "RECORDED-NEW-LESIONS-PROGRESSED",
            {"cause": True, "code": "new-lesion-progression"},
        ),
        (
            dict(category="new-lesions", progressed=False, reappearance_after_icr=False, additional_new_lesion=False),
            "NEW-LESIONS-NOT-PROGRESSED",
            {"cause": False},
        ),
    ],
    "confirmation": [
        (
            dict(
                category="target",
                caused_iupd=True,
                increment_met=True,
                further_increase=False,
                now_progressed=False,
                additional_new_lesion=False,
            ),
            "TARGET-FURTHER-5MM",
            {"confirms": True},
        ),
        (
            dict(
                category="target",
                caused_iupd=True,
                increment_met=False,
                further_increase=False,
                now_progressed=True,
                additional_new_lesion=False,
            ),
            "TARGET-NO-FURTHER-INCREASE",
            {"confirms": False},
        ),
        (
            dict(
                category="target",
                caused_iupd=False,
                increment_met=False,
                further_increase=False,
                now_progressed=True,
                additional_new_lesion=False,
            ),
            "TARGET-NEWLY-PROGRESSED",
            {"confirms": True},
        ),
        (
            dict(
                category="target",
                caused_iupd=False,
                increment_met=True,
                further_increase=False,
                now_progressed=False,
                additional_new_lesion=True,
            ),
            "TARGET-NOT-PROGRESSED",
            {"confirms": False},
        ),
        (
            dict(
                category="non-target",
                caused_iupd=True,
                increment_met=False,
                further_increase=True,
                now_progressed=False,
                additional_new_lesion=False,
            ),
            "NONTARGET-FURTHER-INCREASE",
            {"confirms": True},
        ),
        (
            dict(
                category="non-target",
                caused_iupd=True,
                increment_met=False,
                further_increase=False,
                now_progressed=True,
                additional_new_lesion=False,
            ),
            "NONTARGET-NO-FURTHER-INCREASE",
            {"confirms": False},
        ),
        (
            dict(
                category="non-target",
                caused_iupd=False,
                increment_met=False,
                further_increase=False,
                now_progressed=True,
                additional_new_lesion=False,
            ),
            "NONTARGET-NEWLY-PROGRESSED",
            {"confirms": True},
        ),
        (
            dict(
                category="non-target",
                caused_iupd=False,
                increment_met=False,
                further_increase=True,
                now_progressed=False,
                additional_new_lesion=False,
            ),
            "NONTARGET-NOT-PROGRESSED",
            {"confirms": False},
        ),
        (
            dict(
                category="new-lesions",
                caused_iupd=False,
                increment_met=False,
                further_increase=False,
                now_progressed=False,
                additional_new_lesion=True,
            ),
            "ADDITIONAL-NEW-LESION",
            {"confirms": True},
        ),
        (
            dict(
                category="new-lesions",
                caused_iupd=True,
                increment_met=True,
                further_increase=False,
                now_progressed=False,
                additional_new_lesion=False,
            ),
            "NLT-FURTHER-5MM",
            {"confirms": True},
        ),
        (
            dict(
                category="new-lesions",
                caused_iupd=True,
                increment_met=False,
                further_increase=True,
                now_progressed=False,
                additional_new_lesion=False,
            ),
            "NLNT-INCREASE",
            {"confirms": True},
        ),
        (
            dict(
                category="new-lesions",
                caused_iupd=True,
                increment_met=False,
                further_increase=False,
                now_progressed=True,
                additional_new_lesion=False,
            ),
            "NEW-LESIONS-UNCHANGED",
            {"confirms": False},
        ),
        (
            dict(
                category="new-lesions",
                caused_iupd=False,
                increment_met=False,
                further_increase=False,
                now_progressed=True,
                additional_new_lesion=False,
            ),
            "RECORDED-NEW-LESIONS-NEWLY-PROGRESSED",
            {"confirms": True},
        ),
        (
            dict(
                category="new-lesions",
                caused_iupd=False,
                increment_met=True,
                further_increase=True,
                now_progressed=False,
                additional_new_lesion=False,
            ),
            "NO-NEW-LESION-PROGRESSION",
            {"confirms": False},
        ),
    ],
    "reset": [
        (
            dict(
                cause="target",
                target="iSD",
                nontarget="iUPD",
                new_lesions_resolved=False,
                category_improved=False,
                target_decrease_met=False,
            ),
            "TARGET-RESOLVED",
            {"resolved": True},
        ),
        (
            dict(
                cause="target",
                target="iUPD",
                nontarget="iCR",
                new_lesions_resolved=True,
                category_improved=True,
                target_decrease_met=True,
            ),
            "TARGET-STILL-PROGRESSED",
            {"resolved": False},
        ),
        (
            dict(
                cause="non-target",
                target="iUPD",
                nontarget="NON-iCR/NON-iUPD",
                new_lesions_resolved=False,
                category_improved=False,
                target_decrease_met=False,
            ),
            "NONTARGET-RESOLVED",
            {"resolved": True},
        ),
        (
            dict(
                cause="non-target",
                target="iCR",
                nontarget="NE",
                new_lesions_resolved=True,
                category_improved=True,
                target_decrease_met=True,
            ),
            "NONTARGET-STILL-PROGRESSED",
            {"resolved": False},
        ),
        (
            dict(
                cause="new-lesions",
                target="iSD",
                nontarget="iCR",
                new_lesions_resolved=True,
                category_improved=False,
                target_decrease_met=False,
            ),
            "NEW-LESIONS-RESOLVED",
            {"resolved": True},
        ),
        (
            dict(
                cause="new-lesions",
                target="iPR",
                nontarget="iCR",
                new_lesions_resolved=False,
                category_improved=True,
                target_decrease_met=False,
            ),
            "CATEGORY-IMPROVED",
            {"resolved": True},
        ),
        (
            dict(
                cause="new-lesions",
                target="iPR",
                nontarget="iCR",
                new_lesions_resolved=False,
                category_improved=False,
                target_decrease_met=True,
            ),
            "TARGETS-SHRANK",
            {"resolved": True},
        ),
        (
            dict(
                cause="new-lesions",
                target="iPR",
                nontarget="iCR",
                new_lesions_resolved=False,
                category_improved=False,
                target_decrease_met=False,
            ),
            "NEW-LESIONS-NO-CHANGE",
            {"resolved": False},
        ),
    ],
}

_EPISODE_BASE = dict(
    icpd_assigned=False,
    previous_iupd=True,
    early_scan=False,
    symptom_driven=False,
    additional_new_lesion=False,
    confirmation=False,
    reset=False,
    response="iSD",
)


def _ep(**changes):
    return {**_EPISODE_BASE, **changes}


ROWS["episode"] = [
    (_ep(icpd_assigned=True, response="iPR"), "AFTER-iCPD", {"category": "iCPD", "transition": "final"}),
    (
        _ep(early_scan=True, symptom_driven=True, additional_new_lesion=True),
        "EARLY-SYMPTOMATIC-NEW-LESION",
        {"category": "iCPD", "transition": "confirm"},
    ),
    (
        _ep(early_scan=True, confirmation=True, response="iUPD"),
        "EARLY-SCAN-DISREGARDED",
        {"category": "iUPD", "transition": "keep", "disregarded": True},
    ),
    (
        _ep(early_scan=True, symptom_driven=True, reset=True),
        "EARLY-SYMPTOMATIC-NO-NEW-LESION",
        {"category": "iUPD", "disregarded": True},
    ),
    (
        _ep(confirmation=True, reset=True, response="iPR"),
        "CONFIRMED",
        {"category": "iCPD", "transition": "confirm", "disregarded": False},
    ),
    (_ep(response="NE"), "NE-EPISODE-STAYS-OPEN", {"category": "NE", "transition": "keep"}),
    (_ep(response="iUPD", reset=True), "STILL-PROGRESSED", {"category": "iUPD", "transition": "keep"}),
    (_ep(response="iPR"), "NOT-RESET", {"category": "iUPD", "transition": "keep"}),
    (_ep(response="iCR", reset=True), "RESET-iCR", {"category": "iCR", "transition": "reset"}),
    (_ep(response="iPR", reset=True), "RESET-iPR", {"category": "iPR", "transition": "reset"}),
    (_ep(response="iSD", reset=True), "RESET-iSD", {"category": "iSD", "transition": "reset"}),
    (
        _ep(response="NON-iCR/NON-iUPD", reset=True),
        "RESET-NON-iCR-NON-iUPD",
        {"category": "NON-iCR/NON-iUPD", "transition": "reset"},
    ),
    (_ep(previous_iupd=False, response="iUPD"), "OPEN", {"category": "iUPD", "transition": "open"}),
    (_ep(previous_iupd=False, response="iCR"), "NO-EPISODE-iCR", {"category": "iCR", "transition": "none"}),
    (
        _ep(previous_iupd=False, response="iPR", confirmation=True),
        "NO-EPISODE-iPR",
        {"category": "iPR", "transition": "none"},
    ),
    (_ep(previous_iupd=False, response="iSD"), "NO-EPISODE-iSD", {"category": "iSD", "transition": "none"}),
    (
        _ep(previous_iupd=False, response="NON-iCR/NON-iUPD"),
        "NO-EPISODE-NON-iCR-NON-iUPD",
        {"category": "NON-iCR/NON-iUPD"},
    ),
    (_ep(previous_iupd=False, response="NE"), "NO-EPISODE-NE", {"category": "NE", "transition": "none"}),
]

ROW_CASES = [
    pytest.param(table, case, row, outputs, id=f"{table}:{row}:{i}")
    for table, rows in ROWS.items()
    for i, (case, row, outputs) in enumerate(rows)
]


@pytest.mark.parametrize("table, case, row, outputs", ROW_CASES)
def test_every_table_row(table, case, row, outputs):
    decision = ENGINE.decide(irecist.CRITERION, table, case)
    assert decision.row == row
    for key, value in outputs.items():
        assert decision[key] == value, key


def test_every_row_has_a_test():
    for table, spec in RULESET.tables.items():
        tested = {row for _case, row, _outputs in ROWS[table]}
        assert tested == {row.id for row in spec.rows}, table


# --- properties over random timelines ------------------------------------------------------------------------

RECIST_EQUIVALENT = {
    "iCR": "CR",
    "iPR": "PR",
    "iSD": "SD",
    "NON-iCR/NON-iUPD": "NON-CR/NON-PD",
    "NE": "NE",
    "iUPD": "PD",
}
ORGANS = ("lung", "liver", "bone", "adrenal")
CHANGES = (
    None,
    NonTargetChange.NC,
    NonTargetChange.INC,
    NonTargetChange.NCLA,
    NonTargetChange.INCLA,
    NonTargetChange.UNE,
)
MM = st.integers(min_value=0, max_value=800).map(lambda tenths: Decimal(tenths) / 10)


@st.composite
def measured_cell(draw, *, nodal: bool, allow_absent: bool = True):
    kind = draw(st.sampled_from(["measured"] * 6 + ["absent", "too-small", "not-assessed"]))
    if kind == "absent" and allow_absent:
        return dict(status=LesionStatus.ABSENT, long_axis_mm=Decimal(0), short_axis_mm=Decimal(0))
    if kind == "too-small":
        return dict(status=LesionStatus.TOO_SMALL)
    if kind == "not-assessed":
        return dict(status=LesionStatus.NOT_ASSESSED)
    value = draw(MM)
    return dict(long_axis_mm=value + (10 if nodal else 0), short_axis_mm=value)


@st.composite
def random_facts(draw) -> PatientFacts:
    c1d1 = dt.date(2024, 1, 8)
    baseline = dt.date(2024, 1, 2)
    gaps = draw(st.lists(st.integers(min_value=7, max_value=90), min_size=1, max_size=6))
    dates, day = [], c1d1
    for gap in gaps:
        day = day + dt.timedelta(days=gap)
        dates.append(day)
    measurements: list[LesionMeasurement] = []
    for t in range(draw(st.integers(min_value=0, max_value=3))):
        nodal = draw(st.booleans())
        organ = "lymph node" if nodal else draw(st.sampled_from(ORGANS))
        base = Decimal(draw(st.integers(min_value=150 if nodal else 100, max_value=600))) / 10
        measurements.append(
            LesionMeasurement(
                f"T{t}",
                baseline,
                role=LesionRole.TARGET,
                nodal=nodal,
                organ=organ,
                long_axis_mm=base + (10 if nodal else 0),
                short_axis_mm=base,
                label=f"T{t}",
            )
        )
        for when in dates:
            measurements.append(
                LesionMeasurement(
                    f"T{t}", when, nodal=nodal, organ=organ, label=f"T{t}", **draw(measured_cell(nodal=nodal))
                )
            )
    nontarget_statuses = st.sampled_from(
        [NonTargetStatus.PRESENT] * 4 + [NonTargetStatus.ABSENT, NonTargetStatus.UNEQUIVOCAL_PROGRESSION, None]
    )
    for n in range(draw(st.integers(min_value=0 if measurements else 1, max_value=2))):
        measurements.append(
            LesionMeasurement(
                f"NT{n}",
                baseline,
                role=LesionRole.NON_TARGET,
                organ="bone",
                nontarget_status=NonTargetStatus.PRESENT,
                label=f"NT{n}",
            )
        )
        for when in dates:
            status = draw(nontarget_statuses)
            measurements.append(
                LesionMeasurement(
                    f"NT{n}",
                    when,
                    organ="bone",
                    label=f"NT{n}",
                    status=(
                        LesionStatus.NOT_ASSESSED
                        if status is None
                        else LesionStatus.ABSENT
                        if status is NonTargetStatus.ABSENT
                        else LesionStatus.PRESENT
                    ),
                    nontarget_status=status,
                    nontarget_change=draw(st.sampled_from(CHANGES)),
                )
            )
    for k in range(draw(st.integers(min_value=0, max_value=3))):
        first = draw(st.integers(min_value=0, max_value=len(dates) - 1))
        nodal = draw(st.booleans())
        organ = "lymph node" if nodal else draw(st.sampled_from(ORGANS))
        for i, when in enumerate(dates[first:]):
            cell = draw(measured_cell(nodal=nodal, allow_absent=i > 0))
            measurements.append(
                LesionMeasurement(
                    f"N{k}",
                    when,
                    role=LesionRole.NEW,
                    nodal=nodal,
                    organ=organ,
                    label=f"N{k}",
                    nontarget_change=draw(st.sampled_from(CHANGES)),
                    equivocal=draw(st.booleans()) and i == 0,
                    **cell,
                )
            )
    scans = tuple(Scan(scan_date=when, symptom_driven=True) for when in dates if draw(st.booleans()))
    return PatientFacts(
        patient_ref="random",
        therapy_lines=(TherapyLine("pembrolizumab", c1d1),),
        scans=scans,
        measurements=tuple(measurements),
    )


def _projection(assessment):
    """Everything a report shows, without the traces (which name lesions in input order)."""
    return (
        [
            (
                tp.scan_date,
                tp.category,
                tp.target_response,
                tp.nontarget_response,
                tp.new_lesions,
                tp.sum_mm,
                tp.nadir_sum,
                tp.confirmed,
                tp.progression_date,
                tp.extra,
                sorted(tp.warnings),
            )
            for tp in assessment.timepoints
        ],
        assessment.best_response,
        assessment.best_response_confirmed,
        assessment.progression_date,
        sorted(assessment.warnings),
        assessment.provisional,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts=random_facts(), data=st.data())
def test_random_timelines(facts, data):
    timeline, a, r = run_both(facts)
    # Never crashes, grades every follow-up, and iCPD is final.
    assert len(a.timepoints) == len(timeline.followups)
    seen_icpd = False
    for tp in a.timepoints:
        assert tp.category in {c.value for c in irecist.Category}
        assert tp.confirmed == {"iUPD": False, "iCPD": True}.get(tp.category)
        if seen_icpd:
            assert tp.category == "iCPD"
        seen_icpd = seen_icpd or tp.category == "iCPD"
        if tp.category == "iCPD":
            assert tp.progression_date is not None and tp.progression_date <= tp.scan_date
    assert (a.progression_date is not None) == seen_icpd
    # iRECIST agrees with RECIST 1.1 at every timepoint up to and including RECIST's first PD.
    for mine, theirs in zip(a.timepoints, r.timepoints, strict=False):
        assert RECIST_EQUIVALENT[mine.category] == theirs.category, (mine.scan_date, mine.trace, theirs.trace)
        assert mine.sum_mm == theirs.sum_mm and mine.nadir_sum == theirs.nadir_sum
    # The result does not depend on the order of PatientFacts.measurements.
    order = data.draw(st.permutations(range(len(facts.measurements))))
    _t, again, _r = run_both(shuffled(facts, order))
    assert _projection(again) == _projection(a)
