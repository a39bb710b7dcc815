"""Worked examples K1, K3, K5, K7, K9, K11, K12 and K13 of ``clinical/criteria-kinetics-irae.md`` §7 as
``rules.scenario.Case``s with lesion-level cells whose target sums are the spec's S values, plus the clinical
facts the spec gives (therapy start and stop, death date and cause, ECOG, labs, PET reference regions and
imaging biomarkers), and the FHIR transaction Bundles that carry them (contract §4 shapes).

Only the spec's sums are given; the split into lesions is ours (two targets per case, nodes by short axis).
A date the spec does not give is stated where it is chosen. Expected values are the spec's (§7 tables, with
the §8 defaults); a definition the spec's table does not list is the §3 rule applied to the same numbers, with
the arithmetic in a comment.

The helpers build FHIR the way an EHR or a reporting tool would send it: a Patient identified by
``urn:immunorad:mrn``, a ``MedicationAdministration`` for C1D1, a ``MedicationStatement`` ``stopped`` with
``effectivePeriod.end`` for the stop, ``Patient.deceasedDateTime`` plus a cause Observation, ECOG as LOINC
89247-1 (mCODE shape: ``valueInteger``), labs by LOINC with a reference range, PET reference regions as DCM
126040 Observations, tumour measurements in the mCODE TumorSize shape (``service.demo.cohort.case_measurements_bundle``
with every organ coded in SNOMED CT).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from rules.scenario import NEW, Case, Lesion, T, c
from service.demo.cohort import case_measurements_bundle, stable_uid

D = dt.date.fromisoformat
SYSTEM = "urn:immunorad:mrn"
CANONICAL = "http://immunorad.org/fhir"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"

ORGANS = {
    # SNOMED CT body structures (rules/codes.py SITES, verified there): the organ of every lesion we post.
    "lung": "39607008",
    "liver": "10200004",
    "lymph node": "59441001",
    "adrenal": "23451007",
    "bone": "272673000",
    "hilar lymph node": "53074004",
    "mediastinal lymph node": "62683002",
    "spleen": "78961009",
    "bone marrow": "14016003",
    "pleura": "3120008",
}

MONTH_DAYS = 365.25 / 12
"""Spec §0: months = days × 12/365.25."""


# --- spec §2.1/§2.3/§3.2.3 arithmetic, written out independently of rules/kinetics/growth.py -------------


def months(d0: dt.date, d1: dt.date) -> float:
    return (d1 - d0).days / MONTH_DAYS


def tgr(s0: float, s1: float, d0: dt.date, d1: dt.date) -> float:
    """TGR = 100·(exp(3·ln(S1/S0)/Δt) − 1), %/month."""
    return 100 * (math.exp(3 * math.log(s1 / s0) / months(d0, d1)) - 1)


def tgk(s0: float, s1: float, d0: dt.date, d1: dt.date) -> float:
    """TGK = (S1 − S0)/Δt, mm/month."""
    return (s1 - s0) / months(d0, d1)


def reference_numbers(s0, s1, s2, e0, e1, e2) -> dict[str, float]:
    """The seven numeric components of the kinetics Observation (contract §5), rounded to 2 decimals."""
    tr, te = tgr(s0, s1, e0, e1), tgr(s1, s2, e1, e2)
    kr, ke = tgk(s0, s1, e0, e1), tgk(s1, s2, e1, e2)
    return {
        "tgr-reference": round(tr, 2),
        "tgr-experimental": round(te, 2),
        "tgr-ratio": round(te / tr, 2),
        "tgr-difference": round(te - tr, 2),
        "tgk-reference": round(kr, 2),
        "tgk-experimental": round(ke, 2),
        "tgk-ratio": round(ke / kr, 2),
    }


# --- the clinical facts of an example -----------------------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    loinc: str
    display: str
    value: float
    unit: str
    day: dt.date
    reference_high: float | None = None


@dataclass(frozen=True)
class Clinical:
    sex: str = "female"
    therapy_stop: dt.date | None = None
    deceased: dt.date | None = None
    death_from_progression: bool | None = None
    ecog: tuple[tuple[dt.date, int], ...] = ()
    labs: tuple[Lab, ...] = ()
    reference_regions: tuple[tuple[str, dt.date, float], ...] = ()
    """(organ key of ORGANS, PET date, SUVmax): DCM 126040 reference-region Observations."""
    biomarkers: tuple[tuple[str, dt.date, float, str], ...] = ()
    """({C}/CodeSystem/immunorad code, date, value, UCUM unit): imaging biomarker Observations."""


@dataclass(frozen=True)
class KExample:
    key: str
    case: Case
    clinical: Clinical = field(default_factory=Clinical)
    statuses: dict = field(default_factory=dict)
    """Definition code → met / not-met / not-evaluable at the first evaluation E2 (empty: no E2)."""
    numbers: dict = field(default_factory=dict)
    """Numeric component → value at 2 decimals (missing key: dataAbsentReason expected)."""

    @property
    def mrn(self) -> str:
        return f"MRN-{self.key}"


# --- K1 — classic HPD, every definition positive, and fast progression ---------------------------------------
# S: E0 40 (2024-01-02), E1 44 (2024-02-01), E2 80 (2024-03-18); C1D1 2024-02-05; ICI stopped 2024-03-20;
# two new liver lesions at E2, liver involved at E1.
K1_CASE = Case(
    "K1",
    D("2024-02-05"),
    {"E0": D("2024-01-02"), "BL": D("2024-02-01"), "TP1": D("2024-03-18")},
    (
        Lesion("T1 lung", T, "lung", cells={"E0": c(20, 15), "BL": c(22, 16), "TP1": c(40, 30)}),
        Lesion("T2 liver", T, "liver", cells={"E0": c(20, 15), "BL": c(22, 16), "TP1": c(40, 30)}),
        Lesion("N1 liver", NEW, "liver", cells={"TP1": c(12, 10)}),
        Lesion("N2 liver", NEW, "liver", cells={"TP1": c(14, 11)}),
    ),
    therapy_stop=D("2024-03-20"),
)
K1 = KExample(
    "K1",
    K1_CASE,
    Clinical(therapy_stop=D("2024-03-20")),
    statuses={
        "champiat-2017": "met",  # PD (+81.8 %) and TGR ratio 6.76 ≥ 2
        "saada-bouzid-2017": "met",  # TGKR 5.87 ≥ 2
        "kato-2017": "met",  # TTF 44 days < 2 months, +81.8 % > 50 %, pace ratio 5.34 > 2
        "ferrara-2018": "met",  # PD and ΔTGR 193.98 > 50
        "kanjanapan-2019": "met",  # as H1
        "lo-russo-2019": "met",  # TTF ✓, ≥ 50 % ✓, 2 new liver lesions ✓ → 3/5, PD
        "matos-2020": "met",  # E2 42 days after C1D1 ≤ 2 months, +81.8 % > 40 %
        "kim-2019": "met",  # provisional: both ratios ≥ 2, TTF < 2 months, E0 34 / E2 42 days from C1D1
        "kas-2020": "met",  # +81.8 % > 20 % and ΔTGR 193.98 > 100
        "fast-progression-oak": "met",  # C1D1 → E2 42 days ≤ 42 and 80·2 = 160 ≥ 44·3 = 132
        "fast-progression-ferrara-2020": "not-met",  # E1 → E2 46 days > 42: the anchor matters
        "early-death": "not-met",  # alive
    },
    numbers={
        "tgr-reference": 33.66,
        "tgr-experimental": 227.64,
        "tgr-ratio": 6.76,
        "tgr-difference": 193.98,
        "tgk-reference": 4.06,
        "tgk-experimental": 23.82,
        "tgk-ratio": 5.87,
    },
)

# --- K3 — RECIST PD that is not hyperprogression ---------------------------------------------------------------
# S: E0 60 (2024-01-08), E1 70 (2024-03-04), E2 86 (2024-04-29); C1D1 2024-03-06; ICI continues.
K3_CASE = Case(
    "K3",
    D("2024-03-06"),
    {"E0": D("2024-01-08"), "BL": D("2024-03-04"), "TP1": D("2024-04-29")},
    (
        Lesion("T1 liver", T, "liver", cells={"E0": c(35, 25), "BL": c(40, 28), "TP1": c(50, 35)}),
        Lesion("T2 lung", T, "lung", cells={"E0": c(25, 18), "BL": c(30, 20), "TP1": c(36, 25)}),
    ),
)
K3 = KExample(
    "K3",
    K3_CASE,
    statuses={
        "champiat-2017": "not-met",  # 1.40 < 2
        "saada-bouzid-2017": "not-met",  # 1.60 < 2
        "kato-2017": "not-met",  # +22.9 % ≤ 50 %
        "ferrara-2018": "not-met",  # ΔTGR 11.31 ≤ 50
        "kanjanapan-2019": "not-met",  # as H1
        "lo-russo-2019": "not-met",  # no criterion met (+22.9 %, no new lesion); at most TTF and ECOG unknown
        "matos-2020": "not-met",  # 22.9 % < 40 % and no new lesions
        "kim-2019": "not-met",  # both ratios < 2 (1.40, 1.60): no reading of the conjunction is met
        "kas-2020": "not-met",  # ΔTGR 11.31 ≤ 100
        "fast-progression-oak": "not-met",  # C1D1 → E2 54 days > 42
        "fast-progression-ferrara-2020": "not-met",  # E1 → E2 56 days > 42
        "early-death": "not-met",
    },
    numbers={
        "tgr-reference": 28.58,
        "tgr-experimental": 39.89,
        "tgr-ratio": 1.40,
        "tgr-difference": 11.31,
        # TGK_ref 10/1.8398 = 5.435 → 5.44; TGK_exp 16/1.8398 = 8.696 → 8.70; TGKR 1.60
        "tgk-reference": 5.44,
        "tgk-experimental": 8.70,
        "tgk-ratio": 1.60,
    },
)

# --- K5 — kinetic acceleration without RECIST PD ---------------------------------------------------------------
# S: E0 50 (2024-01-02), E1 52 (2024-03-01), E2 59 (2024-04-12); C1D1 2024-03-04.
K5_CASE = Case(
    "K5",
    D("2024-03-04"),
    {"E0": D("2024-01-02"), "BL": D("2024-03-01"), "TP1": D("2024-04-12")},
    (
        Lesion("T1 liver", T, "liver", cells={"E0": c(30, 20), "BL": c(31, 21), "TP1": c(35, 24)}),
        Lesion("T2 lung", T, "lung", cells={"E0": c(20, 14), "BL": c(21, 15), "TP1": c(24, 17)}),
    ),
)
K5 = KExample(
    "K5",
    K5_CASE,
    statuses={
        "champiat-2017": "not-met",  # no PD (+13.5 %)
        "saada-bouzid-2017": "met",  # H2_REQUIRE_PD = false (default): TGKR 4.92 ≥ 2
        "kato-2017": "not-met",  # +13.5 % ≤ 50 % (whatever TTF turns out to be)
        "ferrara-2018": "not-met",  # no PD, and ΔTGR 25.34 ≤ 50
        "kanjanapan-2019": "not-met",  # no PD
        "lo-russo-2019": "not-met",  # H5_REQUIRE_PD = true and no PD
        "matos-2020": "not-met",  # no PD, +13.5 % < 40 %
        "kim-2019": "not-evaluable",  # ratios ≥ 2 but TTF pending (39 days on treatment, no stop): PENDING_TTF
        "kas-2020": "not-met",  # +13.5 % ≤ 20 %
        "fast-progression-oak": "not-met",  # 39 days ≤ 42 but 59·2 = 118 < 52·3 = 156
        "fast-progression-ferrara-2020": "not-met",  # 42 days ≤ 42 but +13.5 %
        "early-death": "not-met",
    },
    numbers={
        "tgr-reference": 6.26,
        "tgr-experimental": 31.60,
        "tgr-ratio": 5.05,
        "tgr-difference": 25.34,
        # TGK_ref 2/1.9384 = 1.032 → 1.03; TGK_exp 7/1.3799 = 5.073 → 5.07; TGKR 4.92
        "tgk-reference": 1.03,
        "tgk-experimental": 5.07,
        "tgk-ratio": 4.92,
    },
)

# --- K7 — Lo Russo clinical-radiological HPD without any kinetics -----------------------------------------------
# E1 2024-02-05 S = 50 (liver involved, adrenal not); C1D1 2024-02-07; ECOG 1 (at E1) → 3 (2024-03-20);
# E2 2024-03-25 S = 68 with 2 new liver lesions and 1 new left adrenal metastasis; ICI stopped 2024-03-28.
# The spec gives ECOG "1 → 3" on 2024-03-20; the baseline value 1 is posted on the E1 date.
K7_CASE = Case(
    "K7",
    D("2024-02-07"),
    {"BL": D("2024-02-05"), "TP1": D("2024-03-25")},
    (
        Lesion("T1 liver", T, "liver", cells={"BL": c(30, 22), "TP1": c(40, 30)}),
        Lesion("T2 lung", T, "lung", cells={"BL": c(20, 15), "TP1": c(28, 20)}),
        Lesion("N1 liver", NEW, "liver", cells={"TP1": c(15, 12)}),
        Lesion("N2 liver", NEW, "liver", cells={"TP1": c(12, 10)}),
        Lesion("N3 left adrenal", NEW, "adrenal", cells={"TP1": c(14, 11)}),
    ),
    therapy_stop=D("2024-03-28"),
)
K7 = KExample(
    "K7",
    K7_CASE,
    Clinical(therapy_stop=D("2024-03-28"), ecog=((D("2024-02-05"), 1), (D("2024-03-20"), 3))),
    statuses={
        "champiat-2017": "not-evaluable",  # no E0
        "saada-bouzid-2017": "not-evaluable",
        "kato-2017": "not-evaluable",
        "ferrara-2018": "not-evaluable",
        "kanjanapan-2019": "not-evaluable",
        "lo-russo-2019": "met",  # TTF 50 d ✓, +36 % ✗, 2 new liver ✓, adrenal ✓, ECOG 1 → 3 ✓ → 4/5, PD
        "matos-2020": "met",  # engine default: ≥ 20 % + new-organ branch
        "kim-2019": "not-evaluable",
        "kas-2020": "not-evaluable",
        "fast-progression-oak": "not-met",  # 47 days > 42, +36 % < 50 %
        "fast-progression-ferrara-2020": "not-met",  # E1 → E2 49 days > 42
        "early-death": "not-met",
    },
    numbers={
        # No E0: only the on-treatment rates. E1 → E2 49 days = 1.6099 months; ln(68/50) = 0.30748 → TG 0.5730 →
        # TGR_exp 77.36 %/month; TGK_exp 18/1.6099 = 11.18 mm/month.
        "tgr-experimental": 77.36,
        "tgk-experimental": 11.18,
    },
)
assert K7.numbers == {
    "tgr-experimental": round(tgr(50, 68, D("2024-02-05"), D("2024-03-25")), 2),
    "tgk-experimental": round(tgk(50, 68, D("2024-02-05"), D("2024-03-25")), 2),
}

# --- K9 — dissociated response, lesion-level (and K9b) ---------------------------------------------------------
# E1 2024-01-10, follow-up 2024-03-06; C1D1 is not given: 2024-01-15 (as tests/rules/irae_cases.py).
# L1 liver 30 → 15, L2 lung 20 → 27, L3 node SA 18 → 12: S 68 → 54 (−20.6 %, RECIST SD).
K9_LESIONS = (
    Lesion("L1 liver", T, "liver", cells={"BL": c(30, 22), "TP1": c(15, 11)}),
    Lesion("L2 lung", T, "lung", cells={"BL": c(20, 15), "TP1": c(27, 20)}),
    Lesion("L3 node", T, "lymph node", nodal=True, cells={"BL": c(24, 18), "TP1": c(18, 12)}),
)
K9_CASE = Case("K9", D("2024-01-15"), {"BL": D("2024-01-10"), "TP1": D("2024-03-06")}, K9_LESIONS)
K9B_CASE = Case(
    "K9b",
    D("2024-01-15"),
    {"BL": D("2024-01-10"), "TP1": D("2024-03-06")},
    K9_LESIONS + (Lesion("N1 lung", NEW, "lung", cells={"TP1": c(12, 9)}),),
)
# No E0: only the on-treatment rates, E1 → E2 56 days = 1.8398 months, S 68 → 54: TGR_exp = 100·(exp(3·ln(54/68)/1.8398)
# − 1) = −31.33 %/month, TGK_exp = −14/1.8398 = −7.61 mm/month (new lesions are not in S, so K9b has the same).
K9_NUMBERS = {
    "tgr-experimental": round(tgr(68, 54, D("2024-01-10"), D("2024-03-06")), 2),
    "tgk-experimental": round(tgk(68, 54, D("2024-01-10"), D("2024-03-06")), 2),
}
# The spec's K9 table gives the lesion-level verdicts only; the §3 definitions on the same numbers: no E0, so every
# definition with a reference period is not evaluable; E2 51 days after C1D1 (> 42: no fast progression) and
# 56 days after E1; −20.6 % is below every burden threshold; K9b's single new lung nodule (lung involved) is
# neither ≥ 2 new lesions in an involved organ nor a new organ.
K9_STATUSES = {
    **{
        code: "not-evaluable"
        for code in (
            "champiat-2017",
            "saada-bouzid-2017",
            "kato-2017",
            "ferrara-2018",
            "kanjanapan-2019",
            "kim-2019",
            "kas-2020",
        )
    },
    "lo-russo-2019": "not-met",  # K9: no PD (H5_REQUIRE_PD); K9b: PD but 0/5 met, at most 2 (TTF, ECOG unknown)
    "matos-2020": "not-met",  # K9: no PD; K9b: −20.6 %, no new-lesion spread
    "fast-progression-oak": "not-met",
    "fast-progression-ferrara-2020": "not-met",
    "early-death": "not-met",
}
K9 = KExample("K9", K9_CASE, statuses=K9_STATUSES, numbers=K9_NUMBERS)
K9B = KExample("K9b", K9B_CASE, statuses=K9_STATUSES, numbers=K9_NUMBERS)

# --- K11 — early death and death-branch fast progression -------------------------------------------------------
# E1 2024-04-02; C1D1 2024-04-05; no post-baseline scan; death from progression 2024-06-10.
K11_CASE = Case(
    "K11",
    D("2024-04-05"),
    {"BL": D("2024-04-02")},
    (Lesion("T1 liver", T, "liver", cells={"BL": c(40, 30)}), Lesion("T2 lung", T, "lung", cells={"BL": c(30, 20)})),
)
K11 = KExample(
    "K11",
    K11_CASE,
    Clinical(deceased=D("2024-06-10"), death_from_progression=True),
    statuses={
        **{
            code: "not-evaluable"
            for code in (
                "champiat-2017",
                "saada-bouzid-2017",
                "kato-2017",
                "ferrara-2018",
                "kanjanapan-2019",
                "lo-russo-2019",
                "matos-2020",
                "kim-2019",
                "kas-2020",
            )
        },
        "fast-progression-oak": "met",  # death 66 days after C1D1 ≤ 84, no post-baseline scan (death branch)
        "fast-progression-ferrara-2020": "not-met",  # no death branch; no scan can come any more
        "early-death": "met",  # baseline CT → death 69 days ≤ 84, from progression
    },
)

# --- K12 — golden row of the reference TGR code (chferte/TumorGrowthRate patient "120") ------------------------
# 65 mm 2012-05-07, 72 mm 2012-06-28, 60 mm 2012-09-04. C1D1 is not in the source: 2012-07-02 (E1 4 days before).
K12_CASE = Case(
    "K12",
    D("2012-07-02"),
    {"E0": D("2012-05-07"), "BL": D("2012-06-28"), "TP1": D("2012-09-04")},
    (
        Lesion("T1 liver", T, "liver", cells={"E0": c(40, 30), "BL": c(44, 32), "TP1": c(36, 27)}),
        Lesion("T2 lung", T, "lung", cells={"E0": c(25, 18), "BL": c(28, 20), "TP1": c(24, 17)}),
    ),
)
K12 = KExample(
    "K12",
    K12_CASE,
    statuses={
        "champiat-2017": "not-met",  # RECIST −16.7 % → SD: no PD
        "saada-bouzid-2017": "not-met",  # TGKR = (−12/2.234)/(7/1.708) = −1.31 < 2
        "kato-2017": "not-met",  # −16.7 % ≤ 50 %
        "ferrara-2018": "not-met",  # no PD
        "kanjanapan-2019": "not-met",  # no PD
        "lo-russo-2019": "not-met",  # no PD
        "matos-2020": "not-met",  # no PD; E2 64 days after C1D1 > 2 months anyway
        "kim-2019": "not-met",  # both ratios negative (< 2)
        "kas-2020": "not-met",  # no increase, ΔTGR −41.39
        "fast-progression-oak": "not-met",  # 64 days > 42
        "fast-progression-ferrara-2020": "not-met",  # 68 days > 42
        "early-death": "not-met",
    },
    numbers=reference_numbers(65, 72, 60, D("2012-05-07"), D("2012-06-28"), D("2012-09-04")),
)
# The spec prints TGR.ref 19.67 and TGR.exp −21.72; the other five are the same formulas (reference_numbers).
assert (K12.numbers["tgr-reference"], K12.numbers["tgr-experimental"]) == (19.67, -21.72)

# --- K13 — baseline prognostic panel -------------------------------------------------------------------------------
# WBC 9.0, neutrophils 7.2 ×10⁹/L; LDH 300 U/L (ULN 250); L3 muscle 140 cm²; male, 1.75 m, BMI 27 (82.7 kg);
# target sum 95 mm with a liver metastasis; baseline PET SUVmax marrow 2.6, spleen 2.4, liver 3.0; TMTV 110 cm³.
# The spec gives the baseline only (E1 2024-01-08 and C1D1 2024-01-15 as tests/rules/irae_cases.py); reports
# exist per follow-up (contract §5), so a first evaluation with unchanged lesions is added on 2024-03-11.
K13_BL, K13_C1D1, K13_FU = D("2024-01-08"), D("2024-01-15"), D("2024-03-11")
K13_CASE = Case(
    "K13",
    K13_C1D1,
    {"BL": K13_BL, "TP1": K13_FU},
    (
        Lesion("T1 liver", T, "liver", cells={"BL": c(55, 40), "TP1": c(55, 40)}),
        Lesion("T2 lung", T, "lung", cells={"BL": c(40, 30), "TP1": c(40, 30)}),
    ),
)
K13_LABS = (
    Lab("6690-2", "Leukocytes [#/volume] in Blood by Automated count", 9.0, "10*9/L", K13_BL),
    Lab("751-8", "Neutrophils [#/volume] in Blood by Automated count", 7.2, "10*9/L", K13_BL),
    Lab("2532-0", "Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma", 300, "U/L", K13_BL, 250),
    Lab("8302-2", "Body height", 175, "cm", K13_BL),
    Lab("29463-7", "Body weight", 82.7, "kg", K13_BL),
)
K13 = KExample(
    "K13",
    K13_CASE,
    Clinical(
        sex="male",
        labs=K13_LABS,
        reference_regions=(("bone marrow", K13_BL, 2.6), ("spleen", K13_BL, 2.4), ("liver", K13_BL, 3.0)),
        biomarkers=(("skeletal-muscle-area-l3", K13_BL, 140, "cm2"), ("tmtv", K13_BL, 110, "cm3")),
    ),
)
K13_EXPECTED = {
    # biomarker code → (value, interpretation): spec §7 K13 table.
    "dnlr": (4.0, "high"),  # 7.2/(9.0 − 7.2) = 4.0 > 3
    "lipi": (2, "poor"),  # dNLR > 3 and LDH 300 > 250 → 2 factors
    "smi": (45.7, None),  # 140/1.75² = 45.7 cm²/m² (no cut-off of its own)
    "sarcopenia-prado": (45.7, "low"),  # men < 52.4
    "sarcopenia-martin": (45.7, "low"),  # men, BMI ≥ 25: < 53
    "sarcopenia-dercle-53": (45.7, "low"),  # < 53
    "blr": (0.87, "high"),  # 2.6/3.0 = 0.87 > 0.79 (Seban 2019)
    "slr": (0.80, "high"),  # 2.4/3.0 = 0.80 > 0.77 (Seban 2019)
    "slr-wong-2020": (0.80, "low"),  # ≤ 1.1: not high by Wong 2020
    "tmtv": (110, "high"),  # > 25 cm³ (Seban 2019 melanoma)
    "tmtv-seban-2020": (110, "high"),  # > 75 cm³ (Seban 2020 NSCLC)
    "ps3-ct": (3, "3/3"),  # TB1D 9.5 cm > 9 + SMI < 53 + liver (NPVM)
}

KINETICS_EXAMPLES = (K1, K3, K5, K7, K12)
"""The examples with a first evaluation E2 whose kinetics Observation carries the §7 classification."""


# --- FHIR Bundles (contract §4) ------------------------------------------------------------------------------------


def _patient_url(mrn: str) -> str:
    return f"urn:uuid:{stable_uid(mrn, 'fhir-patient')}"


def put_entry(resource: dict, system: str, value: str) -> dict:
    """A transaction entry: conditional PUT on the resource's business identifier (re-sending changes nothing)."""
    resource = dict(resource, identifier=[{"system": system, "value": value}])
    return {
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}?identifier={system}|{value}"},
    }


