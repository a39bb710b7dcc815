"""Issue 4: immune-related findings that are not tumour, through the real interfaces (kinetics spec §5.1, §5.3).

The responding patient is the size spec's E1 (SoD 90 → 63 → 58 → 61: RECIST PR throughout; C1D1 2024-01-15).
From the 2024-05-06 scan (day 112, 3.7 months after C1D1: inside the 1.8–9.1-month window of MSK-SLR), new
symmetric bilateral hilar and subcarinal nodes appear. §5.3 Q1: "Do not count as a new lesion. Emit
POSSIBLE_SARCOID_LIKE_REACTION. Recommend tissue sampling or follow-up. Under iRECIST, at most a flagged iUPD."
So no criterion may call PD (nor iCPD), and a differential alert (Flag ``sarcoid-like-reaction``, CDS card
``warning``) is raised instead.

In: TID 1500 SRs over C-STORE whose nodes carry the SNOMED CT finding (contract §3), or FHIR Condition /
Observation findings (contract §4). Out: DiagnosticReports and their criterion Observations, Flags, cards.
"""

from __future__ import annotations

import pytest
from pydicom.sr.coding import Code

from rules.scenario import NEW, Case, Lesion, c
from service.assessment.worker import Worker
from service.demo.cohort import lesion_spec, stable_uid
from service.demo.sr_writer import LesionSpec, build_ct_image, build_measurement_report
from tests.e2e import kinetics_cases as kc
from tests.rules.cases import E1

SARCOID_WORDING = "possible sarcoid-like reaction — not counted as progression; consider tissue sampling or follow-up"
SARCOIDOSIS = Code("31541009", "SCT", "Sarcoidosis")
MEDIASTINAL_LYMPHADENOPATHY = Code("52324001", "SCT", "Mediastinal lymphadenopathy")
HILAR_NODE = Code("53074004", "SCT", "Hilar lymph node")
MEDIASTINAL_NODE = Code("62683002", "SCT", "Mediastinal lymph node")
NODES = (  # (label, station, finding, LD, SA) at 2024-05-06 and 2024-07-01
    ("N1 right hilar node", HILAR_NODE, SARCOIDOSIS, 22, 16),
    ("N2 left hilar node", HILAR_NODE, SARCOIDOSIS, 21, 15),
    ("N3 subcarinal node", MEDIASTINAL_NODE, MEDIASTINAL_LYMPHADENOPATHY, 20, 15),
)
TP2 = E1.scans["TP2"]
# E1 without any new lesion (contract §5 categories; size spec §11 E1): what the nodes must not change.
RESPONDING = {
    "RECIST-1.1": ["PR", "PR", "PR"],
    "iRECIST": ["iPR", "iPR", "iPR"],
    "irRECIST": ["irPR", "irPR", "irPR"],
    "irRC": ["irSD", "irPR", "irPR"],
    "imRECIST": ["PR", "PR", "PR"],
    "itRECIST": ["PR", "PR", "PR"],
}
PROGRESSION = {"PD", "iUPD", "iCPD", "irPD"}


@pytest.fixture
def cds_ehr():
    ehr = kc.CdsEhr()
    yield ehr
    ehr.close()


@pytest.fixture
def settings(settings_factory, cds_ehr):
    return settings_factory(**cds_ehr.settings_overrides())


def evaluate(settings, db) -> None:
    Worker(settings, db).drain()


def therapy(client, mrn: str) -> None:
    kc.post_bundle(
        client,
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [kc.patient_entry(mrn)] + kc.therapy_entries(mrn, "pembrolizumab", E1.c1d1, None),
        },
    )


def e1_with_nodes(mrn: str, *, coded: bool) -> list:
    """E1's scans as CT images + TID 1500 SRs; from TP2 the three nodes, with their finding code when ``coded``."""
    datasets = []
    for label, day in sorted(E1.scans.items(), key=lambda item: item[1]):
        image = build_ct_image(
            patient_id=mrn,
            patient_name="SARCOID^TEST",
            study_instance_uid=stable_uid(mrn, "study", label),
            study_date=day,
            series_instance_uid=stable_uid(mrn, "series", label),
            sop_instance_uid=stable_uid(mrn, "image", label),
        )
        specs = [spec for lesion in E1.lesions if (spec := lesion_spec(E1, mrn, lesion, label)) is not None]
        if day >= TP2:
            for name, station, finding, ld, sa in NODES:
                specs.append(
                    LesionSpec(
                        tracking_uid=stable_uid(mrn, "lesion", name),
                        label=name,
                        site=station,
                        finding=finding if coded else None,
                        nodal=True,
                        long_axis_mm=ld,
                        short_axis_mm=sa,
                    )
                )
        datasets += [
            image,
            build_measurement_report(
                evidence=[image],
                lesions=specs,
                sop_instance_uid=stable_uid(mrn, "sr", label),
                series_instance_uid=stable_uid(mrn, "sr-series", label),
            ),
        ]
    return datasets


