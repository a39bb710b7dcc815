"""Quality dashboard (contract §7): what the cohort's stored assessments, reports and deliveries add up to.

``load_cohort`` is the only function that touches the database: it reads the latest assessment version of each
patient (``Assessment.result`` = ``rules.evaluate.to_jsonable(PatientAssessment)``), the reports, the outbox and
the alerts, restricted by ``Filters``. Everything else is a pure function of the resulting ``Cohort``:

- ``waterfall``: best (lowest) percent change from baseline per patient and criterion;
- ``discordance`` / ``category_crosstab``: where criteria disagree about progression (RECIST 1.1 PD while
  iRECIST never confirms it is the pseudoprogression pattern);
- ``hyperprogression_incidence``: met / evaluable per definition of ``clinical/criteria-kinetics-irae.md`` §3.1;
- ``irae_alerts``, ``turnaround`` (first input received → report delivered), ``delivery_failures``;
- ``export_rows`` / ``export_csv``: RFC 4180, pseudonymised by default.

The period filter applies to scan dates (the imaging timepoint a number belongs to), for every measure.
No clinical rule is re-decided here: categories, sums and progression dates are the rule base's.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from fhir_mappings import codes

NOT_RECORDED = "(not recorded)"
"""The cancer-type filter value for patients whose cancer type is unknown."""

IRAE_ALERT_CODES = frozenset({"irae", "sarcoid-like-reaction"})
NOT_GRADED = "—"
"""A criterion with no response at a timepoint (it ends at progression, or is not applicable)."""


class FilterError(ValueError):
    """A dashboard filter that cannot be understood (answered with HTTP 400)."""


# ---------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    start: dt.date | None = None
    """First scan date included (``from``)."""
    end: dt.date | None = None
    """Last scan date included (``to``)."""
    cancer_type: str | None = None
    """Exact cancer type, ``NOT_RECORDED``, or ``None`` for all."""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Filters:
        """From query parameters ``from``, ``to`` (ISO dates) and ``cancer_type``."""

        def day(name: str) -> dt.date | None:
            text = (args.get(name) or "").strip()
            if not text:
                return None
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                raise FilterError(f"{name} must be a date written YYYY-MM-DD, not {text[:40]!r}") from None

        start, end = day("from"), day("to")
        if start and end and start > end:
            raise FilterError(f"from ({start}) is after to ({end})")
        cancer = (args.get("cancer_type") or "").strip() or None
        return cls(start, end, cancer)

    def contains(self, day: dt.date | None) -> bool:
        if day is None:
            return self.start is None and self.end is None
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)

    def as_args(self) -> dict[str, Any]:
        out = {}
        if self.start:
            out["from"] = self.start.isoformat()
        if self.end:
            out["to"] = self.end.isoformat()
        if self.cancer_type:
            out["cancer_type"] = self.cancer_type
        return out


@dataclass(frozen=True)
class PatientRecord:
    patient_id: str
    label: str
    """Pseudonym for non-clinical pages and exports."""
    mrn: str | None
    cancer_type: str | None
    version: int
    result: Mapping[str, Any]
    """The stored assessment (JSON of ``PatientAssessment``)."""


@dataclass(frozen=True)
class ReportRecord:
    patient_id: str
    label: str
    scan_date: dt.date
    identifier: str
    version: int
    status: str
    first_input_at: dt.datetime | None
    first_delivered_at: dt.datetime | None


@dataclass(frozen=True)
class DeliveryRecord:
    patient_id: str
    label: str
    scan_date: dt.date | None
    report_version: int
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: dt.datetime | None
    delivered_at: dt.datetime | None
    next_attempt_at: dt.datetime | None


@dataclass(frozen=True)
class AlertRecord:
    patient_id: str
    label: str
    code: str
    key: str
    status: str
    severity: str
    scan_date: dt.date
    summary: str


@dataclass(frozen=True)
class Cohort:
    filters: Filters
    patients: tuple[PatientRecord, ...]
    reports: tuple[ReportRecord, ...] = ()
    deliveries: tuple[DeliveryRecord, ...] = ()
    alerts: tuple[AlertRecord, ...] = ()
    cancer_types: tuple[str, ...] = ()
    """Every cancer type on record (for the filter's choices), ``NOT_RECORDED`` included when some are unknown."""


# ---------------------------------------------------------------------------------------------------------------
# Reading stored results
# ---------------------------------------------------------------------------------------------------------------
def as_date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def as_fraction(value: Any) -> Fraction | None:
    """Stored numbers are exact strings (``"-320/9"``, ``"63"``, ``"0.5"``)."""
    if value is None or value == "":
        return None
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return None


def response_class(category: str | None, confirmed: bool | None = None) -> str:
    """How a category reads at a glance: ``response`` | ``stable`` | ``progression`` | ``unconfirmed`` |
    ``not-evaluable`` (from the mCODE disease-status mapping of contract §5, so every criterion agrees)."""
    if not category or category == NOT_GRADED:
        return "not-evaluable"
    status = codes.DISEASE_STATUS_BY_CATEGORY.get(category)
    if category in codes.UNCONFIRMED_PROGRESSION_CATEGORIES:
        return "unconfirmed"
    if status is codes.SCT_WORSENED:
        return "unconfirmed" if confirmed is False else "progression"
    if status is codes.SCT_IMPROVED:
        return "response"
    if status is codes.SCT_STABLE:
        return "stable"
    return "not-evaluable"


def timepoints_in(criterion: Mapping[str, Any], filters: Filters) -> list[Mapping[str, Any]]:
    return [tp for tp in criterion.get("timepoints") or [] if filters.contains(as_date(tp.get("scan_date")))]


def criteria_names(cohort: Cohort) -> list[str]:
    """Criteria in the order the rule base reports them (first patient that has each)."""
    names: list[str] = []
    for patient in cohort.patients:
        for criterion in patient.result.get("criteria") or []:
            if criterion["criterion"] not in names:
                names.append(criterion["criterion"])
    return names


def progression_status(timepoints: Sequence[Mapping[str, Any]]) -> str:
    """``progressed`` (a progression the criterion counts as such: PD, iCPD, confirmed irPD…), ``unconfirmed``
    (the last timepoint is a progression still awaiting confirmation: iUPD, unconfirmed irPD) or
    ``not-progressed``."""
    if any(response_class(tp.get("category"), tp.get("confirmed")) == "progression" for tp in timepoints):
        return "progressed"
    if timepoints and response_class(timepoints[-1].get("category"), timepoints[-1].get("confirmed")) == "unconfirmed":
        return "unconfirmed"
    return "not-progressed"


# ---------------------------------------------------------------------------------------------------------------
# Waterfall
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BestChange:
    patient_id: str
    label: str
    criterion: str
    percent: Fraction
    """Lowest percent change from baseline among the timepoints in the period."""
    scan_date: dt.date
    category: str
    """The criterion's category at that scan (the bar's colour)."""
    confirmed: bool | None
    best_response: str | None
    """The stored best overall response (whole course, unconfirmed)."""


def best_change(patient: PatientRecord, criterion: Mapping[str, Any], filters: Filters) -> BestChange | None:
    best: tuple[Fraction, dt.date, Mapping[str, Any]] | None = None
    for tp in timepoints_in(criterion, filters):
        value = as_fraction(tp.get("percent_from_baseline"))
        day = as_date(tp.get("scan_date"))
        if value is None or day is None:
            continue
        if best is None or value < best[0]:
            best = (value, day, tp)
    if best is None:
        return None
    value, day, tp = best
    return BestChange(
        patient.patient_id,
        patient.label,
        criterion["criterion"],
        value,
        day,
        tp.get("category") or "",
        tp.get("confirmed"),
        (criterion.get("best_response") or {}).get("category"),
    )


def waterfall(cohort: Cohort) -> dict[str, list[BestChange]]:
    """Per criterion, one entry per patient with a percent change in the period."""
    out: dict[str, list[BestChange]] = {name: [] for name in criteria_names(cohort)}
    for patient in cohort.patients:
        for criterion in patient.result.get("criteria") or []:
            entry = best_change(patient, criterion, cohort.filters)
            if entry is not None:
                out[criterion["criterion"]].append(entry)
    for entries in out.values():
        entries.sort(key=lambda e: (-e.percent, e.label))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Discordance between criteria
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiscordanceCell:
    progressed_by: str
    not_by: str
    discordant: tuple[tuple[str, str], ...] = ()
    """(patient id, label): progression by ``progressed_by``, none by ``not_by``."""
    pending: tuple[tuple[str, str], ...] = ()
    """(patient id, label): progression by ``progressed_by``, ``not_by`` still awaiting confirmation."""


@dataclass(frozen=True)
class Discordance:
    criteria: tuple[str, ...]
    cells: Mapping[tuple[str, str], DiscordanceCell]
    status: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """patient id → criterion → progression status."""

    def cell(self, progressed_by: str, not_by: str) -> DiscordanceCell:
        return self.cells[(progressed_by, not_by)]


def discordance(cohort: Cohort) -> Discordance:
    """For each ordered pair of criteria (A, B): patients A calls progression and B does not (e.g. RECIST 1.1 PD,
    iRECIST never iCPD: pseudoprogression), and those where B's progression is still unconfirmed."""
    names = criteria_names(cohort)
    status: dict[str, dict[str, str]] = {}
    for patient in cohort.patients:
        status[patient.patient_id] = {
            c["criterion"]: progression_status(timepoints_in(c, cohort.filters))
            for c in patient.result.get("criteria") or []
        }
    labels = {p.patient_id: p.label for p in cohort.patients}
    cells = {}
    for a in names:
        for b in names:
            if a == b:
                continue
            discordant, pending = [], []
            for patient_id, by_criterion in status.items():
                if by_criterion.get(a) != "progressed" or b not in by_criterion:
                    continue
                if by_criterion[b] == "not-progressed":
                    discordant.append((patient_id, labels[patient_id]))
                elif by_criterion[b] == "unconfirmed":
                    pending.append((patient_id, labels[patient_id]))
            cells[(a, b)] = DiscordanceCell(
                a, b, tuple(sorted(discordant, key=lambda p: p[1])), tuple(sorted(pending, key=lambda p: p[1]))
            )
    return Discordance(tuple(names), cells, status)


@dataclass(frozen=True)
class CrossTab:
    a: str
    b: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    counts: Mapping[tuple[str, str], int]

    def count(self, row: str, column: str) -> int:
        return self.counts.get((row, column), 0)


def category_crosstab(cohort: Cohort, a: str, b: str) -> CrossTab:
    """Timepoint by timepoint: criterion ``a``'s category against ``b``'s (``—`` where one is not graded)."""
    counts: Counter = Counter()
    for patient in cohort.patients:
        by_name = {c["criterion"]: c for c in patient.result.get("criteria") or []}
        if a not in by_name or b not in by_name:
            continue
        left = {tp["scan_date"]: tp for tp in timepoints_in(by_name[a], cohort.filters)}
        right = {tp["scan_date"]: tp for tp in timepoints_in(by_name[b], cohort.filters)}
        for day in sorted(set(left) | set(right)):
            counts[(_category_label(left.get(day)), _category_label(right.get(day)))] += 1
    rows = tuple(sorted({r for r, _ in counts}, key=_category_order))
    columns = tuple(sorted({c for _, c in counts}, key=_category_order))
    return CrossTab(a, b, rows, columns, dict(counts))


def _category_label(tp: Mapping[str, Any] | None) -> str:
    if tp is None:
        return NOT_GRADED
    category = tp.get("category") or NOT_GRADED
    if tp.get("confirmed") is False and category not in codes.UNCONFIRMED_PROGRESSION_CATEGORIES:
        return f"{category} (unconfirmed)"
    return category


_CLASS_ORDER = {"response": 0, "stable": 1, "unconfirmed": 2, "progression": 3, "not-evaluable": 4}


def _category_order(label: str) -> tuple[int, str]:
    category = label.replace(" (unconfirmed)", "")
    klass = response_class(category, False if label.endswith("(unconfirmed)") else None)
    return (_CLASS_ORDER[klass] + (1 if label == NOT_GRADED else 0), label)


# ---------------------------------------------------------------------------------------------------------------
# Hyperprogression, irAE
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Incidence:
    code: str
    label: str
    met: tuple[tuple[str, str], ...]
    not_met: int
    not_evaluable: int

    @property
    def evaluable(self) -> int:
        return len(self.met) + self.not_met

    @property
    def proportion(self) -> float | None:
        return len(self.met) / self.evaluable if self.evaluable else None


def hyperprogression_incidence(cohort: Cohort) -> list[Incidence]:
    """Per definition: patients meeting it, not meeting it, and not evaluable (first on-treatment scan E2 in the
    period). Definitions are listed in the order the rule base reports them (contract §5)."""
    met: dict[str, list[tuple[str, str]]] = {}
    not_met: Counter = Counter()
    not_evaluable: Counter = Counter()
    order: list[str] = []
    for patient in cohort.patients:
        kinetics = patient.result.get("kinetics") or {}
        anchor = as_date(kinetics.get("e2_date")) or as_date(kinetics.get("e1_date"))
        if not kinetics or not cohort.filters.contains(anchor):
            continue
        for definition in kinetics.get("definitions") or []:
            code = definition["code"]
            if code not in order:
                order.append(code)
                met[code] = []
            if definition["status"] == "met":
                met[code].append((patient.patient_id, patient.label))
            elif definition["status"] == "not-met":
                not_met[code] += 1
            else:
                not_evaluable[code] += 1
    return [
        Incidence(
            code,
            codes.definition_display(code),
            tuple(sorted(met[code], key=lambda p: p[1])),
            not_met[code],
            not_evaluable[code],
        )
        for code in order
    ]


def irae_alerts(cohort: Cohort) -> list[AlertRecord]:
    """irAE and sarcoid-like reaction alerts raised at scans in the period (any status but entered-in-error)."""
    return sorted(
        (a for a in cohort.alerts if a.code in IRAE_ALERT_CODES and a.status != "entered-in-error"),
        key=lambda a: (a.scan_date, a.label, a.key),
    )


# ---------------------------------------------------------------------------------------------------------------
# Turnaround and deliveries
# ---------------------------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) by linear interpolation between closest ranks (Hyndman–Fan type 7, the
    default of R and NumPy); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Turnaround:
    seconds: tuple[float, ...]
    """Study received → report first delivered, one value per delivered report."""
    undelivered: int
    """Reports in the period not delivered (yet)."""
    no_input_time: int

    @property
    def count(self) -> int:
        return len(self.seconds)

    def percentile(self, q: float) -> float | None:
        return percentile(self.seconds, q)

    @property
    def maximum(self) -> float | None:
        return max(self.seconds) if self.seconds else None


