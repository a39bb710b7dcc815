"""CDS Hooks 2.0 security (interop-notes §5.1): every service call carries the EHR's signed JWT.

Accepted: ``alg`` asymmetric (ES384 here), ``kid``, ``typ: JWT``, ``iss`` allow-listed with its JWKS URL, ``jku``
(when sent) one of that issuer's URLs, ``aud`` exactly the URL called, live ``exp``, ``iat``, a fresh ``jti``.
"""

from __future__ import annotations

import uuid

import jwt
import pytest
from sqlalchemy import select

from service.persistence.models import AuditEvent
from tests.security.conftest import make_client
from tests.support.smart_ehr import new_key

SERVICE = "/cds-services/immunorad-alerts"


def hook_request() -> dict:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "unknown-patient"},
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": "unknown-patient",
                "identifier": [{"system": "urn:immunorad:mrn", "value": "nobody"}],
            }
        },
    }


@pytest.fixture
def cds_settings(settings_factory, smart_ehr):
    return settings_factory(
        cds_issuers=((smart_ehr.cds_issuer, smart_ehr.cds_jwks_url),), public_url="https://immunorad.hospital.example"
    )


def url(settings, path: str = SERVICE) -> str:
    return f"{settings.public_url}{path}"


def call(client, token: str | None, path: str = SERVICE, body: dict | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(path, json=body or hook_request(), headers=headers)


def test_a_signed_call_is_answered_and_audited(cds_settings, smart_ehr, db):
    client = make_client(cds_settings)
    response = call(client, smart_ehr.cds_jwt(url(cds_settings)))
    assert response.status_code == 200 and response.get_json() == {"cards": []}
    # Without jku the issuer's allow-listed JWKS is used; feedback has its own URL as audience.
    assert call(client, smart_ehr.cds_jwt(url(cds_settings), jku=None)).status_code == 200
    feedback = f"{SERVICE}/feedback"
    assert call(client, smart_ehr.cds_jwt(url(cds_settings, feedback)), feedback, {"feedback": []}).status_code == 200
    with db.read() as session:
        accepted = list(session.scalars(select(AuditEvent).where(AuditEvent.kind == "cds-auth")))
    assert len(accepted) == 3 and all(e.agent == f"cds:{smart_ehr.cds_issuer}" for e in accepted)


def test_discovery_is_open(cds_settings):
    assert make_client(cds_settings).get("/cds-services").status_code == 200


def test_a_replayed_jti_is_refused(cds_settings, smart_ehr):
    client = make_client(cds_settings)
    token = smart_ehr.cds_jwt(url(cds_settings))
    assert call(client, token).status_code == 200
    replay = call(client, token)
    assert replay.status_code == 401 and "replay" in replay.get_json()["error"]


def test_refusals(cds_settings, smart_ehr, db):
    client = make_client(cds_settings)
    audience = url(cds_settings)
    stranger = new_key("ec")
    bad = {
        "no token": None,
        "another endpoint's audience": smart_ehr.cds_jwt(f"{cds_settings.public_url}/cds-services/other-service"),
        "the URL as seen behind the proxy": smart_ehr.cds_jwt(f"http://localhost{SERVICE}"),
        "issuer not allowed": smart_ehr.cds_jwt(audience, issuer="https://other-ehr.example"),
        "jku not allowed": smart_ehr.cds_jwt(audience, jku="https://attacker.example/jwks.json"),
        "signed by another key": smart_ehr.cds_jwt(audience, key=stranger),
        "unknown kid": smart_ehr.cds_jwt(audience, key=stranger, kid="stranger"),
        "expired": smart_ehr.cds_jwt(audience, lifetime=-300),
        "lives too long": smart_ehr.cds_jwt(audience, lifetime=48 * 3600),
        "HS384": jwt.encode(
            {"iss": smart_ehr.cds_issuer, "aud": audience, "exp": 2**31, "iat": 1, "jti": "x"},
            "a-shared-secret-long-enough-for-hs384-0123456789abcdef",
            algorithm="HS384",
            headers={"kid": smart_ehr.cds_kid, "typ": "JWT"},
        ),
        "no jti": smart_ehr.cds_jwt(audience, jti=""),
        "no typ": jwt.encode(
            {"iss": smart_ehr.cds_issuer, "aud": audience, "exp": 2**31, "iat": 1, "jti": "y"},
            smart_ehr.cds_key,
            algorithm="ES384",
            headers={"kid": smart_ehr.cds_kid, "typ": None},
        ),
    }
    for name, token in bad.items():
        response = call(client, token)
        assert response.status_code == 401, name
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    with db.read() as session:
        failures = list(session.scalars(select(AuditEvent).where(AuditEvent.kind == "auth-failure")))
        accepted = session.scalars(select(AuditEvent).where(AuditEvent.kind.in_(("cds-auth", "cds-hooks")))).first()
    assert len(failures) == len(bad) and accepted is None


def test_by_default_without_a_registered_issuer_every_call_is_refused(settings, smart_ehr, db):
    # Default IMMUNORAD_CDS_AUTH=jwt with no IMMUNORAD_CDS_ISSUERS (contract §9.5): the service and feedback calls
    # are 401 whatever they carry, discovery stays open, and the API says so at start.
    from service.security.auth import startup_warnings

    assert settings.cds_auth == "jwt" and not settings.cds_issuers
    client = make_client(settings)
    feedback = f"{SERVICE}/feedback"
    assert call(client, None).status_code == 401
    assert call(client, smart_ehr.cds_jwt(f"http://localhost{SERVICE}")).status_code == 401
    assert call(client, None, feedback, {"feedback": []}).status_code == 401
    assert client.get("/cds-services").status_code == 200
    assert any("IMMUNORAD_CDS_ISSUERS" in line for line in startup_warnings(settings))
    with db.read() as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.kind == "cds-feedback")).first() is None
        assert len(list(session.scalars(select(AuditEvent).where(AuditEvent.kind == "auth-failure")))) == 3


