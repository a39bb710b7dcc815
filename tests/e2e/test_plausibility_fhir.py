"""The plausibility gate through the FHIR endpoint of the running service (gunicorn, real HTTP; contract §9.2).

Every implausible value is refused with 422 and an OperationOutcome naming its element; the whole transaction is
refused (nothing stored, nothing evaluated). The boundaries are exact: 0 mm and 500 mm are accepted, 500.1 mm is
not; a scan on 1990-01-01 or tomorrow is accepted, on 1989-12-31 or the day after tomorrow it is not.
"""

from __future__ import annotations

import copy
import datetime as dt
import json

from sqlalchemy import func, select

from service.persistence.models import FhirResource, Measurement
from tests.e2e.test_walking_skeleton import wait_idle
from tests.service.test_fhir_api import SYSTEM, patient, tumour_observation

TODAY = dt.datetime.now(dt.UTC).date()
"""The service's "today" is the UTC date (service/ops/config.py ``today``)."""
BASELINE = "2024-01-08"
FOLLOWUP = "2024-03-11"


def transaction(*resources: dict) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources],
    }


def with_component(observation: dict, code: str, value, unit: str, system: str, derivation: str | None = None) -> dict:
    obs = copy.deepcopy(observation)
    component = {
        "code": {"coding": [{"system": system, "code": code}]},
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }
    if derivation:
        component["code"]["coding"].append({"system": "http://snomed.info/sct", "code": derivation})
    obs["component"].append(component)
    return obs


DCM = "http://dicom.nema.org/resources/ontology/DCM"
LENGTH = "Observation.component[0].valueQuantity.value"
REFUSED = [
    # (what, mutate the follow-up Observation, expected expression)
    ("negative length", lambda o: _value(o, -12), LENGTH),
    ("huge length", lambda o: _value(o, 1e9), LENGTH),
    ("500.1 mm", lambda o: _value(o, 500.1), LENGTH),
    ("50.01 cm", lambda o: _value(o, 50.01, "cm"), LENGTH),
    ("negative SUV", lambda o: with_component(o, "126401", -1, "g/mL", DCM, "56851009"), "Observation.component[1]"),
    ("SUV over 100", lambda o: with_component(o, "126401", 100.5, "g/mL", DCM, "56851009"), "Observation.component[1]"),
    ("negative volume", lambda o: with_component(o, "126032", -3, "mL", DCM), "Observation.component[1]"),
    ("scan 1989-12-31", lambda o: _date(o, "1989-12-31"), "Observation.effectiveDateTime"),
    ("scan 1800", lambda o: _date(o, "1800-06-01"), "Observation.effectiveDateTime"),
    (
        "scan after tomorrow",
        lambda o: _date(o, (TODAY + dt.timedelta(days=2)).isoformat()),
        "Observation.effectiveDateTime",
    ),
    ("scan 2200", lambda o: _date(o, "2200-01-01"), "Observation.effectiveDateTime"),
]


def _value(obs: dict, value, unit: str = "mm") -> dict:
    obs = copy.deepcopy(obs)
    obs["component"][0]["valueQuantity"].update({"value": value, "unit": unit, "code": unit})
    return obs


def _date(obs: dict, day: str) -> dict:
    obs = copy.deepcopy(obs)
    obs["effectiveDateTime"] = day
    return obs


def stored(db) -> tuple[int, int]:
    with db.read() as session:
        return (
            session.scalar(select(func.count()).select_from(Measurement)),
            session.scalar(select(func.count()).select_from(FhirResource).where(FhirResource.origin == "inbound")),
        )


def expressions(body: dict) -> list[str]:
    return [e for issue in body.get("issue", []) for e in issue.get("expression", [])]


