"""Pending measurements (contract §9.3 "SR order") with real OHIF/dcmjs output, DCMTK and pynetdicom as senders.

The dcmjs adapter writes lengths in pixels (tests/fixtures/ohif-dcmjs, flavour A): they can only be converted to mm
with the referenced images' Pixel Spacing. PACS forwarding does not keep order, so the SR may come first: it is
acknowledged, kept, its groups *pending* (visible in /api), and evaluated as soon as the images arrive — to the
same report as when the images come first (SoD 30 + 40 + 20 = 90 → 21 + 28 + 14 = 63 mm: exactly −30 % → PR).
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from dicom_listener.headers import read_header
from dicom_listener.scp import ReceivedInstance
from service.assessment.worker import Worker
from service.ingest.dicom_ingest import DicomIngest
from service.persistence.models import Assessment, Instance, Measurement, Patient, PendingInput
from tests.dicom_listener.test_scp import count, listener, pynetdicom_store  # noqa: F401 -- pytest fixtures: imported to be used by name as test arguments
from tests.support.dcmtk import storescu

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ohif-dcmjs"
IMAGES = sorted((FIXTURES / "images").glob("*.dcm"))
REPORTS = [FIXTURES / "sr" / "baseline_dcmjs-adapter.dcm", FIXTURES / "sr" / "followup_dcmjs-adapter.dcm"]
FINGERPRINTS: dict[str, list] = {}
"""Each order's report, to compare the two orders with each other (both also match the README's ground truth)."""


def fingerprint(db) -> list:
    """Every criterion's categories and sums per timepoint, and the best responses."""
    with db.read() as session:
        patient = session.scalars(select(Patient).where(Patient.mrn == "FIXT-001")).one()
        result = (
            session.scalars(
                select(Assessment).where(Assessment.patient_id == patient.id).order_by(Assessment.version.desc())
            )
            .first()
            .result
        )
    return [
        (
            c["criterion"],
            c.get("best_response"),
            [(tp["scan_date"], tp.get("category"), tp.get("sum_mm"), tp.get("baseline_sum")) for tp in c["timepoints"]],
        )
        for c in result["criteria"]
    ]


def recist(prints: list) -> tuple:
    return next(c for c in prints if c[0] == "RECIST-1.1")


def pending(app_client, path: str = "/api/pending") -> list[dict]:
    response = app_client.get(path)
    assert response.status_code == 200, response.data
    return response.get_json()["pending"]


@pytest.mark.parametrize("order", ["images-first", "sr-first"])
def test_sr_before_its_images_gives_the_same_report_as_images_first(order, listener, settings, db, app_client):
    if order == "images-first":
        assert storescu("127.0.0.1", listener.port, [*IMAGES, *REPORTS]).returncode == 0
        assert pending(app_client) == []
    else:
        result = storescu("127.0.0.1", listener.port, REPORTS)  # DCMTK: the SRs, acknowledged
        assert result.returncode == 0, result.stderr
        assert count(db, Instance) == 2
        waiting = pending(app_client)
        # 3 lesions × 2 reports, each waiting for the CT slice its SCOORD points at.
        assert len(waiting) == 6 and {p["status"] for p in waiting} == {"waiting"}
        assert {p["label"] for p in waiting} == {"T1 liver", "T2 lung", "N1 node"}
        assert all("pixels" in p["reason"] and p["waits_for"] for p in waiting)
        assert {p["patient_id"] for p in waiting} == {None}  # the dcmjs SR names no patient: its images will
        Worker(settings, db).drain()
        with db.read() as session:
            assert session.scalars(select(Assessment)).first() is None  # nothing evaluated from pixels

        # Re-sending the SRs (pynetdicom this time) changes nothing.
        with db.read() as session:
            before = sorted((p.id, p.waits_for_uid, p.status) for p in session.scalars(select(PendingInput)))
        for path in REPORTS:
            assert pynetdicom_store(listener.port, pydicom.dcmread(path)).Status == 0x0000
        with db.read() as session:
            after = sorted((p.id, p.waits_for_uid, p.status) for p in session.scalars(select(PendingInput)))
        assert after == before and count(db, Instance) == 2 and count(db, Measurement) == 6

        result = storescu("127.0.0.1", listener.port, IMAGES)  # the images arrive
        assert result.returncode == 0, result.stderr
        assert pending(app_client) == []
        with db.read() as session:
            rows = list(session.scalars(select(Measurement)))
        assert len(rows) == 6 and all(r.rejected_reason is None and r.patient_id for r in rows)
    Worker(settings, db).drain()
    prints = fingerprint(db)
    # README ground truth: RECIST 1.1 sum 90 → 63 mm on 2024-03-11, −30 % → PR.
    assert recist(prints)[2] == [("2024-03-11", "PR", "63.0", "90.0")]
    FINGERPRINTS[order] = prints
    if len(FINGERPRINTS) == 2:
        assert FINGERPRINTS["sr-first"] == FINGERPRINTS["images-first"]


def test_a_pending_group_that_can_never_resolve_stays_visible_with_its_reason(listener, settings, db, app_client):
    baseline = REPORTS[0]
    assert pynetdicom_store(listener.port, pydicom.dcmread(baseline)).Status == 0x0000
    waiting = pending(app_client)
    assert len(waiting) == 3
    awaited = {w["uid"] for p in waiting for w in p["waits_for"]}
    # The awaited images arrive without Pixel Spacing: the pixel lengths can never be converted to mm.
    for path in IMAGES:
        image = pydicom.dcmread(path)
        if image.SOPInstanceUID in awaited:
            del image.PixelSpacing
            assert pynetdicom_store(listener.port, image).Status == 0x0000
    left = pending(app_client)
    assert len(left) == 3 and {p["status"] for p in left} == {"unresolvable"}
    assert all("Pixel Spacing" in p["reason"] for p in left)
    with db.read() as session:
        patient = session.scalars(select(Patient).where(Patient.mrn == "FIXT-001")).one()
    # Visible on the patient's /api resources and page, now that the images tie the SR to the patient.
    assert len(pending(app_client, f"/api/patients/{patient.id}/pending")) == 3
    assert len(app_client.get(f"/api/patients/{patient.id}").get_json()["pending"]) == 3
    page = app_client.get(f"/ui/patients/{patient.id}")
    assert page.status_code == 200 and b"Pending measurements" in page.data and b"unresolvable" in page.data


def _received(path: Path) -> ReceivedInstance:
    ds = pydicom.dcmread(path)
    return ReceivedInstance(
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        calling_ae="TEST",
        encoded=path.read_bytes(),
    )


def test_an_image_stored_while_its_sr_was_being_read_is_used_by_the_sr(settings, db):
    """An SR is read before its write transaction (no write lock held while parsing); when one of its images is
    stored in between, the transaction reads the SR again with it: mm, not pixels, and nothing left pending."""
    ingest = DicomIngest(db, settings)
    sr = _received(REPORTS[0])
    ds, header = read_header(sr.encoded)
    early = ingest._parse_early(ds, header)
    assert early is not None and all(g.awaited_images for g in early.parsed.groups)  # no images yet: pixels
    for path in IMAGES:  # another association stores the images meanwhile
        ingest(_received(path))
    ingest._store(sr, ds, header, early)
    with db.read() as session:
        assert session.scalars(select(PendingInput)).all() == []
        lengths = sorted(m.long_axis_mm for m in session.scalars(select(Measurement)))
    # The fixtures' README, baseline long axes: T1 30, T2 40, N1 25 mm (pixel lengths × the 5 mm Pixel Spacing).
    assert lengths == [25, 30, 40], lengths
