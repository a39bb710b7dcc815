"""Scale-out on one machine (issue 8 §3): two DICOM listeners, two workers and two API processes (each
gunicorn with two workers) against one PostgreSQL database.

PostgreSQL only by nature — several writers and ``FOR UPDATE SKIP LOCKED`` job claiming; the sqlite
parametrisation is skipped. A cohort goes in through both listeners at once — every instance is sent to
BOTH, concurrently, in opposite patient orders (so the same study, patient and instance race between the
two processes) — and its FHIR Bundles through both APIs. Then:

- every C-STORE (to either listener) and every POST (to either API) succeeded;
- every report was produced exactly once: one Report row and one DiagnosticReport per follow-up, the
  right dates, and no assessment version recorded twice for the same inputs;
- every report was delivered exactly once: the EHR received each outbox message once (no message taken by
  both workers), with one resource per identifier;
- both workers, both listeners and both APIs did part of the work; /metrics of either API agrees.
"""

from __future__ import annotations

import collections
import threading

import pytest
from sqlalchemy import create_engine

from tests.faults.harness import (
    RecordingEhr,
    Roles,
    cohort,
    metric_sum,
    post_fhir,
    read_metrics,
    rows,
    scalar,
    store,
    wait_idle,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url(backend, request):
    if backend != "postgresql":
        pytest.skip("PostgreSQL only by nature: concurrent writers in several processes, SKIP LOCKED claiming")
    return request.getfixturevalue("db_url")


@pytest.fixture
def ehr():
    server = RecordingEhr()
    server.start()
    yield server
    server.stop()


def listener_warnings(*services) -> str:
    """The listeners' warnings and errors (slow storage, refusals), to say why a C-STORE failed."""
    lines = []
    for service in services:
        path = service.log_path("dicom")
        if path.exists():
            lines += [line for line in path.read_text(errors="replace").splitlines() if '"level": "INFO"' not in line]
    return "\n".join(lines[-40:])


def run_all(jobs) -> list:
    """Run callables in parallel threads; their results in order (an exception fails the test)."""
    results: list = [None] * len(jobs)
    errors: list = []

    def run(i, job):
        try:
            results[i] = job()
        except BaseException as exc:  # noqa: BLE001 -- collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    return results


def test_two_of_each_role_one_database(pg_url, ehr, tmp_path):
    patients = cohort(10, "SCALE")
    env = {"IMMUNORAD_EHR_TIMEOUT_SECONDS": "5"}
    a = Roles(db_url=pg_url, var_dir=tmp_path / "a", ehr_url=ehr.base_url, extra_env=env)
    b = Roles(db_url=pg_url, var_dir=tmp_path / "b", ehr_url=ehr.base_url, extra_env=env)
    engine = create_engine(pg_url)
    try:
        run_all([a.start, b.start])

        # FHIR: each patient's Bundle through one API or the other, both APIs at once.
        statuses = run_all(
            [
                lambda: [post_fhir(a, p.bundle) for p in patients[0::2]],
                lambda: [post_fhir(b, p.bundle) for p in patients[1::2]],
            ]
        )
        assert statuses == [[200] * len(patients[0::2]), [200] * len(patients[1::2])]

        # DICOM: the whole cohort to both listeners at once, in opposite patient orders.
        def send(service, order, calling):
            return [r for p in order for r in store("127.0.0.1", service.dicom_port, p.datasets, calling=calling)]

        via_a, via_b = run_all(
            [lambda: send(a, patients, "PACS-A"), lambda: send(b, list(reversed(patients)), "PACS-B")]
        )
        for results in (via_a, via_b):
            bad = [(r.sop_uid, hex(r.status) if r.status is not None else None) for r in results if r.status != 0]
            assert not bad, f"C-STORE failures under concurrency: {bad[:5]}\n{listener_warnings(a, b)}"
        wait_idle(a, timeout=120)
        wait_idle(b)

        all_uids = {uid for p in patients for uid in p.sop_uids}
        assert scalar(engine, "SELECT count(*) FROM instances") == len(all_uids)
        assert scalar(engine, "SELECT count(*) FROM patients") == len(patients)
        assert scalar(engine, "SELECT count(DISTINCT study_uid) FROM studies") == scalar(
            engine, "SELECT count(*) FROM studies"
        )

        # Produced exactly once.
        expected = {p.mrn: sorted(p.expected_followups) for p in patients}
        produced = collections.defaultdict(list)
        for mrn, scan_date in rows(
            engine, "SELECT p.mrn, r.scan_date FROM reports r JOIN patients p ON p.id = r.patient_id"
        ):
            produced[mrn].append(str(scan_date))
        assert {m: sorted(d) for m, d in produced.items()} == expected
        assert (
            rows(
                engine,
                "SELECT patient_id, inputs_hash FROM assessments GROUP BY patient_id, inputs_hash, "
                "rulebase_version HAVING count(*) > 1",
            )
            == []
        )
        local = a.request("GET", "/fhir/DiagnosticReport?_count=1000")[1]
        assert local["total"] == sum(len(d) for d in expected.values())

        # Delivered exactly once.
        outbox = rows(engine, "SELECT report_identifier, status, attempts, locked_by FROM outbox")
        assert {r.status for r in outbox} == {"delivered"}
        assert collections.Counter(ehr.report_puts()) == collections.Counter(r.report_identifier for r in outbox)
        assert len(ehr.arrivals) == len(outbox)
        for patient in patients:
            delivered = sorted(r["effectiveDateTime"][:10] for r in ehr.reports_for(patient.mrn))
            assert delivered == expected[patient.mrn]

        # Both of each did work.
        workers = {r[0] for r in rows(engine, "SELECT DISTINCT locked_by FROM jobs WHERE status = 'done'")}
        assert len(workers) == 2, f"jobs were processed by {workers}"
        listeners = {r[0] for r in rows(engine, "SELECT DISTINCT calling_ae FROM instances")}
        assert listeners == {"PACS-A", "PACS-B"}  # the first to commit an instance stores it, the other finds it
        duplicates = scalar(engine, "SELECT count(*) FROM audit_events WHERE kind = 'dicom-store-duplicate'")
        assert duplicates == len(all_uids), "each instance was stored by one listener and found stored by the other"
        for service in (a, b):
            values = read_metrics(service)
            assert metric_sum(values, "immunorad_instances_received_total") == len(all_uids)
            assert metric_sum(values, "immunorad_outbox", status="delivered") == len(outbox)
            assert metric_sum(values, "immunorad_outbox", status="pending") == 0
    finally:
        a.stop()
        b.stop()
        engine.dispose()
