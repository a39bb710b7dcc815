"""SMART Backend Services towards the EHR, and the EHR context pull, against a real HTTP test EHR.

The test EHR (tests/support/smart_ehr.py) accepts only ``client_credentials`` with a ``private_key_jwt``
assertion signed by the key registered for our client id, issues short-lived bearer tokens, and refuses every
FHIR request without a live token (401) or with too few scopes (403).
"""

from __future__ import annotations

import time

import jwt
import pytest
from sqlalchemy import select

from service.assessment.worker import Worker
from service.demo.cohort import case_measurements_bundle, demo_cohort
from service.persistence.models import Assessment, AuditEvent, ClinicalFact, OutboxMessage
from service.persistence.store import evaluate_soon, patient_by_mrn
from service.publish.ehr_client import EhrClient
from service.publish.errors import DeliveryError
from service.publish.smart import ASSERTION_LIFETIME_SECONDS, SmartAuthError, SmartBackendAuth, public_jwk
from tests.security.conftest import CLIENT_ID, KID, make_client
from tests.support.smart_ehr import SmartEhr, new_key, write_pem

SYSTEM = "urn:immunorad:mrn"
MRN = "MRN-PULL-1"


# -- the client ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, algorithm", [("ec", "ES384"), ("rsa", "RS384")])
def test_token_by_discovery_with_a_signed_assertion(kind, algorithm, tmp_path, settings_factory):
    key = new_key(kind)
    ehr = SmartEhr(client_id=CLIENT_ID)
    ehr.register_client_key(key, KID)
    ehr.start()
    try:
        settings = settings_factory(
            ehr_fhir_url=ehr.base_url,
            ehr_client_id=CLIENT_ID,
            ehr_key_id=KID,
            ehr_private_key=str(write_pem(key, tmp_path / "k.pem")),
        )
        auth = SmartBackendAuth(settings)
        token = auth.token()
        assert token and auth.token() == token, "the token is cached"
        assert len(ehr.token_requests) == 1 and not ehr.token_failures
        form = ehr.token_requests[0]
        assert form["grant_type"] == "client_credentials" and set(form["scope"].split()) >= {
            "system/DiagnosticReport.write"
        }
        header = jwt.get_unverified_header(form["client_assertion"])
        assert header == {"alg": algorithm, "kid": KID, "typ": "JWT"}
        claims = jwt.decode(form["client_assertion"], key.public_key(), algorithms=[algorithm], audience=ehr.token_url)
        assert claims["iss"] == claims["sub"] == CLIENT_ID
        assert 0 < claims["exp"] - time.time() <= 300 and claims["exp"] - claims["iat"] == ASSERTION_LIFETIME_SECONDS
        assert claims["jti"]
    finally:
        ehr.stop()


def test_default_kid_is_the_rfc7638_thumbprint(client_key):
    # RFC 7638 §3.1's worked example is for RSA; here: the thumbprint is stable and independent of kid/alg/use.
    first, second = public_jwk(client_key), public_jwk(client_key, kid=None)
    assert first["kid"] == second["kid"] and len(first["kid"]) == 43 and first["crv"] == "P-384"


