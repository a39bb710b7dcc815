"""The audit trail as FHIR R4: ``AuditEvent`` from our append-only audit table, ``Provenance`` per assessment.

AuditEvent (interop-notes §5.6, IHE BALP in spirit): who (``agent``: the API client, the DICOM calling AE, or
immunorad's own role), what (``entity``: the patient and the data object), when (``recorded``), the
outcome (``0`` success, ``4`` minor, ``8`` serious failure) and the action (C R U D E). ``type`` carries the
standard event code where one fits (DICOM 110104 instances transferred, 110106 export, 110107 import,
110114 user authentication; FHIR ``rest``) and ``subtype`` always our own event kind.

Provenance: one per assessment version (each evaluation of a patient). ``target`` = the DiagnosticReports that
version issued or amended (the patient when it issued none); ``agent`` = immunorad as a contained Device with
its software and rule-base versions; ``policy`` = the rule-base version; ``entity`` (role ``source``) = the
inputs received before the evaluation: imaging studies and SR instances, posted FHIR resources, facts pulled
from the EHR, and the digest of the whole input set as recorded on the assessment.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, false, func, select
from sqlalchemy.orm import Session

from service.ops.config import Settings
from service.persistence.fhir_store import SearchError, _date_clause, patient_ids_for_identifier
from service.persistence.models import Assessment, AuditEvent, ClinicalFact, Instance, Measurement, Report, Study

DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
DICOM_UID = "urn:dicom:uid"

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
FHIR_TYPES = {
    "Patient",
    "Observation",
    "BodyStructure",
    "ImagingStudy",
    "MedicationAdministration",
    "MedicationStatement",
    "MedicationRequest",
    "Procedure",
    "Condition",
    "DiagnosticReport",
    "Flag",
    "AuditEvent",
    "Provenance",
}

STANDARD_TYPES: dict[str, tuple[str, str, str]] = {
    # event kind prefix → (system, code, display). DICOM PS3.16 CID 400 "Audit Event ID".
    "dicom-store": (DCM, "110104", "DICOM Instances Transferred"),
    "delivery": (DCM, "110106", "Export"),
    "ehr-pull": (DCM, "110107", "Import"),
    "auth-failure": (DCM, "110114", "User Authentication"),
    "access-denied": (DCM, "110114", "User Authentication"),
    "cds-auth": (DCM, "110114", "User Authentication"),
    "audit-export": (DCM, "110106", "Export"),
}
REST_KINDS = {
    "fhir-create": "create",
    "fhir-update": "update",
    "fhir-read": "read",
    "fhir-search": "search-type",
    "api-read": None,
    "prefill-read": None,
    "cds-hooks": None,
    "cds-feedback": None,
    "access-failed": None,
    "ui-read": None,
    "alert-entered-in-error": None,
}
ACTION_DISPLAY = {"C": "Create", "R": "Read/View/Print", "U": "Update", "D": "Delete", "E": "Execute"}
OUTCOME_TEXT = {"0": "success", "4": "minor failure", "8": "serious failure", "12": "major failure"}


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reference_or_identifier(settings: Settings, entity_type: str | None, entity_ref: str) -> dict[str, Any]:
    if entity_type in FHIR_TYPES:
        if entity_ref.startswith(f"{entity_type}/") and FHIR_ID.match(entity_ref.split("/", 1)[1]):
            return {"reference": entity_ref}
        if FHIR_ID.match(entity_ref):
            return {"reference": f"{entity_type}/{entity_ref}"}
    reference: dict[str, Any] = {
        "identifier": {"system": f"{settings.fhir_canonical}/NamingSystem/audit-entity", "value": entity_ref}
    }
    if entity_type:
        reference["display"] = entity_type
    return reference


def _event_type(settings: Settings, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    local = {"system": f"{settings.fhir_canonical}/CodeSystem/audit-event-kind", "code": kind}
    subtypes = [local]
    if kind in REST_KINDS:
        interaction = REST_KINDS[kind]
        if interaction:
            subtypes.insert(0, {"system": RESTFUL_INTERACTION, "code": interaction})
        return {"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "Restful Operation"}, subtypes
    for prefix, (system, code, display) in STANDARD_TYPES.items():
        if kind == prefix or kind.startswith(f"{prefix}-"):
            return {"system": system, "code": code, "display": display}, subtypes
    return dict(local), subtypes


def audit_event_resource(settings: Settings, row: AuditEvent) -> dict[str, Any]:
    """One row of the audit table as a FHIR R4 AuditEvent."""
    event_type, subtypes = _event_type(settings, row.kind)
    application = {
        "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
        "who": {
            "identifier": {"system": f"{settings.fhir_canonical}/NamingSystem/role", "value": row.source},
            "display": f"immunorad {row.source}",
        },
        "requestor": row.agent is None,
    }
    agents = []
    if row.agent:
        system = "ae-title" if row.source == "dicom" else "client"
        agents.append(
            {
                "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
                "who": {
                    "identifier": {"system": f"{settings.fhir_canonical}/NamingSystem/{system}", "value": row.agent}
                },
                "requestor": True,
            }
        )
    agents.append(application)
    entities: list[dict[str, Any]] = []
    if row.patient_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{row.patient_id}"},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    detail = [
        {"type": str(key), "valueString": value if isinstance(value, str) else json.dumps(value, default=str)}
        for key, value in sorted((row.detail or {}).items())
    ]
    if row.entity_ref and not (row.entity_type == "Patient" and row.entity_ref == row.patient_id):
        entity: dict[str, Any] = {
            "what": _reference_or_identifier(settings, row.entity_type, row.entity_ref),
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        }
        if detail:
            entity["detail"] = detail
            detail = []
        entities.append(entity)
    elif row.entity_type and detail:
        entities.append(
            {
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "name": row.entity_type,
                "detail": detail,
            }
        )
        detail = []
    if detail:
        if entities:
            entities[-1]["detail"] = detail
        else:
            entities.append(
                {"type": {"system": ENTITY_TYPE, "code": "4", "display": "Other"}, "name": "request", "detail": detail}
            )
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.id),
        "meta": {"versionId": "1", "lastUpdated": _iso(row.recorded)},
        "type": event_type,
        "subtype": subtypes,
        "action": row.action,
        "recorded": _iso(row.recorded),
        "outcome": row.outcome,
        "agent": agents,
        "source": {
            "site": "immunorad",
            "observer": {"display": f"immunorad {row.source}"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    if row.outcome != "0":
        reason = (row.detail or {}).get("reason") or (row.detail or {}).get("error")
        resource["outcomeDesc"] = str(reason or OUTCOME_TEXT.get(row.outcome, "failure"))[:200]
    if entities:
        resource["entity"] = entities
    return resource


# -- Provenance ---------------------------------------------------------------------------------------------
def provenance_id(assessment: Assessment) -> str:
    return f"assessment-{assessment.id}"


def _device(assessment: Assessment) -> dict[str, Any]:
    from rules import __version__ as software_version

    return {
        "resourceType": "Device",
        "id": "immunorad",
        "deviceName": [{"name": "immunorad", "type": "user-friendly-name"}],
        "version": [
            {"type": {"text": "software"}, "value": software_version},
            {"type": {"text": "rule base"}, "value": assessment.rulebase_version},
        ],
    }


def provenance_inputs(session: Session, settings: Settings, assessment: Assessment) -> list[dict[str, Any]]:
    """The inputs of an assessment as Provenance entities: what had arrived for the patient before it ran."""
    before = assessment.created_at
    entities: list[dict[str, Any]] = []
    studies = session.scalars(
        select(Study)
        .where(Study.patient_id == assessment.patient_id, Study.first_instance_at <= before)
        .order_by(Study.study_date, Study.id)
    )
    for study in studies:
        entities.append(
            {
                "role": "source",
                "what": {
                    "type": "ImagingStudy",
                    "identifier": {"system": DICOM_UID, "value": f"urn:oid:{study.study_uid}"},
                },
            }
        )
    sr_rows = session.execute(
        select(Instance.sop_uid)
        .join(Study, Study.id == Instance.study_id)
        .where(Study.patient_id == assessment.patient_id, Instance.kind == "sr", Instance.received_at <= before)
        .order_by(Instance.id)
    )
    for (sop_uid,) in sr_rows:
        entities.append(
            {
                "role": "source",
                "what": {
                    "identifier": {"system": DICOM_UID, "value": f"urn:oid:{sop_uid}"},
                    "display": "DICOM SR measurement report",
                },
            }
        )
    references = set(
        session.scalars(
            select(Measurement.source_ref).where(
                Measurement.patient_id == assessment.patient_id,
                Measurement.source_kind == "fhir",
                Measurement.received_at <= before,
            )
        )
    )
    facts = session.execute(
        select(ClinicalFact.source_ref, ClinicalFact.origin, ClinicalFact.payload).where(
            ClinicalFact.patient_id == assessment.patient_id, ClinicalFact.received_at <= before
        )
    )
    pulled: dict[str, str] = {}
    for ref, origin, payload in facts:
        if origin == "ehr-pull":
            source = (payload or {}).get("ehr_source") or {}
            server, local = source.get("server"), source.get("reference") or ref.removeprefix("ehr:")
            pulled[ref] = f"{server.rstrip('/')}/{local}" if server else local
        else:
            references.add(ref)
    for ref in sorted(references):
        if "/" in ref and FHIR_ID.match(ref.split("/", 1)[1]):
            entities.append({"role": "source", "what": {"reference": ref}})
    for ref in sorted(pulled):
        entities.append({"role": "source", "what": {"reference": pulled[ref], "display": "pulled from the EHR"}})
    entities.append(
        {
            "role": "source",
            "what": {
                "identifier": {
                    "system": f"{settings.fhir_canonical}/NamingSystem/inputs-hash",
                    "value": assessment.inputs_hash,
                },
                "display": "digest of the evaluated inputs (SHA-256)",
            },
        }
    )
    return entities


def provenance_resource(session: Session, settings: Settings, assessment: Assessment) -> dict[str, Any]:
    reports = list(
        session.scalars(select(Report).where(Report.assessment_id == assessment.id).order_by(Report.scan_date))
    )
    targets = [{"reference": f"DiagnosticReport/{r.fhir_id}"} for r in reports] or [
        {"reference": f"Patient/{assessment.patient_id}"}
    ]
    return {
        "resourceType": "Provenance",
        "id": provenance_id(assessment),
        "meta": {"versionId": "1", "lastUpdated": _iso(assessment.created_at)},
        "contained": [_device(assessment)],
        "target": targets,
        "occurredDateTime": _iso(assessment.created_at),
        "recorded": _iso(assessment.created_at),
        "policy": [f"{settings.fhir_canonical}/rulebase/{assessment.rulebase_version}"],
        "reason": [{"text": f"assessment version {assessment.version} (trigger: {assessment.trigger})"}],
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE" if assessment.version == 1 else "UPDATE"}]},
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler", "display": "Assembler"}]},
                "who": {"reference": "#immunorad", "display": f"immunorad, rule base {assessment.rulebase_version}"},
            }
        ],
        "entity": provenance_inputs(session, settings, assessment),
    }


# -- searches ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    resources: list[dict[str, Any]]
    total: int
    offset: int
    count: int


AUDIT_SEARCH_PARAMS = (
    "patient",
    "patient:identifier",
    "date",
    "_lastUpdated",
    "_id",
    "action",
    "outcome",
    "subtype",
    "type",
    "agent",
    "entity-type",
    "entity",
)
PROVENANCE_SEARCH_PARAMS = ("patient", "patient:identifier", "target", "recorded", "_lastUpdated", "_id")
PAGING_PARAMS = ("_count", "_offset", "_format", "_sort", "_summary")


def _paging(params: Mapping[str, list[str]]) -> tuple[int, int]:
    try:
        count = min(int((params.get("_count") or ["50"])[0]), 500)
        offset = max(int((params.get("_offset") or ["0"])[0]), 0)
    except ValueError as exc:
        raise SearchError("_count and _offset must be integers") from exc
    if count < 0:
        raise SearchError("_count must not be negative")
    return count, offset


def _check(params: Mapping[str, list[str]], supported: tuple[str, ...], kind: str) -> None:
    for name in params:
        if name not in supported and name not in PAGING_PARAMS:
            raise SearchError(f"search parameter {name!r} is not supported for {kind}")


def _patients(session: Session, settings: Settings, name: str, raw: str) -> list[str]:
    if name.endswith(":identifier"):
        return patient_ids_for_identifier(session, raw, settings.patient_id_system)
    return [raw.split("/")[-1]]


def _token_values(raw: str) -> list[str]:
    return [value.split("|")[-1] for value in raw.split(",")]


def search_audit_events(session: Session, settings: Settings, params: Mapping[str, list[str]]) -> Page:
    _check(params, AUDIT_SEARCH_PARAMS, "AuditEvent")
    count, offset = _paging(params)
    query = select(AuditEvent)
    for name, values in params.items():
        for raw in values:
            if name in ("patient", "patient:identifier"):
                ids = _patients(session, settings, name, raw)
                query = query.where(AuditEvent.patient_id.in_(ids) if ids else false())
            elif name in ("date", "_lastUpdated"):
                query = query.where(_date_clause(AuditEvent.recorded, raw))
            elif name == "_id":
                event_ids = [int(v) for v in raw.split(",") if v.isdigit()]
                query = query.where(AuditEvent.id.in_(event_ids) if event_ids else false())
            elif name == "action":
                query = query.where(AuditEvent.action.in_(_token_values(raw)))
            elif name == "outcome":
                query = query.where(AuditEvent.outcome.in_(_token_values(raw)))
            elif name in ("subtype", "type"):
                wanted = _token_values(raw)
                kinds = set(wanted)
                for kind_prefix, (_, code, _) in STANDARD_TYPES.items():
                    if code in wanted:
                        kinds.add(kind_prefix)
                if "rest" in wanted:
                    kinds.update(REST_KINDS)
                query = query.where(AuditEvent.kind.in_(sorted(kinds)))
            elif name == "agent":
                query = query.where(AuditEvent.agent.in_(_token_values(raw)))
            elif name == "entity-type":
                query = query.where(AuditEvent.entity_type.in_(raw.split(",")))
            elif name == "entity":
                kind, _, ref = raw.rpartition("/")
                clause: ColumnElement[bool] = AuditEvent.entity_ref.in_([raw, ref])
                if kind == "Patient":
                    clause = AuditEvent.patient_id == ref
                query = query.where(clause)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEvent.recorded.desc(), AuditEvent.id.desc()).offset(offset).limit(count))
    return Page([audit_event_resource(settings, row) for row in rows], total, offset, count)


def read_audit_event(session: Session, settings: Settings, fhir_id: str) -> dict[str, Any] | None:
    if not fhir_id.isdigit():
        return None
    row = session.get(AuditEvent, int(fhir_id))
    return audit_event_resource(settings, row) if row is not None else None


def _assessment_for(session: Session, fhir_id: str) -> Assessment | None:
    match = re.fullmatch(r"assessment-(\d+)", fhir_id)
    return session.get(Assessment, int(match.group(1))) if match else None


def read_provenance(session: Session, settings: Settings, fhir_id: str) -> dict[str, Any] | None:
    assessment = _assessment_for(session, fhir_id)
    return provenance_resource(session, settings, assessment) if assessment is not None else None


def search_provenance(session: Session, settings: Settings, params: Mapping[str, list[str]]) -> Page:
    _check(params, PROVENANCE_SEARCH_PARAMS, "Provenance")
    count, offset = _paging(params)
    query = select(Assessment)
    for name, values in params.items():
        for raw in values:
            if name in ("patient", "patient:identifier"):
                ids = _patients(session, settings, name, raw)
                query = query.where(Assessment.patient_id.in_(ids) if ids else false())
            elif name in ("recorded", "_lastUpdated"):
                query = query.where(_date_clause(Assessment.created_at, raw))
            elif name == "_id":
                assessment_ids = [a.id for v in raw.split(",") if (a := _assessment_for(session, v)) is not None]
                query = query.where(Assessment.id.in_(assessment_ids) if assessment_ids else false())
            elif name == "target":
                kind, _, ref = raw.rstrip("/").rpartition("/")
                if kind.endswith("Patient"):
                    query = query.where(Assessment.patient_id == ref)
                else:
                    sub = select(Report.assessment_id).where(Report.fhir_id == ref)
                    query = query.where(Assessment.id.in_(sub))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(
        session.scalars(query.order_by(Assessment.created_at.desc(), Assessment.id.desc()).offset(offset).limit(count))
    )
    return Page([provenance_resource(session, settings, a) for a in rows], total, offset, count)
