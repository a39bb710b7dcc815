"""Alert follow-up (contract §9.7): an alert acknowledged by ``POST /api/alerts/{id}/acknowledge``, by CDS Hooks
feedback (``overridden`` with its reason, signed with the EHR's JWT), or by its Flag set ``inactive`` in the EHR
(the HTTP stand-in of tests/support/ehr.py) and read back by the worker; who and when recorded, the time to
acknowledgement per alert type and the unacknowledged critical alerts in JSON and on the dashboard.

Example K1 (tests/e2e/kinetics_cases.py) raises hyperprogression and fast progression (critical) and a due
confirmation scan (warning).
"""

from __future__ import annotations

import json

import pytest

from service.api import create_app
from service.assessment.worker import Worker
from service.persistence.models import AlertAcknowledgement
from tests.e2e import kinetics_cases as kc


@pytest.fixture
def cds_ehr():
    ehr = kc.CdsEhr()
    yield ehr
    ehr.close()


@pytest.fixture
def wired(settings_factory, cds_ehr, ehr):
    settings = settings_factory(ehr_fhir_url=ehr.base_url, **cds_ehr.settings_overrides())
    client = create_app(settings).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {settings.api_token}"
    return settings, client


def _alerts(client, mrn: str) -> dict[str, dict]:
    patient_id = client.get(f"/api/patients/{mrn}").get_json()["patient"]["id"]
    body = client.get(f"/api/alerts?patient={patient_id}").get_json()
    return {a["code"]: a for a in body["alerts"] if a["status"] == "active"}


def test_acknowledged_by_rest_cds_feedback_and_the_ehr_flag(wired, db, cds_ehr, ehr):
    settings, client = wired
    mrn = kc.submit(client, kc.K1)
    worker = Worker(settings, db)
    worker.drain()
    alerts = _alerts(client, mrn)
    assert {"hyperprogression", "fast-progression", "confirmation-due"} <= set(alerts)

    follow = client.get("/api/quality/alert-follow-up").get_json()
    waiting = {a["code"] for a in follow["unacknowledged_critical"]}
    assert waiting == {"hyperprogression", "fast-progression"}  # the warning is not listed
    assert mrn not in str(follow)  # pseudonymised

    # (a) REST.
    url = f"/api/alerts/{alerts['hyperprogression']['identifier']}/acknowledge"
    for bad in ({}, {"by": ""}, {"by": "Dr O", "extra": 1}, {"by": 3}):
        assert client.post(url, json=bad).status_code == 400, bad
    assert client.post("/api/alerts/no-such-alert/acknowledge", json={"by": "Dr O"}).status_code == 404
    response = client.post(url, json={"by": "Dr O. Oncologist", "comment": "treatment changed"})
    assert response.status_code == 201
    assert response.get_json()["acknowledgements"][0]["by"] == "Dr O. Oncologist"

    # (b) CDS Hooks feedback, overridden with its reason.
    cards = kc.patient_view(client, cds_ehr, mrn, ehr_patient_id="ehr-4711")
    card = next(c for c in cards if c["source"]["topic"]["code"] == "fast-progression")
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": "disagree", "display": "Clinical disagreement"}},
                "outcomeTimestamp": "2030-03-19T09:00:00Z",
            }
        ]
    }
    path = f"{kc.CDS_SERVICE}/feedback"
    response = client.post(
        path, json=feedback, headers={"Authorization": f"Bearer {cds_ehr.token(kc.PUBLIC_URL + path)}"}
    )
    assert response.status_code == 200

    # (c) The Flag set inactive in the EHR, read back by the worker. Nothing to read back before that.
    assert worker.read_back_flags() == 0
    flag = ehr.set_status("Flag", alerts["confirmation-due"]["identifier"], "inactive")
    assert flag["code"]["coding"][0]["code"] == "confirmation-due"
    assert worker.read_back_flags() == 1
    assert worker.read_back_flags() == 0  # acknowledged once
    assert any(method == "GET" and "/Flag?identifier=" in path for method, path, _ in ehr.requests)

    follow = client.get("/api/quality/alert-follow-up").get_json()
    assert follow["unacknowledged_critical"] == []
    per_type = {t["code"]: t for t in follow["per_type"]}
    assert per_type["hyperprogression"]["acknowledged"] == 1
    assert per_type["hyperprogression"]["by_route"] == {"api": 1, "cds-feedback": 0, "ehr-flag": 0}
    assert per_type["fast-progression"]["by_route"]["cds-feedback"] == 1
    assert per_type["confirmation-due"]["by_route"]["ehr-flag"] == 1
    # Times are from when the alert was raised (just now) to the acknowledgement: the feedback's own timestamp
    # (2030) is years later, the REST and Flag ones within the test's run.
    assert per_type["fast-progression"]["median_hours"] > 24 * 365
    assert 0 <= per_type["hyperprogression"]["median_hours"] < 1

    events = [e for e in client.get("/api/audit?limit=5000").get_json()["events"] if e["kind"] == "alert-acknowledged"]
    details = [json.loads(e["detail"]) if isinstance(e["detail"], str) else e["detail"] for e in events]
    assert sorted(d["route"] for d in details) == ["api", "cds-feedback", "ehr-flag"]
    assert next(d for d in details if d["route"] == "cds-feedback")["outcome"] == "overridden"

    with db.read() as session:
        [row] = session.query(AlertAcknowledgement).filter_by(route="cds-feedback").all()
        assert (row.outcome, row.comment, row.acknowledged_at.isoformat()) == (
            "overridden",
            "Clinical disagreement",
            "2030-03-19T09:00:00+00:00",
        )

    page = client.get("/ui/quality").get_data(as_text=True)
    assert 'id="follow-up-table"' in page and 'id="unacknowledged-empty"' in page
