"""Contract §9.3 FHIR components on a TumorSize Observation (merged-into, fragment, symptom-driven,
radiopharmaceutical) and ImagingStudy.reasonCode, mapped by fhir_mappings.inbound; malformed ones are refused
with the element named (422)."""

from __future__ import annotations

import pytest

from fhir_mappings.inbound import MappingError, map_resource

CANONICAL = "http://immunorad.org/fhir"
OWN = f"{CANONICAL}/CodeSystem/immunorad"


def observation(*components: dict) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "21889-1"}]},
        "effectiveDateTime": "2024-03-04",
        "focus": [{"display": "T2 liver"}],
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "33728-7"}]},
                "valueQuantity": {"value": 0, "code": "mm"},
            },
            *components,
        ],
    }


def own(code: str, **value) -> dict:
    return {"code": {"coding": [{"system": OWN, "code": code}]}, **value}


def mapped(resource: dict):
    return map_resource(resource, canonical=CANONICAL, patient_id_system="urn:immunorad:mrn")


def test_components():
    record = mapped(
        observation(
            own("merged-into", valueString="urn:oid:1.2.3.4.9"),
            own("fragment", valueBoolean=True),
            own("symptom-driven", valueBoolean=True),
            own(
                "radiopharmaceutical",
                valueCodeableConcept={"coding": [{"system": "http://snomed.info/sct", "code": "35321007"}]},
            ),
        )
    )
    assert (record.fact.merged_into, record.fact.fragment, record.source.symptom_driven) == ("1.2.3.4.9", True, True)
    assert record.source.tracer == {"code": "35321007", "scheme": "SCT"}
    assert mapped(observation(own("merged-into", valueString="T1 liver"))).fact.merged_into == "label:T1 liver"
    text_only = own("radiopharmaceutical", valueCodeableConcept={"text": "68Ga-PSMA-11"})
    assert mapped(observation(text_only)).source.tracer == {"text": "68Ga-PSMA-11"}


@pytest.mark.parametrize(
    "component",
    [
        own("merged-into", valueString=""),
        own("merged-into", valueBoolean=True),
        own("fragment", valueString="yes"),
        own("symptom-driven"),
        own("radiopharmaceutical", valueCodeableConcept={"coding": [{"system": "urn:other", "code": "x"}]}),
        own("radiopharmaceutical", valueString="FDG"),
    ],
)
def test_malformed_components_are_refused_naming_the_element(component):
    with pytest.raises(MappingError) as error:
        mapped(observation(component))
    assert error.value.expression == "Observation.component[1]"


def test_imaging_study_reason_code():
    study = {
        "resourceType": "ImagingStudy",
        "status": "available",
        "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.5"}],
        "started": "2024-03-14",
        "reasonCode": [{"coding": [{"system": OWN, "code": "symptom-driven"}]}],
    }
    assert mapped(study).symptom_driven is True
    study["reasonCode"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "symptom-driven"}]}]
    assert mapped(study).symptom_driven is False
