"""validate_resource: fhir.resources R4B structure plus the R4 rules it does not check (interop-notes §4.1):
required code bindings, reference target types and reference forms."""

from __future__ import annotations

import copy

import pytest

from fhir_mappings.validation import InvalidResource, validate_resource
from tests.fhir_mappings import IMMUNORAD, C, schema_errors

LOINC = "http://loinc.org"
UUID_A = "urn:uuid:2f1d3b8e-6a51-4c3e-9a57-0d1f7f3e4a01"
UUID_B = "urn:uuid:2f1d3b8e-6a51-4c3e-9a57-0d1f7f3e4a02"


def diagnostic_report(**changes):
    resource = {
        "resourceType": "DiagnosticReport",
        "status": "preliminary",
        "category": [{"coding": [{"system": LOINC, "code": "LP29684-5"}]}],
        "code": {"coding": [{"system": LOINC, "code": "18748-4"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-11",
    }
    resource.update(changes)
    return resource


def observation(**changes):
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "21889-1"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-11",
    }
    resource.update(changes)
    return resource


def issues_of(resource) -> list[dict]:
    with pytest.raises(InvalidResource) as raised:
        validate_resource(resource)
    return raised.value.issues


def expressions(resource) -> list[str]:
    return [e for issue in issues_of(resource) for e in issue.get("expression", [])]


def test_valid_resources_pass():
    validate_resource(diagnostic_report(performer=[{"reference": "Organization/radiology"}]))
    validate_resource(
        observation(valueQuantity={"value": 12, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"})
    )
    validate_resource(
        {
            "resourceType": "Patient",
            "gender": "female",
            "birthDate": "1960-02-29",
            "identifier": [{"system": "urn:immunorad:mrn", "value": "1"}],
        }
    )


# -- the three cases fhir.resources lets through ---------------------------------------------------------------
def test_diagnostic_report_performer_must_not_be_a_device():
    # R4 DiagnosticReport.performer: Practitioner | PractitionerRole | Organization | CareTeam
    resource = diagnostic_report(performer=[{"reference": "Device/immunorad"}])
    [issue] = issues_of(resource)
    assert issue["severity"] == "error" and issue["code"] == "value"
    assert issue["expression"] == ["DiagnosticReport.performer[0].reference"]
    assert "Device" in issue["diagnostics"]
    # the same with a logical reference that only declares its type
    assert expressions(diagnostic_report(performer=[{"type": "Device", "identifier": {"value": "x"}}])) == [
        "DiagnosticReport.performer[0]"
    ]


@pytest.mark.parametrize(
    "resource, expression",
    [
        (observation(status="done"), "Observation.status"),
        (diagnostic_report(status="draft"), "DiagnosticReport.status"),
        (
            {
                "resourceType": "Flag",
                "status": "resolved",
                "code": {"text": "x"},
                "subject": {"reference": "Patient/p"},
            },
            "Flag.status",
        ),
        ({"resourceType": "Procedure", "status": "done", "subject": {"reference": "Patient/p"}}, "Procedure.status"),
        (
            {
                "resourceType": "MedicationAdministration",
                "status": "given",
                "medicationCodeableConcept": {"text": "nivolumab"},
                "subject": {"reference": "Patient/p"},
                "effectiveDateTime": "2024-01-15",
            },
            "MedicationAdministration.status",
        ),
        (
            {
                "resourceType": "MedicationStatement",
                "status": "discontinued",
                "medicationCodeableConcept": {"text": "x"},
                "subject": {"reference": "Patient/p"},
            },
            "MedicationStatement.status",
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "wish",
                "medicationCodeableConcept": {"text": "x"},
                "subject": {"reference": "Patient/p"},
            },
            "MedicationRequest.intent",
        ),
        ({"resourceType": "Patient", "gender": "F"}, "Patient.gender"),
        ({"resourceType": "Bundle", "type": "bag"}, "Bundle.type"),
        (
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "FETCH", "url": "Patient/1"}}],
            },
            "Bundle.entry[0].request.method",
        ),
        (observation(identifier=[{"use": "primary", "value": "1"}]), "Observation.identifier[0].use"),
        (observation(valueQuantity={"value": 1, "comparator": "~"}), "Observation.valueQuantity.comparator"),
        (
            {
                "resourceType": "Condition",
                "subject": {"reference": "Patient/p"},
                "clinicalStatus": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "ongoing"}
                    ]
                },
            },
            "Condition.clinicalStatus",
        ),
        (
            {"resourceType": "Condition", "subject": {"reference": "Patient/p"}, "clinicalStatus": {"text": "active"}},
            "Condition.clinicalStatus",
        ),
        (
            diagnostic_report(presentedForm=[{"contentType": "plain text", "data": "eA=="}]),
            "DiagnosticReport.presentedForm[0].contentType",
        ),
    ],
)
def test_required_code_bindings(resource, expression):
    found = issues_of(resource)
    assert expression in [e for issue in found for e in issue["expression"]]
    assert all(issue["code"] == "code-invalid" for issue in found if expression in issue["expression"])


