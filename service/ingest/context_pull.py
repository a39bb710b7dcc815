"""Pulling a patient's clinical context from the EHR (worker job kind ``pull-context``).

When a patient is to be evaluated and nobody has posted a checkpoint-inhibitor therapy line to us, the
rule base lacks the therapy start that most criteria and every kinetics definition need. If the EHR's FHIR
base is configured (IMMUNORAD_EHR_FHIR_URL), the worker then fetches, with paged searches:

- the ``Patient`` whose identifier in IMMUNORAD_PATIENT_ID_SYSTEM is our patient's MRN (birth date, sex, death);
- ``MedicationAdministration`` and ``MedicationStatement`` (therapy lines, their start and stop);
- ``Procedure`` for radiotherapy and intratumoral injection;
- lab, vital and ECOG ``Observation`` resources with the LOINC codes the prognostic scores read.

Each is mapped exactly as a posted resource would be (``fhir_mappings.inbound.map_resource``) and cached as
a ``ClinicalFact`` with origin ``ehr-pull`` and its source (``ehr:{type}/{id}``, plus the EHR's base, version
and lastUpdated in the payload). The cached set is replaced as a whole at each pull, so a resource changed or
removed at the EHR changes or disappears here too; the patient is re-evaluated after every pull (evaluation
writes nothing when the inputs did not change). Pulls are rate-limited per patient
(IMMUNORAD_EHR_PULL_INTERVAL_SECONDS) and a failed pull never blocks the evaluation: it is evaluated with
what we have and the pull is retried with backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fhir_mappings.inbound import (
    LAB_CODES,
    LOINC,
    RADIOTHERAPY,
    SNOMED,
    ClinicalRecord,
    MappingError,
    PatientRecord,
    map_resource,
)
from rules.therapy_classes import UNCLASSIFIED
from service.ops.config import Settings
from service.ops.logs import pseudonym
from service.persistence.models import ClinicalFact, Job, Patient, utcnow
from service.persistence.store import audit, enqueue, evaluate_soon
from service.publish.ehr_client import EhrClient
from service.publish.errors import DeliveryError

logger = logging.getLogger(__name__)

JOB_KIND = "pull-context"
ORIGIN = "ehr-pull"
PAGE_SIZE = "100"
MAX_ATTEMPTS = 5
RETRY_BASE_SECONDS = 60
PULL_DEADLINE_SECONDS = 20.0
"""A pull stops between searches (and is retried later) past this: the worker's write transaction stays open
meanwhile, and on SQLite other writers wait for it (their busy timeout is 30 s)."""


def source_ref(resource: Mapping[str, Any]) -> str:
    return f"ehr:{resource.get('resourceType')}/{resource.get('id')}"[:128]


def _queries(settings: Settings, ehr_patient_id: str) -> list[tuple[str, dict[str, str]]]:
    """The searches of one pull (FHIR R4 search parameters every EHR supports on these types)."""
    lab_codes = ",".join(f"{LOINC}|{code}" for code in sorted(LAB_CODES))
    procedure_codes = f"{SNOMED}|{RADIOTHERAPY},{settings.fhir_canonical}/CodeSystem/immunorad|intratumoral-injection"
    return [
        ("MedicationAdministration", {"patient": ehr_patient_id, "_count": PAGE_SIZE}),
        ("MedicationStatement", {"patient": ehr_patient_id, "_count": PAGE_SIZE}),
        ("Procedure", {"patient": ehr_patient_id, "code": procedure_codes, "_count": PAGE_SIZE}),
        ("Observation", {"patient": ehr_patient_id, "code": lab_codes, "_count": PAGE_SIZE}),
    ]


def has_posted_therapy(session: Session, patient_id: str) -> bool:
    """An immunotherapy line that reached us other than by a pull (posted FHIR resources): then we do not pull.
    An *unclassified* drug (contract §9.3) does not count: it never gives the therapy start."""
    payloads = session.scalars(
        select(ClinicalFact.payload).where(
            ClinicalFact.patient_id == patient_id,
            ClinicalFact.kind == "therapy-line",
            ClinicalFact.origin != ORIGIN,
        )
    )
    return any((payload or {}).get("therapy_class") != UNCLASSIFIED for payload in payloads)


def pulled_recently(session: Session, settings: Settings, patient_id: str) -> bool:
    since = utcnow() - dt.timedelta(seconds=settings.ehr_pull_interval_seconds)
    return (
        session.scalars(
            select(Job.id).where(Job.kind == JOB_KIND, Job.patient_id == patient_id, Job.created_at >= since).limit(1)
        ).first()
        is not None
    )


def needs_pull(session: Session, settings: Settings, patient: Patient, trigger: str = "") -> bool:
    """Should the evaluation of this patient wait for a pull of their context from the EHR?

    Never for the evaluation a pull itself queued (its trigger starts with ``ehr-context``).
    """
    if not (settings.ehr_fhir_url and settings.ehr_context_pull and patient.mrn) or trigger.startswith("ehr-context"):
        return False
    return not has_posted_therapy(session, patient.id) and not pulled_recently(session, settings, patient.id)


def request_pull(
    session: Session, patient: Patient, *, trigger: str, attempt: int = 0, run_after: dt.datetime | None = None
) -> None:
    # A retry gets its own dedupe key: the failing job is still "queued" (under its key) until it commits.
    key = f"{JOB_KIND}:{patient.id}" + (f":retry{attempt}" if attempt else "")
    enqueue(
        session,
        JOB_KIND,
        key,
        patient_id=patient.id,
        run_after=run_after,
        payload={"trigger": trigger, "attempt": attempt},
    )


@dataclass
class PulledContext:
    found: bool
    patient: dict[str, Any] | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.until:
            raise DeliveryError("EHR context pull took too long")


def _search(client: EhrClient, kind: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """``EhrClient.search``, once more with a fresh SMART token if the EHR answers 401."""
    try:
        return client.search(kind, params)
    except DeliveryError as exc:
        smart = getattr(client, "_smart", None)
        if exc.status == 401 and smart is not None:
            smart.invalidate()
            return client.search(kind, params)
        raise


def fetch_context(client: EhrClient, settings: Settings, mrn: str) -> PulledContext:
    """The EHR's resources for the patient with this MRN (``DeliveryError`` when the EHR cannot be read)."""
    deadline = _Deadline(PULL_DEADLINE_SECONDS)
    matches = [
        p
        for p in _search(client, "Patient", {"identifier": f"{settings.patient_id_system}|{mrn}"})
        if p.get("resourceType") == "Patient" and p.get("id")
    ]
    if len(matches) != 1:
        return PulledContext(found=False, counts={"Patient": len(matches)})
    ehr_patient = matches[0]
    pulled = PulledContext(found=True, patient=ehr_patient, counts={"Patient": 1})
    for kind, params in _queries(settings, str(ehr_patient["id"])):
        deadline.check()
        found = [r for r in _search(client, kind, params) if r.get("resourceType") == kind and r.get("id")]
        pulled.counts[kind] = len(found)
        pulled.resources += found
    return pulled


