"""A report whose scan stops being an on-treatment follow-up is withdrawn, locally and at the EHR.

The case: the measurements of worked example K1 (kinetics spec §7) arrive before the therapy start. With day 0
unknown, the first measured scan is the baseline (rules.timeline), so the true baseline scan of 2024-02-01 gets a
report. When the MedicationAdministration arrives and dates C1D1 on that scan's day, the scan is the baseline and no
follow-up (a follow-up is after both the baseline and C1D1; RECIST 1.1 §3.2, kinetics spec: E1 before the first
dose). Its report must not stay in the EHR as a response assessment: it becomes ``entered-in-error`` (FHIR R4:
"withdrawn following a previous final release") with its own Observations, and comes back as ``amended`` when a
corrected C1D1 the day before makes the scan a follow-up again (the boundary: a scan on C1D1 is no follow-up, a
scan the day after C1D1 is one).

K1's sums of target diameters: E0 2024-01-02 20 + 20 = 40 mm, BL 2024-02-01 22 + 22 = 44 mm, TP1 2024-03-18
40 + 40 = 80 mm with two new liver lesions.
"""

from __future__ import annotations

import base64
import datetime as dt

from sqlalchemy import select

from rules.results import PatientAssessment
from service.api import create_app
from service.assessment.evaluation import withdrawal_reason
from service.assessment.worker import Worker
from service.persistence.models import AuditEvent, SignOff
from tests.e2e import kinetics_cases as kc

MRN = "MRN-WITHDRAW"
BL, TP1 = "2024-02-01", "2024-03-18"


def _client(settings):
    client = create_app(settings).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {settings.api_token}"
    return client


def _therapy(c1d1: dt.date) -> dict:
    """The C1D1 administration (the same business identifier each time: a correction replaces it)."""
    entries = [kc.patient_entry(MRN)] + kc.therapy_entries(MRN, kc.K1_CASE.agent, c1d1, None)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _by_date(client) -> dict[str, dict]:
    return {r["effectiveDateTime"][:10]: r for r in kc.reports(client, MRN)}


def _recist(client, report: dict) -> dict:
    [observation] = [
        o
        for o in kc.results(client, report)
        if any(c.get("code") == "RECIST-1.1" for c in (o.get("method") or {}).get("coding", []))
    ]
    return observation


def _at_ehr(ehr, day: str) -> dict:
    [report] = [r for r in ehr.reports() if MRN in str(r["subject"]) and r["effectiveDateTime"][:10] == day]
    return report


def _last_bundle_of(ehr, day: str) -> dict:
    def carries(entry: dict) -> bool:
        resource = entry["resource"]
        return (
            resource["resourceType"] == "DiagnosticReport"
            and MRN in str(resource["subject"])
            and resource["effectiveDateTime"][:10] == day
        )

    return [b for b in ehr.bundles if any(carries(e) for e in b["entry"])][-1]


