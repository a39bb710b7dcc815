"""The /fhir endpoint as a FHIR client sees it (contract §4): shapes, statuses, atomicity, conditional ops, paging."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service.persistence.models import AuditEvent, ClinicalFact, FhirResource, Lesion, Measurement, Patient

SYSTEM = "urn:immunorad:mrn"


def patient(mrn: str) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "gender": "male",
        "birthDate": "1955-03-02",
    }


def tumour_observation(mrn: str, key: str, day: str, long_mm: float, *, identifier: str | None = None) -> dict:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "21889-1"}]},
        "subject": {"identifier": {"system": SYSTEM, "value": mrn}},
        "effectiveDateTime": day,
        "contained": [
            {
                "resourceType": "BodyStructure",
                "id": "l",
                "identifier": [{"value": key}],
                "patient": {"identifier": {"system": SYSTEM, "value": mrn}},
            }
        ],
        "focus": [{"reference": "#l"}],
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "33728-7"}]},
                "valueQuantity": {"value": long_mm, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"},
            }
        ],
    }
    if identifier:
        obs["identifier"] = [{"system": "urn:test:obs", "value": identifier}]
    return obs


def rows(db, model) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_metadata_is_open_and_states_fhir_4_0_1(app_client):
    app_client.environ_base.pop("HTTP_AUTHORIZATION", None)
    response = app_client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    body = response.get_json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert {"Patient", "Observation", "DiagnosticReport", "Flag", "MedicationAdministration", "Procedure"} <= types
    assert {i["code"] for i in body["rest"][0]["interaction"]} == {"transaction", "batch"}
    assert response.headers.get("ETag")


def test_requests_without_or_with_a_wrong_token_are_refused_and_audited(app_client, db):
    app_client.environ_base.pop("HTTP_AUTHORIZATION", None)
    response = app_client.get("/fhir/Patient")
    assert response.status_code == 401 and response.get_json()["resourceType"] == "OperationOutcome"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert app_client.get("/api/patients", headers={"Authorization": "Bearer wrong"}).status_code == 401
    with db.read() as session:
        assert (
            session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.kind == "auth-failure")) == 2
        )


@pytest.mark.parametrize(
    "data, content_type, status",
    [
        (b'{"resourceType": "Patient", ', "application/fhir+json", 400),
        (b"<Patient/>", "application/fhir+xml", 415),
        (b'["not", "a", "resource"]', "application/fhir+json", 400),
    ],
)
def test_malformed_bodies(app_client, data, content_type, status):
    response = app_client.post("/fhir/Patient", data=data, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_invalid_and_unsupported_resources(app_client, db):
    bad = {"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}}
    response = app_client.post("/fhir/Observation", json=bad)
    assert response.status_code == 422
    issue = response.get_json()["issue"][0]
    assert issue["severity"] == "error" and issue.get("expression")
    assert app_client.post("/fhir/Basic", json={"resourceType": "Basic", "code": {"text": "x"}}).status_code == 404
    assert app_client.delete("/fhir/Patient/x").status_code == 405
    assert app_client.post("/fhir/DiagnosticReport", json={"resourceType": "DiagnosticReport"}).status_code == 405
    assert app_client.get("/fhir/Patient/does-not-exist").status_code == 404
    # A tumour measurement that names no lesion cannot be matched: 422 with the reason, nothing stored.
    no_focus = tumour_observation("MRN-X", "T1", "2024-01-08", 30)
    del no_focus["focus"]
    response = app_client.post("/fhir/Observation", json=no_focus)
    assert response.status_code == 422 and "focus" in response.get_json()["issue"][0]["diagnostics"]
    assert rows(db, Measurement) == 0


def test_oversized_request_gets_413(settings_factory):
    from service.api import create_app

    settings = settings_factory(max_request_bytes=1000)
    client = create_app(settings).test_client()
    body = patient("MRN-BIG") | {
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * 5000 + "</div>"}
    }
    response = client.post("/fhir/Patient", json=body, headers={"Authorization": f"Bearer {settings.api_token}"})
    assert response.status_code == 413 and response.get_json()["resourceType"] == "OperationOutcome"


def test_transaction_is_all_or_nothing(app_client, db):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": patient("MRN-TX"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "bogus",
                    "code": {"text": "x"},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = app_client.post("/fhir", json=bundle)
    assert response.status_code == 422
    assert "entry 1" in response.get_json()["issue"][0]["diagnostics"]
    assert rows(db, Patient) == 0 and rows(db, FhirResource) == 0


def test_batch_entries_succeed_or_fail_alone(app_client, db):
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient("MRN-BATCH"), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = app_client.post("/fhir", json=bundle)
    assert response.status_code == 200
    body = response.get_json()
    assert body["type"] == "batch-response"
    assert body["entry"][0]["response"]["status"].startswith("201")
    assert body["entry"][1]["response"]["status"].startswith("422")
    assert body["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert rows(db, Patient) == 1


def test_conditional_create_and_update_on_identifier(app_client, db):
    obs = tumour_observation("MRN-C", "T1", "2024-01-08", 30, identifier="obs-1")
    first = app_client.post("/fhir/Observation", json=obs, headers={"If-None-Exist": "identifier=urn:test:obs|obs-1"})
    assert first.status_code == 201 and first.headers["Location"].endswith("/_history/1")
    again = app_client.post("/fhir/Observation", json=obs, headers={"If-None-Exist": "identifier=urn:test:obs|obs-1"})
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    # Conditional update: the same identifier updates the one resource (new version, same id).
    changed = tumour_observation("MRN-C", "T1", "2024-01-08", 31, identifier="obs-1")
    update = app_client.put("/fhir/Observation?identifier=urn:test:obs|obs-1", json=changed)
    assert update.status_code == 200
    assert update.get_json()["id"] == first.get_json()["id"] and update.get_json()["meta"]["versionId"] == "2"
    assert update.headers["ETag"] == 'W/"2"'
    with db.read() as session:
        values = list(session.scalars(select(Measurement.long_axis_mm)))
    assert [float(v) for v in values] == [31.0]
    # A version-aware update with a stale If-Match is refused.
    stale = app_client.put(
        f"/fhir/Observation/{first.get_json()['id']}",
        json=changed | {"id": first.get_json()["id"]},
        headers={"If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412


def test_a_conditional_put_that_matches_nothing_but_names_a_stored_id_replaces_its_measurement(app_client, db):
    # The identifier matches no resource, so this is a create, with the client's id: that id is already stored,
    # so the stored resource gets a new version and its measurement is replaced, not doubled.
    first = app_client.post(
        "/fhir/Observation", json=tumour_observation("MRN-R", "T1", "2024-01-08", 30, identifier="r-1")
    )
    stored_id = first.get_json()["id"]
    again = tumour_observation("MRN-R", "T1", "2024-01-08", 33, identifier="r-2") | {"id": stored_id}
    response = app_client.put("/fhir/Observation?identifier=urn:test:obs|r-2", json=again)
    assert response.status_code in (200, 201) and response.get_json()["id"] == stored_id
    assert response.get_json()["meta"]["versionId"] == "2"
    with db.read() as session:
        assert [float(v) for v in session.scalars(select(Measurement.long_axis_mm))] == [33.0]


def test_a_transaction_of_many_timepoints_keeps_one_lesion_per_identity(app_client, db):
    days = ["2024-01-08", "2024-03-04", "2024-04-29", "2024-06-24"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": tumour_observation("MRN-L", key, day, 20 + i, identifier=f"l-{key}-{day}"),
                "request": {"method": "PUT", "url": f"Observation?identifier=urn:test:obs|l-{key}-{day}"},
            }
            for i, day in enumerate(days)
            for key in ("T1", "T2")
        ],
    }
    assert app_client.post("/fhir", json=bundle).status_code == 200
    with db.read() as session:
        lesion_ids = list(session.scalars(select(Measurement.lesion_id)))
    # 4 timepoints × 2 lesions = 8 measurements on 2 lesions, each measurement inserted complete.
    assert len(lesion_ids) == 8 and None not in lesion_ids and len(set(lesion_ids)) == 2
    assert rows(db, Lesion) == 2


def test_search_paging_and_parameters(app_client):
    for i in range(5):
        app_client.post(
            "/fhir/Observation",
            json=tumour_observation("MRN-S", f"T{i}", f"2024-01-0{i + 1}", 20 + i, identifier=f"s-{i}"),
        )
    page = app_client.get(f"/fhir/Observation?subject:identifier={SYSTEM}|MRN-S&_count=2").get_json()
    assert page["type"] == "searchset" and page["total"] == 5 and len(page["entry"]) == 2
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    second = app_client.get(next_url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])).get_json()
    assert len(second["entry"]) == 2
    assert {e["resource"]["id"] for e in page["entry"]}.isdisjoint({e["resource"]["id"] for e in second["entry"]})
    assert app_client.get("/fhir/Observation?identifier=urn:test:obs|s-3").get_json()["total"] == 1
    assert app_client.get("/fhir/Observation?date=ge2024-01-04").get_json()["total"] == 2
    assert app_client.get("/fhir/Observation?_lastUpdated=gt2000-01-01").get_json()["total"] == 5
    # Unknown parameters are ignored (R4 search), unless the client asks for strict handling.
    assert app_client.get("/fhir/Observation?colour=blue").get_json()["total"] == 5
    assert app_client.get("/fhir/Observation?colour=blue", headers={"Prefer": "handling=strict"}).status_code == 400


def test_checkpoint_inhibitors_become_therapy_lines_unknown_drugs_unclassified_concomitant_dropped(app_client, db):
    def administration(name: str, day: str) -> dict:
        return {
            "resourceType": "MedicationAdministration",
            "status": "completed",
            "medicationCodeableConcept": {"text": name},
            "subject": {"identifier": {"system": SYSTEM, "value": "MRN-M"}},
            "effectiveDateTime": day,
        }

    assert (
        app_client.post(
            "/fhir/MedicationAdministration", json=administration("Nivolumab 240 mg", "2024-02-01")
        ).status_code
        == 201
    )
    assert (
        app_client.post("/fhir/MedicationAdministration", json=administration("paracetamol", "2024-02-01")).status_code
        == 201
    )
    # Contract §9.3: a drug the immunotherapy code lists do not know is kept as an unclassified therapy (the
    # assessment warns about it; it never sets day 0); one with an ATC code outside group L is concomitant.
    coded = administration("Paracetamol 1 g", "2024-02-01")
    coded["medicationCodeableConcept"]["coding"] = [{"system": "http://www.whocc.no/atc", "code": "N02BE01"}]
    assert app_client.post("/fhir/MedicationAdministration", json=coded).status_code == 201
    with db.read() as session:
        facts = list(session.scalars(select(ClinicalFact)))
    assert sorted((f.kind, f.payload["agent"], f.payload["therapy_class"], f.payload["start_date"]) for f in facts) == [
        ("therapy-line", "nivolumab", "immune-checkpoint-inhibitor", "2024-02-01"),
        ("therapy-line", "paracetamol", "unclassified", "2024-02-01"),
    ]
