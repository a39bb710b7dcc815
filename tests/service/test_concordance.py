"""Engine versus signed concordance (contract §9.7): Cohen's kappa with the Fleiss–Cohen–Everitt 1969 standard
error on a hand-computed table, and ``GET /api/quality/concordance`` (JSON, CSV) and the dashboard panel on a demo
patient signed through ``POST /api/reports/{id}/sign-off``."""

from __future__ import annotations

import csv
import io

import pytest

from service.assessment.worker import Worker
from service.dashboard.concordance import cohen_kappa
from service.demo.cohort import case_bundle, case_measurements_bundle, demo_cohort

SYSTEM = "urn:immunorad:mrn"


def test_kappa_and_its_interval_on_a_hand_computed_table():
    # Engine rows × signed columns, n = 10:
    #            PR  SD  PD   | row
    #   PR        3   1   0   |  4
    #   SD        0   3   1   |  4
    #   PD        0   0   2   |  2
    #   column    3   4   3
    # p_o = (3 + 3 + 2) / 10 = 0.8; p_e = (4·3 + 4·4 + 2·3) / 100 = 0.34; κ = (0.8 − 0.34) / 0.66 = 0.696970.
    # Fleiss, Cohen & Everitt 1969 (1 − κ = 0.303030):
    #   Σ p_ii (1 − (p_i. + p_.i)(1 − κ))²: PR 0.3·(1 − 0.7·0.30303)² = 0.186226; SD 0.3·(1 − 0.8·0.30303)² =
    #   0.172176; PD 0.2·(1 − 0.5·0.30303)² = 0.143985; sum 0.502388.
    #   (1 − κ)² Σ_{i≠j} p_ij (p_.i + p_j.)²: (PR,SD) 0.1·(0.3 + 0.4)² = 0.049; (SD,PD) 0.1·(0.4 + 0.2)² = 0.036;
    #   0.085 · 0.0918274 = 0.0078053.
    #   (κ − p_e(1 − κ))² = (0.696970 − 0.103030)² = 0.352764.
    #   Var = (0.502388 + 0.0078053 − 0.352764) / (10 · 0.66²) = 0.157429 / 4.356 = 0.036141; SE = 0.190107.
    #   95 % CI: 0.696970 ± 1.959964 · 0.190107 = 0.324367 to 1.069573, cut to 1.
    pairs = [("PR", "PR")] * 3 + [("PR", "SD")] + [("SD", "SD")] * 3 + [("SD", "PD")] + [("PD", "PD")] * 2
    result = cohen_kappa(pairs)
    assert result.observed == pytest.approx(0.8) and result.expected == pytest.approx(0.34)
    assert result.kappa == pytest.approx(0.696970, abs=1e-6)
    assert result.se == pytest.approx(0.190107, abs=1e-5)
    assert result.low == pytest.approx(0.324367, abs=1e-4) and result.high == 1.0


def test_kappa_boundaries():
    # Perfect agreement over two categories: p_o = 1, p_e = 0.5, κ = 1; every term but the first vanishes:
    # Var = (Σ p_ii (1 − 0)² − (1 − 0)²) / … = (1 − 1) / … = 0.
    perfect = cohen_kappa([("PR", "PR"), ("SD", "SD")])
    assert perfect.kappa == pytest.approx(1.0) and perfect.se == pytest.approx(0.0)
    # One category used by both: p_e = 1, kappa undefined (not 0, not 1).
    assert cohen_kappa([("PR", "PR"), ("PR", "PR")]).kappa is None
    with pytest.raises(ValueError):
        cohen_kappa([])


def test_concordance_endpoint_csv_and_dashboard(app_client, settings, db):
    mrn, case = "CONC-1", demo_cohort()[0][2]
    for bundle in (case_bundle(case, mrn, SYSTEM), case_measurements_bundle(case, mrn, SYSTEM)):
        assert app_client.post("/fhir", json=bundle).status_code == 200
    Worker(settings, db).drain()
    timeline = app_client.get(f"/api/patients/{mrn}").get_json()
    reports = sorted(timeline["reports"], key=lambda r: r["scan_date"])
    assert len(reports) == 3
    engine = []
    for report in reports:
        body = app_client.post(
            f"/api/reports/{report['id']}/sign-off",
            json={"criterion": "RECIST-1.1", "category": "PR", "reader": "Dr R"},
        ).get_json()
        engine.append(body["engine_category"])
    # The demo partial response is PR at TP1–TP3 for the engine (40+… mm shrinking ≥ 30 %).
    assert engine == ["PR", "PR", "PR"]
    # Amend TP2 to SD (the override): the current sign-offs are PR, SD, PR.
    app_client.post(
        f"/api/reports/{reports[1]['id']}/sign-off",
        json={"criterion": "RECIST-1.1", "category": "SD", "reader": "Dr S"},
    )

    body = app_client.get("/api/quality/concordance").get_json()
    [row] = body["criteria"]
    # Engine PR, PR, PR against signed PR, SD, PR: p_o = 2/3; margins engine PR 1, signed PR 2/3, SD 1/3:
    # p_e = 1 · 2/3 = 2/3, κ = (2/3 − 2/3) / (1/3) = 0. FCE 1969 with 1 − κ = 1: diagonal 2/3 · (1 − 5/3)² = 8/27,
    # off-diagonal 1/3 · (2/3 + 0)² = 4/27, minus (0 − 2/3)² = 12/27: Var = 0, so the interval is [0, 0] (the
    # large-sample formula's known degeneracy when one rater uses a single category).
    assert (row["criterion"], row["signed"], row["compared"]) == ("RECIST-1.1", 3, 3)
    assert row["categories"] == ["PR", "SD"] and row["table"] == [[2, 1], [0, 0]]
    assert row["agreement"] == pytest.approx(0.6667, abs=1e-4) and row["kappa"] == 0.0
    assert row["kappa_ci95"] == [0.0, 0.0] and "Fleiss, Cohen & Everitt (1969)" in row["method"]
    [discordant] = row["discordant"]
    assert (discordant["scan_date"], discordant["engine"], discordant["signed"]) == (
        reports[1]["scan_date"],
        "PR",
        "SD",
    )
    assert mrn not in str(body)  # pseudonymised

    # Filters as the dashboard's: a period before the follow-ups has nothing signed.
    assert app_client.get("/api/quality/concordance?to=2000-01-01").get_json()["criteria"] == []
    assert app_client.get("/api/quality/concordance?from=yesterday").status_code == 400

    response = app_client.get("/api/quality/concordance.csv")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["scan_date"], r["engine_category"], r["signed_category"], r["agrees"]) for r in rows] == [
        (reports[0]["scan_date"], "PR", "PR", "true"),
        (reports[1]["scan_date"], "PR", "SD", "false"),
        (reports[2]["scan_date"], "PR", "PR", "true"),
    ]

    page = app_client.get("/ui/quality").get_data(as_text=True)
    assert 'data-criterion="RECIST-1.1"' in page and ("Cohen&#39;s kappa" in page or "Cohen's kappa" in page)
    patient_id = timeline["patient"]["id"]
    assert f"/ui/patients/{patient_id}#reports" in page
