"""PostgreSQL restarted under load (issue 8 §5): the service recovers without manual action.

PostgreSQL only by nature (on SQLite there is no server to restart); the sqlite parametrisation is skipped.
The server is stopped with ``-m immediate`` — a crash as far as the data is concerned — while a DICOM
sender and a FHIR client keep going, then started again. Checks:

- while it is down, a C-STORE gets 0xA700 (the sender retries) — never success — and a FHIR write 503;
  /metrics (served by the API) still answers and says ``immunorad_database_up 0``;
- nothing acknowledged before the crash is lost (WAL recovery; we commit before we acknowledge);
- afterwards the same processes (no restart) acknowledge, accept, evaluate and deliver again.

The restarted server is a private cluster on its own port (see ``pg_cluster.py`` for why, and for
``IMMUNORAD_FAULT_PG=shared``, which restarts the machine's cluster with pg_ctlcluster instead).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import create_engine

from service.demo.cohort import case_bundle
from service.demo.sr_writer import build_ct_image
from service.persistence.db import migrate
from tests.faults.harness import (
    SYSTEM,
    Roles,
    StoreResult,
    cohort,
    metric_sum,
    read_metrics,
    rows,
    store,
    wait_idle,
)
from tests.faults.pg_cluster import PrivateCluster, SharedCluster
from tests.rules import cases
from tests.support.ports import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(backend, request):
    if backend != "postgresql":
        pytest.skip("PostgreSQL only by nature: SQLite has no server to restart")
    if os.environ.get("IMMUNORAD_FAULT_PG") == "shared":
        url = request.getfixturevalue("db_url")
        yield SharedCluster(url)
        return
    private = PrivateCluster(free_port())
    private.init()
    migrate(private.url)
    yield private
    private.destroy()


class DicomLoad(threading.Thread):
    """Small CT images, five per association, as fast as the listener answers."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.results: list[StoreResult] = []

    def run(self) -> None:
        batch_no = 0
        while not self.stop.is_set():
            study = generate_uid()
            batch = [
                build_ct_image(
                    patient_id=f"PGLOAD-{batch_no % 7}",
                    patient_name="LOAD^PG",
                    study_instance_uid=study,
                    study_date=dt.date(2024, 1, 1),
                    sop_instance_uid=generate_uid(),
                    instance_number=i + 1,
                )
                for i in range(5)
            ]
            self.results += store("127.0.0.1", self.port, batch, calling="PGLOAD")
            batch_no += 1
            time.sleep(0.02)

    def count(self, status: int | None, since: float = 0.0) -> int:
        return sum(1 for r in list(self.results) if r.status == status and r.started >= since)


class FhirLoad(threading.Thread):
    """A Patient and therapy-start Bundle per request, each for a new patient."""

    def __init__(self, service: Roles) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.stop = threading.Event()
        self.results: list[tuple[float, float, int | None, str]] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            mrn = f"PGFHIR-{n:04d}"
            started = time.monotonic()
            try:
                status = self.service.request("POST", "/fhir", case_bundle(cases.E1, mrn, SYSTEM))[0]
            except OSError:
                status = None
            self.results.append((started, time.monotonic(), status, mrn))
            n += 1
            time.sleep(0.05)

    def count(self, status: int | None, since: float = 0.0) -> int:
        return sum(1 for r in list(self.results) if r[2] == status and r[0] >= since)


def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_postgres_restart_under_load(cluster, recording_ehr, tmp_path):
    service = Roles(
        db_url=cluster.url,
        var_dir=tmp_path / "svc",
        ehr_url=recording_ehr.base_url,
        extra_env={"IMMUNORAD_EHR_TIMEOUT_SECONDS": "2"},
    )
    service.start()
    engine = create_engine(cluster.url, pool_pre_ping=True)
    dicom, fhir = DicomLoad(service.dicom_port), FhirLoad(service)
    try:
        pids = {role: service.pid(role) for role in service.ROLES}
        dicom.start()
        fhir.start()
        until(lambda: dicom.count(0) >= 15 and fhir.count(200) >= 3, 60, "load before the restart")

        cluster.stop("immediate")
        down = time.monotonic()
        until(lambda: dicom.count(0xA700, down) >= 3 and fhir.count(503, down) >= 2, 60, "refusals while down")
        values = read_metrics(service)
        assert metric_sum(values, "immunorad_database_up") == 0
        up_begin = time.monotonic()
        cluster.start()
        up = time.monotonic()
        until(lambda: dicom.count(0, up) >= 10 and fhir.count(200, up) >= 2, 90, "success after the restart")
    finally:
        dicom.stop.set()
        fhir.stop.set()
        dicom.join(60)
        fhir.join(60)

    try:
        # Only success or "out of resources, retry" ever; never success while the server was down.
        assert {r.status for r in dicom.results} <= {0x0000, 0xA700}, {hex(r.status or -1) for r in dicom.results}
        assert {r[2] for r in fhir.results} <= {200, 503}, {r[2] for r in fhir.results}
        during = [r for r in dicom.results if r.started >= down and r.ended <= up_begin]
        assert during and {r.status for r in during} == {0xA700}
        assert {r[2] for r in fhir.results if r[0] >= down and r[1] <= up_begin} == {503}

        # Nothing acknowledged was lost in the crash.
        stored = {r[0] for r in rows(engine, "SELECT sop_uid FROM instances")}
        acked = {r.sop_uid for r in dicom.results if r.status == 0}
        assert acked <= stored, f"{len(acked - stored)} acknowledged instances lost"
        accepted = {r[3] for r in fhir.results if r[2] == 200}
        mrns = {r[0] for r in rows(engine, "SELECT mrn FROM patients")}
        assert accepted <= mrns

        # The same processes carry on (no restart by hand or by a supervisor): a case goes all the way to the EHR.
        dead = [role for role in service.ROLES if not service.alive(role)]
        assert not dead, f"{dead} exited during the restart:\n" + "\n".join(
            service.log_path(role).read_text(errors="replace")[-3000:] for role in dead
        )
        assert {role: service.pid(role) for role in service.ROLES} == pids
        (patient,) = cohort(1, "PG-AFTER")
        assert service.request("POST", "/fhir", patient.bundle)[0] == 200
        assert [r.status for r in store("127.0.0.1", service.dicom_port, patient.datasets)] == [0] * len(
            patient.datasets
        )
        wait_idle(service, timeout=120)
        dates = sorted(r["effectiveDateTime"][:10] for r in recording_ehr.reports_for(patient.mrn))
        assert dates == sorted(patient.expected_followups)
        assert metric_sum(read_metrics(service), "immunorad_database_up") == 1

        # The jobs cut off by the crash were rolled back and run again: none is left running, none was blamed for it.
        assert rows(engine, "SELECT id FROM jobs WHERE status = 'running'") == []
        blamed = rows(engine, "SELECT id, last_error FROM jobs WHERE last_error IS NOT NULL")
        assert blamed == [], blamed
    finally:
        service.stop()
        engine.dispose()
