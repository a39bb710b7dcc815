"""CDS Hooks 2.0 ``patient-view`` (contract §6; interop-notes §5.1), called as an EHR calls it: its own patient id
in ``context.patientId``, the prefetched Patient carrying our MRN identifier (``urn:immunorad:mrn``), the call
signed with the EHR's ES384 JWT (``aud`` = the service URL).

Cards: one per active alert, ``indicator`` ``critical`` for hyperprogression and fast progression, ``warning`` for
irAE, sarcoid-like reaction and a due confirmation scan, ``info`` otherwise; summary < 140 characters, ``source``
with the alert code as ``topic``, Markdown ``detail``, an absolute link to the patient's page, no identifiers.
The patients' data go in through ``POST /fhir`` and the alerts are raised by the worker, as in production.
"""

from __future__ import annotations

import json

import pytest

from rules.scenario import Case, Lesion, T, c
from service.assessment.worker import Worker
from tests.e2e import kinetics_cases as kc
from tests.e2e.kinetics_cases import D
from tests.rules.cases import E1, E7


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


def finding_bundle(mrn: str, code: str, display: str, site: str, day: str, *, as_condition: bool) -> dict:
    subject = {"reference": f"Patient?identifier={kc.SYSTEM}|{mrn}"}
    concept = {"coding": [{"system": kc.SNOMED, "code": code, "display": display}]}
    body_site = {"coding": [{"system": kc.SNOMED, "code": site}]}
    if as_condition:
        resource = {
            "resourceType": "Condition",
            "code": concept,
            "bodySite": [body_site],
            "subject": subject,
            "onsetDateTime": day,
        }
    else:
        resource = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "59776-5", "display": "Procedure findings"}]},
            "subject": subject,
            "effectiveDateTime": day,
            "bodySite": body_site,
            "valueCodeableConcept": concept,
        }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [kc.put_entry(resource, "urn:test:finding", f"{mrn}-{code}")],
    }


# Kinetic acceleration below RECIST PD (spec §3.4 KINETICS_ACCELERATION): E0 50, E1 52, E2 62 mm 28 days later
# (+19.2 %: SD). TGR_ref 6.26 %/month; TGR_exp = 100·(exp(3·ln(62/52)/0.9199) − 1) = 77.5 %/month; ΔTGR 71.3 > 50.
ACCELERATION = Case(
    "acceleration",
    D("2024-03-04"),
    {"E0": D("2024-01-02"), "BL": D("2024-03-01"), "TP1": D("2024-03-29")},
    (
        Lesion("T1 liver", T, "liver", cells={"E0": c(30, 20), "BL": c(31, 21), "TP1": c(37, 25)}),
        Lesion("T2 lung", T, "lung", cells={"E0": c(20, 14), "BL": c(21, 15), "TP1": c(25, 17)}),
    ),
)


def test_discovery(app_client):
    body = app_client.get("/cds-services").get_json()
    [service] = body["services"]
    assert service["id"] == "immunorad-alerts" and service["hook"] == "patient-view"
    assert service["description"] and service["prefetch"] == {"patient": "Patient/{{context.patientId}}"}


def test_patient_view_with_prefetch_returns_the_cards_of_the_active_alerts(app_client, settings, db, cds_ehr):
    mrn = kc.submit(app_client, kc.K1)
    evaluate(settings, db)
    status, body = kc.post_hook(app_client, cds_ehr, kc.hook_request(mrn, ehr_patient_id="ehr-4711"))
    assert status == 200
    assert set(body) <= {"cards", "systemActions"}
    cards = body["cards"]
    # Hyperprogression (Kas 2020) and fast progression (OAK) are critical, the due confirmation scan a warning;
    # the most urgent come first.
    assert kc.indicators(cards) == {
        "hyperprogression": "critical",
        "fast-progression": "critical",
        "confirmation-due": "warning",
    }
    assert [c["indicator"] for c in cards] == ["critical", "critical", "warning"]
    patient_id = app_client.get(f"/api/patients/{mrn}").get_json()["patient"]["id"]
    for card in cards:
        assert set(card) >= {"uuid", "summary", "indicator", "source", "detail", "links"}
        assert 0 < len(card["summary"]) < 140
        assert card["source"]["label"] == "immunorad"
        assert card["source"]["topic"]["system"] == kc.ALERT
        assert card["detail"].startswith("**")  # Markdown
        assert card["links"] == [
            {
                "label": "Open the immunorad response assessment",
                "url": f"{kc.PUBLIC_URL}/ui/patients/{patient_id}",
                "type": "absolute",
            }
        ]
    hpd = next(c for c in cards if c["source"]["topic"]["code"] == "hyperprogression")
    assert "Kas 2020" in hpd["summary"] and "ΔTGR 193.98" in hpd["detail"]
    due = next(c for c in cards if c["source"]["topic"]["code"] == "confirmation-due")
    assert "2024-05-13" in due["summary"]  # 8 weeks after the iUPD of 2024-03-18
    # No identifiers in the cards: neither the MRN nor the EHR's ids.
    text = json.dumps(cards)
    assert mrn not in text and "999-99-9999" not in text and "ehr-4711" not in text
    # The same alert keeps its card uuid from call to call (feedback and audit join on it).
    again = kc.patient_view(app_client, cds_ehr, mrn, ehr_patient_id="ehr-4711")
    assert sorted(c["uuid"] for c in again) == sorted(c["uuid"] for c in cards)
    # Feedback on a card is accepted.
    feedback = {
        "feedback": [
            {
                "card": cards[0]["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": "disagree", "display": "Clinical disagreement"}},
                "outcomeTimestamp": "2024-03-19T09:00:00Z",
            }
        ]
    }
    response = app_client.post(
        f"{kc.CDS_SERVICE}/feedback",
        json=feedback,
        headers={"Authorization": f"Bearer {cds_ehr.token(kc.PUBLIC_URL + kc.CDS_SERVICE + '/feedback')}"},
    )
    assert response.status_code == 200


