"""Radiologist sign-off (contract §9.7) through the real processes (gunicorn API, worker) over HTTP.

Both routes: a final DiagnosticReport from the reporting system, written with fhirpy (a client we did not write) by
POST and inside a transaction (conditional PUT on our report's identifier), and ``POST /api/reports/{id}/sign-off``.
An override (signed ≠ engine), an amendment (a new row, the earlier kept as history), the refusals, the audit
trail, the patient page, and that the engine's DiagnosticReport and Observation are untouched.
"""

from __future__ import annotations

import time

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome
from fhirpy.base.searchset import Raw

from service.demo.cohort import case_bundle, case_measurements_bundle, demo_cohort

SYSTEM = "urn:immunorad:mrn"
CANONICAL = "http://immunorad.org/fhir"
RESPONSE = f"{CANONICAL}/CodeSystem/response"
CRITERIA = f"{CANONICAL}/CodeSystem/response-criteria"
MRN = "SIGNOFF-1"


@pytest.fixture
def fhir(service) -> SyncFHIRClient:
    return SyncFHIRClient(f"{service.base_url}/fhir", authorization=f"Bearer {service.token}")


def _reports(fhir: SyncFHIRClient) -> list[dict]:
    fhir.execute("", method="post", data=case_bundle(demo_cohort()[0][2], MRN, SYSTEM))
    fhir.execute("", method="post", data=case_measurements_bundle(demo_cohort()[0][2], MRN, SYSTEM))
    deadline, reports = time.monotonic() + 90, []
    while time.monotonic() < deadline and len(reports) < 3:
        reports = (
            fhir.resources("DiagnosticReport").search(Raw(**{"subject:identifier": f"{SYSTEM}|{MRN}"})).fetch_all()
        )
        time.sleep(0.3)
    assert len(reports) == 3, "one report per follow-up (TP1–TP3)"
    return sorted((r.serialize() for r in reports), key=lambda r: r["effectiveDateTime"])


def _observation(fhir: SyncFHIRClient, report: dict, criterion: str) -> dict:
    for ref in report["result"]:
        observation = fhir.reference(reference=ref["reference"]).to_resource().serialize()
        if criterion in {c["code"] for c in (observation.get("method") or {}).get("coding", [])}:
            return observation
    raise AssertionError(f"no {criterion} Observation in the report")


def _category(observation: dict) -> str:
    return next(c["code"] for c in observation["valueCodeableConcept"]["coding"] if c["system"] == RESPONSE)


def _signed_report(identifier: dict, criterion_concept: dict, category: str, reader: str = "Dr A. Reader") -> dict:
    return {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "identifier": [identifier],
        "code": {"coding": [{"system": "http://loinc.org", "code": "18748-4"}]},
        "issued": "2024-03-12T09:30:00Z",
        "resultsInterpreter": [{"display": reader}],
        "conclusion": "Signed in the reporting system.",
        "conclusionCode": [{"coding": [{"system": RESPONSE, "code": category}], **criterion_concept}],
    }