def test_each_implausible_value_is_refused_by_name_and_nothing_is_stored(service, db):
    for what, mutate, where in REFUSED:
        mrn = f"PLAUS-{what}"
        before = stored(db)
        bundle = transaction(
            patient(mrn),
            tumour_observation(mrn, "T1", BASELINE, 30.0),
            mutate(tumour_observation(mrn, "T1", FOLLOWUP, 20.0)),
        )
        status, body, _ = service.request("POST", "/fhir", bundle)
        assert status == 422, (what, status, body)
        assert body["resourceType"] == "OperationOutcome"
        assert any(e.startswith(where) for e in expressions(body)), (what, body)
        assert "implausible" in json.dumps(body)
        assert stored(db) == before, what  # the whole transaction refused, the valid entries too

    # JSON NaN / Infinity (Python clients write them) and text are refused as well, by element.
    for raw in (b"NaN", b"Infinity", b'"abc"'):
        body = json.dumps(transaction(tumour_observation("PLAUS-NAN", "T1", FOLLOWUP, 12345.0))).encode()
        status, reply, _ = service.request("POST", "/fhir", body.replace(b"12345.0", raw))
        assert status in (400, 422) and reply["resourceType"] == "OperationOutcome", (raw, status, reply)
        assert any("component[0]" in e for e in expressions(reply)), (raw, reply)
    assert stored(db) == (0, 0)


def test_birth_dates_after_today_or_after_a_scan_are_refused(service, db):
    born_tomorrow = dict(patient("PLAUS-B1"), birthDate=(TODAY + dt.timedelta(days=1)).isoformat())
    status, body, _ = service.request("POST", "/fhir", transaction(born_tomorrow))
    assert status == 422 and "Patient.birthDate" in expressions(body)

    # Born after the scan in the same transaction: refused whichever entry comes first.
    late = dict(patient("PLAUS-B2"), birthDate="2024-03-12")
    for entries in (
        (late, tumour_observation("PLAUS-B2", "T1", FOLLOWUP, 20.0)),
        (tumour_observation("PLAUS-B2", "T1", FOLLOWUP, 20.0), late),
    ):
        status, body, _ = service.request("POST", "/fhir", transaction(*entries))
        assert status == 422, body
    assert stored(db) == (0, 0)

    # Born on the scan day: plausible.
    status, body, _ = service.request(
        "POST",
        "/fhir",
        transaction(
            dict(patient("PLAUS-B3"), birthDate=FOLLOWUP), tumour_observation("PLAUS-B3", "T1", FOLLOWUP, 20.0)
        ),
    )
    assert status == 200, body


def test_boundaries_are_accepted_and_a_refused_follow_up_never_reports(service, ehr, db):
    accepted = [
        ("zero", lambda o: _value(o, 0)),
        ("500 mm", lambda o: _value(o, 500)),
        ("50 cm", lambda o: _value(o, 50, "cm")),
        ("scan 1990-01-01", lambda o: _date(o, "1990-01-01")),
        ("scan tomorrow", lambda o: _date(o, (TODAY + dt.timedelta(days=1)).isoformat())),
        ("SUV 100", lambda o: with_component(o, "126401", 100, "g/mL", DCM, "56851009")),
        ("SUV 0", lambda o: with_component(o, "126401", 0, "g/mL", DCM, "56851009")),
    ]
    for what, mutate in accepted:
        mrn = f"PLAUS-OK-{what}"
        status, body, _ = service.request(
            "POST", "/fhir", transaction(patient(mrn), mutate(tumour_observation(mrn, "T1", FOLLOWUP, 20.0)))
        )
        assert status == 200, (what, body)

    # The issue's reports: baseline 30 mm then −12 mm ("PR (−140 %)"), baseline 31.5 mm then 1e9 mm
    # ("PD (+3 174 603 074 %)"). Both follow-ups are refused; only the baselines are stored and no report
    # about a follow-up is ever issued.
    for mrn, base, bad in (("PLAUS-NEG", 30.0, -12), ("PLAUS-HUGE", 31.5, 1e9)):
        status, _, _ = service.request(
            "POST", "/fhir", transaction(patient(mrn), tumour_observation(mrn, "T1", BASELINE, base))
        )
        assert status == 200
        status, _, _ = service.request(
            "POST", "/fhir", transaction(_value(tumour_observation(mrn, "T1", FOLLOWUP, 1.0), bad))
        )
        assert status == 422
    wait_idle(service)
    status, reports, _ = service.request("GET", f"/fhir/DiagnosticReport?subject:identifier={SYSTEM}|PLAUS-NEG")
    assert status == 200
    text = json.dumps(reports) + json.dumps(ehr.reports())
    assert "-140" not in text and "−140" not in text and "3174603074" not in text and "3 174 603 074" not in text
    assert all(e["resource"].get("effectiveDateTime", "")[:10] != FOLLOWUP for e in reports.get("entry", []))
