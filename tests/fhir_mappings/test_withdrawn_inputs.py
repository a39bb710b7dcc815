"""A resource that says its event did not happen, or that it was entered in error, contributes no fact (FHIR R4
status bindings: Observation ``entered-in-error``/``cancelled``, MedicationAdministration ``not-done``,
MedicationStatement ``not-taken``, MedicationRequest ``cancelled``, Procedure ``not-done``, ImagingStudy
``cancelled``, Condition verificationStatus ``refuted``/``entered-in-error``). The statuses next to them still map: the boundary of each."""

from __future__ import annotations

import copy

import pytest

from fhir_mappings.inbound import WITHDRAWN_STATUSES, is_withdrawn, map_resource

CANONICAL = "http://immunorad.org/fhir"
SUBJECT = {"reference": "Patient/p1"}
PEMBROLIZUMAB = {"text": "pembrolizumab"}

RESOURCES = {
    "Observation": {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "21889-1"}]},
        "subject": SUBJECT,
        "effectiveDateTime": "2024-03-04",
        "focus": [{"display": "T1 lung"}],
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "33728-7"}]},
                "valueQuantity": {"value": 28, "code": "mm"},
            }
        ],
    },
    "MedicationAdministration": {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": PEMBROLIZUMAB,
        "subject": SUBJECT,
        "effectiveDateTime": "2024-01-15",
    },
    "MedicationStatement": {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": PEMBROLIZUMAB,
        "subject": SUBJECT,
        "effectivePeriod": {"start": "2024-01-15"},
    },
    "MedicationRequest": {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": PEMBROLIZUMAB,
        "subject": SUBJECT,
        "authoredOn": "2024-01-15",
    },
    "Procedure": {
        "resourceType": "Procedure",
        "status": "completed",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "108290001"}], "text": "Radiotherapy"},
        "subject": SUBJECT,
        "performedDateTime": "2024-01-15",
    },
    "ImagingStudy": {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": SUBJECT,
        "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4"}],
        "started": "2024-03-04",
    },
}
KEPT = {
    "Observation": ("final", "amended", "preliminary"),
    "MedicationAdministration": ("completed", "in-progress", "stopped"),
    "MedicationStatement": ("active", "completed", "stopped"),
    "MedicationRequest": ("active", "completed", "stopped"),
    "Procedure": ("completed", "in-progress", "stopped"),
    "ImagingStudy": ("available", "registered", "unknown"),
}


def mapped(resource: dict):
    return map_resource(resource, canonical=CANONICAL, patient_id_system="urn:immunorad:mrn")


def with_status(kind: str, status: str) -> dict:
    resource = copy.deepcopy(RESOURCES[kind])
    resource["status"] = status
    return resource


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_a_withdrawn_status_gives_no_fact_and_its_neighbours_do(kind):
    for status in KEPT[kind]:
        assert not is_withdrawn(with_status(kind, status))
        assert mapped(with_status(kind, status)) is not None, (kind, status)
    for status in WITHDRAWN_STATUSES[kind]:
        assert is_withdrawn(with_status(kind, status))
        assert mapped(with_status(kind, status)) is None, (kind, status)


@pytest.mark.parametrize(
    ("verification", "kept"),
    [("confirmed", True), ("provisional", True), (None, True), ("refuted", False), ("entered-in-error", False)],
)
def test_a_refuted_or_erroneous_condition_gives_no_fact(verification, kept):
    condition = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "233703007", "display": "Pneumonitis"}]},
        "subject": SUBJECT,
        "onsetDateTime": "2024-03-04",
    }
    if verification is not None:
        condition["verificationStatus"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]
        }
    assert (mapped(condition) is not None) is kept
