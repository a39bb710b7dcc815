"""AI results in a TID 1500 SR (contract §9.6 "Signatures"): a lesion's measurement carrying TID 4019 Algorithm
Identification is kept with that identity — a signature Observation on /fhir naming the algorithm, its version and
parameters, marked provisional; a measurement without Algorithm Version is not taken as one."""

from __future__ import annotations

import datetime as dt

import highdicom as hd
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from dicom_listener.tid1500.reader import parse_measurement_report
from service.demo.sr_writer import LesionSpec, build_ct_image, build_measurement_report
from tests.dicom_listener.test_scp import listener, pynetdicom_store  # noqa: F401 - fixture

CD8_SCORE = Code("cd8-score", "99TESTAI", "CD8 infiltration score")
LESION_UID = "1.2.826.0.1.3680043.10.511.9.2"


def _report_with_ai(*, version: str | None = "2.1"):
    image = build_ct_image(
        patient_id="AI-001",
        patient_name="Ai^Result",
        study_instance_uid="1.2.826.0.1.3680043.10.511.9.1",
        study_date=dt.date(2026, 3, 2),
    )
    report = build_measurement_report(
        evidence=[image],
        lesions=[LesionSpec(tracking_uid=LESION_UID, label="T1", long_axis_mm=30.0, baseline_category="target")],
    )
    algorithm = hd.sr.AlgorithmIdentification(name="CD8Net", version=version or "x", parameters=["threshold=0.5"])
    measurement = hd.sr.Measurement(name=CD8_SCORE, value=0.42, unit=codes.UCUM.NoUnits, algorithm_id=algorithm)
    num = measurement[0]
    if version is None:
        num.ContentSequence = [c for c in num.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue != "111003"]
    groups = [
        item
        for container in report.ContentSequence
        if container.ValueType == "CONTAINER"
        for item in container.get("ContentSequence", [])
        if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == "125007"
    ]
    groups[0].ContentSequence.append(num)
    return image, report


def test_parser_keeps_the_algorithm_identity():
    _, report = _report_with_ai()
    (group,) = parse_measurement_report(report).groups
    (result,) = group.algorithm_results
    assert (result.concept.value, float(result.value), result.unit) == ("cd8-score", 0.42, "1")
    assert (result.algorithm_name, result.algorithm_version, result.algorithm_parameters) == (
        "CD8Net",
        "2.1",
        ("threshold=0.5",),
    )
    assert float(group.long_axis_mm) == 30.0  # the RECIST measurement is read as before


def test_without_algorithm_version_it_is_not_an_identified_result():
    _, report = _report_with_ai(version=None)
    (group,) = parse_measurement_report(report).groups
    assert group.algorithm_results == ()
    assert any("without an Algorithm Version" in note for note in group.notes)


def test_ai_result_through_c_store_is_a_signature_observation(listener, settings, app_client):
    image, report = _report_with_ai()
    assert pynetdicom_store(listener.port, image).Status == 0x0000
    assert pynetdicom_store(listener.port, report).Status == 0x0000
    code = f"{settings.fhir_canonical}/CodeSystem/immunorad|signature"
    bundle = app_client.get(f"/fhir/Observation?code={code}").get_json()
    (observation,) = [e["resource"] for e in bundle["entry"]]
    assert observation["valueQuantity"] == {"value": 0.42}
    assert observation["effectiveDateTime"] == "2026-03-02" and observation["status"] == "preliminary"
    method = observation["method"]["text"]
    assert "algorithm CD8Net version 2.1" in method and "threshold=0.5" in method and "TID 4019" in method
    assert "PROVISIONAL" in method
    components = {c["code"]["coding"][0]["code"]: c for c in observation["component"]}
    assert components["signature-name"]["valueString"] == "CD8Net"
    assert components["signature-version"]["valueString"] == "2.1"
    assert components["signature-output"]["valueCodeableConcept"]["coding"][0]["code"] == "cd8-score"
    assert observation["contained"][0]["identifier"][0]["value"] == f"urn:oid:{LESION_UID}"
