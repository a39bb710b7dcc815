"""The work queue's coalescing must never lose a request (several replicas on PostgreSQL).

A writer that finds its patient's evaluation already queued joins that job instead of adding one. The job
must then not run before the writer's data is committed: a worker claiming it in between would evaluate
without that data, mark it done, and nothing would evaluate the patient again (seen in CI as a report
never issued). The joining writer therefore locks the queued job until it commits.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from service.assessment.worker import Worker
from service.persistence.models import Job, utcnow
from service.persistence.store import evaluate_soon, upsert_patient


def test_a_queued_job_joined_by_an_open_transaction_is_not_claimed_before_it_commits(settings, db, backend):
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers: a worker cannot claim while another transaction writes")
    worker = Worker(settings, db)
    with db.write() as session:
        patient_id = upsert_patient(session, "QUEUE-1").id
        evaluate_soon(session, patient_id, "first data")
    with db.write() as writer:
        evaluate_soon(writer, patient_id, "more data")  # joins the queued job, its data not yet committed
        with db.write() as other_worker:
            assert other_worker.scalars(worker._claim_query()).first() is None
    with db.write() as other_worker:
        claimed = other_worker.scalars(worker._claim_query()).first()
        assert claimed is not None and claimed.payload == {"trigger": "more data"}
    with db.read() as session:
        assert len(session.scalars(select(Job).where(Job.kind == "evaluate")).all()) == 1


def test_a_running_job_is_not_joined(settings, db):
    """Work that arrives while the evaluation runs gets a job of its own (the running one may miss it)."""
    with db.write() as session:
        patient_id = upsert_patient(session, "QUEUE-2").id
        evaluate_soon(session, patient_id, "first data")
    with db.write() as session:
        session.scalars(select(Job)).one().status = "running"
    with db.write() as session:
        evaluate_soon(session, patient_id, "more data")
    with db.read() as session:
        assert sorted(j.status for j in session.scalars(select(Job))) == ["queued", "running"]


def coalescing(settings_factory, quiet: float, cap: float):
    return settings_factory(evaluate_coalesce_seconds=quiet, evaluate_coalesce_max_seconds=cap)


def test_each_intake_postpones_the_queued_evaluation(settings_factory, db):
    settings = coalescing(settings_factory, 60, 600)
    with db.write() as session:
        patient_id = upsert_patient(session, "QUEUE-3").id
        evaluate_soon(session, patient_id, "first SR", settings)
    with db.write() as session:  # as if the first SR came 30 s ago
        job = session.scalars(select(Job)).one()
        job.created_at -= dt.timedelta(seconds=30)
        job.run_after -= dt.timedelta(seconds=30)
        first_start = job.run_after
    with db.write() as session:
        evaluate_soon(session, patient_id, "second SR", settings)
    with db.read() as session:
        job = session.scalars(select(Job)).one()
    assert job.run_after - first_start >= dt.timedelta(seconds=30)  # 60 s after the second SR, not the first
    assert job.payload == {"trigger": "second SR"}


def test_the_postponement_is_capped_after_the_first_input(settings_factory, db):
    """A steady stream of inputs cannot starve the patient: the job starts at the latest the cap after it was
    queued (IMMUNORAD_EVALUATE_COALESCE_MAX_SECONDS)."""
    settings = coalescing(settings_factory, 60, 150)
    with db.write() as session:
        patient_id = upsert_patient(session, "QUEUE-4").id
        evaluate_soon(session, patient_id, "first SR", settings)
    starts = []
    for _ in range(3):
        with db.write() as session:  # a minute passes (the job's times move back by one), and one more SR comes
            job = session.scalars(select(Job)).one()
            job.created_at -= dt.timedelta(minutes=1)
            job.run_after -= dt.timedelta(minutes=1)
        with db.write() as session:
            evaluate_soon(session, patient_id, "one more SR", settings)
        with db.read() as session:
            job = session.scalars(select(Job)).one()
        assert job.status == "queued"
        assert job.run_after <= job.created_at + dt.timedelta(seconds=150)
        starts.append(job.run_after - job.created_at)
    # Postponed 60 s after the SR at 1 min (within the cap), then no more (it would pass 150 s).
    assert [round(s.total_seconds()) for s in starts] == [120, 120, 120]
    # Past the cap: due now, and taken by the next worker.
    assert job.run_after <= utcnow()
    with db.write() as session:
        assert session.scalars(Worker(settings, db)._claim_query()).one().id == job.id


def test_a_running_job_is_not_joined_by_a_coalescing_intake(settings_factory, db):
    settings = coalescing(settings_factory, 60, 600)
    with db.write() as session:
        patient_id = upsert_patient(session, "QUEUE-5").id
        evaluate_soon(session, patient_id, "first SR", settings)
    with db.write() as session:
        session.scalars(select(Job)).one().status = "running"
    with db.write() as session:
        evaluate_soon(session, patient_id, "SR while it runs", settings)
    with db.read() as session:
        jobs = session.scalars(select(Job).order_by(Job.id)).all()
    assert [j.status for j in jobs] == ["running", "queued"]
    assert jobs[1].payload == {"trigger": "SR while it runs"}
