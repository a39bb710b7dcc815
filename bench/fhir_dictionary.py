"""Build a preset dictionary for ``service.persistence.packed_json`` from resources we produce.

    python -m bench.fhir_dictionary OUT [--check FILE]

Source: the worked examples E9B, E11, E13 and E15 (``tests.rules.cases``), evaluated in process, with a
DiagnosticReport, its Observations and its pre-fill built for each of their follow-ups, exactly as the service
builds them (``fhir_mappings.outbound.build_report``), and each assessment as the service stores it
(``to_jsonable``). The benchmarks' cohorts are made of the *other* cases (E1, E3, E5, E7, E9 and the demo
cohort), so a figure measured there is not measured on the dictionary's own text. The patient is a made-up
reference, no person's.

Deflate refers back at most 32 KB, and a reference to nearer text is cheaper, so the dictionary is ordered from
what appears least often to what appears most: one assessment, then the pre-fill (plain text and HTML, decoded),
then one resource of each kind (by ``resourceType`` and ``code``), the kinds most frequent last.

A dictionary in use never changes (stored values need it): this builds a *new* one, for a new format.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

SIZE = 32 * 1024


def _compact(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def produced() -> tuple[list[dict], list[dict]]:
    """(resources, assessments) for the dictionary's cases."""
    from fhir_mappings.outbound import PatientRef, ReportContext, build_report
    from rules.evaluate import evaluate_patient, facts_as_of, to_jsonable
    from service.ops.config import Settings
    from tests.rules import cases

    settings = Settings(var_dir=Path("."), database_url="sqlite://")  # defaults only: nothing is opened
    resources: list[dict] = []
    assessments: list[dict] = []
    for number, case in enumerate((cases.E9B, cases.E11, cases.E13, cases.E15)):
        key = hashlib.sha256(f"dictionary-patient-{number}".encode()).hexdigest()[:32]
        ref = PatientRef(
            fhir_id=key, key=key, identifier_system=settings.patient_id_system, identifier_value=f"DICT-{number}"
        )
        facts = case.facts(key)
        assessment = evaluate_patient(facts)
        assessments.append(to_jsonable(assessment))
        for scan_date in assessment.followup_dates:
            as_of = evaluate_patient(facts_as_of(facts, scan_date))
            ctx = ReportContext(
                canonical=settings.fhir_canonical,
                patient=ref,
                scan_date=scan_date,
                status="preliminary",
                issued=dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC),
                imaging_study_uids=(f"2.25.{number}{scan_date:%Y%m%d}",),
                primary_criterion=settings.primary_criterion,
            )
            built = build_report(as_of, ctx, ())
            resources.extend([built.diagnostic_report, *built.observations])
    return resources, assessments


def _kind(resource: dict) -> str:
    codings = (resource.get("code") or {}).get("coding") or [{}]
    return f"{resource['resourceType']}|{codings[0].get('system')}|{codings[0].get('code')}"


def build() -> bytes:
    resources, assessments = produced()
    forms: list[bytes] = []
    by_kind: dict[str, list[dict]] = collections.defaultdict(list)
    for resource in resources:
        if resource["resourceType"] == "DiagnosticReport":
            stripped = []
            for form in resource.get("presentedForm", []):
                forms.append(base64.b64decode(form["data"]))
                stripped.append({**form, "data": ""})
            resource = {**resource, "presentedForm": stripped}
        by_kind[_kind(resource)].append(resource)
    parts = [_compact(assessments[0]), *forms[:2]]
    for kind in sorted(by_kind, key=lambda k: (len(by_kind[k]), k)):
        parts.append(_compact(by_kind[kind][0]))
    return b"".join(parts)[-SIZE:]


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    data = build()
    out.write_bytes(data)
    print(f"{out}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