def _subject(mrn: str) -> dict:
    return {"reference": f"Patient?identifier={SYSTEM}|{mrn}"}


def patient_entry(
    mrn: str, *, sex: str = "female", birth_date: str = "1958-04-12", deceased: dt.date | None = None
) -> dict:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "gender": sex,
        "birthDate": birth_date,
    }
    if deceased is not None:
        patient["deceasedDateTime"] = deceased.isoformat()
    return {
        "fullUrl": _patient_url(mrn),
        "resource": patient,
        "request": {"method": "PUT", "url": f"Patient?identifier={SYSTEM}|{mrn}"},
    }


def therapy_entries(mrn: str, agent: str, start: dt.date, stop: dt.date | None) -> list[dict]:
    """C1D1 as a completed MedicationAdministration; a stop as a MedicationStatement ``stopped`` (contract §4)."""
    medication = {"text": agent}
    entries = [
        put_entry(
            {
                "resourceType": "MedicationAdministration",
                "status": "completed",
                "medicationCodeableConcept": medication,
                "subject": _subject(mrn),
                "effectiveDateTime": start.isoformat(),
            },
            "urn:test:administration",
            f"{mrn}-c1d1",
        )
    ]
    if stop is not None:
        entries.append(
            put_entry(
                {
                    "resourceType": "MedicationStatement",
                    "status": "stopped",
                    "medicationCodeableConcept": medication,
                    "subject": _subject(mrn),
                    "effectivePeriod": {"start": start.isoformat(), "end": stop.isoformat()},
                },
                "urn:test:statement",
                f"{mrn}-stop",
            )
        )
    return entries


