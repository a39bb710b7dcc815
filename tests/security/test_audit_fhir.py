"""The audit trail at /fhir/AuditEvent and assessment provenance at /fhir/Provenance (contract §7, issue 5).

Every access and every change of patient data leaves an AuditEvent (who, what, when, outcome); every
assessment version has a Provenance (inputs, rule-base version). Both validate as FHIR R4.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select

from fhir_mappings.validation import validate_resource
from rules.engine import rulebase
from service.assessment.worker import Worker
from service.demo.cohort import case_bundle, case_measurements_bundle, demo_cohort
from service.persistence.models import Assessment
from service.persistence.store import patient_by_mrn
from tests.security.conftest import make_client

SYSTEM = "urn:immunorad:mrn"
MRN = "AUDIT-1"


def auth(settings) -> dict:
    return {"Authorization": f"Bearer {settings.api_token}"}


def _local(url: str) -> str:
    """An absolute link (based on the configured URL, contract §9.1) as a path for the test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def load_patient(client, settings, db) -> str:
    _, _, case = demo_cohort()[0]
    assert client.post("/fhir", json=case_bundle(case, MRN, SYSTEM), headers=auth(settings)).status_code == 200
    assert (
        client.post("/fhir", json=case_measurements_bundle(case, MRN, SYSTEM), headers=auth(settings)).status_code
        == 200
    )
    Worker(settings, db).drain()
    with db.read() as session:
        return patient_by_mrn(session, MRN).id


def test_audit_events_record_who_what_when_outcome(settings, db):
    client = make_client(settings)
    patient_id = load_patient(client, settings, db)
    assert client.get(f"/fhir/Patient/{patient_id}", headers=auth(settings)).status_code == 200
    assert client.get("/fhir/Patient", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/fhir/Patient/does-not-exist", headers=auth(settings)).status_code == 404

    bundle = client.get(f"/fhir/AuditEvent?patient={patient_id}&_count=5", headers=auth(settings)).get_json()
    assert bundle["type"] == "searchset" and bundle["total"] > 5 and len(bundle["entry"]) == 5
    seen, url = [], f"/fhir/AuditEvent?patient={patient_id}&_count=5"
    while url:
        page = client.get(url, headers=auth(settings)).get_json()
        seen += [e["resource"] for e in page["entry"]]
        url = next((_local(link["url"]) for link in page["link"] if link["relation"] == "next"), None)
    assert len(seen) == bundle["total"] == len({e["id"] for e in seen})
    for event in seen:
        validate_resource(event)
        assert event["recorded"] and event["agent"] and event["outcome"] in ("0", "4", "8", "12")
        assert {"what": {"reference": f"Patient/{patient_id}"}}.items() <= event["entity"][0].items()
    kinds = {c["code"] for e in seen for c in e["subtype"] if c["system"].endswith("audit-event-kind")}
    assert {"fhir-create", "evaluation", "fhir-read"} <= kinds
    read = next(e for e in seen if any(c.get("code") == "read" for c in e["subtype"]))
    assert read["action"] == "R" and read["type"]["code"] == "rest"
    assert read["agent"][0]["who"]["identifier"]["value"] == "api-token" and read["agent"][0]["requestor"] is True

    failures = client.get("/fhir/AuditEvent?outcome=4", headers=auth(settings)).get_json()
    reasons = {e["resource"].get("outcomeDesc") for e in failures["entry"]}
    assert "the bearer token is not valid" in reasons
    assert any(e["resource"]["type"]["code"] == "110114" for e in failures["entry"])  # DICOM User Authentication
    not_found = [e["resource"] for e in failures["entry"] if e["resource"]["subtype"][-1]["code"] == "access-failed"]
    assert not_found and "404" in str(not_found[0]["entity"])

    one = seen[-1]
    response = client.get(f"/fhir/AuditEvent/{one['id']}", headers=auth(settings))
    assert response.status_code == 200 and response.get_json() == one
    assert client.get("/fhir/AuditEvent/999999", headers=auth(settings)).status_code == 404
    lenient = client.get("/fhir/AuditEvent?unknown=1&_count=1", headers=auth(settings)).get_json()
    assert lenient["total"] > 1 and "unknown" not in lenient["link"][0]["url"]  # ignored, as R4 search.html asks
    strict = client.get("/fhir/AuditEvent?unknown=1", headers={**auth(settings), "Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert client.post("/fhir/AuditEvent", json=one, headers=auth(settings)).status_code == 405
    dated = client.get("/fhir/AuditEvent?date=ge2000-01-01&action=C", headers=auth(settings)).get_json()
    assert dated["total"] > 0 and {e["resource"]["action"] for e in dated["entry"]} == {"C"}


def test_provenance_of_every_assessment(settings, db):
    client = make_client(settings)
    patient_id = load_patient(client, settings, db)
    with db.read() as session:
        assessments = list(
            session.scalars(select(Assessment).where(Assessment.patient_id == patient_id).order_by(Assessment.version))
        )
    bundle = client.get(f"/fhir/Provenance?patient={patient_id}", headers=auth(settings)).get_json()
    assert bundle["total"] == len(assessments) >= 1
    provenance = bundle["entry"][0]["resource"]
    validate_resource(provenance)
    assert provenance["policy"] == [f"{settings.fhir_canonical}/rulebase/{rulebase().version}"]
    assert provenance["contained"][0]["version"][1]["value"] == rulebase().version
    assert provenance["agent"][0]["who"]["reference"] == "#immunorad"
    targets = [t["reference"] for t in provenance["target"]]
    assert targets and all(t.startswith("DiagnosticReport/") for t in targets)
    for target in targets:
        assert client.get(f"/fhir/{target}", headers=auth(settings)).status_code == 200
    inputs = provenance["entity"]
    assert any(e["what"].get("reference", "").startswith("MedicationAdministration/") for e in inputs)
    assert any(e["what"].get("reference", "").startswith("Observation/") for e in inputs)
    assert inputs[-1]["what"]["identifier"]["value"] == assessments[-1].inputs_hash
    by_target = client.get(f"/fhir/Provenance?target={targets[0]}", headers=auth(settings)).get_json()
    assert [e["resource"]["id"] for e in by_target["entry"]] == [provenance["id"]]
    assert client.get(f"/fhir/Provenance/{provenance['id']}", headers=auth(settings)).get_json() == provenance
    assert client.get("/fhir/Provenance/assessment-0", headers=auth(settings)).status_code == 404
