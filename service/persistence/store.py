"""Persistence operations shared by the DICOM ingest, the FHIR endpoint and the worker.

Each function works inside the caller's transaction (``Database.write()``), so that data, the jobs it
triggers and its audit record commit together.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.persistence.models import AuditEvent, Job, Lesion, Measurement, Patient, PendingInput, Study, utcnow

if TYPE_CHECKING:
    from service.ops.config import Settings


def patient_by_mrn(session: Session, mrn: str) -> Patient | None:
    return session.scalars(select(Patient).where(Patient.mrn == mrn)).first()


def upsert_patient(session: Session, mrn: str, **fields: Any) -> Patient:
    """The patient with this identifier (DICOM PatientID), created if new; empty fields are filled."""
    patient = patient_by_mrn(session, mrn)
    if patient is None:
        patient = Patient(mrn=mrn, **{k: v for k, v in fields.items() if v is not None})
        session.add(patient)
        session.flush()
        return patient
    for key, value in fields.items():
        if value is not None and getattr(patient, key) is None:
            setattr(patient, key, value)
    return patient


def study_by_uid(session: Session, study_uid: str) -> Study | None:
    return session.scalars(select(Study).where(Study.study_uid == study_uid)).first()


LesionCache = dict[tuple[str, str], Lesion]
"""Lesions already found or created, by (patient id, identity key), for one unit of work that cannot be partly
rolled back (one FHIR transaction Bundle, one batch entry): it holds them strongly, so the session's weak identity
map cannot drop them between entries and each lesion is looked up once."""


def ensure_lesion(
    session: Session,
    patient_id: str,
    identity_key: str,
    identity_source: str,
    label: str | None,
    cache: LesionCache | None = None,
) -> Lesion:
    key = (patient_id, identity_key)
    if cache is not None and key in cache:
        return cache[key]
    lesion = session.scalars(
        select(Lesion).where(Lesion.patient_id == patient_id, Lesion.identity_key == identity_key)
    ).first()
    if lesion is None:
        lesion = Lesion(patient_id=patient_id, identity_key=identity_key, identity_source=identity_source, label=label)
        session.add(lesion)
        session.flush()
    if cache is not None:
        cache[key] = lesion
    return lesion


def attach_measurements(
    session: Session, patient_id: str, measurements: list[Measurement], lesions: LesionCache | None = None
) -> None:
    """Give measurements their patient and lesion rows (an SR without patient waits for its images).

    As ``ensure_lesion`` for each measurement in turn (a new lesion takes the first measurement's identity source
    and label), with one query for the lesions that exist and one flush for those created."""
    tracked = [
        (m, m.identity_key)
        for m in measurements
        if m.identity_key and m.reference_region is None and m.rejected_reason is None
    ]
    for m in measurements:
        m.patient_id = patient_id
    cache: LesionCache = lesions if lesions is not None else {}
    missing = {identity for _, identity in tracked if (patient_id, identity) not in cache}
    if missing:
        for lesion in session.scalars(
            select(Lesion).where(Lesion.patient_id == patient_id, Lesion.identity_key.in_(sorted(missing)))
        ):
            cache[(patient_id, lesion.identity_key)] = lesion
    created = False
    for m, identity in tracked:
        key = (patient_id, identity)
        if key not in cache:
            cache[key] = Lesion(
                patient_id=patient_id, identity_key=identity, identity_source=m.identity_source, label=m.label
            )
            session.add(cache[key])
            created = True
    if created:
        session.flush()
    for m, identity in tracked:
        m.lesion_id = cache[(patient_id, identity)].id


def link_study(session: Session, study: Study, patient: Patient) -> bool:
    """Tie a study (and any SR measurements already received for it) to its patient."""
    if study.patient_id == patient.id:
        return False
    study.patient_id = patient.id
    pending = list(
        session.scalars(select(Measurement).where(Measurement.study_id == study.id, Measurement.patient_id.is_(None)))
    )
    attach_measurements(session, patient.id, pending)
    return True


def _insert(session: Session, table, values: dict[str, Any]):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).values(**values)


QUEUED = text("status = 'queued'")
"""The partial unique index's predicate, as a literal: PostgreSQL matches ON CONFLICT to it textually."""