def turnaround(cohort: Cohort) -> Turnaround:
    values, undelivered, unknown = [], 0, 0
    for report in cohort.reports:
        if report.first_delivered_at is None:
            undelivered += 1
        elif report.first_input_at is None:
            unknown += 1
        else:
            values.append(max(0.0, (report.first_delivered_at - report.first_input_at).total_seconds()))
    return Turnaround(tuple(values), undelivered, unknown)


def format_duration(seconds: float | None) -> str:
    """``42 s``, ``3.5 min``, ``2.0 h``, ``1.5 d``; ``—`` for none."""
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


@dataclass(frozen=True)
class DeliveryFailures:
    failing: tuple[DeliveryRecord, ...]
    """Not delivered, last attempt failed (retried with backoff)."""
    recovered: tuple[DeliveryRecord, ...]
    """Delivered, but only after at least one failed attempt."""
    failed_attempts: int
    delivered: int
    total: int


def error_summary(error: str | None) -> str:
    """What went wrong, without what the EHR echoed back: ``EHR answered 400: {…body…}`` → ``EHR answered 400``.

    An EHR's error body may quote the patient (identifier, even name), so pseudonymous pages and exports show
    the summary only; the whole message stays on the clinical patient page and in ``/api/deliveries``.
    """
    if not error:
        return ""
    return error.split(":", 1)[0].strip()[:120]


