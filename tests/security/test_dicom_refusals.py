"""A refused DICOM association is logged (JSON, no PHI) and audited like a refused HTTP call (contract §9.5):
calling AE title not allowed, called AE title wrong, TLS handshake failed. The listener runs as the ``dicom``
role process (``immunorad dicom``) with mutual TLS; DCMTK's echoscu is the peer; the audit trail is read back
over HTTP from the ``api`` role.
"""

from __future__ import annotations

import json
import socket

from tests.security.test_dicom_tls import pki, tls_options  # noqa: F401 - the module-scoped PKI fixture
from tests.support.dcmtk import echoscu
from tests.support.processes import ServiceProcesses


def dicom_refusals(processes: ServiceProcesses) -> list[dict]:
    status, body, _ = processes.request("GET", "/api/audit?limit=100")
    assert status == 200
    return [e for e in body["events"] if e["kind"] == "auth-failure" and e["source"] == "dicom"]


def test_refused_associations_are_logged_and_audited(db_url, tmp_path, pki):
    processes = ServiceProcesses(
        db_url=db_url,
        var_dir=tmp_path / "var",
        roles=("api", "dicom"),
        extra_env={
            "IMMUNORAD_ALLOWED_CALLING_AETS": "ECHOSCU",
            "IMMUNORAD_DICOM_TLS_CERT": str(pki.server_cert),
            "IMMUNORAD_DICOM_TLS_KEY": str(pki.server_key),
            "IMMUNORAD_DICOM_TLS_CA": str(pki.ca),
        },
    )
    processes.start()
    try:
        port = processes.dicom_port
        # Accepted: a trusted certificate, an allowed calling AE, our called AE. Not a refusal.
        assert echoscu("127.0.0.1", port, extra=tls_options(pki)).returncode == 0
        # A port probe (connect, close) is not a refusal either.
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        refused = {
            "calling-ae-not-allowed": echoscu("127.0.0.1", port, aet="INTRUDER", extra=tls_options(pki)),
            "called-ae-wrong": echoscu("127.0.0.1", port, aec="SOMEONE_ELSE", extra=tls_options(pki)),
            "tls-failed (plain TCP)": echoscu("127.0.0.1", port),
            "tls-failed (no client certificate)": echoscu("127.0.0.1", port, extra=["+tla", "+cf", str(pki.ca)]),
        }
        assert all(result.returncode != 0 for result in refused.values())
        events = processes.wait_for(lambda: (lambda e: e if len(e) >= 4 else None)(dicom_refusals(processes)))
        reasons = sorted(json.loads(e["detail"])["reason"] for e in events)
        assert reasons == ["called-ae-wrong", "calling-ae-not-allowed", "tls-failed", "tls-failed"]
        assert all(e["outcome"] == "4" and e["action"] == "E" and e["patient"] is None for e in events)
        by_reason = {json.loads(e["detail"])["reason"]: json.loads(e["detail"]) for e in events}
        assert by_reason["calling-ae-not-allowed"]["calling_ae"] == "INTRUDER"
        assert by_reason["called-ae-wrong"]["called_ae"] == "SOMEONE_ELSE"
        assert by_reason["called-ae-wrong"]["peer"] == "127.0.0.1"
        # One JSON log line per refusal from the dicom role.
        lines = [
            json.loads(line) for line in processes.log_path("dicom").read_text().splitlines() if line.startswith("{")
        ]
        logged = [line for line in lines if line.get("msg") == "DICOM association refused"]
        assert sorted(line["reason"] for line in logged) == reasons, logged
        # The same refusals as FHIR AuditEvents ("User Authentication", like refused HTTP calls).
        status, bundle, _ = processes.request("GET", "/fhir/AuditEvent?_count=100")
        assert status == 200
        codes = [e["resource"]["type"]["code"] for e in bundle["entry"]]
        assert codes.count("110114") >= 4
    finally:
        processes.stop()
