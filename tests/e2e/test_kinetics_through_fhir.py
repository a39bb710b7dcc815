"""Issue 4: the kinetics worked examples K1, K3, K5, K7, K9, K11, K12 and K13 of
``clinical/criteria-kinetics-irae.md`` §7 through the real interfaces.

In: FHIR transaction Bundles (Patient, therapy start/stop, death and its cause, ECOG, labs, PET reference regions,
imaging biomarkers, mCODE TumorSize measurements — contract §4) and, for K1 and K9, TID 1500 SRs over C-STORE.
Out: ``GET /fhir/DiagnosticReport?…``, ``GET /fhir/Observation/<id>`` (the kinetics Observation of contract §5:
every ``{C}/CodeSystem/hyperprogression`` definition as met / not-met / not-evaluable, the seven numeric
components at 2 decimals), ``GET /fhir/Flag?…`` and the CDS Hooks cards.

The threshold boundaries of every definition are unit-tested in tests/rules/test_kinetics.py; here the boundary
of the always-available alert (fast progression, OAK: 42 days, +50 %) is also crossed through FHIR.
"""

from __future__ import annotations

import datetime as dt

import pytest

from rules.scenario import Case, Lesion, T, c
from service.assessment.worker import Worker
from service.demo.cohort import case_datasets
from tests.e2e import kinetics_cases as kc
from tests.e2e.kinetics_cases import D
from tests.rules.cases import E5

TTF_DECIDED_AFTER_E2 = {
    # K1's therapy stop (2024-03-20) is dated after its E2 scan, and the spec's classification uses it (TTF 44
    # days): these three are asserted in test_therapy_stop_after_e2_decides_the_ttf_definitions (a known bug).
    # K7's stop (2024-03-28) is after E2 too; Lo Russo stays met without it (3 of the other 4 criteria).
    "K1": {"kato-2017", "lo-russo-2019", "kim-2019"},
}


@pytest.fixture
def cds_ehr():
    ehr = kc.CdsEhr()
    yield ehr
    ehr.close()


@pytest.fixture
def settings(settings_factory, cds_ehr):
    """The service with the EHR allowed as a CDS Hooks client (its cards are read the way the EHR reads them)."""
    return settings_factory(**cds_ehr.settings_overrides())


def evaluate(settings, db) -> None:
    Worker(settings, db).drain()


@pytest.mark.parametrize("example", kc.KINETICS_EXAMPLES, ids=lambda e: e.key)
def test_worked_example_kinetics_observation(example, app_client, settings, db):
    """Every definition component and every numeric component of the kinetics Observation on the E2 report."""
    mrn = kc.submit(app_client, example)
    evaluate(settings, db)
    e2 = example.case.scans["TP1"]
    [report] = kc.reports(app_client, mrn)
    assert report["effectiveDateTime"][:10] == e2.isoformat()
    kinetics = kc.kinetics_of(app_client, report)
    assert kinetics["subject"]["identifier"] == {"system": kc.SYSTEM, "value": mrn}
    assert kc.has_code(kinetics["code"], kc.IMMUNORAD, "tumour-kinetics")
    # The window the kinetics cover: E0 (or E1 without E0) → E2.
    start = example.case.scans.get("E0", example.case.scans["BL"])
    assert kinetics["effectivePeriod"] == {"start": start.isoformat(), "end": e2.isoformat()}

    # Numeric components: the spec's numbers (K12: TGR.ref 19.67, TGR.exp −21.72 and the same formulas).
    assert kc.numbers(kinetics) == example.numbers
    if "E0" in example.case.scans:
        sums = {
            label: sum(
                cell.ld
                for lesion in example.case.lesions
                if lesion.role is T
                for lab, cell in lesion.cells.items()
                if lab == label
            )
            for label in ("E0", "BL", "TP1")
        }
        assert example.numbers == kc.reference_numbers(
            sums["E0"], sums["BL"], sums["TP1"], example.case.scans["E0"], example.case.scans["BL"], e2
        )

    # Every definition, named (contract §5: never a bare "HPD").
    got = kc.definition_statuses(kinetics)
    skip = TTF_DECIDED_AFTER_E2.get(example.key, set())
    assert {k: v for k, v in got.items() if k not in skip} == {
        k: v for k, v in example.statuses.items() if k not in skip
    }