def categories_over_time(client, mrn: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for report in kc.reports(client, mrn):
        for name, category in kc.categories(client, report).items():
            out.setdefault(name, []).append(category)
    return out


def new_lesion_words(client, mrn: str) -> set[str]:
    """Every criterion's new-lesions component value at every report."""
    words = set()
    for report in kc.reports(client, mrn):
        for observation in kc.criteria_of(client, report).values():
            for part in observation.get("component", []):
                if kc.has_code(part["code"], kc.IMMUNORAD, "new-lesions"):
                    concept = part["valueCodeableConcept"]
                    words.add(concept["coding"][0]["code"] if concept.get("coding") else concept.get("text"))
    return words


def assert_sarcoid_flag(client, mrn: str, finding_code: str) -> dict:
    flags = kc.flags_by_code(client, mrn)
    assert "irae" not in flags
    [flag] = flags["sarcoid-like-reaction"]
    assert flag["status"] == "active"
    assert flag["period"]["start"] == TP2.isoformat()
    assert flag["code"]["text"] == SARCOID_WORDING
    assert {"system": kc.SNOMED, "code": finding_code} in [
        {k: c[k] for k in ("system", "code")} for c in flag["code"]["coding"]
    ]
    # Raised at TP2 (period.start) and still holding at the latest scan: issue 15 / contract §9.4 — a later scan
    # updates the one alert, whose flag-detail names the latest report.
    latest = max(kc.reports(client, mrn), key=lambda r: r["effectiveDateTime"])
    assert latest["effectiveDateTime"] > TP2.isoformat()
    assert kc.flag_report(flag)["reference"] == f"DiagnosticReport/{latest['id']}"
    return flag


def test_sarcoid_like_nodes_in_a_responding_patient_through_dicom(app_client, settings, db, cds_ehr):
    mrn = "MRN-SARCOID-DICOM"
    therapy(app_client, mrn)
    assert set(kc.send_dicom(settings, db, e1_with_nodes(mrn, coded=True))) == {0}
    evaluate(settings, db)
    # No PD under any criterion: the nodes are not new lesions (Q1); the categories are E1's.
    assert categories_over_time(app_client, mrn) == RESPONDING
    assert new_lesion_words(app_client, mrn) <= {"absent"}
    flags = kc.flags_by_code(app_client, mrn)
    assert not set(flags) & {"confirmation-due", "hyperprogression", "fast-progression"}
    assert_sarcoid_flag(app_client, mrn, "31541009")
    # The differential, as the EHR shows it.
    [card] = [
        c for c in kc.patient_view(app_client, cds_ehr, mrn) if c["source"]["topic"]["code"] == "sarcoid-like-reaction"
    ]
    assert card["indicator"] == "warning"
    assert card["summary"] == SARCOID_WORDING
    assert (
        "Not counted as new lesions by: RECIST-1.1 (PR), iRECIST (iPR), irRECIST (irPR), irRC (irPR)" in card["detail"]
    )
    assert "within the typical window 1.8–9.1 months" in card["detail"]
    # The pre-filled report section of that scan says it too.
    report = kc.report_at(app_client, mrn, TP2)
    import base64

    text = base64.b64decode(
        next(f["data"] for f in report["presentedForm"] if f["contentType"].startswith("text/plain"))
    ).decode()
    assert SARCOID_WORDING in text


def test_the_same_nodes_without_a_finding_code_are_new_lesions(app_client, settings, db):
    """Control: the nodes as ordinary lesions are unequivocal new lesions (Q10): RECIST PD, iUPD; no Q1 alert."""
    mrn = "MRN-NODES-DICOM"
    therapy(app_client, mrn)
    assert set(kc.send_dicom(settings, db, e1_with_nodes(mrn, coded=False))) == {0}
    evaluate(settings, db)
    got = categories_over_time(app_client, mrn)
    assert got["RECIST-1.1"][:2] == ["PR", "PD"] and got["iRECIST"][1] == "iUPD"
    assert "sarcoid-like-reaction" not in kc.flags_by_code(app_client, mrn)


def test_sarcoid_like_lymphadenopathy_reported_as_a_fhir_condition(app_client, settings, db):
    mrn = "MRN-SARCOID-FHIR"
    kc.post_bundle(app_client, kc.clinical_bundle(kc.KExample("E1", E1), mrn=mrn))
    kc.post_bundle(app_client, kc.measurements_bundle(E1, mrn))
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "provisional"}]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": kc.SNOMED, "code": "52324001", "display": "Mediastinal lymphadenopathy"}],
            "text": "New symmetric bilateral hilar and subcarinal lymphadenopathy",
        },
        "bodySite": [{"coding": [{"system": kc.SNOMED, "code": "62683002", "display": "Mediastinal lymph node"}]}],
        "subject": {"reference": f"Patient?identifier={kc.SYSTEM}|{mrn}"},
        "onsetDateTime": TP2.isoformat(),
        "recordedDate": TP2.isoformat(),
    }
    kc.post_bundle(
        app_client,
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [kc.put_entry(condition, "urn:test:condition", f"{mrn}-sarcoid")],
        },
    )
    evaluate(settings, db)
    assert categories_over_time(app_client, mrn) == RESPONDING
    assert_sarcoid_flag(app_client, mrn, "52324001")


