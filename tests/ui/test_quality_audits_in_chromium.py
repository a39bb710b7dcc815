"""Issue 17 in a real browser: two demo patients go in through ``POST /fhir``, the API (gunicorn) and the worker
run as real processes, a radiologist overrides one timepoint through ``POST /api/reports/{id}/sign-off`` and an
alert is acknowledged; headless Chromium then opens the quality dashboard's new panels (concordance with the
discordant timepoint linked to its patient page, cohort end points with the Kaplan–Meier SVG, alert follow-up), the
patient page (signed beside the engine's) and the SDTM data dictionary. Screenshots land in ``tests/artifacts/``.
"""

from __future__ import annotations

import pytest

from service.demo.cohort import case_bundle, case_measurements_bundle, demo_cohort
from tests.support.processes import ServiceProcesses

pytestmark = pytest.mark.slow

SYSTEM = "urn:immunorad:mrn"
PATIENTS = {mrn: case for mrn, _, case in demo_cohort()[:2]}


@pytest.fixture
def service(db_url, tmp_path, ehr):
    processes = ServiceProcesses(
        db_url=db_url,
        var_dir=tmp_path / "var",
        ehr_url=ehr.base_url,
        roles=("api", "worker"),
        extra_env={"IMMUNORAD_GUNICORN_WORKERS": "1"},
    )
    processes.start()
    yield processes
    processes.stop()


def _get(service, path: str):
    status, body, _ = service.request("GET", path)
    assert status == 200, body
    return body


def test_quality_audit_panels(service, page, artifacts, backend):
    for mrn, case in PATIENTS.items():
        for bundle in (case_bundle(case, mrn, SYSTEM), case_measurements_bundle(case, mrn, SYSTEM)):
            status, reply, _ = service.request("POST", "/fhir", bundle)
            assert status == 200, reply
    service.wait_for(
        lambda: all(len(_get(service, f"/api/patients/{mrn}")["reports"]) == 3 for mrn in PATIENTS),
        timeout=90,
        message="three reports per patient",
    )
    timeline = _get(service, "/api/patients/DEMO-0001")
    first = min(timeline["reports"], key=lambda r: r["scan_date"])
    # The engine says PR at follow-up 1 (−30 %); the reader signs SD: an override, one discordant timepoint.
    status, body, _ = service.request(
        "POST",
        f"/api/reports/{first['id']}/sign-off",
        {"criterion": "RECIST-1.1", "category": "SD", "reader": "Dr Browser", "comment": "borderline"},
    )
    assert status == 201 and body["engine_category"] == "PR"
    alerts = _get(service, "/api/alerts?status=active")["alerts"]
    if alerts:
        status, _, _ = service.request("POST", f"/api/alerts/{alerts[0]['identifier']}/acknowledge", {"by": "Dr O"})
        assert status == 201

    base = service.base_url
    page.goto(f"{base}/ui/quality?token={service.token}")
    page.wait_for_selector("#concordance")
    recist = page.locator('#concordance .concordance[data-criterion="RECIST-1.1"]')
    assert recist.locator('[data-key="compared"]').inner_text() == "1"
    assert recist.locator('[data-key="agreement"]').inner_text().startswith("0.0")
    assert page.locator('#end-points .end-points[data-criterion="RECIST-1.1"] svg.km path.km-curve').count() == 2
    assert page.locator('#end-points tr[data-source="signed"]').count() >= 1
    assert page.locator("#alert-follow-up").count() == 1
    if alerts:
        assert page.locator("#follow-up-table").count() == 1
    assert not page.console_errors
    assert all(url.startswith(base) for url in page.requests), "the page loads nothing from outside"
    page.screenshot(path=str(artifacts / f"quality-audits-{backend}.png"), full_page=True)

    # The discordant timepoint links to the patient page, which shows the signed category beside the engine's.
    recist.locator("ul.discordant a").first.click()
    page.wait_for_selector("#report-table")
    row = page.locator('#report-table .sign-off[data-criterion="RECIST-1.1"]').first
    assert row.locator(".signed").inner_text() == "SD" and row.locator(".engine").inner_text() == "PR"
    assert "Dr Browser" in row.inner_text()
    page.locator("#reports").screenshot(path=str(artifacts / f"sign-off-patient-{backend}.png"))

    page.goto(f"{base}/ui/sdtm")
    assert page.locator('#dictionary-rs tr[data-variable="RSTESTCD"]').count() == 1
    assert page.locator('#dictionary-tr tr[data-variable="TRLNKID"]').count() == 1
    page.screenshot(path=str(artifacts / f"sdtm-dictionary-{backend}.png"), full_page=True)
