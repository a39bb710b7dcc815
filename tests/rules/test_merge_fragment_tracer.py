"""Contract §9.3 inputs in the rules: merged lesions, fragments, conflicting groups, and the PET tracer.

Rules (docs/clinical/criteria-size-pet.md §1.6, §3.1, §7; RECIST 1.1 Eisenhauer 2009 §4.3 "lesions that split
or coalesce"; irRC Wolchok 2009, bidimensional): a lesion that coalesced counts 0 mm and the coalesced mass is
measured as one; RECIST 1.1 adds the fragments' longest diameters, irRC adds their products; two groups of one
lesion at one scan without the fragment marker are a conflict (lesion not assessed); FDG PET criteria are not
evaluable on another tracer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from rules.criteria import irrc, recist11
from rules.engine import get_engine
from rules.evaluate import evaluate_patient, make_timeline
from rules.facts import LesionMeasurement, LesionRole, LesionStatus, PatientFacts, Scan, TherapyLine
from rules.pet_tracers import PetTracer, identify
from tests.rules import pet_cases as pc

D = dt.date.fromisoformat
BL, FU = D("2024-01-02"), D("2024-03-04")
C1D1 = D("2024-01-08")


def m(lesion: str, day: dt.date, ld: float, sa: float, **kw) -> LesionMeasurement:
    role = LesionRole.TARGET if day == BL else None
    status = LesionStatus.ABSENT if ld == 0 else LesionStatus.PRESENT
    return LesionMeasurement(
        lesion_id=lesion,
        scan_date=day,
        role=role,
        status=status,
        organ="liver",
        long_axis_mm=Decimal(str(ld)),
        short_axis_mm=Decimal(str(sa)),
        label=lesion,
        **kw,
    )


def facts(*measurements: LesionMeasurement) -> PatientFacts:
    return PatientFacts(
        patient_ref="p", therapy_lines=(TherapyLine("pembrolizumab", C1D1),), measurements=tuple(measurements)
    )


def assess(module, f: PatientFacts):
    engine = get_engine()
    return module.assess(engine, make_timeline(f, engine))


# --- merge -------------------------------------------------------------------------------------------------
# Baseline T1 30×20, T2 20×15 (liver targets): RECIST sum 30 + 20 = 50 mm; irRC SPD 600 + 300 = 900 mm².
# Follow-up: T1 and T2 coalesced into one mass of 35×20, measured on T1; T2 sent with 0 mm, merged into T1.
# RECIST 1.1: 35 + 0 = 35 → (35 − 50)/50 = −30.0 % → PR (≥ 30 % decrease, inclusive).
# irRC: 35×20 = 700 + 0 = 700 → (700 − 900)/900 = −22.22 % → irSD (irPR needs ≥ 50 %).
MERGE = (
    m("T1", BL, 30, 20),
    m("T2", BL, 20, 15),
    m("T1", FU, 35, 20),
    m("T2", FU, 0, 0, merged_into="label:T1"),
)


def test_merged_lesion_counts_0_mm_recist_and_irrc():
    r = assess(recist11, facts(*MERGE)).at(FU)
    assert (r.category, r.sum_mm, r.percent_from_baseline) == ("PR", Decimal("35.0"), -30)
    assert any("merged into 'T1' (0 mm)" in line for line in r.trace)
    i = assess(irrc, facts(*MERGE)).at(FU)
    assert (i.category, i.sum_mm) == ("irSD", Decimal("700.00"))
    assert any("merged into 'T1' (0 mm²)" in line for line in i.trace)


def test_a_merged_lesion_counts_0_mm_even_when_a_size_was_sent_and_an_unreported_mass_is_warned_about():
    # T2 sent with 12 mm and merged into T1: still 0 mm (35 + 0 = 35 → PR), the 12 mm stated as not used.
    sized = (*MERGE[:3], dataclasses.replace(MERGE[3], long_axis_mm=Decimal("12.0"), status=LesionStatus.PRESENT))
    r = assess(recist11, facts(*sized)).at(FU)
    assert (r.category, r.sum_mm) == ("PR", Decimal("35.0"))
    assert any("merged into 'T1' (0 mm; reported 12 mm not used)" in line for line in r.trace)
    # Merged into a lesion not reported at that scan: said in the warnings.
    orphan = (MERGE[0], MERGE[1], m("T2", FU, 0, 0, merged_into="label:T9"))
    assert any("merged into 'T9', which is not reported" in w for w in evaluate_patient(facts(*orphan)).warnings)
    assert not any("which is not reported" in w for w in evaluate_patient(facts(*MERGE)).warnings)


def test_merged_lesion_without_its_group_is_not_assessed():
    # The same follow-up without T2's merged group: T2 is missing → RECIST NE (partial sum 35 cannot be PD).
    r = assess(recist11, facts(*MERGE[:3])).at(FU)
    assert r.category == "NE"


# --- fragments ---------------------------------------------------------------------------------------------
# Baseline T1 lung 40×30, T2 liver 20×10: RECIST sum 60 mm; irRC SPD 1200 + 200 = 1400 mm².
# Follow-up: T1 split into two fragments a×20 and 22×10 (same lesion identity, fragment = Yes); T2 20×10.
#   a = 30: RECIST (30 + 22) + 20 = 72 → +12 mm, (72 − 60)/60 = +20.0 % → PD (≥ 20 % and ≥ 5 mm, both inclusive).
#   a = 29: 29 + 22 + 20 = 71 → +18.33 % → SD.
#   irRC adds the fragments' products: 30×20 + 22×10 = 600 + 220 = 820, + 200 = 1020 → −27.14 % from the nadir
#   1400 → irSD. The product of the summed diameters (52 × 30 = 1560, + 200 = 1760, +25.71 %) would be irPD:
#   that is the mistake the irRC rule avoids.
@pytest.mark.parametrize(("a", "recist", "total"), [(30, "PD", "72.0"), (29, "SD", "71.0")])
def test_fragments_recist_adds_diameters_irrc_adds_products(a, recist, total):
    fragments = (m("T1", FU, a, 20, fragment=True), m("T1", FU, 22, 10, fragment=True))
    f = facts(m("T1", BL, 40, 30), m("T2", BL, 20, 10), *fragments, m("T2", FU, 20, 10))
    r = assess(recist11, f).at(FU)
    assert (r.category, r.sum_mm) == (recist, Decimal(total))
    assert any(f"T1 {a + 22} (fragments {a} mm + 22 mm = {a + 22} mm) + T2 20" in line for line in r.trace)
    i = assess(irrc, f).at(FU)
    assert i.category == "irSD"
    assert i.sum_mm == Decimal(a * 20 + 220 + 200)
    assert any(f"{a} × 20 + 22 × 10 = {a * 20 + 220} (fragments)" in line for line in i.trace), i.trace


def test_two_groups_without_the_fragment_marker_are_a_conflict():
    # Same numbers as a = 30 above, one group unmarked: T1 is not assessed → RECIST NE (the partial sum
    # 0 + 20 = 20 cannot show PD), with the reason in the trace and the assessment's warnings.
    f = facts(
        m("T1", BL, 40, 30),
        m("T2", BL, 20, 10),
        m("T1", FU, 30, 20, fragment=True),
        m("T1", FU, 22, 10),
        m("T2", FU, 20, 10),
    )
    r = assess(recist11, f).at(FU)
    assert r.category == "NE"
    assert any("without the fragment marker" in line for line in r.trace)
    assert any("T1" in w and "without the fragment marker" in w for w in evaluate_patient(f).warnings)


def test_a_later_report_still_replaces_an_earlier_one():
    # Two SR instances (a corrected report) are not a conflict: the later one is used.
    first = m("T1", FU, 50, 20, source="dicom-sr:a")
    second = m("T1", FU, 45, 20, source="dicom-sr:b")
    f = facts(m("T1", BL, 40, 30), first, second)
    assert assess(recist11, f).at(FU).sum_mm == Decimal("45.0")


# --- PET tracer --------------------------------------------------------------------------------------------
PSMA = PetTracer("psma-1007", "18F-PSMA-1007", "126758", "DCM")
FDG_STATED = PetTracer("fdg", "18F-FDG", "35321007", "SCT")


def _with_tracers(f: PatientFacts, tracers: dict[str, PetTracer]) -> PatientFacts:
    scans = tuple(Scan(scan_date=pc.P1_SCANS[label], modalities=("PT",), pet_tracer=t) for label, t in tracers.items())
    return dataclasses.replace(f, scans=scans)


def _percist(f: PatientFacts):
    return evaluate_patient(f).criterion("PERCIST-1.0")


def test_percist_on_fdg_is_unchanged_and_says_when_fdg_was_assumed():
    # P1 (size spec §11): FU1 hottest B 5.5 vs baseline A 8.0 → −31.25 %, Δ −2.5 → PMR.
    stated = _percist(_with_tracers(pc.p1(), {k: FDG_STATED for k in pc.P1_SCANS}))
    assumed = _percist(pc.p1())
    assert stated.at(pc.P1_SCANS["FU1"]).category == assumed.at(pc.P1_SCANS["FU1"]).category == "PMR"
    assert not any("assumed" in line for line in stated.at(pc.P1_SCANS["FU1"]).trace)
    assert any("18F-FDG — assumed: no tracer stated" in line for line in assumed.at(pc.P1_SCANS["FU1"]).trace)


def test_a_non_fdg_follow_up_is_ne_naming_the_tracer_and_the_others_are_read_as_before():
    tracers = {k: FDG_STATED for k in pc.P1_SCANS} | {"FU1": PSMA}
    f = _with_tracers(pc.p1(), tracers)
    a = _percist(f)
    fu1 = a.at(pc.P1_SCANS["FU1"])
    assert fu1.category == "NE"
    assert "18F-PSMA-1007 (DCM 126758)" in fu1.trace[0] and "PERCIST-1.0 is defined on 18F-FDG" in fu1.trace[0]
    # FU2 is still read against the FDG baseline, as without the PSMA scan.
    assert a.at(pc.P1_SCANS["FU2"]).category == _percist(pc.p1()).at(pc.P1_SCANS["FU2"]).category
    # The uptake values stay as facts of their tracer (lesion table).
    row = next(r for r in evaluate_patient(f).lesion_table if r["lesion"] == "B node")
    assert row["cells"][pc.P1_SCANS["FU1"].isoformat()]["tracer"] == "psma-1007"
    assert row["cells"][pc.P1_SCANS["FU1"].isoformat()]["sul_peak"] == Decimal("5.5")
    # Every other FDG criterion says the same for that scan.
    for name in ("imPERCIST5", "PERCIMT", "EORTC-PET", "iPERCIST"):
        criterion = evaluate_patient(f).criterion(name)
        if criterion is not None and criterion.at(pc.P1_SCANS["FU1"]) is not None:
            assert criterion.at(pc.P1_SCANS["FU1"]).category == "NE", name


def test_a_non_fdg_baseline_makes_every_pet_follow_up_ne():
    a = _percist(_with_tracers(pc.p1(), {k: PSMA for k in pc.P1_SCANS}))
    assert [tp.category for tp in a.timepoints] == ["NE", "NE", "NE"]
    assert all("PSMA-1007" in tp.trace[0] for tp in a.timepoints)
    assert any("baseline PET used 18F-PSMA-1007" in w for w in a.warnings)


@pytest.mark.parametrize(
    ("code", "scheme", "text", "key"),
    [
        ("35321007", "SCT", None, "fdg"),
        ("C-B1031", "SRT", None, "fdg"),
        (None, None, "Fluorodeoxyglucose", "fdg"),
        (None, None, "18F-FDG", "fdg"),
        ("126758", "DCM", "PSMA-1007 F^18^", "psma-1007"),
        ("724025002", "SCT", None, "dotatate"),
        (None, None, "Zr-89 atezolizumab", "zr89-atezolizumab"),
        ("126511", "DCM", "89Zr-Df-IAB22M2C", "zr89-iab22m2c"),
        ("126511", "DCM", None, "zr89-antibody"),
        (None, None, "Zr-89 trastuzumab", "zr89-antibody"),
        (None, None, "some new tracer", "other"),
    ],
)
def test_identify_tracer(code, scheme, text, key):
    assert identify(code=code, scheme=scheme, text=text).key == key
    assert identify() is None
