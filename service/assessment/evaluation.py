"""Evaluate a patient and publish the results: assessment version, reports, alerts, outbox — one transaction.

Re-evaluation is deterministic: when neither the inputs (hash) nor the rule base changed, nothing is written.
When they changed, a new assessment version is appended; each follow-up timepoint's DiagnosticReport is
re-issued only if its content changed (``preliminary`` first, ``amended`` after), and each changed report
is queued for the EHR as one transaction Bundle with its Observations and Flags.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fhir_mappings.alerts import AlertState
from fhir_mappings.outbound import (
    WITHDRAWN,
    PatientRef,
    ReportContext,
    build_flags,
    build_report,
    ehr_transaction_bundle,
    transaction_bundle,
    withdrawn_report,
)
from rules.engine import rulebase
from rules.evaluate import evaluate_patient, facts_as_of, inputs_hash, to_jsonable
from rules.facts import PatientFacts
from rules.results import Finding, PatientAssessment
from service.assessment.facts_loader import load_facts
from service.features.signature_store import signature_lines, signature_rows
from service.ops.config import Settings
from service.ops.logs import pseudonym
from service.persistence.fhir_store import get_resource, save_resource, save_resources
from service.persistence.models import (
    Alert,
    Assessment,
    Instance,
    Measurement,
    OutboxMessage,
    Patient,
    Report,
    Study,
    utcnow,
)
from service.persistence.store import audit

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvaluationOutcome:
    patient_id: str
    version: int | None
    """The new assessment version, or None when nothing changed."""
    changes: list[dict[str, Any]]
    reports_issued: int
    alerts_changed: int


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _strip_volatile(resource: Mapping[str, Any]) -> dict[str, Any]:
    """Resource content without what changes at every issue (issued, status, meta, attachment creation)."""
    out = {k: v for k, v in resource.items() if k not in ("issued", "status", "meta")}
    if "presentedForm" in out:
        out["presentedForm"] = [{k: v for k, v in form.items() if k != "creation"} for form in out["presentedForm"]]
    return out


def summarise_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What changed between two stored assessment results, per criterion and timepoint (for audits)."""

    def index(result: Mapping[str, Any] | None) -> dict[tuple[str, str], str | None]:
        out: dict[tuple[str, str], str | None] = {}
        for criterion in (result or {}).get("criteria", []):
            for tp in criterion.get("timepoints", []):
                out[(criterion["criterion"], tp["scan_date"])] = tp["category"]
            bor = criterion.get("best_response") or {}
            out[(criterion["criterion"], "best-overall-response")] = bor.get("category")
        for finding in (result or {}).get("findings", []):
            out[("alert", f"{finding['code']}/{finding.get('key') or finding['scan_date']}")] = finding.get("severity")
        return out

    old, new = index(before), index(after)
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            changes.append({"what": key[0], "when": key[1], "before": old.get(key), "after": new.get(key)})
    if before is not None and before.get("rulebase_version") != after.get("rulebase_version"):
        changes.insert(
            0,
            {
                "what": "rule-base",
                "when": None,
                "before": before.get("rulebase_version"),
                "after": after.get("rulebase_version"),
            },
        )
    return changes


NOT_EVALUABLE_ALERTS = frozenset({"hpd-not-evaluable"})
"""Findings that say something could not be evaluated: stated in the report and the kinetics Observation, never an
active alert unless ``IMMUNORAD_ALERT_NOT_EVALUABLE`` turns an ``info`` card on (contract §9.4)."""


def alert_identifier(patient: Patient, finding: Finding) -> str:
    """Stable per patient and finding (contract §9.4): ``<patient>/<code>`` (``/<key>`` for findings that are
    distinct per key, e.g. one irAE per organ pattern), so a later scan updates the same Flag."""
    return f"{patient.id}/{finding.identity}"


def alerting(findings: tuple[Finding, ...], *, not_evaluable_cards: bool = False) -> list[Finding]:
    """The findings that raise an alert: ``Finding.alert``, plus the not-evaluable ones as ``info`` when asked."""
    out = []
    for finding in findings:
        if finding.alert:
            out.append(finding)
        elif not_evaluable_cards and finding.code in NOT_EVALUABLE_ALERTS:
            out.append(dataclasses.replace(finding, alert=True, severity="info"))
    return out


