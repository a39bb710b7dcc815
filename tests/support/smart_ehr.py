"""A test EHR that requires SMART Backend Services, serves therapy facts and signs CDS Hooks calls.

A real HTTP server (``ThreadingHTTPServer``) playing the three parts an EHR plays towards immunorad:

- **authorisation server**: ``GET /fhir/.well-known/smart-configuration`` and ``POST /auth/token``, which
  accepts ``client_credentials`` with a ``private_key_jwt`` assertion only — RS384/ES384 signature by the
  registered client's public key (a JWKS, as SMART registers it), ``iss = sub = client_id``, ``aud`` = the
  token URL, ``exp`` at most five minutes ahead, a ``jti`` never seen before — and issues short-lived opaque
  access tokens with the granted scopes;
- **FHIR server**: every request needs a live access token (401 otherwise) whose scopes cover it (403
  otherwise); transaction Bundles of conditional PUTs are applied as ``FakeEhr`` does; searches filter by
  ``patient``/``subject``, ``identifier`` and ``code`` and page with ``_count`` and ``next`` links;
- **SMART App Launch (EHR launch)**: ``new_launch(patient_id)`` is what the EHR does when a user opens an app
  from a chart (a ``launch`` value bound to the patient); ``GET /auth/authorize`` checks the app's request
  (registered ``client_id`` and ``redirect_uri``, a known ``launch``, ``aud`` = the FHIR base, PKCE with
  ``S256``), approves it as a signed-in user would and redirects back with a one-time ``code`` and the
  ``state``; ``POST /auth/token`` with ``grant_type=authorization_code`` checks the code, the ``redirect_uri``
  and the ``code_verifier`` against the challenge, and answers the access token with ``patient`` (and the
  ``appContext`` a CDS card carried, if any); ``GET /fhir/Patient/{id}`` reads one resource;
- **CDS client**: ``cds_jwt(url)`` signs the JWT a CDS Hooks call carries (ES384, ``kid``, ``jku`` =
  ``{root}/cds/jwks.json``, served here).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.security.auth import forget_jwks_clients
from tests.support.ehr import FakeEhr

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384")


def new_key(kind: str = "ec"):
    """A fresh signing key: ``ec`` (P-384, ES384) or ``rsa`` (2048 bit, RS384)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP384R1())


def write_pem(key, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)
    return path


def jwk_of(key, kid: str) -> dict:
    """The public JWK of a private key (what a JWKS publishes)."""
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "RS384" if isinstance(key, rsa.RSAPrivateKey) else "ES384"})
    return jwk


def _codes(concept) -> set[str]:
    out = set()
    for coding in (concept or {}).get("coding", []) if isinstance(concept, dict) else []:
        out.add(f"{coding.get('system', '')}|{coding.get('code', '')}")
        out.add(str(coding.get("code", "")))
    return out


