"""Flask application factory: authentication, error translation (one place), blueprints."""

from __future__ import annotations

import logging

from flask import Flask, Response, abort, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from service.api.bodies import fhir_response, load_json_body
from service.api.context import AppContext, ctx
from service.ingest.fhir_ingest import FhirError, operation_outcome
from service.ops.config import Settings, load_settings
from service.ops.logs import configure_pseudonyms
from service.persistence.db import DatabaseUnavailable
from service.persistence.store import audit
from service.security.auth import Principal

logger = logging.getLogger(__name__)

PROTECTED_PREFIXES = ("/fhir", "/api", "/ui")


def _error_response(status: int, diagnostics: str, code: str = "invalid", error: FhirError | None = None) -> Response:
    if request.path.startswith("/fhir"):
        return fhir_response(operation_outcome(error, code=code, diagnostics=diagnostics), status)
    response = jsonify({"error": diagnostics, "status": status})
    response.status_code = status
    return response


def _bearer_principal(context: AppContext, token: str | None) -> Principal | Response:
    """The caller of a bearer (or ``?token=``) request, or the refusal: audited, and on a page the HTML sign-in
    form (contract §9.4: a person never gets a JSON error), elsewhere JSON or an OperationOutcome."""
    from service.security.auth import AuthError, authenticate

    def body():
        try:
            return load_json_body(request.get_data(cache=True))
        except FhirError:  # the handler refuses the body itself, with the reason
            return None

    try:
        return authenticate(
            context.settings, context.api_token, token=token, method=request.method, path=request.path, body_loader=body
        )
    except AuthError as refused:
        try:
            with context.db.write() as session:
                audit(
                    session,
                    action="E",
                    kind="auth-failure" if refused.status == 401 else "access-denied",
                    source="api",
                    outcome="4",
                    agent=refused.agent,
                    detail={
                        "path": request.path,
                        "method": request.method,
                        "status": refused.status,
                        "reason": refused.reason if token else "missing token",
                    },
                )
        except DatabaseUnavailable:
            pass
        if request.path.startswith("/ui"):
            from service.api.signin import sign_in_page

            return sign_in_page(401, "That token is not valid here." if token else None)
        response = _error_response(
            refused.status, refused.reason, code="login" if refused.status == 401 else "forbidden"
        )
        response.headers["WWW-Authenticate"] = refused.www_authenticate
        return response


def _authenticate() -> Response | None:
    """Authentication and scope checks on /fhir, /api and /ui (``service.security.auth``); refusals are audited.

    /fhir/metadata, /healthz, /readyz, /metrics and /cds-services (which checks the EHR's JWT itself) stay open,
    and so do the sign-in pages (``service.api.signin``). Pages take a bearer token, the signed session cookie or
    ``?token=`` (turned into a session by the page blueprint). Accesses the handlers cannot audit themselves are
    audited after the answer: failures (their transaction rolled back) and page views.
    """
    from flask import after_this_request

    from service.api import signin
    from service.security.auth import bearer_token

    if not request.path.startswith(PROTECTED_PREFIXES) or request.path == "/fhir/metadata":
        return None
    on_pages = request.path.startswith("/ui")
    if on_pages and request.path.startswith(signin.PUBLIC_PATHS):
        return None
    context = ctx()
    token = bearer_token(request.headers)
    ui_session = signin.read_session() if on_pages and token is None else None
    principal: Principal | Response
    if ui_session is not None:
        if not signin.allowed_for_session(request.path, ui_session):
            abort(403, description="this session was opened from the EHR for one patient; sign in for the others")
        principal = ui_session.principal()
        g.ui_session = ui_session
    else:
        if token is None and on_pages:
            token = request.args.get("token")
        principal = _bearer_principal(context, token)
        if isinstance(principal, Response):
            return principal
    g.agent = principal.agent
    g.principal = principal

    @after_this_request
    def audit_outcome(response: Response) -> Response:
        failed = response.status_code >= 400
        page_view = request.path.startswith("/ui") and request.method == "GET" and not failed
        if not (failed or page_view):
            return response
        parts = request.path.strip("/").split("/")
        patient_id = parts[2] if page_view and len(parts) >= 3 and parts[1] == "patients" else None
        try:
            with context.db.write() as session:
                audit(
                    session,
                    action="R" if request.method in ("GET", "HEAD") else "E",
                    kind="access-failed" if failed else "ui-read",
                    source="api",
                    outcome=("8" if response.status_code >= 500 else "4") if failed else "0",
                    agent=principal.agent,
                    patient_id=patient_id,
                    entity_type="Patient" if patient_id else None,
                    entity_ref=patient_id,
                    detail={"path": request.path, "method": request.method, "status": response.status_code},
                )
        except Exception:  # noqa: BLE001 - the answer goes out even if the audit database is unreachable
            logger.warning("access outcome not audited", extra={"fields": {"status": response.status_code}})
        return response

    return None


NO_STORE_PREFIXES = ("/fhir", "/api", "/ui", "/cds-services")
"""Every answer under these may carry patient data (contract §9.5)."""


def _private_headers(response: Response) -> Response:
    """Answers that may carry patient data are neither cached (by the browser or a proxy) nor content-sniffed."""
    if request.path.startswith(NO_STORE_PREFIXES):
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    from service.security.auth import check_settings

    check_settings(settings)  # a misconfigured authentication fails at start, not at the first request
    configure_pseudonyms(settings.pseudonym_key, settings.var_dir)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    app.extensions["immunorad"] = AppContext(settings)

    from service.api.audit_fhir_api import blueprint as audit_fhir
    from service.api.cds import blueprint as cds
    from service.api.fhir import blueprint as fhir
    from service.api.health import blueprint as health
    from service.api.quality_api import blueprint as quality_api
    from service.api.rest import blueprint as rest
    from service.api.signin import blueprint as signin
    from service.api.ui import blueprint as ui

    for blueprint in (health, audit_fhir, fhir, rest, quality_api, cds, signin, ui):
        app.register_blueprint(blueprint)

    from service.api.limits import ChunkedBodyLimit, check_url

    app.wsgi_app = ChunkedBodyLimit(app.wsgi_app, settings.max_request_bytes)  # type: ignore[method-assign]  # Flask's documented way to add WSGI middleware
    app.before_request(lambda: check_url(settings))  # before authentication: nothing else reads an oversize URL
    app.before_request(_authenticate)
    app.after_request(_private_headers)

    @app.errorhandler(FhirError)
    def _fhir_error(error: FhirError):
        return _error_response(error.status, error.diagnostics, error.code, error)

    @app.errorhandler(DatabaseUnavailable)
    def _db_down(error: DatabaseUnavailable):
        return _error_response(503, "the database is unavailable, retry later", "transient")

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        codes = {
            400: "invalid",
            404: "not-found",
            405: "not-supported",
            406: "not-supported",
            413: "too-costly",
            414: "too-long",
            415: "not-supported",
        }
        status = error.code or 500
        message = f"request larger than {settings.max_request_bytes} bytes" if status == 413 else error.description
        return _error_response(status, message or "", codes.get(status, "processing"))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        logger.exception("unhandled error")
        return _error_response(500, "internal error", "exception")

    return app
