"""``/api``: JSON for timelines, assessments (every version), alerts, deliveries and the audit export."""

from __future__ import annotations

import csv
import io
import json

from flask import Blueprint, Response, abort, g, jsonify, request
from sqlalchemy import select

from service.api import params
from service.api.context import ctx
from service.ingest.segmentation import segments_listing
from service.ops.logs import pseudonym
from service.persistence.models import Alert, Assessment, AuditEvent, OutboxMessage, Patient, Report
from service.persistence.store import audit, pending_inputs

blueprint = Blueprint("rest", __name__, url_prefix="/api")

AUDIT_LIMIT_MAX = 5000
"""Most audit events one ``GET /api/audit`` returns (the CSV export has them all)."""
LIST_LIMIT = 1000
ALERT_STATUSES = ("active", "inactive", "entered-in-error")


def _patient(session, patient_id: str) -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None:
        patient = session.scalars(select(Patient).where(Patient.mrn == patient_id)).first()
    if patient is None:
        abort(404, description="unknown patient")
    return patient


def _audit_read(session, **what) -> None:
    """Every /api read is audited the same way (contract §7): who, that it was a read, and of what."""
    audit(session, agent=g.get("agent"), action="R", kind="api-read", source="api", **what)


def _iso(value):
    return value.isoformat() if value is not None else None


@blueprint.get("/patients")
def patients():
    params.parse({})
    with ctx().db.write() as session:
        _audit_read(session, entity_type="Patient", detail={"list": "patients"})
        rows = list(session.scalars(select(Patient).order_by(Patient.created_at)))
        latest = {}
        for a in session.scalars(select(Assessment).order_by(Assessment.patient_id, Assessment.version)):
            latest[a.patient_id] = a
        out = []
        for p in rows:
            a = latest.get(p.id)
            out.append(
                {
                    "id": p.id,
                    "identifier": p.mrn,
                    "assessment_version": a.version if a else None,
                    "baseline": a.result.get("baseline_date") if a else None,
                    "followups": len(a.result.get("followup_dates", [])) if a else 0,
                    "active_alerts": len(
                        list(
                            session.scalars(select(Alert.id).where(Alert.patient_id == p.id, Alert.status == "active"))
                        )
                    ),
                }
            )
    return jsonify({"patients": out})


@blueprint.get("/patients/<patient_id>")
def patient_timeline(patient_id: str):
    params.parse({})
    """The latest assessment: lesion table, every criterion side by side, best responses, findings."""
    with ctx().db.write() as session:
        patient = _patient(session, patient_id)
        latest = session.scalars(
            select(Assessment).where(Assessment.patient_id == patient.id).order_by(Assessment.version.desc()).limit(1)
        ).first()
        reports = list(
            session.scalars(select(Report).where(Report.patient_id == patient.id).order_by(Report.scan_date))
        )
        _audit_read(session, entity_type="Patient", entity_ref=patient.id, patient_id=patient.id)
        body = {
            "patient": {"id": patient.id, "identifier": patient.mrn, "sex": patient.sex},
            "assessment": latest.result if latest else None,
            "assessment_version": latest.version if latest else None,
            "rulebase_version": latest.rulebase_version if latest else None,
            "inputs_hash": latest.inputs_hash if latest else None,
            "best_overall_response": {
                c["criterion"]: {"unconfirmed": c.get("best_response"), "confirmed": c.get("best_response_confirmed")}
                for c in (latest.result.get("criteria", []) if latest else [])
            },
            "reports": [
                {
                    "id": r.fhir_id,
                    "scan_date": _iso(r.scan_date),
                    "version": r.version,
                    "status": r.status,
                    "identifier": r.identifier,
                }
                for r in reports
            ],
            "pending": pending_inputs(session, patient.id),
            "segments": segments_listing(session, patient.id),
        }
    return jsonify(body)


@blueprint.get("/patients/<patient_id>/segments")
def patient_segments(patient_id: str):
    """The segments of the patient's DICOM SEGs (contract §9.6): lesion, body-composition and other segments, with
    their volume, or why they were not computed."""
    params.parse({})
    with ctx().db.write() as session:
        patient = _patient(session, patient_id)
        _audit_read(session, entity_type="Segment", patient_id=patient.id)
        return jsonify({"segments": segments_listing(session, patient.id)})


@blueprint.get("/patients/<patient_id>/pending")
def patient_pending(patient_id: str):
    """The patient's inputs that wait for another object (contract §9.3 "SR order"), with their reason."""
    params.parse({})
    with ctx().db.write() as session:
        patient = _patient(session, patient_id)
        _audit_read(session, entity_type="PendingInput", patient_id=patient.id)
        return jsonify({"pending": pending_inputs(session, patient.id)})


@blueprint.get("/pending")
def all_pending():
    """Every pending input, including those not tied to a patient yet (a dcmjs SR names no patient: its images
    do)."""
    params.parse({})
    with ctx().db.write() as session:
        _audit_read(session, entity_type="PendingInput")
        return jsonify({"pending": pending_inputs(session)})


