"""Inbound authentication and authorisation of the HTTP API (contract §2, §4 "401/403 auth", §6).

Two kinds of callers, two checks:

- ``/fhir``, ``/api`` and ``/ui`` take a bearer credential (``IMMUNORAD_API_AUTH``):
  ``token`` — the static API token (the embedded default); ``jwt`` — an OAuth access token signed by the
  authorisation server whose JWKS is ``IMMUNORAD_API_JWKS_URL``, with ``iss`` = IMMUNORAD_API_JWT_ISSUER,
  ``aud`` = IMMUNORAD_API_JWT_AUDIENCE and SMART scopes (v1 ``system/Observation.write``, v2
  ``system/Observation.cu``) that cover the interaction the request performs on its resource type.
  A missing, malformed, expired or badly signed credential is **401**; a valid one whose scopes do not cover
  the request is **403** (RFC 6750 ``invalid_token`` / ``insufficient_scope``).
- ``/cds-services/{id}`` calls carry the EHR's signed JWT as CDS Hooks 2.0 describes (interop-notes §5.1):
  header ``alg`` (asymmetric only; ES384/RS384 recommended), ``kid`` and ``typ: JWT``, optional ``jku``;
  claims ``iss`` (allow-listed in IMMUNORAD_CDS_ISSUERS together with its JWKS URLs; a ``jku`` must be one of
  them), ``aud`` = exactly the URL of the endpoint called, ``exp``, ``iat`` and ``jti`` (a replayed ``jti``
  is refused).

Everything here raises ``AuthError``; ``service.api.app._authenticate`` and the CDS blueprint turn it into the
HTTP answer and the audit record. Reasons never quote the token or patient data.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from jwt import PyJWKClient

from service.ops.config import Settings

LEEWAY_SECONDS = 60
"""Clock skew tolerated on ``exp``, ``iat`` and ``nbf``."""
CDS_MAX_LIFETIME_SECONDS = 3600
"""A CDS Hooks JWT whose ``exp`` lies further ahead than this is refused: it bounds the replay window."""
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})
"""CDS Hooks forbids ``none`` and every symmetric (HMAC) algorithm; so do we, everywhere."""
JWKS_CACHE_SECONDS = 300
JWKS_TIMEOUT_SECONDS = 5

READ, SEARCH, CREATE, UPDATE, DELETE = "r", "s", "c", "u", "d"
"""SMART v2 permission letters; the v1 ``read`` = r+s, ``write`` = c+u+d, ``*`` = all."""
V1_PERMISSIONS = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}
SCOPE_PATTERN = re.compile(r"^(system|user|patient)/([A-Za-z]+|\*)\.(read|write|\*|c?r?u?d?s?)$")

if TYPE_CHECKING:
    from werkzeug.datastructures import Headers


class AuthError(Exception):
    """A request that is not authenticated (401) or not authorised (403)."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        error: str = "invalid_token",
        agent: str | None = None,
        scope: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.error = error
        self.agent = agent
        self.scope = scope

    @property
    def www_authenticate(self) -> str:
        """The RFC 6750 challenge; no ``error`` when no credential was sent at all (§3.1)."""
        parts = ['Bearer realm="immunorad"']
        if self.error:
            parts.append(f'error="{self.error}"')
            parts.append(f'error_description="{self.reason}"')
        if self.scope:
            parts.append(f'scope="{self.scope}"')
        return ", ".join(parts)


class AuthConfigError(ValueError):
    """The authentication settings are incomplete (e.g. ``jwt`` without a JWKS URL)."""


@dataclass(frozen=True)
class Principal:
    """Who made an authenticated request: what the audit trail records as the agent."""

    agent: str
    method: str
    """``api-token`` | ``jwt`` | ``cds-jwt`` | ``none``."""
    scopes: frozenset[str] = frozenset()
    issuer: str | None = None
    subject: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Access:
    """One interaction on one resource type that a request performs (``*`` = any type)."""

    resource_type: str
    interaction: str

    def __str__(self) -> str:
        return f"{self.resource_type}.{self.interaction}"


# -- JWKS -------------------------------------------------------------------------------------------------
_jwks_clients: dict[str, PyJWKClient] = {}
_jwks_lock = threading.Lock()


def jwks_client(url: str) -> PyJWKClient:
    """One cached client per JWKS URL: keys are kept for five minutes and re-fetched for an unknown ``kid``."""
    with _jwks_lock:
        client = _jwks_clients.get(url)
        if client is None:
            client = PyJWKClient(url, cache_keys=True, lifespan=JWKS_CACHE_SECONDS, timeout=JWKS_TIMEOUT_SECONDS)
            _jwks_clients[url] = client
        return client


