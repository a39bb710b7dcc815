"""A small HTTP server for the ``dicom`` and ``worker`` roles: /healthz, /readyz, /metrics (IMMUNORAD_ROLE_HTTP_PORT)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from service.ops.metrics import render_metrics
from service.persistence.db import Database


def start_role_http(host: str, port: int, db: Database, ready: Callable[[], dict[str, bool]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # silence the default access log (no PHI in URLs anyway)
            return

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/healthz":
                self._send(200, b'{"status":"ok"}', "application/json")
            elif self.path == "/readyz":
                checks = ready()
                ok = all(checks.values())
                self._send(
                    200 if ok else 503,
                    json.dumps({"status": "ready" if ok else "not-ready", "checks": checks}).encode(),
                    "application/json",
                )
            elif self.path == "/metrics":
                self._send(200, render_metrics(db), "text/plain; version=0.0.4")
            else:
                self._send(404, b'{"error":"not found"}', "application/json")

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="role-http", daemon=True)
    thread.start()
    return server
