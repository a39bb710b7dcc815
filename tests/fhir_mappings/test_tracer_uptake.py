"""Tracer-specific uptake in the report (contract §9.6): the ``tracer-uptake`` Observation, the pre-fill line and
the HTML details, from the rules' worked example (tests/rules/test_tracer_uptake.py)."""

from __future__ import annotations

import types

from fhir_mappings.outbound import build_report
from fhir_mappings.prefill import render_prefill
from fhir_mappings.validation import validate_resource
from rules.evaluate import evaluate_patient
from rules.pet_tracers import identify
from tests.fhir_mappings import IMMUNORAD, attachment_text, component, context, observation_with_code, schema_errors
from tests.rules.test_tracer_uptake import ATEZO, FDG, FU, facts, m

CASE = types.SimpleNamespace(name="ZR89")


def _report(tracer):
    # SUVmax 4.0, 6.0, 12.0 on 89Zr-atezolizumab: n 3, median 6.0, max/min 12.0 / 4.0 = 3.0, CV 46.4 %.
    assessment = evaluate_patient(facts(tracer, m("A", FU, "12.0"), m("B", FU, "4.0"), m("C", FU, "6.0")))
    return assessment, build_report(assessment, context(CASE, FU))


def test_tracer_uptake_observation_names_the_tracer_and_the_spread():
    assessment, report = _report(ATEZO)
    o = observation_with_code(report.observations, IMMUNORAD, "tracer-uptake")
    assert o is not None, [x["code"] for x in report.observations]
    assert o["effectiveDateTime"] == FU.isoformat()
    assert "89Zr-atezolizumab (PD-L1)" in o["method"]["text"] and "SUVmax" in o["method"]["text"]
    assert component(o, "radiopharmaceutical")["valueCodeableConcept"]["text"] == "89Zr-atezolizumab (PD-L1)"
    lesions = [(c["code"]["text"], c["valueQuantity"]["value"]) for c in o["component"] if c["code"].get("text")]
    assert lesions == [("A", 12), ("B", 4), ("C", 6)]
    assert component(o, "lesion-count")["valueInteger"] == 3
    values = {
        code: component(o, code)["valueQuantity"]
        for code in ("uptake-min", "uptake-median", "uptake-max", "uptake-max-min-ratio", "uptake-cv")
    }
    assert {code: q["value"] for code, q in values.items()} == {
        "uptake-min": 4,
        "uptake-median": 6,
        "uptake-max": 12,
        "uptake-max-min-ratio": 3,
        "uptake-cv": 46.4,
    }
    assert values["uptake-max"]["code"] == "g/ml{SUVbw}" and values["uptake-cv"]["code"] == "%"
    assert "no validated cut-off" in o["note"][0]["text"] and "Bensch" in o["note"][0]["text"]
    assert f"Observation/{o['id']}" in [r["reference"] for r in report.diagnostic_report["result"]]
    validate_resource(o)
    assert schema_errors(o) == []
    # PERCIST is NE at this scan, as its Observation says.
    assert assessment.criterion("PERCIST-1.0").at(FU).category == "NE"


def test_prefill_line_and_details_only_with_a_non_fdg_tracer():
    assessment, report = _report(ATEZO)
    plain, fragment = render_prefill(assessment, FU)
    line = (
        "89Zr-atezolizumab (PD-L1) PET, 3 lesions: SUVmax 4 to 12, median 6, highest/lowest 3; "
        "informational, no FDG criterion applied."
    )
    assert line in plain.split("\n")
    assert len(plain) <= 2000
    assert "Tracer-specific uptake" in fragment and "coefficient of variation 46.4 %" in fragment
    assert "Bensch" in fragment and "A: SUVmax 12" in fragment
    assert attachment_text(report.diagnostic_report["presentedForm"][0]) == plain
    # FDG: no uptake line, no details block, no Observation.
    fdg, fdg_report = _report(FDG)
    fdg_plain, fdg_fragment = render_prefill(fdg, FU)
    assert "PET, 3 lesions" not in fdg_plain and "Tracer-specific uptake" not in fdg_fragment
    assert observation_with_code(fdg_report.observations, IMMUNORAD, "tracer-uptake") is None


def test_a_tracer_stated_only_by_an_unknown_code_is_not_named_by_its_number_in_the_text():
    unknown = identify(code="987654321", scheme="SCT")
    assert unknown is not None and (unknown.key, unknown.name) == ("other", "SCT 987654321")
    assessment = evaluate_patient(facts(unknown, m("A", FU, "12.0"), m("B", FU, "4.0")))
    plain, _ = render_prefill(assessment, FU)
    assert "Unrecognised non-FDG tracer PET, 2 lesions: SUVmax 4 to 12, median 8, highest/lowest 3;" in plain
    assert "987654321" not in plain
    # The Observation keeps the code as received.
    o = observation_with_code(build_report(assessment, context(CASE, FU)).observations, IMMUNORAD, "tracer-uptake")
    tracer = component(o, "radiopharmaceutical")["valueCodeableConcept"]
    assert tracer["coding"][0] == {"system": "http://snomed.info/sct", "code": "987654321"}
