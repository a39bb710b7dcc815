"""SMART Backend Services: how immunorad obtains access tokens for the EHR (interop-notes §5.7).

The EHR publishes ``{IMMUNORAD_EHR_FHIR_URL}/.well-known/smart-configuration`` with its ``token_endpoint``
(or IMMUNORAD_EHR_TOKEN_URL names it). We POST ``grant_type=client_credentials`` with a client assertion: a
JWT signed with our private key (IMMUNORAD_EHR_PRIVATE_KEY, PEM; RSA → RS384, EC P-384 → ES384), header
``kid`` (IMMUNORAD_EHR_KEY_ID, default the key's RFC 7638 thumbprint), ``typ: JWT`` and optional ``jku``
(IMMUNORAD_EHR_JKU); claims ``iss = sub = client_id`` (IMMUNORAD_EHR_CLIENT_ID), ``aud`` = the token URL,
``exp`` under five minutes ahead and a unique ``jti``. The answer's ``access_token`` is kept until shortly
before ``expires_in`` runs out (there is no refresh token in this flow: a new assertion gets a new token);
``invalidate()`` drops it when the EHR answers 401.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.ops.config import Settings
from service.publish.errors import DeliveryError

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 240
"""SMART: the assertion's ``exp`` SHALL be no more than five minutes in the future; we stay under it."""
REFRESH_MARGIN_SECONDS = 30
"""A cached token is renewed this long before it expires (clock skew, slow requests)."""
DEFAULT_EXPIRES_IN = 300
"""When the token response omits ``expires_in``: SMART says it SHOULD NOT exceed 300 seconds."""
CURVE_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


class SmartAuthError(DeliveryError):
    """No access token could be obtained (discovery, assertion or token request failed)."""


def _b64(number: int) -> str:
    length = max(1, (number.bit_length() + 7) // 8)
    return base64.urlsafe_b64encode(number.to_bytes(length, "big")).rstrip(b"=").decode()


def public_jwk(private_key: Any, kid: str | None = None) -> dict[str, str]:
    """The public half of our signing key as a JWK (what the EHR registers, or serves from our JWKS URL)."""
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        jwk = {"kty": "RSA", "e": _b64(numbers.e), "n": _b64(numbers.n)}
    elif isinstance(public, ec.EllipticCurvePublicKey):
        point = public.public_numbers()
        size = (public.curve.key_size + 7) // 8

        def pad(v: int) -> str:
            return base64.urlsafe_b64encode(v.to_bytes(size, "big")).rstrip(b"=").decode()

        jwk = {"kty": "EC", "crv": CURVE_NAMES[public.curve.name], "x": pad(point.x), "y": pad(point.y)}
    else:
        raise ValueError("the EHR signing key must be RSA or EC")
    jwk["kid"] = kid or thumbprint(jwk)
    jwk["alg"] = algorithm_for(private_key)
    jwk["use"] = "sig"
    return jwk


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256 over the required members in lexicographic order)."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def algorithm_for(private_key: Any) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RS384"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        algorithm = CURVE_ALGORITHMS.get(private_key.curve.name)
        if algorithm:
            return algorithm
    raise ValueError("the EHR signing key must be RSA or EC P-256/P-384/P-521 (SMART: RS384 or ES384)")


def load_private_key(path: str) -> Any:
    with open(path, "rb") as handle:
        return serialization.load_pem_private_key(handle.read(), password=None)


class SmartBackendAuth:
    """Access tokens for the EHR by SMART Backend Services, cached until shortly before they expire."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        if not (settings.ehr_fhir_url and settings.ehr_client_id and settings.ehr_private_key):
            raise ValueError("SMART Backend Services needs IMMUNORAD_EHR_FHIR_URL, _CLIENT_ID and _PRIVATE_KEY")
        self.settings = settings
        self.base = settings.ehr_fhir_url.rstrip("/")
        self.session = session or requests.Session()
        self.client_id = settings.ehr_client_id
        self.private_key = load_private_key(settings.ehr_private_key)
        self.algorithm = algorithm_for(self.private_key)
        self.kid = settings.ehr_key_id or public_jwk(self.private_key)["kid"]
        self.timeout = (5.0, settings.ehr_timeout_seconds)
        self._token_url: str | None = settings.ehr_token_url
        self._token: str | None = None
        self._expires_at = 0.0
        self.granted_scope: str | None = None
        self._lock = threading.Lock()

    # -- discovery ----------------------------------------------------------------------------------------
    def token_url(self) -> str:
        if self._token_url:
            return self._token_url
        url = f"{self.base}/.well-known/smart-configuration"
        try:
            response = self.session.get(url, headers={"Accept": "application/json"}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SmartAuthError(f"SMART configuration unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise SmartAuthError(f"SMART configuration answered {response.status_code}", response.status_code)
        try:
            config = response.json()
        except ValueError as exc:
            raise SmartAuthError("SMART configuration is not JSON") from exc
        methods = config.get("token_endpoint_auth_methods_supported")
        if methods is not None and "private_key_jwt" not in methods:
            raise SmartAuthError("the EHR does not accept private_key_jwt client authentication")
        algorithms = config.get("token_endpoint_auth_signing_alg_values_supported")
        if algorithms is not None and self.algorithm not in algorithms:
            raise SmartAuthError(f"the EHR does not accept {self.algorithm} client assertions")
        if not config.get("token_endpoint"):
            raise SmartAuthError("SMART configuration has no token_endpoint")
        self._token_url = str(config["token_endpoint"])
        return self._token_url

    # -- the assertion and the token -----------------------------------------------------------------------
    def client_assertion(self, token_url: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
            "jti": str(uuid.uuid4()),
        }
        headers = {"kid": self.kid, "typ": "JWT"}
        if self.settings.ehr_jku:
            headers["jku"] = self.settings.ehr_jku
        return jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers=headers)

    def _request_token(self) -> str:
        token_url = self.token_url()
        form = {
            "grant_type": "client_credentials",
            "scope": self.settings.ehr_scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(token_url),
        }
        try:
            response = self.session.post(
                token_url, data=form, headers={"Accept": "application/json"}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise SmartAuthError(f"token endpoint unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            error = ""
            try:
                error = str(response.json().get("error", ""))[:60]
            except ValueError:
                pass
            if response.status_code in (400, 401) and not self.settings.ehr_token_url:
                self._token_url = None  # discover again next time: the EHR may have moved its endpoint
            raise SmartAuthError(
                f"token endpoint answered {response.status_code} {error}".strip(), response.status_code
            )
        try:
            body = response.json()
            token = str(body["access_token"])
        except (ValueError, KeyError) as exc:
            raise SmartAuthError("token response has no access_token") from exc
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise SmartAuthError("token response is not a bearer token")
        try:
            lifetime = float(body.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError):
            lifetime = DEFAULT_EXPIRES_IN
        self._token = token
        self._expires_at = time.monotonic() + max(lifetime - min(REFRESH_MARGIN_SECONDS, lifetime / 2), 0)
        self.granted_scope = body.get("scope")
        return token

    def token(self) -> str:
        """A valid access token: the cached one, or a new one when it is (about to be) expired."""
        with self._lock:
            token = self._token
            if token is None or time.monotonic() >= self._expires_at:
                self._token = None
                token = self._request_token()
            return token

    def invalidate(self) -> None:
        """Forget the cached token (the EHR answered 401: revoked, or expired early)."""
        with self._lock:
            self._token = None
            self._expires_at = 0.0