def report_date_for(finding: Finding, followups: tuple[dt.date, ...]) -> dt.date:
    """The report an alert points to: the latest follow-up at which it holds (a later scan updates the alert's
    period and ``flag-detail``), or its own date when no follow-up report covers it (an early death after the last
    scan)."""
    covering = [day for day in followups if day >= finding.scan_date]
    return max(covering) if covering else finding.scan_date


def _finding_from_json(data: Mapping[str, Any]) -> Finding:
    values = dict(data)
    values["scan_date"] = dt.date.fromisoformat(values["scan_date"])
    if values.get("window_end"):
        values["window_end"] = dt.date.fromisoformat(values["window_end"])
    values["codings"] = tuple(values.get("codings") or ())
    return Finding(**{f.name: values[f.name] for f in dataclasses.fields(Finding) if f.name in values})


def sync_alerts(
    session: Session,
    patient: Patient,
    findings: tuple[Finding, ...],
    latest_scan: dt.date | None = None,
    *,
    followups: tuple[dt.date, ...] = (),
    not_evaluable_cards: bool = False,
) -> tuple[list[AlertState], int]:
    """Alert lifecycle: raise new ones, update existing ones (one per patient and finding, never a duplicate),
    resolve those no longer found.

    A finding that still holds at a later scan moves its alert to that scan's report (``Alert.scan_date``, the
    Flag's period and ``flag-detail``). An alert resolved by a new scan ends on that scan's date
    (``latest_scan``). ``entered-in-error`` is a human decision and is never overridden.
    """
    existing = {a.identifier: a for a in session.scalars(select(Alert).where(Alert.patient_id == patient.id))}
    wanted = {alert_identifier(patient, f): f for f in alerting(findings, not_evaluable_cards=not_evaluable_cards)}
    changed = 0
    now = utcnow()
    for identifier, finding in wanted.items():
        data = to_jsonable(finding)
        report_date = report_date_for(finding, followups)
        alert = existing.get(identifier)
        if alert is None:
            alert = Alert(
                patient_id=patient.id,
                identifier=identifier,
                code=finding.code,
                key=finding.key,
                status="active",
                severity=finding.severity,
                scan_date=report_date,
                first_raised=min(finding.scan_date, report_date),
                summary=finding.summary,
                detail=finding.detail,
                rule=finding.rule,
                source=finding.source,
                finding=data,
            )
            session.add(alert)
            existing[identifier] = alert
            changed += 1
            continue
        if alert.status == "entered-in-error":
            continue
        if (
            alert.status != "active"
            or alert.scan_date != report_date
            or {k: v for k, v in alert.finding.items() if k != "resolved_on"} != data
        ):
            if alert.status != "active" or finding.scan_date < alert.first_raised:
                alert.first_raised = min(finding.scan_date, report_date)  # a new active run starts here
            alert.status = "active"
            alert.resolved_at = None
            alert.key = finding.key
            alert.severity, alert.summary, alert.detail = finding.severity, finding.summary, finding.detail
            alert.rule, alert.source = finding.rule, finding.source
            alert.scan_date, alert.finding = report_date, data
            changed += 1
    for identifier, alert in existing.items():
        if identifier not in wanted and alert.status == "active":
            alert.status = "inactive"
            alert.resolved_at = now
            if latest_scan is not None:
                alert.finding = {**alert.finding, "resolved_on": latest_scan.isoformat()}
            changed += 1
    session.flush()
    states = [alert_state(a) for a in sorted(existing.values(), key=lambda a: (a.scan_date, a.identifier))]
    return states, changed


def alert_state(alert: Alert) -> AlertState:
    resolved_on = (alert.finding or {}).get("resolved_on")
    ended = dt.date.fromisoformat(resolved_on) if alert.status == "inactive" and resolved_on else None
    return AlertState(
        finding=_finding_from_json(alert.finding),
        identifier=alert.identifier,
        status=alert.status,
        first_raised=alert.first_raised,
        report_date=alert.scan_date,
        ended=ended,
    )


def first_input_times(session: Session, patient: Patient) -> dict[dt.date, dt.datetime]:
    """Earliest arrival of an input per scan date (turnaround: study received → report delivered)."""
    times: dict[dt.date, dt.datetime] = {}
    rows = session.execute(
        select(func.coalesce(Measurement.scan_date, Study.study_date), func.min(Measurement.received_at))
        .select_from(Measurement)
        .outerjoin(Study, Study.id == Measurement.study_id)
        .where(Measurement.patient_id == patient.id)
        .group_by(func.coalesce(Measurement.scan_date, Study.study_date))
    )
    for day, first in rows:
        if day is not None and first is not None:
            times[day] = first
    rows = session.execute(
        select(Study.study_date, func.min(Instance.received_at))
        .join(Instance, Instance.study_id == Study.id)
        .where(Study.patient_id == patient.id)
        .group_by(Study.study_date)
    )
    for day, first in rows:
        if day is not None and first is not None:
            times[day] = min(times.get(day, first), first)
    return times