@blueprint.get("/patients/<patient_id>/assessments")
def assessments(patient_id: str):
    full = params.parse({"full": params.boolean}).get("full", False)
    with ctx().db.write() as session:
        patient = _patient(session, patient_id)
        _audit_read(session, entity_type="Assessment", entity_ref=patient.id, patient_id=patient.id)
        rows = list(
            session.scalars(select(Assessment).where(Assessment.patient_id == patient.id).order_by(Assessment.version))
        )
        out = [
            {
                "version": a.version,
                "created_at": _iso(a.created_at),
                "inputs_hash": a.inputs_hash,
                "rulebase_version": a.rulebase_version,
                "trigger": a.trigger,
                "changes": a.changes,
                "result": a.result if full else None,
            }
            for a in rows
        ]
    return jsonify({"patient": patient.id, "assessments": out})


@blueprint.get("/alerts")
def alerts():
    args = params.parse({"status": params.choice(*ALERT_STATUSES), "patient": params.identifier})
    status, patient = args.get("status"), args.get("patient")
    with ctx().db.write() as session:
        _audit_read(session, entity_type="Flag", patient_id=patient, detail={"list": "alerts"})
        query = select(Alert).order_by(Alert.updated_at.desc())
        if status:
            query = query.where(Alert.status == status)
        if patient:
            query = query.where(Alert.patient_id == patient)
        out = [
            {
                "identifier": a.identifier,
                "patient": a.patient_id,
                "code": a.code,
                "key": a.key,
                "status": a.status,
                "severity": a.severity,
                "scan_date": _iso(a.scan_date),
                "summary": a.summary,
                "detail": a.detail,
                "rule": a.rule,
                "source": a.source,
                "updated_at": _iso(a.updated_at),
            }
            for a in session.scalars(query.limit(LIST_LIMIT))
        ]
    return jsonify({"alerts": out})


@blueprint.post("/alerts/<path:identifier>/entered-in-error")
def alert_entered_in_error(identifier: str):
    params.parse({})
    with ctx().db.write() as session:
        alert = session.scalars(select(Alert).where(Alert.identifier == identifier)).first()
        if alert is None:
            abort(404, description="unknown alert")
        alert.status = "entered-in-error"
        audit(
            session,
            agent=g.get("agent"),
            action="U",
            kind="alert-entered-in-error",
            source="api",
            entity_type="Flag",
            entity_ref=identifier,
            patient_id=alert.patient_id,
        )
        from service.persistence.store import enqueue

        # The inputs did not change, so only a forced evaluation re-issues the Flag with its new status.
        enqueue(
            session,
            "evaluate",
            f"evaluate-force:{alert.patient_id}",
            patient_id=alert.patient_id,
            payload={"trigger": "alert-status", "force": True},
        )
    return jsonify({"identifier": identifier, "status": "entered-in-error"})


@blueprint.get("/deliveries")
def deliveries():
    status = params.parse({"status": params.choice("pending", "delivered", "failed")}).get("status")
    with ctx().db.write() as session:
        _audit_read(session, entity_type="Bundle", detail={"list": "deliveries"})
        query = select(OutboxMessage).order_by(OutboxMessage.id.desc())
        if status:
            query = query.where(OutboxMessage.status == status)
        out = [
            {
                "id": m.id,
                "patient": m.patient_id,
                "report": m.report_identifier,
                "version": m.report_version,
                "status": m.status,
                "attempts": m.attempts,
                "last_status_code": m.last_status_code,
                "last_error": m.last_error,
                "created_at": _iso(m.created_at),
                "delivered_at": _iso(m.delivered_at),
                "next_attempt_at": _iso(m.next_attempt_at),
            }
            for m in session.scalars(query.limit(LIST_LIMIT))
        ]
    return jsonify({"deliveries": out})


@blueprint.get("/reports/<report_id>/prefill")
def report_prefill(report_id: str):
    """The pre-filled "Response assessment" section, for a reporting system to pull (text or HTML)."""
    import base64

    from service.persistence.fhir_store import get_resource

    form = params.parse({"format": params.choice("text", "html")}).get("format")

    with ctx().db.write() as session:
        row = get_resource(session, "DiagnosticReport", report_id)
        if row is None:
            abort(404, description="unknown report")
        audit(
            session,
            agent=g.get("agent"),
            action="R",
            kind="prefill-read",
            source="api",
            entity_type="DiagnosticReport",
            entity_ref=report_id,
            patient_id=row.patient_id,
        )
        forms = {
            f["contentType"].split(";")[0]: base64.b64decode(f["data"]).decode("utf-8")
            for f in row.content.get("presentedForm", [])
        }
    wanted = "text/html" if "html" in (form or request.headers.get("Accept", "")) else "text/plain"
    return Response(forms.get(wanted, ""), mimetype=wanted, headers={"Content-Type": f"{wanted}; charset=utf-8"})


