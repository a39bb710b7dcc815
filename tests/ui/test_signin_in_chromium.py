"""Issue 15 items 3–5 in a real browser, from a cold browser (no cookie, no token in the address): the HTML
sign-in page, signing in with the API token, the patient page, the report's "Copy pre-fill" button (read back from
the clipboard), the quality dashboard, signing out; then the SMART App Launch (EHR launch with PKCE) the way an
oncologist meets it — the EHR's CDS Hooks card carries a ``smart`` link, the EHR launches it with ``iss`` and
``launch``, its authorization server approves, and the patient's page opens with that patient in context.

Real peers throughout: gunicorn and the worker as processes (``ServiceProcesses``), the SMART stand-in EHR
(``tests/support/smart_ehr.py``) as a real HTTP server, Chromium via Playwright. Screenshots in tests/artifacts/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.processes import ServiceProcesses
from tests.support.smart_ehr import SmartEhr
from tests.ui.test_pages_in_chromium import COHORT, api, followups, send_patient

pytestmark = pytest.mark.slow


@pytest.fixture
def smart_ehr():
    server = SmartEhr()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def service(db_url, tmp_path, smart_ehr):
    processes = ServiceProcesses(
        db_url=db_url,
        var_dir=tmp_path / "var",
        roles=("api", "worker"),
        extra_env={
            "IMMUNORAD_GUNICORN_WORKERS": "1",
            "IMMUNORAD_SMART_CLIENT_ID": smart_ehr.launch_client_id,
            "IMMUNORAD_SMART_ISSUERS": smart_ehr.base_url,
            "IMMUNORAD_CDS_ISSUERS": f"{smart_ehr.cds_issuer}|{smart_ehr.cds_jwks_url}",
        },
    )
    smart_ehr.launch_redirect_uris.add(f"{processes.base_url}/ui/callback")
    processes.start()
    yield processes
    processes.stop()


@pytest.fixture
def cohort(service) -> dict[str, str]:
    """The demo cohort, evaluated; our patient id per MRN."""
    for mrn in COHORT:
        send_patient(service, mrn)

    def evaluated() -> bool:
        by_mrn = {p["identifier"]: p for p in api(service, "/api/patients")["patients"]}
        return all(by_mrn.get(mrn, {}).get("followups") == followups(COHORT[mrn]) for mrn in COHORT)

    service.wait_for(evaluated, timeout=90, message="demo cohort evaluated")
    return {p["identifier"]: p["id"] for p in api(service, "/api/patients")["patients"]}


def test_sign_in_patient_page_copy_prefill_quality_and_sign_out(service, cohort, browser, artifacts, backend):
    base = service.base_url
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    # A cold browser opening what the terminal prints: the sign-in page, as HTML, not a JSON error.
    answer = page.goto(f"{base}/ui")
    assert answer.status == 401 and answer.headers["content-type"].startswith("text/html")
    assert page.locator("input#token").is_visible() and "api-token" not in page.url
    assert "IMMUNORAD_API_TOKEN" in page.inner_text("main")  # where the token is (here: from the environment)
    page.screenshot(path=str(artifacts / f"signin-{backend}.png"), full_page=True)
    page.fill("input#token", "wrong-token")
    page.click("button[type=submit]")
    assert "not the API token" in page.inner_text("#signin-message")
    page.fill("input#token", service.token)
    page.click("button[type=submit]")
    page.wait_for_selector("#patient-list")
    assert page.url == f"{base}/ui/patients"
    session = next(c for c in context.cookies() if c["name"] == "immunorad_session")
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert service.token not in session["value"]

    # The patient page, then the latest report and its copy button.
    page.click("text=DEMO-0001")
    page.wait_for_selector("#lesion-table")
    page.screenshot(path=str(artifacts / f"signed-in-patient-{backend}.png"), full_page=True)
    page.locator("#report-table a").last.click()
    page.wait_for_selector("#prefill-plain")
    plain = page.locator("#prefill-plain").text_content()
    assert plain and len(plain) > 50
    page.click("#copy-prefill")
    # A locator assertion, not wait_for_function: polling a string predicate compiles it in the page, which the
    # page's script-src 'self' policy refuses (an EvalError whenever the first check is not already true).
    expect(page.locator("#copy-status")).to_have_text(re.compile(r"^Copied"))
    assert page.evaluate("navigator.clipboard.readText()") == plain
    page.screenshot(path=str(artifacts / f"report-copied-{backend}.png"), full_page=True)

    # The quality dashboard, then sign-out: the pages are closed again.
    page.goto(f"{base}/ui/quality")
    page.wait_for_selector("#discordance-matrix")
    page.screenshot(path=str(artifacts / f"signed-in-quality-{backend}.png"), full_page=True)
    page.click("#sign-out")
    page.wait_for_selector("input#token")
    assert not [c for c in context.cookies() if c["name"] == "immunorad_session"]
    assert page.goto(f"{base}/ui/patients").status == 401
    # No script error; the only failed loads are the sign-in page's own 401 answers (wrong token, signed out).
    assert [e for e in errors if "status of 401" not in e] == [], errors
    context.close()


def test_smart_ehr_launch_from_the_cds_card_opens_the_patient(service, cohort, browser, smart_ehr, artifacts, backend):
    base = service.base_url
    # The EHR asks the CDS service about a patient with an active alert and shows the card; its link is a SMART
    # launch of our pages.
    alerts = api(service, "/api/alerts")["alerts"]
    active = [a for a in alerts if a["status"] == "active"]
    assert active, "the demo cohort raises at least one alert that holds"
    mrn = next(mrn for mrn, ours in cohort.items() if ours == active[0]["patient"])
    ehr_id = f"ehr-{mrn.lower()}"
    smart_ehr.add(
        {"resourceType": "Patient", "id": ehr_id, "identifier": [{"system": "urn:immunorad:mrn", "value": mrn}]}
    )
    endpoint = f"{base}/cds-services/immunorad-alerts"
    hook = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/dr-house", "patientId": ehr_id},
        "prefetch": {"patient": smart_ehr.search_data["Patient"][-1]},
    }
    status, body, _ = service.request("POST", "/cds-services/immunorad-alerts", hook, token=smart_ehr.cds_jwt(endpoint))
    assert status == 200 and body["cards"], body
    link = body["cards"][0]["links"][0]
    assert link["type"] == "smart" and link["url"] == f"{base}/ui/launch" and link["appContext"] == cohort[mrn]

    # The EHR launches the link: its own iss and a launch bound to the chart's patient. A cold browser.
    launch = smart_ehr.new_launch(ehr_id, link["appContext"])
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{link['url']}?iss={smart_ehr.base_url}&launch={launch}")
    page.wait_for_url(f"{base}/ui/patients/{cohort[mrn]}")
    page.wait_for_selector("#lesion-table")
    assert page.inner_text("#patient-mrn") == mrn
    assert page.is_visible("#launched-from-ehr") and not page.is_visible("nav[aria-label=Main]")
    page.screenshot(path=str(artifacts / f"smart-launch-patient-{backend}.png"), full_page=True)
    authorize = smart_ehr.authorize_requests[-1]
    assert authorize["code_challenge_method"] == "S256" and authorize["launch"] == launch
    assert any(f.get("code_verifier") for f in smart_ehr.token_requests)
    # The launch opened this patient only.
    other = next(ours for m, ours in cohort.items() if m != mrn)
    assert page.goto(f"{base}/ui/patients/{other}").status == 403
    context.close()
