"""CDS Hooks 2.0 (contract §6): discovery and the ``patient-view`` service returning alert cards."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flask import Blueprint, g, jsonify, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from fhir_mappings.cds_hooks import cards_for, discovery_document
from service.api.bodies import load_json_body
from service.api.context import ctx
from service.assessment.evaluation import alert_state
from service.ingest.fhir_ingest import FhirError
from service.persistence.models import Alert, Patient, UsedJti, utcnow
from service.persistence.store import audit
from service.publish import acknowledge
from service.security.cds_fetch import FetchRefused, resource_url

logger = logging.getLogger(__name__)
blueprint = Blueprint("cds", __name__, url_prefix="/cds-services")
SERVICE_ID = "immunorad-alerts"


def _remember_jti(session, principal) -> bool:
    """Record the token's ``jti`` until the token expires; ``False`` when it was used before (a replay)."""
    from service.security.auth import LEEWAY_SECONDS, jti_key

    now = utcnow()
    key = jti_key(principal.issuer or "", str(principal.claims["jti"]))
    session.execute(delete(UsedJti).where(UsedJti.expires_at < now))
    if session.get(UsedJti, key) is not None:
        return False
    expires = dt.datetime.fromtimestamp(float(principal.claims["exp"]) + LEEWAY_SECONDS, dt.UTC)
    session.add(UsedJti(key=key, expires_at=expires))
    session.flush()  # a concurrent use of the same jti in another worker collides here (IntegrityError)
    return True


def _accept(principal) -> None:
    """Replay check and audit of an accepted call, in one transaction; ``AuthError`` for a replay."""
    from service.security.auth import AuthError, jti_key

    signed = principal.method == "cds-jwt"
    try:
        with ctx().db.write() as session:
            if signed and not _remember_jti(session, principal):
                raise AuthError(401, "the token's jti was used before (replay)", agent=principal.agent)
            audit(
                session,
                action="E",
                kind="cds-auth",
                source="api",
                agent=principal.agent,
                entity_type="JWT" if signed else None,
                entity_ref=jti_key(principal.issuer or "", str(principal.claims["jti"])) if signed else None,
                detail={"path": request.path, "sub": principal.subject, "method": principal.method},
            )
    except IntegrityError as exc:
        raise AuthError(401, "the token's jti was used before (replay)", agent=principal.agent) from exc


@blueprint.before_request
def _verify_client():
    """CDS Hooks 2.0 security: every service and feedback call carries the EHR's signed JWT
    (``service.security.auth.verify_cds_jwt``); with IMMUNORAD_CDS_AUTH=jwt (the default) and no issuer registered every
    such call is 401 (contract §9.5).

    Discovery (GET) and CORS preflights (OPTIONS) stay open: they carry no patient data. A ``jti`` seen before,
    until its token expires, is a replay. Accepted calls and refusals are audited.
    """
    from service.security.auth import AuthError, bearer_token, cds_endpoint_url, verify_cds_jwt

    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    settings = ctx().settings
    endpoint = cds_endpoint_url(settings, request.path)
    token = bearer_token(request.headers)
    try:
        principal = verify_cds_jwt(settings, token, endpoint)
        _accept(principal)
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
    g.cds_principal = principal
    return None


@blueprint.after_request
def _cors(response):
    """CDS Hooks clients may run in a browser (the EHR's web front end, the CDS Hooks sandbox): the services
    answer cross-origin requests. Credentials are the JWT in ``Authorization``, never cookies, so any origin
    may call; the JWT decides who gets an answer."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
    response.headers["Access-Control-Expose-Headers"] = "WWW-Authenticate"
    response.headers["Access-Control-Max-Age"] = "600"
    return response


@blueprint.get("")
@blueprint.get("/")
def discovery():
    return jsonify(discovery_document())


class PrefetchMissing(Exception):
    """The Patient is neither prefetched nor fetchable from the EHR: CDS Hooks answers 412."""


def _patient_resource(payload: dict) -> dict:
    """The Patient the EHR prefetched (template ``Patient/{{context.patientId}}``), or read from ``fhirServer``
    with the ``fhirAuthorization`` it granted (CDS Hooks 2.0: the service may query the EHR) — only when
    ``fhirServer`` is the configured FHIR base of the call's verified issuer, off the request threads, with a
    short deadline (``service.security.cds_fetch``, contract §9.5)."""
    from service.security.auth import cds_fhir_server

    prefetch: dict[str, Any] = payload["prefetch"] if isinstance(payload.get("prefetch"), dict) else {}
    resource = prefetch.get("patient")
    if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
        return resource
    principal = g.get("cds_principal")
    server = cds_fhir_server(ctx().settings, principal, payload.get("fhirServer")) if principal else None
    authorization = payload.get("fhirAuthorization") if isinstance(payload.get("fhirAuthorization"), dict) else None
    token = authorization.get("access_token") if authorization else None
    patient_id = payload["context"]["patientId"]
    if server and isinstance(token, str) and token and isinstance(patient_id, str):
        try:
            fetched = ctx().fetcher.get_json(
                resource_url(server, "Patient", patient_id),
                {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
            )
        except FetchRefused as refused:
            logger.warning(
                "CDS Hooks: the Patient could not be read from the EHR", extra={"fields": {"reason": str(refused)}}
            )
        else:
            if fetched.get("resourceType") == "Patient":
                return fetched
    raise PrefetchMissing(
        "the Patient is required: prefetch it (Patient/{{context.patientId}}) or grant fhirAuthorization "
        "on the FHIR server registered for this EHR"
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
    settings = ctx().settings
    base = settings.base_url.rstrip("/")
    launch = f"{base}/ui/launch" if settings.smart_client_id and settings.smart_issuers else None
    cards = cards_for(
        states, patient_page_url=f"{base}/ui/patients/{patient.id}", smart_launch_url=launch, app_context=patient.id
    )
    return jsonify({"cards": cards})


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
        # accepted/overridden on a card of ours acknowledges its alert (contract §9.7), with the override reason.
        acknowledge.record_feedback(
            session, ctx().settings.fhir_canonical, payload.get("feedback", [])[:50], agent=g.get("agent")
        )
    return jsonify({})
