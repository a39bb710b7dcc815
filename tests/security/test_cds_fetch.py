"""A CDS Hooks call's ``fhirServer`` (contract §9.5): contacted only when it is the verified issuer's configured FHIR
base, with the patient id as one encoded path segment, never on the threads that serve the API.

Through real HTTP to gunicorn (``ServiceProcesses``), the EHR's JWT signed by the SMART test EHR's CDS key, and
plain socket servers on loopback standing for the EHR's FHIR server, an attacker's listener and a silent EHR.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time
import urllib.request
import uuid

import pytest

from tests.support.processes import ServiceProcesses

SERVICE = "/cds-services/immunorad-alerts"
MRN = "CDS-FETCH-0001"


class Listener:
    """A plain TCP server on loopback that records the request line of every HTTP request it receives and
    answers a Patient at ``/fhir/Patient/ehr-1``, 404 elsewhere (``silent``: accepts, reads, never answers)."""

    def __init__(self, *, silent: bool = False) -> None:
        self.silent = silent
        self.requests: list[str] = []
        self.connections = 0
        self._held: list[socket.socket] = []
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        data = b""
        conn.settimeout(10)
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        self.requests.append(line)
        if self.silent:
            self._held.append(conn)  # never answered, never closed until the test ends
            return
        body = json.dumps(
            {"resourceType": "Patient", "id": "ehr-1", "identifier": [{"system": "urn:immunorad:mrn", "value": MRN}]}
        ).encode()
        status = b"200 OK" if line == "GET /fhir/Patient/ehr-1 HTTP/1.1" else b"404 Not Found"
        conn.sendall(
            b"HTTP/1.1 "
            + status
            + b"\r\nContent-Type: application/fhir+json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def listeners():
    made: list[Listener] = []

    def make(**kw) -> Listener:
        made.append(Listener(**kw))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def start_api(db_url, tmp_path, smart_ehr, fhir_base: str) -> ServiceProcesses:
    processes = ServiceProcesses(
        db_url=db_url,
        var_dir=tmp_path / "var",
        roles=("api",),
        extra_env={
            "IMMUNORAD_CDS_ISSUERS": f"{smart_ehr.cds_issuer}|{smart_ehr.cds_jwks_url}",
            "IMMUNORAD_CDS_FHIR_SERVERS": f"{smart_ehr.cds_issuer}|{fhir_base}",
            "IMMUNORAD_CDS_FETCH_TIMEOUT_SECONDS": "2",
        },
    )
    processes.start()
    return processes


def hook(fhir_server: str, patient_id: str = "ehr-1") -> dict:
    """A patient-view call without prefetch: the service may read the Patient from ``fhirServer``."""
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server,
        "fhirAuthorization": {
            "access_token": "ehr-granted-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Patient.read",
            "subject": "immunorad",
        },
        "context": {"userId": "Practitioner/1", "patientId": patient_id},
    }


def call(processes: ServiceProcesses, smart_ehr, body: dict) -> int:
    token = smart_ehr.cds_jwt(f"{processes.base_url}{SERVICE}")
    return processes.request("POST", SERVICE, body, token=token)[0]


def test_only_the_issuers_configured_fhir_base_is_contacted(db_url, tmp_path, smart_ehr, listeners):
    ehr_fhir, attacker = listeners(), listeners()
    processes = start_api(db_url, tmp_path, smart_ehr, f"{ehr_fhir.base}/fhir")
    try:
        # The configured base: read, with the id as one path segment (and the patient is unknown here: no cards).
        assert call(processes, smart_ehr, hook(f"{ehr_fhir.base}/fhir/")) == 200
        assert ehr_fhir.requests == ["GET /fhir/Patient/ehr-1 HTTP/1.1"]
        # A traversal id stays inside that segment: nothing outside /fhir/Patient/ is ever requested.
        assert call(processes, smart_ehr, hook(f"{ehr_fhir.base}/fhir", "../../internal/admin?x=")) == 412
        assert ehr_fhir.requests[1] == "GET /fhir/Patient/..%2F..%2Finternal%2Fadmin%3Fx%3D HTTP/1.1"
        # Any other fhirServer — another host, the same host under another path, the issuer's base with a suffix —
        # is never contacted, though the JWT is valid.
        for foreign in (
            f"{attacker.base}/fhir",
            f"{attacker.base}",
            f"{ehr_fhir.base}/internal",
            f"{ehr_fhir.base}/fhir/../internal",
            f"{ehr_fhir.base}/fhir@{attacker.base[7:]}",
        ):
            assert call(processes, smart_ehr, hook(foreign)) == 412, foreign
        time.sleep(0.5)
        assert attacker.connections == 0 and attacker.requests == []
        assert len(ehr_fhir.requests) == 2
    finally:
        processes.stop()


def test_healthz_answers_while_cds_calls_hang_on_a_silent_ehr(db_url, tmp_path, smart_ehr, listeners):
    silent = listeners(silent=True)
    processes = start_api(db_url, tmp_path, smart_ehr, f"{silent.base}/fhir")
    try:
        # Warm the JWKS cache of both workers' first calls is not needed: each call fetches keys at most once.
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            started = time.monotonic()
            calls = [pool.submit(call, processes, smart_ehr, hook(f"{silent.base}/fhir")) for _ in range(16)]
            deadline = time.monotonic() + 10
            while silent.connections == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert silent.connections > 0, "no CDS call reached the silent EHR"
            timings = []
            for path in ("/healthz", "/healthz", "/fhir/metadata"):
                began = time.monotonic()
                with urllib.request.urlopen(f"{processes.base_url}{path}", timeout=5) as response:
                    assert response.status == 200
                timings.append(time.monotonic() - began)
            still_hanging = sum(not c.done() for c in calls)
            statuses = [c.result(timeout=30) for c in calls]
            total = time.monotonic() - started
        assert max(timings) < 1.0, timings
        assert still_hanging > 0, "the CDS calls did not hang: the test proves nothing"
        assert statuses == [412] * 16
        # Every call ended within the fetch deadline (2 s) plus its own work, never the EHR's silence.
        assert total < 10, total
    finally:
        processes.stop()


def test_ehr_search_paging_never_leaves_the_configured_ehr(settings_factory, ehr, listeners):
    # The worker's context pull follows an EHR's ``next`` links with our credential: only under its own base.
    from service.publish.ehr_client import EhrClient
    from service.publish.errors import DeliveryError

    attacker = listeners()
    ehr.search_data["Observation"] = [{"resourceType": "Observation", "id": f"o{n}"} for n in range(5)]
    client = EhrClient(settings_factory(ehr_fhir_url=ehr.base_url, ehr_token="our-ehr-token"))
    assert [r["id"] for r in client.search("Observation", {"_count": "2"})] == ["o0", "o1", "o2", "o3", "o4"]
    for elsewhere in (f"{attacker.base}/fhir", f"{ehr.base_url}/../internal", ehr.base_url.replace("/fhir", "/admin")):
        ehr.next_link_base = elsewhere
        with pytest.raises(DeliveryError, match="paging link"):
            client.search("Observation", {"_count": "2"})
    time.sleep(0.3)
    assert attacker.connections == 0
    assert not any("/internal" in path or "/admin" in path for _, path, _ in ehr.requests)


def test_healthz_and_the_api_answer_beside_idle_and_kept_alive_connections(db_url, tmp_path):
    # 48 connections (three times the request threads) that never send a byte, and 16 kept alive after a request:
    # they wait in the worker's event loop (service.ops.http_worker), none holds a request thread.
    processes = ServiceProcesses(db_url=db_url, var_dir=tmp_path / "var", roles=("api",))
    processes.start()
    idle: list[socket.socket] = []
    try:
        for _ in range(16):
            conn = socket.create_connection(("127.0.0.1", processes.http_port), timeout=5)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            idle.append(conn)  # kept alive, silent from now on
        for _ in range(48):
            idle.append(socket.create_connection(("127.0.0.1", processes.http_port), timeout=5))
        time.sleep(1)
        timings = []
        for path in ("/healthz", "/fhir/metadata", "/healthz"):
            began = time.monotonic()
            with urllib.request.urlopen(f"{processes.base_url}{path}", timeout=5) as response:
                assert response.status == 200
            timings.append(time.monotonic() - began)
        assert processes.request("GET", "/api/patients")[0] == 200
        assert max(timings) < 1.0, timings
    finally:
        for conn in idle:
            conn.close()
        processes.stop()


def test_healthz_and_the_api_answer_while_slow_clients_trickle(db_url, tmp_path):
    # 32 clients (twice the request threads) send a request head a byte every 0.3 s, and 32 more a complete head
    # then a body a byte every 0.3 s: heads wait in the event loop, bodies must keep a minimum rate.
    processes = ServiceProcesses(db_url=db_url, var_dir=tmp_path / "var", roles=("api",))
    processes.start()
    stop = threading.Event()
    slow: list[socket.socket] = []
    cut: list[float] = []
    head = b"POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 100000\r\n"

    def trickle(conn: socket.socket, data: bytes) -> None:
        began = time.monotonic()
        for n in range(len(data)):
            if stop.wait(0.3):
                return
            try:
                conn.sendall(data[n : n + 1])
            except OSError:
                cut.append(time.monotonic() - began)
                return

    try:
        for n in range(64):
            conn = socket.create_connection(("127.0.0.1", processes.http_port), timeout=5)
            if n % 2:
                conn.sendall(head + b"Authorization: Bearer e2e-token\r\n\r\n")
                data = b"{" + b" " * 99998 + b"}"
            else:
                data = head
            slow.append(conn)
            threading.Thread(target=trickle, args=(conn, data), daemon=True).start()
        time.sleep(2)  # every slow client is under way
        timings = []
        for path in ("/healthz", "/fhir/metadata", "/healthz"):
            began = time.monotonic()
            with urllib.request.urlopen(f"{processes.base_url}{path}", timeout=5) as response:
                assert response.status == 200
            timings.append(time.monotonic() - began)
        assert processes.request("GET", "/api/patients")[0] == 200
        assert max(timings) < 1.0, timings
        # The slow bodies were cut after the grace period (5 s); the slow heads after the head deadline (10 s).
        deadline = time.monotonic() + 30
        while len(cut) < 64 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(cut) == 64, f"{len(cut)} of 64 slow clients were cut off"
    finally:
        stop.set()
        for conn in slow:
            conn.close()
        processes.stop()
