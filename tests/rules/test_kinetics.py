"""Tumour growth kinetics and the HPD / fast-progression / early-death definitions, from the worked examples of
``clinical/criteria-kinetics-irae.md`` §7 (K1, K3, K5, K7, K11, K12) with the arithmetic in comments, plus
every threshold boundary the spec names and the window and bookkeeping flags of §2.4 and §2.6.

months = days × 12/365.25; ln is natural; TGR = 100·(exp(3·ln(S1/S0)/Δt) − 1).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import pytest

from rules.criteria import recist11
from rules.engine import get_engine
from rules.evaluate import make_timeline
from rules.facts import (
    ClinicalObservation,
    LesionMeasurement,
    LesionRole,
    LesionStatus,
    LocalTherapy,
    LocalTherapyKind,
    NonTargetStatus,
    PatientFacts,
    Scan,
    TherapyLine,
)
from rules.kinetics.assess import assess_kinetics, reason_code
from rules.kinetics.definitions import DEFINITION_CODES, evaluate_definitions
from rules.kinetics.growth import (
    FERTE_MONTH_DAYS,
    KineticsUndefined,
    months_between,
    progression_pace,
    tumour_growth_kinetics,
    tumour_growth_rate,
)
from rules.kinetics.quantities import kinetic_quantities
from rules.kinetics.ruleset import CRITERION, KineticsRules

D = dt.date.fromisoformat
T, NT, NEW = LesionRole.TARGET, LesionRole.NON_TARGET, LesionRole.NEW
ABSENT, NOT_ASSESSED = LesionStatus.ABSENT, LesionStatus.NOT_ASSESSED


# --- a small fact builder --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KLesion:
    key: str
    role: LesionRole
    organ: str | None
    cells: dict
    """scan label → diameter in mm (LD; SA for nodes) or a LesionStatus."""
    nodal: bool = False


@dataclass(frozen=True)
class KCase:
    """A kinetics example: scans labelled E0…, E1 (baseline), E2…; C1D1; therapy stop; death; ECOG."""

    name: str
    c1d1: dt.date | None
    scans: dict
    lesions: tuple
    stop: dt.date | None = None
    deceased: dt.date | None = None
    death_from_progression: bool | None = None
    ecog: tuple = ()
    local_therapies: tuple = ()
    modalities: dict = field(default_factory=dict)
    extra_observations: tuple = ()

    def facts(self) -> PatientFacts:
        measurements = []
        for lesion in self.lesions:
            for label, cell in lesion.cells.items():
                status = cell if isinstance(cell, LesionStatus) else LesionStatus.PRESENT
                size = None if isinstance(cell, LesionStatus) else Decimal(str(cell))
                if status is ABSENT:
                    size = Decimal(0)
                measurements.append(
                    LesionMeasurement(
                        lesion_id=lesion.key,
                        scan_date=self.scans[label],
                        status=status,
                        role=lesion.role if label == "E1" or lesion.role is NEW else None,
                        nodal=lesion.nodal,
                        organ=lesion.organ,
                        long_axis_mm=size,
                        short_axis_mm=size,
                        nontarget_status=NonTargetStatus.PRESENT if lesion.role is NT else None,
                        label=lesion.key,
                        source="test",
                    )
                )
        observations = tuple(ClinicalObservation("ecog", day, Decimal(value)) for day, value in self.ecog)
        return PatientFacts(
            patient_ref=self.name,
            deceased_date=self.deceased,
            death_from_progression=self.death_from_progression,
            therapy_lines=()
            if self.c1d1 is None
            else (TherapyLine(agent="pembrolizumab", start_date=self.c1d1, stop_date=self.stop),),
            local_therapies=self.local_therapies,
            scans=tuple(Scan(scan_date=self.scans[label], modalities=mods) for label, mods in self.modalities.items()),
            measurements=tuple(measurements),
            observations=observations + self.extra_observations,
        )

    def replace(self, **changes) -> KCase:
        return dataclasses.replace(self, **changes)


def run(case: KCase, overrides=None):
    """Timeline, RECIST 1.1 and kinetics for a case, through the same calls evaluate.py makes."""
    engine = get_engine()
    timeline = make_timeline(case.facts(), engine, overrides)
    recist = recist11.assess(engine, timeline, overrides)
    return assess_kinetics(engine, timeline, recist, overrides)


def quantities(case: KCase, overrides=None):
    engine = get_engine()
    timeline = make_timeline(case.facts(), engine, overrides)
    return kinetic_quantities(engine, timeline, recist11.assess(engine, timeline, overrides), overrides)


def status(kinetics, code: str) -> str:
    return next(d for d in kinetics.definitions if d.code == code).status


def result(kinetics, code: str):
    return next(d for d in kinetics.definitions if d.code == code)


def statuses(kinetics) -> dict[str, str]:
    return {d.code: d.status for d in kinetics.definitions}


def days_after(day: dt.date, n: int) -> dt.date:
    return day + dt.timedelta(days=n)


# --- the worked examples ------------------------------------------------------------------------------------

# K1: E0 40 mm (2024-01-02), E1 44 mm (2024-02-01), C1D1 2024-02-05, E2 80 mm (2024-03-18), stop 2024-03-20;
# two new liver lesions at E2, liver involved at E1.
K1 = KCase(
    "K1",
    D("2024-02-05"),
    {"E0": D("2024-01-02"), "E1": D("2024-02-01"), "E2": D("2024-03-18")},
    (
        KLesion("T1 liver", T, "liver", {"E0": 25, "E1": 27, "E2": 50}),
        KLesion("T2 lung", T, "lung", {"E0": 15, "E1": 17, "E2": 30}),
        KLesion("N1 liver", NEW, "liver", {"E2": 12}),
        KLesion("N2 liver", NEW, "liver", {"E2": 11}),
    ),
    stop=D("2024-03-20"),
)

# K3: E0 60 mm (2024-01-08), E1 70 mm (2024-03-04), C1D1 2024-03-06, E2 86 mm (2024-04-29); ICI continues.
K3 = KCase(
    "K3",
    D("2024-03-06"),
    {"E0": D("2024-01-08"), "E1": D("2024-03-04"), "E2": D("2024-04-29")},
    (
        KLesion("T1 liver", T, "liver", {"E0": 35, "E1": 40, "E2": 50}),
        KLesion("T2 lung", T, "lung", {"E0": 25, "E1": 30, "E2": 36}),
    ),
)

# K5: E0 50 mm (2024-01-02), E1 52 mm (2024-03-01), C1D1 2024-03-04, E2 59 mm (2024-04-12).
K5 = KCase(
    "K5",
    D("2024-03-04"),
    {"E0": D("2024-01-02"), "E1": D("2024-03-01"), "E2": D("2024-04-12")},
    (
        KLesion("T1 liver", T, "liver", {"E0": 30, "E1": 31, "E2": 35}),
        KLesion("T2 lung", T, "lung", {"E0": 20, "E1": 21, "E2": 24}),
    ),
)

# K7: no E0. E1 50 mm (2024-02-05; liver involved, adrenal not), C1D1 2024-02-07, ECOG 1 → 3 (2024-03-20),
# E2 68 mm (2024-03-25) with 2 new liver lesions and 1 new adrenal metastasis, stop 2024-03-28.
K7 = KCase(
    "K7",
    D("2024-02-07"),
    {"E1": D("2024-02-05"), "E2": D("2024-03-25")},
    (
        KLesion("T1 liver", T, "liver", {"E1": 30, "E2": 40}),
        KLesion("T2 lung", T, "lung", {"E1": 20, "E2": 28}),
        KLesion("N1 liver", NEW, "liver", {"E2": 15}),
        KLesion("N2 liver", NEW, "liver", {"E2": 12}),
        KLesion("N3 left adrenal", NEW, "adrenal", {"E2": 14}),
    ),
    stop=D("2024-03-28"),
    ecog=((D("2024-02-05"), 1), (D("2024-03-20"), 3)),
)

# K11: E1 2024-04-02, C1D1 2024-04-05, no post-baseline scan, death from progression 2024-06-10.
K11 = KCase(
    "K11",
    D("2024-04-05"),
    {"E1": D("2024-04-02")},
    (KLesion("T1 liver", T, "liver", {"E1": 40}), KLesion("T2 lung", T, "lung", {"E1": 30})),
    deceased=D("2024-06-10"),
    death_from_progression=True,
)

# K12: chferte/TumorGrowthRate TGR_example.txt patient "120": 65 mm (2012-05-07), 72 mm (2012-06-28),
# 60 mm (2012-09-04). C1D1 is not in the source; 2012-07-02 puts E1 4 days before it.
K12 = KCase(
    "K12",
    D("2012-07-02"),
    {"E0": D("2012-05-07"), "E1": D("2012-06-28"), "E2": D("2012-09-04")},
    (
        KLesion("T1", T, "liver", {"E0": 40, "E1": 44, "E2": 36}),
        KLesion("T2", T, "lung", {"E0": 25, "E1": 28, "E2": 24}),
    ),
)

# Shrinking before therapy (K4 logic): E0 60 mm (2024-01-02), E1 50 mm (2024-03-01), C1D1 2024-03-04,
# E2 70 mm (2024-04-12), stop 2024-04-20.
SHRINKING = KCase(
    "shrinking",
    D("2024-03-04"),
    {"E0": D("2024-01-02"), "E1": D("2024-03-01"), "E2": D("2024-04-12")},
    (
        KLesion("T1 liver", T, "liver", {"E0": 36, "E1": 30, "E2": 42}),
        KLesion("T2 lung", T, "lung", {"E0": 24, "E1": 20, "E2": 28}),
    ),
    stop=D("2024-04-20"),
)


def test_k1_classic_hpd_every_definition_and_fast_progression():
    k = run(K1)
    assert (k.e0_date, k.e1_date, k.e2_date) == (D("2024-01-02"), D("2024-02-01"), D("2024-03-18"))
    # Reference: 30 days = 30 × 12/365.25 = 0.9856 months; ln(44/40) = 0.09531; TG 0.2901 → TGR_ref 33.66 %/month.
    assert round(k.tgr_reference, 2) == 33.66
    # TGK_ref = 4/0.9856 = 4.058 mm/month.
    assert round(k.tgk_reference, 3) == 4.058
    # Experimental: 46 days = 1.5113 months; ln(80/44) = 0.59784; TG 1.1867 → TGR_exp 227.64; TGK_exp 36/1.5113 = 23.82.
    assert round(k.tgr_experimental, 2) == 227.64
    assert round(k.tgk_experimental, 2) == 23.82
    # TGR ratio 227.64/33.66 = 6.76; ΔTGR 193.98; TGKR 23.82/4.058 = 5.87.
    assert round(k.tgr_ratio, 2) == 6.76
    assert round(k.tgr_difference, 2) == 193.98
    assert round(k.tgk_ratio, 2) == 5.87
    # Pace: ref (4/40 × 100)/0.9856 = 10.15 %/month; exp 81.82/1.5113 = 54.14; ratio 5.34.
    q = quantities(K1)
    assert round(q.pace_ratio, 2) == 5.34
    assert q.percent_e1_e2 == Fraction(36, 44) * 100  # +81.8 %
    assert statuses(k) == {
        "champiat-2017": "met",  # PD and 6.76 ≥ 2
        "saada-bouzid-2017": "met",  # TGKR 5.87 ≥ 2
        "kato-2017": "met",  # TTF 44 days < 2 months, +81.8 % > 50 %, pace ratio 5.34 > 2
        "ferrara-2018": "met",  # PD and ΔTGR 194 > 50
        "kanjanapan-2019": "met",  # PD and 6.76 ≥ 2
        "lo-russo-2019": "met",  # TTF ✓, ≥ 50 % ✓, 2 new liver lesions ✓ → 3/5 (ECOG unknown), PD
        "matos-2020": "met",  # 42 days ≤ 2 months, PD, +81.8 % > 40 %
        "kim-2019": "met",  # provisional: both ratios ≥ 2, TTF < 2 months, windows 34/42 days ≤ 84
        "kas-2020": "met",  # +81.8 % > 20 % and ΔTGR 194 > 100
        "fast-progression-oak": "met",  # 42 days ≤ 42, and 80·2 = 160 ≥ 44·3 = 132
        "fast-progression-ferrara-2020": "not-met",  # E1 → E2 is 46 days > 42: the anchor matters
        "early-death": "not-met",  # alive
    }
    assert "80·2 = 160 vs 44·3 = 132" in result(k, "fast-progression-oak").reason
    assert result(k, "kato-2017").inputs["ttf_days"] == 44
    assert result(k, "lo-russo-2019").inputs["criteria_met"] == 3
    assert "[U]" in result(k, "kim-2019").reason and result(k, "kim-2019").inputs["provisional"] is True
    assert "[U]" in result(k, "matos-2020").reason
    assert not any(d.borderline for d in k.definitions)
    # Volume doubling time = ln 2 / 1.1867 = 0.584 months ≈ 17.8 days (spec §2.1).
    assert [d.code for d in k.definitions] == list(DEFINITION_CODES)
    assert all(d.source for d in k.definitions)


def test_k3_recist_pd_that_is_not_hyperprogression():
    k = run(K3)
    q = quantities(K3)
    # Reference 56 days = 1.8398 months: ln(70/60) = 0.15415 → TG 0.2514 → TGR_ref 28.58; TGK_ref 10/1.8398 = 5.435.
    assert round(k.tgr_reference, 2) == 28.58
    assert round(k.tgk_reference, 3) == 5.435
    # Experimental 56 days: ln(86/70) = 0.20585 → TG 0.3357 → TGR_exp 39.89; TGK_exp 16/1.8398 = 8.696.
    assert round(k.tgr_experimental, 2) == 39.89
    assert round(k.tgk_experimental, 3) == 8.696
    # TGR ratio 1.40, ΔTGR 11.31, TGKR 1.60, pace ratio 1.37; %Δ = 16/70 = +22.9 % → RECIST PD (≥ 20 % and ≥ 5 mm).
    assert (round(k.tgr_ratio, 2), round(k.tgr_difference, 2), round(k.tgk_ratio, 2)) == (1.40, 11.31, 1.60)
    assert round(q.pace_ratio, 2) == 1.37
    assert q.recist_e2 == "PD"
    s = statuses(k)
    assert s["champiat-2017"] == "not-met"  # 1.40 < 2
    assert s["saada-bouzid-2017"] == "not-met"  # 1.60 < 2
    assert s["kato-2017"] == "not-met"  # +22.9 % ≤ 50 % (TTF still pending: 54 days on treatment)
    assert reason_code(result(k, "kato-2017")) == "BELOW_THRESHOLD"
    assert s["ferrara-2018"] == "not-met"  # 11.3 ≤ 50
    assert s["kanjanapan-2019"] == "not-met"
    assert s["lo-russo-2019"] == "not-met"  # 0 criteria met, at most 2 (TTF, ECOG unknown)
    assert s["matos-2020"] == "not-met"  # 22.9 % < 40 % and no new lesions
    assert s["kim-2019"] == "not-met"  # both ratios below 2: no reading of the conjunction is met
    assert s["kas-2020"] == "not-met"  # 11.3 ≤ 100
    assert s["fast-progression-oak"] == "not-met"  # E2 54 days after C1D1 > 42
    assert s["fast-progression-ferrara-2020"] == "not-met"
    assert "FP_NOT_ASSESSABLE" in k.flags
    assert "PENDING_TTF" in k.flags


def test_k5_kinetic_acceleration_without_recist_pd():
    k = run(K5)
    # Reference 59 days = 1.9384 months: ln(52/50) = 0.03922 → TG 0.0607 → TGR_ref 6.26; TGK_ref 2/1.9384 = 1.032.
    assert round(k.tgr_reference, 2) == 6.26
    assert round(k.tgk_reference, 3) == 1.032
    # Experimental 42 days = 1.3799 months: ln(59/52) = 0.12629 → TG 0.2746 → TGR_exp 31.60; TGK_exp 7/1.3799 = 5.073.
    assert round(k.tgr_experimental, 2) == 31.60
    assert round(k.tgk_experimental, 3) == 5.073
    # TGR ratio 5.05, ΔTGR 25.34, TGKR 4.92; %Δ 7/52 = +13.5 % → RECIST SD.
    assert (round(k.tgr_ratio, 2), round(k.tgr_difference, 2), round(k.tgk_ratio, 2)) == (5.05, 25.34, 4.92)
    s = statuses(k)
    assert s["champiat-2017"] == "not-met" and reason_code(result(k, "champiat-2017")) == "NO_RECIST_PD"
    assert s["ferrara-2018"] == "not-met"  # no PD, and 25.3 ≤ 50
    assert s["kas-2020"] == "not-met"
    assert s["saada-bouzid-2017"] == "met"  # H2_REQUIRE_PD = false: TGKR 4.92 ≥ 2
    assert s["kanjanapan-2019"] == "not-met"
    assert s["lo-russo-2019"] == "not-met"  # H5_REQUIRE_PD and no PD
    assert s["matos-2020"] == "not-met"
    assert s["kim-2019"] == "not-evaluable" and reason_code(result(k, "kim-2019")) == "PENDING_TTF"
    assert s["fast-progression-oak"] == "not-met"  # 39 days ≤ 42 but 59·2 = 118 < 52·3 = 156
    assert s["fast-progression-ferrara-2020"] == "not-met"  # 42 days ≤ 42 but +13.5 %
    # H2_REQUIRE_PD = true: not HPD.
    strict = run(K5, {"kinetics.H2_REQUIRE_PD": True})
    assert status(strict, "saada-bouzid-2017") == "not-met"
    assert reason_code(result(strict, "saada-bouzid-2017")) == "NO_RECIST_PD"


def test_k7_lo_russo_without_kinetics():
    k = run(K7)
    # C1D1 → E2 = 47 days; %Δ = 18/50 = +36 % → PD; TTF = 50 days.
    s = statuses(k)
    lr = result(k, "lo-russo-2019")
    # 1 TTF 50 days ✓; 2 +36 % ✗; 3 two new liver lesions ✓; 4 new organ (adrenal) ✓; 5 ECOG 1 → 3 ✓ → 4/5, PD.
    assert lr.status == "met"
    assert lr.inputs["criteria_met"] == 4 and lr.inputs["criteria_possible"] == 4
    assert (
        lr.inputs["ttf_under_two_months"],
        lr.inputs["burden_increase_at_least_50"],
        lr.inputs["two_new_lesions_in_involved_organ"],
        lr.inputs["new_organ"],
        lr.inputs["ecog_worsening"],
    ) == (True, False, True, True, True)
    assert s["matos-2020"] == "met"  # ≥ 20 % + new-organ branch (engine default)
    off = run(K7, {"kinetics.MATOS_NEWLESION_BRANCH": False})
    assert status(off, "matos-2020") == "not-met"  # +36 % < 40 %
    for code in (
        "champiat-2017",
        "saada-bouzid-2017",
        "kato-2017",
        "ferrara-2018",
        "kanjanapan-2019",
        "kim-2019",
        "kas-2020",
    ):
        assert s[code] == "not-evaluable", code
        assert reason_code(result(k, code)) == "E0_MISSING", code
    assert s["fast-progression-oak"] == "not-met"  # 47 days > 42; +36 % < 50 %
    assert k.tgr_reference is None and k.tgr_difference is None
    assert "E0_MISSING" in k.flags


def test_k11_early_death_and_death_branch_fast_progression():
    k = run(K11)
    s = statuses(k)
    # Baseline CT → death = 69 days ≤ 84 → early death.
    assert s["early-death"] == "met"
    assert result(k, "early-death").inputs["days_e1_to_death"] == 69
    # C1D1 → death = 66 days ≤ 84 with no post-baseline scan → FP (OAK) death branch.
    oak = result(k, "fast-progression-oak")
    assert oak.status == "met" and reason_code(oak) == "MET_DEATH_BRANCH"
    assert oak.inputs["days_c1d1_to_death"] == 66 and oak.inputs["death_branch"] is True
    # Every HPD definition: not evaluable (no E2).
    for code in DEFINITION_CODES[:9]:
        assert s[code] == "not-evaluable", code
        assert reason_code(result(k, code)) == "E2_MISSING", code
    # Ferrara's FP has no death branch, and a patient who died without a scan can no longer meet it.
    assert s["fast-progression-ferrara-2020"] == "not-met"


def test_k12_golden_row_of_the_reference_tgr_code():
    # Reference: 52 days = 1.70842 months; ln(72/65) = 0.102279 → TG 0.179603 → TGR.ref 19.67 %/month.
    # Experimental: 68 days = 2.23409 months; ln(60/72) = −0.182322 → TG −0.244827 → TGR.exp −21.72 %/month.
    k = run(K12)
    assert round(k.tgr_reference, 2) == 19.67
    assert round(k.tgr_experimental, 2) == -21.72
    assert round(months_between(D("2012-05-07"), D("2012-06-28")), 5) == 1.70842
    assert round(months_between(D("2012-06-28"), D("2012-09-04")), 5) == 2.23409
    # The pure function gives the same numbers.
    assert round(tumour_growth_rate(65, 72, D("2012-05-07"), D("2012-06-28")), 2) == 19.67
    assert round(tumour_growth_rate(72, 60, D("2012-06-28"), D("2012-09-04")), 2) == -21.72
    # RECIST −16.7 % → SD: no PD-based definition; ratio −1.10 < 2 ("antitumor activity").
    s = statuses(k)
    assert s["champiat-2017"] == "not-met" and s["ferrara-2018"] == "not-met" and s["kas-2020"] == "not-met"
    assert s["saada-bouzid-2017"] == "not-met"  # TGKR = (−12/2.234)/(7/1.708) = −1.31 < 2
    assert s["fast-progression-oak"] == "not-met"


def test_shrinking_before_therapy_ratios_undefined_delta_defined():
    # K4 logic. Reference 59 days = 1.9384 months: ln(50/60) = −0.18232 → TG −0.28218 → TGR_ref −24.59 ≤ 0.
    # Experimental 42 days = 1.3799 months: ln(70/50) = 0.33647 → TG 0.73153 → TGR_exp 107.83; ΔTGR 132.41.
    k = run(SHRINKING)
    assert round(k.tgr_reference, 2) == -24.59
    assert round(k.tgr_experimental, 2) == 107.83
    assert round(k.tgr_difference, 2) == 132.41
    assert k.tgr_ratio is None and k.tgk_ratio is None
    assert "UNDEFINED_RATIO" in k.flags
    for code in ("champiat-2017", "saada-bouzid-2017", "kato-2017", "kanjanapan-2019", "kim-2019"):
        assert status(k, code) == "not-evaluable", code
        assert reason_code(result(k, code)) == "UNDEFINED_RATIO", code
    # ΔTGR is still defined: PD (+40 %, +20 mm) and ΔTGR 132.41 > 50 / > 100.
    assert status(k, "ferrara-2018") == "met"
    assert status(k, "kas-2020") == "met"
    # Without PD the ratio definitions are still not evaluable, never "not met".
    no_pd = SHRINKING.replace(
        lesions=(
            KLesion("T1 liver", T, "liver", {"E0": 36, "E1": 30, "E2": 33}),
            KLesion("T2 lung", T, "lung", {"E0": 24, "E1": 20, "E2": 22}),
        )
    )
    k2 = run(no_pd)
    for code in ("champiat-2017", "saada-bouzid-2017", "kanjanapan-2019"):
        assert status(k2, code) == "not-evaluable" and reason_code(result(k2, code)) == "UNDEFINED_RATIO", code
    assert status(k2, "ferrara-2018") == "not-met"


# --- pure arithmetic ------------------------------------------------------------------------------------------


def test_months_and_growth_rate_edge_cases():
    assert months_between(D("2024-01-01"), D("2024-01-31")) == 30 * 12 / 365.25
    assert FERTE_MONTH_DAYS == 365.25 / 12
    with pytest.raises(KineticsUndefined):
        tumour_growth_rate(0, 10, D("2024-01-01"), D("2024-02-01"))  # D0 = 0
    with pytest.raises(KineticsUndefined):
        tumour_growth_rate(10, 12, D("2024-01-01"), D("2024-01-01"))  # Δt = 0
    assert tumour_growth_rate(10, 0, D("2024-01-01"), D("2024-02-01")) == -100.0  # floor
    assert tumour_growth_rate(10, 10, D("2024-01-01"), D("2024-02-01")) == 0.0
    # TGK: (44 − 40)/0.9856 = 4.058 mm/month (K1).
    assert round(tumour_growth_kinetics(40, 44, D("2024-01-02"), D("2024-02-01")), 3) == 4.058
    assert round(progression_pace(40, 44, D("2024-01-02"), D("2024-02-01")), 2) == 10.15


def test_rule_file_flags_match_their_thresholds():
    rules = KineticsRules(get_engine())
    linked = {name: spec.flag for name, spec in rules.ruleset.thresholds.items() if spec.flag}
    assert len(linked) == 10
    for name, path in linked.items():
        flag, *index = path.split(".")
        default = rules.flag(flag)
        if index:
            default = default[int(index[0])]
        assert Fraction(str(default)) == rules.ruleset.threshold(name).value == rules.threshold(name).value, name
    assert float(Fraction(str(rules.flag("MONTH_DAYS")))) == FERTE_MONTH_DAYS
    assert rules.flag("PRIMARY_HPD_DEFINITION") in DEFINITION_CODES
    assert set(rules.ruleset.parameters["definitions"]) == set(DEFINITION_CODES)
    assert rules.ruleset.criterion == CRITERION
    # Spec §8 defaults.
    assert rules.flags() | {} == {
        "MONTH_DAYS": "30.4375",
        "E0_WINDOW_DAYS": [14, 180],
        "E2_WINDOW_DAYS": [21, 120],
        "KINETICS_MIN_INTERVAL_DAYS": 21,
        "ABSENT_AT_E0_AS_ZERO": True,
        "REF_SUM_MAX_DROPPED_FRACTION": "1/3",
        "H2_REQUIRE_PD": False,
        "H5_REQUIRE_PD": True,
        "LR_ECOG_MODE": "delta_ge_2",
        "MATOS_NEWLESION_BRANCH": True,
        "MATOS_40_INCLUSIVE": False,
        "TWO_MONTHS_DAYS": "60.875",
        "FP_ANCHOR": "C1D1",
        "PRIMARY_HPD_DEFINITION": "kas-2020",
        "BORDERLINE_REL_TOL": "0.02",
        "KAS_PROGRESSION_COMPONENT": "target-sum-over-20",
    }


# --- threshold boundaries ------------------------------------------------------------------------------------


def _with_rates(case: KCase, **values):
    q = quantities(case)
    return {d.code: d for d in evaluate_definitions(get_engine(), dataclasses.replace(q, **values))}


def test_tgr_ratio_exactly_2_is_inclusive():
    # K1 quantities (PD at E2) with TGR_ref 30 and TGR_exp 60: ratio exactly 2.0 → ≥ 2 holds, BORDERLINE.
    out = _with_rates(K1, tgr_reference=30.0, tgr_experimental=60.0)
    assert out["champiat-2017"].status == "met" and out["champiat-2017"].borderline
    assert out["kanjanapan-2019"].status == "met"
    # Within the 1e-9 float tolerance below 2 still holds; clearly below does not.
    assert _with_rates(K1, tgr_reference=30.0, tgr_experimental=60.0 - 3e-9)["champiat-2017"].status == "met"
    below = _with_rates(K1, tgr_reference=30.0, tgr_experimental=59.9999)["champiat-2017"]
    assert below.status == "not-met" and below.borderline


def test_tgk_ratio_exactly_2_from_scans():
    # Equal 56-day intervals (K3 dates): TGK_ref = 4/m, TGK_exp = 8/m → TGKR exactly 2.0 → Saâda-Bouzid met.
    case = K3.replace(
        lesions=(
            KLesion("T1", T, "liver", {"E0": 25, "E1": 27, "E2": 31}),
            KLesion("T2", T, "lung", {"E0": 15, "E1": 17, "E2": 21}),
        )
    )
    k = run(case)
    assert k.tgk_ratio == 2.0
    sb = result(k, "saada-bouzid-2017")
    assert sb.status == "met" and sb.borderline


def test_delta_tgr_exactly_50_and_100_are_strict():
    out = _with_rates(K1, tgr_reference=10.0, tgr_experimental=60.0)  # ΔTGR = 50.0
    assert out["ferrara-2018"].status == "not-met" and out["ferrara-2018"].borderline
    assert _with_rates(K1, tgr_reference=10.0, tgr_experimental=60.0 + 5e-10)["ferrara-2018"].status == "not-met"
    assert _with_rates(K1, tgr_reference=10.0, tgr_experimental=60.0 + 2e-9)["ferrara-2018"].status == "met"
    out = _with_rates(K1, tgr_reference=10.0, tgr_experimental=110.0)  # ΔTGR = 100.0
    assert out["kas-2020"].status == "not-met" and out["kas-2020"].borderline
    assert _with_rates(K1, tgr_reference=10.0, tgr_experimental=110.5)["kas-2020"].status == "met"


def test_plus_50_percent_exactly_inclusive_for_fp_and_lo_russo_strict_for_kato():
    # K1 with S(E2) = 66: 66·2 = 132 = 44·3 → exactly +50 %.
    case = K1.replace(
        lesions=(
            KLesion("T1 liver", T, "liver", {"E0": 25, "E1": 27, "E2": 41}),
            KLesion("T2 lung", T, "lung", {"E0": 15, "E1": 17, "E2": 25}),
            *K1.lesions[2:],
        )
    )
    k = run(case)
    oak = result(k, "fast-progression-oak")
    assert oak.status == "met" and oak.borderline  # ≥ 50 % inclusive, 42 days ≤ 42
    assert "66·2 = 132 vs 44·3 = 132" in oak.reason
    assert result(k, "lo-russo-2019").inputs["burden_increase_at_least_50"] is True
    kato = result(k, "kato-2017")
    assert kato.status == "not-met" and reason_code(kato) == "BELOW_THRESHOLD"  # > 50 % strict


def test_kas_plus_20_percent_is_strict():
    # E1 50 → E2 60 (+20 % exactly, +10 mm: RECIST PD) with ΔTGR > 100 → Kas not met (> 20 % required).
    q = quantities(K1)
    base = dataclasses.replace(q, s1=Decimal(50), s2=Decimal(60), tgr_reference=10.0, tgr_experimental=150.0)
    out = {d.code: d for d in evaluate_definitions(get_engine(), base)}
    assert out["kas-2020"].status == "not-met" and reason_code(out["kas-2020"]) == "NO_PROGRESSION"
    out = {d.code: d for d in evaluate_definitions(get_engine(), dataclasses.replace(base, s2=Decimal("60.1")))}
    assert out["kas-2020"].status == "met"
    # KAS_PROGRESSION_COMPONENT = recist-pd: RECIST PD at E2 decides instead.
    out = {
        d.code: d for d in evaluate_definitions(get_engine(), base, {"kinetics.KAS_PROGRESSION_COMPONENT": "recist-pd"})
    }
    assert out["kas-2020"].status == "met"


@pytest.mark.parametrize("ttf_days, expected", [(60, "met"), (61, "not-met")])
def test_ttf_60_versus_61_days(ttf_days, expected):
    # 2 months = 60.875 days: TTF < 2 months ⇔ TTF ≤ 60 days.
    k = run(K1.replace(stop=days_after(K1.c1d1, ttf_days)))
    kato = result(k, "kato-2017")
    assert kato.status == expected
    assert kato.inputs["ttf_days"] == ttf_days
    if expected == "not-met":
        assert reason_code(kato) == "TTF_NOT_UNDER_TWO_MONTHS"


def test_pending_ttf_until_c1d1_plus_61_days():
    # K1 still on treatment, record ends at E2 (day 42): TTF pending → Kato not evaluable PENDING_TTF.
    k = run(K1.replace(stop=None))
    assert status(k, "kato-2017") == "not-evaluable" and reason_code(result(k, "kato-2017")) == "PENDING_TTF"
    assert "PENDING_TTF" in k.flags
    # Lo Russo without TTF: ≥ 50 % and 2 new liver lesions are 2 met; TTF pending and ECOG unknown → 4 possible.
    assert status(k, "lo-russo-2019") == "not-evaluable"
    # A fact dated C1D1 + 60 keeps it pending; C1D1 + 61 while on treatment decides TTF ≥ 2 months.
    for day, expected in ((60, "not-evaluable"), (61, "not-met")):
        later = K1.replace(
            stop=None, extra_observations=(ClinicalObservation("weight", days_after(K1.c1d1, day), Decimal(70)),)
        )
        assert status(run(later), "kato-2017") == expected, day


@pytest.mark.parametrize("day, expected", [(42, "met"), (43, "not-met")])
def test_fast_progression_e2_at_42_versus_43_days(day, expected):
    case = K1.replace(scans={**K1.scans, "E2": days_after(K1.c1d1, day)})
    k = run(case)
    assert status(k, "fast-progression-oak") == expected
    assert ("FP_NOT_ASSESSABLE" in k.flags) is (day > 42)


@pytest.mark.parametrize("day, expected", [(84, "met"), (85, "not-met")])
def test_fast_progression_death_at_84_versus_85_days_after_c1d1(day, expected):
    k = run(K11.replace(deceased=days_after(K11.c1d1, day)))
    assert status(k, "fast-progression-oak") == expected


@pytest.mark.parametrize("day, expected", [(84, "met"), (85, "not-met")])
def test_early_death_at_84_versus_85_days_after_baseline(day, expected):
    k = run(K11.replace(deceased=days_after(K11.scans["E1"], day)))
    assert status(k, "early-death") == expected


def test_death_cause_unknown_is_not_evaluable_and_other_cause_not_met():
    assert status(run(K11.replace(death_from_progression=None)), "early-death") == "not-evaluable"
    assert status(run(K11.replace(death_from_progression=None)), "fast-progression-oak") == "not-evaluable"
    assert status(run(K11.replace(death_from_progression=False)), "early-death") == "not-met"
    # A post-baseline scan closes the OAK death branch (K3 patient dying on 2024-05-01, after E2).
    k = run(K3.replace(deceased=D("2024-05-01"), death_from_progression=True))
    assert result(k, "fast-progression-oak").inputs["death_branch"] is False
    assert status(k, "early-death") == "met"  # 2024-03-04 → 2024-05-01 = 58 days ≤ 84


MATOS_40 = KCase(
    "matos-40",
    D("2024-03-04"),
    {"E1": D("2024-03-01"), "E2": D("2024-04-13")},
    (KLesion("T1", T, "liver", {"E1": 30, "E2": 42}), KLesion("T2", T, "lung", {"E1": 20, "E2": 28})),
)


def test_matos_40_percent_is_strict_by_default():
    # S 50 → 70: 70·5 = 350 = 50·7 → exactly +40 %; RECIST PD (+20 mm); E2 40 days after C1D1; no new lesions.
    k = run(MATOS_40)
    matos = result(k, "matos-2020")
    assert matos.status == "not-met" and matos.borderline
    assert status(run(MATOS_40, {"kinetics.MATOS_40_INCLUSIVE": True}), "matos-2020") == "met"


def test_matos_first_evaluation_after_two_months():
    late = MATOS_40.replace(
        scans={"E1": D("2024-03-01"), "E2": days_after(D("2024-03-04"), 61)},
        lesions=(KLesion("T1", T, "liver", {"E1": 30, "E2": 50}), KLesion("T2", T, "lung", {"E1": 20, "E2": 30})),
    )
    assert reason_code(result(run(late), "matos-2020")) == "FIRST_EVALUATION_AFTER_TWO_MONTHS"
    on_time = late.replace(scans={"E1": D("2024-03-01"), "E2": days_after(D("2024-03-04"), 60)})
    assert status(run(on_time), "matos-2020") == "met"


def test_lo_russo_ecog_modes():
    # K7 without the adrenal metastasis: TTF ✓, +36 % ✗, 2 new liver ✓, no new organ ✗ → ECOG decides.
    base = K7.replace(lesions=K7.lesions[:4])
    assert status(run(base), "lo-russo-2019") == "met"  # ECOG 1 → 3: worsening 2 ≥ 2
    one_point = base.replace(ecog=((D("2024-02-05"), 1), (D("2024-03-20"), 2)))
    assert status(run(one_point), "lo-russo-2019") == "not-met"  # delta 1 < 2
    assert status(run(one_point, {"kinetics.LR_ECOG_MODE": "reaches_ge_2"}), "lo-russo-2019") == "met"
    no_ecog = base.replace(ecog=())
    assert status(run(no_ecog), "lo-russo-2019") == "not-evaluable"  # 2 met, 3 possible
    # ECOG after the first 2 months (C1D1 + 61) does not count.
    late = base.replace(ecog=((D("2024-02-05"), 1), (days_after(K7.c1d1, 61), 3)))
    assert status(run(late), "lo-russo-2019") == "not-evaluable"


def test_lo_russo_without_pd_requirement():
    # K5 (no PD): with H5_REQUIRE_PD = false the count alone decides (0 met, 2 possible → not met).
    assert status(run(K5, {"kinetics.H5_REQUIRE_PD": False}), "lo-russo-2019") == "not-met"


# --- windows and bookkeeping (spec §2.4, §2.6) -------------------------------------------------------------


def _two_targets(e0=None, e1=(27, 17), e2=(50, 30), **more):
    cells1 = {"E1": e1[0], "E2": e2[0]}
    cells2 = {"E1": e1[1], "E2": e2[1]}
    for label, values in (e0 or {}).items():
        cells1[label], cells2[label] = values
    return (KLesion("T1 liver", T, "liver", cells1), KLesion("T2 lung", T, "lung", cells2))


def test_e0_prefers_latest_scan_at_least_28_days_before_e1():
    e1 = D("2024-02-01")
    case = K1.replace(
        scans={"E0a": days_after(e1, -40), "E0b": days_after(e1, -20), "E1": e1, "E2": D("2024-03-18")},
        lesions=_two_targets({"E0a": (25, 15), "E0b": (26, 16)}),
    )
    assert run(case).e0_date == days_after(e1, -40)
    only_recent = case.replace(
        scans={"E0b": days_after(e1, -20), "E1": e1, "E2": D("2024-03-18")}, lesions=_two_targets({"E0b": (26, 16)})
    )
    k = run(only_recent)
    assert k.e0_date == days_after(e1, -20)
    assert "KINETICS_INTERVAL_TOO_SHORT" in k.flags  # 20 days < 21


@pytest.mark.parametrize("days_before, accepted", [(13, False), (14, True), (180, True), (181, False)])
def test_e0_window_14_to_180_days(days_before, accepted):
    e1 = D("2024-02-01")
    case = K1.replace(
        scans={"E0": days_after(e1, -days_before), "E1": e1, "E2": D("2024-03-18")},
        lesions=_two_targets({"E0": (25, 15)}),
    )
    k = run(case)
    assert (k.e0_date is not None) is accepted
    if not accepted:
        assert {"E0_OUTSIDE_WINDOW", "E0_MISSING"} <= set(k.flags)
        assert reason_code(result(k, "kas-2020")) == "E0_MISSING"


def test_baseline_stale_and_atypical_e2_window():
    stale = K1.replace(c1d1=D("2024-03-02"), stop=None, scans={**K1.scans, "E2": D("2024-04-01")})  # E1 30 days before
    assert "BASELINE_STALE" in run(stale).flags
    early = K1.replace(scans={**K1.scans, "E2": days_after(K1.c1d1, 14)})
    k = run(early)
    assert "WINDOW_ATYPICAL" in k.flags and k.tgr_experimental is not None  # computed, flagged
    late = K1.replace(scans={**K1.scans, "E2": days_after(K1.c1d1, 121)})
    assert "WINDOW_ATYPICAL" in run(late).flags
    assert "WINDOW_ATYPICAL" not in run(K1.replace(scans={**K1.scans, "E2": days_after(K1.c1d1, 120)})).flags
    # The window is a §8 flag: E2_WINDOW_DAYS = [14, 120] accepts the 14-day scan.
    assert "WINDOW_ATYPICAL" not in run(early, {"kinetics.E2_WINDOW_DAYS": [14, 120]}).flags


def _three_targets(e0_cells):
    sizes = {"T1": (30, 36), "T2": (20, 24), "T3": (10, 12)}
    return tuple(
        KLesion(
            name,
            T,
            "liver" if name != "T2" else "lung",
            {"E1": e1, "E2": e2, **({"E0": e0_cells[name]} if e0_cells.get(name) is not None else {})},
        )
        for name, (e1, e2) in sizes.items()
    )


def test_ref_sum_reduced_when_a_target_is_not_assessed_at_e0():
    # T3 (10 of 60 mm) not assessed at E0: dropped from S(E0) and S(E1) → 1/6 ≤ 1/3 → reference evaluable.
    case = K1.replace(lesions=_three_targets({"T1": 28, "T2": 18, "T3": NOT_ASSESSED}))
    q = quantities(case)
    assert "REF_SUM_REDUCED" in q.flags and q.reference == "evaluable"
    assert (q.s0_reference, q.s1_reference, q.s1) == (Decimal(46), Decimal(50), Decimal(60))
    # T3 missing from the E0 report entirely: the same.
    assert quantities(K1.replace(lesions=_three_targets({"T1": 28, "T2": 18}))).s1_reference == Decimal(50)


def test_ref_sum_more_than_a_third_dropped_is_not_evaluable():
    # T2 + T3 (30 of 60 mm) NE at E0: 1/2 > 1/3 → TGR_ref not evaluable; TGR-based definitions not evaluable.
    k = run(K1.replace(lesions=_three_targets({"T1": 28, "T2": NOT_ASSESSED, "T3": NOT_ASSESSED})))
    assert {"REF_SUM_REDUCED", "TGR_REF_NOT_EVALUABLE"} <= set(k.flags)
    assert reason_code(result(k, "champiat-2017")) == "TGR_REF_NOT_EVALUABLE"
    assert k.tgr_reference is None
    # Exactly one third dropped (inclusive): T1 40, T2 10, T3 10 → 20/60 = 1/3 → still evaluable.
    exact = K1.replace(
        lesions=(
            KLesion("T1", T, "liver", {"E0": 38, "E1": 40, "E2": 60}),
            KLesion("T2", T, "lung", {"E0": NOT_ASSESSED, "E1": 10, "E2": 14}),
            KLesion("T3", T, "bone", {"E0": NOT_ASSESSED, "E1": 10, "E2": 14}),
        )
    )
    assert quantities(exact).reference == "evaluable"


def test_absent_at_e0_counts_as_zero_by_default():
    case = K1.replace(lesions=_three_targets({"T1": 28, "T2": 18, "T3": ABSENT}))
    q = quantities(case)
    assert "ABSENT_AT_E0_AS_ZERO" in q.flags
    assert (q.s0_reference, q.s1_reference) == (Decimal(46), Decimal(60))
    off = quantities(case, {"kinetics.ABSENT_AT_E0_AS_ZERO": False})
    assert (off.s0_reference, off.s1_reference) == (Decimal(46), Decimal(50))
    assert "REF_SUM_REDUCED" in off.flags


def test_d0_zero_is_not_evaluable_and_d1_zero_is_the_floor():
    # Every target absent at E0: S(E0) = 0 → ln undefined → TGR_ref not evaluable.
    k = run(K1.replace(lesions=_two_targets({"E0": (ABSENT, ABSENT)})))
    assert "TGR_REF_NOT_EVALUABLE" in k.flags and k.tgr_reference is None
    # Every target gone at E2: S(E2) = 0 → TGR_exp = −100 (floor), flagged.
    k = run(K1.replace(lesions=_two_targets({"E0": (25, 15)}, e2=(ABSENT, ABSENT))))
    assert k.tgr_experimental == -100.0 and "TGR_FLOOR" in k.flags


def test_new_and_nontarget_lesions_do_not_enter_the_sums():
    case = K1.replace(lesions=(*K1.lesions, KLesion("NT bone", NT, "bone", {"E0": 40, "E1": 45, "E2": 60})))
    q = quantities(case)
    assert (q.s0_reference, q.s1, q.s2) == (Decimal(40), Decimal(44), Decimal(80))  # new N1/N2 and NT excluded


def test_locally_treated_target_excluded_from_every_sum():
    rt = LocalTherapy(LocalTherapyKind.RADIOTHERAPY, D("2024-02-20"), ("T2 lung",))
    q = quantities(K1.replace(local_therapies=(rt,)))
    assert "LOCALLY_TREATED_EXCLUDED" in q.flags
    assert (q.s0_reference, q.s1, q.s2) == (Decimal(25), Decimal(27), Decimal(50))  # T1 only


def test_target_not_assessed_at_e2_partial_sum():
    # T2 not assessed at E2: S(E2) partial 50 mm. 50·2 = 100 ≥ 44·3 = 132? No → FP unknown → not evaluable…
    case = K1.replace(lesions=_two_targets({"E0": (25, 15)}, e2=(50, NOT_ASSESSED)))
    q = quantities(case)
    assert not q.s2_complete and "E2_SUM_INCOMPLETE" in q.flags and q.tgr_experimental is None
    k = run(case)
    assert status(k, "fast-progression-oak") == "not-evaluable"
    # …but a partial sum already ≥ +50 % proves it (the missing lesion can only add): 70·2 = 140 ≥ 132.
    proven = K1.replace(lesions=_two_targets({"E0": (25, 15)}, e2=(70, NOT_ASSESSED)))
    assert status(run(proven), "fast-progression-oak") == "met"


def test_modality_change_and_pet_only_e0():
    mixed = K1.replace(modalities={"E0": ("MR",), "E1": ("CT",), "E2": ("CT",)})
    assert "MODALITY_CHANGE" in run(mixed).flags
    pet = K1.replace(modalities={"E0": ("PT",), "E1": ("CT",), "E2": ("CT",)})
    assert run(pet).e0_date is None


def test_no_treatment_start_or_no_baseline_does_not_crash():
    # Without a treatment start the timeline takes the first measured scan (E0 here) as baseline.
    k = run(K1.replace(c1d1=None))
    assert {"TREATMENT_START_UNKNOWN", "WINDOW_ATYPICAL"} <= set(k.flags)
    assert k.e1_date == D("2024-01-02")
    assert status(k, "kato-2017") == "not-evaluable"  # no earlier scan: E0 missing
    assert status(k, "matos-2020") == "not-met"  # 40 → 44 mm: no RECIST PD
    empty = run(KCase("empty", D("2024-01-01"), {}, ()))
    assert all(d.status == "not-evaluable" or d.code == "early-death" for d in empty.definitions)


@pytest.mark.parametrize(
    "condition, quantities, expected",
    [
        # conditions.e2_in_window (kinetics.yaml): 21 ≤ days after C1D1 ≤ 120 (E2_WINDOW_DAYS, both inclusive).
        ("e2_in_window", {"days_after_c1d1": 20}, False),
        ("e2_in_window", {"days_after_c1d1": 21}, True),
        ("e2_in_window", {"days_after_c1d1": 120}, True),
        ("e2_in_window", {"days_after_c1d1": 121}, False),
        # conditions.e0_in_window: 14 ≤ days before E1 ≤ 180.
        ("e0_in_window", {"days_before_e1": 13}, False),
        ("e0_in_window", {"days_before_e1": 180}, True),
        # conditions.kim_windows: E0 ≤ 84 days before C1D1 AND E2 ≤ 84 days after it; each bound alone fails at 85.
        ("kim_windows", {"e0_days_before_c1d1": 84, "e2_days_after_c1d1": 84}, True),
        ("kim_windows", {"e0_days_before_c1d1": 85, "e2_days_after_c1d1": 84}, False),
        ("kim_windows", {"e0_days_before_c1d1": 84, "e2_days_after_c1d1": 85}, False),
    ],
)
def test_window_conjunctions_of_the_rule_file(condition, quantities, expected):
    assert KineticsRules(get_engine()).holds(condition, **quantities) is expected
