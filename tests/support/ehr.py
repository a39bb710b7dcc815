"""A real HTTP server standing in for the EHR's FHIR base: it receives the transaction Bundles we deliver.

It applies conditional PUTs the way a FHIR server does (one resource per identifier, updated in place),
so tests can tell a duplicate delivery from a new version. It can be switched "down" (503) to test retries.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class FakeEhr:
    def __init__(self, *, token: str | None = None) -> None:
        self.token = token
        self.down = False
        self.bundles: list[dict] = []
        self.received_sha256: list[str] = []
        """SHA-256 (hex) of each POST body, as the bytes arrived."""
        self.resources: dict[tuple[str, str], dict] = {}
        """(resourceType, identifier token) → the latest resource."""
        self.versions: dict[tuple[str, str], int] = {}
        self.rejected: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.search_data: dict[str, list[dict]] = {}
        """resourceType → resources served to searches (context pull)."""
        self.requests: list[tuple[str, str, str | None]] = []
        self.next_link_base: str | None = None
        """When set, search paging links point there instead of at this server (a misbehaving or hostile EHR)."""

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/fhir"

    def start(self) -> None:
        ehr = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if ehr.token is None:
                    return True
                return self.headers.get("Authorization") == f"Bearer {ehr.token}"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with ehr.lock:
                    ehr.requests.append(("POST", self.path, self.headers.get("Authorization")))
                    ehr.received_sha256.append(hashlib.sha256(raw).hexdigest())
                if ehr.down:
                    self._reply(
                        503, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "transient"}]}
                    )
                    return
                if not self._authorised():
                    ehr.rejected.append((401, self.path))
                    self._reply(
                        401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]}
                    )
                    return
                bundle = json.loads(raw)
                problem = ehr._check_bundle(bundle)
                if problem:
                    ehr.rejected.append((400, problem))
                    self._reply(
                        400,
                        {
                            "resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": "invalid", "diagnostics": problem}],
                        },
                    )
                    return
                self._reply(200, ehr._apply(bundle))

            def do_GET(self):
                with ehr.lock:
                    ehr.requests.append(("GET", self.path, self.headers.get("Authorization")))
                if not self._authorised():
                    self._reply(
                        401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]}
                    )
                    return
                path, _, query = self.path.partition("?")
                kind = path.rstrip("/").split("/")[-1]
                params = parse_qs(query)
                items = ehr.search_data.get(kind, [])
                if kind not in ehr.search_data and "identifier" in params:
                    # What was delivered, as this EHR now holds it (a search by business identifier).
                    with ehr.lock:
                        found = ehr.resources.get((kind, params["identifier"][0]))
                    items = [found] if found is not None else []
                offset = int(params.get("_offset", ["0"])[0])
                count = int(params.get("_count", ["2"])[0])
                page = items[offset : offset + count]
                links = []
                if offset + count < len(items):
                    rest = "&".join(f"{k}={v[0]}" for k, v in params.items() if k not in ("_offset", "_count"))
                    links.append(
                        {
                            "relation": "next",
                            "url": f"{ehr.next_link_base or ehr.base_url}/{kind}?{rest}&_count={count}"
                            f"&_offset={offset + count}",
                        }
                    )
                self._reply(
                    200,
                    {
                        "resourceType": "Bundle",
                        "type": "searchset",
                        "total": len(items),
                        "link": links,
                        "entry": [{"resource": r, "search": {"mode": "match"}} for r in page],
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def _check_bundle(self, bundle: dict) -> str | None:
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
            return "not a transaction Bundle"
        for entry in bundle.get("entry", []):
            request = entry.get("request") or {}
            if request.get("method") != "PUT" or "?identifier=" not in request.get("url", ""):
                return f"entry is not a conditional PUT: {request}"
            if not str(entry.get("fullUrl", "")).startswith("urn:uuid:"):
                return "entry fullUrl must be a urn:uuid"
        return None

    def _apply(self, bundle: dict) -> dict:
        with self.lock:
            self.bundles.append(bundle)
            out = []
            for entry in bundle["entry"]:
                kind, _, query = entry["request"]["url"].partition("?")
                key = (kind, parse_qs(query)["identifier"][0])
                created = key not in self.resources
                self.resources[key] = entry["resource"]
                self.versions[key] = self.versions.get(key, 0) + 1
                out.append({"response": {"status": "201 Created" if created else "200 OK"}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}

    def set_status(self, kind: str, identifier_value: str, status: str) -> dict:
        """A user of this EHR changes a delivered resource's status (a Flag set inactive): the next read sees it."""
        with self.lock:
            key = next(k for k in self.resources if k[0] == kind and k[1].endswith(f"|{identifier_value}"))
            self.resources[key] = {**self.resources[key], "status": status}
            self.versions[key] = self.versions.get(key, 0) + 1
            return self.resources[key]

    # -- what tests read --------------------------------------------------------------------------------
    def of_type(self, kind: str) -> list[dict]:
        with self.lock:
            return [r for (k, _), r in self.resources.items() if k == kind]

    def reports(self) -> list[dict]:
        return sorted(self.of_type("DiagnosticReport"), key=lambda r: r.get("effectiveDateTime", ""))

    def observation_for(self, report: dict, criterion: str) -> dict | None:
        """The criterion Observation a delivered report references (bundle-internal urn:uuid references)."""
        with self.lock:
            bundles = [
                b for b in self.bundles if any(e["resource"] is report or e["resource"] == report for e in b["entry"])
            ]
        for bundle in reversed(bundles):
            by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
            for ref in report.get("result", []):
                obs = by_url.get(ref.get("reference"))
                is_criterion = any(
                    c.get("code") == "overall-response" for c in (obs or {}).get("code", {}).get("coding", [])
                )
                if is_criterion and any(
                    c.get("code") == criterion for c in (obs.get("method") or {}).get("coding", [])
                ):
                    return obs
        return None

    def delivery_count(self, kind: str, identifier_value_contains: str) -> int:
        with self.lock:
            return sum(
                1
                for b in self.bundles
                for e in b["entry"]
                if e["request"]["url"].startswith(kind + "?") and identifier_value_contains in e["request"]["url"]
            )