def forget_jwks_clients(prefix: str = "") -> None:
    """Drop the cached JWKS clients whose URL starts with ``prefix`` (all of them by default).

    A cached client refreshes for an unknown ``kid`` at most once per 30 s (PyJWT's cooldown), so a *new* key
    server at an address that had another one (a test server on a reused port) would be refused until then.
    """
    with _jwks_lock:
        for url in [url for url in _jwks_clients if url.startswith(prefix)]:
            del _jwks_clients[url]


def _unverified_header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise AuthError(401, "malformed token") from exc
    algorithm = header.get("alg")
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        raise AuthError(401, "token signature algorithm not accepted")
    return header


def _signing_key(token: str, header: Mapping[str, Any], jwks_url: str):
    client = jwks_client(jwks_url)
    try:
        if header.get("kid"):
            return client.get_signing_key(str(header["kid"]))
        keys = client.get_signing_keys()
    except jwt.PyJWKClientConnectionError as exc:
        raise AuthError(401, "signing keys unavailable") from exc
    except jwt.PyJWKClientError as exc:
        raise AuthError(401, "unknown signing key") from exc
    if len(keys) != 1:
        raise AuthError(401, "token has no kid")
    return keys[0]


def _decode(
    token: str, key: Any, algorithms: Iterable[str], *, audience: str, issuer: str, required: list[str]
) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            key,
            algorithms=list(algorithms),
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError(401, "token expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise AuthError(401, "token audience does not match") from exc
    except jwt.InvalidIssuerError as exc:
        raise AuthError(401, "token issuer not accepted") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(401, f"token lacks the {exc.claim} claim") from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError(401, "token signature invalid") from exc
    except jwt.PyJWTError as exc:
        raise AuthError(401, "token invalid") from exc


# -- /fhir, /api, /ui ---------------------------------------------------------------------------------------
def check_settings(settings: Settings) -> None:
    methods = set(settings.api_auth)
    if not methods or methods - {"token", "jwt"}:
        raise AuthConfigError("IMMUNORAD_API_AUTH must list token and/or jwt")
    if "jwt" in methods and not (settings.api_jwks_url and settings.api_jwt_issuer):
        raise AuthConfigError("IMMUNORAD_API_AUTH=jwt needs IMMUNORAD_API_JWKS_URL and IMMUNORAD_API_JWT_ISSUER")
    if set(settings.api_jwt_algorithms) - ASYMMETRIC_ALGORITHMS:
        raise AuthConfigError("IMMUNORAD_API_JWT_ALGORITHMS may list asymmetric algorithms only")
    if settings.cds_auth not in ("jwt", "none"):
        raise AuthConfigError("IMMUNORAD_CDS_AUTH must be jwt or none")
    if settings.cds_auth == "none" and not is_loopback(settings.http_host):
        raise AuthConfigError(
            f"IMMUNORAD_CDS_AUTH=none is allowed only on a loopback IMMUNORAD_HTTP_HOST (not {settings.http_host}): "
            "register the EHR in IMMUNORAD_CDS_ISSUERS instead"
        )
    unknown = {iss for iss, _ in settings.cds_fhir_servers} - {iss for iss, _ in settings.cds_issuers}
    if unknown:
        raise AuthConfigError("IMMUNORAD_CDS_FHIR_SERVERS names an issuer that is not in IMMUNORAD_CDS_ISSUERS")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IMMUNORAD_HTTP_HOST) is reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def startup_warnings(settings: Settings) -> list[str]:
    """What the API says once at start about its security settings (contract §9.5)."""
    warnings = []
    if settings.cds_auth == "jwt" and not settings.cds_issuers:
        warnings.append(
            "CDS Hooks: no EHR is registered in IMMUNORAD_CDS_ISSUERS, so every CDS Hooks service call is refused "
            "with 401 (discovery stays open)"
        )
    if settings.cds_auth == "none":
        warnings.append("CDS Hooks: IMMUNORAD_CDS_AUTH=none accepts unsigned calls (loopback demo only)")
    return warnings


def bearer_token(headers: Mapping[str, str] | Headers) -> str | None:
    header = headers.get("Authorization", "") or ""
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


def api_audience(settings: Settings) -> str:
    return settings.api_jwt_audience or f"{settings.base_url.rstrip('/')}/fhir"


def token_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """``scope`` (RFC 8693/SMART: one space-separated string) or ``scp`` (a list, as some servers write it)."""
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, (list, tuple)):
        return frozenset(str(s) for s in raw)
    return frozenset()