def ecog_entry(mrn: str, day: dt.date, score: int, *, coded: bool = False) -> dict:
    """ECOG performance status, LOINC 89247-1. mCODE shape: ``valueInteger`` (with the LOINC answer as
    interpretation); ``coded=True`` sends the LOINC answer (LL529-9) as ``valueCodeableConcept`` instead."""
    answers = {0: "LA9622-7", 1: "LA9623-5", 2: "LA9624-3", 3: "LA9625-0", 4: "LA9626-8", 5: "LA9627-6"}
    answer = {"coding": [{"system": LOINC, "code": answers[score], "display": f"ECOG {score}"}]}
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}
        ],
        "code": {"coding": [{"system": LOINC, "code": "89247-1", "display": "ECOG Performance Status score"}]},
        "subject": _subject(mrn),
        "effectiveDateTime": day.isoformat(),
    }
    if coded:
        observation["valueCodeableConcept"] = answer
    else:
        observation["valueInteger"] = score
        observation["interpretation"] = [answer]
    return put_entry(observation, "urn:test:ecog", f"{mrn}-{day.isoformat()}")


def lab_entry(mrn: str, lab: Lab) -> dict:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory" if lab.loinc not in ("8302-2", "29463-7") else "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": lab.loinc, "display": lab.display}]},
        "subject": _subject(mrn),
        "effectiveDateTime": lab.day.isoformat(),
        "valueQuantity": {"value": lab.value, "unit": lab.unit, "system": UCUM, "code": lab.unit},
    }
    if lab.reference_high is not None:
        observation["referenceRange"] = [
            {"high": {"value": lab.reference_high, "unit": lab.unit, "system": UCUM, "code": lab.unit}}
        ]
    return put_entry(observation, "urn:test:lab", f"{mrn}-{lab.loinc}-{lab.day.isoformat()}")