def delivery_failures(cohort: Cohort) -> DeliveryFailures:
    failing = tuple(d for d in cohort.deliveries if d.status != "delivered" and (d.last_error or d.attempts > 0))
    recovered = tuple(d for d in cohort.deliveries if d.status == "delivered" and d.attempts > 1)
    attempts = sum(d.attempts for d in failing) + sum(d.attempts - 1 for d in recovered)
    delivered = sum(1 for d in cohort.deliveries if d.status == "delivered")
    return DeliveryFailures(failing, recovered, attempts, delivered, len(cohort.deliveries))


# ---------------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------------
EXPORT_COLUMNS = [
    "patient",
    "cancer_type",
    "criterion",
    "baseline_date",
    "treatment_start",
    "followups_in_period",
    "categories",
    "best_percent_change",
    "best_percent_change_date",
    "best_response",
    "best_response_date",
    "best_response_because",
    "best_response_confirmed",
    "progression_status",
    "progression_date",
    "hyperprogression_met",
    "alerts",
    "assessment_version",
]
"""One row per patient and criterion. ``patient`` is the pseudonym; unpseudonymised exports add ``patient_id``
and ``mrn`` at the end. No name is ever stored, so none can be exported."""
IDENTIFYING_COLUMNS = ["patient_id", "mrn"]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(value: str | None) -> str:
    """Free text as a spreadsheet will not execute it (OWASP CSV injection): a leading ``=+-@`` gets a ``'``."""
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _percent_text(value: Fraction | None) -> str:
    if value is None:
        return ""
    rounded = round(value, 2)
    return f"{float(rounded):.2f}"


