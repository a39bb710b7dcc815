"""Sign-in for people (contract §9.4 "Pages in a browser"; ``service.api.signin``) against the in-process app:
the HTML sign-in page instead of a JSON error, the signed session cookie, login CSRF, sign-out, and the SMART App
Launch (EHR launch with PKCE) against the SMART stand-in EHR, a real HTTP server. The same flows run in Chromium
through gunicorn in ``test_signin_in_chromium.py``."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from service.assessment.worker import Worker
from service.persistence.db import Database
from tests.support.smart_ehr import SmartEhr
from tests.ui.cohort import COHORT, send_case


def form_field(page: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', page).group(1)


@pytest.fixture
def browser(app_client):
    """A second client of the same app without the Authorization header: what a person's browser sends."""
    return app_client.application.test_client()


def sign_in(browser, token: str, next_path: str = "/ui/patients"):
    page = browser.get(f"/ui/sign-in?next={next_path}").data.decode()
    return browser.post("/ui/sign-in", data={"csrf": form_field(page, "csrf"), "token": token, "next": next_path})


def test_a_page_without_credential_is_the_html_sign_in_form_never_json(browser, settings):
    for path in ("/ui", "/ui/patients", "/ui/quality?from=2024-01-01", "/ui/patients/x", "/ui/reports/x"):
        response = browser.get(path)
        assert response.status_code == 401, path
        assert response.mimetype == "text/html", path
        page = response.data.decode()
        assert '<form method="post" action="/ui/sign-in"' in page and 'name="token"' in page
        assert str(settings.var_dir / "api-token") in page or "IMMUNORAD_API_TOKEN" in page  # where the token is
        assert "Patients</a>" not in page  # no navigation before sign-in
    # The address the person wanted comes back after sign-in.
    assert form_field(browser.get("/ui/quality?from=2024-01-01").data.decode(), "next") == "/ui/quality?from=2024-01-01"


def test_sign_in_opens_a_signed_session_and_sign_out_ends_it(browser, settings):
    response = sign_in(browser, settings.api_token, "/ui/quality")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/quality"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("immunorad_session="))
    assert settings.api_token not in cookie
    for attribute in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/ui", "Max-Age=28800"):
        assert attribute in cookie
    page = browser.get("/ui/patients")
    assert page.status_code == 200 and b"Sign out" in page.data
    # A tampered cookie is no session.
    value = cookie.split(";")[0].split("=", 1)[1]
    forged = browser.application.test_client()
    forged.set_cookie("immunorad_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/ui")
    assert forged.get("/ui/patients").status_code == 401
    # Sign-out needs the session's CSRF token; then the session is gone.
    csrf = form_field(page.data.decode(), "csrf")
    assert browser.post("/ui/sign-out", data={"csrf": "wrong"}).status_code == 403
    assert browser.get("/ui/patients").status_code == 200
    out = browser.post("/ui/sign-out", data={"csrf": csrf})
    assert out.status_code == 200 and b"You are signed out" in out.data
    assert browser.get("/ui/patients").status_code == 401


