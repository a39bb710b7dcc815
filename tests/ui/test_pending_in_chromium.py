"""Pending measurements end to end (contract §9.3 "SR order"): the service as real processes (gunicorn API, DICOM
listener, worker), DCMTK storescu as the PACS, /api over HTTP and the patient page in headless Chromium.

The OHIF/dcmjs report with lengths in pixels (tests/fixtures/ohif-dcmjs) arrives before its CT slices. While they
are missing its groups are listed as pending in /api and, once another image of the study has tied the report to
its patient, on the patient page; when the slices arrive the report is evaluated (RECIST 1.1 90 → 63 mm, PR) and
nothing is pending any more.
"""

from __future__ import annotations

import pydicom
import pytest

from tests.dicom_listener.test_pending import FIXTURES, IMAGES, REPORTS
from tests.e2e.test_walking_skeleton import wait_idle
from tests.support.dcmtk import storescu
from tests.ui.test_pages_in_chromium import api

pytestmark = pytest.mark.slow


def test_pending_groups_are_shown_until_their_images_arrive(service, page, tmp_path, artifacts):
    result = storescu("127.0.0.1", service.dicom_port, REPORTS)
    assert result.returncode == 0, result.stderr
    pending = api(service, "/api/pending")["pending"]
    assert len(pending) == 6 and {p["status"] for p in pending} == {"waiting"}

    # Another slice of the baseline study (not one the report measures on) ties the report to its patient.
    other = pydicom.dcmread(FIXTURES / "images" / "baseline_ct_1.dcm")
    other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = other.SOPInstanceUID + ".99"
    path = tmp_path / "other.dcm"
    other.save_as(path, enforce_file_format=True)
    assert storescu("127.0.0.1", service.dicom_port, [path]).returncode == 0
    patients = api(service, "/api/patients")["patients"]
    patient_id = next(p["id"] for p in patients if p["identifier"] == "FIXT-001")
    assert len(api(service, f"/api/patients/{patient_id}/pending")["pending"]) == 3  # the baseline report's groups

    page.goto(f"{service.base_url}/ui/patients/{patient_id}?token={service.token}")
    section = page.locator("#pending")
    assert section.is_visible()
    rows = section.locator("tbody tr")
    assert rows.count() == 3
    assert {rows.nth(i).locator("td").nth(1).inner_text() for i in range(3)} == {"waiting"}
    assert {rows.nth(i).locator("td").nth(0).inner_text() for i in range(3)} == {"T1 liver", "T2 lung", "N1 node"}
    page.screenshot(path=str(artifacts / "pending-waiting.png"), full_page=True)

    assert storescu("127.0.0.1", service.dicom_port, IMAGES).returncode == 0
    wait_idle(service)
    assert api(service, "/api/pending")["pending"] == []
    timeline = api(service, f"/api/patients/{patient_id}")
    assert timeline["pending"] == []
    recist = next(c for c in timeline["assessment"]["criteria"] if c["criterion"] == "RECIST-1.1")
    assert [(tp["scan_date"], tp["category"], tp["sum_mm"]) for tp in recist["timepoints"]] == [
        ("2024-03-11", "PR", "63.0")
    ]
    page.goto(f"{service.base_url}/ui/patients/{patient_id}")
    assert page.locator("#pending").count() == 0