def evaluate_and_publish(
    session: Session, settings: Settings, patient: Patient, *, trigger: str, force: bool = False
) -> EvaluationOutcome:
    facts = load_facts(
        session,
        patient,
        settle_seconds=settings.study_settle_seconds,
        default_cancer_type=settings.default_cancer_type,
        default_pet_tracer=settings.default_pet_tracer,
    )
    overrides = settings.rule_overrides
    canonical_memo: dict = {}
    digest = inputs_hash(facts, overrides, canonical_memo)
    version_of_rules = rulebase().version
    last = session.scalars(
        select(Assessment).where(Assessment.patient_id == patient.id).order_by(Assessment.version.desc()).limit(1)
    ).first()
    if last is not None and not force and last.inputs_hash == digest and last.rulebase_version == version_of_rules:
        return EvaluationOutcome(patient.id, None, [], 0, 0)

    assessment = evaluate_patient(facts, overrides)
    result = to_jsonable(assessment)
    changes = summarise_changes(last.result if last else None, result)
    record = Assessment(
        patient_id=patient.id,
        version=(last.version + 1) if last else 1,
        inputs_hash=digest,
        rulebase_version=version_of_rules,
        trigger=trigger,
        result=result,
        changes=changes,
    )
    session.add(record)
    session.flush()
    latest_scan = max([s.scan_date for s in facts.scans] + [m.scan_date for m in facts.measurements], default=None)
    states, alerts_changed = sync_alerts(
        session,
        patient,
        assessment.findings,
        latest_scan,
        followups=assessment.followup_dates,
        not_evaluable_cards=settings.alert_not_evaluable,
    )
    issued = publish_reports(session, settings, patient, facts, assessment, states, record, canonical_memo)
    audit(
        session,
        action="E",
        kind="evaluation",
        source="worker",
        entity_type="Assessment",
        entity_ref=f"{record.version}",
        patient_id=patient.id,
        detail={
            "trigger": trigger,
            "rulebase": version_of_rules,
            "inputs_hash": digest,
            "reports_issued": issued,
            "changes": len(changes),
        },
    )
    logger.info(
        "patient evaluated",
        extra={
            "fields": {
                "patient": pseudonym(patient.id),
                "version": record.version,
                "reports": issued,
                "changes": len(changes),
            }
        },
    )
    return EvaluationOutcome(patient.id, record.version, changes, issued, alerts_changed)


def patient_ref(settings: Settings, patient: Patient) -> PatientRef:
    return PatientRef(
        fhir_id=patient.id,
        key=patient.id,
        identifier_system=settings.patient_id_system,
        identifier_value=patient.mrn or patient.id,
    )


