"""Inbound authentication of /fhir, /api and /ui: the static token, or JWT access tokens with SMART scopes.

401 = no credential, or one that is malformed, expired, badly signed, for another audience or issuer;
403 = a valid token whose scopes do not cover the request. Every refusal is audited; health stays open.
"""

from __future__ import annotations

import jwt
import pytest
from sqlalchemy import select

from service.persistence.models import AuditEvent
from service.security.auth import Access, required_access, scope_grants
from tests.security.conftest import make_client
from tests.support.smart_ehr import new_key

SYSTEM = "urn:immunorad:mrn"


def patient(mrn: str) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": mrn}],
        "gender": "male",
        "birthDate": "1950-01-01",
    }


def refusals(db) -> list[AuditEvent]:
    with db.read() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.kind.in_(("auth-failure", "access-denied"))).order_by(AuditEvent.id)
            )
        )


@pytest.fixture
def jwt_settings(settings_factory, smart_ehr):
    return settings_factory(
        api_auth=("token", "jwt"), api_jwks_url=smart_ehr.as_jwks_url, api_jwt_issuer=smart_ehr.as_issuer
    )


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# -- the static token ------------------------------------------------------------------------------------------
def test_static_token_missing_or_wrong_is_401_and_audited(settings, db):
    client = make_client(settings)
    for path in ("/fhir/Patient", "/api/patients", "/ui/", "/fhir/AuditEvent"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="immunorad"'
    response = client.get("/fhir/Patient", headers=bearer("wrong"))
    assert response.status_code == 401 and response.get_json()["issue"][0]["code"] == "login"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert client.get("/fhir/Patient", headers={"Authorization": "Basic dGVzdDp0ZXN0"}).status_code == 401
    events = refusals(db)
    assert len(events) == 6 and all(e.outcome == "4" and e.action == "E" for e in events)
    assert [e.detail["reason"] for e in events[:2]] == ["missing token", "missing token"]
    assert client.get("/fhir/Patient", headers=bearer(settings.api_token)).status_code == 200


def test_health_metadata_and_cds_discovery_stay_open(settings):
    client = make_client(settings)
    for path in ("/healthz", "/readyz", "/fhir/metadata", "/cds-services"):
        assert client.get(path).status_code in (200, 503), path


def test_a_jwt_is_not_accepted_when_only_the_static_token_is_configured(settings, smart_ehr):
    client = make_client(settings)
    token = smart_ehr.access_token(f"{settings.base_url}/fhir", "system/*.read")
    assert client.get("/fhir/Patient", headers=bearer(token)).status_code == 401


# -- JWT access tokens -----------------------------------------------------------------------------------------
def test_jwt_with_the_right_scopes_reads_and_writes(jwt_settings, smart_ehr, db):
    client = make_client(jwt_settings)
    audience = f"{jwt_settings.base_url}/fhir"
    writer = smart_ehr.access_token(audience, "system/Patient.write system/Patient.read")
    created = client.post("/fhir/Patient", json=patient("JWT-1"), headers=bearer(writer))
    assert created.status_code == 201
    reader = smart_ehr.access_token(audience, "system/Patient.rs")  # SMART v2 letters
    assert client.get(f"/fhir/Patient/{created.get_json()['id']}", headers=bearer(reader)).status_code == 200
    assert client.get("/fhir/Patient?identifier=JWT-1", headers=bearer(reader)).status_code == 200
    everything = smart_ehr.access_token(audience, "system/*.read")
    assert client.get("/api/patients", headers=bearer(everything)).status_code == 200
    assert (
        client.get(
            "/fhir/AuditEvent", headers=bearer(smart_ehr.access_token(audience, "user/AuditEvent.read"))
        ).status_code
        == 200
    )
    # The static token keeps working next to JWTs.
    assert client.get("/fhir/Patient", headers=bearer(jwt_settings.api_token)).status_code == 200
    with db.read() as session:
        create = session.scalars(select(AuditEvent).where(AuditEvent.kind == "fhir-create")).one()
    assert create.agent == "jwt:reporting-app"


def test_a_new_key_server_at_the_address_of_an_old_one_is_trusted_at_once(settings_factory, client_key):
    """A JWKS client is cached per URL, and PyJWT refreshes it for an unknown ``kid`` at most once per 30 s:
    a test key server on a recycled port was refused meanwhile (a flaky CI failure: 401 instead of 403).
    ``forget_jwks_clients`` drops the cached client when a key server starts at an address."""
    from tests.support.smart_ehr import SmartEhr

    first = SmartEhr()
    first.start()
    port = first.server.server_address[1]
    settings = settings_factory(
        api_auth=("token", "jwt"), api_jwks_url=first.as_jwks_url, api_jwt_issuer=first.as_issuer
    )
    audience = f"{settings.base_url}/fhir"
    assert (
        make_client(settings)
        .get("/fhir/Patient", headers=bearer(first.access_token(audience, "system/*.read")))
        .status_code
        == 200
    )
    first.stop()
    second = SmartEhr()  # new keys, new kid, same address
    second.start(port=port)
    try:
        assert second.as_jwks_url == settings.api_jwks_url
        token = second.access_token(audience, "system/*.read")
        assert make_client(settings).get("/fhir/Patient", headers=bearer(token)).status_code == 200
    finally:
        second.stop()


@pytest.mark.parametrize(
    "scope, method, path, body",
    [
        ("system/Patient.read", "POST", "/fhir/Patient", patient("JWT-2")),
        ("system/Observation.write", "GET", "/fhir/Observation", None),
        ("system/Observation.read", "GET", "/api/patients", None),
        ("patient/*.read", "GET", "/fhir/Patient", None),
        (
            "system/Observation.write",
            "POST",
            "/fhir",
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": patient("JWT-3"),
                        "request": {"method": "PUT", "url": f"Patient?identifier={SYSTEM}|JWT-3"},
                    }
                ],
            },
        ),
        ("system/Patient.read", "GET", "/fhir/AuditEvent", None),
    ],
)
def test_jwt_without_the_scope_for_the_request_is_403(jwt_settings, smart_ehr, db, scope, method, path, body):
    client = make_client(jwt_settings)
    token = smart_ehr.access_token(f"{jwt_settings.base_url}/fhir", scope)
    response = client.open(path, method=method, json=body, headers=bearer(token))
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.get_json()["resourceType" if path.startswith("/fhir") else "status"] in ("OperationOutcome", 403)
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    events = refusals(db)
    assert [e.kind for e in events] == ["access-denied"] and events[0].agent == "jwt:reporting-app"
    with db.read() as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.kind == "fhir-create")).first() is None


