"""The §9.6 feature Observation of one lesion segment at one timepoint (contract §9.6 "Features").

One Observation per lesion and scan date: ``code`` ``{C}/CodeSystem/immunorad#radiomic-features``, ``focus`` the
lesion's BodyStructure (contained, identified by its Tracking UID as ``urn:oid:`` in ``urn:dicom:uid``, or by its
label — the contract §4 identity), ``method`` naming how each group of features was computed, and one component
per feature coded with its IBSI identifier in ``https://theibsi.github.io/ibsi``. Volumes are in cm3 (UCUM).

Several producers may add features to the same Observation (the volume by voxel counting here, the radiomic
features of an IBSI library): ``merge_features`` keeps the components of the others, replacing only those with
the same IBSI code, and keeps each producer's ``method`` text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_mappings.codes import LocalSystems
from fhir_mappings.outbound import PatientRef, resource_id

IBSI_SYSTEM = "https://theibsi.github.io/ibsi"
UCUM = "http://unitsofmeasure.org"
FEATURE_CODE = "radiomic-features"
METHOD_SEPARATOR = " | "


@dataclass(frozen=True)
class Feature:
    ibsi_id: str | None
    """IBSI feature identifier, e.g. ``YEKZ`` volume (voxel counting)."""
    name: str
    value: Decimal
    unit: str | None = None
    """UCUM unit code (``cm3``…), ``None`` for a dimensionless feature."""
    local_code: str | None = None
    """A ``{C}/CodeSystem/immunorad`` code naming what the feature means here (``adc-mean``: the IBSI mean
    intensity ``Q4LE`` over an ADC map)."""


VOLUME_VOXEL_COUNTING = "YEKZ"
"""IBSI 1 morphological feature "Volume (voxel counting)" (IBSI reference manual §3.1.2, identifier YEKZ)."""


def feature_identifier(patient: PatientRef, lesion_key: str, scan_date: dt.date) -> str:
    return f"{patient.key}/{FEATURE_CODE}/{lesion_key}/{scan_date.isoformat()}"


def _lesion_body_structure(patient: PatientRef, lesion_key: str, label: str | None) -> dict[str, Any]:
    identifiers: list[dict[str, str]] = []
    if lesion_key.startswith("label:"):
        identifiers.append({"value": lesion_key[len("label:") :]})
    else:
        identifiers.append({"system": "urn:dicom:uid", "value": f"urn:oid:{lesion_key}"})
        if label:
            identifiers.append({"value": label})
    return {
        "resourceType": "BodyStructure",
        "id": "lesion",
        "identifier": identifiers,
        "patient": {"reference": f"Patient/{patient.fhir_id}"},
    }


def _codings(systems: LocalSystems, feature: Feature) -> list[dict[str, str]]:
    codings = []
    if feature.local_code:
        codings.append({"system": systems.immunorad, "code": feature.local_code, "display": feature.name})
    if feature.ibsi_id:
        codings.append({"system": IBSI_SYSTEM, "code": feature.ibsi_id, "display": feature.name})
    return codings


def _component(systems: LocalSystems, feature: Feature) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": float(feature.value)}
    if feature.unit:
        quantity.update({"unit": feature.unit, "system": UCUM, "code": feature.unit})
    return {"code": {"coding": _codings(systems, feature)}, "valueQuantity": quantity}


def merge_features(
    existing: Mapping[str, Any] | None,
    systems: LocalSystems,
    patient: PatientRef,
    *,
    lesion_key: str,
    lesion_label: str | None,
    scan_date: dt.date,
    features: Sequence[Feature],
    method: str,
    issued: dt.datetime,
) -> dict[str, Any]:
    """The lesion's feature Observation at ``scan_date`` with ``features`` added (same IBSI code: replaced)."""
    system = systems.observation_identifier
    value = feature_identifier(patient, lesion_key, scan_date)
    # A component is replaced by a new one with the same first coding (the local code when there is one, else IBSI).
    new_codes = {(c["system"], c["code"]) for f in features for c in _codings(systems, f)[:1]}
    kept = [
        c
        for c in (existing or {}).get("component", [])
        if (c["code"]["coding"][0].get("system"), c["code"]["coding"][0].get("code")) not in new_codes
    ]
    methods = [m for m in ((existing or {}).get("method", {}).get("text", "") or "").split(METHOD_SEPARATOR) if m]
    if method not in methods:
        methods.append(method)
    return {
        "resourceType": "Observation",
        "id": resource_id(system, value),
        "identifier": [{"use": "official", "system": system, "value": value}],
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}]}
        ],
        "code": {"coding": [{"system": systems.immunorad, "code": FEATURE_CODE, "display": "Radiomic features"}]},
        "subject": {
            "reference": f"Patient/{patient.fhir_id}",
            "identifier": {"system": patient.identifier_system, "value": patient.identifier_value},
        },
        "contained": [_lesion_body_structure(patient, lesion_key, lesion_label)],
        "focus": [{"reference": "#lesion"}],
        "effectiveDateTime": scan_date.isoformat(),
        "issued": issued.isoformat(timespec="seconds"),
        "method": {"text": METHOD_SEPARATOR.join(methods)},
        "component": kept + [_component(systems, f) for f in features],
    }
