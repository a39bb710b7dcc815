"""Every route of the HTTP app and who may call it (contract §2, §6, §9.5): a route that is not in ``EXPECTED``
fails this module, so a new route cannot ship open by mistake — add it here with its requirement.

The routes come from Flask's ``url_map``; each is then called through real HTTP on gunicorn without a
credential (and the CDS routes with the API token, which is not an EHR's JWT): ``bearer`` routes answer 401 with
an RFC 6750 challenge, ``cds-jwt`` routes 401, ``open`` routes anything but 401/403. Answers under /fhir, /api,
/ui and /cds-services carry ``Cache-Control: no-store`` and ``nosniff``; /fhir errors are OperationOutcomes.
"""

from __future__ import annotations

import re

import pytest

from tests.support.processes import ServiceProcesses

OPEN, BEARER, CDS_JWT, SIGN_IN = "open", "bearer", "cds-jwt", "sign-in"
"""``sign-in``: the steps by which a person gets a session (service.api.signin); open by design, they show no
patient data and answer anything but a page of data without valid credentials."""

EXPECTED: dict[tuple[str, str], str] = {
    # liveness, readiness and Prometheus metrics (counts only, no patient data): for the orchestrator
    ("/healthz", "GET"): OPEN,
    ("/readyz", "GET"): OPEN,
    ("/metrics", "GET"): OPEN,
    ("/static/<path:filename>", "GET"): OPEN,
    # FHIR: the CapabilityStatement is public (FHIR R4 §3.1.0.1.1); everything else needs the bearer credential
    ("/fhir/metadata", "GET"): OPEN,
    ("/fhir", "POST"): BEARER,
    ("/fhir/", "POST"): BEARER,
    ("/fhir/<kind>", "GET"): BEARER,
    ("/fhir/<kind>", "POST"): BEARER,
    ("/fhir/<kind>", "PUT"): BEARER,
    ("/fhir/<kind>", "PATCH"): BEARER,
    ("/fhir/<kind>", "DELETE"): BEARER,
    ("/fhir/<kind>/<fhir_id>", "GET"): BEARER,
    ("/fhir/<kind>/<fhir_id>", "PUT"): BEARER,
    ("/fhir/<kind>/<fhir_id>", "PATCH"): BEARER,
    ("/fhir/<kind>/<fhir_id>", "DELETE"): BEARER,
    ("/fhir/AuditEvent", "GET"): BEARER,
    ("/fhir/AuditEvent/<fhir_id>", "GET"): BEARER,
    ("/fhir/AuditEvent/_search", "POST"): BEARER,
    ("/fhir/Provenance", "GET"): BEARER,
    ("/fhir/Provenance/<fhir_id>", "GET"): BEARER,
    ("/fhir/Provenance/_search", "POST"): BEARER,
    # JSON API
    ("/api/alerts", "GET"): BEARER,
    ("/api/alerts/<path:identifier>/entered-in-error", "POST"): BEARER,
    ("/api/alerts/<path:identifier>/acknowledge", "POST"): BEARER,
    ("/api/audit", "GET"): BEARER,
    ("/api/audit/export.csv", "GET"): BEARER,
    ("/api/deliveries", "GET"): BEARER,
    ("/api/patients", "GET"): BEARER,
    ("/api/patients/<patient_id>", "GET"): BEARER,
    ("/api/patients/<patient_id>/assessments", "GET"): BEARER,
    ("/api/patients/<patient_id>/pending", "GET"): BEARER,
    ("/api/patients/<patient_id>/segments", "GET"): BEARER,
    ("/api/pending", "GET"): BEARER,
    ("/api/quality", "GET"): BEARER,
    ("/api/quality/export.csv", "GET"): BEARER,
    ("/api/quality/alert-follow-up", "GET"): BEARER,
    ("/api/quality/concordance", "GET"): BEARER,
    ("/api/quality/concordance.csv", "GET"): BEARER,
    ("/api/quality/endpoints", "GET"): BEARER,
    ("/api/export/sdtm/<domain>.csv", "GET"): BEARER,
    ("/api/reports/<report_id>/prefill", "GET"): BEARER,
    ("/api/reports/<report_id>/sign-off", "POST"): BEARER,
    ("/api/patients/<patient_id>/sign-offs", "GET"): BEARER,
    # pages
    ("/ui/", "GET"): BEARER,
    ("/ui/patients", "GET"): BEARER,
    ("/ui/patients/<patient_id>", "GET"): BEARER,
    ("/ui/quality", "GET"): BEARER,
    ("/ui/sdtm", "GET"): BEARER,
    ("/ui/quality/export.csv", "GET"): BEARER,
    ("/ui/reports/<report_id>", "GET"): BEARER,
    # the pages' own assets and the sign-in flow (form, SMART EHR launch and its callback, sign-out)
    ("/ui/static/<path:filename>", "GET"): OPEN,
    ("/ui/sign-in", "GET"): SIGN_IN,
    ("/ui/sign-in", "POST"): SIGN_IN,
    ("/ui/sign-out", "POST"): SIGN_IN,
    ("/ui/launch", "GET"): SIGN_IN,
    ("/ui/callback", "GET"): SIGN_IN,
    # CDS Hooks 2.0: discovery is open (no patient data), the service and its feedback need the EHR's JWT
    ("/cds-services", "GET"): OPEN,
    ("/cds-services/", "GET"): OPEN,
    ("/cds-services/immunorad-alerts", "POST"): CDS_JWT,
    ("/cds-services/immunorad-alerts/feedback", "POST"): CDS_JWT,
}
PRIVATE = ("/fhir", "/api", "/ui", "/cds-services")


