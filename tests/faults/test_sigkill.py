"""SIGKILL of each role mid-stream (issue 8 §5), on SQLite and PostgreSQL, through the real interfaces.

- dicom: the listener dies while a cohort is being sent. Every instance acknowledged before the kill is in
  the database without being sent again; after a restart the sender re-sends the studies, which changes
  nothing that was already stored (no duplicate instance, measurement, assessment version or report).
- api: gunicorn (master and workers) dies while FHIR Bundles are being posted. Every Bundle answered 2xx
  before the kill is readable after the restart; re-posting everything duplicates nothing.
- worker: the worker dies while the EHR holds a delivery it has already applied (the worst moment: the
  EHR has the bundle, the outbox does not know). After the restart the delivery is retried when its lease
  expires; the conditional PUTs land on the same resources, so every timepoint has one report at the EHR.

Each test ends by reading /metrics (queue, outbox, instances) and comparing it with the database.
"""

from __future__ import annotations

import collections
import threading
import urllib.parse

import pytest

from service.demo.cohort import case_measurements_bundle
from tests.faults.harness import (
    SYSTEM,
    acknowledged,
    cohort,
    measurement_groups,
    metric_sum,
    post_fhir,
    read_metrics,
    rows,
    scalar,
    store,
    wait_idle,
)

pytestmark = pytest.mark.slow


def check_results(engine, ehr, patients, *, exactly_once: bool) -> None:
    """One report per expected follow-up at the EHR and in the database; no duplicated evaluation."""
    expected_total = 0
    for patient in patients:
        expected = patient.expected_followups
        expected_total += len(expected)
        delivered = ehr.reports_for(patient.mrn)
        dates = sorted(r["effectiveDateTime"][:10] for r in delivered)
        assert dates == sorted(expected), f"{patient.mrn}: EHR has reports for {dates}, expected {expected}"
    assert scalar(engine, "SELECT count(*) FROM reports") == expected_total
    # A re-sent instance or a re-run job must not record a new assessment version for the same inputs.
    duplicates = rows(
        engine,
        "SELECT patient_id, inputs_hash, count(*) FROM assessments "
        "GROUP BY patient_id, inputs_hash, rulebase_version HAVING count(*) > 1",
    )
    assert duplicates == [], f"assessment versions recorded twice for the same inputs: {duplicates}"
    assert scalar(engine, "SELECT count(*) FROM jobs WHERE status = 'failed'") == 0
    assert scalar(engine, "SELECT count(*) FROM outbox WHERE status <> 'delivered'") == 0
    # Every outbox message reached the EHR; with exactly_once, no message reached it twice.
    per_identifier = collections.Counter(ehr.report_puts())
    outbox = collections.Counter(r[0] for r in rows(engine, "SELECT report_identifier FROM outbox"))
    for identifier, messages in outbox.items():
        if exactly_once:
            assert per_identifier[identifier] == messages, (identifier, per_identifier[identifier], messages)
        else:
            assert per_identifier[identifier] >= messages, (identifier, per_identifier[identifier], messages)
    assert set(per_identifier) == set(outbox)


def check_metrics(service, engine) -> None:
    values = read_metrics(service)
    assert metric_sum(values, "immunorad_database_up") == 1
    assert metric_sum(values, "immunorad_queue_depth", status="queued") == 0
    assert metric_sum(values, "immunorad_outbox", status="pending") == 0
    assert metric_sum(values, "immunorad_outbox", status="delivered") == scalar(engine, "SELECT count(*) FROM outbox")
    assert metric_sum(values, "immunorad_instances_received_total") == scalar(engine, "SELECT count(*) FROM instances")
    assert metric_sum(values, "immunorad_delivery_lag_seconds") == 0


