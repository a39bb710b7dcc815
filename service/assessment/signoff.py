"""Radiologist sign-off of a timepoint's category (contract §9.7), by either route:

* a ``DiagnosticReport`` from the reporting system, ``status`` ``final``, carrying our report's ``identifier`` and
  the signed category in ``conclusionCode`` (system ``{C}/CodeSystem/response``), the criterion in the concept's
  ``text`` or in an extension whose ``valueCodeableConcept`` codes it in ``{C}/CodeSystem/response-criteria``
  (the ``method``-style extension); the reader is ``resultsInterpreter[0]`` (its ``display`` or reference);
* ``POST /api/reports/{id}/sign-off`` with ``{"criterion", "category", "reader", "comment"}``.

Both become an append-only :class:`~service.persistence.models.SignOff` row (an amendment is a new row, the latest current) and
an audit event. The engine's DiagnosticReport and Observations are never written here: the received
DiagnosticReport's id, reader, category and comment are kept in the sign-off row, not in the FHIR store, so that our report's
identifier keeps naming exactly one resource (conditional updates by identifier stay unambiguous).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fhir_mappings.codes import CRITERION_CATEGORIES, RESPONSE_CRITERIA, LocalSystems
from fhir_mappings.outbound import WITHDRAWN
from service.persistence.fhir_store import get_resource, parse_fhir_datetime
from service.persistence.models import Report, SignOff, utcnow
from service.persistence.store import audit

MAX_TEXT = 2000
"""Longest reader name or comment kept (longer is refused, not cut)."""


class SignOffError(Exception):
    """A sign-off refused: ``status`` (400 malformed, 404 unknown report, 409 a withdrawn report, 422 not a valid
    category), why, and the OperationOutcome issue code."""

    def __init__(self, status: int, message: str, expression: str | None = None, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.expression = expression
        self.code = code


@dataclass(frozen=True)
class SignOffRequest:
    criterion: str
    category: str
    reader: str
    comment: str | None
    signed_at: dt.datetime | None = None
    source_ref: str | None = None


def check_request(body: Any) -> SignOffRequest:
    """The JSON body of ``POST /api/reports/{id}/sign-off``: 400 when malformed, 422 when the category is not one
    of its criterion's."""
    if not isinstance(body, Mapping):
        raise SignOffError(400, "the body must be a JSON object")
    unknown = set(body) - {"criterion", "category", "reader", "comment"}
    if unknown:
        raise SignOffError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    for name in ("criterion", "category", "reader"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            raise SignOffError(400, f"{name} is required (a non-empty string)", name)
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise SignOffError(400, "comment must be a string", "comment")
    return _checked(body["criterion"].strip(), body["category"].strip(), body["reader"].strip(), comment)


def _checked(
    criterion: str,
    category: str,
    reader: str,
    comment: str | None,
    signed_at: dt.datetime | None = None,
    source_ref: str | None = None,
) -> SignOffRequest:
    if criterion not in CRITERION_CATEGORIES:
        raise SignOffError(422, f"unknown criterion {criterion!r} (one of {', '.join(RESPONSE_CRITERIA)})", "criterion")
    if category not in CRITERION_CATEGORIES[criterion]:
        allowed = ", ".join(sorted(CRITERION_CATEGORIES[criterion]))
        raise SignOffError(422, f"{category!r} is not a {criterion} category (one of {allowed})", "category")
    for name, value in (("reader", reader), ("comment", comment or "")):
        if len(value) > MAX_TEXT:
            raise SignOffError(400, f"{name} is longer than {MAX_TEXT} characters", name)
    return SignOffRequest(criterion, category, reader, comment or None, signed_at, source_ref)


def report_by_id(session: Session, report_id: str) -> Report | None:
    """Our report by its DiagnosticReport id, or by its business identifier value."""
    report = session.scalars(select(Report).where(Report.fhir_id == report_id)).first()
    if report is None:
        report = session.scalars(select(Report).where(Report.identifier == report_id)).first()
    return report


def from_diagnostic_report(
    session: Session, systems: LocalSystems, resource: Mapping[str, Any]
) -> tuple[Report, SignOffRequest]:
    """The sign-off a reporting system's DiagnosticReport carries, and the report of ours it signs (422 if none)."""
    if resource.get("status") != "final":
        raise SignOffError(
            422,
            "a DiagnosticReport is accepted only as a sign-off from the reporting system: status must be final",
            "DiagnosticReport.status",
        )
    report = None
    for identifier in resource.get("identifier") or []:
        if not isinstance(identifier, Mapping) or not isinstance(identifier.get("value"), str):
            continue
        if identifier.get("system") not in (None, systems.diagnostic_report_identifier):
            continue
        report = session.scalars(select(Report).where(Report.identifier == identifier["value"])).first()
        if report is not None:
            break
    if report is None:
        raise SignOffError(
            422,
            f"the DiagnosticReport carries no identifier of a report of ours ({systems.diagnostic_report_identifier})",
            "DiagnosticReport.identifier",
        )
    signed: list[tuple[str, str]] = []
    for index, concept in enumerate(resource.get("conclusionCode") or []):
        if not isinstance(concept, Mapping):
            continue
        codes = [
            str(c["code"])
            for c in concept.get("coding") or []
            if isinstance(c, Mapping) and c.get("system") == systems.response and isinstance(c.get("code"), str)
        ]
        if not codes:
            continue
        criterion = _criterion_of(concept, systems)
        if criterion is None:
            raise SignOffError(
                422,
                "the signed category does not name its criterion (conclusionCode.text or a response-criteria extension)",
                f"DiagnosticReport.conclusionCode[{index}]",
            )
        signed.append((criterion, codes[0]))
    if not signed:
        raise SignOffError(
            422,
            f"no signed category: conclusionCode needs a coding in {systems.response}",
            "DiagnosticReport.conclusionCode",
        )
    if len(signed) > 1:
        raise SignOffError(
            422, "one sign-off per DiagnosticReport: send one conclusionCode", "DiagnosticReport.conclusionCode"
        )
    interpreter = (resource.get("resultsInterpreter") or [{}])[0]
    reader = ""
    if isinstance(interpreter, Mapping):
        reader = str(interpreter.get("display") or interpreter.get("reference") or "")
    if not reader.strip():
        raise SignOffError(
            422,
            "the reader is required (resultsInterpreter with a display or reference)",
            "DiagnosticReport.resultsInterpreter",
        )
    issued = parse_fhir_datetime(resource.get("issued")) if isinstance(resource.get("issued"), str) else None
    criterion, category = signed[0]
    comment = resource.get("conclusion") if isinstance(resource.get("conclusion"), str) else None
    return report, _checked(criterion, category, reader.strip(), comment, issued, resource.get("id"))


def _criterion_of(concept: Mapping[str, Any], systems: LocalSystems) -> str | None:
    for extension in concept.get("extension") or []:
        value = extension.get("valueCodeableConcept") if isinstance(extension, Mapping) else None
        for coding in (value or {}).get("coding") or []:
            if coding.get("system") == systems.response_criteria and coding.get("code") in RESPONSE_CRITERIA:
                return str(coding["code"])
    text = concept.get("text")
    if isinstance(text, str):
        wanted = text.strip()
        for code, display in RESPONSE_CRITERIA.items():
            if wanted in (code, display):
                return code
        return wanted or None
    return None


def engine_category(session: Session, systems: LocalSystems, report: Report, criterion: str) -> str | None:
    """The category the engine's Observation for ``criterion`` in this report gives (None if not evaluated)."""
    row = get_resource(session, "DiagnosticReport", report.fhir_id)
    for ref in (row.content.get("result") or []) if row is not None else []:
        kind, _, fhir_id = str(ref.get("reference", "")).partition("/")
        observation = get_resource(session, kind, fhir_id) if kind == "Observation" else None
        if observation is None:
            continue
        content = observation.content
        methods = [c.get("code") for c in (content.get("method") or {}).get("coding") or []]
        if criterion not in methods:
            continue
        for coding in (content.get("valueCodeableConcept") or {}).get("coding") or []:
            if coding.get("system") == systems.response:
                return str(coding.get("code"))
    return None


def record(
    session: Session,
    systems: LocalSystems,
    report: Report,
    wanted: SignOffRequest,
    *,
    route: str,
    agent: str | None,
) -> SignOff:
    """Store one sign-off (a new row; an earlier one for the same report and criterion becomes history) and audit
    it. Nothing of the engine's result is written. A withdrawn report (its scan is no follow-up any more) cannot be
    signed: 409."""
    if report.status == WITHDRAWN:
        raise SignOffError(
            409,
            f"report {report.identifier} was withdrawn (entered-in-error): its scan is no on-treatment follow-up",
            code="conflict",
        )
    previous = current_for_report(session, report.id).get(wanted.criterion)
    row = SignOff(
        report_id=report.id,
        patient_id=report.patient_id,
        scan_date=report.scan_date,
        criterion=wanted.criterion,
        category=wanted.category,
        engine_category=engine_category(session, systems, report, wanted.criterion),
        reader=wanted.reader,
        comment=wanted.comment,
        route=route,
        source_ref=wanted.source_ref,
        signed_at=wanted.signed_at or utcnow(),
    )
    session.add(row)
    session.flush()
    detail: dict[str, Any] = {
        "criterion": wanted.criterion,
        "category": wanted.category,
        "engine_category": row.engine_category,
        "route": route,
        "sign_off": row.id,
        "amends": previous.id if previous is not None else None,
    }
    if wanted.source_ref:
        detail["source_ref"] = wanted.source_ref
    audit(
        session,
        agent=agent,
        action="C" if previous is None else "U",
        kind="sign-off",
        source="fhir" if route == "fhir" else "api",
        entity_type="DiagnosticReport",
        entity_ref=report.fhir_id,
        patient_id=report.patient_id,
        detail=detail,
    )
    return row


def current_for_report(session: Session, report_id: int) -> dict[str, SignOff]:
    """The current (latest) sign-off per criterion of one report."""
    rows = session.scalars(select(SignOff).where(SignOff.report_id == report_id).order_by(SignOff.id))
    return {row.criterion: row for row in rows}


def history_for_patient(session: Session, patient_id: str) -> list[SignOff]:
    """Every sign-off of a patient, oldest first (the last per report and criterion is current)."""
    return list(session.scalars(select(SignOff).where(SignOff.patient_id == patient_id).order_by(SignOff.id)))


def as_json(row: SignOff, *, current: bool) -> dict[str, Any]:
    return {
        "id": row.id,
        "scan_date": row.scan_date.isoformat(),
        "criterion": row.criterion,
        "category": row.category,
        "engine_category": row.engine_category,
        "agrees": row.engine_category == row.category if row.engine_category is not None else None,
        "reader": row.reader,
        "comment": row.comment,
        "route": row.route,
        "source_ref": row.source_ref,
        "signed_at": row.signed_at.isoformat(),
        "current": current,
    }


def patient_sign_offs(session: Session, patient_id: str) -> list[dict[str, Any]]:
    """Every sign-off of a patient as JSON, each marked current or superseded."""
    rows = history_for_patient(session, patient_id)
    latest = {(r.report_id, r.criterion): r.id for r in rows}
    return [as_json(r, current=latest[(r.report_id, r.criterion)] == r.id) for r in rows]
