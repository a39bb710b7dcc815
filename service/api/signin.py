"""Sign-in for people on ``/ui`` (contract §9.4 "Pages in a browser"): an API-token form and SMART App Launch.

A browser without a credential gets an HTML sign-in page, never a JSON error. Two ways in, both ending in the
same **session cookie** (``immunorad_session``): a value signed with a key derived from the API token
(itsdangerous, HMAC-SHA256; a new API token ends every session), ``HttpOnly``, ``SameSite=Strict``, ``Secure``
(except over plain HTTP to a host that is not loopback, where a browser would drop it), limited to ``/ui`` and to
IMMUNORAD_UI_SESSION_HOURS. The cookie never holds the API token itself.

- **API token** — ``GET /ui/sign-in`` shows the form; ``POST /ui/sign-in`` checks the token (constant time).
  Login CSRF: a double-submit token (cookie ``immunorad_csrf`` + hidden field) and, when the browser sends it,
  an ``Origin`` that is ours. ``POST /ui/sign-out`` needs the session's own CSRF token.
- **SMART App Launch 2.x, EHR launch** (HL7 SMART App Launch IG STU 2, "app-launch" §EHR launch, PKCE S256):
  the EHR opens ``/ui/launch?iss=…&launch=…``. Only an ``iss`` listed in IMMUNORAD_SMART_ISSUERS is contacted
  (no fetch of an arbitrary URL); its ``{iss}/.well-known/smart-configuration`` gives the authorization and token
  endpoints. We redirect to the authorization endpoint with ``response_type=code``, ``client_id``,
  ``redirect_uri`` (``{base}/ui/callback``), ``launch``, ``scope``, ``state``, ``aud`` = iss and a PKCE
  ``code_challenge`` (S256); state, verifier and issuer wait in a signed, ten-minute, ``SameSite=Lax`` cookie
  (the EHR's redirect back is a cross-site top-level navigation, which a Strict cookie would not follow).
  ``/ui/callback`` checks ``state``, exchanges the code with the ``code_verifier``, takes ``patient`` from the
  token response, reads that Patient from the EHR with the access token and finds ours through its identifier
  (never by the EHR's own id). The session it opens is limited to that patient's pages.

Every sign-in, refusal and sign-out is audited (no token or patient data in the audit detail).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import requests
from flask import Blueprint, Response, abort, g, make_response, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from service.api.context import ctx
from service.api.pages import page_error, security_headers
from service.ops.config import Settings
from service.persistence.store import audit
from service.security.auth import Principal

_R = TypeVar("_R", bound=WerkzeugResponse)

blueprint = Blueprint("signin", __name__, url_prefix="/ui", template_folder="../templates")

SESSION_COOKIE = "immunorad_session"
CSRF_COOKIE = "immunorad_csrf"
LAUNCH_COOKIE = "immunorad_launch"
LAUNCH_SECONDS = 600
"""How long a SMART launch may take between our redirect to the EHR and its redirect back."""
EHR_TIMEOUT = (3, 5)
"""Connect and read timeouts of discovery, token and Patient requests to the EHR (they hold an HTTP worker)."""
PUBLIC_PATHS = ("/ui/sign-in", "/ui/sign-out", "/ui/launch", "/ui/callback", "/ui/static/")
"""``/ui`` paths open without a session (``service.api.app._authenticate``)."""


class SignInError(Exception):
    """A sign-in or launch step that cannot go on; shown to the person as an HTML page with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class UiSession:
    """What the session cookie carries."""

    agent: str
    """Who signed in, for the audit trail: ``ui:api-token`` or ``smart:<EHR host>:<fhirUser or sub>``."""
    csrf: str
    patient: str | None = None
    """Our patient id when the session comes from an EHR launch: only that patient's pages are open."""

    def principal(self) -> Principal:
        return Principal(
            agent=self.agent,
            method="ui-session",
            scopes=frozenset({"system/*.read"}),
            claims={"patient": self.patient} if self.patient else {},
        )


