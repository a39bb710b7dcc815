"""The §9.6 signature Observation: one score of one signature for one lesion at one timepoint (contract §9.6).

``code`` ``{C}/CodeSystem/immunorad#signature``, ``method`` the signature's name, version and source (and
"PROVISIONAL" when its coefficients are not published with a verifiable source), ``derivedFrom`` the feature
Observation(s) it was computed from, ``focus`` the lesion's BodyStructure (as on the feature Observation),
``valueQuantity`` the score, component ``provisional`` (``valueBoolean``) and the signature's name and version as
components so a client can search and filter without parsing text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from fhir_mappings.codes import LocalSystems
from fhir_mappings.outbound import PatientRef, resource_id

SIGNATURE_CODE = "signature"


def signature_identifier(
    patient: PatientRef, name: str, version: str, lesion_key: str, scan_date: dt.date, output: str | None = None
) -> str:
    tail = f"/{output}" if output else ""
    return f"{patient.key}/{SIGNATURE_CODE}/{name}/{version}/{lesion_key}/{scan_date.isoformat()}{tail}"


def signature_observation(
    systems: LocalSystems,
    patient: PatientRef,
    *,
    name: str,
    version: str,
    method_text: str,
    provisional: bool,
    score: float,
    scan_date: dt.date,
    lesion_key: str,
    derived_from: Sequence[Mapping[str, Any]],
    issued: dt.datetime,
    lesion: Mapping[str, Any] | None = None,
    output: Mapping[str, str] | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """``derived_from``: the feature Observations (their ``id`` and contained lesion are reused); a received AI
    result has none and passes its ``lesion`` BodyStructure and ``output`` (the measured concept's coding, kept as
    component ``signature-output``) instead."""
    system = systems.observation_identifier
    value = signature_identifier(patient, name, version, lesion_key, scan_date, output["code"] if output else None)
    contained = [dict(lesion)] if lesion else []
    contained += [c for obs in derived_from[:1] for c in obs.get("contained", []) if c.get("id") == "lesion"]
    quantity: dict[str, Any] = {"value": round(score, 6)}
    if unit:
        quantity.update({"unit": unit, "system": "http://unitsofmeasure.org", "code": unit})

    def local(code: str) -> dict[str, Any]:
        return {"coding": [{"system": systems.immunorad, "code": code}]}

    return {
        "resourceType": "Observation",
        "id": resource_id(system, value),
        "identifier": [{"use": "official", "system": system, "value": value}],
        "status": "preliminary" if provisional else "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}]}
        ],
        "code": {"coding": [{"system": systems.immunorad, "code": SIGNATURE_CODE, "display": "Imaging signature"}]},
        "subject": {
            "reference": f"Patient/{patient.fhir_id}",
            "identifier": {"system": patient.identifier_system, "value": patient.identifier_value},
        },
        **({"contained": contained[:1], "focus": [{"reference": "#lesion"}]} if contained else {}),
        "effectiveDateTime": scan_date.isoformat(),
        "issued": issued.isoformat(timespec="seconds"),
        "method": {"text": method_text},
        "valueQuantity": quantity,
        **(
            {"derivedFrom": [{"reference": f"Observation/{obs['id']}"} for obs in derived_from]} if derived_from else {}
        ),
        "component": [
            {"code": local("signature-name"), "valueString": name},
            {"code": local("signature-version"), "valueString": version},
            {"code": local("provisional"), "valueBoolean": provisional},
            *(
                [{"code": local("signature-output"), "valueCodeableConcept": {"coding": [dict(output)]}}]
                if output
                else []
            ),
        ],
    }