def test_sign_off_by_both_routes_with_override_amendment_and_engine_untouched(fhir: SyncFHIRClient, service):
    tp1, tp2, _ = _reports(fhir)
    recist = _observation(fhir, tp1, "RECIST-1.1")
    engine = _category(recist)
    # An override: the reader signs a category the engine did not give.
    override = "SD" if engine != "SD" else "PR"

    # Route (b): the REST call.
    status, body, _ = service.request(
        "POST",
        f"/api/reports/{tp1['id']}/sign-off",
        {"criterion": "RECIST-1.1", "category": override, "reader": "Dr B. Radiologist", "comment": "new lesion?"},
    )
    assert status == 201, body
    assert body["category"] == override and body["engine_category"] == engine and body["agrees"] is False
    assert body["route"] == "api" and body["reader"] == "Dr B. Radiologist"

    # An amendment: the same criterion signed again keeps the first as history.
    status, body, _ = service.request(
        "POST",
        f"/api/reports/{tp1['id']}/sign-off",
        {"criterion": "RECIST-1.1", "category": engine, "reader": "Dr B. Radiologist", "comment": "on review"},
    )
    assert status == 201 and body["agrees"] is True

    # Route (a): a final DiagnosticReport from the reporting system, POSTed with fhirpy; the criterion as text.
    irecist_engine = _category(_observation(fhir, tp1, "iRECIST"))
    signed = fhir.resource("DiagnosticReport", **_signed_report(tp1["identifier"][0], {"text": "iRECIST"}, "iSD"))
    signed.save()
    assert signed.id.startswith("sign-off-")

    # Route (a) inside a transaction: a conditional PUT on our report's identifier, the criterion as an extension.
    identifier = tp2["identifier"][0]
    extension = {
        "extension": [
            {
                "url": f"{CANONICAL}/StructureDefinition/criterion",
                "valueCodeableConcept": {"coding": [{"system": CRITERIA, "code": "RECIST-1.1"}]},
            }
        ]
    }
    tp2_engine = _category(_observation(fhir, tp2, "RECIST-1.1"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _signed_report(identifier, extension, tp2_engine, reader="Dr C"),
                "request": {
                    "method": "PUT",
                    "url": f"DiagnosticReport?identifier={identifier['system']}|{identifier['value']}",
                },
            }
        ],
    }
    response = fhir.execute("", method="post", data=bundle)
    assert response["entry"][0]["response"]["status"].startswith("201")

    status, body, _ = service.request("GET", f"/api/patients/{MRN}/sign-offs")
    assert status == 200
    rows = body["sign_offs"]
    assert [(r["scan_date"], r["criterion"], r["category"], r["route"], r["current"]) for r in rows] == [
        (tp1["effectiveDateTime"][:10], "RECIST-1.1", override, "api", False),
        (tp1["effectiveDateTime"][:10], "RECIST-1.1", engine, "api", True),
        (tp1["effectiveDateTime"][:10], "iRECIST", "iSD", "fhir", True),
        (tp2["effectiveDateTime"][:10], "RECIST-1.1", tp2_engine, "fhir", True),
    ]
    assert rows[2]["engine_category"] == irecist_engine and rows[2]["reader"] == "Dr A. Reader"
    assert rows[2]["signed_at"].startswith("2024-03-12T09:30")
    assert rows[3]["reader"] == "Dr C" and rows[3]["agrees"] is True

    # The engine's result is untouched: same Observation version and category, same report, one per identifier.
    again = _observation(fhir, tp1, "RECIST-1.1")
    assert again["meta"]["versionId"] == recist["meta"]["versionId"] and _category(again) == engine
    assert again == recist
    report = fhir.reference("DiagnosticReport", tp1["id"]).to_resource().serialize()
    assert report["meta"]["versionId"] == tp1["meta"]["versionId"] and report["status"] == tp1["status"]
    found = fhir.resources("DiagnosticReport").search(identifier=f"{identifier['system']}|{identifier['value']}")
    assert [r.id for r in found.fetch_all()] == [tp2["id"]]

    # Audited: one event per sign-off, the amendment an update.
    status, body, _ = service.request("GET", "/api/audit?limit=5000")
    events = [e for e in body["events"] if e["kind"] == "sign-off"]
    assert sorted(e["action"] for e in events) == ["C", "C", "C", "U"]

    # The patient page shows the signed category beside the engine's, with the reader.
    status, page, _ = service.request("GET", f"/ui/patients/{MRN}", headers={"Accept": "text/html"})
    assert status == 200
    assert f'signed <strong class="signed">{engine}</strong>, engine <span class="engine">{engine}</span>' in page
    assert "Dr A. Reader" in page and "Dr C" in page


def test_a_bad_sign_off_is_refused_and_changes_nothing(fhir: SyncFHIRClient, service):
    tp1, _, _ = _reports(fhir)
    url = f"/api/reports/{tp1['id']}/sign-off"
    good = {"criterion": "RECIST-1.1", "category": "PR", "reader": "Dr B", "comment": None}
    for change, expected in (
        ({"criterion": "RECIST-2"}, 422),  # unknown criterion
        ({"category": "iCR"}, 422),  # an iRECIST category is not a RECIST 1.1 one
        ({"category": "pr"}, 422),  # submission values are case-sensitive
        ({"reader": ""}, 400),
        ({"extra": 1}, 400),
    ):
        status, body, _ = service.request("POST", url, {**good, **change})
        assert status == expected, (change, body)
        assert body["status"] == expected and body["error"]  # /api answers JSON errors with the reason
    status, _, _ = service.request("POST", "/api/reports/no-such-report/sign-off", good)
    assert status == 404

    preliminary = _signed_report(tp1["identifier"][0], {"text": "RECIST-1.1"}, "PR")
    for change in (
        {"status": "preliminary"},  # only a final report signs
        {"identifier": [{"system": "urn:other", "value": "x"}]},  # not one of our reports
        {"conclusionCode": [{"coding": [{"system": RESPONSE, "code": "PR"}]}]},  # no criterion named
        {"resultsInterpreter": []},  # no reader
    ):
        with pytest.raises(OperationOutcome) as refused:
            fhir.resource("DiagnosticReport", **{**preliminary, **change}).save()
        assert refused.value.resource["issue"][0]["severity"] == "error"
    status, body, _ = service.request("GET", f"/api/patients/{MRN}/sign-offs")
    assert body["sign_offs"] == []