def test_bundle_entries_decide_the_scopes(jwt_settings, smart_ehr):
    client = make_client(jwt_settings)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient("JWT-4"), "request": {"method": "PUT", "url": f"Patient?identifier={SYSTEM}|JWT-4"}}
        ],
    }
    token = smart_ehr.access_token(f"{jwt_settings.base_url}/fhir", "system/Patient.cu system/Observation.write")
    assert client.post("/fhir", json=bundle, headers=bearer(token)).status_code == 200


def forged_tokens(settings, smart_ehr) -> dict[str, str]:
    audience = f"{settings.base_url}/fhir"
    stranger = new_key("rsa")
    return {
        "expired": smart_ehr.access_token(audience, "system/*.read", lifetime=-120),
        "other audience": smart_ehr.access_token("https://elsewhere.example/fhir", "system/*.read"),
        "other issuer": smart_ehr.access_token(audience, "system/*.read", issuer="https://evil.example"),
        "unknown key": smart_ehr.access_token(audience, "system/*.read", key=stranger, kid="stranger"),
        "wrong key, known kid": smart_ehr.access_token(audience, "system/*.read", key=stranger),
        "HS256": jwt.encode(
            {"iss": smart_ehr.as_issuer, "aud": audience, "exp": 2**31, "scope": "system/*.read"},
            "secret-secret-secret-secret-secret",
            algorithm="HS256",
            headers={"kid": smart_ehr.as_kid},
        ),
        "alg none": jwt.encode(
            {"iss": smart_ehr.as_issuer, "aud": audience, "exp": 2**31, "scope": "system/*.read"},
            None,
            algorithm="none",
            headers={"kid": smart_ehr.as_kid},
        ),
        "truncated": smart_ehr.access_token(audience, "system/*.read")[:-10],
        "no exp": smart_ehr.access_token(audience, "system/*.read", exp=None),
    }


def test_invalid_jwts_are_401_and_audited(jwt_settings, smart_ehr, db):
    client = make_client(jwt_settings)
    tokens = forged_tokens(jwt_settings, smart_ehr)
    for name, token in tokens.items():
        response = client.get("/fhir/Patient", headers=bearer(token))
        assert response.status_code == 401, name
        assert response.get_json()["resourceType"] == "OperationOutcome"
    events = refusals(db)
    assert len(events) == len(tokens) and {e.kind for e in events} == {"auth-failure"}
    assert {e.detail["reason"] for e in events} >= {
        "token expired",
        "token audience does not match",
        "token issuer not accepted",
        "unknown signing key",
        "token signature algorithm not accepted",
    }


def test_scope_grammar():
    read, create = Access("Observation", "r"), Access("Observation", "c")
    assert scope_grants("system/Observation.read", read) and not scope_grants("system/Observation.read", create)
    assert scope_grants("system/Observation.write", create) and scope_grants("system/*.*", create)
    assert scope_grants("system/Observation.cruds", create) and not scope_grants("system/Observation.rs", create)
    assert not scope_grants("system/Observation.rs?category=laboratory", read)
    assert not scope_grants("patient/Observation.read", read) and not scope_grants("openid", read)
    assert required_access("GET", "/fhir/Observation/1") == [Access("Observation", "r")]
    assert required_access("POST", "/fhir/Observation/_search") == [Access("Observation", "s")]
    assert required_access("PUT", "/fhir/Observation") == [Access("Observation", "u")]
    assert required_access("POST", "/api/alerts/x/entered-in-error") == [Access("Flag", "u")]
