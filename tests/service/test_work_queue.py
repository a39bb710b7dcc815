"""The work queue's coalescing must never lose a request (several replicas on PostgreSQL).

A writer that finds its patient's evaluation already queued joins that job instead of adding one. The job
must then not run before the writer's data is committed: a worker claiming it in between would evaluate
without that data, mark it done, and nothing would evaluate the patient again (seen in CI as a report
never issued). The joining writer therefore locks the queued job until it commits.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service.assessment.worker import Worker
from service.persistence.models import Job
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
