"""itRECIST (Goldmacher 2020), size spec §6 — provisional: worked tests built from the rules, arithmetic in comments.

Classes T-I, T-NI, NT-I, NT-NI; three RECIST-1.1-style assessments with their own sums, baselines and nadirs:
overall (all lesions), injected (T-I + NT-I) and non-injected (T-NI + NT-NI + new lesions) [U].
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from fractions import Fraction

from rules.criteria import itrecist
from rules.evaluate import evaluate_patient
from tests.rules import cases
from tests.rules.ir_cases import (
    ABSENT,
    BL,
    C1D1,
    NEW,
    NT,
    Lesion,
    T,
    c,
    case,
    categories,
    days_after,
    run,
    with_injections,
)

D = dt.date.fromisoformat
TP1, TP2 = days_after(C1D1, 56), days_after(C1D1, 112)


def assess(facts, overrides=None):
    return run(itrecist, facts, overrides)


# Injected lesions respond while non-injected lesions progress (dissociated response).
DISSOCIATED = with_injections(
    case(
        "it-dissociated",
        [56, 112],
        Lesion("T1 skin", T, "skin", cells={"BL": c(30, 20), "TP1": c(15, 10), "TP2": c(5, 4)}),
        Lesion("T2 subcutis", T, "subcutaneous", cells={"BL": c(20, 15), "TP1": c(10, 8), "TP2": ABSENT}),
        Lesion("T3 lung", T, "lung", cells={"BL": c(25, 20), "TP1": c(30, 22), "TP2": c(30, 22)}),
        Lesion("T4 node", T, "lymph node", nodal=True, cells={"BL": c(22, 15), "TP1": c(24, 18), "TP2": c(24, 18)}),
        Lesion("NT liver", NT, "liver", cells=cases.nt_present(["BL", "TP1", "TP2"])),
    ).facts(),
    injected_at={"T1 skin": [BL], "T2 subcutis": [BL]},
)


def test_injected_respond_non_injected_progress():
    a = assess(DISSOCIATED)
    assert a.provisional is True and a.criterion == "itRECIST"
    tp1, tp2 = a.timepoints
    assert tp1.extra["lesion_classes"] == {
        "T1 skin": "T-I",
        "T2 subcutis": "T-I",
        "T3 lung": "T-NI",
        "T4 node": "T-NI",
        "NT liver": "NT-NI",
    }
    # Baselines: T-I 30 + 20 = 50; T-NI 25 + 15 (node SA) = 40; overall 90.
    assert tp1.extra["injected_baseline_mm"] == Decimal(50) and tp1.extra["noninjected_baseline_mm"] == Decimal(40)
    # TP1 injected 15 + 10 = 25 ≤ 0.7 × 50 = 35 → PR (−50 %).
    assert tp1.extra["injected_sum_mm"] == Decimal(25) and tp1.extra["injected_response"] == "PR"
    assert tp1.extra["injected_percent_from_baseline"] == Fraction(-50)
    # TP1 non-injected 30 + 18 = 48 ≥ 1.2 × 40 = 48 and +8 mm ≥ 5 → PD (systemic progression).
    assert tp1.extra["noninjected_sum_mm"] == Decimal(48) and tp1.extra["noninjected_response"] == "PD"
    # TP1 overall 25 + 48 = 73: −18.89 % from 90 (not PR), below the nadir 90 (not PD); NT present → SD.
    assert tp1.sum_mm == Decimal(73) and tp1.category == "SD"
    # TP2 injected 5 + 0 = 5 → PR (−90 %); non-injected stays PD (post-PD); overall 5 + 48 = 53 ≤ 63 → PR.
    assert tp2.extra["injected_response"] == "PR" and tp2.extra["injected_sum_mm"] == Decimal(5)
    assert tp2.extra["noninjected_response"] == "PD" and tp2.extra["noninjected_progression_date"] == TP1
    assert tp2.sum_mm == Decimal(53) and tp2.category == "PR"
    assert categories(a) == ["SD", "PR"]
    # The overall response is RECIST 1.1 over all targets.
    assert categories(a) == [tp.category for tp in evaluate_patient(DISSOCIATED).criterion("RECIST-1.1").timepoints]
    assert a.best_response.category == "PR"


def test_new_lesion_counts_toward_the_non_injected_response():
    # T-I 30 → 20 (−33.33 % → PR); T-NI 30 → 30; new lesion N1 → overall PD and non-injected PD; injected PR.
    facts = with_injections(
        case(
            "it-new",
            [56],
            Lesion("T1 skin", T, "skin", cells={"BL": c(30, 20), "TP1": c(20, 15)}),
            Lesion("T2 lung", T, "lung", cells={"BL": c(30, 20), "TP1": c(30, 20)}),
            Lesion("N1 liver", NEW, "liver", cells={"TP1": c(12, 10)}),
        ).facts(),
        injected_at={"T1 skin": [BL]},
    )
    a = assess(facts)
    tp = a.timepoints[0]
    assert tp.category == "PD" and a.progression_date == TP1
    assert tp.extra["injected_response"] == "PR" and tp.extra["noninjected_response"] == "PD"
    assert tp.extra["lesion_classes"]["N1 liver"] == "NEW"
    assert any("iRECIST-like" in w for w in a.warnings)


def reclassification_case(*, by_procedure: bool):
    """T1 skin injected from C1D1 (procedure); T2 skin non-injected until it is injected on day 70; T3 lung never."""
    facts = case(
        "it-reclass",
        [56, 112],
        Lesion("T1 skin", T, "skin", cells={"BL": c(30, 20), "TP1": c(20, 15), "TP2": c(15, 10)}),
        Lesion("T2 skin", T, "skin", cells={"BL": c(20, 15), "TP1": c(20, 15), "TP2": c(12, 9)}),
        Lesion("T3 lung", T, "lung", cells={"BL": c(30, 20), "TP1": c(30, 20), "TP2": c(30, 20)}),
    ).facts()
    if by_procedure:
        return with_injections(facts, procedures=[(C1D1, ("T1 skin",)), (days_after(C1D1, 70), ("T2 skin",))])
    return with_injections(facts, procedures=[(C1D1, ("T1 skin",))], injected_at={"T2 skin": [TP2]})


def test_reclassification_non_injected_to_injected():
    for by_procedure in (True, False):
        a = assess(reclassification_case(by_procedure=by_procedure))
        tp1, tp2 = a.timepoints
        # Baseline: injected {T1} 30; non-injected {T2, T3} 20 + 30 = 50; overall 80.
        # TP1: injected 20 → −33.33 % → PR; non-injected 20 + 30 = 50 → SD; overall 70 (−12.5 %) → SD.
        assert tp1.extra["lesion_classes"]["T2 skin"] == "T-NI"
        assert (tp1.extra["injected_response"], tp1.extra["noninjected_response"], tp1.category) == ("PR", "SD", "SD")
        # TP2: T2 injected on day 70 → T-I from TP2 on (targets stay targets).
        assert tp2.extra["lesion_classes"]["T2 skin"] == "T-I" and tp2.extra["reclassified"] == ("T2 skin",)
        # Injected {T1, T2}: baseline recomputed 30 + 20 = 50, nadir min(50, TP1 20 + 20 = 40) = 40;
        # sum 15 + 12 = 27 ≤ 35 → PR (−46 %).
        assert (tp2.extra["injected_baseline_mm"], tp2.extra["injected_nadir_mm"], tp2.extra["injected_sum_mm"]) == (
            Decimal(50),
            Decimal(40),
            Decimal(27),
        )
        assert tp2.extra["injected_response"] == "PR"
        # Non-injected {T3}: baseline 30, nadir 30, sum 30 → SD. Overall 15 + 12 + 30 = 57 > 56 → SD.
        assert (tp2.extra["noninjected_baseline_mm"], tp2.extra["noninjected_sum_mm"]) == (Decimal(30), Decimal(30))
        assert tp2.extra["noninjected_response"] == "SD" and tp2.category == "SD"
        # The earlier timepoint keeps the sums reported then (T-I 20).
        assert tp1.extra["injected_sum_mm"] == Decimal(20)
        # No conformance warning: 1 T-I, 2 T-NI, 3 targets.
        assert not any("target lesions at baseline" in w for w in a.warnings)


def test_reclassification_references_as_recorded_flag():
    # With the recorded references the move itself looks like a change: injected baseline 30, nadir 20 (TP1),
    # sum 27 ≥ 1.2 × 20 = 24 and +7 mm → PD; non-injected 30 ≤ 0.7 × 50 = 35 → PR.
    a = assess(reclassification_case(by_procedure=True), {"itrecist.reclassification_references": "as-recorded"})
    tp2 = a.timepoints[1]
    assert (tp2.extra["injected_baseline_mm"], tp2.extra["injected_nadir_mm"]) == (Decimal(30), Decimal(20))
    assert tp2.extra["injected_response"] == "PD" and tp2.extra["noninjected_response"] == "PR"


def test_injected_lesions_stay_injected():
    facts = reclassification_case(by_procedure=True)
    facts = dataclasses.replace(
        facts,
        measurements=tuple(
            dataclasses.replace(m, injected=False) if m.lesion_id == "T1 skin" and m.scan_date == TP2 else m
            for m in facts.measurements
        ),
    )
    a = assess(facts)
    assert a.timepoints[1].extra["lesion_classes"]["T1 skin"] == "T-I"
    assert any("kept injected" in w for w in a.warnings)


def test_worked_examples_overall_equals_recist_and_conformance_warns():
    # Without injected lesions every lesion is non-injected: overall = non-injected = RECIST 1.1 (E1: PR ×3),
    # with a conformance warning (itRECIST needs 1–5 T-I).
    a = assess(cases.E1.facts())
    assert categories(a) == ["PR", "PR", "PR"]
    assert [tp.extra["noninjected_response"] for tp in a.timepoints] == ["PR", "PR", "PR"]
    assert [tp.extra["injected_response"] for tp in a.timepoints] == [None, None, None]
    assert any("0 T-I target lesions" in w for w in a.warnings)


def test_assessment_continues_after_the_first_progression_irecist_like():
    # Size spec §6.2 [V]: itRECIST continues after the initial progression, iRECIST-like [D: the later scans take
    # their iRECIST category]. E7: TP1 2024-07-01 targets 18 + 20 + 14 = 52 mm (−35 % from 80) with a new lung
    # nodule → RECIST PD (the first progression, dated); TP2 2024-08-26 14 + 15 + 11 = 40 mm (−50 %), no further
    # new lesion → iRECIST resets: iPR; TP3 2024-10-21 12 + 12 + 9 = 33 mm (−58.75 %), the nodule gone → iPR
    # (the bone non-target is still present, so not iCR).
    a = assess(cases.E7.facts())
    assert categories(a) == ["PD", "iPR", "iPR"]
    assert a.progression_date == cases.E7.scans["TP1"]  # the first progression stays the event
    assert "continues iRECIST-like" in a.timepoints[1].trace[0]
    assert a.timepoints[1].extra["reset_from_iupd"] == "2024-07-01"  # iRECIST's own reasoning is kept
    assert "noninjected_response" in a.timepoints[1].extra
    # E3: TP2 2024-06-24 SoD 25 mm (+25 %, +5 mm from the nadir 20) → PD; TP3 2024-07-22 31 mm: +6 mm over the
    # sum at the iUPD (≥ 5 mm) → iCPD, progression dated to TP2.
    e3 = assess(cases.E3.facts())
    assert categories(e3) == ["SD", "PD", "iCPD"]
    assert e3.timepoints[2].progression_date == cases.E3.scans["TP2"]
