"""Store what the C-STORE SCP receives: one transaction per instance, acknowledged only after the commit.

- a re-sent SOP Instance UID is accepted and changes nothing (contract §3);
- an image contributes its header (patient, study, date, modality, PET facts); its bytes are kept only
  with IMMUNORAD_KEEP_PIXEL_DATA;
- a TID 1500 SR is parsed once, here, into measurement rows (the bytes are kept as received); an SR that
  cannot be parsed is refused with a 0xC000-range status and an error comment;
- plausibility (contract §9.2, ``rules.plausibility``): an instance whose study date or patient birth date is
  implausible is refused (0xC000-range, with the reason); an SR group with an implausible value is rejected with
  its reason (kept for the audit, never a measurement) and the rest of the SR is used; an SR of which no group
  remains usable is refused;
- pending inputs (contract §9.3 "SR order"): an SR group whose lengths are in pixels while its images are not
  stored yet is kept *pending* (``PendingInput``); the image that it waits for re-reads the stored SR in the same
  transaction as the image itself, and the patient is re-evaluated;
- a DICOM SEG (contract §9.6) is stored as received and a ``seg`` job queued: it is decoded and measured by the
  worker (``service/ingest/segmentation.py``), never on the C-STORE path; the pixel data of CT, MR and PET images is kept
  (``PixelData``, zlib) for IMMUNORAD_PIXEL_RETENTION_DAYS, and an image of a series a SEG waits for queues that
  SEG's job again (postponed to the study's settle time, so a series arriving slice by slice is measured once);
- the work it triggers (evaluate the patient, or settle the study) is queued in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
import zlib
from dataclasses import dataclass

from pydicom.dataset import Dataset
from sqlalchemy import delete, func, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DataError, IntegrityError

from dicom_listener.errors import (
    CannotUnderstand,
    IdentityConflict,
    Implausible,
    NoPatient,
    NotTID1500,
    StorageUnavailable,
)
from dicom_listener.headers import TID1500_SR_CLASSES, HeaderError, InstanceHeader, read_header
from dicom_listener.rejection import RejectionNote, read_rejection_note
from dicom_listener.scp import ReceivedInstance, RefusedAssociation
from dicom_listener.seg import PIXEL_MODALITIES, SEG_CLASSES
from dicom_listener.tid1500.facts import measurements_of
from dicom_listener.tid1500.model import ParsedReport, SRParseError
from dicom_listener.tid1500.reader import parse_measurement_report
from rules.plausibility import birth_date_problem, scan_date_problem
from service.ingest.ai_results import publish_algorithm_results
from service.ops.config import Settings, today
from service.ops.logs import pseudonym
from service.persistence.db import Database, DatabaseUnavailable
from service.persistence.measurements import row_for
from service.persistence.models import (
    Instance,
    Measurement,
    Patient,
    PendingInput,
    PixelData,
    RejectedInstance,
    Segment,
    Study,
    utcnow,
)
from service.persistence.store import (
    attach_measurements,
    audit,
    enqueue,
    evaluate_soon,
    link_study,
    settle_later,
    study_by_uid,
    upsert_patient,
)

logger = logging.getLogger(__name__)

SLOW_STORE_SECONDS = 5.0
"""A C-STORE whose storage took longer than this is logged as a warning, with its time and attempts."""


def _sex(value: str | None) -> str | None:
    return {"M": "male", "F": "female", "O": "other"}.get((value or "").upper())


class DicomIngest:
    """The ``store`` callback of the SCP."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.pixel_dir = settings.var_dir / "dicom"

    def association_refused(self, refused: RefusedAssociation) -> None:
        """Audit an association the listener refused (AE titles, TLS), as a refused HTTP call is audited
        (kind ``auth-failure``, outcome 4 — FHIR AuditEvent "User Authentication"); no patient data exists yet."""
        with self.db.write() as session:
            audit(
                session,
                action="E",
                kind="auth-failure",
                source="dicom",
                outcome="4",
                agent=f"dicom:{refused.calling_ae}" if refused.calling_ae else None,
                detail={
                    "protocol": "dicom",
                    "reason": refused.reason,
                    "calling_ae": refused.calling_ae,
                    "called_ae": refused.called_ae,
                    "peer": refused.peer,
                    **({"detail": refused.detail} if refused.detail else {}),
                },
            )

    def __call__(self, received: ReceivedInstance) -> None:
        try:
            ds, header = read_header(received.encoded)
        except HeaderError as exc:
            raise CannotUnderstand(str(exc)) from exc
        if header.sop_instance_uid != received.sop_instance_uid:
            raise IdentityConflict("SOP Instance UID differs from the C-STORE request")
        problem = scan_date_problem(
            header.study_date, today(), self.settings.plausibility, what="StudyDate"
        ) or birth_date_problem(header.birth_date, today(), [header.study_date])
        if problem:
            self._log_refused(problem)
            raise Implausible(f"implausible header: {problem}")
        note = read_rejection_note(ds)
        started = time.monotonic()
        attempts = 0
        try:
            early = self._parse_early(ds, header) if header.sop_class_uid in TID1500_SR_CLASSES else None
            for attempt in range(3):
                attempts = attempt + 1
                try:
                    self._store(received, ds, header, early, note)
                    return
                except IntegrityError:
                    # A concurrent association stored the same instance, patient or study first: retry,
                    # which then sees it (a duplicate instance is success, changing nothing).
                    if attempt == 2:
                        raise
        except DatabaseUnavailable as exc:
            raise StorageUnavailable(str(exc)) from exc
        except DataError as exc:
            # The parsers check what they extract; this catches what they missed (a value the database refuses:
            # too long, a NUL character, a number out of range). The transaction was rolled back: nothing stored.
            logger.warning("instance refused by the database", extra={"fields": {"error": type(exc.orig).__name__}})
            raise CannotUnderstand(f"a value of the data set cannot be stored ({type(exc.orig).__name__})") from exc
        except IntegrityError as exc:
            raise StorageUnavailable("concurrent update conflict") from exc
        finally:
            seconds = time.monotonic() - started
            if seconds > SLOW_STORE_SECONDS:
                logger.warning(
                    "slow C-STORE storage",
                    extra={
                        "fields": {
                            "seconds": round(seconds, 1),
                            "attempts": attempts,
                            "kind": "sr" if header.sop_class_uid in TID1500_SR_CLASSES else "image",
                        }
                    },
                )

    # -- the transaction ------------------------------------------------------------------------------
    def _parse_early(self, ds: Dataset, header: InstanceHeader) -> _EarlyParse | None:
        """An SR read before the write transaction, so that the parse (most of an SR's cost) holds no write lock and
        overlaps other associations' commits; ``None`` for a re-sent instance (nothing to read). The transaction
        uses it only if the referenced images it was read with are still the stored ones (``_store``)."""
        with self.db.read() as session:
            if self._already_stored(session, header):
                return None
            references = self._referenced_images(session, ds)
        return _EarlyParse(references, self._parse_sr(ds, header, references))

    @staticmethod
    def _already_stored(session, header: InstanceHeader) -> bool:
        return (
            session.scalars(select(Instance.id).where(Instance.sop_uid == header.sop_instance_uid)).first() is not None
        )

    def _store(
        self,
        received: ReceivedInstance,
        ds: Dataset,
        header: InstanceHeader,
        early: _EarlyParse | None = None,
        note: RejectionNote | None = None,
    ) -> None:
        parsed: ParsedReport | None = None
        is_sr = header.sop_class_uid in TID1500_SR_CLASSES
        is_seg = header.sop_class_uid in SEG_CLASSES
        with self.db.write() as session:
            if not self.db.is_sqlite:
                # Answer 0xA700 (retry) before the sender's own timeout aborts the association (Settings).
                wait_ms = max(1, int(self.settings.dicom_lock_wait_seconds * 1000))
                session.execute(text(f"SET LOCAL lock_timeout = {wait_ms}"))
            # A duplicate, or an instance an IOCM note rejected before it arrived: acknowledged (the sender did its
            # part), audited, and nothing changes.
            unused = (
                "dicom-store-duplicate"
                if self._already_stored(session, header)
                else "dicom-store-rejected"
                if session.get(RejectedInstance, header.sop_instance_uid) is not None
                else None
            )
            if unused is not None:
                _audit_instance(session, received, header, action="C", kind=unused)
                return
            if note is not None:
                self._reject(session, received, header, note)
                return
            study = study_by_uid(session, header.study_instance_uid)
            if is_sr:
                references = self._referenced_images(session, ds)
                if early is not None and _same_images(early.references, references):
                    parsed = early.parsed
                else:  # an image it references arrived meanwhile (or the SR was first seen as a duplicate)
                    parsed = self._parse_sr(ds, header, references)
            elif not header.patient_id and (study is None or study.patient_id is None):
                raise NoPatient("no Patient ID: an image must identify its patient")
            patient = None
            patient_id_value = header.patient_id or (parsed.patient_id if parsed else None)
            if patient_id_value:
                patient = upsert_patient(session, patient_id_value, birth_date=header.birth_date, sex=_sex(header.sex))
                self._check_birth_date(session, patient, header.study_date)
            if study is None:
                study = _new_study(session, header)
            self._update_study(study, header, is_sr)
            if patient is not None and study.patient_id not in (None, patient.id):
                raise IdentityConflict("the study already belongs to another patient")
            linked = link_study(session, study, patient) if patient is not None else False
            instance = _instance_row(
                received,
                header,
                study.id,
                kind="sr" if is_sr else "seg" if is_seg else "image",
                content=received.encoded if is_sr or is_seg else None,
                parse_notes=list(parsed.notes) if parsed else [],
            )
            session.add(instance)
            if not is_sr and not is_seg and self.settings.keep_pixel_data:
                self._write_file(header.sop_instance_uid, received.encoded)
            rows = self._measurement_rows(parsed, study) if parsed else []
            for row in rows:
                session.add(row)
            session.flush()
            if parsed and patient is not None:
                publish_algorithm_results(session, self.settings, patient, study, parsed)
            if not is_sr and not is_seg:
                self._retain_pixels(session, instance, header, received.encoded)
            if is_seg:
                enqueue(
                    session,
                    "seg",
                    f"seg:{header.sop_instance_uid}",
                    study_id=study.id,
                    payload={"sop_uid": header.sop_instance_uid},
                )
            owner = study.patient_id
            if owner is not None and rows:
                attach_measurements(session, owner, rows)
            if parsed is not None:
                self._record_pending(session, parsed, study, previously=set())
            resolved = [] if is_sr or is_seg else self._resolve_pending(session, header)
            if owner is not None and (rows or linked):
                evaluate_soon(session, owner, "dicom-sr" if rows else "study-linked", self.settings)
            if not is_sr and not is_seg:
                settle_later(session, study.id, self.settings)
            _audit_instance(
                session,
                received,
                header,
                action="C",
                kind="dicom-store",
                patient_id=owner,
                detail=self._audit_detail(instance.kind, header.modality, parsed, resolved),
            )
        logger.info(
            "instance stored",
            extra={
                "fields": {
                    "kind": "sr" if is_sr else "image",
                    "study": pseudonym(header.study_instance_uid),
                    "patient": pseudonym(patient_id_value) if patient_id_value else None,
                    "groups": len(parsed.groups) if parsed else 0,
                }
            },
        )

    def _reject(self, session, received: ReceivedInstance, header: InstanceHeader, note: RejectionNote) -> None:
        """Store an IOCM rejection note and act on it in the same transaction: its instances are recorded as
        rejected (also those not received yet), the measurements and segments read from them are removed, their
        retained pixels dropped, and their patients queued for evaluation (a report whose scan is left with nothing
        is withdrawn)."""
        study = study_by_uid(session, header.study_instance_uid) or _new_study(session, header)
        session.add(
            _instance_row(
                received,
                header,
                study.id,
                kind="rejection",
                content=received.encoded,
                parse_notes=[f"rejects {len(note.rejected)} instance(s): {note.meaning}"],
            )
        )
        uids = list(note.rejected)
        known = set(session.scalars(select(RejectedInstance.sop_uid).where(RejectedInstance.sop_uid.in_(uids))))
        session.add_all(
            RejectedInstance(sop_uid=uid, note_uid=header.sop_instance_uid, reason=note.reason)
            for uid in uids
            if uid not in known
        )
        received_rows = list(session.execute(select(Instance.id, Instance.study_id).where(Instance.sop_uid.in_(uids))))
        patients = set(
            session.scalars(select(Study.patient_id).where(Study.id.in_({study_id for _, study_id in received_rows})))
        )
        patients |= set(session.scalars(select(Measurement.patient_id).where(Measurement.source_ref.in_(uids))))
        removed = session.execute(delete(Measurement).where(Measurement.source_ref.in_(uids))).rowcount
        session.execute(delete(PendingInput).where(PendingInput.source_ref.in_(uids)))
        session.execute(delete(Segment).where(Segment.seg_sop_uid.in_(uids)))
        session.execute(delete(PixelData).where(PixelData.instance_id.in_([pk for pk, _ in received_rows])))
        patients.discard(None)
        for patient_id in sorted(patients):
            evaluate_soon(session, patient_id, "dicom-rejection", self.settings)
        _audit_instance(
            session,
            received,
            header,
            action="D",
            kind="dicom-rejection",
            patient_id=next(iter(patients)) if len(patients) == 1 else None,
            detail={
                "reason": note.reason,
                "listed": len(uids),
                "received": len(received_rows),
                "measurements_removed": removed,
            },
        )
        logger.info(
            "rejection note stored",
            extra={"fields": {"reason": note.reason, "listed": len(uids), "measurements_removed": removed}},
        )

    def _parse_sr(self, ds: Dataset, header: InstanceHeader, references: dict[str, Dataset]) -> ParsedReport:
        parsed = self._read_sr(ds, references)
        usable = [g for g in parsed.groups if g.rejected_reason is None or g.awaited_images]
        if parsed.groups and not usable:
            # Contract §9.2: the groups were rejected and nothing usable remains.
            reasons = sorted({g.rejected_reason for g in parsed.groups if g.rejected_reason})
            self._log_refused("; ".join(reasons))
            raise Implausible("no usable measurement group: " + _shorten("; ".join(reasons), 300))
        return parsed

    def _read_sr(self, ds: Dataset, references: dict[str, Dataset]) -> ParsedReport:
        try:
            return parse_measurement_report(ds, references, self.settings.plausibility)
        except SRParseError as exc:
            raise NotTID1500(f"not a readable TID 1500 report: {exc}") from exc

    @staticmethod
    def _log_refused(reason: str) -> None:
        logger.warning("implausible DICOM input refused", extra={"fields": {"reason": _scrubbed(reason, 300)}})

    def _check_birth_date(self, session, patient: Patient, study_date: dt.date | None) -> None:
        """The birth date must not be after this study nor, when this instance is the first to state it, after the
        patient's earlier studies (contract §9.2); the header's own birth date was checked against its study date
        already."""
        scans = [study_date]
        if sa_inspect(patient).attrs.birth_date.history.has_changes():
            scans.append(session.scalar(select(func.min(Study.study_date)).where(Study.patient_id == patient.id)))
        problem = birth_date_problem(patient.birth_date, today(), scans)
        if problem:
            self._log_refused(problem)
            raise Implausible(f"implausible header: {problem}")

    # -- pending inputs (contract §9.3 "SR order") ----------------------------------------------------
    @staticmethod
    def _record_pending(session, parsed: ParsedReport, study: Study, *, previously: set[int]) -> None:
        """One ``waiting`` row per group and awaited image; a group that was pending (``previously``) and is now
        rejected for good stays visible as ``unresolvable`` with its reason."""
        now = utcnow()

        def row(index: int, label: str | None, waits_for_uid: str, status: str, reason: str) -> PendingInput:
            return PendingInput(
                study_id=study.id,
                source_kind="dicom-sr",
                source_ref=parsed.sop_instance_uid,
                group_index=index,
                label=label,
                waits_for_kind="instance",
                waits_for_uid=waits_for_uid,
                status=status,
                reason=_shorten(reason, 1000),
                created_at=now,
                updated_at=now,
            )

        for index, group in enumerate(parsed.groups):
            if group.awaited_images:
                reason = group.rejected_reason or "waits for its referenced image"
                for uid in group.awaited_images:
                    session.add(row(index, group.label, uid, "waiting", reason))
            elif index in previously and group.rejected_reason:
                session.add(row(index, group.label, "", "unresolvable", group.rejected_reason))

    def _resolve_pending(self, session, header: InstanceHeader) -> list[str]:
        """The SRs waiting for this image are read again from their stored bytes, now with its Pixel Spacing: their
        measurement rows and pending rows are replaced, and their patient re-evaluated (same transaction)."""
        keys = [header.sop_instance_uid] + ([header.series_instance_uid] if header.series_instance_uid else [])
        waiting = list(
            session.scalars(
                select(PendingInput).where(PendingInput.waits_for_uid.in_(keys), PendingInput.status == "waiting")
            )
        )
        segs = {p.source_ref: p.study_id for p in waiting if p.source_kind == "dicom-seg"}
        for seg_uid, seg_study in sorted(segs.items()):
            # Measured by the worker once the series has settled (every referenced image is then checked again).
            enqueue(
                session,
                "seg",
                f"seg:{seg_uid}",
                study_id=seg_study,
                payload={"sop_uid": seg_uid},
                run_after=utcnow() + dt.timedelta(seconds=self.settings.study_settle_seconds),
                postpone=True,
            )
        sources = sorted({p.source_ref for p in waiting if p.source_kind == "dicom-sr"})
        for sop_uid in sources:
            sr = session.scalars(select(Instance).where(Instance.sop_uid == sop_uid)).one()
            study = session.get(Study, sr.study_id)
            previously = {
                p.group_index for p in session.scalars(select(PendingInput).where(PendingInput.source_ref == sop_uid))
            }
            stored = read_header(sr.content)[0]
            parsed = self._read_sr(stored, self._referenced_images(session, stored))
            session.execute(delete(PendingInput).where(PendingInput.source_ref == sop_uid))
            session.execute(
                delete(Measurement).where(Measurement.source_kind == "dicom-sr", Measurement.source_ref == sop_uid)
            )
            rows = self._measurement_rows(parsed, study)
            session.add_all(rows)
            session.flush()
            if study.patient_id is not None:
                attach_measurements(session, study.patient_id, rows)
                evaluate_soon(session, study.patient_id, "pending-resolved", self.settings)
            self._record_pending(session, parsed, study, previously=previously)
            sr.parse_notes = list(parsed.notes)
        return [pseudonym(uid) for uid in sources]

    @staticmethod
    def _audit_detail(kind: str, modality: str | None, parsed: ParsedReport | None, resolved: list[str]) -> dict:
        """What the audit keeps of a stored instance: no values, no names (contract §9.2: a rejected group's
        reason is recorded)."""
        detail: dict = {"kind": kind, "modality": modality, "groups": len(parsed.groups) if parsed else 0}
        if parsed is not None:
            rejected = [
                {"group": i, "reason": _scrubbed(g.rejected_reason, 300)}
                for i, g in enumerate(parsed.groups)
                if g.rejected_reason and not g.awaited_images
            ]
            pending = [i for i, g in enumerate(parsed.groups) if g.awaited_images]
            if rejected:
                detail["rejected"] = rejected
            if pending:
                detail["pending"] = pending
        if resolved:
            detail["pending_resolved"] = resolved
        return detail

    @staticmethod
    def _referenced_images(session, ds: Dataset) -> dict[str, Dataset]:
        """Pixel Spacing of already-stored images, for recomputing lengths that dcmjs labels ``px``."""
        uids = set()
        for item in ds.get("CurrentRequestedProcedureEvidenceSequence", []) or []:
            for series in item.get("ReferencedSeriesSequence", []) or []:
                for sop in series.get("ReferencedSOPSequence", []) or []:
                    uids.add(str(sop.ReferencedSOPInstanceUID))
        if not uids:
            return {}
        found = {}
        for sop_uid, header in session.execute(
            select(Instance.sop_uid, Instance.header).where(Instance.sop_uid.in_(uids))
        ):
            # An image stored without Pixel Spacing is passed too: the parser then rejects the group for good
            # (it no longer waits for an image that has arrived).
            spacing = (header or {}).get("pixel_spacing_mm")
            image = Dataset()
            image.SOPInstanceUID = sop_uid
            if spacing:
                image.PixelSpacing = [str(v) for v in spacing]
            found[sop_uid] = image
        return found

    @staticmethod
    def _instance_header(header: InstanceHeader) -> dict:
        data: dict = {}
        if header.pixel_spacing_mm:
            data["pixel_spacing_mm"] = [str(v) for v in header.pixel_spacing_mm]
        if header.slice_thickness_mm is not None:
            data["slice_thickness_mm"] = str(header.slice_thickness_mm)
        return data

    @staticmethod
    def _update_study(study: Study, header: InstanceHeader, is_sr: bool) -> None:
        if header.study_date and study.study_date is None:
            study.study_date = header.study_date
        if header.accession and not study.accession:
            study.accession = header.accession
        modalities = set(filter(None, (study.modalities or "").split(",")))
        if header.modality:
            modalities.add(header.modality)
        study.modalities = ",".join(sorted(modalities))
        facts = dict(study.header or {})
        if header.symptom_driven:
            facts["symptom_driven"] = True  # contract §9.3: in the SR or an image header, it applies to the scan
        if not is_sr:
            if header.slice_thickness_mm is not None:
                facts.setdefault("slice_thickness_mm", str(header.slice_thickness_mm))
            for key, value in header.pet.items():
                facts.setdefault(key, value)
        study.header = facts
        study.last_instance_at = utcnow()

    @staticmethod
    def _measurement_rows(parsed: ParsedReport, study: Study) -> list[Measurement]:
        return [row_for(item, study_id=study.id) for item in measurements_of(parsed)]

    def _retain_pixels(self, session, instance: Instance, header: InstanceHeader, encoded: bytes) -> None:
        """Keep a CT/MR/PET image's bytes for the retention window (contract §9.6), in this transaction."""
        if header.modality not in PIXEL_MODALITIES or self.settings.pixel_retention_days <= 0:
            return
        now = utcnow()
        session.add(
            PixelData(
                instance_id=instance.id,
                series_uid=header.series_instance_uid,
                codec="zlib",
                data=zlib.compress(encoded, 1),
                stored_at=now,
                expires_at=now + dt.timedelta(days=self.settings.pixel_retention_days),
            )
        )

    def _write_file(self, sop_uid: str, data: bytes) -> None:
        self.pixel_dir.mkdir(parents=True, exist_ok=True)
        path = self.pixel_dir / f"{sop_uid}.dcm"
        tmp = path.with_suffix(".part")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)


