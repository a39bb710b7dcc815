"""CDS Hooks 2.0 (contract §6): discovery and the ``patient-view`` service returning alert cards."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, g, jsonify, request
from sqlalchemy import select

from fhir_mappings.cds_hooks import cards_for, discovery_document
from service.api.app import load_json_body
from service.api.context import ctx
from service.fhir_ingest import FhirError
from service.evaluation import alert_state
from service.models import Alert, AuditEvent, Patient, utcnow
from service.store import audit

blueprint = Blueprint("cds", __name__, url_prefix="/cds-services")
SERVICE_ID = "immunorad-alerts"


@blueprint.before_request
def _verify_client():
    """CDS Hooks 2.0 security: every service call carries the EHR's signed JWT (``service.auth.verify_cds_jwt``).

    Discovery stays open (it lists no patient data). A ``jti`` seen before within the token lifetime is a
    replay. Accepted calls and refusals are audited.
    """
    from service.auth import (
        CDS_MAX_LIFETIME_SECONDS,
        LEEWAY_SECONDS,
        AuthError,
        bearer_token,
        cds_endpoint_url,
        jti_key,
        verify_cds_jwt,
    )

    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    settings = ctx().settings
    endpoint = cds_endpoint_url(settings, request.base_url, request.path)
    token = bearer_token(request.headers)
    try:
        principal = verify_cds_jwt(settings, token, endpoint)
        with ctx().db.write() as session:
            if principal.method == "cds-jwt":
                key = jti_key(principal.issuer or "", str(principal.claims["jti"]))
                since = utcnow() - dt.timedelta(seconds=CDS_MAX_LIFETIME_SECONDS + LEEWAY_SECONDS)
                replayed = session.scalars(
                    select(AuditEvent.id)
                    .where(
                        AuditEvent.kind == "cds-auth",
                        AuditEvent.entity_ref == key,
                        AuditEvent.outcome == "0",
                        AuditEvent.recorded >= since,
                    )
                    .limit(1)
                ).first()
                if replayed is not None:
                    raise AuthError(401, "the token's jti was used before (replay)", agent=principal.agent)
                audit(
                    session,
                    action="E",
                    kind="cds-auth",
                    source="api",
                    agent=principal.agent,
                    entity_type="JWT",
                    entity_ref=key,
                    detail={"path": request.path, "sub": principal.subject},
                )
    except AuthError as refused:
        with ctx().db.write() as session:
            audit(
                session,
                action="E",
                kind="auth-failure",
                source="api",
                outcome="4",
                agent=refused.agent,
                detail={
                    "path": request.path,
                    "method": request.method,
                    "status": refused.status,
                    "reason": refused.reason,
                },
            )
        response = jsonify({"error": refused.reason})
        response.status_code = refused.status
        response.headers["WWW-Authenticate"] = refused.www_authenticate
        return response
    g.agent = principal.agent
    return None


@blueprint.get("")
@blueprint.get("/")
def discovery():
    return jsonify(discovery_document())


class PrefetchMissing(Exception):
    """The Patient is neither prefetched nor fetchable from the EHR: CDS Hooks answers 412."""


def _patient_resource(payload: dict) -> dict:
    """The Patient the EHR prefetched (template ``Patient/{{context.patientId}}``), or fetched from
    ``fhirServer`` with the ``fhirAuthorization`` it granted (CDS Hooks 2.0: the service may query the EHR)."""
    prefetch = payload.get("prefetch") if isinstance(payload.get("prefetch"), dict) else {}
    resource = prefetch.get("patient")
    if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
        return resource
    server = payload.get("fhirServer")
    authorization = payload.get("fhirAuthorization") if isinstance(payload.get("fhirAuthorization"), dict) else None
    if server and authorization and authorization.get("access_token"):
        import requests

        try:
            response = requests.get(
                f"{str(server).rstrip('/')}/Patient/{payload['context']['patientId']}",
                headers={"Authorization": f"Bearer {authorization['access_token']}", "Accept": "application/fhir+json"},
                timeout=(3, 5),
            )
            if response.status_code == 200 and response.json().get("resourceType") == "Patient":
                return response.json()
        except (requests.RequestException, ValueError):
            pass
    raise PrefetchMissing(
        "the Patient is required: prefetch it (Patient/{{context.patientId}}) or grant fhirAuthorization"
    )


def _find_patient(session, resource: dict) -> Patient | None:
    """Our patient, through the Patient's identifiers (contract §6), never by the EHR's own id."""
    settings = ctx().settings
    for identifier in resource.get("identifier") or []:
        if identifier.get("system") == settings.patient_id_system and identifier.get("value"):
            found = session.scalars(select(Patient).where(Patient.mrn == str(identifier["value"]))).first()
            if found is not None:
                return found
    return None


def _payload() -> dict | None:
    """The request's JSON object; ``None`` when the body is not JSON, nests too deep, or is not an object."""
    try:
        payload = load_json_body(request.get_data(cache=True))
    except FhirError:
        return None
    return payload if isinstance(payload, dict) else None


@blueprint.post(f"/{SERVICE_ID}")
def patient_view():
    payload = _payload()
    if not isinstance(payload, dict) or payload.get("hook") != "patient-view" or "hookInstance" not in payload:
        return jsonify({"error": "a CDS Hooks patient-view request (hook, hookInstance, context) is required"}), 400
    if not isinstance(payload.get("context"), dict) or not payload["context"].get("patientId"):
        return jsonify({"error": "context.patientId is required"}), 400
    try:
        resource = _patient_resource(payload)
    except PrefetchMissing as missing:
        return jsonify({"error": str(missing)}), 412
    with ctx().db.write() as session:
        patient = _find_patient(session, resource)
        if patient is None:
            return jsonify({"cards": []})
        alerts = list(
            session.scalars(
                select(Alert)
                .where(Alert.patient_id == patient.id, Alert.status == "active")
                .order_by(Alert.scan_date, Alert.identifier)
            )
        )
        states = [alert_state(a) for a in alerts]
        audit(
            session,
            action="R",
            kind="cds-hooks",
            source="api",
            agent=g.get("agent"),
            entity_type="Patient",
            entity_ref=patient.id,
            patient_id=patient.id,
            detail={"hook": "patient-view", "cards": len(states)},
        )
    page = f"{ctx().settings.base_url}/ui/patients/{patient.id}"
    return jsonify({"cards": cards_for(states, patient_page_url=page)})


@blueprint.post(f"/{SERVICE_ID}/feedback")
def feedback():
    payload = _payload()
    if payload is None or not isinstance(payload.get("feedback", []), list):
        return jsonify({"error": "a CDS Hooks feedback request (an object with a feedback list) is required"}), 400
    with ctx().db.write() as session:
        audit(
            session,
            action="C",
            kind="cds-feedback",
            source="api",
            agent=g.get("agent"),
            detail={"feedback": payload.get("feedback", [])[:50]},
        )
    return jsonify({})