def test_token_refreshed_when_it_expires_and_after_a_401(smart_ehr, smart_settings):
    smart_ehr.token_lifetime = 2
    client = EhrClient(smart_settings())
    client.search("Patient", {"identifier": f"{SYSTEM}|nobody"})
    first = client._smart.token()
    time.sleep(1.2)  # renewed min(30 s, half the lifetime) before expiry
    second = client._smart.token()
    assert second != first and len(smart_ehr.token_requests) == 2
    smart_ehr.token_lifetime = 300
    client._smart.invalidate()
    third = client._smart.token()
    smart_ehr.revoke_tokens()  # the EHR forgets every token: the next call gets 401, then a new token works
    with pytest.raises(DeliveryError) as refused:
        client.post_bundle({"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert refused.value.status == 401
    assert client.post_bundle({"resourceType": "Bundle", "type": "transaction", "entry": []}) == 200
    assert client._smart.token() != third and len(smart_ehr.token_requests) == 4
    assert [s for s, _, _ in smart_ehr.refused] == [401]


def test_unregistered_key_gets_no_token(smart_ehr, smart_settings, tmp_path):
    other = write_pem(new_key("ec"), tmp_path / "other.pem")
    auth = SmartBackendAuth(smart_settings(ehr_private_key=str(other), ehr_key_id="not-registered"))
    with pytest.raises(SmartAuthError) as refused:
        auth.token()
    assert refused.value.status == 401 and smart_ehr.token_failures == ["unknown kid"]
    # Same kid, wrong key: the signature does not verify.
    auth = SmartBackendAuth(smart_settings(ehr_private_key=str(other)))
    with pytest.raises(SmartAuthError):
        auth.token()
    assert smart_ehr.token_failures[-1].startswith("assertion rejected")


def test_static_token_still_works_without_smart(settings_factory, ehr):
    ehr.token = "static-ehr-token"
    client = EhrClient(settings_factory(ehr_fhir_url=ehr.base_url, ehr_token="static-ehr-token"))
    assert client.post_bundle({"resourceType": "Bundle", "type": "transaction", "entry": []}) == 200
    assert ehr.requests[-1][2] == "Bearer static-ehr-token"


# -- the context pull ----------------------------------------------------------------------------------------
def ehr_patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": "ehr-p1",
        "meta": {"versionId": "3"},
        "identifier": [{"system": SYSTEM, "value": MRN}],
        "gender": "female",
        "birthDate": "1958-04-02",
    }


def administration(rid: str, day: str, drug: str = "pembrolizumab") -> dict:
    return {
        "resourceType": "MedicationAdministration",
        "id": rid,
        "status": "completed",
        "medicationCodeableConcept": {"text": drug},
        "subject": {"reference": "Patient/ehr-p1"},
        "effectiveDateTime": day,
    }


def therapy_facts() -> list[dict]:
    return [
        ehr_patient(),
        administration("ma-1", "2024-01-15"),
        administration("ma-2", "2024-02-05"),
        administration("ma-3", "2024-02-26"),
        # Not an immunotherapy and not coded: kept as an unclassified therapy (contract §9.3), never the start.
        administration("ma-4", "2024-01-16", drug="ondansetron"),
        administration("ma-other", "2023-01-01") | {"subject": {"reference": "Patient/someone-else"}},
        {
            "resourceType": "Procedure",
            "id": "rt-1",
            "status": "completed",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "108290001"}]},
            "subject": {"reference": "Patient/ehr-p1"},
            "performedDateTime": "2023-12-01",
        },
        {
            "resourceType": "Observation",
            "id": "ldh-1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2532-0"}]},
            "subject": {"reference": "Patient/ehr-p1"},
            "effectiveDateTime": "2024-01-10",
            "valueQuantity": {"value": 310, "unit": "U/L"},
            "referenceRange": [{"high": {"value": 250, "unit": "U/L"}}],
        },
    ]


def post_measurements(settings, mrn: str = MRN) -> None:
    _, _, case = demo_cohort()[0]
    client = make_client(settings)
    response = client.post(
        "/fhir",
        json=case_measurements_bundle(case, mrn, SYSTEM),
        headers={"Authorization": f"Bearer {settings.api_token}"},
    )
    assert response.status_code == 200, response.get_json()


def pulled(db, patient_id: str) -> dict[str, dict]:
    with db.read() as session:
        return {
            f.source_ref: {"kind": f.kind, "payload": f.payload}
            for f in session.scalars(
                select(ClinicalFact).where(ClinicalFact.patient_id == patient_id, ClinicalFact.origin == "ehr-pull")
            )
        }


def test_missing_therapy_is_pulled_from_the_ehr_then_reports_are_delivered_authenticated(smart_ehr, smart_settings):
    from service.persistence.db import Database

    settings = smart_settings()
    smart_ehr.add(*therapy_facts())
    db = Database(settings.database_url)
    try:
        post_measurements(settings)
        Worker(settings, db).drain()
        with db.read() as session:
            patient = patient_by_mrn(session, MRN)
            latest = session.scalars(
                select(Assessment).where(Assessment.patient_id == patient.id).order_by(Assessment.version.desc())
            ).first()
            assert (patient.sex, str(patient.birth_date)) == ("female", "1958-04-02")
            events = list(session.scalars(select(AuditEvent).where(AuditEvent.kind == "ehr-pull")))
            outbox = list(session.scalars(select(OutboxMessage)))
        facts = pulled(db, patient.id)
        assert sorted(facts) == [
            "ehr:MedicationAdministration/ma-1",
            "ehr:MedicationAdministration/ma-2",
            "ehr:MedicationAdministration/ma-3",
            "ehr:MedicationAdministration/ma-4",
            "ehr:Observation/ldh-1",
            "ehr:Procedure/rt-1",
        ]
        assert facts["ehr:MedicationAdministration/ma-1"]["payload"]["ehr_source"]["server"] == smart_ehr.base_url
        assert facts["ehr:MedicationAdministration/ma-4"]["payload"]["therapy_class"] == "unclassified"
        # The first evaluation waited for the pull: the therapy start is known from the first assessment on, and it
        # is the checkpoint inhibitor's (ondansetron, a day later, is warned about, never day 0).
        assert latest.version == 1 and latest.result["treatment_start"] == "2024-01-15"
        assert any("unclassified therapy 'ondansetron'" in w for w in latest.result["warnings"])
        assert [e.outcome for e in events] == ["0"] and events[0].detail["added"] == 6
        # Paged searches (the EHR serves two per page) and nothing read without a token.
        assert len(smart_ehr.searches("MedicationAdministration")) == 2
        assert not smart_ehr.refused and all(
            auth for _, path, auth in smart_ehr.requests if path.startswith("/fhir/") and ".well-known" not in path
        )
        assert smart_ehr.reports() and all(m.status == "delivered" for m in outbox)
        assert len(smart_ehr.token_requests) == 1, "one token served the pull and the deliveries"
    finally:
        db.dispose()