def _fact_rows(settings: Settings, client_base: str, pulled: PulledContext) -> tuple[dict[tuple[str, str], tuple], int]:
    wanted: dict[tuple[str, str], tuple] = {}
    unusable = 0
    for resource in pulled.resources:
        try:
            record = map_resource(
                resource, canonical=settings.fhir_canonical, patient_id_system=settings.patient_id_system
            )
        except MappingError:
            unusable += 1
            continue
        if not isinstance(record, ClinicalRecord) or record.kind == "death-cause":
            continue
        meta = resource.get("meta") or {}
        payload = dict(record.payload)
        payload["ehr_source"] = {
            "server": client_base,
            "reference": f"{resource['resourceType']}/{resource['id']}",
            "versionId": meta.get("versionId"),
            "lastUpdated": meta.get("lastUpdated"),
        }
        wanted[(source_ref(resource), record.kind)] = (record.effective_date, payload)
    return wanted, unusable


def apply_context(
    session: Session, settings: Settings, patient: Patient, pulled: PulledContext, client_base: str
) -> dict[str, int]:
    """Replace the patient's ``ehr-pull`` facts by what was pulled; fill demographics we do not have."""
    changes = {"added": 0, "changed": 0, "removed": 0, "unusable": 0, "demographics": 0}
    if pulled.patient is not None:
        record = map_resource(
            pulled.patient, canonical=settings.fhir_canonical, patient_id_system=settings.patient_id_system
        )
        if isinstance(record, PatientRecord):
            for attribute, value in (
                ("birth_date", record.birth_date),
                ("sex", record.sex),
                ("deceased_date", record.deceased_date),
            ):
                if value is not None and getattr(patient, attribute) is None:
                    setattr(patient, attribute, value)
                    changes["demographics"] += 1
    wanted, changes["unusable"] = _fact_rows(settings, client_base, pulled) if pulled.found else ({}, 0)
    existing = {
        (f.source_ref, f.kind): f
        for f in session.scalars(
            select(ClinicalFact).where(ClinicalFact.patient_id == patient.id, ClinicalFact.origin == ORIGIN)
        )
    }
    for key, fact in existing.items():
        if key not in wanted:
            session.execute(delete(ClinicalFact).where(ClinicalFact.id == fact.id))
            changes["removed"] += 1
    for key, (effective, payload) in wanted.items():
        current = existing.get(key)
        if current is None:
            # A resource that reached us before under the same reference (another patient's) cannot collide:
            # the reference carries the EHR's resource id.
            session.add(
                ClinicalFact(
                    patient_id=patient.id,
                    kind=key[1],
                    effective_date=effective,
                    payload=payload,
                    source_ref=key[0],
                    origin=ORIGIN,
                )
            )
            changes["added"] += 1
        elif current.effective_date != effective or current.payload != payload:
            current.effective_date, current.payload = effective, payload
            changes["changed"] += 1
    session.flush()
    return changes