def export_rows(cohort: Cohort, *, pseudonymise: bool = True) -> list[dict[str, str]]:
    rows = []
    alerts_by_patient: dict[str, list[str]] = {}
    for alert in cohort.alerts:
        if alert.status != "entered-in-error":
            alerts_by_patient.setdefault(alert.patient_id, []).append(f"{alert.code}@{alert.scan_date.isoformat()}")
    for patient in sorted(cohort.patients, key=lambda p: p.label):
        result = patient.result
        kinetics = result.get("kinetics") or {}
        met = [d["code"] for d in kinetics.get("definitions") or [] if d.get("status") == "met"]
        for criterion in result.get("criteria") or []:
            tps = timepoints_in(criterion, cohort.filters)
            best = best_change(patient, criterion, cohort.filters)
            bor = criterion.get("best_response") or {}
            confirmed = criterion.get("best_response_confirmed") or {}
            row = {
                "patient": patient.label,
                "cancer_type": _text_cell(patient.cancer_type),
                "criterion": criterion["criterion"],
                "baseline_date": result.get("baseline_date") or "",
                "treatment_start": result.get("treatment_start") or "",
                "followups_in_period": str(len(tps)),
                "categories": "; ".join(f"{tp['scan_date']} {_category_label(tp)}" for tp in tps),
                "best_percent_change": _percent_text(best.percent if best else None),
                "best_percent_change_date": best.scan_date.isoformat() if best else "",
                "best_response": bor.get("category") or "",
                "best_response_date": bor.get("scan_date") or "",
                "best_response_because": bor.get("because") or "",
                "best_response_confirmed": confirmed.get("category") or "",
                "progression_status": progression_status(tps),
                "progression_date": criterion.get("progression_date") or "",
                "hyperprogression_met": "; ".join(met),
                "alerts": "; ".join(sorted(alerts_by_patient.get(patient.patient_id, []))),
                "assessment_version": str(patient.version),
            }
            if not pseudonymise:
                row["patient_id"] = patient.patient_id
                row["mrn"] = patient.mrn or ""
            rows.append(row)
    return rows