def death_cause_entry(mrn: str, day: dt.date, from_progression: bool) -> dict:
    """The cause of death as an Observation (contract §4 'the cause, when known, as a Condition or Observation')
    in ``{C}/CodeSystem/immunorad#death-from-progression`` (the code fhir_mappings/inbound.py reads)."""
    return put_entry(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [{"system": f"{CANONICAL}/CodeSystem/immunorad", "code": "death-from-progression"}],
                "text": "Death from cancer progression",
            },
            "subject": _subject(mrn),
            "effectiveDateTime": day.isoformat(),
            "valueBoolean": from_progression,
        },
        "urn:test:death-cause",
        mrn,
    )


def reference_region_entry(mrn: str, organ: str, day: dt.date, suv_max: float) -> dict:
    """A PET reference region (contract §4): code DCM 126040, bodySite, SUVbw 126401 with derivation Maximum."""
    return put_entry(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [
                    {"system": DCM, "code": "126040", "display": "Background for Lesion to Background SUV Ratio"}
                ]
            },
            "subject": _subject(mrn),
            "effectiveDateTime": day.isoformat(),
            "bodySite": {"coding": [{"system": SNOMED, "code": ORGANS[organ], "display": organ}]},
            "component": [
                {
                    "code": {
                        "coding": [
                            {"system": DCM, "code": "126401", "display": "SUVbw"},
                            {"system": SNOMED, "code": "56851009", "display": "Maximum"},
                        ]
                    },
                    "valueQuantity": {"value": suv_max, "unit": "g/ml{SUVbw}", "system": UCUM, "code": "g/mL{SUVbw}"},
                }
            ],
        },
        "urn:test:reference-region",
        f"{mrn}-{organ}-{day.isoformat()}",
    )


