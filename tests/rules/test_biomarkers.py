"""Baseline prognostic biomarkers (kinetics spec §6) from worked example K13, with the named boundaries."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from rules.biomarkers import baseline_biomarkers
from rules.criteria import recist11
from rules.engine import get_engine
from rules.evaluate import make_timeline
from rules.facts import ReferenceMeasurement, ReferenceRegion
from tests.rules import irae_cases as ic

D = ic.D


@pytest.fixture(scope="module")
def engine():
    return get_engine()


def panel(facts, engine, criteria=None, overrides=None):
    tl = make_timeline(facts, engine)
    results = baseline_biomarkers(tl, criteria if criteria is not None else [], overrides=overrides)
    return {r.code: r for r in results}


def with_observations(*replacements, drop=()):
    """K13 with some observations replaced (by code) or dropped."""
    base = {o.code: o for o in ic.k13().observations}
    for o in replacements:
        base[o.code] = o
    return ic.k13(observations=tuple(o for code, o in base.items() if code not in drop))


def test_k13_every_biomarker(engine):
    r = panel(ic.k13(), engine)
    # dNLR = 7.2 / (9.0 − 7.2) = 7.2 / 1.8 = 4.0 > 3 → high.
    assert (r["dnlr"].value, r["dnlr"].interpretation) == (Decimal("4.00"), "high")
    # LIPI: dNLR > 3 and LDH 300 > ULN 250 → 2 factors → poor.
    assert (r["lipi"].value, r["lipi"].interpretation) == (2, "poor")
    # SMI = 140 / 1.75² = 140 / 3.0625 = 45.71 → 45.7 cm²/m²; BMI 82.7 / 3.0625 = 27.0.
    assert r["smi"].value == Decimal("45.7") and r["smi"].interpretation is None and not r["smi"].missing
    # Prado men < 52.4 → low; Martin men BMI ≥ 25 < 53 → low; Dercle < 53 → low.
    assert r["sarcopenia-prado"].interpretation == "low"
    assert r["sarcopenia-martin"].interpretation == "low"
    assert "men with BMI ≥ 25: SMI < 53" in r["sarcopenia-martin"].source
    assert r["sarcopenia-dercle-53"].interpretation == "low"
    # BLR = 2.6 / 3.0 = 0.867 → 0.87 > 0.79 → high (Seban 2019 melanoma median).
    assert (r["blr"].value, r["blr"].interpretation) == (Decimal("0.87"), "high")
    # SLR = 2.4 / 3.0 = 0.80 > 0.77 → high by Seban 2019; ≤ 1.1 → not high by Wong 2020.
    assert (r["slr"].value, r["slr"].interpretation) == (Decimal("0.80"), "high")
    assert (r["slr-wong-2020"].value, r["slr-wong-2020"].interpretation) == (Decimal("0.80"), "low")
    # TMTV 110 cm³ > 25 (Seban 2019 melanoma median) and > 75 (Seban 2020 NSCLC).
    assert (r["tmtv"].value, r["tmtv"].interpretation) == (Decimal("110.0"), "high")
    assert r["tmtv-seban-2020"].interpretation == "high"
    # PS3-CT: TB1D 95 mm = 9.5 cm > 9 (1) + SMI 45.7 < 53 (1) + liver metastasis = NPVM (1) → 3/3.
    assert (r["ps3-ct"].value, r["ps3-ct"].interpretation) == (3, "3/3")
    assert r["ps3-ct"].inputs["tb1d_recist_mm"] == "95.0"
    # PS7 needs ECOG and albumin, which K13 does not give.
    assert r["ps7"].interpretation is None and set(r["ps7"].missing) == {"ECOG performance status", "albumin"}


def test_every_cut_off_says_it_is_cohort_derived(engine):
    for result in panel(ic.k13(), engine).values():
        if result.code in (
            "blr",
            "slr",
            "slr-wong-2020",
            "tmtv",
            "tmtv-seban-2020",
            "sarcopenia-prado",
            "sarcopenia-martin",
            "sarcopenia-dercle-53",
            "dnlr",
            "ps3-ct",
            "ps7",
        ):
            assert "cohort-derived" in result.method, result.code
        assert "imaging-biomarkers" in result.method


def test_ps3_ct_uses_the_recist_baseline_sum_from_the_criteria(engine):
    facts = ic.k13(
        measurements=(
            ic.m("T1 liver", ic.K13_BL, 55, 40, role=ic.T, organ="liver"),
            ic.m("T2 lung", ic.K13_BL, 40, 30, role=ic.T),
            ic.m("T1 liver", "2024-03-11", 50, 35, organ="liver"),
            ic.m("T2 lung", "2024-03-11", 40, 30),
        )
    )
    tl = make_timeline(facts, engine)
    recist = recist11.assess(engine, tl)
    assert recist.timepoints[0].baseline_sum == Decimal("95")
    r = {b.code: b for b in baseline_biomarkers(tl, [recist])}
    assert r["ps3-ct"].value == 3


# --- boundaries ---------------------------------------------------------------------------------------------


def test_dnlr_exactly_3_is_not_high(engine):
    # 6.0 / (8.0 − 6.0) = 3.0: the cut-off is strict (> 3) → normal; LIPI then has LDH only → intermediate.
    r = panel(with_observations(ic.obs("leukocytes", "8.0"), ic.obs("neutrophils", "6.0")), engine)
    assert (r["dnlr"].value, r["dnlr"].interpretation) == (Decimal("3.00"), "normal")
    assert (r["lipi"].value, r["lipi"].interpretation) == (1, "intermediate")


def test_smi_exactly_52_4_is_not_low_by_prado(engine):
    # 134.144 / 1.60² = 134.144 / 2.56 = 52.4 exactly: Prado men < 52.4 is strict → normal; Dercle < 53 → low.
    r = panel(
        with_observations(
            ic.obs("skeletal-muscle-area-l3", "134.144"), ic.obs("height", "160", "cm"), ic.obs("weight", "64", "kg")
        ),
        engine,
    )  # BMI 64 / 2.56 = 25.0
    assert r["smi"].value == Decimal("52.4")
    assert r["sarcopenia-prado"].interpretation == "normal"
    assert r["sarcopenia-dercle-53"].interpretation == "low"
    # BMI exactly 25 takes Martin's "≥ 25" branch (< 53) → low.
    assert r["sarcopenia-martin"].interpretation == "low"


def test_martin_bmi_below_25_and_women(engine):
    # Male, BMI 60 / 3.0625 = 19.6 < 25 → Martin < 43: SMI 45.7 → normal; Prado still low.
    r = panel(with_observations(ic.obs("weight", "60", "kg")), engine)
    assert r["sarcopenia-martin"].interpretation == "normal" and r["sarcopenia-prado"].interpretation == "low"
    # Female: Prado < 38.5 and Martin < 41 → SMI 45.7 is normal by both; Dercle (sex-independent) low.
    r = panel(ic.k13(sex="female"), engine)
    assert r["sarcopenia-prado"].interpretation == "normal"
    assert r["sarcopenia-martin"].interpretation == "normal"
    assert r["sarcopenia-dercle-53"].interpretation == "low"


def test_sex_or_weight_missing(engine):
    r = panel(ic.k13(sex=None), engine)
    assert r["sarcopenia-prado"].interpretation is None and "sex" in r["sarcopenia-prado"].missing
    r = panel(with_observations(drop=("weight",)), engine)
    assert r["sarcopenia-martin"].interpretation is None
    assert "BMI (weight and height)" in r["sarcopenia-martin"].missing
    assert r["sarcopenia-prado"].interpretation == "low"


@pytest.mark.parametrize("marrow, expected", [("2.37", "low"), ("2.38", "high")])
def test_blr_cut_off_is_strict(engine, marrow, expected):
    # 0.79 × 3.0 = 2.37: BLR 2.37/3.0 = 0.79 exactly is not > 0.79; 2.38/3.0 = 0.793 is.
    refs = (
        ReferenceMeasurement(ReferenceRegion.BONE_MARROW, D(ic.K13_BL), suv_max=Decimal(marrow)),
        ReferenceMeasurement(ReferenceRegion.LIVER, D(ic.K13_BL), suv_max=Decimal("3.0")),
    )
    assert panel(ic.k13(references=refs), engine)["blr"].interpretation == expected


# --- inputs from other places, and what is missing ----------------------------------------------------------


def test_pet_values_from_observations_and_tmtv_from_lesion_volumes(engine):
    observations = tuple(o for o in ic.k13().observations if o.code != "tmtv") + (
        ic.obs("suvmax-bone-marrow", "2.6"),
        ic.obs("suvmax-spleen", "3.5"),
        ic.obs("suvmax-liver", "3.0"),
    )
    measurements = (
        ic.m("T1 liver", ic.K13_BL, 55, 40, role=ic.T, organ="liver", metabolic_volume_ml=Decimal("15")),
        ic.m("T2 lung", ic.K13_BL, 40, 30, role=ic.T, metabolic_volume_ml=Decimal("9")),
    )
    r = panel(ic.k13(observations=observations, references=(), measurements=measurements), engine)
    assert r["blr"].value == Decimal("0.87")
    # SLR 3.5 / 3.0 = 1.17 > 1.1 → high by Wong too.
    assert r["slr-wong-2020"].interpretation == "high"
    # TMTV = 15 + 9 = 24 cm³ ≤ 25 → low (Seban 2019); ≤ 75 → low (Seban 2020).
    assert (r["tmtv"].value, r["tmtv"].interpretation) == (Decimal("24.0"), "low")
    assert "sum of 2 lesion metabolic volumes" in r["tmtv"].method


def test_nothing_measured_is_not_evaluable_with_what_is_missing(engine):
    r = panel(ic.k13(observations=(), references=()), engine)
    assert r["blr"].interpretation is None and set(r["blr"].missing) == {
        "SUVmax bone marrow at baseline PET",
        "SUVmax liver at baseline PET",
    }
    assert r["tmtv"].missing and r["dnlr"].missing == ("leukocytes", "neutrophils")
    assert r["lipi"].interpretation is None and "dNLR" in r["lipi"].missing
    assert r["ps3-ct"].interpretation is None and "SMI" in r["ps3-ct"].missing
    assert r["smi"].value is None and "skeletal muscle area at L3 (cm2)" in r["smi"].missing


def test_values_after_treatment_start_are_not_baseline(engine):
    late = dataclasses.replace(ic.obs("ldh", "300", "U/L", reference_high="250"), effective_date=D("2024-02-01"))
    r = panel(with_observations(late), engine)
    assert r["lipi"].interpretation is None and "LDH" in r["lipi"].missing


def test_lipi_good_and_ldh_without_uln(engine):
    r = panel(
        with_observations(
            ic.obs("leukocytes", "8.0"), ic.obs("neutrophils", "5.0"), ic.obs("ldh", "200", "U/L", reference_high="250")
        ),
        engine,
    )
    assert (r["lipi"].value, r["lipi"].interpretation) == (0, "good")
    r = panel(with_observations(ic.obs("ldh", "300", "U/L")), engine)
    assert "LDH upper limit of normal" in r["lipi"].missing


def test_npvm_absent_when_only_lung_and_nodes(engine):
    facts = ic.k13(
        measurements=(
            ic.m("T1 lung", ic.K13_BL, 60, 40, role=ic.T),
            ic.m("T2 node", ic.K13_BL, 40, 35, role=ic.T, organ="lymph node", nodal=True),
        )
    )
    r = panel(facts, engine)
    # TB1D = 60 + 35 (node SA) = 95 > 90 (1) + SMI low (1) + no NPVM (0) → 2/3.
    assert (r["ps3-ct"].value, r["ps3-ct"].interpretation) == (2, "2/3")


def test_ps7_with_its_unverified_clinical_items(engine):
    extra = (ic.obs("ecog", "1"), ic.obs("albumin", "3.2", "g/dL"))
    facts = ic.k13(
        observations=ic.k13().observations + extra,
        measurements=(
            ic.m("T1 liver", ic.K13_BL, 55, 40, role=ic.T, organ="liver"),
            ic.m("T2 lung", ic.K13_BL, 40, 30, role=ic.T),
            ic.m("NT bone", ic.K13_BL, role=ic.NT, organ="bone"),
        ),
    )
    r = panel(facts, engine)
    # PS3-CT 3 + ECOG 1 ≥ 1 (1) + albumin 32 g/L < 35 (1) + LDH 300 > 250 (1) + sites liver, lung, bone = 3 > 2 (1).
    assert (r["ps7"].value, r["ps7"].interpretation) == (7, "7/7")
    assert "[U]" in r["ps7"].name and "[U]" in r["ps7"].method
    disabled = panel(facts, engine, overrides={"biomarkers.ps7_enabled": False})["ps7"]
    assert disabled.interpretation is None and "unverified" in disabled.missing[0]


def test_smi_criteria_flag_limits_the_flags(engine):
    r = panel(ic.k13(), engine, overrides={"biomarkers.smi_criteria": ["prado"]})
    assert "sarcopenia-prado" in r and "sarcopenia-martin" not in r and "sarcopenia-dercle-53" not in r


def test_fat_indices_and_nlr_only_when_measured(engine):
    assert "sat-index" not in panel(ic.k13(), engine) and "nlr" not in panel(ic.k13(), engine)
    r = panel(with_observations(ic.obs("subcutaneous-fat-area-l3", "153.125"), ic.obs("lymphocytes", "1.2")), engine)
    # 153.125 / 3.0625 = 50.0; NLR 7.2 / 1.2 = 6.0 (no cut-off: iMPI not implemented).
    assert (r["sat-index"].value, r["sat-index"].interpretation) == (Decimal("50.0"), None)
    assert (r["nlr"].value, r["nlr"].interpretation) == (Decimal("6.00"), None)


def test_muscle_loss_on_treatment_is_recorded_not_interpreted(engine):
    # K13: L3 muscle 140 cm² at baseline (2024-01-08); a body-composition SEG on 2024-03-11 gives 126 cm²:
    # (126 − 140) / 140 × 100 = −10.0 %. No verified threshold: interpretation None.
    from rules.facts import ClinicalObservation

    base = ic.k13()
    later = ClinicalObservation("skeletal-muscle-area-l3", D("2024-03-11"), Decimal("126"), "cm2")
    r = panel(dataclasses.replace(base, observations=(*base.observations, later)), engine)
    change = r["muscle-area-change-l3"]
    assert (change.value, change.unit, change.interpretation) == (Decimal("-10.0"), "%", None)
    assert change.scan_date == D("2024-03-11")
    assert r["smi"].value == Decimal("45.7")  # the baseline SMI still uses the baseline area
    assert "muscle-area-change-l3" not in panel(base, engine)  # no on-treatment area: nothing recorded