def test_none_is_for_a_loopback_demo_only(settings_factory):
    from service.security.auth import AuthConfigError, check_settings

    for host in ("127.0.0.1", "localhost", "::1"):
        settings = settings_factory(cds_auth="none", http_host=host)
        check_settings(settings)
    assert call(make_client(settings_factory(cds_auth="none")), None).status_code == 200
    for host in ("0.0.0.0", "10.1.2.3", "::", "immunorad.hospital.example"):
        with pytest.raises(AuthConfigError, match="loopback"):
            check_settings(settings_factory(cds_auth="none", http_host=host))
    with pytest.raises(AuthConfigError):
        check_settings(settings_factory(cds_auth="auto"))


def test_a_replay_is_refused_across_api_processes(cds_settings, smart_ehr):
    # Two apps with their own database connections stand for two gunicorn workers: the jti lives in the database.
    token = smart_ehr.cds_jwt(url(cds_settings))
    assert call(make_client(cds_settings), token).status_code == 200
    assert call(make_client(cds_settings), token).status_code == 401


def test_the_configured_base_is_the_audience_whatever_the_host_header(settings_factory, smart_ehr):
    # No IMMUNORAD_PUBLIC_URL: the audience is http://{IMMUNORAD_HTTP_HOST}:{IMMUNORAD_HTTP_PORT}/…, from the
    # configuration; the Host header the caller sends (here the test client's "localhost", or a forged one naming
    # another service the EHR issues tokens for) never becomes the audience.
    settings = settings_factory(cds_issuers=((smart_ehr.cds_issuer, smart_ehr.cds_jwks_url),))
    client = make_client(settings)
    configured = f"http://127.0.0.1:{settings.http_port}{SERVICE}"
    assert call(client, smart_ehr.cds_jwt(configured)).status_code == 200
    assert call(client, smart_ehr.cds_jwt(f"http://localhost{SERVICE}")).status_code == 401
    other = smart_ehr.cds_jwt(f"https://other-service.example{SERVICE}")
    forged = client.post(
        SERVICE, json=hook_request(), headers={"Authorization": f"Bearer {other}", "Host": "other-service.example"}
    )
    assert forged.status_code == 401


def test_the_api_refuses_to_start_with_none_off_loopback_and_warns_without_issuers(tmp_path, db_url):
    import os
    import subprocess
    import sys

    from tests.support.processes import REPO, ServiceProcesses

    env = dict(
        os.environ,
        IMMUNORAD_DATABASE_URL=db_url,
        IMMUNORAD_VAR_DIR=str(tmp_path / "var"),
        IMMUNORAD_CDS_AUTH="none",
        IMMUNORAD_HTTP_HOST="0.0.0.0",
    )
    for role in ("api", "serve"):
        refused = subprocess.run(
            [sys.executable, "-m", "service.cli", role], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "loopback" in lines[0] and lines[0].startswith("immunorad: refusing to start")
    # The default (jwt, no issuer): the API starts and says at once that CDS Hooks calls will be refused.
    processes = ServiceProcesses(db_url=db_url, var_dir=tmp_path / "var2", roles=("api",))
    processes.start()
    try:
        assert "no EHR is registered in IMMUNORAD_CDS_ISSUERS" in processes.log_path("api").read_text()
    finally:
        processes.stop()