def test_observation_subject_must_not_be_a_practitioner():
    # R4B widened Observation.subject (Practitioner, Organization, …); R4 allows Patient | Group | Device | Location.
    [issue] = issues_of(observation(subject={"reference": "Practitioner/dr-who"}))
    assert issue["expression"] == ["Observation.subject.reference"]
    assert "Practitioner" in issue["diagnostics"]
    validate_resource(observation(subject={"reference": "Group/cohort"}))


@pytest.mark.parametrize(
    "resource, expression",
    [
        (observation(derivedFrom=[{"reference": "DiagnosticReport/r1"}]), "Observation.derivedFrom[0].reference"),
        (observation(hasMember=[{"reference": "Patient/p1"}]), "Observation.hasMember[0].reference"),
        (diagnostic_report(result=[{"reference": "Flag/f1"}]), "DiagnosticReport.result[0].reference"),
        (diagnostic_report(imagingStudy=[{"reference": "Media/m1"}]), "DiagnosticReport.imagingStudy[0].reference"),
        (diagnostic_report(subject={"reference": "Practitioner/x"}), "DiagnosticReport.subject.reference"),
        (
            {
                "resourceType": "Flag",
                "status": "active",
                "code": {"text": "x"},
                "subject": {"reference": "Observation/o"},
            },
            "Flag.subject.reference",
        ),
        (
            {"resourceType": "Procedure", "status": "completed", "subject": {"reference": "Device/d"}},
            "Procedure.subject.reference",
        ),
        (
            {
                "resourceType": "MedicationStatement",
                "status": "stopped",
                "medicationCodeableConcept": {"text": "x"},
                "subject": {"reference": "Location/l"},
            },
            "MedicationStatement.subject.reference",
        ),
        (
            {
                "resourceType": "Procedure",
                "status": "completed",
                "subject": {"reference": "Patient/p"},
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/procedure-targetBodyStructure",
                        "valueReference": {"reference": "Patient/p"},
                    }
                ],
            },
            "Procedure.extension[0].valueReference.reference",
        ),
    ],
)
def test_reference_target_types(resource, expression):
    assert expression in expressions(resource)


def test_any_target_where_r4_says_any():
    validate_resource(observation(focus=[{"reference": "BodyStructure/lesion-1"}]))
    validate_resource(
        {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p"},
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/flag-detail",
                    "valueReference": {"reference": "DiagnosticReport/r1"},
                }
            ],
        }
    )


# -- reference forms --------------------------------------------------------------------------------------------
def test_contained_references_must_resolve():
    lesion = {"resourceType": "BodyStructure", "id": "lesion", "patient": {"reference": "Patient/p1"}}
    validate_resource(observation(contained=[lesion], focus=[{"reference": "#lesion"}]))
    assert "Observation.focus[0].reference" in expressions(
        observation(contained=[lesion], focus=[{"reference": "#other"}])
    )
    # a contained resource is checked too, and its target types are those of its own type
    bad = dict(lesion, patient={"reference": "Practitioner/x"})
    assert "Observation.contained[0].patient.reference" in expressions(
        observation(contained=[bad], focus=[{"reference": "#lesion"}])
    )
    # the contained Device our Flags use as author
    validate_resource(
        {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p"},
            "author": {"reference": "#d"},
            "contained": [{"resourceType": "Device", "id": "d"}],
        }
    )
    assert "Flag.author.reference" in expressions(
        {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p"},
            "author": {"reference": "#d"},
            "contained": [{"resourceType": "Observation", "id": "d", "status": "final", "code": {"text": "x"}}],
        }
    )


def test_urn_and_conditional_references_only_inside_bundles():
    assert expressions(observation(subject={"reference": UUID_A})) == ["Observation.subject.reference"]
    assert expressions(observation(subject={"reference": "Patient?identifier=urn:immunorad:mrn|1"})) == [
        "Observation.subject.reference"
    ]
    assert expressions(observation(subject={"reference": "not a reference"})) == ["Observation.subject.reference"]
    assert expressions(observation(subject={"reference": "Banana/1"})) == ["Observation.subject.reference"]
    validate_resource(observation(subject={"reference": "https://ehr.example/fhir/Patient/123/_history/2"}))


def _transaction(kind="transaction", subject="Patient?identifier=urn:immunorad:mrn|1", result=UUID_B):
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": UUID_A,
                "resource": diagnostic_report(subject={"reference": subject}, result=[{"reference": result}]),
                "request": {"method": "PUT", "url": "DiagnosticReport?identifier=s|v"},
            },
            {
                "fullUrl": UUID_B,
                "resource": observation(subject={"reference": subject}),
                "request": {"method": "PUT", "url": "Observation?identifier=s|w"},
            },
        ],
    }