def publish_reports(
    session: Session,
    settings: Settings,
    patient: Patient,
    facts: PatientFacts,
    assessment: PatientAssessment,
    states: list[AlertState],
    record: Assessment,
    canonical_memo: dict | None = None,
) -> int:
    """One DiagnosticReport per follow-up, each evaluated on the facts known at its own date.

    A report is re-issued only when what was known at its date changed (or the rule base did): later scans
    never amend an earlier report. Flags ride with the report of the timepoint that raised them, with their
    current status; a flag change re-sends the bundle without amending the report.
    """
    ref = patient_ref(settings, patient)
    signatures = signature_rows(session, patient.id, settings.fhir_canonical)
    studies: dict[dt.date, list[str]] = {}
    for study in session.scalars(select(Study).where(Study.patient_id == patient.id)):
        if study.study_date:
            studies.setdefault(study.study_date, []).append(study.study_uid)
    arrivals = first_input_times(session, patient)
    overrides = settings.rule_overrides
    version_of_rules = rulebase().version
    issued = 0
    now = utcnow()
    reports = {r.scan_date: r for r in session.scalars(select(Report).where(Report.patient_id == patient.id))}
    memo = {} if canonical_memo is None else canonical_memo
    for scan_date in assessment.followup_dates:
        report = reports.get(scan_date)
        alerts = [s for s in states if s.report_date == scan_date]
        # The first on-treatment scan's report also takes the therapy stop and death recorded later: they
        # complete its hyperprogression definitions (time to treatment failure, early death).
        first_evaluation = assessment.kinetics is not None and assessment.kinetics.e2_date == scan_date
        known = facts_as_of(facts, scan_date, keep_treatment_outcomes=first_evaluation)
        as_of_hash = _digest([inputs_hash(known, overrides, memo), version_of_rules])
        flags_preview = _digest(
            sorted(
                (
                    s.identifier,
                    s.status,
                    s.finding.code,
                    s.finding.severity,
                    s.finding.summary,
                    str(s.finding.window_end),
                    str(s.ended),
                    _digest(to_jsonable(s.finding.codings)),
                )
                for s in alerts
            )
        )
        if report is not None and report.inputs_hash == as_of_hash and report.flags_hash == flags_preview:
            continue
        as_of = (
            evaluate_patient(known, overrides)
            if scan_date != assessment.followup_dates[-1] or known != facts
            else assessment
        )
        ctx = ReportContext(
            canonical=settings.fhir_canonical,
            patient=ref,
            scan_date=scan_date,
            # A withdrawn report whose timepoint is a follow-up again comes back as an amendment.
            status="preliminary" if report is None else "amended" if report.status == WITHDRAWN else report.status,
            issued=now,
            imaging_study_uids=tuple(sorted(studies.get(scan_date, ()))),
            primary_criterion=settings.primary_criterion,
            signatures=signature_lines(signatures, scan_date.isoformat()),
        )
        resources = build_report(as_of, ctx, alerts)
        content_hash = _digest(
            [_strip_volatile(resources.diagnostic_report), [_strip_volatile(o) for o in resources.observations]]
        )
        if report is None:
            report = Report(
                patient_id=patient.id,
                scan_date=scan_date,
                fhir_id=resources.diagnostic_report["id"],
                identifier=resources.diagnostic_report["identifier"][0]["value"],
                version=1,
                status="preliminary",
                content_hash=content_hash,
                flags_hash=flags_preview,
                inputs_hash=as_of_hash,
                assessment_id=record.id,
                first_input_at=arrivals.get(scan_date),
            )
            session.add(report)
        else:
            unchanged = report.content_hash == content_hash and report.flags_hash == flags_preview
            report.inputs_hash = as_of_hash
            if unchanged:
                continue
            if report.content_hash != content_hash:
                report.version += 1
                report.status = "amended"
                report.content_hash = content_hash
                ctx = dataclasses.replace(ctx, status="amended")
                resources = build_report(as_of, ctx, alerts)
            report.flags_hash = flags_preview
            report.assessment_id = record.id
        session.flush()
        save_resources(
            session,
            (resources.diagnostic_report, *resources.observations, *resources.flags),
            patient_id=patient.id,
            origin="immunorad",
        )
        if settings.ehr_fhir_url:
            queue_report(session, report, ehr_transaction_bundle(resources, ctx), now)
        issued += 1
    issued += withdraw_reports(session, settings, patient, assessment, reports, ref, now)
    issued += publish_standalone_flags(session, settings, patient, assessment, states, ref, now)
    return issued


def queue_report(session: Session, report: Report, bundle: dict[str, Any], now: dt.datetime) -> None:
    """One version of a report for the EHR: an outbox message in the evaluation's transaction."""
    session.add(
        OutboxMessage(
            patient_id=report.patient_id,
            report_id=report.id,
            report_identifier=report.identifier,
            report_version=report.version,
            bundle=bundle,
            status="pending",
            next_attempt_at=now,
        )
    )


def withdrawal_reason(assessment: PatientAssessment, scan_date: dt.date) -> str:
    """Why a timepoint that had a report is no longer a follow-up (rules.timeline: a follow-up is after both the
    baseline and C1D1)."""
    day = scan_date.isoformat()
    start, baseline = assessment.treatment_start, assessment.baseline_date
    if start is not None and scan_date <= start:
        when = "on" if scan_date == start else "before"
        return f"the scan of {day} is {when} the immunotherapy start (C1D1 {start.isoformat()}), so it is no on-treatment follow-up"
    if baseline == scan_date:
        return f"the scan of {day} is now the baseline"
    if baseline is None:
        return f"the patient has no baseline any more, so the scan of {day} is no follow-up"
    if scan_date < baseline:
        return f"the scan of {day} is before the baseline of {baseline.isoformat()}, so it is no follow-up"
    return f"nothing imaged or measured on {day} is left (its records were withdrawn)"