AUDIT_COLUMNS = [
    "id",
    "recorded",
    "action",
    "kind",
    "outcome",
    "agent",
    "source",
    "entity_type",
    "entity_ref",
    "patient",
    "detail",
]


@blueprint.get("/audit")
def audit_events():
    limit = params.parse({"limit": params.integer(1, AUDIT_LIMIT_MAX)}).get("limit", 500)
    with ctx().db.read() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)))
        out = [_audit_row(e, pseudonymise=False) for e in rows]
    return jsonify({"events": out})


def _audit_row(event: AuditEvent, *, pseudonymise: bool) -> dict:
    return {
        "id": event.id,
        "recorded": _iso(event.recorded),
        "action": event.action,
        "kind": event.kind,
        "outcome": event.outcome,
        "agent": event.agent,
        "source": event.source,
        "entity_type": event.entity_type,
        "entity_ref": pseudonym(event.entity_ref)
        if pseudonymise and event.entity_type in ("Patient",)
        else event.entity_ref,
        "patient": pseudonym(event.patient_id) if pseudonymise else event.patient_id,
        "detail": json.dumps(event.detail, sort_keys=True, default=str),
    }


@blueprint.get("/audit/export.csv")
def audit_export():
    """RFC 4180 CSV of the audit trail, pseudonymised by default (``?pseudonymise=false`` to opt out)."""
    pseudonymise = params.parse({"pseudonymise": params.boolean}).get("pseudonymise", True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=AUDIT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    with ctx().db.write() as session:
        for event in session.scalars(select(AuditEvent).order_by(AuditEvent.id)):
            writer.writerow(_audit_row(event, pseudonymise=pseudonymise))
        audit(
            session,
            agent=g.get("agent"),
            action="R",
            kind="audit-export",
            source="api",
            detail={"pseudonymised": pseudonymise},
        )
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": "attachment; filename=immunorad-audit.csv",
        },
    )


@blueprint.post("/reports/<report_id>/sign-off")
def report_sign_off(report_id: str):
    """The radiologist's signed category for one criterion at this timepoint (contract §9.7); an amendment is a new
    sign-off, the earlier ones stay as history. ``report_id``: our DiagnosticReport id or its identifier value."""
    from fhir_mappings.codes import LocalSystems
    from service.api.bodies import load_json_body
    from service.assessment import signoff
    from service.ingest.fhir_ingest import FhirError

    params.parse({})
    body = load_json_body(request.get_data(cache=False))
    systems = LocalSystems.from_canonical(ctx().settings.fhir_canonical)
    with ctx().db.write() as session:
        report = signoff.report_by_id(session, report_id)
        if report is None:
            abort(404, description="unknown report")
        try:
            wanted = signoff.check_request(body)
            row = signoff.record(session, systems, report, wanted, route="api", agent=g.get("agent"))
        except signoff.SignOffError as exc:
            raise FhirError(exc.status, exc.message, code=exc.code, expression=exc.expression) from exc
        out = signoff.as_json(row, current=True)
    return jsonify(out), 201


@blueprint.get("/patients/<patient_id>/sign-offs")
def patient_sign_offs(patient_id: str):
    """Every sign-off of a patient, oldest first, each marked current or superseded (an amendment's history)."""
    from service.assessment import signoff

    params.parse({})
    with ctx().db.write() as session:
        patient = _patient(session, patient_id)
        _audit_read(session, entity_type="Patient", patient_id=patient.id, detail={"list": "sign-offs"})
        out = signoff.patient_sign_offs(session, patient.id)
    return jsonify({"sign_offs": out})


@blueprint.post("/alerts/<path:identifier>/acknowledge")
def alert_acknowledge(identifier: str):
    """Someone acted on the alert (contract §9.7): ``{"by", "comment"}``; recorded with the time, audited."""
    from service.api.bodies import load_json_body
    from service.ingest.fhir_ingest import FhirError
    from service.publish import acknowledge

    params.parse({})
    body = load_json_body(request.get_data(cache=False))
    try:
        by, comment = acknowledge.check_request(body)
    except acknowledge.AcknowledgementError as exc:
        raise FhirError(400, exc.message, code="invalid") from exc
    with ctx().db.write() as session:
        alert = session.scalars(select(Alert).where(Alert.identifier == identifier)).first()
        if alert is None:
            abort(404, description="unknown alert")
        row = acknowledge.record(
            session, alert, route="api", outcome="acknowledged", by=by, comment=comment, at=None, agent=g.get("agent")
        )
        out = {
            "identifier": identifier,
            "by": row.by,
            "comment": row.comment,
            "acknowledged_at": _iso(row.acknowledged_at),
            "acknowledgements": acknowledge.alert_acknowledgements(session, alert),
        }
    return jsonify(out), 201