def test_a_change_at_the_ehr_is_pulled_again_and_re_evaluated(smart_ehr, smart_settings):
    from service.persistence.db import Database

    settings = smart_settings(ehr_pull_interval_seconds=0)
    smart_ehr.add(*therapy_facts())
    db = Database(settings.database_url)
    try:
        post_measurements(settings)
        worker = Worker(settings, db)
        worker.drain()
        with db.read() as session:
            patient_id = patient_by_mrn(session, MRN).id
        # The therapy is stopped at the EHR and the radiotherapy record is withdrawn.
        smart_ehr.add(
            {
                "resourceType": "MedicationStatement",
                "id": "ms-stop",
                "status": "stopped",
                "medicationCodeableConcept": {"text": "pembrolizumab"},
                "subject": {"reference": "Patient/ehr-p1"},
                "effectivePeriod": {"start": "2024-01-15", "end": "2024-04-01"},
            }
        )
        smart_ehr.remove("Procedure", "rt-1")
        with db.write() as session:
            evaluate_soon(session, patient_id, "test")
        worker.drain()
        facts = pulled(db, patient_id)
        assert "ehr:Procedure/rt-1" not in facts
        assert facts["ehr:MedicationStatement/ms-stop"]["payload"]["stop_date"] == "2024-04-01"
        with db.read() as session:
            versions = list(
                session.scalars(
                    select(Assessment).where(Assessment.patient_id == patient_id).order_by(Assessment.version)
                )
            )
            changes = [
                e.detail
                for e in session.scalars(
                    select(AuditEvent).where(AuditEvent.kind == "ehr-pull").order_by(AuditEvent.id)
                )
            ]
        assert len(versions) == 2 and versions[-1].trigger == "ehr-context"
        assert (changes[-1]["added"], changes[-1]["removed"]) == (1, 1)
    finally:
        db.dispose()


def test_a_patient_with_posted_therapy_is_not_pulled_and_an_unreachable_ehr_does_not_block(smart_ehr, smart_settings):
    from service.persistence.db import Database

    settings = smart_settings()
    smart_ehr.down = True
    db = Database(settings.database_url)
    try:
        post_measurements(settings)
        Worker(settings, db).drain(timeout=20)
        with db.read() as session:
            patient = patient_by_mrn(session, MRN)
            assessments = list(session.scalars(select(Assessment).where(Assessment.patient_id == patient.id)))
            failures = list(session.scalars(select(AuditEvent).where(AuditEvent.kind == "ehr-pull")))
        assert assessments and assessments[0].trigger == "ehr-context-failed"
        assert failures and failures[0].outcome == "8" and failures[0].detail["status"] == 503
    finally:
        db.dispose()
    # A patient whose therapy was posted to us is evaluated at once, without asking the EHR.
    smart_ehr.down = False
    before = len(smart_ehr.searches("Patient"))
    settings = smart_settings()
    db = Database(settings.database_url)
    try:
        client = make_client(settings)
        _, _, case = demo_cohort()[0]
        from service.demo.cohort import case_bundle

        assert (
            client.post(
                "/fhir",
                json=case_bundle(case, "MRN-POSTED", SYSTEM),
                headers={"Authorization": f"Bearer {settings.api_token}"},
            ).status_code
            == 200
        )
        post_measurements(settings, "MRN-POSTED")
        Worker(settings, db).drain()
        assert len(smart_ehr.searches("Patient")) == before
    finally:
        db.dispose()
