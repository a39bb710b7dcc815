"""The EHR down for minutes, then back (issue 8 §5), on SQLite and PostgreSQL.

"Minutes" are compressed: the worker runs with a first retry wait of 0.04 s instead of 2 s
(``IMMUNORAD_RETRY_BACKOFF_SECONDS``, a production setting; the doubling is unchanged), and the EHR stays
down until the first report of every patient has failed ``OUTAGE_ATTEMPTS`` times — with production backoff (2, 4, 8, … s, ±20 %) that is ≈4 minutes of
outage (2+4+…+128 s = 254 s), here ≈5 s. While it is down, /metrics must show the pending deliveries, a
growing delivery lag and the failed attempts. When it is back every report is delivered exactly once, in
order per patient (outbox order), and /metrics returns to zero lag.
"""

from __future__ import annotations

import collections
import time

import pytest

from tests.faults.harness import cohort, metric_sum, post_fhir, read_metrics, rows, scalar, store, wait_idle

pytestmark = pytest.mark.slow

FIRST_RETRY_SECONDS = 0.04
"""2 s in production: the outage below is 0.02 × the production one."""
OUTAGE_ATTEMPTS = 8
"""Attempts each patient's first report makes while the EHR is down (7 backoffs: 254 s unscaled)."""


def test_ehr_down_for_minutes_then_back(start_roles, recording_ehr, engine):
    patients = cohort(3, "EHR-DOWN")
    recording_ehr.down = True
    service = start_roles(IMMUNORAD_RETRY_BACKOFF_SECONDS=str(FIRST_RETRY_SECONDS))
    for patient in patients:
        assert post_fhir(service, patient.bundle) == 200
        results = store("127.0.0.1", service.dicom_port, patient.datasets)
        assert [r.status for r in results] == [0] * len(results)
    wait_idle(service, outbox=False)  # every evaluation done: every report is in the outbox
    expected = sum(len(p.expected_followups) for p in patients)
    assert scalar(engine, "SELECT count(DISTINCT report_identifier) FROM outbox") == expected

    def heads_attempts() -> int:
        """Fewest attempts among each patient's oldest pending message (the only one being tried)."""
        heads = rows(engine, "SELECT min(id) FROM outbox WHERE status = 'pending' GROUP BY patient_id")
        attempts = [scalar(engine, "SELECT attempts FROM outbox WHERE id = :id", id=h[0]) for h in heads]
        return min(attempts) if len(attempts) == len(patients) else 0

    service.wait_for(
        lambda: heads_attempts() >= OUTAGE_ATTEMPTS,
        timeout=120,
        interval=0.5,
        message=f"{OUTAGE_ATTEMPTS} failed attempts per patient",
    )
    assert recording_ehr.arrivals == []

    # What an operator sees meanwhile.
    pending = scalar(engine, "SELECT count(*) FROM outbox WHERE status = 'pending'")
    values = read_metrics(service)
    assert metric_sum(values, "immunorad_outbox", status="pending") == pending
    assert metric_sum(values, "immunorad_outbox", status="delivered") == 0
    lag = metric_sum(values, "immunorad_delivery_lag_seconds")
    assert lag > 0
    assert metric_sum(values, "immunorad_errors_total", kind="delivery-failed") >= (OUTAGE_ATTEMPTS - 1) * len(
        patients
    )  # the last may be in flight
    time.sleep(1.0)
    assert metric_sum(read_metrics(service), "immunorad_delivery_lag_seconds") > lag  # the lag grows

    recording_ehr.down = False
    wait_idle(service, timeout=120)

    # Every message delivered exactly once...
    outbox = rows(engine, "SELECT id, patient_id, report_identifier, status FROM outbox ORDER BY id")
    assert {r.status for r in outbox} == {"delivered"}
    puts = recording_ehr.report_puts()
    assert len(puts) == len(outbox), "a report was delivered more (or less) than once"
    assert collections.Counter(puts) == collections.Counter(r.report_identifier for r in outbox)
    # ... in order per patient: the EHR saw each patient's reports in outbox order.
    by_patient: dict[str, list[str]] = collections.defaultdict(list)
    for row in outbox:
        by_patient[row.patient_id].append(row.report_identifier)
    for patient_id, identifiers in by_patient.items():
        seen = [p for p in puts if p in set(identifiers)]
        assert seen == identifiers, f"patient {patient_id}: delivered out of order"
    for patient in patients:
        dates = sorted(r["effectiveDateTime"][:10] for r in recording_ehr.reports_for(patient.mrn))
        assert dates == sorted(patient.expected_followups)

    values = read_metrics(service)
    assert metric_sum(values, "immunorad_outbox", status="pending") == 0
    assert metric_sum(values, "immunorad_outbox", status="delivered") == len(outbox)
    assert metric_sum(values, "immunorad_delivery_lag_seconds") == 0
