"""Contract §9.3 over HTTP to the running service: a CAR-T infusion and a bispecific T-cell engager, sent as a FHIR
``MedicationAdministration`` with only the drug name, start a therapy line dated C1D1; the kinetics of worked
example K1 (kinetics spec §7) are computed against it and every definition says it was validated for checkpoint
inhibitors only. An unknown drug is kept as an unclassified therapy with a warning.
"""

from __future__ import annotations

import dataclasses

import pytest

from tests.e2e import kinetics_cases as kc


def _assessment(service, mrn: str) -> dict:
    def ready():
        status, body, _ = service.request("GET", "/api/patients")
        found = [p for p in body["patients"] if p["identifier"] == mrn and p["followups"]] if status == 200 else []
        return found[0] if found else None

    patient = service.wait_for(ready, timeout=90, message=f"the assessment of {mrn}")
    status, body, _ = service.request("GET", f"/api/patients/{patient['id']}")
    assert status == 200
    return body["assessment"]


@pytest.mark.parametrize(
    ("agent", "label"),
    [("Yescarta (axicabtagene ciloleucel)", "cell therapy"), ("Tecvayli (teclistamab)", "bispecific")],
)
def test_car_t_and_bispecific_start_c1d1_and_kinetics_carry_the_validation_note(service, agent, label):
    case = dataclasses.replace(kc.K1_CASE, agent=agent)
    example = dataclasses.replace(kc.K1, case=case, key=f"K1-{label.split()[0]}")
    mrn = example.mrn
    bundle = kc.clinical_bundle(example, mrn=mrn)
    # An unknown systemic drug given the same day: kept, warned about, not the C1D1.
    bundle["entry"].append(
        kc.put_entry(
            {
                "resourceType": "MedicationAdministration",
                "status": "completed",
                "medicationCodeableConcept": {"text": "investigational drug XY-123"},
                "subject": {"reference": f"Patient?identifier={kc.SYSTEM}|{mrn}"},
                "effectiveDateTime": case.c1d1.replace(day=1).isoformat(),
            },
            "urn:test:administration",
            f"{mrn}-unknown-drug",
        )
    )
    for body in (bundle, kc.measurements_bundle(case, mrn)):
        status, reply, _ = service.request("POST", "/fhir", body)
        assert status == 200, reply
    assessment = _assessment(service, mrn)
    # C1D1 2024-02-05 from the CAR-T / bispecific administration (the unknown drug on 2024-02-01 is not day 0).
    assert assessment["treatment_start"] == case.c1d1.isoformat() == "2024-02-05"
    warnings = "\n".join(assessment["warnings"])
    assert "unclassified therapy 'investigational drug xy-123' from 2024-02-01" in warnings
    assert label in warnings
    definitions = {d["code"]: d for d in assessment["kinetics"]["definitions"]}
    # K1: C1D1 → E2 = 42 days ≤ 42 and 80·2 = 160 ≥ 44·3 = 132 → fast progression (OAK) met, as on a PD-1 antibody.
    assert definitions["fast-progression-oak"]["status"] == "met"
    assert definitions["kas-2020"]["status"] == "met"
    for d in definitions.values():
        assert "validated in immune checkpoint inhibitor cohorts only" in d["reason"]
    # The kinetics Observation of the E2 report carries the same note (FHIR read over HTTP).
    status, bundle, _ = service.request("GET", f"/fhir/DiagnosticReport?subject:identifier={kc.SYSTEM}|{mrn}&_count=50")
    [report] = [e["resource"] for e in bundle["entry"]]
    texts = []
    for ref in report["result"]:
        status, obs, _ = service.request("GET", f"/fhir/{ref['reference']}")
        if kc.has_code(obs["code"], kc.IMMUNORAD, "tumour-kinetics"):
            texts = [
                c.get("valueCodeableConcept", {}).get("text", "")
                for c in obs["component"]
                if any(x.get("system", "").endswith("hyperprogression") for x in c["code"].get("coding", []))
            ]
    assert texts and all("validated in immune checkpoint inhibitor cohorts only" in t for t in texts)