def scope_grants(scope: str, access: Access) -> bool:
    """Does one SMART scope allow ``access``? ``patient/`` scopes need a patient compartment we do not enforce."""
    match = SCOPE_PATTERN.match(scope)
    if match is None:
        return False  # includes v2 scopes narrowed by a query (``?category=…``): finer than we can check
    context, resource_type, permissions = match.groups()
    if context == "patient":
        return False
    if resource_type != "*" and resource_type != access.resource_type:
        return False
    letters = V1_PERMISSIONS.get(permissions, frozenset(permissions))
    return access.interaction in letters


def authorise(scopes: Iterable[str], needed: Iterable[Access]) -> list[Access]:
    """The accesses not covered by any scope (empty = authorised)."""
    scopes = list(scopes)
    return [access for access in needed if not any(scope_grants(s, access) for s in scopes)]


def _bundle_accesses(body: Any) -> list[Access]:
    if not isinstance(body, Mapping):
        return []
    needed: list[Access] = []
    for entry in body.get("entry") or []:
        if not isinstance(entry, Mapping):
            continue
        request: Mapping[str, Any] = entry["request"] if isinstance(entry.get("request"), Mapping) else {}
        method = str(request.get("method", "")).upper()
        url = str(request.get("url", "")).lstrip("/")
        resource: Mapping[str, Any] = entry["resource"] if isinstance(entry.get("resource"), Mapping) else {}
        kind = str(resource.get("resourceType") or url.split("?")[0].split("/")[0] or "*")
        interaction = {"POST": CREATE, "PUT": UPDATE, "PATCH": UPDATE, "DELETE": DELETE}.get(method)
        if method == "GET":
            interaction = READ if "/" in url.split("?")[0] else SEARCH
        if interaction:
            needed.append(Access(kind, interaction))
    return sorted(set(needed), key=str)


def required_access(method: str, path: str, body: Any = None) -> list[Access]:
    """What a request does, as (resource type, SMART interaction) pairs."""
    method = method.upper()
    parts = [p for p in path.split("/") if p]
    if not parts:
        return []
    if parts[0] == "fhir":
        if len(parts) == 1:
            return _bundle_accesses(body) if method == "POST" else [Access("*", READ)]
        kind = parts[1]
        if method in ("GET", "HEAD"):
            return [Access(kind, READ if len(parts) >= 3 else SEARCH)]
        if method == "POST":
            return [Access(kind, SEARCH if parts[-1] == "_search" else CREATE)]
        if method in ("PUT", "PATCH"):
            return [Access(kind, UPDATE)]
        if method == "DELETE":
            return [Access(kind, DELETE)]
        return [Access(kind, UPDATE)]
    reading = method in ("GET", "HEAD")
    if parts[0] == "api" and len(parts) > 1 and parts[1] == "audit":
        return [Access("AuditEvent", SEARCH if reading else UPDATE)]
    if parts[0] == "api" and len(parts) > 1 and parts[1] == "alerts":
        return [Access("Flag", SEARCH if reading else UPDATE)]
    # Other pages and JSON views show everything we hold about patients: they need access to every type.
    return [Access("*", READ if reading else UPDATE)]


def verify_access_token(settings: Settings, token: str) -> Principal:
    """Validate an OAuth access token (signature, ``iss``, ``aud``, ``exp``) into a principal with its scopes."""
    header = _unverified_header(token)
    if header["alg"] not in settings.api_jwt_algorithms:
        raise AuthError(401, "token signature algorithm not accepted")
    key = _signing_key(token, header, settings.api_jwks_url or "")
    claims = _decode(
        token,
        key,
        [header["alg"]],
        audience=api_audience(settings),
        issuer=settings.api_jwt_issuer or "",
        required=["exp", "iss", "aud"],
    )
    subject = str(claims.get("client_id") or claims.get("azp") or claims.get("sub") or "unknown")
    return Principal(
        agent=f"jwt:{subject}"[:255],
        method="jwt",
        scopes=token_scopes(claims),
        issuer=str(claims.get("iss")),
        subject=subject,
        claims=claims,
    )


def authenticate(
    settings: Settings, api_token: str, *, token: str | None, method: str, path: str, body_loader=None
) -> Principal:
    """Authenticate and authorise one request to /fhir, /api or /ui; ``AuthError`` when refused.

    ``body_loader`` returns the parsed JSON body; it is called only for a Bundle POSTed to /fhir with a JWT,
    whose entries decide the scopes needed.
    """
    check_settings(settings)
    if not token:
        raise AuthError(401, "a bearer token is required", error="")
    if "jwt" in settings.api_auth and looks_like_jwt(token):
        principal = verify_access_token(settings, token)
        body = body_loader() if body_loader is not None and path.rstrip("/") == "/fhir" and method == "POST" else None
        missing = authorise(principal.scopes, required_access(method, path, body))
        if missing:
            wanted = " ".join(f"system/{a.resource_type}.{a.interaction}" for a in missing)
            raise AuthError(
                403,
                "the token's scopes do not cover this request",
                error="insufficient_scope",
                agent=principal.agent,
                scope=wanted,
            )
        return principal
    if "token" in settings.api_auth and hmac.compare_digest(token.encode(), api_token.encode()):
        return Principal(agent="api-token", method="api-token", scopes=frozenset({"system/*.*"}))
    raise AuthError(401, "the bearer token is not valid")


