"""Issue 3 through the FHIR interfaces: worked examples in as tumour-measurement Observations (contract §4),
every size criterion out as FHIR Observations (contract §5), at every timepoint.

The expected cells are the spec's tables (clinical/criteria-size-pet.md §11); "irPD-u"/"irPD-c" are irPD
with the ``confirmed`` component false/true; ``None`` is "— post-PD" (no Observation for that criterion).
"""

from __future__ import annotations

import pytest

from service.assessment.worker import Worker
from service.demo.cohort import case_bundle, case_measurements_bundle
from tests.rules import cases

SYSTEM = "urn:immunorad:mrn"
CRITERIA = ("RECIST-1.1", "iRECIST", "irRECIST", "irRC")

EXPECTED = {
    # E1: SoD 90 → 63 (exactly −30 %: PR) → 58 → 61; SPD 2450 → 1246 (> 1225 = 50 %: irSD) → 1056 → 1144.
    "E1": {
        "RECIST-1.1": ["PR", "PR", "PR"],
        "iRECIST": ["iPR", "iPR", "iPR"],
        "irRECIST": ["irPR", "irPR", "irPR"],
        "irRC": ["irSD", "irPR", "irPR"],
    },
    # E3: 20 → 24 (+20 %, +4 mm: SD) → 25 (PD/iUPD) → 31 (+6 mm vs iUPD: iCPD); irRC 264 ≥ 250 → irPD-u at TP1.
    "E3": {
        "RECIST-1.1": ["SD", "PD", None],
        "iRECIST": ["iSD", "iUPD", "iCPD"],
        "irRECIST": ["irSD", "irPD-u", "irPD-c"],
        "irRC": ["irPD-u", "irPD-c", "irPD-c"],
    },
    # E5: new measurable N1 at TP2 (NLT 12) → iUPD; NLT SOM 18 − 12 = 6 ≥ 5 → iCPD; irRC 1110 < 1237.5 at TP2.
    "E5": {
        "RECIST-1.1": ["SD", "PD", None, None],
        "iRECIST": ["iSD", "iUPD", "iCPD", "iCPD"],
        "irRECIST": ["irSD", "irPD-u", "irPD-c", "irPD-c"],
        "irRC": ["irSD", "irSD", "irPD-u", "irPD-c"],
    },
    # E7: new 6×4 lesion while targets respond → RECIST PD, iUPD; SoD 52 → 40 (−12 mm ≥ 5) → iPR (reset).
    "E7": {
        "RECIST-1.1": ["PD", None, None],
        "iRECIST": ["iUPD", "iPR", "iPR"],
        "irRECIST": ["irPR", "irPR", "irPR"],
        "irRC": ["irPR", "irPR", "irPR"],
    },
    # E9: T3 not imaged at TP2 → NE (partial 41 < 72); TP3 72 = 1.2 × nadir 60 and +12 mm → PD.
    "E9": {
        "RECIST-1.1": ["SD", "NE", "PD"],
        "iRECIST": ["iSD", "NE", "iUPD"],
        "irRECIST": ["irSD", "NE", "irPD-u"],
        "irRC": ["irSD", "NE", "irPD-u"],
    },
    # E11: TSTM → 5 mm + measured 3 → 8 (−70.37 %: PR); then both absent → CR.
    "E11": {
        "RECIST-1.1": ["PR", "CR", "CR"],
        "iRECIST": ["iPR", "iCR", "iCR"],
        "irRECIST": ["irPR", "irCR", "irCR"],
        "irRC": ["irPR", "irCR", "irCR"],
    },
    # E13: new 8×6 lesion → NLNT (iUPD), invisible to irRECIST, 48 mm² to irRC; reader INCLA → iCPD.
    "E13": {
        "RECIST-1.1": ["SD", "PD", None],
        "iRECIST": ["iSD", "iUPD", "iCPD"],
        "irRECIST": ["irSD", "irSD", "irSD"],
        "irRC": ["irSD", "irSD", "irSD"],
    },
    # E15: 100 → 70 → 70 → 80 (sticky PR); SPD 2688 ≥ 2572.5 = 1.25 × 2058 → irPD-u, confirmed 56 days later.
    "E15": {
        "RECIST-1.1": ["PR"] * 5,
        "iRECIST": ["iPR"] * 5,
        "irRECIST": ["irPR", "irPR", "irSD", "irSD", "irSD"],
        "irRC": ["irPR", "irPR", "irPD-u", "irPD-c", "irPD-c"],
    },
}


def category(observation: dict | None) -> str | None:
    if observation is None:
        return None
    code = observation["valueCodeableConcept"]["coding"][0]["code"]
    if code == "irPD":
        confirmed = next(
            (
                c.get("valueBoolean")
                for c in observation.get("component", [])
                if c["code"]["coding"][0]["code"] == "confirmed"
            ),
            None,
        )
        return "irPD-c" if confirmed else "irPD-u"
    return code


def criterion_observations(client, report: dict) -> dict[str, dict]:
    out = {}
    for ref in report["result"]:
        kind, rid = ref["reference"].split("/")
        obs = client.get(f"/fhir/{kind}/{rid}").get_json()
        if any(c["code"] == "overall-response" for c in obs["code"]["coding"]):
            out[obs["method"]["coding"][0]["code"]] = obs
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_worked_example_through_fhir(name, app_client, settings, db):
    case = {c.name: c for c in cases.ALL}[name]
    mrn = f"MRN-{name}"
    response = app_client.post("/fhir", json=case_bundle(case, mrn, SYSTEM))
    assert response.status_code == 200, response.get_json()
    response = app_client.post("/fhir", json=case_measurements_bundle(case, mrn, SYSTEM, settings.fhir_canonical))
    assert response.status_code == 200, response.get_json()
    Worker(settings, db).drain()
    bundle = app_client.get(f"/fhir/DiagnosticReport?subject:identifier={SYSTEM}|{mrn}&_count=50").get_json()
    reports = sorted((e["resource"] for e in bundle["entry"]), key=lambda r: r["effectiveDateTime"])
    followups = sorted(d for label, d in case.scans.items() if label != "BL")
    assert [r["effectiveDateTime"][:10] for r in reports] == [d.isoformat() for d in followups]
    got = {criterion: [] for criterion in CRITERIA}
    for report in reports:
        observations = criterion_observations(app_client, report)
        for criterion in CRITERIA:
            got[criterion].append(category(observations.get(criterion)))
    assert got == EXPECTED[name]


def test_best_overall_response_per_criterion_through_the_api(app_client, settings, db):
    # E7: RECIST BOR PD (first assessment PD) · iRECIST iPR · irRECIST irPR · irRC irPR (spec §11 E7).
    app_client.post("/fhir", json=case_bundle(cases.E7, "MRN-BOR", SYSTEM))
    app_client.post("/fhir", json=case_measurements_bundle(cases.E7, "MRN-BOR", SYSTEM, settings.fhir_canonical))
    Worker(settings, db).drain()
    body = app_client.get("/api/patients/MRN-BOR").get_json()
    bor = {name: value["unconfirmed"]["category"] for name, value in body["best_overall_response"].items()}
    assert {k: bor[k] for k in CRITERIA} == {"RECIST-1.1": "PD", "iRECIST": "iPR", "irRECIST": "irPR", "irRC": "irPR"}
    codes = {f["code"] for f in body["assessment"]["findings"]}
    assert "pseudoprogression" in codes
