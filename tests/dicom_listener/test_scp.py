"""The C-STORE SCP over real sockets, with DCMTK and pynetdicom as peers (contract §3)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from sqlalchemy import func, select

from dicom_listener.scp import ListenerConfig, start_listener
from service.assessment.worker import Worker
from service.demo.sr_writer import LesionSpec, build_ct_image, build_measurement_report
from service.ingest.dicom_ingest import DicomIngest
from service.persistence.models import Instance, Measurement
from tests.support.dcmtk import echoscu, storescu

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ohif-dcmjs"


@pytest.fixture
def listener(settings, db):
    config = ListenerConfig(
        ae_title=settings.ae_title,
        host="127.0.0.1",
        port=settings.dicom_port,
        allowed_calling_aets=("STORESCU", "PYNETDICOM"),
    )
    server = start_listener(config, DicomIngest(db, settings))
    yield config
    server.shutdown()


def count(db, model) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(model))


def save(ds, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return path


def pynetdicom_store(port: int, ds, *, aec="IMMUNORAD", aet="PYNETDICOM"):
    ae = AE(ae_title=aet)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", port, ae_title=aec)
    assert association.is_established
    try:
        return association.send_c_store(ds)
    finally:
        association.release()


def test_echo_and_ae_title_checks(listener):
    assert echoscu("127.0.0.1", listener.port, aet="STORESCU").returncode == 0
    # Called AE title other than ours: the association is rejected (contract §2 IMMUNORAD_AE_TITLE).
    assert echoscu("127.0.0.1", listener.port, aec="SOMEONEELSE", aet="STORESCU").returncode != 0
    # Calling AE title outside IMMUNORAD_ALLOWED_CALLING_AETS: rejected.
    assert echoscu("127.0.0.1", listener.port, aet="INTRUDER").returncode != 0


def test_resent_instance_is_accepted_and_changes_nothing(listener, db, tmp_path):
    image = build_ct_image(
        patient_id="MRN-DUP",
        patient_name="DUP^TEST",
        study_instance_uid="1.2.826.0.1.3680043.10.511.7.1",
        study_date=dt.date(2024, 1, 8),
    )
    report = build_measurement_report(
        evidence=[image],
        lesions=[
            LesionSpec(
                tracking_uid="1.2.826.0.1.3680043.10.511.7.2",
                label="T1",
                long_axis_mm=30.0,
                short_axis_mm=20.0,
                baseline_category="target",
            )
        ],
    )
    files = [save(image, tmp_path, "ct.dcm"), save(report, tmp_path, "sr.dcm")]
    assert storescu("127.0.0.1", listener.port, files).returncode == 0
    before = (count(db, Instance), count(db, Measurement))
    assert before == (2, 1)
    assert storescu("127.0.0.1", listener.port, files).returncode == 0
    assert (count(db, Instance), count(db, Measurement)) == before


def test_storage_unavailable_answers_a700(settings_factory, tmp_path):
    from service.persistence.db import Database

    # A database nobody listens on: the instance cannot be committed, so the sender must retry.
    settings = settings_factory(database_url="postgresql+psycopg://postgres@127.0.0.1:9/none")
    down = Database(settings.database_url)
    config = ListenerConfig(ae_title="IMMUNORAD", host="127.0.0.1", port=settings.dicom_port)
    server = start_listener(config, DicomIngest(down, settings))
    try:
        image = build_ct_image(
            patient_id="MRN-DOWN",
            patient_name="DOWN^TEST",
            study_instance_uid="1.2.826.0.1.3680043.10.511.7.3",
            study_date=dt.date(2024, 1, 8),
        )
        status = pynetdicom_store(settings.dicom_port, image)
        assert status.Status == 0xA700
    finally:
        server.shutdown()


def test_a_store_that_waits_too_long_for_a_lock_answers_a700_in_time_and_succeeds_when_resent(
    backend, settings_factory, caplog
):
    if backend != "postgresql":
        pytest.skip("PostgreSQL lock_timeout; SQLite serialises writers with its busy timeout instead")
    import time

    from service.persistence.db import Database
    from service.persistence.models import Study

    settings = settings_factory(dicom_lock_wait_seconds=1.0)
    db = Database(settings.database_url)
    config = ListenerConfig(ae_title="IMMUNORAD", host="127.0.0.1", port=settings.dicom_port)
    server = start_listener(config, DicomIngest(db, settings))
    study_uid = "1.2.826.0.1.3680043.10.511.7.9"
    first = build_ct_image(
        patient_id="MRN-LOCK", patient_name="LOCK^TEST", study_instance_uid=study_uid, study_date=dt.date(2024, 1, 8)
    )
    second = build_ct_image(
        patient_id="MRN-LOCK", patient_name="LOCK^TEST", study_instance_uid=study_uid, study_date=dt.date(2024, 1, 8)
    )
    try:
        assert pynetdicom_store(settings.dicom_port, first).Status == 0x0000
        # Another transaction holds the study's row (as a long one might): every instance of the study updates it.
        with db.write() as blocker:
            blocker.scalars(select(Study).where(Study.study_uid == study_uid).with_for_update()).one()
            started = time.monotonic()
            status = pynetdicom_store(settings.dicom_port, second)
            waited = time.monotonic() - started
        # 0xA700 after about the configured 1 s, long before a sender's 30 s timeout; nothing was stored.
        assert status.Status == 0xA700 and 1.0 <= waited < 10, (hex(status.Status), waited)
        assert count(db, Instance) == 1
        # The lock is gone: the sender's retry is stored.
        assert pynetdicom_store(settings.dicom_port, second).Status == 0x0000
        assert count(db, Instance) == 2
    finally:
        server.shutdown()
        db.dispose()


def test_unreadable_report_gets_c000_range_with_a_comment(listener, db):
    image = build_ct_image(
        patient_id="MRN-BADSR",
        patient_name="BAD^SR",
        study_instance_uid="1.2.826.0.1.3680043.10.511.7.4",
        study_date=dt.date(2024, 1, 8),
    )
    report = build_measurement_report(
        evidence=[image],
        lesions=[LesionSpec(tracking_uid="1.2.826.0.1.3680043.10.511.7.5", label="T1", long_axis_mm=30.0)],
    )
    report.ContentSequence[0].ValueType = "NOTATYPE"  # the content tree no longer parses
    status = pynetdicom_store(listener.port, report)
    assert 0xC000 <= status.Status <= 0xCFFF
    assert "TID 1500" in str(status.get("ErrorComment", ""))
    assert count(db, Instance) == 0
    # And the listener still stores a good instance afterwards.
    assert pynetdicom_store(listener.port, image).Status == 0x0000


@pytest.mark.parametrize("flavour", ["dcmjs-adapter", "cornerstone-adapters"])
def test_ohif_reports_match_lesions_by_label_and_give_pr_at_minus_30(flavour, listener, settings, db):
    """Real OHIF output (tests/fixtures/ohif-dcmjs): images first, then the two reports.

    Flavour A (dcmjs) has no patient in the SR header and lengths labelled px: the patient comes from the
    images and the lengths are recomputed from Pixel Spacing. Lesions are matched by label (the Tracking UIDs
    change at every export). SoD 30 + 40 + 20 = 90 → 21 + 28 + 14 = 63: exactly −30 % → PR.
    """
    images = sorted((FIXTURES / "images").glob("*.dcm"))
    reports = [FIXTURES / "sr" / f"baseline_{flavour}.dcm", FIXTURES / "sr" / f"followup_{flavour}.dcm"]
    result = storescu("127.0.0.1", listener.port, [*images, *reports])
    assert result.returncode == 0, result.stderr
    Worker(settings, db).drain()
    from service.persistence.models import Assessment, Patient

    with db.read() as session:
        patient = session.scalars(select(Patient).where(Patient.mrn == "FIXT-001")).one()
        assessment = session.scalars(select(Assessment).where(Assessment.patient_id == patient.id)).one()
        recist = next(c for c in assessment.result["criteria"] if c["criterion"] == "RECIST-1.1")
        tp = recist["timepoints"][0]
        identities = {m.identity_source for m in session.scalars(select(Measurement))}
    assert tp["scan_date"] == "2024-03-11" and tp["sum_mm"] == "63.0" and tp["category"] == "PR"
    assert identities == {"finding-label" if flavour == "dcmjs-adapter" else "comment-label"}
    assert dcmread(reports[0]).PatientID in ("", "FIXT-001")