def test_a_report_is_withdrawn_when_c1d1_dates_its_scan_and_comes_back_when_corrected(settings_factory, ehr, db):
    settings = settings_factory(ehr_fhir_url=ehr.base_url)
    client = _client(settings)
    worker = Worker(settings, db)
    kc.post_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": [kc.patient_entry(MRN)]})
    kc.post_bundle(client, kc.measurements_bundle(kc.K1_CASE, MRN))
    worker.drain()

    # 1. Day 0 unknown: E0 is the baseline, BL and TP1 are follow-ups. BL: 44 vs 40 mm = +10 % → SD.
    reports = _by_date(client)
    assert sorted(reports) == [BL, TP1]
    assert reports[BL]["status"] == "preliminary"
    assert _recist(client, reports[BL])["valueCodeableConcept"]["coding"][0]["code"] == "SD"
    assert _at_ehr(ehr, BL)["status"] == "preliminary"
    first_tp1_version = reports[TP1]["meta"]["versionId"]

    # 2. C1D1 arrives, on the day of the BL scan: BL is now the baseline, its report is withdrawn.
    kc.post_bundle(client, _therapy(dt.date(2024, 2, 1)))
    worker.drain()
    reports = _by_date(client)
    assert sorted(reports) == [BL, TP1]  # the identifier still names one resource; nothing is deleted
    withdrawn = reports[BL]
    assert withdrawn["status"] == "entered-in-error"
    assert withdrawn["conclusion"].startswith(
        "Withdrawn (entered in error): the scan of 2024-02-01 is on the immunotherapy start (C1D1 2024-02-01)"
    )
    assert "The withdrawn impression was:" in withdrawn["conclusion"]
    # What was sent stays readable: the pre-fill as issued (its HTML still names the response).
    html = base64.b64decode(withdrawn["presentedForm"][1]["data"]).decode()
    assert "RECIST 1.1" in html
    # Its own Observations are withdrawn with it; the report lists them still.
    own = [
        o for o in kc.results(client, withdrawn) if o["identifier"][0]["value"].startswith(f"{_key(withdrawn)}/{BL}/")
    ]
    assert own and {o["status"] for o in own} == {"entered-in-error"}
    assert _recist(client, withdrawn)["valueCodeableConcept"]["coding"][0]["code"] == "SD"
    # TP1 is re-evaluated against the new baseline (80 vs 44 mm = +81.8 %): amended, still PD.
    assert reports[TP1]["status"] == "amended" and reports[TP1]["meta"]["versionId"] != first_tp1_version
    assert _recist(client, reports[TP1])["valueCodeableConcept"]["coding"][0]["code"] == "PD"

    # The EHR holds the withdrawal; every reference in its Bundle resolves inside the Bundle or by identifier.
    assert _at_ehr(ehr, BL)["status"] == "entered-in-error"
    assert ehr.observation_for(_at_ehr(ehr, BL), "RECIST-1.1")["status"] == "entered-in-error"
    bundle = _last_bundle_of(ehr, BL)
    urls = {e["fullUrl"] for e in bundle["entry"]}
    report_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert all(ref["reference"] in urls for ref in report_entry["resource"]["result"])
    assert all("versionId" not in e["resource"].get("meta", {}) for e in bundle["entry"])

    # A withdrawn report cannot be signed off, by either route; nothing is stored.
    response = client.post(
        f"/api/reports/{withdrawn['id']}/sign-off",
        json={"criterion": "RECIST-1.1", "category": "SD", "reader": "Dr A"},
    )
    assert response.status_code == 409
    outcome = response.get_json()
    assert outcome["status"] == 409 and "was withdrawn (entered-in-error)" in outcome["error"]  # /api's JSON errors
    signed = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "identifier": withdrawn["identifier"],
        "code": {"text": "Imaging response"},
        "subject": withdrawn["subject"],
        "conclusionCode": [
            {
                "text": "RECIST-1.1",
                "coding": [{"system": f"{settings.fhir_canonical}/CodeSystem/response", "code": "SD"}],
            }
        ],
        "resultsInterpreter": [{"display": "Dr A"}],
    }
    response = client.post("/fhir/DiagnosticReport", json=signed, content_type="application/fhir+json")
    assert response.status_code == 409, response.get_json()
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "conflict" and "was withdrawn" in issue["diagnostics"]
    with db.read() as session:
        assert session.scalars(select(SignOff)).first() is None
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.kind == "report-withdrawn"))
        assert event.entity_ref == withdrawn["id"] and event.detail["version"] == 2

    # Evaluating again with nothing new changes nothing (the withdrawal is not sent twice).
    sent = len(ehr.bundles)
    worker.drain()
    kc.post_bundle(client, _therapy(dt.date(2024, 2, 1)))
    worker.drain()
    assert len(ehr.bundles) == sent

    # 3. C1D1 corrected to the day before the BL scan: BL is a follow-up again (2024-02-01 > 2024-01-31), E0 the
    # baseline; the report comes back as an amendment of the same identifier, SD as in step 1.
    kc.post_bundle(client, _therapy(dt.date(2024, 1, 31)))
    worker.drain()
    reports = _by_date(client)
    back = reports[BL]
    assert back["id"] == withdrawn["id"] and back["status"] == "amended"
    assert back["conclusion"].startswith("Withdrawn") is False
    assert _recist(client, back)["status"] == "amended"
    assert _recist(client, back)["valueCodeableConcept"]["coding"][0]["code"] == "SD"
    assert _at_ehr(ehr, BL)["status"] == "amended"
    response = client.post(
        f"/api/reports/{back['id']}/sign-off", json={"criterion": "RECIST-1.1", "category": "SD", "reader": "Dr A"}
    )
    assert response.status_code == 201


def _key(report: dict) -> str:
    """The patient key part of the report identifier ``<key>/<YYYY-MM-DD>``."""
    return report["identifier"][0]["value"].rsplit("/", 1)[0]


def _assessment(baseline: dt.date | None, start: dt.date | None) -> PatientAssessment:
    return PatientAssessment(
        rulebase_version="test", baseline_date=baseline, treatment_start=start, followup_dates=(), criteria=()
    )


def test_every_reason_a_report_is_withdrawn():
    """rules.timeline: a follow-up is after both the baseline and C1D1; each way out of that has its own words."""
    scan = dt.date(2024, 2, 1)
    on_c1d1 = withdrawal_reason(_assessment(dt.date(2024, 2, 1), scan), scan)
    assert on_c1d1.startswith("the scan of 2024-02-01 is on the immunotherapy start (C1D1 2024-02-01)")
    before = withdrawal_reason(_assessment(dt.date(2024, 1, 2), dt.date(2024, 2, 2)), scan)
    assert before.startswith("the scan of 2024-02-01 is before the immunotherapy start (C1D1 2024-02-02)")
    # The day after C1D1 is on treatment: the reason is then the baseline's.
    assert (
        withdrawal_reason(_assessment(scan, dt.date(2024, 1, 31)), scan) == "the scan of 2024-02-01 is now the baseline"
    )
    assert withdrawal_reason(_assessment(dt.date(2024, 2, 2), None), scan) == (
        "the scan of 2024-02-01 is before the baseline of 2024-02-02, so it is no follow-up"
    )
    assert withdrawal_reason(_assessment(None, None), scan) == (
        "the patient has no baseline any more, so the scan of 2024-02-01 is no follow-up"
    )
    assert withdrawal_reason(_assessment(dt.date(2024, 1, 2), dt.date(2024, 1, 8)), scan) == (
        "nothing imaged or measured on 2024-02-01 is left (its records were withdrawn)"
    )
