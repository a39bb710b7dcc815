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


def signature_identifier(patient: PatientRef, name: str, version: str, lesion_key: str, scan_date: dt.date) -> str:
    return f"{patient.key}/{SIGNATURE_CODE}/{name}/{version}/{lesion_key}/{scan_date.isoformat()}"


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
) -> dict[str, Any]:
    """``derived_from``: the feature Observations (their ``id`` and contained lesion are reused)."""
    system = systems.observation_identifier
    value = signature_identifier(patient, name, version, lesion_key, scan_date)
    lesion = [c for obs in derived_from[:1] for c in obs.get("contained", []) if c.get("id") == "lesion"]

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
        **({"contained": lesion, "focus": [{"reference": "#lesion"}]} if lesion else {}),
        "effectiveDateTime": scan_date.isoformat(),
        "issued": issued.isoformat(timespec="seconds"),
        "method": {"text": method_text},
        "valueQuantity": {"value": round(score, 6)},
        "derivedFrom": [{"reference": f"Observation/{obs['id']}"} for obs in derived_from],
        "component": [
            {"code": local("signature-name"), "valueString": name},
            {"code": local("signature-version"), "valueString": version},
            {"code": local("provisional"), "valueBoolean": provisional},
        ],
    }
