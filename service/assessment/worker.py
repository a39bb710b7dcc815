"""The worker role: takes jobs from the database queue and delivers the outbox to the EHR.

- A job is claimed and processed in one transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
  workers never take the same job; SQLite serialises writers). A crash rolls the claim back with the work.
- An outbox message is leased (its next attempt pushed past the HTTP timeout), sent, then marked
  delivered. Delivery uses conditional PUTs, so a redelivery after a crash changes nothing at the EHR.
  Messages of one patient go out in order; failures retry with exponential backoff, across restarts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import logging
import random
import threading
import time

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import aliased

from service.assessment.evaluation import evaluate_and_publish
from service.features import radiomics_job
from service.features.signature_cards import load_cards
from service.ingest import context_pull, segmentation
from service.ops.config import Settings
from service.ops.logs import pseudonym
from service.persistence.db import Database, DatabaseUnavailable, is_database_unavailable
from service.persistence.models import Alert, Job, OutboxMessage, Patient, Study, utcnow
from service.persistence.store import audit, enqueue, evaluate_soon
from service.publish import acknowledge
from service.publish.ehr_client import EhrClient, encode_bundle
from service.publish.errors import DeliveryError

logger = logging.getLogger(__name__)

MAX_JOB_ATTEMPTS = 5
PIXEL_PURGE_INTERVAL_SECONDS = 3600.0
FLAG_READ_BACK_INTERVAL_SECONDS = 300.0
"""How often the worker reads back the Flags it delivered, to see those set inactive in the EHR (contract §9.7)."""
"""How often a worker drops pixel data past its retention window (at start, then hourly)."""
MAX_BACKOFF_SECONDS = 900
DATABASE_RETRY_MAX_SECONDS = 5.0
"""Longest wait between attempts to reach an unavailable database (the wait doubles from 1 s up to this)."""


def backoff(attempts: int, first: float = 2.0) -> float:
    """Seconds before the next try after ``attempts`` failures: ``first``, doubling, capped, ±20 % jitter."""
    return min(MAX_BACKOFF_SECONDS, first * 2 ** min(attempts - 1, 12)) * (0.8 + 0.4 * random.random())  # noqa: S311 -- retry jitter, not a secret


class Worker:
    def __init__(self, settings: Settings, db: Database, *, ehr: EhrClient | None = None) -> None:
        self.settings = settings
        self.db = db
        self.ehr = ehr or (EhrClient(settings) if settings.ehr_fhir_url else None)
        self.name = settings.instance_id
        # Signature model cards are validated at start: an invalid card stops the worker with the file and key.
        load_cards(settings.signatures_dir)
        if importlib.util.find_spec("radiomics") is None:
            logger.warning(
                "radiomic features are off: the optional 'imaging' extra (pyradiomics-bhklab) is not installed; "
                "lesion segments get their volume only and are listed with that reason"
            )
        self._database_outages = 0
        """Consecutive transactions that found the database unavailable (the backoff grows with it)."""
        self._stop = threading.Event()

    # -- jobs -------------------------------------------------------------------------------------------
    def _claim_query(self):
        query = (
            select(Job)
            .where(Job.status == "queued", Job.run_after <= utcnow())
            .order_by(Job.run_after, Job.id)
            .limit(1)
        )
        if not self.db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        return query

    def run_one_job(self) -> bool:
        """Process one due job; False when there was none or the database is unavailable."""
        try:
            heavy: tuple[int, int] | None = None
            with self.db.write() as session:
                job = session.scalars(self._claim_query()).first()
                if job is not None and job.kind == radiomics_job.JOB_KIND:
                    # Feature extraction takes seconds to minutes: it runs with no transaction open. The claim is a
                    # lease: the job stays queued but not due until the extraction's time bound has passed, so a
                    # crash mid-way leaves it to be retried, never lost or run twice meanwhile.
                    job.locked_by, job.locked_at = self.name, utcnow()
                    job.run_after = utcnow() + dt.timedelta(seconds=self.settings.radiomics_time_limit_seconds + 60)
                    heavy = (job.id, int((job.payload or {}).get("segment_id", 0)))
                elif job is not None:
                    self._run_claimed(session, job)
            if heavy is not None:
                job_id, segment_id = heavy
                extraction = radiomics_job.extract_outside_transaction(self.db, self.settings, segment_id)
                with self.db.write() as session:
                    claimed = session.get(Job, job_id)
                    if claimed is not None and claimed.status == "queued":
                        self._run_claimed(session, claimed, extraction=extraction)
        except DatabaseUnavailable as exc:
            # The claim rolled back with the work: the job is queued again as it was, its attempt not counted.
            self._wait_for_database(exc)
            return False
        self._database_outages = 0
        return job is not None

    def _run_claimed(self, session, job: Job, *, extraction: radiomics_job.Extraction | None = None) -> None:
        """Run a claimed job; its own failures are recorded on it, database failures propagate (nothing recorded)."""
        job.attempts += 1
        job.locked_by, job.locked_at = self.name, utcnow()
        # Out of the "queued" dedupe index while it runs, so that work it queues under the same key
        # (a settle timer postponing itself, new data arriving) is a new job, not this one.
        job.status = "running"
        session.flush()
        try:
            with session.begin_nested():
                self._process(session, job, extraction)
            job.status = "done"
            job.finished_at = utcnow()
            # A done job leaves the dedupe index (it covers queued jobs only).
        except Exception as exc:  # a failing job must not stop the worker
            if is_database_unavailable(exc):
                # The database failed, not the job: its transaction is unusable (the connection may be dead), so
                # it must not be recorded as the job's failure. ``Database.write`` rolls back and reports it.
                raise
            logger.exception("job failed", extra={"fields": {"job": job.id, "kind": job.kind}})
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            job.last_error = error
            job.run_after = utcnow() + dt.timedelta(seconds=backoff(job.attempts, self.settings.retry_backoff_seconds))
            if job.attempts >= MAX_JOB_ATTEMPTS:
                job.status = "failed"
            else:
                # Retry under the dedupe key, unless a newer copy is queued already (it will do the work).
                duplicate = session.scalars(
                    select(Job.id).where(Job.dedupe_key == job.dedupe_key, Job.status == "queued", Job.id != job.id)
                ).first()
                job.status = "done" if duplicate is not None else "queued"
            audit(
                session,
                action="E",
                kind=f"job-failed-{job.kind}",
                source="worker",
                outcome="8",
                patient_id=job.patient_id,
                detail={"error": error, "attempts": job.attempts},
            )

    def _wait_for_database(self, exc: DatabaseUnavailable) -> None:
        """Back off before the next transaction; the pool replaces dead connections (pre-ping) when we retry."""
        self._database_outages += 1
        delay = min(DATABASE_RETRY_MAX_SECONDS, 2.0 ** min(self._database_outages - 1, 8))
        delay *= 0.8 + 0.4 * random.random()  # noqa: S311 -- retry jitter, not a secret
        logger.warning(
            "database unavailable: worker waits",
            extra={"fields": {"seconds": round(delay, 1), "reason": str(exc)[:200]}},
        )
        self._stop.wait(delay)

    def _process(self, session, job: Job, extraction: radiomics_job.Extraction | None = None) -> None:
        if job.kind == "evaluate":
            patient = session.get(Patient, job.patient_id)
            if patient is None:
                return
            payload = job.payload or {}
            if not payload.get("force") and context_pull.needs_pull(
                session, self.settings, patient, str(payload.get("trigger", ""))
            ):
                # No therapy line posted to us: fetch the context from the EHR first; the pull re-queues this
                # evaluation when it is done (or failed), so results are never held back for long.
                context_pull.request_pull(session, patient, trigger=payload.get("trigger", "job"))
                return
            evaluate_and_publish(
                session, self.settings, patient, trigger=payload.get("trigger", "job"), force=bool(payload.get("force"))
            )
        elif job.kind == context_pull.JOB_KIND:
            patient = session.get(Patient, job.patient_id)
            if patient is not None:
                payload = job.payload or {}
                context_pull.run_pull(
                    session,
                    self.settings,
                    self.ehr,
                    patient,
                    trigger=payload.get("trigger", "job"),
                    attempt=int(payload.get("attempt", 0)),
                )
        elif job.kind == segmentation.JOB_KIND:
            segmentation.process_seg(session, self.settings, str((job.payload or {}).get("sop_uid", "")))
        elif job.kind == radiomics_job.JOB_KIND:
            segment_id = int((job.payload or {}).get("segment_id", 0))
            radiomics_job.process_radiomics(session, self.settings, segment_id, extraction)
        elif job.kind == "settle":
            study = session.get(Study, job.study_id)
            if study is None:
                return
            quiet_until = study.last_instance_at + dt.timedelta(seconds=self.settings.study_settle_seconds)
            if quiet_until > utcnow():
                enqueue(session, "settle", job.dedupe_key, study_id=study.id, run_after=quiet_until, postpone=True)
            elif study.patient_id:
                evaluate_soon(session, study.patient_id, "study-settled", self.settings)
        else:
            raise ValueError(f"unknown job kind {job.kind}")

    def purge_pixels(self) -> int:
        """Drop pixel data past IMMUNORAD_PIXEL_RETENTION_DAYS (contract §9.6), in short batches; how many."""
        total = 0
        while True:
            with self.db.write() as session:
                dropped = segmentation.purge_expired_pixels(session)
            total += dropped
            if dropped < segmentation.PURGE_BATCH:
                break
        if total:
            logger.info("pixel data dropped after its retention", extra={"fields": {"instances": total}})
        return total

    def read_back_flags(self) -> int:
        """Read back from the EHR the Flags of active, unacknowledged alerts (``Flag?identifier=…``): one set
        ``inactive`` there is acknowledged (contract §9.7). How many were; an unreachable EHR is tried next time."""
        if self.ehr is None:
            return 0
        from fhir_mappings.codes import LocalSystems

        system = LocalSystems.from_canonical(self.settings.fhir_canonical).flag_identifier
        with self.db.read() as session:
            wanted = [(a.id, a.identifier) for a in acknowledge.flags_to_poll(session)]
        done = 0
        for alert_id, identifier in wanted:
            try:
                flags = self.ehr.search("Flag", {"identifier": f"{system}|{identifier}"})
            except DeliveryError as exc:
                logger.warning("Flag read-back failed", extra={"fields": {"error": str(exc)[:200]}})
                return done
            inactive = next((f for f in flags if f.get("status") == "inactive"), None)
            if inactive is None:
                continue
            with self.db.write() as session:
                alert = session.get(Alert, alert_id)
                if alert is not None and alert.status == "active":
                    done += acknowledge.apply_flag_read_back(session, alert, inactive) is not None
        return done

    # -- outbox -----------------------------------------------------------------------------------------
    def deliver_one(self) -> bool:
        if self.ehr is None:
            return False
        earlier = aliased(OutboxMessage)
        now = utcnow()
        try:
            with self.db.write() as session:
                query = (
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.status == "pending",
                        OutboxMessage.next_attempt_at <= now,
                        ~exists().where(
                            and_(
                                earlier.patient_id == OutboxMessage.patient_id,
                                earlier.status == "pending",
                                earlier.id < OutboxMessage.id,
                            )
                        ),
                    )
                    .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                    .limit(1)
                )
                if not self.db.is_sqlite:
                    query = query.with_for_update(skip_locked=True, of=OutboxMessage)
                message = session.scalars(query).first()
                if message is None:
                    return False
                message.locked_by = self.name
                message.attempts += 1
                # The lease outlasts one HTTP attempt; after a crash the message is retried when it expires.
                lease = self.settings.ehr_timeout_seconds + 10
                message.next_attempt_at = now + dt.timedelta(seconds=lease)
                message_id, bundle, attempts = message.id, message.bundle, message.attempts
        except DatabaseUnavailable as exc:
            self._wait_for_database(exc)
            return False
        status, error = None, None
        body = encode_bundle(bundle) if bundle is not None else None
        try:
            if body is None:
                raise DeliveryError("outbox message has no Bundle")
            status = self.ehr.post_bundle(body)
        except DeliveryError as exc:
            status, error = exc.status, str(exc)[:500]
        try:
            with self.db.write() as session:
                message = session.get_one(OutboxMessage, message_id)  # claimed above: it exists
                message.last_status_code = status
                if error is None:
                    message.status = "delivered"
                    message.delivered_at = utcnow()
                    message.last_error = None
                    # What was sent stays auditable by its hash; the resources themselves are in the FHIR store.
                    message.sent_sha256 = hashlib.sha256(body).hexdigest() if body is not None else None
                    message.sent_bytes = len(body) if body is not None else None
                    message.bundle = None
                    audit(
                        session,
                        action="C",
                        kind="delivery",
                        source="worker",
                        entity_type="DiagnosticReport",
                        entity_ref=message.report_identifier,
                        patient_id=message.patient_id,
                        detail={
                            "version": message.report_version,
                            "attempts": attempts,
                            "status": status,
                            "sha256": message.sent_sha256,
                        },
                    )
                else:
                    message.last_error = error
                    message.next_attempt_at = utcnow() + dt.timedelta(
                        seconds=backoff(attempts, self.settings.retry_backoff_seconds)
                    )
                    audit(
                        session,
                        action="C",
                        kind="delivery-failed",
                        source="worker",
                        outcome="4",
                        entity_type="DiagnosticReport",
                        entity_ref=message.report_identifier,
                        patient_id=message.patient_id,
                        detail={"attempts": attempts, "status": status, "error": error[:200]},
                    )
        except DatabaseUnavailable as exc:
            # Sent but not marked: the message is sent again when its lease expires (conditional PUTs, no change).
            self._wait_for_database(exc)
        else:
            self._database_outages = 0
        if error:
            logger.warning(
                "delivery failed", extra={"fields": {"message": message_id, "status": status, "attempts": attempts}}
            )
        return True

    # -- loop -------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        logger.info("worker started", extra={"fields": {"worker": pseudonym(self.name)}})
        self._stop = stop
        next_purge = 0.0
        next_flag_read = time.monotonic() + FLAG_READ_BACK_INTERVAL_SECONDS
        while not stop.is_set():
            if time.monotonic() >= next_purge:
                try:
                    self.purge_pixels()
                except DatabaseUnavailable as exc:
                    self._wait_for_database(exc)
                next_purge = time.monotonic() + PIXEL_PURGE_INTERVAL_SECONDS
            if time.monotonic() >= next_flag_read:
                try:
                    self.read_back_flags()
                except DatabaseUnavailable as exc:
                    self._wait_for_database(exc)
                next_flag_read = time.monotonic() + FLAG_READ_BACK_INTERVAL_SECONDS
            busy = self.run_one_job()
            busy = self.deliver_one() or busy
            if not busy:
                stop.wait(self.settings.worker_poll_seconds)

    def drain(self, timeout: float = 30.0) -> None:
        """Process until nothing is due (tests and the CLI's ``reassess``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not (self.run_one_job() or self.deliver_one()):
                return


def pending_work(db: Database) -> dict[str, int]:
    from sqlalchemy import func

    with db.read() as session:
        jobs = session.scalar(select(func.count()).select_from(Job).where(Job.status == "queued")) or 0
        outbox = (
            session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending"))
            or 0
        )
    return {"jobs": jobs, "outbox": outbox}