def biomarker_entry(mrn: str, code: str, day: dt.date, value: float, unit: str) -> dict:
    return put_entry(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": f"{CANONICAL}/CodeSystem/immunorad", "code": code}]},
            "subject": _subject(mrn),
            "effectiveDateTime": day.isoformat(),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        },
        "urn:test:biomarker",
        f"{mrn}-{code}-{day.isoformat()}",
    )


def clinical_bundle(example: KExample, *, mrn: str | None = None, ecog_coded: bool = False) -> dict:
    """Patient, therapy, death, ECOG, labs and biomarkers of an example: one transaction Bundle."""
    mrn = mrn or example.mrn
    facts = example.clinical
    entries = [patient_entry(mrn, sex=facts.sex, deceased=facts.deceased)]
    entries += therapy_entries(mrn, example.case.agent, example.case.c1d1, facts.therapy_stop)
    if facts.deceased is not None and facts.death_from_progression is not None:
        entries.append(death_cause_entry(mrn, facts.deceased, facts.death_from_progression))
    entries += [ecog_entry(mrn, day, score, coded=ecog_coded) for day, score in facts.ecog]
    entries += [lab_entry(mrn, lab) for lab in facts.labs]
    entries += [reference_region_entry(mrn, organ, day, suv) for organ, day, suv in facts.reference_regions]
    entries += [biomarker_entry(mrn, code, day, value, unit) for code, day, value, unit in facts.biomarkers]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def measurements_bundle(case: Case, mrn: str, *, labels: tuple[str, ...] | None = None) -> dict:
    """The tumour-measurement Observations (mCODE TumorSize shape) of ``case`` — only the scans in ``labels``
    when given — with every lesion's organ as a SNOMED CT bodySite."""
    bundle = case_measurements_bundle(case, mrn, SYSTEM, CANONICAL)
    keep = None if labels is None else {case.scans[label].isoformat() for label in labels}
    organs = {}
    for lesion in case.lesions:
        organs[lesion.key] = ORGANS[lesion.organ]
    entries = []
    for entry in bundle["entry"]:
        observation = entry["resource"]
        if keep is not None and observation["effectiveDateTime"] not in keep:
            continue
        key = observation["contained"][0]["identifier"][1]["value"]
        observation["bodySite"] = {"coding": [{"system": SNOMED, "code": organs[key]}]}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# --- sending and reading through the real interfaces ----------------------------------------------------------------