def test_a_kinetics_observation_on_every_report(app_client, settings, db):
    """Contract §5: every follow-up report carries the kinetics Observation (size spec E5: four follow-ups)."""
    mrn = kc.submit(app_client, kc.KExample("E5", E5))
    evaluate(settings, db)
    reports = kc.reports(app_client, mrn)
    assert [r["effectiveDateTime"] for r in reports] == ["2024-03-11", "2024-05-06", "2024-06-03", "2024-07-01"]
    for report in reports:
        kinetics = kc.kinetics_of(app_client, report)
        assert kinetics["effectivePeriod"] == {"start": "2024-01-08", "end": "2024-03-11"}  # E1 → E2 (no E0)
        assert set(kc.definition_statuses(kinetics).values()) <= {"met", "not-met", "not-evaluable"}


def test_k1_classic_hpd_report_flags_and_cards(app_client, settings, db, cds_ehr):
    mrn = kc.submit(app_client, kc.K1)
    evaluate(settings, db)
    report = kc.report_at(app_client, mrn, D("2024-03-18"))
    # +81.8 % with two new liver lesions: RECIST 1.1 PD, iRECIST iUPD.
    got = kc.categories(app_client, report)
    assert (got["RECIST-1.1"], got["iRECIST"]) == ("PD", "iUPD")
    kinetics = kc.kinetics_of(app_client, report)
    assert "80·2 = 160 vs 44·3 = 132" in kc.definition_reason(kinetics, "fast-progression-oak")
    assert "E2 46 days after E1" in kc.definition_reason(kinetics, "fast-progression-ferrara-2020")
    assert "ΔTGR 193.98" in kc.definition_reason(kinetics, "kas-2020")
    # Alerts: hyperprogression by the primary definition (Kas 2020) and fast progression, both on the E2 report.
    flags = kc.flags_by_code(app_client, mrn)
    assert len(flags["hyperprogression"]) == 1 and len(flags["fast-progression"]) == 1
    for code in ("hyperprogression", "fast-progression"):
        flag = flags[code][0]
        assert flag["status"] == "active"
        assert flag["period"]["start"] == "2024-03-18"
        assert kc.flag_report(flag)["reference"] == f"DiagnosticReport/{report['id']}"
        assert flag["subject"]["identifier"] == {"system": kc.SYSTEM, "value": mrn}
    assert "Kas 2020" in flags["hyperprogression"][0]["code"]["text"]
    assert "OAK" in flags["fast-progression"][0]["code"]["text"]
    indicators = kc.indicators(kc.patient_view(app_client, cds_ehr, mrn))
    assert indicators["hyperprogression"] == "critical" and indicators["fast-progression"] == "critical"


def test_k1_through_dicom_gives_the_same_kinetics(app_client, settings, db):
    """K1's scans as CT images + TID 1500 SRs over C-STORE; therapy start/stop through FHIR."""
    mrn = "MRN-K1-DICOM"
    kc.post_bundle(app_client, kc.clinical_bundle(kc.K1, mrn=mrn))
    statuses = kc.send_dicom(settings, db, case_datasets(kc.K1_CASE, mrn))
    assert statuses == [0] * 6
    evaluate(settings, db)
    [report] = kc.reports(app_client, mrn)
    assert report["imagingStudy"], "the report names the imaged study"
    kinetics = kc.kinetics_of(app_client, report)
    assert kc.numbers(kinetics) == kc.K1.numbers
    skip = TTF_DECIDED_AFTER_E2["K1"]
    got = kc.definition_statuses(kinetics)
    assert {k: v for k, v in got.items() if k not in skip} == {k: v for k, v in kc.K1.statuses.items() if k not in skip}


def test_k3_recist_pd_is_not_hyperprogression(app_client, settings, db):
    mrn = kc.submit(app_client, kc.K3)
    evaluate(settings, db)
    [report] = kc.reports(app_client, mrn)
    got = kc.categories(app_client, report)
    # Spec K3 output: "RECIST PD only; iRECIST iUPD" (+22.9 %, +16 mm).
    assert (got["RECIST-1.1"], got["iRECIST"]) == ("PD", "iUPD")
    codes = set(kc.flags_by_code(app_client, mrn))
    assert not codes & {"hyperprogression", "fast-progression", "kinetics-acceleration", "hpd-not-evaluable"}
    assert "confirmation-due" in codes