def withdraw_reports(
    session: Session,
    settings: Settings,
    patient: Patient,
    assessment: PatientAssessment,
    reports: Mapping[dt.date, Report],
    ref: PatientRef,
    now: dt.datetime,
) -> int:
    """Withdraw the reports of timepoints that are no longer follow-ups (contract §5: a report is for a timepoint
    after baseline; rules.timeline: and after C1D1).

    This happens when a fact that moves day 0 or the baseline arrives after a scan was reported: typically the
    immunotherapy start, posted after the images of the true baseline. The report and its own Observations become
    ``entered-in-error`` (a new version, sent to the EHR like any other), the report keeps its identifier, and a
    later evaluation that makes the timepoint a follow-up again amends it back (``publish_reports``). A sign-off of
    a withdrawn report is refused (``signoff.record``).
    """
    followups = set(assessment.followup_dates)
    withdrawn = 0
    for scan_date, report in sorted(reports.items()):
        if scan_date in followups or report.status == WITHDRAWN:
            continue
        stored = get_resource(session, "DiagnosticReport", report.fhir_id)
        if stored is None:
            raise LookupError(f"report {report.id} has no stored DiagnosticReport")
        results = []
        for reference in stored.content.get("result") or []:
            kind, _, fhir_id = str(reference.get("reference", "")).partition("/")
            row = get_resource(session, kind, fhir_id) if kind == "Observation" else None
            if row is None:
                raise LookupError(f"report {report.id} lists a result that is not stored")
            results.append(row.content)
        reason = withdrawal_reason(assessment, scan_date)
        resources = withdrawn_report(stored.content, results, issued=now, reason=reason)
        report.version += 1
        report.status = WITHDRAWN
        report.content_hash = _digest(
            [_strip_volatile(resources.diagnostic_report), [_strip_volatile(o) for o in resources.observations]]
        )
        report.inputs_hash = ""
        report.flags_hash = ""
        save_resources(session, resources.all(), patient_id=patient.id, origin="immunorad")
        audit(
            session,
            action="U",
            kind="report-withdrawn",
            source="worker",
            entity_type="DiagnosticReport",
            entity_ref=report.fhir_id,
            patient_id=patient.id,
            detail={"version": report.version, "reason": reason},
        )
        if settings.ehr_fhir_url:
            ctx = ReportContext(
                canonical=settings.fhir_canonical,
                patient=ref,
                scan_date=scan_date,
                status="amended",
                issued=now,
                imaging_study_uids=(),
                primary_criterion=settings.primary_criterion,
            )
            queue_report(session, report, ehr_transaction_bundle(resources, ctx), now)
        withdrawn += 1
    return withdrawn


def publish_standalone_flags(
    session: Session,
    settings: Settings,
    patient: Patient,
    assessment: PatientAssessment,
    states: list[AlertState],
    ref: PatientRef,
    now: dt.datetime,
) -> int:
    """Alerts dated where there is no follow-up report (an early death without a post-baseline scan): their Flags
    go out on their own, without a report link, and again only when they change."""
    orphans = [s for s in states if s.report_date not in assessment.followup_dates and s.finding.alert]
    if not orphans:
        return 0
    ctx = ReportContext(
        canonical=settings.fhir_canonical,
        patient=ref,
        scan_date=orphans[0].report_date,
        status="preliminary",
        issued=now,
        imaging_study_uids=(),
        primary_criterion=settings.primary_criterion,
    )
    flags = build_flags(assessment, ctx, orphans)
    sent = 0
    for flag in flags:
        previous = get_resource(session, "Flag", flag["id"])
        if previous is not None and _strip_volatile(previous.content) == _strip_volatile(flag):
            continue
        row = save_resource(session, flag, patient_id=patient.id, origin="immunorad")
        if settings.ehr_fhir_url:
            identifier = flag["identifier"][0]["value"]
            session.add(
                OutboxMessage(
                    patient_id=patient.id,
                    report_id=None,
                    report_identifier=f"flag:{identifier}",
                    report_version=row.version_id,
                    bundle=transaction_bundle([flag], ctx),
                    status="pending",
                    next_attempt_at=now,
                )
            )
        sent += 1
    return sent
