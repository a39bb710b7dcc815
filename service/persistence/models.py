"""Persistence model (SQLAlchemy 2). The schema itself is created by Alembic (service/migrations).

Tables hold what arrived (instances, FHIR resources, lesion measurements, clinical facts), what the rule base
concluded (append-only assessment versions, reports, alerts) and the plumbing that makes it reliable (jobs,
outbox, audit events), all in one database so that data and the work it triggers commit together.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from service.persistence.packed_json import PackedJSON


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC timestamps on every backend (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


LENGTH = Numeric(9, 1)
"""Lengths in mm at 0.1 mm resolution (contract §3)."""
SUV = Numeric(9, 2)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Patient(Base):
    __tablename__ = "patients"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_uuid)
    """Our Patient id (FHIR ``Patient/<id>``): a random UUID, or the FHIR id a client chose (up to 64 characters,
    R4 datatypes.html#id); not PHI."""
    mrn: Mapped[str | None] = mapped_column(String(128), unique=True)
    """Identifier in IMMUNORAD_PATIENT_ID_SYSTEM, equal to DICOM PatientID."""
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(16))
    deceased_date: Mapped[dt.date | None] = mapped_column(Date)
    death_from_progression: Mapped[bool | None] = mapped_column(Boolean)
    cancer_type: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