class SmartEhr(FakeEhr):
    """``FakeEhr`` behind SMART Backend Services (see the module docstring)."""

    def __init__(
        self,
        *,
        client_id: str = "immunorad",
        client_jwks: dict | None = None,
        scopes_allowed: tuple[str, ...] = (
            "system/DiagnosticReport.write",
            "system/Observation.write",
            "system/Flag.write",
            "system/*.read",
        ),
        token_lifetime: int = 300,
        page_size: int = 2,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_jwks = client_jwks or {"keys": []}
        self.scopes_allowed = scopes_allowed
        self.token_lifetime = token_lifetime
        self.page_size = page_size
        self.tokens: dict[str, tuple[float, frozenset[str]]] = {}
        """access token → (expiry, granted scopes)."""
        self.token_requests: list[dict] = []
        self.token_failures: list[str] = []
        self.seen_jti: set[str] = set()
        self.refused: list[tuple[int, str, str]] = []
        """(status, method, path) of FHIR requests refused for want of a (good) token."""
        self.cds_key = new_key("ec")
        self.cds_kid = f"cds-{uuid.uuid4().hex[:8]}"
        self.as_key = new_key("rsa")
        self.as_kid = f"as-{uuid.uuid4().hex[:8]}"
        self.launch_client_id = "immunorad-pages"
        self.launch_redirect_uris: set[str] = set()
        """redirect URIs registered for the launch client (SMART: exact match)."""
        self.launches: dict[str, tuple[str, str | None]] = {}
        """launch value → (EHR patient id, appContext)."""
        self.codes: dict[str, dict] = {}
        """authorization code → what was approved (single use)."""
        self.authorize_requests: list[dict] = []

    # -- addresses -------------------------------------------------------------------------------------------
    @property
    def root(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_url(self) -> str:
        return f"{self.root}/auth/token"

    @property
    def cds_jwks_url(self) -> str:
        return f"{self.root}/cds/jwks.json"

    @property
    def cds_issuer(self) -> str:
        return f"{self.root}/cds-client"

    def register_client_key(self, key, kid: str) -> None:
        self.client_jwks = {"keys": [*self.client_jwks.get("keys", []), jwk_of(key, kid)]}

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def add(self, *resources: dict) -> None:
        """Resources the FHIR searches serve (therapy facts, the Patient…)."""
        with self.lock:
            for resource in resources:
                items = self.search_data.setdefault(resource["resourceType"], [])
                items[:] = [r for r in items if r.get("id") != resource.get("id")] + [resource]

    def remove(self, resource_type: str, resource_id: str) -> None:
        with self.lock:
            self.search_data[resource_type] = [
                r for r in self.search_data.get(resource_type, []) if r.get("id") != resource_id
            ]

    # -- authorisation server for immunorad's own API (JWT access tokens) -------------------------------------
    @property
    def as_issuer(self) -> str:
        return f"{self.root}/auth"

    @property
    def as_jwks_url(self) -> str:
        return f"{self.root}/auth/jwks.json"

    def access_token(
        self,
        audience: str,
        scope: str,
        *,
        lifetime: int = 300,
        issuer: str | None = None,
        key=None,
        kid: str | None = None,
        algorithm: str = "RS384",
        **claims,
    ) -> str:
        """A JWT access token for calling immunorad (as an OAuth server such as Keycloak would issue it)."""
        now = int(time.time())
        payload = {
            "iss": issuer or self.as_issuer,
            "sub": "reporting-app",
            "client_id": "reporting-app",
            "aud": audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            "scope": scope,
            **claims,
        }
        return jwt.encode(
            payload,
            key if key is not None else self.as_key,
            algorithm=algorithm,
            headers={"kid": kid or self.as_kid, "typ": "JWT"},
        )

    # -- CDS Hooks client ------------------------------------------------------------------------------------
    def cds_jwt(
        self,
        audience: str,
        *,
        lifetime: int = 300,
        jti: str | None = None,
        key=None,
        kid: str | None = None,
        issuer: str | None = None,
        jku: str | None | bool = True,
        algorithm: str = "ES384",
        **claims,
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": issuer or self.cds_issuer,
            "sub": "ehr-cds-client",
            "aud": audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti if jti is not None else str(uuid.uuid4()),
            **claims,
        }
        headers = {"kid": kid or self.cds_kid, "typ": "JWT"}
        if jku is True:
            headers["jku"] = self.cds_jwks_url
        elif isinstance(jku, str):
            headers["jku"] = jku
        return jwt.encode(payload, key if key is not None else self.cds_key, algorithm=algorithm, headers=headers)

    # -- SMART App Launch: authorize + authorization_code ---------------------------------------------------------
    @property
    def authorize_url(self) -> str:
        return f"{self.root}/auth/authorize"

    def new_launch(self, patient_id: str, app_context: str | None = None) -> str:
        """What the EHR does when a user opens the app from a chart: a launch value bound to the patient."""
        launch = secrets.token_urlsafe(12)
        with self.lock:
            self.launches[launch] = (patient_id, app_context)
        return launch

    def _authorize(self, params: dict[str, str]) -> tuple[int, str]:
        """(302, Location) back to the app, or (400, reason) for a request the EHR must not redirect."""
        self.authorize_requests.append(params)
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") != self.launch_client_id or redirect_uri not in self.launch_redirect_uris:
            return 400, "unknown client or redirect_uri"

        def back(**answer: str) -> tuple[int, str]:
            return 302, f"{redirect_uri}?{urlencode({**answer, 'state': params.get('state', '')})}"

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if params.get("code_challenge_method") != "S256" or len(params.get("code_challenge", "")) < 43:
            return back(error="invalid_request", error_description="PKCE S256 required")
        if params.get("aud", "").rstrip("/") != self.base_url:
            return back(error="invalid_request", error_description="aud must be the FHIR base")
        with self.lock:
            context = self.launches.get(params.get("launch", ""))
        if context is None:
            return back(error="invalid_request", error_description="unknown launch")
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = {
                "challenge": params["code_challenge"],
                "redirect_uri": redirect_uri,
                "patient": context[0],
                "app_context": context[1],
                "scope": params.get("scope", ""),
                "expires": time.time() + 60,
            }
        return back(code=code)

    def _exchange_code(self, form: dict[str, str]) -> tuple[int, dict]:
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or grant["expires"] < time.time():
            self.token_failures.append("unknown or used code")
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            self.token_failures.append("code_verifier does not match")
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        if form.get("redirect_uri") != grant["redirect_uri"] or form.get("client_id") != self.launch_client_id:
            self.token_failures.append("redirect_uri or client_id differs")
            return 400, {"error": "invalid_grant"}
        granted = frozenset(s for s in grant["scope"].split() if s.startswith("patient/"))
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (time.time() + self.token_lifetime, granted)
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "scope": grant["scope"],
            "patient": grant["patient"],
            "id_token": jwt.encode(
                {"iss": self.base_url, "sub": "dr-house", "fhirUser": "Practitioner/dr-house", "aud": "x"},
                self.as_key,
                algorithm="RS384",
            ),
        }
        if grant["app_context"]:
            answer["appContext"] = grant["app_context"]
        return 200, answer

    # -- the token endpoint ------------------------------------------------------------------------------------
    def _issue_token(self, form: dict[str, str]) -> tuple[int, dict]:
        def refuse(reason: str, status: int = 400, error: str = "invalid_client") -> tuple[int, dict]:
            self.token_failures.append(reason)
            return status, {"error": error, "error_description": reason}

        self.token_requests.append(form)
        if form.get("grant_type") == "authorization_code":
            return self._exchange_code(form)
        if form.get("grant_type") != "client_credentials":
            return refuse("grant_type must be client_credentials", error="unsupported_grant_type")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return refuse("client_assertion_type")
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return refuse("assertion is not a JWT")
        if header.get("alg") not in ASSERTION_ALGORITHMS or header.get("typ") != "JWT":
            return refuse("assertion alg/typ")
        jwk = next((k for k in self.client_jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
        if jwk is None:
            return refuse("unknown kid", 401)
        try:
            key = jwt.PyJWK(jwk).key
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[header["alg"]],
                audience=self.token_url,
                issuer=self.client_id,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.PyJWTError as exc:
            return refuse(f"assertion rejected: {type(exc).__name__}", 401)
        if claims["sub"] != self.client_id:
            return refuse("sub must be the client_id", 401)
        if claims["exp"] > time.time() + 300:
            return refuse("exp more than five minutes ahead", 401)
        if claims["jti"] in self.seen_jti:
            return refuse("jti replayed", 401)
        self.seen_jti.add(claims["jti"])
        requested = set(form.get("scope", "").split())
        granted = frozenset(s for s in requested if s in self.scopes_allowed)
        if not granted:
            return refuse("no requested scope is allowed", 400, "invalid_scope")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (time.time() + self.token_lifetime, granted)
        return 200, {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "scope": " ".join(sorted(granted)),
        }

    def _grants(self, authorization: str | None, resource_types: set[str], write: bool) -> int:
        """200 when the bearer token is live and its scopes cover the types; 401 or 403 otherwise."""
        token = (authorization or "")[7:] if (authorization or "").lower().startswith("bearer ") else ""
        with self.lock:
            expiry, scopes = self.tokens.get(token, (0.0, frozenset()))
        if expiry < time.time():
            return 401
        for kind in resource_types:
            ok = any(
                s in scopes
                for s in (
                    f"system/{kind}.{'write' if write else 'read'}",
                    f"system/*.{'write' if write else 'read'}",
                    f"system/{kind}.*",
                    "system/*.*",
                    *(() if write else (f"patient/{kind}.rs", f"patient/{kind}.read", "patient/*.rs")),
                )
            )
            if not ok:
                return 403
        return 200

    # -- the server --------------------------------------------------------------------------------------------
    def start(self, port: int = 0) -> None:
        ehr = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def _reply(self, status: int, body: dict, content_type: str = "application/fhir+json") -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
                self.end_headers()
                self.wfile.write(data)

            def _outcome(self, status: int, code: str) -> None:
                self._reply(
                    status, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}
                )

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with ehr.lock:
                    ehr.requests.append(("POST", self.path, self.headers.get("Authorization")))
                if self.path == "/auth/token":
                    form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    status, body = ehr._issue_token(form)
                    self._reply(status, body, "application/json")
                    return
                if ehr.down:
                    self._outcome(503, "transient")
                    return
                try:
                    bundle = json.loads(raw)
                except ValueError:
                    self._outcome(400, "structure")
                    return
                types = {str((e.get("request") or {}).get("url", "")).split("?")[0] for e in bundle.get("entry", [])}
                status = ehr._grants(self.headers.get("Authorization"), types, write=True)
                if status != 200:
                    ehr.refused.append((status, "POST", self.path))
                    ehr.rejected.append((status, self.path))
                    self._outcome(status, "login" if status == 401 else "forbidden")
                    return
                problem = ehr._check_bundle(bundle)
                if problem:
                    ehr.rejected.append((400, problem))
                    self._outcome(400, "invalid")
                    return
                self._reply(200, ehr._apply(bundle))

            def do_GET(self):
                with ehr.lock:
                    ehr.requests.append(("GET", self.path, self.headers.get("Authorization")))
                path, _, query = self.path.partition("?")
                if path == "/fhir/.well-known/smart-configuration":
                    self._reply(
                        200,
                        {
                            "authorization_endpoint": ehr.authorize_url,
                            "token_endpoint": ehr.token_url,
                            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
                            "grant_types_supported": ["client_credentials", "authorization_code"],
                            "code_challenge_methods_supported": ["S256"],
                            "scopes_supported": [*ehr.scopes_allowed, "launch", "openid", "fhirUser", "patient/*.rs"],
                            "capabilities": [
                                "client-confidential-asymmetric",
                                "launch-ehr",
                                "client-public",
                                "context-ehr-patient",
                                "permission-v2",
                            ],
                        },
                        "application/json",
                    )
                    return
                if path == "/auth/authorize":
                    status, where = ehr._authorize({k: v[0] for k, v in parse_qs(query).items()})
                    if status == 302:
                        self.send_response(302)
                        self.send_header("Location", where)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        self._reply(400, {"error": "invalid_request", "error_description": where}, "application/json")
                    return
                if path == "/auth/jwks.json":
                    self._reply(200, {"keys": [jwk_of(ehr.as_key, ehr.as_kid)]}, "application/json")
                    return
                if path == "/cds/jwks.json":
                    self._reply(200, {"keys": [jwk_of(ehr.cds_key, ehr.cds_kid)]}, "application/json")
                    return
                if ehr.down:
                    self._outcome(503, "transient")
                    return
                parts = path.strip("/").split("/")
                read_id = parts[2] if len(parts) == 3 and parts[0] == "fhir" else None
                kind = parts[1] if read_id else path.rstrip("/").split("/")[-1]
                status = ehr._grants(self.headers.get("Authorization"), {kind}, write=False)
                if status != 200:
                    ehr.refused.append((status, "GET", path))
                    self._outcome(status, "login" if status == 401 else "forbidden")
                    return
                params = parse_qs(query)
                with ehr.lock:
                    items = list(ehr.search_data.get(kind, []))
                if read_id is not None:
                    found = next((r for r in items if r.get("id") == read_id), None)
                    if found is None:
                        self._outcome(404, "not-found")
                    else:
                        self._reply(200, found)
                    return
                for name, values in params.items():
                    if name in ("patient", "subject"):
                        wanted = values[0].split("/")[-1]
                        items = [
                            r
                            for r in items
                            if str((r.get("subject") or r.get("patient") or {}).get("reference") or "").split("/")[-1]
                            == wanted
                        ]
                    elif name == "identifier":
                        system, _, value = values[0].rpartition("|")
                        items = [
                            r
                            for r in items
                            if any(
                                i.get("value") == value and (not system or i.get("system") == system)
                                for i in r.get("identifier", [])
                            )
                        ]
                    elif name == "code":
                        tokens = set(values[0].split(","))
                        items = [r for r in items if _codes(r.get("code")) & tokens]
                offset = int(params.get("_offset", ["0"])[0])
                count = min(int(params.get("_count", [str(ehr.page_size)])[0]), ehr.page_size)
                page = items[offset : offset + count]
                links = []
                if offset + count < len(items):
                    rest = [(k, v[0]) for k, v in params.items() if k not in ("_offset", "_count")]
                    links.append(
                        {
                            "relation": "next",
                            "url": f"{ehr.base_url}/{kind}?"
                            + urlencode(rest + [("_count", str(count)), ("_offset", str(offset + count))]),
                        }
                    )
                self._reply(
                    200,
                    {
                        "resourceType": "Bundle",
                        "type": "searchset",
                        "total": len(items),
                        "link": links,
                        "entry": [
                            {"fullUrl": f"{ehr.base_url}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                            for r in page
                        ],
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        # The in-process app caches JWKS clients by URL; one cached for an earlier test server on this (reused)
        # port would not look for our keys during PyJWT's 30 s refresh cooldown.
        forget_jwks_clients(self.root)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # -- what tests read ---------------------------------------------------------------------------------------
    def searches(self, kind: str) -> list[str]:
        with self.lock:
            return [p for m, p, _ in self.requests if m == "GET" and p.startswith(f"/fhir/{kind}")]
