"""RANO 2010 from the rules of size spec §10 (the N1 example is held back): bidimensional products, PR ≥ 50 %, PD ≥ 25 %
from the smallest SPD, new lesions, the 12-week post-radiotherapy rule, T2/FLAIR, steroids and clinical status."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from rules.criteria import rano
from rules.engine import get_engine
from tests.rules import pet_cases as pc
from tests.rules.cases import ABSENT, NEW, Case, Lesion, T, c
from tests.rules.pet_cases import categories, observation, radiotherapy

D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
SCANS = {"BL": D("2024-01-02"), "TP1": D("2024-03-04"), "TP2": D("2024-04-29"), "TP3": D("2024-06-24")}


def assess(facts, overrides=None):
    return pc.run(rano, facts, overrides)


def glioma(*cells, new=None, observations=(), therapies=()):
    """One enhancing target 20×20 = 400 mm² at baseline, then ``cells`` at TP1, TP2…; optional new lesion cells."""
    labels = ["BL"] + [f"TP{i}" for i in range(1, len(cells) + 1)]
    lesions = [Lesion("T1 brain", T, "brain", cells=dict(zip(labels, (c(20, 20), *cells), strict=True)))]
    if new:
        lesions.append(Lesion("X1 brain", NEW, "brain", cells=new))
    facts = Case("glioma", C1D1, {k: SCANS[k] for k in labels}, tuple(lesions)).facts()
    return dataclasses.replace(
        facts, cancer_type="glioma", observations=tuple(observations), local_therapies=tuple(therapies)
    )


@pytest.mark.parametrize(
    "cell, expected",
    [
        # PD ≥ 25 % from the smallest SPD (baseline 400): 25×20 = 500 (+25 % exactly) → PD; 24.9×20 = 498 → SD.
        (c(25, 20), "PD"),
        (c(24.9, 20), "SD"),
        # PR ≥ 50 % decrease: 20×10 = 200 (−50 % exactly) → PR; 20×10.1 = 202 → SD.
        (c(20, 10), "PR"),
        (c(20, 10.1), "SD"),
    ],
)
def test_25_and_50_percent_boundaries(cell, expected):
    assert categories(assess(glioma(cell))) == [expected]


def test_pd_from_the_smallest_spd_and_assessment_ends_at_pd():
    # 400 → 200 (PR, nadir) → 250 (+25 % from 200 → PD, although −37.5 % from baseline); TP3 not graded (post-PD).
    a = assess(glioma(c(20, 10), c(25, 10), c(25, 10)))
    assert categories(a) == ["PR", "PD"]
    assert a.timepoints[1].nadir_sum == Decimal(200) and a.progression_date == D("2024-04-29")


def test_pr_sustained_4_weeks_for_the_confirmed_best_response():
    a = assess(glioma(c(20, 10), c(20, 10)))
    # PR on 2024-03-04 and again 56 days later (≥ 28) → confirmed PR.
    assert a.best_response_confirmed.category == "PR" and a.best_response_confirmed.confirmed


def test_any_new_lesion_is_pd():
    assert categories(assess(glioma(c(18, 18), new={"TP1": c(6, 5)}))) == ["PD"]


def test_complete_response_needs_off_steroids():
    # All enhancing disease gone → CR; on dexamethasone 4 (not off) → PR; no steroid record → CR (not worsening).
    assert categories(assess(glioma(ABSENT))) == ["CR"]
    on = [observation("steroid-dose", D("2024-01-01"), 4)]
    assert categories(assess(glioma(ABSENT, observations=on))) == ["PR"]
    # rano.off_steroids_max_dose 4 treats 4 as a physiological dose → CR.
    assert categories(assess(glioma(ABSENT, observations=on), {"rano.off_steroids_max_dose": 4})) == ["CR"]


def test_steroids_rules():
    # SPD +30 % (26×20 = 520) while steroids were reduced 8 → 4: not PD (RANO needs stable or increasing steroids).
    reduced = [observation("steroid-dose", D("2024-01-01"), 8), observation("steroid-dose", D("2024-02-01"), 4)]
    a = assess(glioma(c(26, 20), observations=reduced))
    assert categories(a) == ["SD"] and any("reduced" in w for w in a.timepoints[0].warnings)
    # PR-sized decrease while steroids were increased 4 → 8: not PR → SD.
    increased = [observation("steroid-dose", D("2024-01-01"), 4), observation("steroid-dose", D("2024-02-01"), 8)]
    assert categories(assess(glioma(c(20, 10), observations=increased))) == ["SD"]


def test_t2_flair_and_clinical_deterioration_are_pd_and_missing_means_not_worsening():
    a = assess(glioma(c(20, 20)))
    assert categories(a) == ["SD"]
    assert any("T2/FLAIR: not recorded" in line for line in a.timepoints[0].trace)
    t2 = [observation("t2-flair-progression", SCANS["TP1"], 1)]
    assert categories(assess(glioma(c(20, 20), observations=t2))) == ["PD"]
    clinical = [observation("clinical-deterioration", D("2024-02-20"), 1)]
    assert categories(assess(glioma(c(20, 20), observations=clinical))) == ["PD"]


@pytest.mark.parametrize(
    "rt_days_before, new, biopsy, expected",
    [
        # Radiotherapy 84 days before TP1 (2024-03-04): within the first 12 weeks → SPD +30 % is not PD → SD.
        (84, None, False, "SD"),
        # 85 days → outside the window → PD.
        (85, None, False, "PD"),
        # Within the window, a new lesion outside the radiation field (irradiated = False) → PD.
        (84, "outside", False, "PD"),
        # ... a new lesion whose field position is unknown → not PD.
        (84, "unknown", False, "SD"),
        # ... histologically proven progression → PD.
        (84, None, True, "PD"),
    ],
)
def test_12_week_post_radiotherapy_rule(rt_days_before, new, biopsy, expected):
    tp1 = SCANS["TP1"]
    facts = glioma(
        c(26, 20),
        new={"TP1": c(8, 6)} if new else None,
        observations=[observation("biopsy-progression", tp1, 1)] if biopsy else [],
        therapies=[radiotherapy(tp1 - dt.timedelta(days=rt_days_before), "T1 brain")],
    )
    if new == "outside":
        facts = dataclasses.replace(
            facts,
            measurements=tuple(
                dataclasses.replace(m, irradiated=False) if m.lesion_id == "X1 brain" else m for m in facts.measurements
            ),
        )
    a = assess(facts)
    assert categories(a) == [expected]
    if expected == "SD":
        assert any("pseudoprogression" in w for w in a.timepoints[0].warnings)


def test_baseline_measurability_warning():
    facts = Case(
        "small",
        C1D1,
        {"BL": SCANS["BL"], "TP1": SCANS["TP1"]},
        (Lesion("T1 brain", T, "brain", cells={"BL": c(12, 9), "TP1": c(12, 9)}),),
    ).facts()
    assert any("not measurable by RANO" in w for w in assess(facts).warnings)


@pytest.mark.parametrize(
    "long_axis, short_axis, expected",
    [
        # conditions.target_measurable in rano.yaml: both perpendicular diameters ≥ 10 mm.
        ("10", "10", True),  # 10 × 10 exactly (inclusive)
        ("25", "9.9", False),
        ("9.9", "25", False),
    ],
)
def test_target_measurable_needs_both_diameters_at_least_10_mm(long_axis, short_axis, expected):
    ruleset = get_engine().rulebase[rano.CRITERION]
    quantities = {"long_axis": Decimal(long_axis), "short_axis": Decimal(short_axis)}
    assert ruleset.holds("target_measurable", ruleset.flag_values(), **quantities) is expected


@pytest.mark.parametrize(
    "spd, nadir, baseline, pd, pr",
    [
        # conditions.spd_meets_progression (rano.yaml): SPD ≥ 1.25 × nadir AND SPD > 0;
        # conditions.spd_meets_partial_response: SPD ≤ 0.5 × baseline AND baseline > 0.
        ("500", "400", "400", True, False),  # 1.25 × 400 = 500: +25 % exactly → PD
        ("499.9", "400", "400", False, False),
        ("200", "200", "400", False, True),  # 0.5 × 400 = 200: −50 % exactly → PR
        ("200.1", "200", "400", False, False),
        # Zero nadir [D]: any SPD > 0 is PD (1.25 × 0 = 0), an SPD of 0 is not; a zero baseline allows no PR
        # (0 ≤ 0.5 × 0 holds, baseline > 0 does not). SPD 1 from baseline 400 is −99.75 %: PR as well.
        ("1", "0", "400", True, True),
        ("0", "0", "0", False, False),
    ],
)
def test_spd_conjunctions_of_the_rule_file(spd, nadir, baseline, pd, pr):
    ruleset = get_engine().rulebase[rano.CRITERION]
    flags = ruleset.flag_values()
    assert ruleset.holds("spd_meets_progression", flags, spd=Decimal(spd), nadir=Decimal(nadir)) is pd
    assert ruleset.holds("spd_meets_partial_response", flags, spd=Decimal(spd), baseline=Decimal(baseline)) is pr