def test_sigkill_dicom_listener_mid_stream(start_roles, recording_ehr, engine):
    patients = cohort(4, "KILL-DICOM")
    service = start_roles()
    for patient in patients:
        assert post_fhir(service, patient.bundle) == 200

    total = sum(len(p.datasets) for p in patients)
    kill_after = total // 3
    acked = threading.Semaphore(0)
    killed = threading.Event()

    def killer():
        for _ in range(kill_after):
            acked.acquire()
        service.kill("dicom")  # races with the next C-STORE in flight, as a crash would
        killed.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    first: list = []
    for patient in patients:
        first += store(
            "127.0.0.1",
            service.dicom_port,
            patient.datasets,
            after_each=lambda r: acked.release() if r.status == 0 else None,
        )
    thread.join(30)
    assert killed.is_set()
    sent_ok = acknowledged(first)
    assert kill_after <= len(sent_ok) < total, "the kill must land mid-stream"
    assert {r.status for r in first} <= {0x0000, None}

    # Nothing acknowledged was lost: every acknowledged instance is stored, before anything is re-sent.
    stored = {r[0] for r in rows(engine, "SELECT sop_uid FROM instances")}
    assert sent_ok <= stored, f"acknowledged but lost: {sorted(sent_ok - stored)[:5]}"

    service.restart("dicom")
    # The PACS re-sends every study that was not wholly acknowledged (and so re-sends acknowledged instances).
    for patient in patients:
        if not set(patient.sop_uids) <= sent_ok:
            again = store("127.0.0.1", service.dicom_port, patient.datasets)
            assert [r.status for r in again] == [0] * len(again)
    wait_idle(service)

    all_uids = {uid for p in patients for uid in p.sop_uids}
    assert scalar(engine, "SELECT count(*) FROM instances") == len(all_uids)
    assert {r[0] for r in rows(engine, "SELECT sop_uid FROM instances")} == all_uids
    groups = sum(measurement_groups(ds) for p in patients for ds in p.datasets)
    assert scalar(engine, "SELECT count(*) FROM measurements") == groups
    check_results(engine, recording_ehr, patients, exactly_once=True)
    check_metrics(service, engine)


def test_sigkill_api_mid_stream(start_roles, recording_ehr, engine):
    patients = cohort(4, "KILL-API", offset=2)
    service = start_roles(roles=("api", "worker"))
    bundles = []
    for patient in patients:
        bundles.append(patient.bundle)
        bundles.append(case_measurements_bundle(patient.case, patient.mrn, SYSTEM))
    kill_after = len(bundles) // 3
    accepted_count = threading.Semaphore(0)
    killed = threading.Event()

    def killer():
        for _ in range(kill_after):
            accepted_count.acquire()
        service.kill("api")
        killed.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    statuses = []
    for bundle in bundles:
        status = post_fhir(service, bundle)
        statuses.append(status)
        if status == 200:
            accepted_count.release()
    thread.join(30)
    assert killed.is_set()
    assert set(statuses) <= {200, None}, statuses
    accepted = [b for b, s in zip(bundles, statuses, strict=True) if s == 200]
    assert kill_after <= len(accepted) < len(bundles)

    service.restart("api")

    def stored(resource: dict) -> int:
        kind = resource["resourceType"]
        ident = resource["identifier"][0]
        query = urllib.parse.urlencode({"identifier": f"{ident['system']}|{ident['value']}"})
        status, body, _ = service.request("GET", f"/fhir/{kind}?{query}")
        assert status == 200, body
        return body["total"]

    # Every resource of every accepted Bundle is there, once, before anything is re-posted.
    for bundle in accepted:
        for entry in bundle["entry"]:
            assert stored(entry["resource"]) == 1, entry["resource"]["identifier"]

    for bundle in bundles:  # the client re-posts everything (idempotent: conditional PUTs)
        assert post_fhir(service, bundle) == 200
    wait_idle(service)
    for bundle in bundles:
        for entry in bundle["entry"]:
            assert stored(entry["resource"]) == 1, entry["resource"]["identifier"]
    observations = sum(1 for b in bundles for e in b["entry"] if e["resource"]["resourceType"] == "Observation")
    assert scalar(engine, "SELECT count(*) FROM measurements") == observations
    check_results(engine, recording_ehr, patients, exactly_once=True)
    check_metrics(service, engine)


def test_sigkill_worker_during_delivery(start_roles, recording_ehr, engine):
    patients = cohort(4, "KILL-WORKER", offset=4)
    service = start_roles()
    recording_ehr.hold_next()
    for patient in patients:
        assert post_fhir(service, patient.bundle) == 200
        results = store("127.0.0.1", service.dicom_port, patient.datasets)
        assert [r.status for r in results] == [0] * len(results)
    # The EHR has applied the first bundle and holds its answer: the worker dies waiting for it.
    assert recording_ehr.held.wait(60), "no delivery reached the EHR"
    service.kill("worker")
    recording_ehr.release()
    service.restart("worker")
    wait_idle(service, timeout=120)  # the held message is retried when its lease expires (timeout 2 s + 10 s)

    check_results(engine, recording_ehr, patients, exactly_once=False)
    # The interrupted delivery went out again, byte for byte the same bundle (the outbox keeps it): the EHR
    # applied it twice onto the same resources, so it still has one report per timepoint.
    held = recording_ehr.arrivals[0][1]
    again = [bundle for _, bundle in recording_ehr.arrivals[1:] if bundle == held]
    assert again, "the delivery interrupted by the kill was not retried"
    all_uids = {uid for p in patients for uid in p.sop_uids}
    assert {r[0] for r in rows(engine, "SELECT sop_uid FROM instances")} == all_uids
    check_metrics(service, engine)