HYPERPROGRESSION = f"{CANONICAL}/CodeSystem/hyperprogression"
IMMUNORAD = f"{CANONICAL}/CodeSystem/immunorad"
ALERT = f"{CANONICAL}/CodeSystem/alert"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
NUMERIC_COMPONENTS = (
    "tgr-reference",
    "tgr-experimental",
    "tgr-ratio",
    "tgr-difference",
    "tgk-reference",
    "tgk-experimental",
    "tgk-ratio",
)
DEFINITIONS = (
    "champiat-2017",
    "saada-bouzid-2017",
    "kato-2017",
    "ferrara-2018",
    "kanjanapan-2019",
    "lo-russo-2019",
    "matos-2020",
    "kim-2019",
    "kas-2020",
    "fast-progression-oak",
    "fast-progression-ferrara-2020",
    "early-death",
)
"""Contract §5, in ``{C}/CodeSystem/hyperprogression``."""


def post_bundle(client, bundle: dict) -> dict:
    response = client.post("/fhir", json=bundle, content_type="application/fhir+json")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def submit(
    client,
    example: KExample,
    *,
    mrn: str | None = None,
    labels: tuple[str, ...] | None = None,
    ecog_coded: bool = False,
) -> str:
    """The example's clinical facts, then its measurements, as two FHIR transactions; the MRN."""
    mrn = mrn or example.mrn
    post_bundle(client, clinical_bundle(example, mrn=mrn, ecog_coded=ecog_coded))
    post_bundle(client, measurements_bundle(example.case, mrn, labels=labels))
    return mrn