# -- CDS Hooks ----------------------------------------------------------------------------------------------
def cds_endpoint_url(settings: Settings, path: str) -> str:
    """The URL the EHR called, which the JWT's ``aud`` must equal: from configuration (``Settings.base_url``:
    IMMUNORAD_PUBLIC_URL, else the HTTP host and port), never from the request's ``Host`` header — a forged Host
    would otherwise let a token issued for another service (its URL as ``aud``) be accepted here."""
    return f"{settings.base_url.rstrip('/')}{path}"


def _allowed_jwks(settings: Settings, issuer: str) -> list[str]:
    return [url for iss, url in settings.cds_issuers if iss == issuer]


def cds_fhir_server(settings: Settings, principal: Principal, fhir_server: object) -> str | None:
    """The ``fhirServer`` of a call, normalised, when it is the configured FHIR base of the call's verified issuer
    (IMMUNORAD_CDS_FHIR_SERVERS); ``None`` otherwise: such a URL is never contacted (contract §9.5)."""
    if principal.method != "cds-jwt" or not isinstance(fhir_server, str) or not fhir_server.strip():
        return None
    wanted = fhir_server.strip().rstrip("/")
    for issuer, base in settings.cds_fhir_servers:
        if issuer == principal.issuer and base.rstrip("/") == wanted:
            return base.rstrip("/")
    return None


def jti_key(issuer: str, jti: str) -> str:
    """What the audit trail stores for a CDS JWT's ``jti`` (replay check): a digest, never the raw value."""
    return "jti:" + hashlib.sha256(json.dumps([issuer, jti]).encode()).hexdigest()


def verify_cds_jwt(settings: Settings, token: str | None, endpoint_url: str) -> Principal:
    """Verify the EHR's JWT on a CDS Hooks call (signature by an allow-listed issuer, ``aud``, times, ``jti``).

    The replay check (``jti`` seen before) needs the database and is done by the caller with ``jti_key``.
    """
    if settings.cds_auth == "none":
        # A demo on loopback only (``check_settings`` refuses ``none`` on any other address).
        return Principal(agent="cds-unauthenticated", method="none")
    if not settings.cds_issuers:
        raise AuthError(401, "no CDS client is registered (IMMUNORAD_CDS_ISSUERS)", error="")
    if not token:
        raise AuthError(401, "CDS Hooks calls need the EHR's signed JWT", error="")
    header = _unverified_header(token)
    if str(header.get("typ", "")).upper() != "JWT":
        raise AuthError(401, "the JWT header must have typ JWT")
    if not header.get("kid"):
        raise AuthError(401, "the JWT header must have kid")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError(401, "malformed token") from exc
    issuer = unverified.get("iss")
    allowed = _allowed_jwks(settings, issuer) if isinstance(issuer, str) else []
    if not isinstance(issuer, str) or not allowed:
        raise AuthError(401, "the token's issuer is not an allowed CDS client")
    jku = header.get("jku")
    if jku is not None and jku not in allowed:
        raise AuthError(401, "the token's jku is not allowed for its issuer")
    candidates = [jku] if jku else allowed
    key, last_error = None, None
    for url in candidates:
        try:
            key = _signing_key(token, header, url)
            break
        except AuthError as exc:
            last_error = exc
    if key is None:
        raise last_error or AuthError(401, "unknown signing key")
    claims = _decode(
        token, key, [header["alg"]], audience=endpoint_url, issuer=issuer, required=["iss", "aud", "exp", "iat", "jti"]
    )
    if not isinstance(claims["jti"], str) or not claims["jti"].strip():
        raise AuthError(401, "the token lacks a jti")
    now = time.time()
    if float(claims["exp"]) > now + CDS_MAX_LIFETIME_SECONDS:
        raise AuthError(401, "the token lives too long")
    if float(claims["iat"]) > now + LEEWAY_SECONDS:
        raise AuthError(401, "the token was issued in the future")
    subject = str(claims.get("sub") or issuer)
    return Principal(agent=f"cds:{issuer}"[:255], method="cds-jwt", issuer=issuer, subject=subject, claims=claims)
