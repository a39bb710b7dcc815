"""A patient's SRs arriving one after another are evaluated once (IMMUNORAD_EVALUATE_COALESCE_SECONDS).

The quiet period is set long here, so that no evaluation can start between two SRs however slow the machine;
the test then moves the queued job's start to now, as the passing of the quiet period would.
"""

from __future__ import annotations

import datetime as dt

import pytest
from pynetdicom import AE
from sqlalchemy import func, select, update

from dicom_listener.scp import ListenerConfig, start_listener
from service.assessment.worker import Worker
from service.demo.sr_writer import LesionSpec, build_ct_image, build_measurement_report
from service.ingest.dicom_ingest import DicomIngest
from service.persistence.models import Assessment, Job, utcnow

ROOT = "1.2.826.0.1.3680043.10.511.18"
SCANS = ((dt.date(2024, 1, 8), 40.0), (dt.date(2024, 3, 4), 34.0), (dt.date(2024, 4, 29), 30.0))


def reports(mrn: str) -> list:
    out = []
    for s, (day, long_axis) in enumerate(SCANS, start=1):
        image = build_ct_image(
            patient_id=mrn,
            patient_name="COALESCE^TEST",
            study_instance_uid=f"{ROOT}.1.{s}",
            study_date=day,
            series_instance_uid=f"{ROOT}.2.{s}",
            sop_instance_uid=f"{ROOT}.3.{s}",
        )
        lesion = LesionSpec(tracking_uid=f"{ROOT}.5.1", label="T1", long_axis_mm=long_axis, baseline_category="target")
        out.append(
            build_measurement_report(
                evidence=[image],
                lesions=[lesion],
                sop_instance_uid=f"{ROOT}.4.{s}",
                series_instance_uid=f"{ROOT}.6.{s}",
            )
        )
    return out


def store_all(port: int, datasets: list) -> None:
    """One association, one C-STORE after another (as a backfill sends them)."""
    ae = AE(ae_title="PYNETDICOM")
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", port, ae_title="IMMUNORAD")
    assert association.is_established
    try:
        for ds in datasets:
            assert association.send_c_store(ds).Status == 0x0000
    finally:
        association.release()


@pytest.fixture
def settings(settings_factory):
    return settings_factory(evaluate_coalesce_seconds=600, evaluate_coalesce_max_seconds=3600)


@pytest.fixture
def coalescing(settings, db):
    config = ListenerConfig(ae_title=settings.ae_title, host="127.0.0.1", port=settings.dicom_port)
    server = start_listener(config, DicomIngest(db, settings))
    yield settings, db
    server.shutdown()


def evaluate_jobs(db) -> list[Job]:
    with db.read() as session:
        return list(session.scalars(select(Job).where(Job.kind == "evaluate").order_by(Job.id)))


def test_srs_of_one_patient_in_quick_succession_are_evaluated_once(coalescing):
    settings, db = coalescing
    worker = Worker(settings, db)
    for report in reports("MRN-COALESCE"):
        store_all(settings.dicom_port, [report])
        worker.drain()  # a worker as eager as can be: it looks for due work after every SR
    [job] = evaluate_jobs(db)
    assert job.status == "queued" and job.run_after > utcnow()
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Assessment)) == 0  # still quiet: nothing ran

    with db.write() as session:  # the quiet period has passed
        session.execute(update(Job).where(Job.id == job.id).values(run_after=utcnow()))
    worker.drain()
    with db.read() as session:
        assessments = session.scalars(select(Assessment)).all()
    assert [a.version for a in assessments] == [1]
    assert [(j.status, j.attempts) for j in evaluate_jobs(db)] == [("done", 1)]


def test_an_sr_arriving_while_its_patient_is_evaluated_leads_to_a_later_evaluation(coalescing):
    settings, db = coalescing
    first, *rest = reports("MRN-COALESCE-2")
    store_all(settings.dicom_port, [first])
    [job] = evaluate_jobs(db)
    with db.write() as session:  # a worker has claimed it (its transaction not yet committed, as far as we know)
        session.execute(update(Job).where(Job.id == job.id).values(status="running"))
    store_all(settings.dicom_port, rest)
    jobs = evaluate_jobs(db)
    assert [j.status for j in jobs] == ["running", "queued"]
    assert jobs[1].run_after > utcnow()