def run_pull(
    session: Session, settings: Settings, client: EhrClient | None, patient: Patient, *, trigger: str, attempt: int = 0
) -> dict[str, int] | None:
    """The ``pull-context`` job: fetch, cache, audit, then (always) queue the patient's evaluation.

    A failure is audited and retried later with backoff; the evaluation goes ahead meanwhile.
    """
    if client is None or not patient.mrn:
        evaluate_soon(session, patient.id, "ehr-context-unavailable")
        return None
    try:
        pulled = fetch_context(client, settings, patient.mrn)
    except DeliveryError as exc:
        audit(
            session,
            action="C",
            kind="ehr-pull",
            source="worker",
            outcome="8",
            entity_type="Patient",
            entity_ref=patient.id,
            patient_id=patient.id,
            detail={"error": str(exc)[:120], "status": exc.status, "attempt": attempt + 1, "trigger": trigger},
        )
        logger.warning(
            "EHR context pull failed",
            extra={"fields": {"patient": pseudonym(patient.id), "status": exc.status, "attempt": attempt + 1}},
        )
        if attempt + 1 < MAX_ATTEMPTS:
            retry_at = utcnow() + dt.timedelta(seconds=RETRY_BASE_SECONDS * 2**attempt)
            request_pull(session, patient, trigger=trigger, attempt=attempt + 1, run_after=retry_at)
        evaluate_soon(session, patient.id, "ehr-context-failed")
        return None
    changes = apply_context(session, settings, patient, pulled, client.base)
    audit(
        session,
        action="C",
        kind="ehr-pull",
        source="worker",
        outcome="0" if pulled.found else "4",
        entity_type="Patient",
        entity_ref=patient.id,
        patient_id=patient.id,
        detail={"found": pulled.found, "resources": pulled.counts, **changes, "trigger": trigger},
    )
    logger.info(
        "EHR context pulled",
        extra={
            "fields": {
                "patient": pseudonym(patient.id),
                "found": pulled.found,
                **{k: v for k, v in changes.items() if v},
            }
        },
    )
    evaluate_soon(session, patient.id, "ehr-context")
    return changes