def test_k5_acceleration_below_recist_is_informational_only(app_client, settings, db):
    mrn = kc.submit(app_client, kc.K5)
    evaluate(settings, db)
    [report] = kc.reports(app_client, mrn)
    assert kc.categories(app_client, report)["RECIST-1.1"] == "SD"  # +13.5 %
    kinetics = kc.kinetics_of(app_client, report)
    assert "H2_REQUIRE_PD = false" in kc.definition_reason(kinetics, "saada-bouzid-2017")
    # §3.4: KINETICS_ACCELERATION needs ΔTGR > 50 (25.34 here); no HPD alert without PD.
    assert not set(kc.flags_by_code(app_client, mrn)) & {
        "hyperprogression",
        "fast-progression",
        "kinetics-acceleration",
    }


def test_k7_lo_russo_without_kinetics(app_client, settings, db):
    mrn = kc.submit(app_client, kc.K7)
    evaluate(settings, db)
    [report] = kc.reports(app_client, mrn)
    assert kc.categories(app_client, report)["RECIST-1.1"] == "PD"  # +36 % and new lesions
    kinetics = kc.kinetics_of(app_client, report)
    # No E0: the reference rates and the ratios are absent (dataAbsentReason); the on-treatment rates are there.
    assert kc.numbers(kinetics) == kc.K7.numbers
    reason = kc.definition_reason(kinetics, "lo-russo-2019")
    assert "ECOG 1 → 3" in reason and "new organ(s): 23451007" in reason and "2 new lesions in 10200004" in reason
    for code in ("champiat-2017", "ferrara-2018", "kas-2020"):
        assert kc.definition_reason(kinetics, code).startswith("E0_MISSING")
    flags = kc.flags_by_code(app_client, mrn)
    assert "hyperprogression" not in flags
    # Issue 15 / contract §9.4: "not evaluable" is stated in the kinetics Observation (above) and the report, never
    # an active Flag by default (IMMUNORAD_ALERT_NOT_EVALUABLE turns it on: tests/service/test_alerts_for_action.py).
    assert "hpd-not-evaluable" not in flags


def test_therapy_stop_after_e2_decides_the_ttf_definitions(app_client, settings, db):
    # Spec §3.2.3: PENDING_TTF only until the stop is known (or C1D1 + 61 days); K1 and K7 tables use TTF.
    mrn = kc.submit(app_client, kc.K1)
    k7 = kc.submit(app_client, kc.K7)
    evaluate(settings, db)
    kinetics = kc.kinetics_of(app_client, kc.reports(app_client, mrn)[0])
    assert kc.definition_statuses(kinetics) == kc.K1.statuses
    assert "TTF 44 days" in kc.definition_reason(kinetics, "kato-2017")
    assert "3/5 met" in kc.definition_reason(kinetics, "lo-russo-2019")
    reason = kc.definition_reason(kc.kinetics_of(app_client, kc.reports(app_client, k7)[0]), "lo-russo-2019")
    assert "4/5 met" in reason and "TTF 50 days" in reason


def test_k7_ecog_sent_as_loinc_answer_codes(app_client, settings, db):
    mrn = kc.submit(app_client, kc.K7, mrn="MRN-K7-LA", ecog_coded=True)
    evaluate(settings, db)
    kinetics = kc.kinetics_of(app_client, kc.reports(app_client, mrn)[0])
    assert "ECOG 1 → 3" in kc.definition_reason(kinetics, "lo-russo-2019")
    assert kc.definition_statuses(kinetics)["lo-russo-2019"] == "met"


def test_k12_golden_row_of_the_reference_code(app_client, settings, db):
    mrn = kc.submit(app_client, kc.K12)
    evaluate(settings, db)
    [report] = kc.reports(app_client, mrn)
    kinetics = kc.kinetics_of(app_client, report)
    quantities = {
        c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in kinetics["component"] if "valueQuantity" in c
    }
    assert quantities["tgr-reference"]["value"] == 19.67 and quantities["tgr-experimental"]["value"] == -21.72
    assert quantities["tgr-reference"]["unit"] and quantities["tgk-reference"]["unit"]
    assert kc.categories(app_client, report)["RECIST-1.1"] == "SD"  # −16.7 %