def enqueue(
    session: Session,
    kind: str,
    dedupe_key: str,
    *,
    patient_id: str | None = None,
    study_id: int | None = None,
    run_after: dt.datetime | None = None,
    payload: dict[str, Any] | None = None,
    postpone: bool = False,
    postpone_max_seconds: float | None = None,
) -> None:
    """Queue a job unless the same one is already queued (not yet running): jobs coalesce.

    ``postpone`` moves an already-queued job's start to ``run_after`` (the study settle timer), but with
    ``postpone_max_seconds`` not past that long after the queued job was created (a steady stream cannot starve it).
    """
    now = utcnow()
    start = run_after or now
    values = dict(
        kind=kind,
        dedupe_key=dedupe_key,
        patient_id=patient_id,
        study_id=study_id,
        payload=payload or {},
        status="queued",
        run_after=start,
        attempts=0,
        created_at=now,
    )
    statement = _insert(session, Job.__table__, values)
    if postpone:
        new_start: Any = statement.excluded.run_after
        if postpone_max_seconds is not None:
            # Moved only while the new start is within the cap of the job's creation; otherwise it keeps its start
            # (itself within the cap: every earlier move was). The existing row is read under its lock, as below.
            jobs = Job.__table__.c
            latest_creation = start - dt.timedelta(seconds=postpone_max_seconds)
            new_start = case((jobs.created_at >= latest_creation, new_start), else_=jobs.run_after)
        statement = statement.on_conflict_do_update(
            index_elements=["dedupe_key"],
            index_where=QUEUED,
            set_={"run_after": new_start, "payload": statement.excluded.payload},
        )
    else:
        # Not DO NOTHING: the update locks the queued job until this transaction commits, so a worker cannot
        # claim it (FOR UPDATE SKIP LOCKED skips it) and run it on data without ours — the request would be lost.
        # If a worker holds it already, PostgreSQL waits for that transaction; the job is then no longer queued
        # and a new one is inserted. (SQLite serialises writers: there the race cannot happen.)
        statement = statement.on_conflict_do_update(
            index_elements=["dedupe_key"], index_where=QUEUED, set_={"payload": statement.excluded.payload}
        )
    session.execute(statement)


def evaluate_soon(session: Session, patient_id: str, trigger: str, coalesce: Settings | None = None) -> None:
    """Queue the patient's evaluation; once per transaction (a 200-entry Bundle for one patient queues it once).

    Once per innermost transaction: a savepoint rolled back (a failed batch entry) takes its job with it, so a
    later entry in a new savepoint queues the job again.

    With ``coalesce`` (intake: more of the patient's inputs may be on the way) the job starts after a quiet period
    of IMMUNORAD_EVALUATE_COALESCE_SECONDS, postponed by each later call, but not past
    IMMUNORAD_EVALUATE_COALESCE_MAX_SECONDS after the job was queued. A job already running is not one of these:
    data committed meanwhile queues a new job (the ``queued`` dedupe index no longer holds the running one)."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    queued = session.info.get("evaluate_soon")
    if queued is None or queued[0] is not transaction:
        queued = session.info["evaluate_soon"] = (transaction, set[str]())
    if patient_id in queued[1]:
        return
    key, payload = f"evaluate:{patient_id}", {"trigger": trigger}
    if coalesce is not None and coalesce.evaluate_coalesce_seconds > 0:
        quiet = coalesce.evaluate_coalesce_seconds
        enqueue(
            session,
            "evaluate",
            key,
            patient_id=patient_id,
            payload=payload,
            run_after=utcnow() + dt.timedelta(seconds=quiet),
            postpone=True,
            postpone_max_seconds=max(quiet, coalesce.evaluate_coalesce_max_seconds),
        )
    else:
        enqueue(session, "evaluate", key, patient_id=patient_id, payload=payload)
    queued[1].add(patient_id)


def settle_later(session: Session, study_id: int, settings: Settings) -> None:
    """Queue the study's settle job (worker: once no instance came for IMMUNORAD_STUDY_SETTLE_SECONDS, the patient
    is evaluated, so that imaging without measurements becomes a not evaluable timepoint); each call postpones it."""
    enqueue(
        session,
        "settle",
        f"settle:{study_id}",
        study_id=study_id,
        run_after=utcnow() + dt.timedelta(seconds=settings.study_settle_seconds),
        postpone=True,
    )


def audit(
    session: Session,
    *,
    action: str,
    kind: str,
    source: str,
    outcome: str = "0",
    agent: str | None = None,
    entity_type: str | None = None,
    entity_ref: str | None = None,
    patient_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            action=action,
            kind=kind,
            source=source,
            outcome=outcome,
            agent=agent,
            entity_type=entity_type,
            entity_ref=entity_ref,
            patient_id=patient_id,
            detail=detail or {},
        )
    )


def pending_inputs(session: Session, patient_id: str | None = None) -> list[dict[str, Any]]:
    """Pending inputs (contract §9.3) as shown in ``/api`` and on the patient page: all of them, or one patient's
    (those whose study belongs to the patient). UIDs are shown as received: they identify objects, not people."""
    query = select(PendingInput, Study).outerjoin(Study, Study.id == PendingInput.study_id)
    if patient_id is not None:
        query = query.where(Study.patient_id == patient_id)
    rows = session.execute(query.order_by(PendingInput.created_at, PendingInput.source_ref, PendingInput.group_index))
    grouped: dict[tuple[str, int], dict[str, Any]] = {}
    for pending, study in rows:
        item = grouped.setdefault(
            (pending.source_ref, pending.group_index),
            {
                "source_kind": pending.source_kind,
                "source": pending.source_ref,
                "group_index": pending.group_index,
                "label": pending.label,
                "patient_id": study.patient_id if study else None,
                "study_uid": study.study_uid if study else None,
                "status": pending.status,
                "reason": pending.reason,
                "waits_for": [],
                "since": pending.created_at.isoformat(),
            },
        )
        if pending.waits_for_uid:
            item["waits_for"].append({"kind": pending.waits_for_kind, "uid": pending.waits_for_uid})
    return list(grouped.values())