def _new_study(session, header: InstanceHeader) -> Study:
    """The row of a study not known yet (its date and modalities come with its images)."""
    study = Study(study_uid=header.study_instance_uid, modalities="", header={})
    session.add(study)
    session.flush()
    return study


def _instance_row(
    received: ReceivedInstance,
    header: InstanceHeader,
    study_id: int,
    *,
    kind: str,
    content: bytes | None,
    parse_notes: list[str],
) -> Instance:
    return Instance(
        sop_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        study_id=study_id,
        series_uid=header.series_instance_uid,
        modality=header.modality,
        transfer_syntax=received.transfer_syntax,
        kind=kind,
        calling_ae=received.calling_ae,
        size_bytes=len(received.encoded),
        content=content,
        header=DicomIngest._instance_header(header),
        parse_notes=parse_notes,
    )


def _audit_instance(
    session,
    received: ReceivedInstance,
    header: InstanceHeader,
    *,
    action: str,
    kind: str,
    patient_id: str | None = None,
    detail: dict | None = None,
) -> None:
    """An audit event about the received instance: its UID pseudonymised, the calling AE as the agent."""
    audit(
        session,
        action=action,
        kind=kind,
        source="dicom",
        agent=received.calling_ae,
        entity_type="Instance",
        entity_ref=pseudonym(header.sop_instance_uid),
        patient_id=patient_id,
        detail=detail,
    )


@dataclass(frozen=True)
class _EarlyParse:
    """An SR parsed before its write transaction, with the stored images it was read against."""

    references: dict[str, Dataset]
    parsed: ParsedReport


def _same_images(before: dict[str, Dataset], now: dict[str, Dataset]) -> bool:
    """The referenced images found, and their Pixel Spacing, are the same (what the parse used of them)."""
    return before.keys() == now.keys() and all(
        before[uid].get("PixelSpacing") == now[uid].get("PixelSpacing") for uid in before
    )


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


_UID_IN_TEXT = re.compile(r"\b\d+(?:\.\d+){2,}\b")


def _scrubbed(text: str, limit: int) -> str:
    """A reason as logs and the audit keep it: UIDs it names are pseudonymised (as everywhere in our logs)."""
    return _shorten(_UID_IN_TEXT.sub(lambda m: f"uid:{pseudonym(m.group(0))}", text), limit)
