"""Cohort end points (contract §9.7): Wilson intervals and the Kaplan–Meier median with its interval checked
against hand computations, and ``GET /api/quality/endpoints`` plus the dashboard panel on demo patients."""

from __future__ import annotations

import pytest

from service.assessment.worker import Worker
from service.dashboard.endpoints import kaplan_meier, progression_event, wilson
from service.demo.cohort import case_bundle, case_measurements_bundle, demo_cohort

SYSTEM = "urn:immunorad:mrn"


def test_wilson_interval_by_hand():
    # 3 responders of 10, z = 1.959964 (z² = 3.841459): p = 0.3; centre = 0.3 + 3.841459/20 = 0.492073;
    # half = z·√(0.3·0.7/10 + 3.841459/400) = 1.959964·√(0.021 + 0.009604) = 1.959964·0.174940 = 0.342877;
    # scale = 1 + 3.841459/10 = 1.384146 → (0.149196/1.384146, 0.834950/1.384146) = (0.107791, 0.603222).
    result = wilson(3, 10)
    assert result.rate == 0.3
    assert result.low == pytest.approx(0.107791, abs=1e-5) and result.high == pytest.approx(0.603222, abs=1e-5)
    # Boundaries: 0 of 5 keeps 0 as its lower bound, 5 of 5 keeps 1 as its upper; n = 0 has no interval.
    assert wilson(0, 5).low == 0.0 and wilson(0, 5).high == pytest.approx(0.434482, abs=1e-5)
    assert wilson(5, 5).high == pytest.approx(1.0) and wilson(5, 5).low == pytest.approx(0.565518, abs=1e-5)
    assert wilson(0, 0).rate is None


def test_kaplan_meier_median_and_interval_by_hand():
    # Times 1, 2, 3+, 4, 5+ months (+ censored). S(1) = 4/5 = 0.8; S(2) = 0.8·3/4 = 0.6; S(4) = 0.6·1/2 = 0.3.
    # Median: the first time S ≤ 0.5 → 4 months.
    # Exponential Greenwood (log(−log S)): V(t) = Σ d/(n(n−d)) / (ln S)².
    #   t = 1: 1/(5·4) = 0.05; (ln 0.8)² = 0.049793; V = 1.004158, √V = 1.002077;
    #          lower = 0.8^exp(+1.96·1.002077) = 0.8^7.1279 = 0.2038 ≤ 0.5 → the median's lower bound is 1 month.
    #   t = 4: 0.05 + 1/(4·3) + 1/(2·1) = 0.633333; (ln 0.3)² = 1.449551; V = 0.436917, √V = 0.661;
    #          upper = 0.3^exp(−1.96·0.661) = 0.3^0.27373 = 0.7192 > 0.5 and nothing follows → upper bound not reached.
    survival = kaplan_meier([1, 2, 3, 4, 5], [True, True, False, True, False], at=[0, 2, 4])
    assert survival.median == 4.0 and survival.median_low == 1.0 and survival.median_high is None
    steps = {t: (s, lo, hi) for t, s, lo, hi in survival.curve}
    assert steps[2.0][0] == pytest.approx(0.6) and steps[4.0][0] == pytest.approx(0.3)
    assert steps[1.0][1] == pytest.approx(0.2038, abs=1e-4) and steps[4.0][2] == pytest.approx(0.7192, abs=1e-4)
    # Numbers at risk: everyone at 0, those with a time ≥ 2 (4), ≥ 4 (2).
    assert survival.at_risk == ((0.0, 5), (2.0, 4), (4.0, 2))
    assert (survival.n, survival.events) == (5, 3)


def test_ipfs_event_is_the_confirmed_progression_dated_at_its_iupd():
    tps = [
        {"scan_date": "2024-03-01", "category": "iSD"},
        {"scan_date": "2024-05-01", "category": "iUPD"},
        {"scan_date": "2024-07-01", "category": "iCPD"},
    ]
    assert [d.isoformat() for d in progression_event(tps)] == ["2024-05-01", "2024-07-01"]
    # An iUPD followed by a response is no event: censored at the last scan.
    tps[2] = {"scan_date": "2024-07-01", "category": "iPR"}
    event, last = progression_event(tps)
    assert event is None and last.isoformat() == "2024-07-01"
    # RECIST PD is the event at its own date.
    assert progression_event([{"scan_date": "2024-03-01", "category": "PD"}])[0].isoformat() == "2024-03-01"


def test_end_points_endpoint_and_panel(app_client, settings, db):
    for mrn, _, case in demo_cohort()[:2]:
        for bundle in (case_bundle(case, mrn, SYSTEM), case_measurements_bundle(case, mrn, SYSTEM)):
            assert app_client.post("/fhir", json=bundle).status_code == 200
    Worker(settings, db).drain()
    # DEMO-0002: RECIST PD at its first follow-up, iRECIST iUPD then iPR. Sign that first follow-up iRECIST iCPD
    # (an override) to see the signed column beside the engine's.
    timeline = app_client.get("/api/patients/DEMO-0002").get_json()
    first = min(timeline["reports"], key=lambda r: r["scan_date"])
    response = app_client.post(
        f"/api/reports/{first['id']}/sign-off", json={"criterion": "iRECIST", "category": "iCPD", "reader": "Dr R"}
    )
    assert response.status_code == 201

    body = app_client.get("/api/quality/endpoints").get_json()
    rows = {r["criterion"]: r for r in body["criteria"]}
    recist, irecist = rows["RECIST-1.1"]["engine"], rows["iRECIST"]["engine"]
    # Two patients: DEMO-0001 a partial response, DEMO-0002 progression by RECIST 1.1. ORR 1/2 by Wilson:
    # p = 0.5, centre = 0.5 + 3.841459/4 = 1.460365, half = 1.959964·√(0.125 + 3.841459/16) = 1.959964·0.604155
    # = 1.184122, scale = 2.920729 → (0.094529, 0.905471).
    assert recist["patients"] == 2 and recist["orr"]["events"] == 1
    assert recist["orr"]["ci95"] == pytest.approx([0.0945, 0.9055], abs=1e-4)
    assert recist["pfs"]["events"] == 1 and irecist["pfs"]["events"] == 0  # iUPD is no iPFS event
    assert rows["iRECIST"]["engine"]["pfs_name"] == "iPFS"
    assert "signed" in rows["iRECIST"] and rows["iRECIST"]["signed"]["pfs"]["events"] == 1
    assert "signed" not in rows["RECIST-1.1"]
    assert (
        app_client.get("/api/quality/endpoints?criterion=iRECIST").get_json()["criteria"][0]["criterion"] == "iRECIST"
    )
    assert app_client.get("/api/quality/endpoints?therapy_class=none-such").get_json()["criteria"] == []
    assert app_client.get("/api/quality/endpoints?bogus=1").status_code == 400

    page = app_client.get("/ui/quality").get_data(as_text=True)
    assert 'id="end-points"' in page and 'class="plot km"' in page and 'data-source="signed"' in page
    # The dashboard's form takes the end points' own filters.
    page = app_client.get("/ui/quality?criterion=iRECIST").get_data(as_text=True)
    assert 'class="end-points" data-criterion="iRECIST"' in page
    assert 'class="end-points" data-criterion="RECIST-1.1"' not in page
    assert '<option value="iRECIST" selected>' in page