def app_routes(settings) -> dict[tuple[str, str], str]:
    from service.api import create_app

    app = create_app(settings)
    return {
        (rule.rule, method): rule.endpoint
        for rule in app.url_map.iter_rules()
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    }


def test_every_route_has_an_expected_authentication_requirement(settings):
    routes = app_routes(settings)
    assert sorted(set(routes) - set(EXPECTED)) == [], "new routes: add them to EXPECTED with their requirement"
    assert sorted(set(EXPECTED) - set(routes)) == [], "routes gone: remove them from EXPECTED"


def sample_path(rule: str) -> str:
    """A concrete URL for a rule (``<...>`` variables filled in)."""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: {"kind": "Patient", "filename": "x.css"}.get(m[1], "x"), rule)


@pytest.fixture
def api(db_url, tmp_path):
    processes = ServiceProcesses(db_url=db_url, var_dir=tmp_path / "var", roles=("api",))
    processes.start()
    yield processes
    processes.stop()


def test_each_route_enforces_its_requirement_through_gunicorn(settings, api):
    for (rule, method), requirement in sorted(EXPECTED.items()):
        path = sample_path(rule)
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        status, reply, headers = api.request(method, path, body, token=None)
        where = f"{method} {path} ({requirement})"
        if requirement == OPEN:
            assert status not in (401, 403), where
        elif requirement == SIGN_IN:
            # Without credentials: the form, a refusal or a redirect — never a server error.
            assert status < 500, where
        else:
            assert status == 401, where
            assert headers.get("WWW-Authenticate", "").startswith("Bearer"), where
        if requirement == CDS_JWT:
            assert api.request(method, path, body)[0] == 401, f"{where} with the API token"
        if path.startswith(PRIVATE):
            assert headers.get("Cache-Control") == "no-store", where
            assert headers.get("X-Content-Type-Options") == "nosniff", where
        if path.startswith("/fhir") and status >= 400:
            assert isinstance(reply, dict) and reply.get("resourceType") == "OperationOutcome", where


def test_fhir_errors_are_operation_outcomes_and_private_answers_are_not_stored(api):
    for method, path, expected in (
        ("GET", "/fhir/Patient/x/_history/1/extra", 404),
        ("GET", "/fhir/no/such/route/here", 404),
        ("GET", "/fhir", 405),
        ("PUT", "/fhir/", 405),
        ("DELETE", "/fhir/Patient/x", 405),
        ("GET", "/fhir/Patient/unknown-id", 404),
    ):
        status, reply, headers = api.request(method, path, b"{}" if method == "POST" else None)
        assert status == expected, (method, path, status, reply)
        assert reply["resourceType"] == "OperationOutcome" and reply["issue"][0]["severity"] == "error"
        assert headers["Content-Type"].startswith("application/fhir+json")
        assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/api/patients", "/ui/patients", "/cds-services", "/fhir/Patient"):
        status, _, headers = api.request("GET", path)
        assert status == 200, path
        assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff", path
    status, _, headers = api.request("GET", "/healthz", token=None)
    assert status == 200 and "no-store" not in headers.get("Cache-Control", "")