def export_csv(rows: Iterable[Mapping[str, str]], *, pseudonymise: bool = True) -> str:
    """RFC 4180: a header line, CRLF line ends, fields with a comma, quote or line break quoted, quotes doubled."""
    buffer = io.StringIO()
    columns = EXPORT_COLUMNS + ([] if pseudonymise else IDENTIFYING_COLUMNS)
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# JSON summary (``GET /api/quality``)
# ---------------------------------------------------------------------------------------------------------------
def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def summary(cohort: Cohort) -> dict[str, Any]:
    """Everything the dashboard shows, pseudonymised (patients by their pseudonym only)."""
    ta = turnaround(cohort)
    failures = delivery_failures(cohort)
    disc = discordance(cohort)
    return {
        "filters": {
            "from": _iso(cohort.filters.start),
            "to": _iso(cohort.filters.end),
            "cancer_type": cohort.filters.cancer_type,
        },
        "patients": len(cohort.patients),
        "waterfall": {
            name: [
                {
                    "patient": e.label,
                    "best_percent_change": float(round(e.percent, 2)),
                    "scan_date": e.scan_date.isoformat(),
                    "category": e.category,
                    "best_response": e.best_response,
                }
                for e in entries
            ]
            for name, entries in waterfall(cohort).items()
        },
        "discordance": [
            {
                "progressed_by": cell.progressed_by,
                "not_by": cell.not_by,
                "patients": [label for _, label in cell.discordant],
                "pending_confirmation": [label for _, label in cell.pending],
            }
            for cell in disc.cells.values()
            if cell.discordant or cell.pending
        ],
        "hyperprogression": [
            {
                "definition": i.code,
                "met": len(i.met),
                "not_met": i.not_met,
                "not_evaluable": i.not_evaluable,
                "incidence": None if i.proportion is None else round(i.proportion, 4),
            }
            for i in hyperprogression_incidence(cohort)
        ],
        "irae_alerts": [
            {
                "patient": a.label,
                "code": a.code,
                "pattern": a.key,
                "status": a.status,
                "scan_date": a.scan_date.isoformat(),
                "summary": a.summary,
            }
            for a in irae_alerts(cohort)
        ],
        "turnaround_seconds": {
            "count": ta.count,
            "p50": ta.percentile(50),
            "p90": ta.percentile(90),
            "p95": ta.percentile(95),
            "max": ta.maximum,
            "undelivered": ta.undelivered,
        },
        "deliveries": {
            "total": failures.total,
            "delivered": failures.delivered,
            "failed_attempts": failures.failed_attempts,
            "failing": [_delivery_json(d) for d in failures.failing],
            "recovered": [_delivery_json(d) for d in failures.recovered],
        },
    }


