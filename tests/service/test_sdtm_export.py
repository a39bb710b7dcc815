"""CDISC SDTM RS and TR export (contract §9.7): the CSVs read back with the ``csv`` module, every required and
expected variable of SDTMIG v3.3 present, the submission values and the pseudonymised USUBJID; the data
dictionary page."""

from __future__ import annotations

import csv
import io

from service.assessment.worker import Worker
from service.demo.cohort import case_bundle, case_measurements_bundle, demo_cohort

SYSTEM = "urn:immunorad:mrn"
# SDTMIG v3.3 Core "Req" and "Exp" variables of the two domains (independent of service/dashboard/sdtm.py, written from
# the IG's domain tables).
RS_REQUIRED = {"STUDYID", "DOMAIN", "USUBJID", "RSSEQ", "RSTESTCD", "RSTEST"}
RS_EXPECTED = {"RSCAT", "RSORRES", "RSSTRESC", "RSEVAL", "VISITNUM", "RSDTC"}
TR_REQUIRED = {"STUDYID", "DOMAIN", "USUBJID", "TRSEQ", "TRTESTCD", "TRTEST"}
TR_EXPECTED = {
    "TRLNKID",
    "TRORRES",
    "TRORRESU",
    "TRSTRESC",
    "TRSTRESN",
    "TRSTRESU",
    "TRMETHOD",
    "TREVAL",
    "VISITNUM",
    "TRDTC",
}


def _read(client, path: str) -> tuple[list[str], list[dict[str, str]]]:
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    reader = csv.DictReader(io.StringIO(response.get_data(as_text=True), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def test_rs_and_tr_read_back(app_client, settings, db):
    mrn, _, case = demo_cohort()[0]
    for bundle in (case_bundle(case, mrn, SYSTEM), case_measurements_bundle(case, mrn, SYSTEM)):
        assert app_client.post("/fhir", json=bundle).status_code == 200
    Worker(settings, db).drain()

    columns, rs = _read(app_client, "/api/export/sdtm/rs.csv?studyid=TRIAL-1")
    assert RS_REQUIRED | RS_EXPECTED <= set(columns)
    assert all(row[name] for row in rs for name in RS_REQUIRED), "required variables are never empty"
    assert {row["DOMAIN"] for row in rs} == {"RS"} and {row["STUDYID"] for row in rs} == {"TRIAL-1"}
    assert mrn not in {row["USUBJID"] for row in rs}  # pseudonymised by default
    assert {row["RSTESTCD"] for row in rs} == {"OVRLRESP", "TRGRESP", "NTRGRESP", "NEWLIND"}
    # Demo E1: 40+30+20 = 90 mm at baseline → 63 mm on 2024-03-11, exactly −30 %: RECIST 1.1 PR at follow-up 1.
    first = {row["RSTESTCD"]: row for row in rs if row["RSCAT"] == "RECIST 1.1" and row["RSDTC"] == "2024-03-11"}
    assert first["OVRLRESP"]["RSORRES"] == first["OVRLRESP"]["RSSTRESC"] == "PR"
    assert first["NEWLIND"]["RSORRES"] == "N" and first["OVRLRESP"]["VISITNUM"] == "1"
    assert first["OVRLRESP"]["VISIT"] == "FOLLOW-UP 1"
    assert [int(row["RSSEQ"]) for row in rs] == list(range(1, len(rs) + 1))
    assert "iRECIST" in {row["RSCAT"] for row in rs}

    columns, tr = _read(app_client, "/api/export/sdtm/tr.csv")
    assert TR_REQUIRED | TR_EXPECTED <= set(columns)
    assert all(row[name] for row in tr for name in TR_REQUIRED)
    baseline = {row["TRLNKID"]: row for row in tr if row["TRTESTCD"] == "LDIAM" and row["TRDTC"] == "2024-01-08"}
    assert baseline["T1 lung"]["TRSTRESN"] == "40" and baseline["T1 lung"]["TRORRESU"] == "mm"
    assert baseline["T1 lung"]["VISIT"] == "BASELINE" and baseline["T1 lung"]["TRGRPID"] == "TARGET"
    sums = {(row["TRGRPID"], row["TRDTC"]): row["TRSTRESN"] for row in tr if row["TRTESTCD"] == "SUMDIAM"}
    assert sums[("RECIST 1.1", "2024-03-11")] == "63"

    _, named = _read(app_client, "/api/export/sdtm/rs.csv?pseudonymise=false")
    assert {row["USUBJID"] for row in named} == {mrn}
    assert app_client.get("/api/export/sdtm/dm.csv").status_code == 404
    assert app_client.get("/api/export/sdtm/rs.csv?pseudonymise=perhaps").status_code == 400

    page = app_client.get("/ui/sdtm").get_data(as_text=True)
    for name in RS_REQUIRED | RS_EXPECTED | TR_REQUIRED | TR_EXPECTED:
        assert f'data-variable="{name}"' in page