def test_measured_node_with_a_fhir_finding_on_the_same_lesion_is_not_progression(app_client, settings, db):
    mrn = "MRN-SARCOID-FOCUS"
    case = Case(
        "E1+node",
        E1.c1d1,
        E1.scans,
        E1.lesions
        + (
            Lesion(
                "N1 right hilar node", NEW, "hilar lymph node", nodal=True, cells={"TP2": c(22, 16), "TP3": c(22, 16)}
            ),
        ),
    )
    kc.post_bundle(app_client, kc.clinical_bundle(kc.KExample("E1", case), mrn=mrn))
    kc.post_bundle(app_client, kc.measurements_bundle(case, mrn))
    subject = {"reference": f"Patient?identifier={kc.SYSTEM}|{mrn}"}
    finding = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "59776-5", "display": "Procedure findings"}]},
        "subject": subject,
        "effectiveDateTime": TP2.isoformat(),
        "contained": [
            {
                "resourceType": "BodyStructure",
                "id": "lesion",
                "patient": subject,
                "identifier": [
                    {"system": "urn:dicom:uid", "value": f"urn:oid:{stable_uid(mrn, 'lesion', 'N1 right hilar node')}"}
                ],
            }
        ],
        "focus": [{"reference": "#lesion"}],
        "bodySite": {"coding": [{"system": kc.SNOMED, "code": "53074004"}]},
        "valueCodeableConcept": {"coding": [{"system": kc.SNOMED, "code": "31541009", "display": "Sarcoidosis"}]},
    }
    kc.post_bundle(
        app_client,
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [kc.put_entry(finding, "urn:test:finding", f"{mrn}-node")],
        },
    )
    evaluate(settings, db)
    got = categories_over_time(app_client, mrn)
    assert not {c for values in got.values() for c in values} & PROGRESSION, got
    assert_sarcoid_flag(app_client, mrn, "31541009")


def test_irae_pneumonitis_observation_raises_an_irae_alert_not_progression(app_client, settings, db, cds_ehr):
    mrn = "MRN-PNEUMONITIS"
    kc.post_bundle(app_client, kc.clinical_bundle(kc.KExample("E1", E1), mrn=mrn))
    kc.post_bundle(app_client, kc.measurements_bundle(E1, mrn))
    finding = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "59776-5", "display": "Procedure findings"}]},
        "subject": {"reference": f"Patient?identifier={kc.SYSTEM}|{mrn}"},
        "effectiveDateTime": "2024-03-11",
        "bodySite": {"coding": [{"system": kc.SNOMED, "code": "39607008", "display": "Lung"}]},
        "valueCodeableConcept": {"coding": [{"system": kc.SNOMED, "code": "205237003", "display": "Pneumonitis"}]},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [kc.put_entry(finding, "urn:test:finding", f"{mrn}-p")],
    }
    kc.post_bundle(app_client, bundle)
    evaluate(settings, db)
    kc.post_bundle(app_client, bundle)  # the same finding sent again: one alert
    evaluate(settings, db)
    assert categories_over_time(app_client, mrn) == RESPONDING
    flags = kc.flags_by_code(app_client, mrn)
    [flag] = flags["irae"]
    assert flag["status"] == "active" and flag["period"]["start"] == "2024-03-11"
    # The organ / pattern as a second coding (SNOMED CT, contract §5).
    assert {"system": kc.SNOMED, "code": "205237003"} in [
        {k: c[k] for k in ("system", "code")} for c in flag["code"]["coding"]
    ]
    assert "immune-related pneumonitis" in flag["code"]["text"]
    [card] = [c for c in kc.patient_view(app_client, cds_ehr, mrn) if c["source"]["topic"]["code"] == "irae"]
    assert card["indicator"] == "warning"
    # §5.4: imaging alone does not grade an irAE above what the chart says.
    assert "CTCAE grade" in card["summary"] and "not determinable from imaging" in card["detail"]
