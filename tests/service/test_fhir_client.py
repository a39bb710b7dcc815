"""The /fhir endpoint through a FHIR client library written elsewhere: fhirpy 2.3 (``SyncFHIRClient``).

Runs against the real processes (gunicorn API, worker) over HTTP: create, read, conditional update on
identifier, searches by identifier, subject:identifier, date and _lastUpdated with paging followed through
``Bundle.link[next]`` by the client, the errors a client expects, and the results the worker produces.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, MultipleResourcesFound, OperationOutcome, ResourceNotFound
from fhirpy.base.searchset import Raw

from service.demo.cohort import case_bundle, demo_cohort

SYSTEM = "urn:immunorad:mrn"


@pytest.fixture
def fhir(service) -> SyncFHIRClient:
    return SyncFHIRClient(f"{service.base_url}/fhir", authorization=f"Bearer {service.token}")


def tumour_size(client: SyncFHIRClient, mrn: str, index: int, day: str, long_mm: float):
    return client.resource(
        "Observation",
        status="final",
        identifier=[{"system": "urn:test:fhirpy", "value": f"{mrn}-{index}"}],
        code={"coding": [{"system": "http://loinc.org", "code": "21889-1"}]},
        subject={"identifier": {"system": SYSTEM, "value": mrn}},
        effectiveDateTime=day,
        contained=[
            {
                "resourceType": "BodyStructure",
                "id": "l",
                "identifier": [{"value": f"lesion-{index % 2}"}],
                "patient": {"identifier": {"system": SYSTEM, "value": mrn}},
            }
        ],
        focus=[{"reference": "#l"}],
        component=[
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "33728-7"}]},
                "valueQuantity": {"value": long_mm, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"},
            }
        ],
    )


def test_create_read_and_conditional_update(fhir: SyncFHIRClient):
    metadata = fhir.execute("metadata", method="get")
    assert metadata["resourceType"] == "CapabilityStatement" and metadata["fhirVersion"] == "4.0.1"

    patient = fhir.resource(
        "Patient", identifier=[{"system": SYSTEM, "value": "FHIRPY-1"}], gender="female", birthDate="1961-07-01"
    )
    patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"
    read = fhir.reference("Patient", patient.id).to_resource()
    assert read["identifier"] == [{"system": SYSTEM, "value": "FHIRPY-1"}]

    # Conditional create (If-None-Exist): the existing Patient is returned, nothing is created.
    conditional = SyncFHIRClient(
        fhir.url, authorization=fhir.authorization, extra_headers={"If-None-Exist": f"identifier={SYSTEM}|FHIRPY-1"}
    )
    duplicate = conditional.resource("Patient", identifier=[{"system": SYSTEM, "value": "FHIRPY-1"}], gender="female")
    duplicate.save()
    assert duplicate.id == patient.id and duplicate["meta"]["versionId"] == "1"

    # Conditional update on identifier (PUT Patient?identifier=…): one match → updated in place.
    changed = fhir.resource(
        "Patient", identifier=[{"system": SYSTEM, "value": "FHIRPY-1"}], gender="female", birthDate="1961-07-02"
    )
    updated, created = fhir.resources("Patient").search(identifier=f"{SYSTEM}|FHIRPY-1").update(changed)
    assert not created and updated.id == patient.id and updated["meta"]["versionId"] == "2"
    assert fhir.resources("Patient").search(identifier=f"{SYSTEM}|FHIRPY-1").fetch_raw()["total"] == 1
    # No match → created.
    other = fhir.resource("Patient", identifier=[{"system": SYSTEM, "value": "FHIRPY-2"}], gender="male")
    made, created = fhir.resources("Patient").search(identifier=f"{SYSTEM}|FHIRPY-2").update(other)
    assert created and made.id != patient.id

    # Conditional update of an Observation by its own identifier keeps one resource per identifier.
    first, created = (
        fhir.resources("Observation")
        .search(identifier="urn:test:fhirpy|FHIRPY-1-0")
        .update(tumour_size(fhir, "FHIRPY-1", 0, "2024-01-02", 30))
    )
    again, created_again = (
        fhir.resources("Observation")
        .search(identifier="urn:test:fhirpy|FHIRPY-1-0")
        .update(tumour_size(fhir, "FHIRPY-1", 0, "2024-01-02", 31))
    )
    assert created and not created_again and again.id == first.id
    assert again["component"][0]["valueQuantity"]["value"] == 31

    # Two resources with one identifier: a conditional update must refuse (412).
    for _ in range(2):
        fhir.resource(
            "Observation",
            **{k: v for k, v in tumour_size(fhir, "FHIRPY-1", 9, "2024-01-02", 20).items() if k != "identifier"},
            identifier=[{"system": "urn:test:dup", "value": "d"}],
        ).save()
    with pytest.raises(MultipleResourcesFound):
        fhir.resources("Observation").search(identifier="urn:test:dup|d").update(
            tumour_size(fhir, "FHIRPY-1", 9, "2024-01-02", 21)
        )


def test_searches_page_through_next_links(fhir: SyncFHIRClient):
    fhir.resource("Patient", identifier=[{"system": SYSTEM, "value": "FHIRPY-PAGE"}], gender="male").save()
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    days = ["2024-01-02", "2024-02-05", "2024-03-04", "2024-04-01", "2024-05-06", "2024-06-03", "2024-07-01"]
    for index, day in enumerate(days):
        tumour_size(fhir, "FHIRPY-PAGE", index, day, 30 + index).save()
    # The worker adds its own result Observations for this patient meanwhile: ask for tumour sizes only.
    sizes = fhir.resources("Observation").search(code="http://loinc.org|21889-1")
    by_patient = sizes.search(Raw(**{"subject:identifier": f"{SYSTEM}|FHIRPY-PAGE"})).limit(3)
    first_page = by_patient.fetch_raw()
    assert first_page["total"] == 7 and len(first_page["entry"]) == 3
    assert any(link["relation"] == "next" for link in first_page["link"])
    everything = by_patient.fetch_all()  # fhirpy follows Bundle.link[next]
    assert len(everything) == 7 and len({o.id for o in everything}) == 7
    assert sorted(o["effectiveDateTime"] for o in everything) == days
    since = by_patient.search(date__ge="2024-04-01").limit(2).fetch_all()
    assert sorted(o["effectiveDateTime"] for o in since) == days[3:]
    recent = (
        fhir.resources("Observation")
        .search(_lastUpdated__ge=before.strftime("%Y-%m-%dT%H:%M:%SZ"))
        .limit(4)
        .fetch_all()
    )
    assert {o.id for o in everything} <= {o.id for o in recent}
    patient = fhir.resources("Patient").search(identifier=f"{SYSTEM}|FHIRPY-PAGE").get()
    by_reference = sizes.search(patient=patient.id).limit(5).fetch_all()
    assert {o.id for o in by_reference} == {o.id for o in everything}
    assert (
        fhir.resources("Observation").search(identifier="urn:test:fhirpy|FHIRPY-PAGE-3").get()["effectiveDateTime"]
        == days[3]
    )


def test_errors_reach_the_client_as_operation_outcomes(fhir: SyncFHIRClient, service):
    with pytest.raises(ResourceNotFound):
        fhir.reference("Patient", "no-such-patient").to_resource()
    with pytest.raises(OperationOutcome) as invalid:
        fhir.resource("Observation", status="not-a-status", code={"text": "x"}).save()
    assert invalid.value.resource["resourceType"] == "OperationOutcome"
    assert invalid.value.resource["issue"][0]["severity"] == "error"
    with pytest.raises(AuthorizationError):
        SyncFHIRClient(f"{service.base_url}/fhir", authorization="Bearer wrong").resources("Patient").fetch()
    with pytest.raises(AuthorizationError):
        SyncFHIRClient(f"{service.base_url}/fhir").resources("Patient").fetch()


def test_results_are_read_back_with_the_client(fhir: SyncFHIRClient, service):
    mrn, _, case = "FHIRPY-E1", None, demo_cohort()[0][2]
    fhir.execute("", method="post", data=case_bundle(case, mrn, SYSTEM))
    from service.demo.cohort import case_measurements_bundle

    fhir.execute("", method="post", data=case_measurements_bundle(case, mrn, SYSTEM))
    deadline = time.monotonic() + 60
    reports = []
    while time.monotonic() < deadline and len(reports) < 3:
        reports = (
            fhir.resources("DiagnosticReport")
            .search(Raw(**{"subject:identifier": f"{SYSTEM}|{mrn}"}))
            .limit(1)
            .fetch_all()
        )
        time.sleep(0.3)
    assert len(reports) == 3, "one report per follow-up (TP1–TP3)"
    first = min(reports, key=lambda r: r["effectiveDateTime"])
    results = [fhir.reference(reference=ref["reference"]).to_resource() for ref in first["result"]]
    methods = {c["code"] for r in results for c in (r.get("method") or {}).get("coding", [])}
    assert {"RECIST-1.1", "iRECIST"} <= methods
    flags = fhir.resources("Flag").search(Raw(**{"subject:identifier": f"{SYSTEM}|{mrn}"})).fetch_all()
    assert isinstance(flags, list)


def test_unknown_search_parameters_are_ignored_by_default(fhir: SyncFHIRClient):
    assert fhir.resources("Patient").search(identifier=f"{SYSTEM}|nobody").count() == 0


def test_a_transaction_with_urn_references_is_written_and_its_report_read_back(fhir: SyncFHIRClient):
    """The shape EHR clients send (contract §9.1): the Patient as a conditional PUT with a urn:uuid fullUrl, placed
    last, the baseline and follow-up Observations (built by fhirpy) referring to that urn. fhirpy then finds the
    Patient by identifier, the Observations by patient, and reads the report the worker produced."""
    mrn, patient_urn = "FHIRPY-URN", f"urn:uuid:{uuid.uuid4()}"
    entries = []
    # Two target lesions: baseline 40 + 25 = 65 mm, follow-up 20 + 12 = 32 mm; (32 − 65) / 65 = −50.8 %, at least
    # a 30 % decrease from baseline: RECIST 1.1 partial response (PR).
    for day, sizes in (("2024-01-08", (40, 25)), ("2024-03-04", (20, 12))):
        for index, long_mm in enumerate(sizes):
            observation = tumour_size(fhir, mrn, index, day, long_mm)
            observation["identifier"] = [{"system": "urn:test:fhirpy", "value": f"{mrn}-{day}-{index}"}]
            observation["subject"] = {"reference": patient_urn}
            observation["contained"][0]["patient"] = {"reference": patient_urn}
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": observation.serialize(),
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
    patient = fhir.resource("Patient", identifier=[{"system": SYSTEM, "value": mrn}], gender="female")
    entries.append(
        {
            "fullUrl": patient_urn,
            "resource": patient.serialize(),
            "request": {"method": "PUT", "url": f"Patient?identifier={SYSTEM}|{mrn}"},
        }
    )
    response = fhir.execute("", method="post", data={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response["type"] == "transaction-response" and len(response["entry"]) == 5
    assert response["entry"][-1]["response"]["status"] == "201 Created"

    stored = fhir.resources("Patient").search(identifier=f"{SYSTEM}|{mrn}").get()
    sizes = fhir.resources("Observation").search(patient=stored.id, code="http://loinc.org|21889-1").fetch_all()
    assert len(sizes) == 4 and {o["subject"]["reference"] for o in sizes} == {f"Patient/{stored.id}"}
    deadline = time.monotonic() + 90
    reports = []
    while time.monotonic() < deadline and not reports:
        reports = fhir.resources("DiagnosticReport").search(patient=stored.id).fetch_all()
        time.sleep(0.3)
    assert len(reports) == 1, "one report, for the follow-up"
    assert reports[0]["subject"]["reference"] == f"Patient/{stored.id}"
    results = [fhir.reference(reference=ref["reference"]).to_resource() for ref in reports[0]["result"]]
    recist = [r for r in results if "RECIST-1.1" in {c["code"] for c in (r.get("method") or {}).get("coding", [])}]
    assert "PR" in {(r.get("valueCodeableConcept") or {}).get("text") for r in recist}