def test_card_indicator_per_alert(app_client, settings, db, cds_ehr):
    """critical: hyperprogression, fast progression; warning: irAE, sarcoid-like, confirmation due; info: the rest."""
    patients = {
        "K1": kc.submit(app_client, kc.K1),
        "K3": kc.submit(app_client, kc.K3),
        "K7": kc.submit(app_client, kc.K7),
        "K9": kc.submit(app_client, kc.K9),
        "K11": kc.submit(app_client, kc.K11),
        "E7": kc.submit(app_client, kc.KExample("E7", E7)),
        "acceleration": kc.submit(app_client, kc.KExample("acceleration", ACCELERATION)),
        "pneumonitis": kc.submit(app_client, kc.KExample("E1", E1), mrn="MRN-PNEUMONITIS"),
        "sarcoid": kc.submit(app_client, kc.KExample("E1", E1), mrn="MRN-SARCOID"),
    }
    kc.post_bundle(
        app_client,
        finding_bundle(
            patients["pneumonitis"], "205237003", "Pneumonitis", "39607008", "2024-03-11", as_condition=False
        ),
    )
    kc.post_bundle(
        app_client,
        finding_bundle(patients["sarcoid"], "31541009", "Sarcoidosis", "53074004", "2024-05-06", as_condition=True),
    )
    evaluate(settings, db)
    got = {name: kc.indicators(kc.patient_view(app_client, cds_ehr, mrn)) for name, mrn in patients.items()}
    assert got["K1"] == {"hyperprogression": "critical", "fast-progression": "critical", "confirmation-due": "warning"}
    assert got["K3"] == {"confirmation-due": "warning"}
    # Issue 15 / contract §9.4: "hyperprogression not evaluable" is stated in the report, never a card by default.
    assert got["K7"] == {"confirmation-due": "warning"}
    assert got["K9"]["dissociated-response"] == "info"
    assert got["K11"] == {"fast-progression": "critical", "early-death": "info"}
    assert got["E7"]["pseudoprogression"] == "info" and "confirmation-due" not in got["E7"]
    assert got["acceleration"]["kinetics-acceleration"] == "info"
    assert "hyperprogression" not in got["acceleration"]
    assert got["pneumonitis"]["irae"] == "warning"
    assert got["sarcoid"]["sarcoid-like-reaction"] == "warning"


def test_patient_unknown_to_immunorad_gets_no_cards(app_client, settings, db, cds_ehr):
    kc.submit(app_client, kc.K1)
    evaluate(settings, db)
    status, body = kc.post_hook(app_client, cds_ehr, kc.hook_request("MRN-NOT-HERE"))
    assert (status, body) == (200, {"cards": []})


@pytest.mark.parametrize(
    "change, status",
    [
        (lambda body: body.update(hook="order-select"), 400),
        (lambda body: body.pop("hookInstance"), 400),
        (lambda body: body["context"].pop("patientId"), 400),
    ],
)
def test_malformed_hook_calls_are_refused(change, status, app_client, cds_ehr):
    body = kc.hook_request("MRN-K1")
    change(body)
    assert kc.post_hook(app_client, cds_ehr, body)[0] == status


@pytest.mark.parametrize("path", [kc.CDS_SERVICE, kc.CDS_SERVICE + "/feedback"])
@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b"not json", b"[1, 2]", b'{"feedback": 7}'])
def test_bodies_that_are_not_a_hook_call_are_a_400_not_a_500(path, body, app_client, cds_ehr):
    headers = {"Authorization": f"Bearer {cds_ehr.token(kc.PUBLIC_URL + path)}", "Content-Type": "application/json"}
    assert app_client.post(path, data=body, headers=headers).status_code == 400


def test_an_unsigned_call_is_refused(app_client, settings, db):
    kc.submit(app_client, kc.K1)
    evaluate(settings, db)
    response = app_client.post(kc.CDS_SERVICE, json=kc.hook_request("MRN-K1"), headers={"Authorization": ""})
    assert response.status_code == 401 and "cards" not in (response.get_json() or {})


def test_a_call_without_the_prefetched_patient_is_412(app_client, settings, db, cds_ehr):
    kc.submit(app_client, kc.K1)
    evaluate(settings, db)
    status, _ = kc.post_hook(app_client, cds_ehr, kc.hook_request(None, ehr_patient_id="ehr-4711"))
    assert status == 412