def _delivery_json(d: DeliveryRecord) -> dict[str, Any]:
    return {
        "patient": d.label,
        "scan_date": _iso(d.scan_date),
        "report_version": d.report_version,
        "status": d.status,
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": error_summary(d.last_error),
        "next_attempt_at": _iso(d.next_attempt_at),
        "delivered_at": _iso(d.delivered_at),
    }


# ---------------------------------------------------------------------------------------------------------------
# The database part
# ---------------------------------------------------------------------------------------------------------------
def load_cohort(session, filters: Filters, *, label: Callable[[str], str] | None = None) -> Cohort:
    """The latest assessment of every patient matching ``filters``, with their reports, deliveries and alerts
    at scans in the period. ``label`` names a patient on pseudonymous pages (default: the keyed pseudonym)."""
    from sqlalchemy import func, select

    from service.ops.logs import pseudonym
    from service.persistence.models import Alert, Assessment, OutboxMessage, Patient, Report

    label = label or (lambda patient_id: pseudonym(patient_id) or "")
    cancer_types = sorted({t or NOT_RECORDED for t in session.scalars(select(Patient.cancer_type).distinct())})
    latest = (
        select(Assessment.patient_id, func.max(Assessment.version).label("version"))
        .group_by(Assessment.patient_id)
        .subquery()
    )
    query = (
        select(Patient, Assessment)
        .join(latest, latest.c.patient_id == Patient.id)
        .join(Assessment, (Assessment.patient_id == latest.c.patient_id) & (Assessment.version == latest.c.version))
        .order_by(Patient.created_at, Patient.id)
    )
    if filters.cancer_type == NOT_RECORDED:
        query = query.where(Patient.cancer_type.is_(None))
    elif filters.cancer_type:
        query = query.where(Patient.cancer_type == filters.cancer_type)
    patients = []
    for patient, assessment in session.execute(query):
        followups = [as_date(d) for d in assessment.result.get("followup_dates") or []]
        if (filters.start or filters.end) and not any(filters.contains(d) for d in followups):
            continue
        patients.append(
            PatientRecord(
                patient.id, label(patient.id), patient.mrn, patient.cancer_type, assessment.version, assessment.result
            )
        )
    ids = [p.patient_id for p in patients]
    labels = {p.patient_id: p.label for p in patients}
    if not ids:
        return Cohort(filters, (), cancer_types=tuple(cancer_types))

    def in_period(column):
        clauses = []
        if filters.start:
            clauses.append(column >= filters.start)
        if filters.end:
            clauses.append(column <= filters.end)
        return clauses

    first_delivery = (
        select(OutboxMessage.report_id, func.min(OutboxMessage.delivered_at).label("delivered_at"))
        .where(OutboxMessage.status == "delivered")
        .group_by(OutboxMessage.report_id)
        .subquery()
    )
    reports = tuple(
        ReportRecord(
            r.patient_id,
            labels[r.patient_id],
            r.scan_date,
            r.identifier,
            r.version,
            r.status,
            r.first_input_at,
            delivered,
        )
        for r, delivered in session.execute(
            select(Report, first_delivery.c.delivered_at)
            .outerjoin(first_delivery, first_delivery.c.report_id == Report.id)
            .where(Report.patient_id.in_(ids), *in_period(Report.scan_date))
            .order_by(Report.scan_date, Report.id)
        )
    )
    deliveries = tuple(
        DeliveryRecord(
            m.patient_id,
            labels[m.patient_id],
            scan_date,
            m.report_version,
            m.status,
            m.attempts,
            m.last_status_code,
            m.last_error,
            m.created_at,
            m.delivered_at,
            m.next_attempt_at,
        )
        for m, scan_date in session.execute(
            select(OutboxMessage, Report.scan_date)
            .outerjoin(Report, Report.id == OutboxMessage.report_id)
            .where(OutboxMessage.patient_id.in_(ids), *in_period(Report.scan_date))
            .order_by(OutboxMessage.id)
        )
    )
    alerts = tuple(
        AlertRecord(a.patient_id, labels[a.patient_id], a.code, a.key, a.status, a.severity, a.scan_date, a.summary)
        for a in session.scalars(
            select(Alert)
            .where(Alert.patient_id.in_(ids), *in_period(Alert.scan_date))
            .order_by(Alert.scan_date, Alert.id)
        )
    )
    return Cohort(filters, tuple(patients), reports, deliveries, alerts, tuple(cancer_types))