def search(client, kind: str, mrn: str, **params) -> list[dict]:
    query = "&".join([f"subject:identifier={SYSTEM}|{mrn}", "_count=200"] + [f"{k}={v}" for k, v in params.items()])
    response = client.get(f"/fhir/{kind}?{query}")
    assert response.status_code == 200, response.get_json()
    return [entry["resource"] for entry in response.get_json().get("entry", [])]


def reports(client, mrn: str) -> list[dict]:
    return sorted(search(client, "DiagnosticReport", mrn), key=lambda r: r["effectiveDateTime"])


def report_at(client, mrn: str, day: dt.date) -> dict:
    found = [r for r in reports(client, mrn) if r["effectiveDateTime"][:10] == day.isoformat()]
    assert len(found) == 1, f"{len(found)} reports for {day}"
    return found[0]


def read(client, reference: str) -> dict:
    response = client.get(f"/fhir/{reference}")
    assert response.status_code == 200, (reference, response.get_json())
    return response.get_json()


def results(client, report: dict) -> list[dict]:
    """The report's result Observations, each read back through ``GET /fhir/Observation/<id>``."""
    return [read(client, ref["reference"]) for ref in report["result"]]


def has_code(concept: dict, system: str, code: str) -> bool:
    return any(c.get("system") == system and c.get("code") == code for c in (concept or {}).get("coding", []))


def kinetics_of(client, report: dict) -> dict:
    found = [o for o in results(client, report) if has_code(o["code"], IMMUNORAD, "tumour-kinetics")]
    assert len(found) == 1, f"{len(found)} kinetics Observations on the report of {report['effectiveDateTime']}"
    return found[0]


def criteria_of(client, report: dict) -> dict[str, dict]:
    """Criterion → its overall-response Observation."""
    return {
        o["method"]["coding"][0]["code"]: o
        for o in results(client, report)
        if has_code(o["code"], IMMUNORAD, "overall-response")
    }


def categories(client, report: dict) -> dict[str, str]:
    return {name: o["valueCodeableConcept"]["coding"][0]["code"] for name, o in criteria_of(client, report).items()}


def component(observation: dict, system: str, code: str) -> dict:
    found = [c for c in observation.get("component", []) if has_code(c["code"], system, code)]
    assert len(found) == 1, f"{len(found)} components {code}"
    return found[0]


def definition_statuses(kinetics: dict) -> dict[str, str]:
    out = {}
    for code in DEFINITIONS:
        value = component(kinetics, HYPERPROGRESSION, code)["valueCodeableConcept"]
        assert value["coding"][0]["system"] == IMMUNORAD and value.get("text"), code
        out[code] = value["coding"][0]["code"]
    return out


