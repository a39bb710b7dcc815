"""PERCIST 1.0 from the worked examples of size spec §11 (P1, E5 and E7 PET add-ons) and the boundaries of §7.1,
with the arithmetic in the comments (SULpeak in SUL units; exact decimal arithmetic)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest

from rules.criteria import percist
from rules.engine import get_engine
from rules.facts import NonTargetStatus
from tests.rules import pet_cases as pc
from tests.rules.pet_cases import PetLesion, categories, pet_facts

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
SCANS = {"BL": D("2024-01-02"), "FU1": D("2024-03-04"), "FU2": D("2024-04-29")}


def assess(facts, overrides=None):
    return pc.run(percist, facts, overrides)


def one_lesion(bl, fu, *, liver=("1.0", "0.1"), fu_liver=None, **kwargs):
    """One lung lesion: SULpeak ``bl`` at baseline and ``fu`` at FU1; liver SULmean/SD at both scans."""
    return pet_facts(
        "bound",
        C1D1,
        SCANS,
        (PetLesion("A lung", "lung", {"BL": bl, "FU1": fu}),),
        {"BL": liver, "FU1": fu_liver or liver},
        **kwargs,
    )


# --- P1 (every PERCIST cell) -----------------------------------------------------------------------------------


def test_p1_hottest_lesion_identity_changes_and_reference_is_baseline():
    a = assess(pc.p1())
    fu1, fu2, fu3 = a.timepoints
    # Baseline liver 2.0, SD 0.25 → measurability limit 1.5 × 2.0 + 2 × 0.25 = 3.5; hottest A 8.0 ≥ 3.5.
    assert fu1.extra["measurability_limit"] == Decimal("3.5")
    # FU1: hottest is now B 5.5: (5.5 − 8.0) / 8.0 = −31.25 %, Δ −2.5 ≥ 0.8; B rose +10 % (< 30 %) → PMR.
    assert fu1.category == "PMR"
    assert fu1.extra["hottest_lesion"] == "B node" and fu1.extra["baseline_hottest_lesion"] == "A lung"
    assert fu1.percent_from_baseline == Fraction(-3125, 100)
    assert fu1.extra["delta_sul_peak"] == Decimal("-2.5")
    assert any(
        "hottest lesion B node SULpeak 5.5 vs baseline hottest A lung 8.0: −31.25 %, Δ −2.5" in line
        for line in fu1.trace
    )
    # FU2: hottest A 7.0 vs BASELINE 8.0 = −12.5 % → SMD (it rose +27 % from FU1, but PERCIST compares with baseline).
    assert fu2.category == "SMD" and fu2.percent_from_baseline == Fraction(-125, 10)
    # FU3: liver 2.6 vs 2.0 = +30 % (> 20 %) and +0.6 (≥ 0.3) → not comparable → quantitative NE.
    assert fu3.category == "NE" and fu3.extra["liver_comparable"] is False
    assert fu3.percent_from_baseline is None
    assert any("liver SULmean 2.6 vs baseline 2.0: +30.00 %" in line for line in fu3.trace)
    assert categories(a) == ["PMR", "SMD", "NE"]
    assert a.best_response.category == "PMR"


def test_p1_fu3_new_lesion_is_still_read_when_the_liver_check_fails():
    # "Only a new lesion or unequivocal progression could be read": a new FDG-avid lesion at FU3 (SULpeak 5.0 >
    # liver 2.6) gives PMD although the quantitative comparison is NE.
    facts = pet_facts(
        "P1+new",
        D("2024-02-05"),
        pc.P1_SCANS,
        pc.P1_LESIONS + (PetLesion("N1 liver", "liver", {"FU3": "5.0"}),),
        pc.P1_LIVERS,
    )
    a = assess(facts)
    assert categories(a) == ["PMR", "SMD", "PMD"]
    assert a.timepoints[2].extra["liver_comparable"] is False
    assert a.progression_date == D("2024-08-05")


# --- E5 and E7 PET add-ons ---------------------------------------------------------------------------------------


def test_e5_new_fdg_avid_lesion_is_pmd():
    a = assess(pc.e5_pet())
    tp2, tp3 = a.timepoints
    # PET only on BL, TP2, TP3 (TP1 and TP4 are CT only: not graded).
    assert [tp.scan_date for tp in a.timepoints] == [D("2024-05-06"), D("2024-06-03")]
    # TP2 liver 2.1: +5 %, +0.1 → comparable. New N1 6.0 > liver 2.1 → FDG-avid → PMD; the hottest lesion T1 8.5 vs
    # 9.0 is −5.56 %, which alone would be SMD.
    assert tp2.category == "PMD" and tp2.extra["scan_category"] == "PMD"
    assert tp2.extra["new_fdg_avid_lesions"] == "N1 liver" and tp2.extra["new_lesion_only"] is True
    assert tp2.percent_from_baseline == Fraction(85 - 90, 90) * 100
    assert tp3.category == "PMD"
    assert a.progression_date == D("2024-05-06")


def test_e7_pmd_from_new_lesion_and_no_reset():
    a = assess(pc.e7_pet())
    tp1, tp2 = a.timepoints
    # TP1: new N1 2.8 > liver 2.3 → PMD; hottest T2 5.0 vs 10.0 = −50 %, Δ −5.0 would alone be PMR.
    assert tp1.category == "PMD" and tp1.percent_from_baseline == Fraction(-50)
    # TP2: N1 at background (1.8 ≤ liver 2.2); hottest 3.0 vs 10.0 = −70 % → PMR on its own, but PERCIST has no reset.
    assert tp2.category == "PMD" and tp2.extra["scan_category"] == "PMR" and tp2.extra["post_progression"] is True
    # percist.after_progression = evaluate grades TP2 on its own.
    assert categories(assess(pc.e7_pet(), {"percist.after_progression": "evaluate"})) == ["PMD", "PMR"]


# --- boundaries of §7.1 ----------------------------------------------------------------------------------------


def test_p2_trap_measurability_limit_is_exactly_2():
    # Liver SULmean 1.2, SD 0.1 → 1.5 × 1.2 + 2 × 0.1 = 2.0 exactly (binary floats give 1.9999999999999998).
    assert 1.5 * 1.2 + 2 * 0.1 != 2.0
    a = assess(one_lesion("2.0", "1.3", liver=("1.2", "0.1")))
    assert a.timepoints[0].extra["measurability_limit"] == Decimal("2.0")
    # 2.0 ≥ 2.0 (inclusive) → measurable; FU1 1.3: −35 %, Δ −0.7 < 0.8 → SMD (quantitatively evaluated).
    assert a.timepoints[0].category == "SMD" and not a.warnings
    # 1.99 < 2.0 → not measurable → quantitative NE.
    b = assess(one_lesion("1.99", "1.3", liver=("1.2", "0.1")))
    assert b.timepoints[0].category == "NE" and b.warnings


@pytest.mark.parametrize(
    "fu, overrides, expected",
    [
        # Baseline 8.0; PMR needs ≥ 30 % and ≥ 0.8 decrease: 5.6 = −30 % exactly, Δ −2.4 → PMR (inclusive).
        ("5.6", None, "PMR"),
        ("5.61", None, "SMD"),
        # percist.pmr_inclusive off reads "> 30 %": exactly −30 % is no longer PMR.
        ("5.6", {"percist.pmr_inclusive": False}, "SMD"),
        ("5.59", {"percist.pmr_inclusive": False}, "PMR"),
        # PMD needs > 30 % and > 0.8: 10.4 = +30 % exactly, Δ +2.4 → not PMD (strict) → SMD.
        ("10.4", None, "SMD"),
        ("10.41", None, "PMD"),
        # percist.pmd_strict off reads "≥ 30 %".
        ("10.4", {"percist.pmd_strict": False}, "PMD"),
    ],
)
def test_30_percent_boundaries(fu, overrides, expected):
    assert categories(assess(one_lesion("8.0", fu), overrides)) == [expected]


@pytest.mark.parametrize(
    "bl, fu, overrides, expected",
    [
        # Liver 1.0 (SD 0.1) → limit 1.7. Baseline 2.0 → 1.2: −40 %, Δ −0.8 exactly → PMR (≥ 0.8 inclusive).
        ("2.0", "1.2", None, "PMR"),
        ("2.0", "1.21", None, "SMD"),
        ("2.0", "1.2", {"percist.pmr_inclusive": False}, "SMD"),
        # 2.0 → 2.8: +40 %, Δ +0.8 exactly → not > 0.8 → SMD; with pmd_strict off → PMD.
        ("2.0", "2.8", None, "SMD"),
        ("2.0", "2.81", None, "PMD"),
        ("2.0", "2.8", {"percist.pmd_strict": False}, "PMD"),
    ],
)
def test_0_8_sul_boundaries(bl, fu, overrides, expected):
    assert categories(assess(one_lesion(bl, fu), overrides)) == [expected]


@pytest.mark.parametrize(
    "bl, fu, overrides, pmd, pmr",
    [
        # PMD is the conjunction in percist.yaml (conditions.hottest_meets_pmd): C > 1.3 × B and C − B > 0.8.
        # 8.0 → 10.4: 1.3 × 8.0 = 10.4, so +30 % exactly (not > 30 %), though C − B = 2.4 > 0.8 → not PMD.
        ("8.0", "10.4", None, False, False),
        ("8.0", "10.4", {"percist.pmd_strict": False}, True, False),
        # 2.0 → 2.8: 2.8 > 1.3 × 2.0 = 2.6 (+40 %), but C − B = 0.8 exactly (not > 0.8) → not PMD.
        ("2.0", "2.8", None, False, False),
        ("2.0", "2.8", {"percist.pmd_strict": False}, True, False),
        # 2.0 → 2.81: +40.5 % and +0.81 → both hold → PMD.
        ("2.0", "2.81", None, True, False),
        # PMR (conditions.hottest_meets_pmr): C ≤ 0.7 × B and B − C ≥ 0.8.
        # 8.0 → 5.6: 0.7 × 8.0 = 5.6, −30 % exactly (inclusive) and B − C = 2.4 ≥ 0.8 → PMR; not with '> 30 %'.
        ("8.0", "5.6", None, False, True),
        ("8.0", "5.6", {"percist.pmr_inclusive": False}, False, False),
        # 2.0 → 1.2: −40 % and B − C = 0.8 exactly (≥ 0.8 inclusive) → PMR; not with '> 0.8'.
        ("2.0", "1.2", None, False, True),
        ("2.0", "1.2", {"percist.pmr_inclusive": False}, False, False),
        # 1.0 → 0.5: −50 %, but B − C = 0.5 < 0.8 → the conjunction fails (the 0.8 SUL rule alone decides).
        ("1.0", "0.5", None, False, False),
        # 1.0 → 1.9: +90 %, but C − B = 0.9 > 0.8 → PMD; 1.0 → 1.8: +80 %, C − B = 0.8 not > 0.8 → not PMD.
        ("1.0", "1.9", None, True, False),
        ("1.0", "1.8", None, False, False),
    ],
)
def test_the_pmd_and_pmr_conjunctions_of_the_rule_file(bl, fu, overrides, pmd, pmr):
    ruleset = get_engine().rulebase[percist.CRITERION]
    flags = ruleset.flag_values(overrides)
    quantities = {"hottest": Decimal(fu), "baseline": Decimal(bl)}
    assert ruleset.holds("hottest_meets_pmd", flags, **quantities) is pmd
    assert ruleset.holds("hottest_meets_pmr", flags, **quantities) is pmr


@pytest.mark.parametrize(
    "liver, fu_liver, comparable",
    [
        # Baseline liver 1.0 → 1.2: +20 % exactly (≤ 20 % inclusive) and Δ 0.2 (< 0.3) → comparable.
        (("1.0", "0.1"), ("1.2", "0.1"), True),
        # 1.0 → 1.21: +21 % → not comparable.
        (("1.0", "0.1"), ("1.21", "0.1"), False),
        # 1.0 → 0.8: −20 % exactly → comparable.
        (("1.0", "0.1"), ("0.8", "0.1"), True),
        # Baseline 2.0 → 2.3: +15 % but Δ 0.3 exactly (not < 0.3) → not comparable.
        (("2.0", "0.1"), ("2.3", "0.1"), False),
        # 2.0 → 2.29: +14.5 %, Δ 0.29 < 0.3 → comparable.
        (("2.0", "0.1"), ("2.29", "0.1"), True),
    ],
)
def test_liver_tolerance_boundaries(liver, fu_liver, comparable):
    tp = assess(one_lesion("8.0", "7.0", liver=liver, fu_liver=fu_liver)).timepoints[0]
    assert tp.extra["liver_comparable"] is comparable
    assert tp.category == ("SMD" if comparable else "NE")


def test_liver_tolerance_flag():
    # P1 FU3: +30 %, +0.6. With a tolerance of 30 % and 0.7 SUL the scans are comparable: hottest A 7.2 vs 8.0 =
    # −10 % → SMD.
    a = assess(pc.p1(), {"percist.liver_tolerance": {"percent": 30, "sul": "0.7"}})
    assert categories(a) == ["PMR", "SMD", "SMD"]
    # 0.6 is not < 0.6: still NE.
    assert categories(assess(pc.p1(), {"percist.liver_tolerance": {"percent": 30, "sul": "0.6"}}))[2] == "NE"


def test_missing_liver_reference_is_quantitative_ne_unless_allowed():
    facts = pet_facts("noliver", C1D1, SCANS, (PetLesion("A lung", "lung", {"BL": "8.0", "FU1": "5.0"}),), {})
    a = assess(facts)
    assert categories(a) == ["NE"]
    b = assess(facts, {"percist.liver_reference_required": False})
    # 5.0 vs 8.0 = −37.5 %, Δ −3.0 → PMR, with a warning that measurability was not checked.
    assert categories(b) == ["PMR"] and b.warnings


def test_tlg_increase_above_75_percent_is_pmd():
    # Hottest 8.0 → 8.0 (0 %), TLG 100 → 176 (+76 % > 75 %) → PMD; 175 (+75 % exactly) → SMD.
    def facts(tlg):
        return pet_facts(
            "tlg",
            C1D1,
            SCANS,
            (PetLesion("A lung", "lung", {"BL": "8.0", "FU1": "8.0"}, tlg={"BL": "100", "FU1": tlg}),),
            {"BL": ("1.0", "0.1"), "FU1": ("1.0", "0.1")},
        )

    assert categories(assess(facts("176"))) == ["PMD"]
    assert categories(assess(facts("175"))) == ["SMD"]


def test_complete_metabolic_response():
    # Every lesion absent or below the liver SULmean 1.0 (0.9 < 1.0), no new lesion → CMR.
    facts = pet_facts(
        "cmr",
        C1D1,
        SCANS,
        (
            PetLesion("A lung", "lung", {"BL": "8.0", "FU1": "0.9"}),
            PetLesion("B node", "lymph node", {"BL": "5.0", "FU1": "absent"}, nodal=True),
        ),
        {"BL": ("1.0", "0.1"), "FU1": ("1.0", "0.1")},
    )
    assert categories(assess(facts)) == ["CMR"]
    # 1.0 is not below the liver mean 1.0 → not CMR; 1.0 vs 8.0 = −87.5 % → PMR.
    facts = pet_facts(
        "cmr-edge",
        C1D1,
        SCANS,
        (PetLesion("A lung", "lung", {"BL": "8.0", "FU1": "1.0"}),),
        {"BL": ("1.0", "0.1"), "FU1": ("1.0", "0.1")},
    )
    assert categories(assess(facts)) == ["PMR"]


def test_other_lesion_rising_more_than_30_percent_blocks_pmr():
    # Hottest A 8.0 → 5.0 (−37.5 %, PMR) but B 4.0 → 5.3 (+32.5 % > 30 %) → SMD; B → 5.2 (+30 % exactly) → PMR.
    def facts(b):
        return pet_facts(
            "other",
            C1D1,
            SCANS,
            (
                PetLesion("A lung", "lung", {"BL": "8.0", "FU1": "5.0"}),
                PetLesion("B bone", "bone", {"BL": "4.0", "FU1": b}),
            ),
            {"BL": ("1.0", "0.1"), "FU1": ("1.0", "0.1")},
        )

    assert categories(assess(facts("5.3"))) == ["SMD"]
    assert categories(assess(facts("5.2"))) == ["PMR"]


def test_nontarget_unequivocal_progression_is_pmd_by_flag():
    import dataclasses

    facts = one_lesion("8.0", "7.5")
    measurements = tuple(
        dataclasses.replace(m, nontarget_status=NonTargetStatus.UNEQUIVOCAL_PROGRESSION)
        if m.scan_date == SCANS["FU1"]
        else m
        for m in facts.measurements
    )
    facts = dataclasses.replace(facts, measurements=measurements)
    assert categories(assess(facts)) == ["PMD"]
    assert categories(assess(facts, {"percist.nontarget_progression_is_pmd": False})) == ["SMD"]


def test_equivocal_or_background_new_lesions_are_not_pmd():
    lesions = (
        PetLesion("A lung", "lung", {"BL": "8.0", "FU1": "7.0"}),
        PetLesion("N1 liver", "liver", {"FU1": "3.0"}, equivocal_at=("FU1",)),
        PetLesion("N2 bone", "bone", {"FU1": "1.0"}),
    )
    facts = pet_facts("new", C1D1, SCANS, lesions, {"BL": ("1.0", "0.1"), "FU1": ("1.0", "0.1")})
    tp = assess(facts).timepoints[0]
    # N1 is equivocal (followed); N2 1.0 is not above the liver SULmean 1.0 (background) → SMD (7.0 vs 8.0 = −12.5 %).
    assert tp.category == "SMD" and tp.new_lesions == "absent"


@pytest.mark.parametrize(
    "base, now, overrides, expected",
    [
        # conditions.liver_comparable in percist.yaml: |Δ| ≤ 20 × B/100 AND |Δ| < 0.3 SUL.
        # 1.5 → 1.8: |Δ| 0.3 = 20 × 0.015 (20 % exactly, inclusive) but 0.3 is not < 0.3 → not comparable.
        ("1.5", "1.8", None, False),
        ("1.5", "1.79", None, True),  # |Δ| 0.29: 19.3 %, < 0.3
        # With the absolute check switched off (null) only the 20 % rule decides: 1.5 → 1.8 is comparable.
        ("1.5", "1.8", {"percist.liver_tolerance": {"percent": 20, "sul": None}}, True),
        # A zero baseline liver: |Δ| ≤ 20 × 0 holds only for |Δ| = 0.
        ("0", "0", None, True),
        ("0", "0.1", None, False),
    ],
)
def test_the_liver_comparability_conjunction(base, now, overrides, expected):
    ruleset = get_engine().rulebase[percist.CRITERION]
    difference = abs(Fraction(now) - Fraction(base))
    quantities = {"difference": difference, "one_percent_of_baseline": Fraction(base) / 100}
    assert ruleset.holds("liver_comparable", ruleset.flag_values(overrides), **quantities) is expected


@pytest.mark.parametrize(
    "tlg, baseline_tlg, expected",
    [
        # conditions.tlg_meets_pmd (percist.yaml): TLG > 1.75 × baseline AND baseline > 0.
        ("175", "100", False),  # 1.75 × 100 = 175: +75 % exactly, not > 75 %
        ("175.1", "100", True),
        ("5", "0", False),  # zero baseline TLG [D]: 5 > 1.75 × 0, but the rule does not apply
    ],
)
def test_the_tlg_conjunction(tlg, baseline_tlg, expected):
    ruleset = get_engine().rulebase[percist.CRITERION]
    quantities = {"tlg": Decimal(tlg), "baseline_tlg": Decimal(baseline_tlg)}
    assert ruleset.holds("tlg_meets_pmd", ruleset.flag_values(), **quantities) is expected