def test_transaction_bundles_allow_urn_uuid_and_conditional_references():
    validate_resource(_transaction())
    # an urn:uuid that no entry has
    missing = "urn:uuid:2f1d3b8e-6a51-4c3e-9a57-0d1f7f3e4aff"
    assert "Bundle.entry[0].resource.result[0].reference" in expressions(_transaction(result=missing))
    # an urn:uuid pointing at the wrong type of entry
    assert "Bundle.entry[0].resource.result[0].reference" in expressions(_transaction(result=UUID_A))
    # a conditional reference to a Practitioner as subject is still the wrong type
    assert "Bundle.entry[1].resource.subject.reference" in expressions(
        _transaction(subject="Practitioner?identifier=a|b")
    )
    # conditional references are a transaction feature: not in a batch (and batch entries need request)
    assert "Bundle.entry[0].resource.subject.reference" in expressions(_transaction(kind="batch"))


def test_bundle_rules():
    bundle = _transaction()
    del bundle["entry"][1]["request"]
    assert "Bundle.entry[1].request" in expressions(bundle)
    bundle = _transaction()
    bundle["entry"][1]["request"]["url"] = "DiagnosticReport?identifier=s|w"
    assert "Bundle.entry[1].request.url" in expressions(bundle)
    bundle = _transaction()
    bundle["entry"][1]["fullUrl"] = UUID_A
    assert "Bundle.entry[1].fullUrl" in expressions(bundle)
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": UUID_A, "resource": observation(), "request": {"method": "PUT", "url": "x"}}],
    }
    assert "Bundle.entry[0].request" in expressions(collection)


# -- the contract's components ----------------------------------------------------------------------------------
def _component(code_system, code, **value):
    return {"code": {"coding": [{"system": code_system, "code": code}]}, **value}


@pytest.mark.parametrize(
    "comp",
    [
        _component(
            LOINC, "33728-7", valueQuantity={"value": 1, "system": "http://unitsofmeasure.org", "code": "[in_i]"}
        ),
        _component(LOINC, "33729-5", valueString="12 mm"),
        _component(
            IMMUNORAD, "lesion-role", valueCodeableConcept={"coding": [{"system": IMMUNORAD, "code": "primary"}]}
        ),
        _component(IMMUNORAD, "non-target-change", valueCodeableConcept={"text": "INC"}),
        _component(IMMUNORAD, "injected", valueString="yes"),
        _component(
            f"{C}/CodeSystem/hyperprogression",
            "kas-2020",
            valueCodeableConcept={"coding": [{"system": IMMUNORAD, "code": "maybe"}]},
        ),
    ],
)
def test_contract_component_values(comp):
    assert "Observation.component[0]" in " ".join(expressions(observation(component=[comp])))


def test_contract_components_that_are_right_pass():
    validate_resource(
        observation(
            component=[
                _component(
                    LOINC, "33728-7", valueQuantity={"value": 2.5, "system": "http://unitsofmeasure.org", "code": "cm"}
                ),
                _component(
                    IMMUNORAD, "lesion-role", valueCodeableConcept={"coding": [{"system": IMMUNORAD, "code": "target"}]}
                ),
                _component(IMMUNORAD, "nodal", valueBoolean=True),
            ]
        )
    )


# -- structure and the shape of the issues ----------------------------------------------------------------------
def test_structure_errors_come_from_fhir_resources():
    unknown = issues_of(observation(valueDecimal=3))
    assert unknown[0]["code"] == "structure" and unknown[0]["expression"] == ["Observation.valueDecimal"]
    missing = issues_of({k: v for k, v in diagnostic_report().items() if k != "code"})
    assert missing[0]["code"] == "required" and missing[0]["expression"] == ["DiagnosticReport.code"]
    assert issues_of({"resourceType": "Banana"})[0]["code"] == "not-supported"
    assert issues_of({"status": "final"})[0]["expression"] == ["resourceType"]
    assert issues_of(["not", "an", "object"])[0]["code"] == "structure"


def test_issues_are_operation_outcome_issues_without_phi():
    with pytest.raises(InvalidResource) as raised:
        validate_resource({"resourceType": "Patient", "gender": "Jane-Doe-1960"})
    error = raised.value
    assert isinstance(error, ValueError)
    for issue in error.issues:
        assert set(issue) <= {"severity", "code", "diagnostics", "expression"}
        assert "Jane-Doe" not in issue["diagnostics"]
    validate_resource(error.operation_outcome())


def test_the_fixtures_and_the_operation_outcome_are_valid_by_the_official_schema():
    assert schema_errors(_transaction()) == []
    with pytest.raises(InvalidResource) as raised:
        validate_resource({"resourceType": "Patient", "gender": "F"})
    assert schema_errors(raised.value.operation_outcome()) == []


def test_the_input_is_not_modified():
    resource = diagnostic_report(performer=[{"reference": "Device/x"}])
    before = copy.deepcopy(resource)
    issues_of(resource)
    assert resource == before
