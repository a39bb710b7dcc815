"""Results out (contract §5): DiagnosticReport, criterion / mCODE / kinetics Observations, Flags and the EHR
transaction Bundle, built from the real evaluations of the worked examples E1, E3, E9 and E11."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from fractions import Fraction

import pytest

from fhir_mappings import codes
from fhir_mappings.alerts import AlertState
from fhir_mappings.outbound import (
    PatientRef,
    ReportContext,
    build_report,
    conditional_url,
    ehr_transaction_bundle,
    resource_id,
)
from fhir_mappings.prefill import render_prefill
from fhir_mappings.validation import validate_resource
from rules.results import (
    BestResponse,
    BiomarkerResult,
    CriterionAssessment,
    DefinitionResult,
    Finding,
    KineticsResult,
    TimepointResponse,
)
from tests.fhir_mappings import (
    ALERT,
    CRITERIA,
    HYPERPROGRESSION,
    IMMUNORAD,
    ISSUED,
    MRN_SYSTEM,
    RESPONSE,
    C,
    assess,
    attachment_text,
    component,
    context,
    criterion_observation,
    observation_with_code,
    schema_errors,
)
from tests.rules import cases

D = dt.date.fromisoformat
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
E1_TP1, E1_TP2, E1_TP3 = D("2024-03-11"), D("2024-05-06"), D("2024-07-01")


def report(case, scan_date, alerts=(), assessment=None, **ctx):
    return build_report(assessment or assess(case), context(case, scan_date, **ctx), alerts)


def mcode_status(resources) -> dict:
    return observation_with_code(resources.observations, LOINC, "97509-4")


def quantity(comp) -> tuple:
    q = comp["valueQuantity"]
    return q["value"], q.get("system"), q.get("code")


# -- synthetic additions: other criteria, kinetics, findings (the mapping is generic over them) ------------------
def with_irecist(assessment, first_category="iUPD"):
    """E1 plus an iRECIST assessment: iUPD at TP1 (window in ``extra``), iCPD confirmed at TP2."""
    recist_tp1 = assessment.criterion("RECIST-1.1").timepoints[0]
    tp1 = TimepointResponse(
        criterion="iRECIST",
        scan_date=E1_TP1,
        category=first_category,
        target_response="iPR",
        nontarget_response="NON-iCR/NON-iUPD",
        new_lesions="present",
        sum_mm=recist_tp1.sum_mm,
        baseline_sum=recist_tp1.baseline_sum,
        percent_from_baseline=Fraction(-30),
        percent_from_nadir=Fraction(-30),
        confirmed=False,
        trace=("new lesion N1 → iUPD (iRECIST Table 2)",),
        extra={
            "iupd_confirmation_window": (D("2024-04-08"), D("2024-05-06")),
            "nlt_sum_mm": 12,
            "reset": False,
            "note_text": "NLT SOM 12 mm",
            "nested": {"ignored": True},
        },
    )
    tp2 = TimepointResponse(
        criterion="iRECIST",
        scan_date=E1_TP2,
        category="iCPD",
        new_lesions="NLT growth",
        confirmed=True,
        progression_date=E1_TP1,
        trace=("NLT SOM +6 mm → iCPD",),
    )
    irecist = CriterionAssessment(
        criterion="iRECIST",
        version="2017",
        source="Seymour 2017",
        flags={},
        timepoints=(tp1, tp2),
        best_response=BestResponse("iCPD", E1_TP2, False, "iCPD on 2024-05-06"),
        progression_date=E1_TP1,
        provisional=True,
    )
    criteria = tuple(c for c in assessment.criteria if c.criterion != "iRECIST") + (irecist,)
    return dataclasses.replace(assessment, criteria=criteria)


KINETICS = KineticsResult(
    e0_date=D("2023-11-06"),
    e1_date=D("2024-01-08"),
    e2_date=E1_TP1,
    tgr_reference=10.123,
    tgr_experimental=-15.5,
    tgr_ratio=None,
    tgr_difference=-25.623,
    tgk_reference=1.5,
    tgk_experimental=-4.25,
    tgk_ratio=-2.8333333,
    definitions=(
        DefinitionResult("champiat-2017", "not-met", "no RECIST PD at E2", "Champiat 2017"),
        DefinitionResult(
            "kas-2020", "not-evaluable", "TGR ratio undefined: reference TGR ≤ 0", "Kas 2020", borderline=True
        ),
        DefinitionResult("fast-progression-oak", "met", "E2 day 56 ≤ 42? no — synthetic", "Gandara 2021"),
    ),
    flags=("UNDEFINED_RATIO",),
    notes=("E0 from an outside CT",),
)

BIOMARKERS = (
    BiomarkerResult(
        "tmtv", "Total metabolic tumour volume", 123.4, "mL", "high", "Seban 2019, median cut-off", "Seban 2019"
    ),
    BiomarkerResult(
        "lipi", "Lung Immune Prognostic Index", "intermediate", None, None, "Mezquita 2018", "Mezquita 2018"
    ),
    BiomarkerResult(
        "blr", "Bone marrow-to-liver ratio", None, None, None, "Seban 2019", "Seban 2019", missing=("liver SUVmean",)
    ),
)


def finding(code, scan_date=E1_TP1, severity="info", **kw):
    return Finding(
        code=code,
        scan_date=scan_date,
        severity=severity,
        summary=kw.pop("summary", f"{code} found"),
        detail=kw.pop("detail", "step 1\nstep 2"),
        rule=kw.pop("rule", f"R-{code}"),
        source=kw.pop("source", "spec"),
        **kw,
    )


def alert(code, status="active", scan_date=E1_TP1, report_date=None, **kw):
    return AlertState(
        finding=finding(code, scan_date=scan_date, **kw),
        identifier=f"key-E1/{code}/{scan_date}",
        status=status,
        first_raised=scan_date,
        report_date=report_date or scan_date,
    )


ALERTS = (
    alert("hyperprogression", severity="critical"),
    alert(
        "irae",
        severity="warning",
        key="pneumonitis",
        codings=({"system": SNOMED, "code": "205237003", "display": "Pneumonitis"},),
    ),
    alert("pseudoprogression", status="inactive", window_end=D("2024-05-06")),
    alert("dissociated-response", alert=False),
)


def rich_e1():
    """E1 with iRECIST, kinetics and biomarkers: every kind of Observation at once."""
    return dataclasses.replace(with_irecist(assess(cases.E1)), kinetics=KINETICS, biomarkers=BIOMARKERS)


# -- the criterion Observation -------------------------------------------------------------------------------------
def test_e1_tp1_recist_observation_is_pr_at_minus_30_percent():
    # SoD BL 40+30+20 = 90; TP1 28+21+14 = 63 → (63 − 90)/90 = −30.00 % → PR (inclusive).
    r = report(cases.E1, E1_TP1)
    obs = criterion_observation(r.observations, "RECIST-1.1")
    assert obs["resourceType"] == "Observation" and obs["status"] == "preliminary"
    assert obs["valueCodeableConcept"]["coding"] == [{"system": RESPONSE, "code": "PR", "display": "partial response"}]
    assert obs["code"]["coding"][0] == {"system": IMMUNORAD, "code": "overall-response", "display": "Overall response"}
    assert obs["code"]["coding"][1]["code"] == "OVRLRESP"
    assert obs["code"]["coding"][1]["system"] == codes.CDISC_RSTESTCD
    assert [(c["system"], c["code"]) for c in obs["method"]["coding"]] == [(CRITERIA, "RECIST-1.1"), (DCM, "126081")]
    assert obs["identifier"] == [
        {"use": "official", "system": f"{C}/identifier/observation", "value": "key-E1/2024-03-11/RECIST-1.1"}
    ]
    assert obs["effectiveDateTime"] == "2024-03-11"
    assert obs["subject"] == {"reference": "Patient/pat-e1", "identifier": {"system": MRN_SYSTEM, "value": "MRN-E1"}}
    assert quantity(component(obs, "percent-change-from-baseline")) == (-30.00, UCUM, "%")
    assert quantity(component(obs, "percent-change-from-nadir")) == (-30.00, UCUM, "%")
    assert quantity(component(obs, "sum-of-diameters")) == (63, UCUM, "mm")
    assert quantity(component(obs, "baseline-sum")) == (90, UCUM, "mm")
    assert quantity(component(obs, "absolute-change-from-nadir")) == (-27, UCUM, "mm")
    assert component(obs, "target-response")["valueCodeableConcept"]["coding"][0] == {
        "system": RESPONSE,
        "code": "PR",
        "display": "partial response",
    }
    assert component(obs, "non-target-response")["valueCodeableConcept"]["coding"][0]["code"] == "NON-CR/NON-PD"
    assert component(obs, "new-lesions")["valueCodeableConcept"]["coding"][0] == {
        "system": IMMUNORAD,
        "code": "absent",
        "display": "Absent",
    }
    # confirmation and progression date are not set for RECIST 1.1 PR at TP1; BOR only on the latest timepoint
    assert component(obs, "confirmed") is None and component(obs, "progression-date") is None
    assert component(obs, "best-overall-response") is None
    # the rule trace, one line per decision
    note = obs["note"][0]["text"].splitlines()
    assert note[0] == "targets: T1 lung 28 + T2 liver 21 + T3 node 14"
    assert any("overall_response_with_targets row PR" in line for line in note)


def test_percentages_are_rounded_for_display_only():
    # TP2: (58 − 90)/90 = −35.555… % → −35.56; from nadir 63: −7.936… % → −7.94.
    obs = criterion_observation(report(cases.E1, E1_TP2).observations, "RECIST-1.1")
    assert component(obs, "percent-change-from-baseline")["valueQuantity"]["value"] == -35.56
    assert component(obs, "percent-change-from-nadir")["valueQuantity"]["value"] == -7.94


def test_best_overall_response_rides_on_the_latest_timepoint():
    # E11: PR (8 mm: TSTM 5 + 3) → CR → CR; confirmed CR (28 days ≥ 28) is known only at TP3.
    tp3 = criterion_observation(report(cases.E11, D("2024-10-21")).observations, "RECIST-1.1")
    assert component(tp3, "best-overall-response")["valueCodeableConcept"]["coding"][0]["code"] == "CR"
    confirmed = component(tp3, "best-overall-response-confirmed")["valueCodeableConcept"]
    assert confirmed["coding"][0]["code"] == "CR" and "confirmed by CR on 2024-10-21" in confirmed["text"]
    tp1 = criterion_observation(report(cases.E11, D("2024-07-29")).observations, "RECIST-1.1")
    assert tp1["valueCodeableConcept"]["coding"][0]["code"] == "PR"
    assert component(tp1, "best-overall-response") is None
    assert component(tp1, "non-target-response")["valueCodeableConcept"] == {"text": "no non-target lesions"}


def test_a_criterion_without_a_response_at_the_date_gets_no_observation():
    # E3: SD (24 mm, +20 % but +4 mm) → PD at TP2 (25 mm, +5 mm); RECIST is not re-graded at TP3.
    r = report(cases.E3, D("2024-07-22"), primary_criterion="RECIST-1.1")
    assert criterion_observation(r.observations, "RECIST-1.1") is None
    status = mcode_status(r)
    assert status["valueCodeableConcept"]["coding"][0]["code"] == "271299001"
    assert "2024-06-24" in status["note"][0]["text"]
    # Issue 15: the conclusion is the pre-fill's impression (dates in one format).
    assert r.diagnostic_report["conclusion"].startswith("Progression by RECIST 1.1 since 24 Jun 2024")
    assert "derivedFrom" not in status


def test_e3_pd_uses_the_change_from_nadir_in_the_conclusion():
    r = report(cases.E3, D("2024-06-24"), primary_criterion="RECIST-1.1")
    obs = criterion_observation(r.observations, "RECIST-1.1")
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "PD"
    assert component(obs, "progression-date")["valueDateTime"] == "2024-06-24"
    # SoD 25 mm vs the nadir 20 mm: +25 % (+5 mm) → PD; the impression gives the change from the nadir.
    assert r.diagnostic_report["conclusion"].startswith(
        "Progressive disease by RECIST 1.1: sum of diameters 25 mm, +25 % from nadir (20 mm)."
    )


# -- mCODE CancerDiseaseStatus ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case, scan_date, category, snomed",
    [
        (cases.E1, E1_TP1, "PR", "268910001"),  # PR → improved
        (cases.E11, D("2024-09-23"), "CR", "268910001"),  # CR → improved (preferred VS, not the US-extension remission)
        (cases.E3, D("2024-04-29"), "SD", "359746009"),  # SD → stable
        (cases.E3, D("2024-06-24"), "PD", "271299001"),  # PD → worsened
        (cases.E9, D("2024-06-03"), "NE", "709137006"),  # NE (T3 not imaged) → undetermined
    ],
)
def test_mcode_cancer_disease_status_value_mapping(case, scan_date, category, snomed):
    r = report(case, scan_date, primary_criterion="RECIST-1.1")
    status = mcode_status(r)
    assert status["meta"]["profile"] == [codes.PROFILE_MCODE_CANCER_DISEASE_STATUS]
    assert status["code"]["coding"][0] == {"system": LOINC, "code": "97509-4", "display": "Cancer disease progression"}
    assert status["valueCodeableConcept"]["coding"][0]["system"] == SNOMED
    assert status["valueCodeableConcept"]["coding"][0]["code"] == snomed
    assert status["extension"] == [
        {
            "url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-cancer-disease-status-evidence-type",
            "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "363679005", "display": "Imaging"}]},
        }
    ]
    assert status["effectiveDateTime"] == scan_date.isoformat()
    source = criterion_observation(r.observations, "RECIST-1.1")
    assert source["valueCodeableConcept"]["coding"][0]["code"] == category
    assert status["derivedFrom"] == [{"reference": f"Observation/{source['id']}"}]


def test_primary_criterion_iupd_is_undetermined_with_an_unconfirmed_progression_note():
    assessment = with_irecist(assess(cases.E1))
    r = report(cases.E1, E1_TP1, assessment=assessment)  # primary criterion defaults to iRECIST
    status = mcode_status(r)
    assert status["valueCodeableConcept"]["coding"][0]["code"] == "709137006"
    assert "unconfirmed progression" in status["note"][0]["text"].lower()
    assert status["method"]["coding"][0] == {"system": CRITERIA, "code": "iRECIST", "display": "iRECIST"}
    tp2 = mcode_status(report(cases.E1, E1_TP2, assessment=assessment))
    assert tp2["valueCodeableConcept"]["coding"][0]["code"] == "271299001"  # iCPD → worsened
    # without iRECIST the primary criterion falls back to RECIST 1.1
    plain = assess(cases.E1)
    without_irecist = dataclasses.replace(plain, criteria=tuple(c for c in plain.criteria if c.criterion != "iRECIST"))
    fallback = mcode_status(report(cases.E1, E1_TP1, assessment=without_irecist))
    assert fallback["method"]["coding"][0]["code"] == "RECIST-1.1"


def test_every_criterion_is_mapped_generically():
    assessment = with_irecist(assess(cases.E1))
    r = report(cases.E1, E1_TP1, assessment=assessment)
    obs = criterion_observation(r.observations, "iRECIST")
    assert obs["identifier"][0]["value"] == "key-E1/2024-03-11/iRECIST"
    assert obs["method"]["coding"] == [{"system": CRITERIA, "code": "iRECIST", "display": "iRECIST"}]  # no DCM code
    assert obs["valueCodeableConcept"]["coding"][0] == {
        "system": RESPONSE,
        "code": "iUPD",
        "display": "unconfirmed progressive disease",
    }
    assert component(obs, "confirmed")["valueBoolean"] is False
    assert component(obs, "new-lesions")["valueCodeableConcept"]["coding"][0]["code"] == "present"
    assert component(obs, "provisional")["valueBoolean"] is True
    # criterion-specific scalars of ``extra`` become components; non-scalars are left out
    assert component(obs, "iupd-confirmation-window")["valuePeriod"] == {"start": "2024-04-08", "end": "2024-05-06"}
    assert component(obs, "nlt-sum-mm")["valueInteger"] == 12
    assert component(obs, "reset")["valueBoolean"] is False
    assert component(obs, "note-text")["valueString"] == "NLT SOM 12 mm"
    assert component(obs, "nested") is None
    tp2 = criterion_observation(report(cases.E1, E1_TP2, assessment=assessment).observations, "iRECIST")
    assert component(tp2, "confirmed")["valueBoolean"] is True
    assert component(tp2, "progression-date")["valueDateTime"] == "2024-03-11"
    assert component(tp2, "new-lesions")["valueCodeableConcept"] == {"text": "NLT growth"}
    # iRECIST has no TP3 entry: no Observation for it, and its progression shows in the conclusion
    tp3 = report(cases.E1, E1_TP3, assessment=assessment)
    assert criterion_observation(tp3.observations, "iRECIST") is None
    assert tp3.diagnostic_report["conclusion"].startswith("Progression by iRECIST since 11 Mar 2024")
    assert "RECIST 1.1, imRECIST, itRECIST read partial response" in tp3.diagnostic_report["conclusion"]


def test_rano_carries_the_ncit_code():
    a = assess(cases.E1)
    recist = a.criterion("RECIST-1.1")
    rano = dataclasses.replace(
        recist,
        criterion="RANO",
        version="2010",
        timepoints=tuple(dataclasses.replace(tp, criterion="RANO") for tp in recist.timepoints),
    )
    r = report(cases.E1, E1_TP1, assessment=dataclasses.replace(a, criteria=(rano,)))
    obs = criterion_observation(r.observations, "RANO")
    assert obs["method"]["coding"][1] == {
        "system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
        "code": "C114879",
        "display": "RANO",
    }


def test_spd_is_in_square_millimetres():
    a = assess(cases.E1)
    recist = a.criterion("RECIST-1.1")
    tps = tuple(dataclasses.replace(tp, criterion="Lugano-2014", sum_unit="mm2") for tp in recist.timepoints)
    lugano = dataclasses.replace(recist, criterion="Lugano-2014", version="2014", timepoints=tps)
    obs = criterion_observation(
        report(cases.E1, E1_TP1, assessment=dataclasses.replace(a, criteria=(lugano,))).observations, "Lugano-2014"
    )
    assert quantity(component(obs, "sum-of-diameters")) == (63, UCUM, "mm2")
    assert quantity(component(obs, "absolute-change-from-nadir")) == (-27, UCUM, "mm2")


# -- kinetics and biomarkers ------------------------------------------------------------------------------------
def test_kinetics_observation():
    r = report(cases.E1, E1_TP1, assessment=rich_e1())
    obs = observation_with_code(r.observations, IMMUNORAD, "tumour-kinetics")
    assert obs["effectivePeriod"] == {"start": "2023-11-06", "end": "2024-03-11"}
    assert quantity(component(obs, "tgr-reference")) == (10.12, UCUM, "%/mo")
    assert quantity(component(obs, "tgr-experimental")) == (-15.5, UCUM, "%/mo")
    assert quantity(component(obs, "tgr-difference")) == (-25.62, UCUM, "%/mo")
    assert quantity(component(obs, "tgk-experimental")) == (-4.25, UCUM, "mm/mo")
    assert quantity(component(obs, "tgk-ratio")) == (-2.83, UCUM, "1")
    ratio = component(obs, "tgr-ratio")
    assert "valueQuantity" not in ratio
    assert ratio["dataAbsentReason"]["text"] == "not evaluable (kinetics flags: UNDEFINED_RATIO)"
    champiat = component(obs, "champiat-2017", HYPERPROGRESSION)
    assert champiat["valueCodeableConcept"] == {
        "coding": [{"system": IMMUNORAD, "code": "not-met", "display": "Not met"}],
        "text": "no RECIST PD at E2",
    }
    kas = component(obs, "kas-2020", HYPERPROGRESSION)["valueCodeableConcept"]
    assert kas["coding"][0]["code"] == "not-evaluable" and kas["text"].endswith("(borderline)")
    assert (
        component(obs, "fast-progression-oak", HYPERPROGRESSION)["valueCodeableConcept"]["coding"][0]["code"] == "met"
    )
    assert "E0 from an outside CT" in obs["note"][0]["text"]
    # no kinetics, no kinetics Observation
    without = dataclasses.replace(assess(cases.E1), kinetics=None)
    assert (
        observation_with_code(report(cases.E1, E1_TP1, assessment=without).observations, IMMUNORAD, "tumour-kinetics")
        is None
    )


def test_biomarker_observations():
    r = report(cases.E1, E1_TP1, assessment=rich_e1())
    tmtv = observation_with_code(r.observations, IMMUNORAD, "biomarker-tmtv")
    assert tmtv["valueQuantity"] == {"value": 123.4, "unit": "mL", "system": UCUM, "code": "mL"}
    assert tmtv["interpretation"][0]["coding"][0]["code"] == "H"
    assert tmtv["effectiveDateTime"] == "2024-01-08"  # baseline
    assert observation_with_code(r.observations, IMMUNORAD, "biomarker-lipi")["valueString"] == "intermediate"
    blr = observation_with_code(r.observations, IMMUNORAD, "biomarker-blr")
    assert blr["dataAbsentReason"]["text"] == "missing: liver SUVmean"


# -- the DiagnosticReport ---------------------------------------------------------------------------------------
def test_diagnostic_report_shape():
    r = report(cases.E1, E1_TP1, alerts=ALERTS)
    dr = r.diagnostic_report
    assert dr["identifier"] == [
        {"use": "official", "system": f"{C}/identifier/diagnostic-report", "value": "key-E1/2024-03-11"}
    ]
    assert dr["id"] == resource_id(f"{C}/identifier/diagnostic-report", "key-E1/2024-03-11")
    assert dr["status"] == "preliminary"
    assert [c["coding"][0] for c in dr["category"]] == [
        {"system": LOINC, "code": "LP29684-5", "display": "Radiology"},
        {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"},
    ]
    assert dr["code"]["coding"][0] == {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}
    assert dr["code"]["coding"][1]["system"] == IMMUNORAD
    assert dr["subject"] == {"reference": "Patient/pat-e1", "identifier": {"system": MRN_SYSTEM, "value": "MRN-E1"}}
    assert dr["effectiveDateTime"] == "2024-03-11"
    assert dr["issued"] == "2024-08-01T09:30:00+00:00"
    assert dr["imagingStudy"] == [
        {
            "type": "ImagingStudy",
            "identifier": {"system": "urn:dicom:uid", "value": "urn:oid:1.2.826.0.1.3680043.10.511.20240311"},
        }
    ]
    assert [x["reference"] for x in dr["result"]] == [f"Observation/{o['id']}" for o in r.observations]
    assert "performer" not in dr  # never a Device (interop-notes §4.2)
    # Issue 15: the conclusion is the impression: 63 vs 90 mm = −30 % → PR (iPR under iRECIST, the primary).
    assert dr["conclusion"].startswith("Partial response (iPR) by iRECIST: sum of diameters 63 mm, \u221230 % from")
    assert dr["conclusionCode"][0]["coding"][0] == {"system": RESPONSE, "code": "PR", "display": "partial response"}
    # The text states the alerts the report's own assessment raised at its date (not later Flag states).
    from fhir_mappings.outbound import findings_as_of

    plain, html = render_prefill(assess(cases.E1), E1_TP1, findings_as_of(assess(cases.E1), E1_TP1, ALERTS))
    forms = {f["contentType"]: f for f in dr["presentedForm"]}
    assert set(forms) == {"text/plain; charset=utf-8", "text/html; charset=utf-8"}
    assert attachment_text(forms["text/plain; charset=utf-8"]) == plain
    assert attachment_text(forms["text/html; charset=utf-8"]) == html


def test_conclusion_states_the_primary_criterion_and_the_criteria_that_read_differently():
    # Issue 15: the conclusion is the impression, and conclusionCode still codes every criterion.
    a = assess(cases.E1)
    recist_only = dataclasses.replace(a, criteria=(a.criterion("RECIST-1.1"),))
    r = report(cases.E1, E1_TP1, assessment=with_irecist(recist_only))
    assert r.diagnostic_report["conclusion"] == (
        "Unconfirmed progressive disease (iUPD) by iRECIST: sum of diameters 63 mm, \u221230 % from baseline "
        "(90 mm); new lesions present. RECIST 1.1 reads partial response."
    )
    assert [c["text"] for c in r.diagnostic_report["conclusionCode"]] == ["RECIST 1.1: PR", "iRECIST: iUPD"]


def test_identifiers_and_ids_are_stable_and_re_evaluation_amends():
    first = report(cases.E1, E1_TP1, alerts=ALERTS, assessment=rich_e1())
    again = report(
        cases.E1,
        E1_TP1,
        alerts=ALERTS,
        assessment=rich_e1(),
        status="amended",
        issued=dt.datetime(2024, 9, 1, 12, 0, 5, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    )
    for before, after in zip(first.all(), again.all(), strict=True):
        assert before["id"] == after["id"]
        assert before["identifier"] == after["identifier"]
        assert before["id"] == resource_id(before["identifier"][0]["system"], before["identifier"][0]["value"])
    assert again.diagnostic_report["status"] == "amended"
    assert {o["status"] for o in again.observations} == {"amended"}
    assert again.diagnostic_report["issued"] == "2024-09-01T12:00:05.250+02:00"
    # ids are unique and the report of another timepoint is another resource
    ids = [res["id"] for res in first.all()]
    assert len(ids) == len(set(ids))
    assert report(cases.E1, E1_TP2).diagnostic_report["id"] != first.diagnostic_report["id"]


def test_the_canonical_is_configurable():
    r = report(cases.E1, E1_TP1, canonical="https://hospital.example/immunorad/")
    obs = criterion_observation(r.observations, "RECIST-1.1")
    assert obs["method"]["coding"][0]["system"] == "https://hospital.example/immunorad/CodeSystem/response-criteria"
    assert (
        obs["valueCodeableConcept"]["coding"][0]["system"] == "https://hospital.example/immunorad/CodeSystem/response"
    )
    assert r.diagnostic_report["identifier"][0]["system"] == (
        "https://hospital.example/immunorad/identifier/diagnostic-report"
    )


def test_resource_id_is_a_deterministic_uuid():
    a = resource_id("http://x/identifier/observation", "k/2024-01-01/RECIST-1.1")
    assert a == resource_id("http://x/identifier/observation", "k/2024-01-01/RECIST-1.1")
    assert a != resource_id("http://x/identifier/observation", "k/2024-01-01/iRECIST")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a)


# -- Flags ------------------------------------------------------------------------------------------------------
def test_flags():
    r = report(cases.E1, E1_TP1, alerts=ALERTS)
    assert len(r.flags) == 3  # the finding with alert=False raises no Flag
    by_code = {f["code"]["coding"][0]["code"]: f for f in r.flags}
    hpd = by_code["hyperprogression"]
    assert hpd["code"]["coding"][0] == {"system": ALERT, "code": "hyperprogression", "display": "Hyperprogression"}
    assert hpd["identifier"] == [
        {"use": "official", "system": f"{C}/identifier/flag", "value": "key-E1/hyperprogression/2024-03-11"}
    ]
    assert hpd["status"] == "active"
    assert hpd["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/flag-category",
        "code": "clinical",
        "display": "Clinical",
    }
    assert hpd["subject"]["reference"] == "Patient/pat-e1"
    assert hpd["period"] == {"start": "2024-03-11"}
    extensions = {e["url"]: e for e in hpd["extension"]}
    detail = extensions["http://hl7.org/fhir/StructureDefinition/flag-detail"]["valueReference"]
    assert detail["reference"] == f"DiagnosticReport/{r.diagnostic_report['id']}"
    priority = extensions["http://hl7.org/fhir/StructureDefinition/flag-priority"]["valueCodeableConcept"]
    assert priority["coding"][0] == {
        "system": "http://hl7.org/fhir/flag-priority-code",
        "code": "PH",
        "display": "High priority",
    }
    # author: a contained Device, never a dangling Device/immunorad
    assert hpd["author"]["reference"] == "#immunorad"
    assert hpd["contained"][0]["resourceType"] == "Device" and hpd["contained"][0]["id"] == "immunorad"
    irae = by_code["irae"]
    assert irae["code"]["coding"][1] == {"system": SNOMED, "code": "205237003", "display": "Pneumonitis"}
    assert {e["url"]: e for e in irae["extension"]}["http://hl7.org/fhir/StructureDefinition/flag-priority"][
        "valueCodeableConcept"
    ]["coding"][0]["code"] == "PM"
    pseudo = by_code["pseudoprogression"]
    assert pseudo["status"] == "inactive" and pseudo["period"] == {"start": "2024-03-11", "end": "2024-05-06"}
    assert {e["url"]: e for e in pseudo["extension"]}["http://hl7.org/fhir/StructureDefinition/flag-priority"][
        "valueCodeableConcept"
    ]["coding"][0]["code"] == "PL"


def test_a_flag_links_to_the_report_of_the_timepoint_that_raised_it():
    raised_earlier = alert("confirmation-due", scan_date=E1_TP1, report_date=E1_TP1)
    r = report(cases.E1, E1_TP2, alerts=(raised_earlier,))
    detail = r.flags[0]["extension"][0]["valueReference"]
    tp1_report = report(cases.E1, E1_TP1).diagnostic_report
    assert detail["reference"] == f"DiagnosticReport/{tp1_report['id']}"
    bundle = ehr_transaction_bundle(r, context(cases.E1, E1_TP2))
    flag = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Flag")
    assert flag["extension"][0]["valueReference"]["reference"] == (
        f"DiagnosticReport?identifier={C}/identifier/diagnostic-report|key-E1/2024-03-11"
    )


# -- the EHR transaction Bundle ---------------------------------------------------------------------------------
def _references(node, found=None):
    found = [] if found is None else found
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str) and "resourceType" not in node:
            found.append(node["reference"])
        for key, value in node.items():
            if key != "reference":
                _references(value, found)
    elif isinstance(node, list):
        for item in node:
            _references(item, found)
    return found


def test_ehr_transaction_bundle_has_only_conditional_puts_and_resolved_references():
    ctx = context(cases.E1, E1_TP1, status="amended")
    resources = build_report(rich_e1(), ctx, ALERTS)
    bundle = ehr_transaction_bundle(resources, ctx)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    assert len(bundle["entry"]) == len(resources.all())
    full_urls = set()
    for entry, original in zip(bundle["entry"], resources.all(), strict=True):
        resource = entry["resource"]
        assert entry["fullUrl"] == f"urn:uuid:{original['id']}"
        assert "id" not in resource
        ident = resource["identifier"][0]
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}?identifier={ident['system']}|{ident['value']}",
        }
        full_urls.add(entry["fullUrl"])
    for reference in _references(bundle):
        assert (
            reference in full_urls
            or reference.startswith("#")
            or re.fullmatch(r"[A-Z][A-Za-z]+\?identifier=\S+\|\S+", reference)
        ), reference
    dr = bundle["entry"][0]["resource"]
    assert dr["subject"]["reference"] == f"Patient?identifier={MRN_SYSTEM}|MRN-E1"
    assert all(x["reference"] in full_urls for x in dr["result"])
    for entry in bundle["entry"][1:]:
        assert entry["resource"]["subject"]["reference"] == f"Patient?identifier={MRN_SYSTEM}|MRN-E1"
    flag = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Flag")
    assert flag["extension"][0]["valueReference"]["reference"] == bundle["entry"][0]["fullUrl"]
    # the local resources are left untouched
    assert resources.diagnostic_report["subject"]["reference"] == "Patient/pat-e1"
    validate_resource(bundle)


def test_conditional_urls_escape_search_special_characters():
    assert (
        conditional_url("Observation", "http://x/id", "a|b,c$d")
        == r"Observation?identifier=http://x/id|a%5C%7Cb%5C%2Cc%5C%24d"
    )
    assert conditional_url("Patient", "urn:immunorad:mrn", "MRN 1") == "Patient?identifier=urn:immunorad:mrn|MRN%201"


# -- every emitted resource is valid R4 -------------------------------------------------------------------------
def _all_reports():
    yield "E1-rich", build_report(rich_e1(), context(cases.E1, E1_TP1), ALERTS), context(cases.E1, E1_TP1)
    yield (
        "E1-rich-TP2",
        build_report(rich_e1(), context(cases.E1, E1_TP2, status="amended"), ALERTS),
        context(cases.E1, E1_TP2, status="amended"),
    )
    for case in (cases.E1, cases.E3, cases.E9, cases.E11):
        assessment = assess(case)
        for day in assessment.followup_dates:
            # the rules' own findings of this timepoint, as the service would raise them
            alerts = [
                AlertState(f, f"key-{case.name}/{f.code}/{f.key}/{f.scan_date}", "active", f.scan_date, day)
                for f in assessment.findings
                if f.scan_date == day
            ]
            for status in ("preliminary", "amended"):
                ctx = context(case, day, status=status, primary_criterion="RECIST-1.1")
                yield f"{case.name}-{day}-{status}", build_report(assessment, ctx, alerts), ctx


REPORTS = list(_all_reports())


@pytest.mark.parametrize("name, resources, ctx", REPORTS, ids=[r[0] for r in REPORTS])
def test_every_emitted_resource_passes_validate_resource(name, resources, ctx):
    for resource in (*resources.all(), ehr_transaction_bundle(resources, ctx)):
        validate_resource(resource)
        json.dumps(resource)  # JSON-native: storable and sendable as it is


@pytest.mark.parametrize("name, resources, ctx", REPORTS, ids=[r[0] for r in REPORTS])
def test_every_emitted_resource_validates_against_the_official_r4_json_schema(name, resources, ctx):
    for resource in (*resources.all(), ehr_transaction_bundle(resources, ctx)):
        assert schema_errors(resource) == [], resource["resourceType"]


# -- arguments --------------------------------------------------------------------------------------------------
def test_arguments_are_checked():
    with pytest.raises(ValueError, match="not a follow-up timepoint"):
        report(cases.E1, D("2024-01-08"))  # the baseline has no report
    with pytest.raises(ValueError, match="timezone-aware"):
        context(cases.E1, E1_TP1, issued=dt.datetime(2024, 8, 1, 9, 30))
    with pytest.raises(ValueError, match="status"):
        context(cases.E1, E1_TP1, status="partial")
    with pytest.raises(ValueError, match="AlertState.status"):
        alert("irae", status="resolved")
    with pytest.raises(ValueError, match="PatientRef.key"):
        PatientRef("p", "", MRN_SYSTEM, "1")
    with pytest.raises(ValueError, match="scan_date"):
        ReportContext(C, PatientRef("p", "k", MRN_SYSTEM, "1"), dt.datetime(2024, 1, 1), "preliminary", ISSUED, ())


def _codings(node, found=None):
    found = [] if found is None else found
    if isinstance(node, dict):
        if "code" in node and isinstance(node.get("system"), str) and isinstance(node.get("code"), str):
            found.append((node["system"], node["code"]))
        for value in node.values():
            _codings(value, found)
    elif isinstance(node, list):
        for item in node:
            _codings(item, found)
    return found


def test_every_emitted_system_is_declared_in_codes():
    local = codes.LocalSystems.from_canonical(C)
    declared = {
        codes.LOINC,
        codes.SNOMED,
        codes.DCM,
        codes.NCIT,
        codes.UCUM,
        codes.V2_0074,
        codes.OBSERVATION_CATEGORY,
        codes.FLAG_CATEGORY,
        codes.FLAG_PRIORITY,
        codes.DATA_ABSENT_REASON,
        codes.OBSERVATION_INTERPRETATION,
        codes.CDISC_RSTESTCD,
        codes.DICOM_UID,
        local.response_criteria,
        local.response,
        local.immunorad,
        local.hyperprogression,
        local.alert,
        local.diagnostic_report_identifier,
        local.observation_identifier,
        local.flag_identifier,
    }
    resources = report(cases.E1, E1_TP1, alerts=ALERTS, assessment=rich_e1())
    emitted = {system for resource in resources.all() for system, _ in _codings(resource)}
    emitted |= {resource["identifier"][0]["system"] for resource in resources.all()}
    assert emitted <= declared, emitted - declared