def definition_reason(kinetics: dict, code: str) -> str:
    return component(kinetics, HYPERPROGRESSION, code)["valueCodeableConcept"]["text"]


def numbers(kinetics: dict) -> dict[str, float]:
    """Numeric components present (rounded to 2 decimals); absent ones carry dataAbsentReason."""
    out = {}
    for code in NUMERIC_COMPONENTS:
        part = component(kinetics, IMMUNORAD, code)
        if "valueQuantity" in part:
            out[code] = round(part["valueQuantity"]["value"], 2)
        else:
            assert part.get("dataAbsentReason"), code
    return out


def flags(client, mrn: str, **params) -> list[dict]:
    return search(client, "Flag", mrn, **params)


def flag_code(flag: dict) -> str:
    return next(c["code"] for c in flag["code"]["coding"] if c["system"] == ALERT)


def flags_by_code(client, mrn: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for flag in flags(client, mrn):
        out.setdefault(flag_code(flag), []).append(flag)
    return out


def flag_report(flag: dict) -> dict:
    """The flag-detail extension's reference to the report that raised the Flag."""
    detail = [e for e in flag.get("extension", []) if e["url"] == FLAG_DETAIL]
    assert len(detail) == 1
    return detail[0]["valueReference"]


PUBLIC_URL = "https://immunorad.hospital.example"
CDS_SERVICE = "/cds-services/immunorad-alerts"


class CdsEhr:
    """The EHR as a CDS Hooks 2.0 client (interop-notes §5.1): it signs every call with its ES384 key and publishes
    the public key as a JWKS at ``jwks_url`` (a small HTTP server), as an allow-listed issuer does."""

    issuer = "https://ehr.hospital.example"
    kid = "ehr-cds-key-1"

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from cryptography.hazmat.primitives.asymmetric import ec
        from jwt.algorithms import ECAlgorithm

        self.key = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [dict(jwk, kid=self.kid, use="sig", alg="ES384")]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # The in-process app caches JWKS clients by URL: one cached for an earlier test's server on this (reused)
        # port would not look for this key during PyJWT's 30 s refresh cooldown (a 401 now and then).
        from service.security.auth import forget_jwks_clients

        forget_jwks_clients(self.jwks_url)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def jwks_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/.well-known/jwks.json"

    def settings_overrides(self) -> dict:
        """What immunorad is configured with: this EHR as an allowed CDS client, and its public URL."""
        return {"cds_issuers": ((self.issuer, self.jwks_url),), "public_url": PUBLIC_URL}

    def token(self, audience: str) -> str:
        import time
        import uuid

        import jwt

        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "ehr-cds-client",
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(
            claims, self.key, algorithm="ES384", headers={"kid": self.kid, "typ": "JWT", "jku": self.jwks_url}
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hook_request(mrn: str | None, *, ehr_patient_id: str = "ehr-patient-1", hook_instance: str | None = None) -> dict:
    """A ``patient-view`` call as an EHR sends it: its own patient id in the context, the prefetched Patient with our
    MRN among its identifiers (``mrn=None``: no prefetch)."""
    import uuid

    body = {
        "hook": "patient-view",
        "hookInstance": hook_instance or str(uuid.uuid4()),
        "fhirServer": "https://ehr.hospital.example/fhir",
        "context": {"userId": "Practitioner/oncologist-7", "patientId": ehr_patient_id},
    }
    if mrn is not None:
        body["prefetch"] = {
            "patient": {
                "resourceType": "Patient",
                "id": ehr_patient_id,
                "identifier": [
                    {"system": "urn:oid:2.16.840.1.113883.4.1", "value": "999-99-9999"},
                    {"system": SYSTEM, "value": mrn},
                ],
                "gender": "female",
                "birthDate": "1958-04-12",
            }
        }
    return body


def post_hook(client, cds: CdsEhr, body: dict) -> tuple[int, dict]:
    """``POST /cds-services/immunorad-alerts`` with the EHR's signed JWT (``aud`` = the URL called)."""
    response = client.post(
        CDS_SERVICE, json=body, headers={"Authorization": f"Bearer {cds.token(PUBLIC_URL + CDS_SERVICE)}"}
    )
    return response.status_code, response.get_json()


def patient_view(client, cds: CdsEhr, mrn: str, **kw) -> list[dict]:
    """The cards for the patient with this MRN (asserting a 200 answer)."""
    status, body = post_hook(client, cds, hook_request(mrn, **kw))
    assert status == 200, body
    return body["cards"]


def indicators(cards: list[dict]) -> dict[str, str]:
    """Alert code (the card's ``source.topic``) → indicator."""
    return {card["source"]["topic"]["code"]: card["indicator"] for card in cards}


def send_dicom(settings, db, datasets) -> list[int]:
    """C-STORE ``datasets`` (pynetdicom as the PACS) to a listener started on ``settings.dicom_port`` with the real
    ``DicomIngest``; the statuses."""
    from dicom_listener.scp import ListenerConfig, start_listener
    from service.demo.cohort import send_datasets
    from service.ingest.dicom_ingest import DicomIngest

    config = ListenerConfig(ae_title=settings.ae_title, host="127.0.0.1", port=settings.dicom_port)
    server = start_listener(config, DicomIngest(db, settings))
    try:
        return send_datasets(
            datasets, host="127.0.0.1", port=settings.dicom_port, ae_title=settings.ae_title, calling_ae="TEST-PACS"
        )
    finally:
        server.shutdown()