def test_sign_in_refuses_a_wrong_token_a_forged_form_and_an_outside_redirect(browser, settings):
    wrong = sign_in(browser, "not-the-token")
    assert wrong.status_code == 401 and b"not the API token" in wrong.data
    assert not any(c.startswith("immunorad_session=") for c in wrong.headers.getlist("Set-Cookie"))
    # Login CSRF: a form posted from elsewhere has neither our CSRF cookie's value nor our Origin.
    other = browser.application.test_client()
    forged = other.post("/ui/sign-in", data={"csrf": "guess", "token": settings.api_token, "next": "/ui/patients"})
    assert forged.status_code == 403 and not any(
        c.startswith("immunorad_session=") for c in forged.headers.getlist("Set-Cookie")
    )
    page = browser.get("/ui/sign-in").data.decode()
    cross = browser.post(
        "/ui/sign-in",
        data={"csrf": form_field(page, "csrf"), "token": settings.api_token, "next": "/ui/patients"},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    # After sign-in, only our own pages: never an absolute or scheme-relative address.
    for target in ("https://evil.example/", "//evil.example/ui", "/ui/sign-in"):
        assert sign_in(browser, settings.api_token, target).headers["Location"] == "/ui/patients"


def test_json_apis_still_answer_json_without_a_credential(browser):
    response = browser.get("/api/patients")
    assert response.status_code == 401 and response.is_json
    # A page session is not an API credential.
    assert browser.get("/fhir/Patient").status_code == 401


# -- SMART App Launch ------------------------------------------------------------------------------------------
@pytest.fixture
def smart_ehr():
    server = SmartEhr()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def launch_app(settings_factory, smart_ehr):
    from service.api import create_app

    settings = settings_factory(smart_client_id=smart_ehr.launch_client_id, smart_issuers=(smart_ehr.base_url,))
    smart_ehr.launch_redirect_uris.add(f"{settings.base_url}/ui/callback")
    app = create_app(settings)
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {settings.api_token}"
    return settings, app, api


def ehr_patient(mrn: str, ehr_id: str = "ehr-pat-17") -> dict:
    return {
        "resourceType": "Patient",
        "id": ehr_id,
        "identifier": [{"system": "urn:immunorad:mrn", "value": mrn}],
    }


def run_launch(browser, ehr: SmartEhr, launch: str, iss: str | None = None):
    """The browser's hops: our /ui/launch → the EHR's authorize endpoint → our /ui/callback."""
    answer = browser.get(f"/ui/launch?iss={iss or ehr.base_url}&launch={launch}")
    assert answer.status_code == 302, answer.data
    authorize = answer.headers["Location"]
    back = requests.get(authorize, allow_redirects=False, timeout=5)
    assert back.status_code == 302, back.text
    parts = urlsplit(back.headers["Location"])
    return authorize, browser.get(f"{parts.path}?{parts.query}"), f"{parts.path}?{parts.query}"


def test_smart_ehr_launch_with_pkce_opens_the_patient_in_context(launch_app, smart_ehr):
    settings, app, api = launch_app
    send_case(api, settings, "DEMO-0001", COHORT["DEMO-0001"])
    send_case(api, settings, "DEMO-0002", COHORT["DEMO-0002"])
    ours = {p["identifier"]: p["id"] for p in api.get("/api/patients").get_json()["patients"]}
    smart_ehr.add(ehr_patient("DEMO-0002"))
    browser = app.test_client()
    authorize, callback, callback_url = run_launch(browser, smart_ehr, smart_ehr.new_launch("ehr-pat-17"))
    # The authorization request SMART App Launch 2 asks for, with PKCE S256.
    request = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    assert authorize.startswith(smart_ehr.authorize_url)
    assert request["response_type"] == "code" and request["client_id"] == smart_ehr.launch_client_id
    assert request["redirect_uri"] == f"{settings.base_url}/ui/callback" and request["aud"] == smart_ehr.base_url
    assert request["code_challenge_method"] == "S256" and len(request["state"]) >= 22
    assert set(request["scope"].split()) >= {"launch", "openid", "fhirUser"}
    exchange = next(f for f in smart_ehr.token_requests if f.get("grant_type") == "authorization_code")
    verifier = exchange["code_verifier"]
    assert 43 <= len(verifier) <= 128
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert digest == request["code_challenge"]
    # The callback opens a session and moves on to the patient in context (ours, found by the MRN).
    assert callback.status_code == 200
    target = f"/ui/patients/{ours['DEMO-0002']}"
    assert f'content="0;url={target}"' in callback.data.decode()
    assert browser.get(target).status_code == 200
    # The launch session is for that patient only: their pages and reports, nobody else's, no cohort pages.
    assert browser.get(f"/ui/patients/{ours['DEMO-0001']}").status_code == 403
    assert browser.get("/ui/quality").status_code == 403
    Worker(settings, Database(settings.database_url)).drain()
    report_of = {mrn: api.get(f"/api/patients/{ours[mrn]}").get_json()["reports"][0]["id"] for mrn in ours}
    assert browser.get(f"/ui/reports/{report_of['DEMO-0002']}").status_code == 200
    other = browser.get(f"/ui/reports/{report_of['DEMO-0001']}")
    assert other.status_code == 403 and other.mimetype == "text/html"
    # The launch state is single use: replaying the callback is refused (and the EHR's code is spent anyway).
    again = browser.get(callback_url)
    assert again.status_code == 400 and b"expired" in again.data
    # Audited: who (the EHR user), which patient; no token anywhere.
    events = [e for e in api.get("/api/audit").get_json()["events"] if e["kind"] == "ui-smart-launch"]
    assert [(e["outcome"], e["patient"]) for e in events] == [("0", ours["DEMO-0002"])]
    assert events[0]["agent"].endswith(":Practitioner/dr-house")


def test_smart_launch_refuses_an_unknown_iss_without_contacting_it(launch_app, smart_ehr):
    _, app, _ = launch_app
    browser = app.test_client()
    other = SmartEhr()
    other.start()
    try:
        answer = browser.get(f"/ui/launch?iss={other.base_url}&launch=x")
        assert answer.status_code == 403 and answer.mimetype == "text/html"
        assert other.requests == []  # never fetched
    finally:
        other.stop()
    assert browser.get(f"/ui/launch?iss={smart_ehr.base_url}").status_code == 400  # no launch parameter


def test_smart_callback_refuses_a_wrong_state_and_a_patient_we_do_not_hold(launch_app, smart_ehr):
    _, app, _ = launch_app
    browser = app.test_client()
    answer = browser.get(f"/ui/launch?iss={smart_ehr.base_url}&launch={smart_ehr.new_launch('ehr-pat-17')}")
    back = requests.get(answer.headers["Location"], allow_redirects=False, timeout=5)
    parts = urlsplit(back.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    forged = browser.get(f"{parts.path}?code={query['code']}&state=forged")
    assert forged.status_code == 400 and b"state does not match" in forged.data
    assert not [f for f in smart_ehr.token_requests if f.get("grant_type") == "authorization_code"]
    # A callback without the launch cookie (another browser) is refused too.
    assert app.test_client().get(f"{parts.path}?{parts.query}").status_code == 400
    # The right state, but immunorad holds no assessment for that EHR patient.
    smart_ehr.add(ehr_patient("NOT-HERE"))
    _, callback, _ = run_launch(browser, smart_ehr, smart_ehr.new_launch("ehr-pat-17"))
    assert callback.status_code == 404 and b"no imaging assessment" in callback.data
    assert not any(c.startswith("immunorad_session=") for c in callback.headers.getlist("Set-Cookie"))


def test_cds_card_link_is_a_smart_launch_when_configured(launch_app, smart_ehr):
    from fhir_mappings.cds_hooks import _page_link

    settings, _, _ = launch_app
    link = _page_link("http://h/ui/patients/p1", f"{settings.base_url}/ui/launch", "p1")
    assert link == {
        "label": "Open the immunorad response assessment",
        "url": f"{settings.base_url}/ui/launch",
        "type": "smart",
        "appContext": "p1",
    }
    assert _page_link("http://h/ui/patients/p1", None, "p1")["type"] == "absolute"