IMAGING_STUDIES = "imaging_studies"
"""``Study.header`` key: ``{"ImagingStudy/<id>": {"symptom_driven": bool}}``."""


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id"), index=True)
    study_date: Mapped[dt.date | None] = mapped_column(Date)
    modalities: Mapped[str] = mapped_column(String(128), default="")
    accession: Mapped[str | None] = mapped_column(String(64))
    header: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Facts from image headers: slice thickness, PET uptake time, injected dose, weight…; and under
    ``IMAGING_STUDIES`` what each FHIR ImagingStudy naming the study said, by its reference (so that one taken back
    takes back only what it gave)."""
    first_instance_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_instance_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Instance(Base):
    __tablename__ = "instances"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(16))
    transfer_syntax: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    """``sr`` (a TID 1500 report, parsed at ingest) | ``seg`` (a DICOM Segmentation, measured by the worker) |
    ``rejection`` (an IOCM rejection note) | ``image`` | ``other``."""
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The received bytes of an SR or SEG (kept as received); image bytes live in ``PixelData`` for the retention
    window (CT/MR/PET, contract §9.6)."""
    header: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Header facts worth keeping (Pixel Spacing for recomputing ``px`` lengths in dcmjs SRs, slice thickness)."""
    parse_notes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RejectedInstance(Base):
    """A SOP Instance rejected by an IHE IOCM rejection note (``dicom_listener/rejection.py``): its measurements are
    removed and it is never used again, also when it arrives after the note."""

    __tablename__ = "rejected_instances"
    sop_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    note_uid: Mapped[str] = mapped_column(String(64))
    """SOP Instance UID of the Key Object Selection document that rejected it."""
    reason: Mapped[str] = mapped_column(String(16))
    """The note's document title, a DCM code: 113001, 113037, 113038 or 113039."""
    rejected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Lesion(Base):
    __tablename__ = "lesions"
    __table_args__ = (UniqueConstraint("patient_id", "identity_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    identity_key: Mapped[str] = mapped_column(String(255))
    """Tracking UID, ``label:<text>`` (OHIF), or ``unmatched:<source>`` when neither exists."""
    identity_source: Mapped[str] = mapped_column(String(32))
    label: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Measurement(Base):
    """One lesion (or PET reference region) at one scan, from an SR group or a FHIR Observation."""

    __tablename__ = "measurements"
    __table_args__ = (UniqueConstraint("source_ref", "group_index"), Index("ix_measurements_patient", "patient_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id"))
    lesion_id: Mapped[int | None] = mapped_column(ForeignKey("lesions.id"), index=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    scan_date: Mapped[dt.date | None] = mapped_column(Date)
    """Scan date when the source states it; else the study's date is used."""
    source_kind: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str] = mapped_column(String(128))
    group_index: Mapped[int] = mapped_column(Integer, default=0)
    identity_key: Mapped[str | None] = mapped_column(String(255))
    identity_source: Mapped[str] = mapped_column(String(32), default="none")
    label: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="present")
    nodal: Mapped[bool] = mapped_column(Boolean, default=False)
    organ: Mapped[str | None] = mapped_column(String(64))
    long_axis_mm: Mapped[Decimal | None] = mapped_column(LENGTH)
    short_axis_mm: Mapped[Decimal | None] = mapped_column(LENGTH)
    nontarget_status: Mapped[str | None] = mapped_column(String(32))
    nontarget_change: Mapped[str | None] = mapped_column(String(8))
    injected: Mapped[bool | None] = mapped_column(Boolean)
    irradiated: Mapped[bool | None] = mapped_column(Boolean)
    equivocal: Mapped[bool] = mapped_column(Boolean, default=False)
    finding_code: Mapped[str | None] = mapped_column(String(64))
    suv_max: Mapped[Decimal | None] = mapped_column(SUV)
    sul_peak: Mapped[Decimal | None] = mapped_column(SUV)
    metabolic_volume_ml: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    tlg: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    reference_region: Mapped[str | None] = mapped_column(String(16))
    reference_mean: Mapped[Decimal | None] = mapped_column(SUV)
    reference_sd: Mapped[Decimal | None] = mapped_column(SUV)
    rejected_reason: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    merged_into: Mapped[str | None] = mapped_column(String(255))
    """Identity (tracking UID or ``label:<text>``) of the lesion this one joined (contract §9.3)."""
    fragment: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    symptom_driven: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The scan was done for a new symptom (FHIR component ``symptom-driven``)."""
    tracer: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """PET tracer as stated with the measurement: ``{"code", "scheme", "text"}`` (FHIR ``radiopharmaceutical``)."""


class PendingInput(Base):
    """An acknowledged input that waits for another object before it can be used (contract §9.3 "SR order").

    Generic: ``source_kind``/``source_ref`` say what waits (today a TID 1500 SR's measurement group whose lengths
    are in pixels; a SEG later), ``waits_for_kind``/``waits_for_uid`` what it waits for (a SOP instance, or a
    series). The waiting input itself is kept where it always is (the SR's bytes in ``instances.content``); when
    the awaited object is stored, the listener re-reads the input in the same transaction and re-evaluates the
    patient. A row that can no longer resolve stays, ``unresolvable`` with its reason: nothing acknowledged is
    silently left out.
    """

    __tablename__ = "pending_inputs"
    __table_args__ = (
        UniqueConstraint("source_ref", "group_index", "waits_for_uid"),
        Index("ix_pending_waits_for", "waits_for_uid", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    """The waiting input's study: its patient is the study's (a dcmjs SR names none itself)."""
    source_kind: Mapped[str] = mapped_column(String(16))
    """``dicom-sr`` (``dicom-seg`` later)."""
    source_ref: Mapped[str] = mapped_column(String(128))
    """The waiting instance's SOP Instance UID."""
    group_index: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[str | None] = mapped_column(String(255))
    waits_for_kind: Mapped[str] = mapped_column(String(16), default="instance")
    """``instance`` (a SOP Instance UID) or ``series`` (a Series Instance UID)."""
    waits_for_uid: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    """``waiting`` | ``unresolvable`` (the awaited object came and still does not make the input usable)."""
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ClinicalFact(Base):
    """Therapy lines, local therapies, labs/vitals/ECOG, irAE findings: the non-imaging inputs."""

    __tablename__ = "clinical_facts"
    __table_args__ = (UniqueConstraint("source_ref", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    """``therapy-line`` | ``local-therapy`` | ``observation`` | ``finding``."""
    effective_date: Mapped[dt.date | None] = mapped_column(Date)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_ref: Mapped[str] = mapped_column(String(128))
    origin: Mapped[str] = mapped_column(String(16), default="inbound")
    """``inbound`` (posted to us) or ``ehr-pull`` (fetched from the EHR)."""
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FhirResource(Base):
    """The FHIR store behind ``/fhir``: what we received and what we produced, versioned."""

    __tablename__ = "fhir_resources"
    __table_args__ = (
        UniqueConstraint("resource_type", "fhir_id"),
        Index("ix_fhir_patient", "patient_id", "resource_type"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(40))
    fhir_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer, default=1)
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id"))
    effective: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    """The resource's clinically relevant date, for ``date`` searches."""
    last_updated: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    origin: Mapped[str] = mapped_column(String(16), default="inbound")
    content: Mapped[dict[str, Any]] = mapped_column(PackedJSON)
    """The resource as served, stored packed (``service.persistence.packed_json``, migration 0011)."""


class FhirIdentifier(Base):
    __tablename__ = "fhir_identifiers"
    __table_args__ = (Index("ix_fhir_identifier", "resource_type", "value", "system"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("fhir_resources.id", ondelete="CASCADE"), index=True)
    resource_type: Mapped[str] = mapped_column(String(40))
    system: Mapped[str | None] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))


class Assessment(Base):
    """Append-only versions of a patient's evaluation (contract §7)."""

    __tablename__ = "assessments"
    __table_args__ = (UniqueConstraint("patient_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    inputs_hash: Mapped[str] = mapped_column(String(64))
    rulebase_version: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]] = mapped_column(PackedJSON)
    changes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Report(Base):
    """One DiagnosticReport per patient and follow-up timepoint: its identity and last content."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("patient_id", "scan_date"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    scan_date: Mapped[dt.date] = mapped_column(Date)
    fhir_id: Mapped[str] = mapped_column(String(64))
    identifier: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="preliminary")
    """``preliminary``, ``amended`` (also ``final``/``corrected``), or ``entered-in-error`` once withdrawn because its
    timepoint is no follow-up any more (service.assessment.evaluation.withdraw_reports)."""
    content_hash: Mapped[str] = mapped_column(String(64))
    """Digest of the report and its Observations (a change makes a new ``amended`` version)."""
    flags_hash: Mapped[str] = mapped_column(String(64), default="")
    """Digest of the Flags attached to this timepoint (a change is re-sent without amending the report)."""
    inputs_hash: Mapped[str] = mapped_column(String(64), default="")
    """Digest of the facts known at this timepoint plus the rule-base version (the report is evaluated as of its date)."""
    assessment_id: Mapped[int] = mapped_column(ForeignKey("assessments.id"))
    first_input_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    """When the first input of this timepoint arrived (turnaround: received → delivered)."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("identifier"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    identifier: Mapped[str] = mapped_column(String(255))
    code: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(24), default="active")
    severity: Mapped[str] = mapped_column(String(16))
    scan_date: Mapped[dt.date] = mapped_column(Date)
    first_raised: Mapped[dt.date] = mapped_column(Date)
    summary: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    finding: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Job(Base):
    """The work queue. Claimed with FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite serialises writers."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_ready", "status", "run_after"),
        Index(
            "uq_jobs_queued_dedupe",
            "dedupe_key",
            unique=True,
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    """``evaluate`` (a patient) | ``settle`` (a study) | ``pull-context`` (fetch therapy facts from the EHR)."""
    dedupe_key: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id"))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    run_after: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_by: Mapped[str | None] = mapped_column(String(128))
    locked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """A transaction Bundle waiting for (or done with) delivery to the EHR."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    report_identifier: Mapped[str] = mapped_column(String(255))
    report_version: Mapped[int] = mapped_column(Integer)
    bundle: Mapped[dict[str, Any] | None] = mapped_column(PackedJSON)
    """The Bundle to send; None once delivered (the FHIR store keeps the resources, ``sent_sha256`` what was sent)."""
    sent_sha256: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 (hex) of exactly the bytes the EHR accepted."""
    sent_bytes: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """``pending`` | ``delivered``."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    locked_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Append-only audit trail; exposed as FHIR AuditEvent and as a CSV export."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recorded: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(1))
    """FHIR AuditEvent.action: C R U D E."""
    kind: Mapped[str] = mapped_column(String(48))
    """What happened: ``dicom-store``, ``fhir-create``, ``fhir-read``, ``evaluation``, ``delivery``, ``auth-failure``…"""
    outcome: Mapped[str] = mapped_column(String(2), default="0")
    """FHIR audit-event-outcome: 0 success, 4 minor, 8 serious, 12 major failure."""
    agent: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))
    entity_type: Mapped[str | None] = mapped_column(String(40))
    entity_ref: Mapped[str | None] = mapped_column(String(255))
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UsedJti(Base):
    """The ``jti`` of each accepted CDS Hooks JWT, kept until the token expires: a second use is a replay
    (CDS Hooks 2.0 security). In the database so that every API worker and pod sees it; the primary key makes
    two concurrent uses of one token collide, whichever worker receives them."""

    __tablename__ = "used_jtis"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    """``service.security.auth.jti_key``: a digest of (issuer, jti), never the raw value."""
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class PixelData(Base):
    """Pixel data of a CT, MR or PET image kept for IMMUNORAD_PIXEL_RETENTION_DAYS (contract §9.6), so that a SEG
    arriving after its series can be measured.

    Where and how: the received instance bytes, zlib-compressed (level 1: fast on the C-STORE path; CT slices of
    mostly air and soft tissue shrink to about a third), in this table — written in the same transaction as the
    instance row, so an acknowledged image has its pixels; every process and pod sees them through the database
    (no shared volume); SQLite and PostgreSQL alike (PostgreSQL keeps large values out of line, TOAST, with
    compression off for this column: the bytes are compressed already). After the window the worker drops the
    bytes (``data`` NULL, ``dropped_at`` set) and keeps the row: a SEG over that series is then listed with the
    reason. The whole instance is kept (not just the pixel array) so that geometry, rescale and any transfer
    syntax are read later exactly as received.
    """

    __tablename__ = "pixel_data"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), unique=True)
    series_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    codec: Mapped[str] = mapped_column(String(16), default="zlib")
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    stored_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    dropped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Segment(Base):
    """One segment of a stored DICOM SEG (contract §9.6), as measured over its source series.

    ``kind`` says what it is (``rules.segment_codes``); a lesion segment is tied to its tracked lesion
    (``lesion_id``) by Tracking UID / Tracking Identifier. A computed segment keeps its mask (cropped to its
    bounding box, bit-packed, zlib) and the geometry to put it back on the series: ``service.ingest.segmentation
    .load_segment_volume`` gives a feature extractor (image volume, mask, voxel spacing)."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("seg_sop_uid", "segment_number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seg_sop_uid: Mapped[str] = mapped_column(String(64), index=True)
    segment_number: Mapped[int] = mapped_column(Integer)
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id"), index=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    lesion_id: Mapped[int | None] = mapped_column(ForeignKey("lesions.id"), index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    """The source (referenced) image series."""
    modality: Mapped[str | None] = mapped_column(String(16))
    scan_date: Mapped[dt.date | None] = mapped_column(Date)
    label: Mapped[str | None] = mapped_column(String(255))
    category: Mapped[list[Any] | None] = mapped_column(JSON)
    """[scheme, value, meaning] of the Segmented Property Category."""
    property_type: Mapped[list[Any] | None] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(32))
    identity_key: Mapped[str | None] = mapped_column(String(255))
    identity_source: Mapped[str] = mapped_column(String(32), default="none")
    status: Mapped[str] = mapped_column(String(24))
    """``computed`` | ``not-computed`` (with ``reason``)."""
    reason: Mapped[str | None] = mapped_column(Text)
    voxel_count: Mapped[int | None] = mapped_column(BigInteger)
    volume_cm3: Mapped[Decimal | None] = mapped_column(Numeric(14, 3))
    geometry: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """``spacing_zyx_mm``, ``source_sops`` (slice order), ``bbox`` [z0, z1, y0, y1, x0, x1) of the mask, ``shape``."""
    mask: Mapped[bytes | None] = mapped_column(LargeBinary)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Per-segment figures beyond the volume (e.g. area per slice for body composition)."""
    computed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SignOff(Base):
    """A radiologist's signed overall category for one timepoint and criterion (contract §9.7).

    Append-only: an amended sign-off is a new row, the latest (highest id) for (report, criterion) is current. The
    engine's own result (its Observations, its DiagnosticReport) is never touched; ``engine_category`` is what the
    engine said for this timepoint and criterion when the sign-off arrived (None when it did not evaluate it)."""

    __tablename__ = "sign_offs"
    __table_args__ = (Index("ix_sign_offs_report", "report_id", "criterion"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"))
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    scan_date: Mapped[dt.date] = mapped_column(Date)
    criterion: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32))
    engine_category: Mapped[str | None] = mapped_column(String(32))
    reader: Mapped[str] = mapped_column(String(255))
    comment: Mapped[str | None] = mapped_column(Text)
    route: Mapped[str] = mapped_column(String(16))
    """``fhir`` (a final DiagnosticReport from the reporting system) or ``api`` (``POST /api/reports/{id}/sign-off``)."""
    source_ref: Mapped[str | None] = mapped_column(String(255))
    """The reporting system's DiagnosticReport id, when it came by FHIR."""
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    """When the reader signed (the DiagnosticReport's ``issued``), else when we received it."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertAcknowledgement(Base):
    """Someone acted on an alert (contract §9.7 "Alert follow-up"): append-only, the first row per alert gives the
    time to acknowledgement (from the alert's ``created_at``)."""

    __tablename__ = "alert_acknowledgements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    route: Mapped[str] = mapped_column(String(16))
    """``api`` (``POST /api/alerts/{id}/acknowledge``), ``cds-feedback`` or ``ehr-flag`` (the Flag read back
    ``inactive`` from the EHR)."""
    outcome: Mapped[str] = mapped_column(String(16))
    """``acknowledged`` (api, ehr-flag) or the CDS Hooks feedback outcome ``accepted`` | ``overridden``."""
    by: Mapped[str | None] = mapped_column(String(255))
    comment: Mapped[str | None] = mapped_column(Text)
    """The comment, or the CDS Hooks override reason (its display, else its code)."""
    acknowledged_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