# -- cookies --------------------------------------------------------------------------------------------------
def _serializer(api_token: str, purpose: str) -> URLSafeTimedSerializer:
    key = hmac.new(api_token.encode(), f"immunorad-ui-{purpose}".encode(), hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(key, salt=purpose)


def _secure_cookie(settings: Settings) -> bool:
    """``Secure`` unless the page is served over plain HTTP to a host that is not loopback (a browser would
    then refuse the cookie and nobody could sign in); browsers keep Secure cookies of http://127.0.0.1."""
    if request.is_secure or (settings.public_url or "").startswith("https://"):
        return True
    host = (urlsplit(f"//{request.host}").hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_session() -> UiSession | None:
    """The request's valid session, or ``None`` (absent, tampered with, expired, or from an older API token)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    context = ctx()
    try:
        data = _serializer(context.api_token, "session").loads(
            raw, max_age=int(context.settings.ui_session_hours * 3600)
        )
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("agent"), str) or not isinstance(data.get("csrf"), str):
        return None
    return UiSession(agent=data["agent"], csrf=data["csrf"], patient=data.get("patient"))


def _open_session(response: _R, agent: str, patient: str | None = None) -> _R:
    context = ctx()
    value = _serializer(context.api_token, "session").dumps(
        {"agent": agent, "csrf": secrets.token_urlsafe(24), "patient": patient}
    )
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(context.settings.ui_session_hours * 3600),
        path="/ui",
        secure=_secure_cookie(context.settings),
        httponly=True,
        samesite="Strict",
    )
    return response


def session_from_token_url() -> WerkzeugResponse:
    """``/ui/…?token=`` (authenticated by the app): open a session and drop the token from the address."""
    args = request.args.to_dict(flat=False)
    args.pop("token", None)
    target = request.path + (f"?{urlencode(args, doseq=True)}" if args else "")
    return _open_session(redirect(target, code=303), "ui:api-token")


def _audit(kind: str, outcome: str, agent: str | None, patient_id: str | None = None, **detail: Any) -> None:
    with ctx().db.write() as session:
        audit(
            session,
            action="E",
            kind=kind,
            source="ui",
            outcome=outcome,
            agent=agent,
            patient_id=patient_id,
            entity_type="Patient" if patient_id else None,
            entity_ref=patient_id,
            detail=detail,
        )


# -- what a page needs ---------------------------------------------------------------------------------------
def allowed_for_session(path: str, ui_session: UiSession) -> bool:
    """A launch session opens only its patient's pages (and their reports, checked by the report page)."""
    if ui_session.patient is None:
        return True
    return path.rstrip("/") == f"/ui/patients/{ui_session.patient}" or path.startswith(("/ui/reports/", "/ui/static/"))


def check_patient_allowed(patient_id: str | None) -> None:
    """403 when the signed-in launch session belongs to another patient."""
    principal = g.get("principal")
    restricted = principal.claims.get("patient") if principal is not None else None
    if restricted and patient_id != restricted:
        abort(403, description="this session was opened from the EHR for another patient")


def _safe_next(target: str | None) -> str:
    """Only a path of ours: never an absolute or scheme-relative URL (no open redirect)."""
    if not target or not target.startswith("/ui") or target.startswith("//") or "\\" in target:
        return url_for("ui.patients")
    if target.startswith(PUBLIC_PATHS[:4]):
        return url_for("ui.patients")
    return target


def sign_in_page(status: int = 401, message: str | None = None, next_path: str | None = None) -> Response:
    """The sign-in form (with a fresh login-CSRF token) as an HTML answer."""
    settings = ctx().settings
    csrf = secrets.token_urlsafe(24)
    body = render_template(
        "signin.html",
        csrf=csrf,
        status=status,
        message=message,
        next_path=_safe_next(next_path if next_path is not None else request.full_path.rstrip("?")),
        token_file=str(settings.api_token_file) if not settings.api_token else None,
        smart_issuers=settings.smart_issuers if settings.smart_client_id else (),
        plain_http=not _secure_cookie(settings),
    )
    response = make_response(body, status)
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=3600,
        path="/ui",
        secure=_secure_cookie(settings),
        httponly=True,
        samesite="Strict",
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="immunorad"'
    return response


def _same_origin() -> bool:
    """A form POST's ``Origin`` must be ours. Our pages' ``Referrer-Policy: same-origin`` makes the browser send
    it on our own forms (``no-referrer`` would turn it into ``null``); an absent Origin (an older browser) leaves
    the decision to the CSRF token."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    ours = {request.host_url.rstrip("/"), (ctx().settings.public_url or "").rstrip("/")}
    return origin.rstrip("/") in ours


# -- API token -----------------------------------------------------------------------------------------------
@blueprint.get("/sign-in")
def sign_in_form():
    return sign_in_page(200, next_path=request.args.get("next"))


@blueprint.post("/sign-in")
def sign_in():
    next_path = request.form.get("next")
    sent_csrf = request.form.get("csrf", "")
    cookie_csrf = request.cookies.get(CSRF_COOKIE, "")
    if not (_same_origin() and cookie_csrf and hmac.compare_digest(sent_csrf.encode(), cookie_csrf.encode())):
        _audit("ui-sign-in", "4", None, reason="csrf check failed")
        return sign_in_page(403, "The form had expired. Please sign in again.", next_path)
    token = request.form.get("token", "").strip()
    if not token or not hmac.compare_digest(token.encode(), ctx().api_token.encode()):
        _audit("ui-sign-in", "4", None, reason="wrong token")
        return sign_in_page(401, "That is not the API token of this service.", next_path)
    _audit("ui-sign-in", "0", "ui:api-token", method="api-token")
    response = _open_session(redirect(_safe_next(next_path), code=303), "ui:api-token")
    response.delete_cookie(CSRF_COOKIE, path="/ui")
    return response


@blueprint.post("/sign-out")
def sign_out():
    current = read_session()
    if current is not None:
        sent = request.form.get("csrf", "")
        if not (_same_origin() and hmac.compare_digest(sent.encode(), current.csrf.encode())):
            abort(403, description="sign-out must come from our own page")
        _audit("ui-sign-out", "0", current.agent)
    response = sign_in_page(200, "You are signed out.", url_for("ui.patients"))
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


# -- SMART App Launch (EHR launch) ---------------------------------------------------------------------------
def _pkce_pair() -> tuple[str, str]:
    """RFC 7636: a 43–128 character verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _discover(iss: str) -> dict[str, Any]:
    try:
        answer = requests.get(
            f"{iss}/.well-known/smart-configuration", headers={"Accept": "application/json"}, timeout=EHR_TIMEOUT
        )
        config = answer.json() if answer.status_code == 200 else None
    except (requests.RequestException, ValueError) as exc:
        raise SignInError(502, "The EHR's SMART configuration could not be read.") from exc
    if not isinstance(config, dict) or not config.get("authorization_endpoint") or not config.get("token_endpoint"):
        raise SignInError(502, "The EHR's SMART configuration names no authorization and token endpoints.")
    methods = config.get("code_challenge_methods_supported")
    if methods is not None and "S256" not in methods:
        raise SignInError(502, "The EHR does not support PKCE with S256, which SMART App Launch 2 requires.")
    return config


def _redirect_uri(settings: Settings) -> str:
    return f"{settings.base_url.rstrip('/')}/ui/callback"


@blueprint.get("/launch")
def launch():
    settings = ctx().settings
    iss = (request.args.get("iss") or "").rstrip("/")
    launch_id = request.args.get("launch") or ""
    if not settings.smart_client_id or not settings.smart_issuers:
        raise SignInError(404, "SMART App Launch is not configured on this service (IMMUNORAD_SMART_CLIENT_ID).")
    if not iss or not launch_id:
        raise SignInError(400, "A SMART EHR launch needs the iss and launch parameters.")
    if iss not in settings.smart_issuers:
        _audit("ui-smart-launch", "4", None, reason="issuer not configured")
        raise SignInError(403, "This EHR is not configured to launch immunorad.")
    config = _discover(iss)
    verifier, challenge = _pkce_pair()
    state = secrets.token_urlsafe(24)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.smart_client_id,
            "redirect_uri": _redirect_uri(settings),
            "launch": launch_id,
            "scope": settings.smart_scope,
            "state": state,
            "aud": iss,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    endpoint = str(config["authorization_endpoint"])
    response = redirect(f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", code=302)
    pending = {"state": state, "verifier": verifier, "iss": iss, "token_endpoint": str(config["token_endpoint"])}
    response.set_cookie(
        LAUNCH_COOKIE,
        _serializer(ctx().api_token, "launch").dumps(pending),
        max_age=LAUNCH_SECONDS,
        path="/ui/callback",
        secure=_secure_cookie(settings),
        httponly=True,
        samesite="Lax",
    )
    return response


def _exchange_code(settings: Settings, pending: dict[str, str], code: str) -> dict[str, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": _redirect_uri(settings),
        "code_verifier": pending["verifier"],
        "client_id": settings.smart_client_id,
    }
    auth = (settings.smart_client_id or "", settings.smart_client_secret) if settings.smart_client_secret else None
    try:
        answer = requests.post(
            pending["token_endpoint"], data=form, auth=auth, headers={"Accept": "application/json"}, timeout=EHR_TIMEOUT
        )
        body = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise SignInError(502, "The EHR's token endpoint could not be reached.") from exc
    if answer.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
        raise SignInError(401, "The EHR did not grant access (the authorization code was refused).")
    return body


def _ehr_patient(pending: dict[str, str], token: dict[str, Any]) -> dict[str, Any]:
    patient = str(token.get("patient") or "")
    if not patient or "/" in patient:
        raise SignInError(400, "The EHR launch carries no patient in context.")
    try:
        answer = requests.get(
            f"{pending['iss']}/Patient/{patient}",
            headers={"Authorization": f"Bearer {token['access_token']}", "Accept": "application/fhir+json"},
            timeout=EHR_TIMEOUT,
        )
        resource = answer.json() if answer.status_code == 200 else None
    except (requests.RequestException, ValueError) as exc:
        raise SignInError(502, "The patient in context could not be read from the EHR.") from exc
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise SignInError(502, "The patient in context could not be read from the EHR.")
    return resource


def _user_of(token: dict[str, Any], iss: str) -> str:
    """``fhirUser`` or ``sub`` of the id_token when there is one (not verified: for the audit trail only)."""
    import jwt

    user = "ehr-user"
    if isinstance(token.get("id_token"), str):
        try:
            claims = jwt.decode(token["id_token"], options={"verify_signature": False})
            user = str(claims.get("fhirUser") or claims.get("sub") or user)
        except jwt.PyJWTError:
            pass
    return f"smart:{urlsplit(iss).netloc}:{user}"[:255]


@blueprint.get("/callback")
def callback():
    from service.api.cds import _find_patient

    settings = ctx().settings
    if request.args.get("error"):
        raise SignInError(401, "The EHR refused the launch: " + str(request.args.get("error"))[:80])
    try:
        pending = _serializer(ctx().api_token, "launch").loads(
            request.cookies.get(LAUNCH_COOKIE, ""), max_age=LAUNCH_SECONDS
        )
    except BadSignature as exc:
        raise SignInError(400, "This launch has expired or was not started here; open it again from the EHR.") from exc
    state = request.args.get("state", "")
    if not hmac.compare_digest(state.encode(), str(pending.get("state", "")).encode()) or not request.args.get("code"):
        _audit("ui-smart-launch", "4", None, reason="state mismatch")
        raise SignInError(400, "The launch's state does not match; open it again from the EHR.")
    token = _exchange_code(settings, pending, str(request.args["code"]))
    resource = _ehr_patient(pending, token)
    agent = _user_of(token, pending["iss"])
    with ctx().db.read() as session:
        ours = _find_patient(session, resource)
        patient_id = ours.id if ours is not None else None
    if patient_id is None:
        _audit("ui-smart-launch", "4", agent, reason="patient unknown here")
        raise SignInError(404, "immunorad holds no imaging assessment for this patient.")
    _audit("ui-smart-launch", "0", agent, patient_id=patient_id)
    target = url_for("ui.patient_page", patient_id=patient_id)
    # A page that moves on by itself rather than a redirect: the navigation that started at the EHR is
    # cross-site, and a SameSite=Strict cookie set now would not travel on a redirect of that navigation.
    response = _open_session(make_response(render_template("launched.html", target=target)), agent, patient_id)
    response.delete_cookie(LAUNCH_COOKIE, path="/ui/callback")
    return response


@blueprint.errorhandler(SignInError)
def _sign_in_error(error: SignInError):
    return render_template("error.html", status=error.status, message=error.message), error.status


# The pages' security headers and HTML error pages apply here too.
blueprint.after_request(security_headers)
blueprint.register_error_handler(HTTPException, page_error)