# --- K9: dissociated response, lesion level ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "example, expected",
    [
        (kc.K9, {"RECIST-1.1": "SD", "iRECIST": "iSD"}),  # −20.6 %: neither ≤ −30 % nor ≥ +20 %
        (kc.K9B, {"RECIST-1.1": "PD", "iRECIST": "iUPD"}),  # plus a new 12 mm lung nodule
    ],
    ids=["K9", "K9b"],
)
def test_k9_dissociated_response_through_dicom(example, expected, app_client, settings, db, cds_ehr):
    mrn = example.mrn
    kc.post_bundle(app_client, kc.clinical_bundle(example))
    assert set(kc.send_dicom(settings, db, case_datasets(example.case, mrn))) == {0}
    evaluate(settings, db)
    [report] = kc.reports(app_client, mrn)
    got = kc.categories(app_client, report)
    assert {k: got[k] for k in expected} == expected
    kinetics = kc.kinetics_of(app_client, report)  # a kinetics Observation on every report, E0 or not
    assert kc.numbers(kinetics) == example.numbers
    assert kc.definition_statuses(kinetics) == example.statuses
    flags = kc.flags_by_code(app_client, mrn)
    [dissociated] = flags["dissociated-response"]
    assert dissociated["period"]["start"] == "2024-03-06"
    assert kc.flag_report(dissociated)["reference"] == f"DiagnosticReport/{report['id']}"
    discordant = "L2 lung" + (", N1 lung (new)" if example is kc.K9B else "")
    assert dissociated["code"]["text"].endswith(f"(discordant: {discordant})")
    assert ("confirmation-due" in flags) is (example is kc.K9B)  # K9b: "iUPD — confirm in 4–8 weeks"
    # Lesion level, in the card's detail: L1 −50.0 % and L3 −33.3 % responding, L2 +35.0 % (≥ 20 % and ≥ 5 mm)
    # progressing — the spec's K9 table.
    card = next(
        c for c in kc.patient_view(app_client, cds_ehr, mrn) if c["source"]["topic"]["code"] == "dissociated-response"
    )
    assert card["indicator"] == "info"
    for line in (
        "L1 liver 30 mm → 15 mm (-15 mm, -50.00 %): responding",
        "L2 lung 20 mm → 27 mm (+7 mm, +35.00 %): progressing",
        "L3 node 18 mm → 12 mm (-6 mm, -33.33 %): responding",
    ):
        assert f"- {line}\n" in card["detail"], card["detail"]


# --- K11: death without a post-baseline scan --------------------------------------------------------------------------


def test_k11_early_death_and_death_branch_fast_progression(app_client, settings, db, cds_ehr):
    mrn = kc.submit(app_client, kc.K11)
    evaluate(settings, db)
    [patient] = [
        e["resource"] for e in app_client.get(f"/fhir/Patient?identifier={kc.SYSTEM}|{mrn}").get_json()["entry"]
    ]
    assert patient["deceasedDateTime"] == "2024-06-10"
    # No follow-up scan: no DiagnosticReport (contract §5, one per timepoint after baseline).
    assert kc.reports(app_client, mrn) == []
    body = app_client.get(f"/api/patients/{mrn}").get_json()
    kinetics = body["assessment"]["kinetics"]
    assert {d["code"]: d["status"] for d in kinetics["definitions"]} == kc.K11.statuses
    oak = next(d for d in kinetics["definitions"] if d["code"] == "fast-progression-oak")
    assert oak["reason"].startswith("MET_DEATH_BRANCH") and "66 days after C1D1" in oak["reason"]
    early = next(d for d in kinetics["definitions"] if d["code"] == "early-death")
    assert "69 days after E1" in early["reason"]
    # The alerts reach the chart: fast progression (critical, retrospective) and early death (registry, info).
    assert kc.indicators(kc.patient_view(app_client, cds_ehr, mrn)) == {
        "fast-progression": "critical",
        "early-death": "info",
    }