def test_cds_discovery_answers_cross_origin_requests(api):
    # CDS Hooks clients often run in the browser (the EHR's web front end, the CDS Hooks sandbox).
    status, body, headers = api.request("GET", "/cds-services", token=None, headers={"Origin": "https://ehr.example"})
    assert status == 200 and body["services"][0]["id"] == "immunorad-alerts"
    assert headers["Access-Control-Allow-Origin"] == "*"
    status, _, headers = api.request(
        "OPTIONS",
        "/cds-services/immunorad-alerts",
        token=None,
        headers={
            "Origin": "https://ehr.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert status in (200, 204)
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "authorization" in headers["Access-Control-Allow-Headers"].lower()


def test_an_unexpected_error_on_fhir_is_an_operation_outcome(settings):
    # A 500 cannot be provoked through the real routes (that would be a bug to fix); a route that fails on purpose,
    # added to the app in-process, exercises the one error translator the real routes share.
    from service.api import create_app

    app = create_app(settings)

    @app.get("/fhir/_fail")
    def _fail():
        raise RuntimeError("boom")

    client = app.test_client()
    response = client.get("/fhir/_fail", headers={"Authorization": f"Bearer {settings.api_token}"})
    assert response.status_code == 500
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome" and "boom" not in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"


BAD_QUERIES = [
    "/api/audit?limit=abc",
    "/api/audit?limit=-1",
    "/api/audit?limit=0",
    "/api/audit?limit=5001",
    "/api/audit?limit=99999999999999999999",
    "/api/audit?limit=1&limit=2",
    "/api/audit?limt=5",
    "/api/audit/export.csv?pseudonymise=maybe",
    "/api/alerts?status=whatever",
    "/api/alerts?patient=%27%20OR%201%3D1",
    "/api/alerts?patient=" + "x" * 65,
    "/api/deliveries?status=%00",
    "/api/patients?debug=1",
    "/api/patients/x?expand=all",
    "/api/patients/x/assessments?full=please",
    "/api/patients/x/pending?all=1",
    "/api/patients/x/segments?all=1",
    "/api/pending?limit=abc",
    "/api/reports/x/prefill?format=pdf",
    "/api/quality?from=yesterday",
    "/api/quality/alert-follow-up?from=yesterday",
    "/api/quality/concordance?from=yesterday",
    "/api/quality/concordance.csv?to=never",
    "/api/quality/endpoints?therapy_class=" + "x" * 65,
    "/api/export/sdtm/rs.csv?pseudonymise=perhaps",
    "/api/quality?cancer_type=" + "x" * 101,
    "/api/quality/export.csv?pseudonymise=perhaps",
]


@pytest.mark.parametrize("path", BAD_QUERIES)
def test_bad_query_parameters_on_api_are_400_never_500(path, settings):
    # In-process (every /api route, fast); the gunicorn test below shows the same answer over HTTP.
    from service.api import create_app

    client = create_app(settings).test_client()
    response = client.get(path, headers={"Authorization": f"Bearer {settings.api_token}"})
    assert response.status_code == 400, (path, response.get_data(as_text=True)[:200])
    assert response.get_json()["status"] == 400 and response.get_json()["error"]


def test_audit_limit_is_checked_through_gunicorn(api):
    for query in ("limit=abc", "limit=-1", "limit=5001"):
        status, body, _ = api.request("GET", f"/api/audit?{query}")
        assert status == 400 and "limit" in body["error"], query
    status, body, _ = api.request("GET", "/api/audit?limit=2")
    assert status == 200 and len(body["events"]) <= 2
    status, body, _ = api.request("GET", "/api/audit?limit=5000")
    assert status == 200
