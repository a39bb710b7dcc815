"""The patient's signature Observations as rows (contract §9.6 "Signatures"), for the patient page and the report."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fhir_mappings.codes import LocalSystems
from service.persistence.models import FhirResource


def signature_rows(session: Session, patient_id: str, canonical: str) -> list[dict[str, Any]]:
    """Every signature Observation of the patient: date, lesion, name, version, score, provisional, method."""
    system = LocalSystems.from_canonical(canonical).immunorad
    rows = []
    stored = session.scalars(
        select(FhirResource).where(FhirResource.resource_type == "Observation", FhirResource.patient_id == patient_id)
    )
    for resource in stored:
        content = resource.content
        codings = content.get("code", {}).get("coding", [])
        if not any(c.get("system") == system and c.get("code") == "signature" for c in codings):
            continue
        parts = {c["code"]["coding"][0]["code"]: c for c in content.get("component", [])}
        lesion: dict[str, Any] = next(iter(content.get("contained") or []), {})
        identifiers = lesion.get("identifier", [])
        label = next((i.get("value") for i in identifiers if "system" not in i), None)
        rows.append(
            {
                "date": content.get("effectiveDateTime", ""),
                "lesion": label or next((i.get("value") for i in identifiers), ""),
                "name": parts.get("signature-name", {}).get("valueString", ""),
                "version": parts.get("signature-version", {}).get("valueString", ""),
                "value": content.get("valueQuantity", {}).get("value"),
                "provisional": bool(parts.get("provisional", {}).get("valueBoolean")),
                "method": content.get("method", {}).get("text", ""),
            }
        )
    return sorted(rows, key=lambda r: (r["date"], r["lesion"], r["name"]))


def signature_lines(rows: list[dict[str, Any]], up_to: str) -> tuple[str, ...]:
    """One line per signature dated on or before ``up_to`` (ISO date), for the report's details."""
    return tuple(
        f"Lesion {r['lesion']}, {r['date']}: {r['name']} {r['version']} = {r['value']}"
        + (" (provisional)" if r["provisional"] else "")
        + f" — {r['method']}"
        for r in rows
        if r["date"] and r["date"][:10] <= up_to
    )
