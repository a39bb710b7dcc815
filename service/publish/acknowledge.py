"""Alert follow-up (contract §9.7): an alert acknowledged by ``POST /api/alerts/{id}/acknowledge``, by CDS Hooks
feedback (``accepted``/``overridden`` with the override reason) or by its Flag set ``inactive`` in the EHR and read
back by the worker. Each is an append-only :class:`~service.persistence.models.AlertAcknowledgement` row and an audit event;
the first per alert gives the time to acknowledgement, reported per alert type on the quality dashboard.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fhir_mappings.cds_hooks import card_uuid
from service.persistence.fhir_store import parse_fhir_datetime
from service.persistence.models import Alert, AlertAcknowledgement, OutboxMessage, utcnow
from service.persistence.store import audit

FEEDBACK_OUTCOMES = ("accepted", "overridden")
MAX_TEXT = 2000


class AcknowledgementError(Exception):
    """A refused acknowledgement (400: malformed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def record(
    session: Session,
    alert: Alert,
    *,
    route: str,
    outcome: str,
    by: str | None,
    comment: str | None,
    at: dt.datetime | None,
    agent: str | None,
) -> AlertAcknowledgement:
    row = AlertAcknowledgement(
        alert_id=alert.id,
        patient_id=alert.patient_id,
        route=route,
        outcome=outcome,
        by=by,
        comment=comment,
        acknowledged_at=at or utcnow(),
    )
    session.add(row)
    session.flush()
    audit(
        session,
        agent=agent,
        action="U",
        kind="alert-acknowledged",
        source="api" if route != "ehr-flag" else "worker",
        entity_type="Flag",
        entity_ref=alert.identifier,
        patient_id=alert.patient_id,
        detail={"route": route, "outcome": outcome, "acknowledgement": row.id},
    )
    return row


def check_request(body: Any) -> tuple[str, str | None]:
    """``{"by", "comment"}`` of ``POST /api/alerts/{id}/acknowledge``: ``by`` required."""
    if not isinstance(body, Mapping):
        raise AcknowledgementError("the body must be a JSON object")
    unknown = set(body) - {"by", "comment"}
    if unknown:
        raise AcknowledgementError(f"unknown field(s): {', '.join(sorted(unknown))}")
    by, comment = body.get("by"), body.get("comment")
    if not isinstance(by, str) or not by.strip():
        raise AcknowledgementError("by is required (a non-empty string)")
    if comment is not None and not isinstance(comment, str):
        raise AcknowledgementError("comment must be a string")
    if len(by) > MAX_TEXT or len(comment or "") > MAX_TEXT:
        raise AcknowledgementError(f"by and comment are at most {MAX_TEXT} characters")
    return by.strip(), comment or None


def alert_for_card(session: Session, canonical: str, card: str) -> Alert | None:
    """The alert whose CDS card has this uuid (``card_uuid`` is a UUID v5 of the alert identifier)."""
    for alert in session.scalars(select(Alert)):
        if card_uuid(alert, canonical) == card:  # type: ignore[arg-type]  # an Alert row has the identifier
            return alert
    return None


def record_feedback(
    session: Session, canonical: str, feedback: Iterable[Any], *, agent: str | None
) -> list[AlertAcknowledgement]:
    """CDS Hooks feedback items (``card``, ``outcome``, ``overrideReason``, ``outcomeTimestamp``) on our cards; an
    item naming an unknown card is left out (it is in the feedback's audit event)."""
    rows = []
    for item in feedback:
        if not isinstance(item, Mapping) or item.get("outcome") not in FEEDBACK_OUTCOMES:
            continue
        alert = alert_for_card(session, canonical, str(item.get("card")))
        if alert is None:
            continue
        reason = item.get("overrideReason") or {}
        coding = reason.get("reason") if isinstance(reason, Mapping) else None
        words = None
        if isinstance(coding, Mapping):
            words = coding.get("display") or coding.get("code")
        if isinstance(reason, Mapping) and reason.get("userComment"):
            words = f"{words}: {reason['userComment']}" if words else reason["userComment"]
        at = item.get("outcomeTimestamp")
        rows.append(
            record(
                session,
                alert,
                route="cds-feedback",
                outcome=str(item["outcome"]),
                by=agent,
                comment=str(words)[:MAX_TEXT] if words else None,
                at=parse_fhir_datetime(at) if isinstance(at, str) else None,
                agent=agent,
            )
        )
    return rows


def flags_to_poll(session: Session, limit: int = 200) -> list[Alert]:
    """Active alerts not yet acknowledged whose patient has had something delivered to the EHR."""
    acknowledged = select(AlertAcknowledgement.alert_id)
    delivered = select(OutboxMessage.patient_id).where(OutboxMessage.status == "delivered")
    return list(
        session.scalars(
            select(Alert)
            .where(Alert.status == "active", Alert.id.not_in(acknowledged), Alert.patient_id.in_(delivered))
            .order_by(Alert.id)
            .limit(limit)
        )
    )


def apply_flag_read_back(session: Session, alert: Alert, flag: Mapping[str, Any]) -> AlertAcknowledgement | None:
    """The Flag as the EHR holds it: ``inactive`` there is an acknowledgement (by the Flag's author when it names
    one, when its ``period.end`` or ``meta.lastUpdated`` says, else now)."""
    if flag.get("status") != "inactive":
        return None
    author = flag.get("author") or {}
    by = (author.get("display") or author.get("reference")) if isinstance(author, Mapping) else None
    when = (flag.get("period") or {}).get("end") or (flag.get("meta") or {}).get("lastUpdated")
    return record(
        session,
        alert,
        route="ehr-flag",
        outcome="acknowledged",
        by=str(by) if by else "EHR",
        comment=None,
        at=parse_fhir_datetime(when) if isinstance(when, str) else None,
        agent="worker",
    )


def _hours(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def follow_up(
    session: Session,
    labels: Mapping[str, str],
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> dict[str, Any]:
    """Time to acknowledgement per alert type (hours from the alert's creation to its first acknowledgement:
    count, acknowledged, median, maximum) and the critical alerts still active and unacknowledged, for the
    patients of ``labels`` (patient id → the label shown) and alerts at scans from ``start`` to ``end``."""
    query = select(Alert).where(Alert.status != "entered-in-error")
    alerts = [
        a
        for a in session.scalars(query)
        if a.patient_id in labels and (start is None or a.scan_date >= start) and (end is None or a.scan_date <= end)
    ]
    first: dict[int, AlertAcknowledgement] = {}
    for row in session.scalars(select(AlertAcknowledgement).order_by(AlertAcknowledgement.id)):
        first.setdefault(row.alert_id, row)
    per_type: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        per_type[alert.code].append(alert)
    types = []
    for code in sorted(per_type):
        hours = [
            _hours(max(first[a.id].acknowledged_at - a.created_at, dt.timedelta(0)))
            for a in per_type[code]
            if a.id in first
        ]
        types.append(
            {
                "code": code,
                "alerts": len(per_type[code]),
                "acknowledged": len(hours),
                "median_hours": round(statistics.median(hours), 2) if hours else None,
                "max_hours": max(hours) if hours else None,
                "by_route": dict(
                    sorted(
                        {
                            route: sum(1 for a in per_type[code] if a.id in first and first[a.id].route == route)
                            for route in ("api", "cds-feedback", "ehr-flag")
                        }.items()
                    )
                ),
            }
        )
    unacknowledged = [
        {
            "identifier": a.identifier,
            "patient": labels[a.patient_id],
            "patient_id": a.patient_id,
            "code": a.code,
            "scan_date": a.scan_date.isoformat(),
            "raised_at": a.created_at.isoformat(),
            "summary": a.summary,
        }
        for a in sorted(alerts, key=lambda a: a.created_at)
        if a.severity == "critical" and a.status == "active" and a.id not in first
    ]
    return {"per_type": types, "unacknowledged_critical": unacknowledged}


def alert_acknowledgements(session: Session, alert: Alert) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(AlertAcknowledgement).where(AlertAcknowledgement.alert_id == alert.id).order_by(AlertAcknowledgement.id)
    )
    return [
        {
            "route": r.route,
            "outcome": r.outcome,
            "by": r.by,
            "comment": r.comment,
            "acknowledged_at": r.acknowledged_at.isoformat(),
        }
        for r in rows
    ]
