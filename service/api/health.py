"""``/healthz`` (liveness), ``/readyz`` (database reachable, listener up) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import os
import socket

from flask import Blueprint, Response, jsonify

from service.api.context import ctx
from service.ops.metrics import render_metrics

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


def dicom_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host if host != "0.0.0.0" else "127.0.0.1", port), timeout=1):  # noqa: S104 -- a comparison, not a bind: a wildcard listen address is probed on loopback
            return True
    except OSError:
        return False


@blueprint.get("/readyz")
def readyz():
    context = ctx()
    checks = {"database": context.db.ping()}
    if os.environ.get("IMMUNORAD_READY_CHECK_DICOM") == "1":
        checks["dicom-listener"] = dicom_listening(context.settings.dicom_host, context.settings.dicom_port)
    ready = all(checks.values())
    response = jsonify({"status": "ready" if ready else "not-ready", "checks": checks})
    response.status_code = 200 if ready else 503
    return response


@blueprint.get("/metrics")
def metrics():
    return Response(render_metrics(ctx().db), mimetype="text/plain; version=0.0.4")
