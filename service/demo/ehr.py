"""The EHR stand-in of ``immunorad serve --demo`` on a machine with no EHR configured.

A small FHIR R4 server on loopback (a ``ThreadingHTTPServer`` on a free port of 127.0.0.1) so that a fresh machine
shows the whole path end to end: the worker delivers its transaction Bundles of conditional PUTs here (one
resource per identifier, updated in place, as a FHIR server applies them), searches (the context pull) get an
empty searchset, and the stand-in plays the EHR's CDS Hooks client — it signs its ``patient-view`` calls with its
own ES384 key (JWKS at ``/cds/jwks.json``, CDS Hooks 2.0 security), so the service's default CDS check
(IMMUNORAD_CDS_AUTH=jwt) stays on and the demo's cards come through it. Nothing here is used outside the demo.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

CDS_SERVICE = "immunorad-alerts"


class DemoEhr:
    """The stand-in: ``start()``, then ``env()`` for the service's roles, ``counts()`` and ``cds_cards()``."""

    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.kid = f"demo-{uuid.uuid4().hex[:8]}"
        self.server: ThreadingHTTPServer | None = None

    @property
    def root(self) -> str:
        if self.server is None:
            raise RuntimeError("the demo EHR stand-in is not started")
        host, port = self.server.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"

    @property
    def fhir_base(self) -> str:
        return f"{self.root}/fhir"

    @property
    def cds_issuer(self) -> str:
        return f"{self.root}/cds-client"

    def env(self) -> dict[str, str]:
        """What the roles need to deliver here and to accept this stand-in's signed CDS Hooks calls."""
        return {
            "IMMUNORAD_EHR_FHIR_URL": self.fhir_base,
            "IMMUNORAD_CDS_ISSUERS": f"{self.cds_issuer}|{self.root}/cds/jwks.json",
        }

    def counts(self) -> dict[str, int]:
        """Resources received, per type (DiagnosticReport, Observation, Flag)."""
        with self.lock:
            out: dict[str, int] = {}
            for kind, _ in self.resources:
                out[kind] = out.get(kind, 0) + 1
            return out

    def active_flags(self) -> int:
        with self.lock:
            return sum(1 for (kind, _), r in self.resources.items() if kind == "Flag" and r.get("status") == "active")

    def cds_cards(self, service_url: str, system: str, mrn: str) -> list[dict[str, Any]]:
        """A signed ``patient-view`` call for one patient, as the EHR makes it when the chart opens."""
        endpoint = f"{service_url.rstrip('/')}/cds-services/{CDS_SERVICE}"
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": self.cds_issuer,
                "sub": "demo-ehr",
                "aud": endpoint,
                "iat": now,
                "exp": now + 60,
                "jti": str(uuid.uuid4()),
            },
            self.key,
            algorithm="ES384",
            headers={"kid": self.kid, "typ": "JWT"},
        )
        patient = {"resourceType": "Patient", "id": mrn.lower(), "identifier": [{"system": system, "value": mrn}]}
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/demo", "patientId": patient["id"]},
            "prefetch": {"patient": patient},
        }
        request = urllib.request.Request(  # noqa: S310 -- the service's own loopback URL
            endpoint,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- as above
            return json.loads(response.read()).get("cards", [])

    # -- the server ----------------------------------------------------------------------------------------------
    def _jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "ES384"})
        return {"keys": [jwk]}

    def _apply(self, bundle: dict[str, Any]) -> dict[str, Any] | None:
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
            return None
        out = []
        with self.lock:
            for entry in bundle.get("entry") or []:
                kind, _, query = str((entry.get("request") or {}).get("url", "")).partition("?")
                identifier = (parse_qs(query).get("identifier") or [""])[0]
                key = (kind, identifier or str(uuid.uuid4()))
                created = key not in self.resources
                self.resources[key] = entry.get("resource") or {}
                out.append({"response": {"status": "201 Created" if created else "200 OK"}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}

    def start(self) -> None:
        ehr = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _reply(self, status: int, body: dict[str, Any], content_type: str = "application/fhir+json") -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    answer = ehr._apply(json.loads(raw)) if self.path.rstrip("/") == "/fhir" else None
                except ValueError:
                    answer = None
                if answer is None:
                    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}
                    self._reply(400, outcome)
                    return
                self._reply(200, answer)

            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                if path == "/cds/jwks.json":
                    self._reply(200, ehr._jwks(), "application/json")
                elif path.startswith("/fhir/") and path.count("/") == 2 and not path.endswith("metadata"):
                    self._reply(200, {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []})
                else:
                    self._reply(
                        404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
                    )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="demo-ehr", daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
