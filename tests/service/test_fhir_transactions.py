"""FHIR as EHR clients send it (contract §9.1), through real HTTP to gunicorn on SQLite and PostgreSQL.

Transactions by FHIR R4's processing rules (http.html#trules): a conditional ``PUT Patient?identifier=…`` or a
``POST`` with ``ifNoneExist`` carrying a ``urn:uuid`` fullUrl resolves for every entry that refers to it, in either
entry order; the refusals (bdl-7, malformed conditions, several matches, bad ids, overlapping entries, 413, 414)
with nothing stored; ``_count=0``; ``_sort``; absolute URLs from configuration, never from ``Host``.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from service.persistence.db import Database
from service.persistence.models import FhirResource, Measurement, Patient
from tests.service.test_fhir_api import SYSTEM, patient, tumour_observation
from tests.support.processes import ServiceProcesses

MAX_BODY = 64 * 1024
MAX_URL = 2000
PATIENT_URN = "urn:uuid:0c5a6f8e-1f43-4d7a-9a53-8f3a2b7c1d01"


@pytest.fixture
def api(db_url, tmp_path):
    """The HTTP API alone (gunicorn), with small limits so that the 413/414 tests send little."""
    processes = ServiceProcesses(
        db_url=db_url,
        var_dir=tmp_path / "var",
        roles=("api",),
        extra_env={"IMMUNORAD_MAX_REQUEST_BYTES": str(MAX_BODY), "IMMUNORAD_MAX_URL_BYTES": str(MAX_URL)},
    )
    processes.start()
    yield processes
    processes.stop()


@pytest.fixture
def stored(db_url):
    database = Database(db_url)

    def count(model=FhirResource) -> int:
        with database.read() as session:
            return session.scalar(select(func.count()).select_from(model))

    yield count
    database.dispose()


def call(
    api: ServiceProcesses,
    method: str,
    target: str,
    body: dict | bytes | None = None,
    *,
    headers: dict | None = None,
    chunks: list[bytes] | None = None,
) -> tuple[int, dict, dict]:
    """One request over a fresh connection (http.client: the Host header and chunking are ours to choose)."""
    connection = http.client.HTTPConnection("127.0.0.1", api.http_port, timeout=60)
    all_headers = {
        "Authorization": f"Bearer {api.token}",
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
    }
    all_headers.update(headers or {})
    try:
        if chunks is not None:
            connection.request(method, target, body=iter(chunks), headers=all_headers, encode_chunked=True)
        else:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            connection.request(method, target, body=data, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}, dict(response.getheaders())
    finally:
        connection.close()


def transaction(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def patient_entry(mrn: str, *, method: str = "PUT", condition: str | None = None) -> dict:
    request = (
        {"method": "PUT", "url": f"Patient?identifier={SYSTEM}|{mrn}"}
        if method == "PUT"
        else {"method": "POST", "url": "Patient", "ifNoneExist": condition or f"identifier={SYSTEM}|{mrn}"}
    )
    return {"fullUrl": PATIENT_URN, "resource": patient(mrn), "request": request}


def observation_entry(mrn: str, key: str, day: str, long_mm: float, urn_number: int) -> dict:
    observation = tumour_observation(mrn, key, day, long_mm)
    observation["subject"] = {"reference": PATIENT_URN}
    observation["contained"][0]["patient"] = {"reference": PATIENT_URN}
    return {
        "fullUrl": f"urn:uuid:0c5a6f8e-1f43-4d7a-9a53-{urn_number:012d}",
        "resource": observation,
        "request": {"method": "POST", "url": "Observation"},
    }


def assert_outcome(body: dict, status: int, expected: int) -> None:
    assert status == expected, body
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"


def subjects(reply: dict) -> set[str]:
    return {
        e["resource"]["subject"]["reference"] for e in reply["entry"] if e["resource"]["resourceType"] == "Observation"
    }


@pytest.mark.parametrize("patient_first", [True, False], ids=["patient-first", "patient-last"])
def test_a_conditional_put_patient_with_a_urn_is_resolved_in_either_entry_order(api, stored, patient_first):
    """The most common EHR shape: PUT Patient?identifier=… with a urn:uuid fullUrl, Observations referring to it."""
    observations = [
        observation_entry("URN-1", "T1", "2024-01-08", 30, 1),
        observation_entry("URN-1", "T2", "2024-01-08", 20, 2),
    ]
    entries = [patient_entry("URN-1"), *observations] if patient_first else [*observations, patient_entry("URN-1")]
    status, reply, _ = call(api, "POST", "/fhir", transaction(*entries))
    assert status == 200, reply
    by_type = {e["resource"]["resourceType"]: e for e in reply["entry"]}
    made = by_type["Patient"]
    assert made["response"]["status"] == "201 Created"
    patient_id = made["resource"]["id"]
    assert subjects(reply) == {f"Patient/{patient_id}"}
    assert stored(Patient) == 1 and stored(Measurement) == 2

    # Sent again for the follow-up: the condition now matches the stored Patient, the urn resolves to it.
    again = [
        observation_entry("URN-1", "T1", "2024-03-04", 24, 3),
        observation_entry("URN-1", "T2", "2024-03-04", 15, 4),
    ]
    entries = [patient_entry("URN-1"), *again] if patient_first else [*again, patient_entry("URN-1")]
    status, reply, _ = call(api, "POST", "/fhir", transaction(*entries))
    assert status == 200, reply
    updated = next(e for e in reply["entry"] if e["resource"]["resourceType"] == "Patient")
    assert updated["response"]["status"] == "200 OK" and updated["resource"]["id"] == patient_id
    assert subjects(reply) == {f"Patient/{patient_id}"}
    assert stored(Patient) == 1 and stored(Measurement) == 4
    status, found, _ = call(api, "GET", f"/fhir/Observation?patient={patient_id}&_count=0")
    assert found["total"] == 4


@pytest.mark.parametrize("condition", ["identifier={system}|URN-2", "Patient?identifier={system}|URN-2"])
def test_an_if_none_exist_patient_resolves_to_what_it_created_or_matched(api, stored, condition):
    condition = condition.format(system=SYSTEM)
    first = transaction(
        observation_entry("URN-2", "T1", "2024-01-08", 30, 1),
        patient_entry("URN-2", method="POST", condition=condition),
    )
    status, reply, _ = call(api, "POST", "/fhir", first)
    assert status == 200, reply
    made = reply["entry"][1]
    assert made["response"]["status"] == "201 Created"
    assert subjects(reply) == {f"Patient/{made['resource']['id']}"}

    # The condition matches: no action on the Patient (200, version 1), the urn resolves to the stored one.
    second = transaction(
        patient_entry("URN-2", method="POST", condition=condition),
        observation_entry("URN-2", "T1", "2024-03-04", 20, 2),
    )
    status, reply, _ = call(api, "POST", "/fhir", second)
    assert status == 200, reply
    matched = reply["entry"][0]
    assert matched["response"]["status"] == "200 OK" and matched["resource"]["id"] == made["resource"]["id"]
    assert matched["resource"]["meta"]["versionId"] == "1"
    assert subjects(reply) == {f"Patient/{made['resource']['id']}"}
    assert stored(Patient) == 1 and stored(Measurement) == 2


LONG_ID = "a" * 65


@pytest.mark.parametrize(
    "entries, status, expression",
    [
        pytest.param(
            [patient_entry("BAD-1"), observation_entry("BAD-1", "T1", "2024-01-08", 30, 1) | {"fullUrl": PATIENT_URN}],
            400,
            "Bundle.entry[1].fullUrl",
            id="duplicate-fullUrl-bdl-7",
        ),
        pytest.param(
            [patient_entry("BAD-1") | {"request": {"method": "PUT", "url": "Patient?identifier="}}],
            400,
            "Bundle.entry[0].request.url",
            id="empty-condition",
        ),
        pytest.param(
            [patient_entry("BAD-1") | {"request": {"method": "PUT", "url": f"Patient?identifier={SYSTEM}|"}}],
            400,
            "Bundle.entry[0].request.url",
            id="condition-without-value",
        ),
        pytest.param(
            [patient_entry("BAD-1", method="POST", condition="identifier=")],
            400,
            "Bundle.entry[0].request.ifNoneExist",
            id="empty-ifNoneExist",
        ),
        pytest.param(
            [patient_entry("BAD-1", method="POST", condition="identifier")],
            400,
            "Bundle.entry[0].request.ifNoneExist",
            id="ifNoneExist-without-equals",
        ),
        pytest.param(
            [patient_entry("BAD-1", method="POST", condition=f"Observation?identifier={SYSTEM}|BAD-1")],
            400,
            "Bundle.entry[0].request.ifNoneExist",
            id="ifNoneExist-on-another-type",
        ),
        pytest.param(
            [patient_entry("BAD-1") | {"request": {"method": "PUT", "url": f"Patient/{LONG_ID}"}}],
            400,
            "Bundle.entry[0].request.url",
            id="id-65-characters",
        ),
        pytest.param(
            [patient_entry("BAD-1") | {"request": {"method": "PUT", "url": "Patient/has_underscore"}}],
            400,
            "Bundle.entry[0].request.url",
            id="id-with-underscore",
        ),
        pytest.param(
            [
                {
                    "resource": patient("BAD-1") | {"id": LONG_ID},
                    "request": {"method": "POST", "url": "Patient"},
                }
            ],
            400,
            "Bundle.entry[0].resource.id",
            id="body-id-65-characters",
        ),
        pytest.param(
            [
                observation_entry("BAD-1", "T1", "2024-01-08", 30, 1),
                patient_entry("BAD-1"),
                patient_entry("BAD-1") | {"fullUrl": "urn:uuid:0c5a6f8e-1f43-4d7a-9a53-999999999999"},
            ],
            400,
            "Bundle.entry[2]",
            id="two-entries-one-condition",
        ),
    ],
)
def test_refused_transactions_store_nothing(api, stored, entries, status, expression):
    got, reply, _ = call(api, "POST", "/fhir", transaction(*entries))
    assert_outcome(reply, got, status)
    assert reply["issue"][0]["expression"] == [expression]
    assert stored() == 0 and stored(Patient) == 0 and stored(Measurement) == 0


def test_a_condition_matching_several_is_412_and_stores_nothing(api, stored):
    for _ in range(2):
        twin = tumour_observation("DUP-1", "T1", "2024-01-08", 30, identifier="twin")
        status, reply, _ = call(api, "POST", "/fhir/Observation", twin)
        assert status == 201, reply
    before = (stored(), stored(Measurement))
    bundle = transaction(
        patient_entry("DUP-1"),
        {
            "resource": tumour_observation("DUP-1", "T1", "2024-01-08", 31, identifier="twin"),
            "request": {"method": "PUT", "url": "Observation?identifier=urn:test:obs|twin"},
        },
    )
    status, reply, _ = call(api, "POST", "/fhir", bundle)
    assert_outcome(reply, status, 412)
    assert (stored(), stored(Measurement)) == before
    # The single-resource interactions refuse alike.
    status, reply, _ = call(
        api, "PUT", "/fhir/Observation?identifier=urn:test:obs|twin", tumour_observation("DUP-1", "T1", "2024-01-08", 9)
    )
    assert_outcome(reply, status, 412)
    status, reply, _ = call(api, "PUT", "/fhir/Patient?identifier=", patient("DUP-1"))
    assert_outcome(reply, status, 400)
    status, reply, _ = call(api, "POST", "/fhir/Patient", patient("DUP-1"), headers={"If-None-Exist": "identifier="})
    assert_outcome(reply, status, 400)
    status, reply, _ = call(api, "PUT", f"/fhir/Patient/{LONG_ID}", patient("DUP-1") | {"id": LONG_ID})
    assert_outcome(reply, status, 400)
    assert (stored(), stored(Measurement)) == before


def test_an_id_of_64_characters_is_accepted(api):
    longest = "A-." + "b" * 61  # 64 characters, every kind of character an id may hold
    status, reply, headers = call(api, "PUT", f"/fhir/Patient/{longest}", patient("ID-64") | {"id": longest})
    assert status == 201, reply
    assert reply["id"] == longest and headers["Location"].endswith(f"/fhir/Patient/{longest}/_history/1")
    observation = tumour_observation("ID-64", "T1", "2024-01-08", 30) | {"id": longest}
    observation["subject"] = {"reference": f"Patient/{longest}"}
    status, reply, headers = call(api, "PUT", f"/fhir/Observation/{longest}", observation)
    assert status == 201, reply
    assert reply["id"] == longest and headers["Location"].endswith(f"/fhir/Observation/{longest}/_history/1")
    status, found, _ = call(api, "GET", f"/fhir/Observation?patient={longest}")
    assert found["total"] == 1


def test_bodies_over_the_limit_are_413_with_or_without_content_length(api, stored):
    padding = b" " * (MAX_BODY + 1 - len(json.dumps(patient("BIG-1")).encode()))
    oversize = json.dumps(patient("BIG-1")).encode() + padding  # MAX_BODY + 1 bytes of valid JSON
    assert len(oversize) == MAX_BODY + 1
    status, reply, _ = call(api, "POST", "/fhir/Patient", oversize)
    assert_outcome(reply, status, 413)
    pieces = [oversize[i : i + 4096] for i in range(0, len(oversize), 4096)]
    status, reply, _ = call(api, "POST", "/fhir/Patient", chunks=pieces)
    assert_outcome(reply, status, 413)
    status, reply, _ = call(api, "POST", "/fhir", chunks=[b'{"resourceType": "Bundle", ', b" " * (2 * MAX_BODY)])
    assert_outcome(reply, status, 413)
    assert stored() == 0
    # Exactly at the limit, chunked: accepted.
    status, reply, _ = call(api, "POST", "/fhir/Patient", chunks=[oversize[:-1][:30000], oversize[:-1][30000:]])
    assert status == 201, reply
    assert stored(Patient) == 1


def test_urls_over_the_limit_are_414_operation_outcomes(api):
    def search_of_length(length: int) -> str:
        start = f"/fhir/Patient?identifier={SYSTEM}|"
        return start + "x" * (length - len(start))

    status, reply, _ = call(api, "GET", search_of_length(MAX_URL))
    assert status == 200 and reply["total"] == 0
    status, reply, headers = call(api, "GET", search_of_length(MAX_URL + 1))  # refused by the application
    assert_outcome(reply, status, 414)
    assert headers["Content-Type"].startswith("application/fhir+json")
    status, reply, headers = call(api, "GET", search_of_length(3 * MAX_URL))  # refused by gunicorn's line limit
    assert_outcome(reply, status, 414)
    assert headers["Content-Type"].startswith("application/fhir+json")
    status, reply, _ = call(api, "GET", "/fhir/metadata")  # the worker still serves
    assert status == 200


def _store_sizes(api: ServiceProcesses) -> list[str]:
    days = ["2024-03-04", "2024-01-08", "2024-05-06"]
    ids = []
    for index, day in enumerate(days):
        status, reply, _ = call(api, "POST", "/fhir/Observation", tumour_observation("SORT-1", f"T{index}", day, 30))
        assert status == 201, reply
        ids.append(reply["id"])
    return ids


def test_count_zero_gives_the_total_only(api):
    _store_sizes(api)
    status, reply, _ = call(api, "GET", "/fhir/Observation?subject:identifier=" + f"{SYSTEM}|SORT-1&_count=0")
    assert status == 200 and reply["total"] == 3
    assert "entry" not in reply or reply["entry"] == []
    assert [link["relation"] for link in reply["link"]] == ["self"]


def test_sort_on_date_and_last_updated(api):
    stored_order = _store_sizes(api)  # stored in this order, dated 2024-03-04, 2024-01-08, 2024-05-06

    def ids(sort: str) -> list[str]:
        status, reply, _ = call(api, "GET", f"/fhir/Observation?{urlencode({'_sort': sort, 'code': '21889-1'})}")
        assert status == 200, reply
        assert f"_sort={sort}" in next(link["url"] for link in reply["link"] if link["relation"] == "self")
        return [entry["resource"]["id"] for entry in reply["entry"]]

    by_date = [stored_order[1], stored_order[0], stored_order[2]]
    assert ids("date") == by_date
    assert ids("-date") == by_date[::-1]
    assert ids("_lastUpdated") == stored_order
    assert ids("-_lastUpdated") == stored_order[::-1]


def test_parameters_not_honoured_are_not_echoed_in_self(api):
    _store_sizes(api)
    query = urlencode(
        {"code": "21889-1", "_sort": "status", "_summary": "true", "unknown": "x", "_elements": "id", "_count": "2"}
    )
    status, reply, _ = call(api, "GET", f"/fhir/Observation?{query}")
    assert status == 200 and reply["total"] == 3
    links = {link["relation"]: urlsplit(link["url"]) for link in reply["link"]}
    for part in links.values():
        names = {pair.split("=")[0] for pair in part.query.split("&")}
        assert names == {"code", "_count", "_offset"}
    status, reply, _ = call(api, "GET", f"/fhir/Observation?{query}", headers={"Prefer": "handling=strict"})
    assert_outcome(reply, status, 400)


def test_absolute_urls_come_from_configuration_never_from_host(api):
    forged = {"Host": "attacker.example:666", "X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "https"}
    base = f"http://127.0.0.1:{api.http_port}/fhir"
    status, created, headers = call(api, "POST", "/fhir/Patient", patient("HOST-1"), headers=forged)
    assert status == 201 and headers["Location"].startswith(f"{base}/Patient/{created['id']}/_history/")
    status, reply, _ = call(api, "POST", "/fhir", transaction(patient_entry("HOST-2")), headers=forged)
    assert status == 200 and reply["entry"][0]["fullUrl"] == f"{base}/Patient/{reply['entry'][0]['resource']['id']}"
    assert reply["entry"][0]["response"]["location"].startswith(f"{base}/Patient/")
    status, reply, _ = call(api, "GET", "/fhir/Patient?_count=1", headers=forged)
    assert status == 200 and reply["total"] == 2
    urls = [link["url"] for link in reply["link"]] + [entry["fullUrl"] for entry in reply["entry"]]
    assert len(urls) == 3 and all(url.startswith(f"{base}/Patient") for url in urls), urls
    status, reply, _ = call(api, "GET", "/fhir/metadata", headers=forged)
    assert reply["implementation"]["url"] == base
    assert "attacker" not in json.dumps(reply)


def test_public_url_is_the_base_of_absolute_urls(db_url, tmp_path):
    processes = ServiceProcesses(
        db_url=db_url,
        var_dir=tmp_path / "var",
        roles=("api",),
        extra_env={"IMMUNORAD_PUBLIC_URL": "https://immunorad.hospital.example/imaging/"},
    )
    processes.start()
    try:
        base = "https://immunorad.hospital.example/imaging/fhir"
        status, created, headers = call(processes, "POST", "/fhir/Patient", patient("PUB-1"), headers={"Host": "x"})
        assert status == 201 and headers["Location"] == f"{base}/Patient/{created['id']}/_history/1"
        status, reply, _ = call(processes, "GET", "/fhir/Patient", headers={"Host": "x"})
        assert reply["entry"][0]["fullUrl"] == f"{base}/Patient/{created['id']}"
        assert reply["link"][0]["url"].startswith(f"{base}/Patient?")
    finally:
        processes.stop()


def test_the_capability_statement_lists_exactly_what_is_supported(api):
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    status, body, _ = call(api, "GET", "/fhir/metadata", headers={"Authorization": ""})
    assert status == 200
    CapabilityStatement.model_validate(body)  # a valid R4 CapabilityStatement
    rest = body["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    assert {p["name"] for p in observation["searchParam"]} == {
        "patient",
        "subject",
        "identifier",
        "date",
        "_lastUpdated",
        "_id",
        "status",
        "code",
        "category",
    }
    assert "_sort on date, _lastUpdated" in observation["documentation"]
    assert observation["conditionalCreate"] and observation["conditionalUpdate"]
    assert observation["conditionalDelete"] == "not-supported"
    flag = next(r for r in rest["resource"] if r["type"] == "Flag")  # produced by immunorad only
    assert {i["code"] for i in flag["interaction"]} == {"read", "search-type"} and not flag["conditionalCreate"]