def test_k11_alerts_are_flag_resources(app_client, settings, db):
    mrn = kc.submit(app_client, kc.K11)
    evaluate(settings, db)
    flags = kc.flags_by_code(app_client, mrn)
    assert set(flags) == {"fast-progression", "early-death"}
    for flag in (flags["fast-progression"][0], flags["early-death"][0]):
        assert flag["status"] == "active" and flag["period"]["start"] == "2024-06-10"


# --- K13: baseline prognostic panel -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pet_as", ["reference-regions", "suvmax-observations"])
def test_k13_baseline_prognostic_panel(pet_as, app_client, settings, db):
    example = kc.K13
    if pet_as == "suvmax-observations":
        # The same PET values as {C}/CodeSystem/immunorad imaging-biomarker Observations (contract §4).
        codes = {"bone marrow": "suvmax-bone-marrow", "spleen": "suvmax-spleen", "liver": "suvmax-liver"}
        clinical = kc.Clinical(
            sex="male",
            labs=example.clinical.labs,
            biomarkers=example.clinical.biomarkers
            + tuple(
                (codes[organ], day, value, "g/mL{SUVbw}") for organ, day, value in example.clinical.reference_regions
            ),
        )
        example = kc.KExample("K13", example.case, clinical)
    mrn = kc.submit(app_client, example, mrn=f"MRN-K13-{pet_as}")
    evaluate(settings, db)
    [report] = kc.reports(app_client, mrn)
    got = {}
    for observation in kc.results(app_client, report):
        code = next((c["code"] for c in observation["code"]["coding"] if c["system"] == kc.IMMUNORAD), "")
        if code.startswith("biomarker-"):
            assert observation["effectiveDateTime"] == "2024-01-08"
            assert "cohort-derived" in observation["note"][0]["text"] and observation["method"]["text"]
            value = observation.get("valueQuantity", {}).get("value")
            interpretation = [i.get("text") for i in observation.get("interpretation", [])]
            got[code.removeprefix("biomarker-")] = (value, interpretation[0] if interpretation else None)
    assert {k: got.get(k) for k in kc.K13_EXPECTED} == kc.K13_EXPECTED
    # §6.8: informational Observations only, never an alert (the E0-less kinetics note is not a §6 alert).
    assert set(kc.flags_by_code(app_client, mrn)) <= {"hpd-not-evaluable"}
    kinetics = kc.kinetics_of(app_client, report)
    assert kc.definition_statuses(kinetics)["kas-2020"] == "not-evaluable"


# --- the boundary of the always-available alert, through FHIR -----------------------------------------------------------

FP_C1D1 = D("2024-02-05")


def fp_case(days_after_c1d1: int, t1: int, t2: int) -> Case:
    # E1 2024-02-01: 22 + 22 = 44 mm. +50 % is S(E2) = 66 (integer test S2·2 ≥ S1·3).
    return Case(
        "FP",
        FP_C1D1,
        {"BL": D("2024-02-01"), "TP1": FP_C1D1 + dt.timedelta(days=days_after_c1d1)},
        (
            Lesion("T1 lung", T, "lung", cells={"BL": c(22, 16), "TP1": c(t1, 20)}),
            Lesion("T2 liver", T, "liver", cells={"BL": c(22, 16), "TP1": c(t2, 20)}),
        ),
    )


@pytest.mark.parametrize(
    "days, t1, t2, expected",
    [
        (42, 33, 33, "met"),  # 42 days ≤ 42 and 66·2 = 132 ≥ 44·3 = 132 (inclusive)
        (42, 33, 32, "not-met"),  # 65·2 = 130 < 132
        (43, 40, 40, "not-met"),  # 43 days > 42, whatever the growth
    ],
)
def test_fast_progression_oak_boundaries_through_fhir(days, t1, t2, expected, app_client, settings, db):
    example = kc.KExample(f"FP-{days}-{t1 + t2}", fp_case(days, t1, t2))
    mrn = kc.submit(app_client, example)
    evaluate(settings, db)
    [report] = kc.reports(app_client, mrn)
    kinetics = kc.kinetics_of(app_client, report)
    assert kc.definition_statuses(kinetics)["fast-progression-oak"] == expected
    assert ("fast-progression" in kc.flags_by_code(app_client, mrn)) is (expected == "met")
