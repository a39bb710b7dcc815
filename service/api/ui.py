"""``/ui``: the people-facing pages (contract §7) — patient list, patient timeline, report pre-fill, quality dashboard.

Pages are rendered on the server (Jinja2, ``service/templates``) with plots as inline SVG from ``service.dashboard.plots``:
no script runs in the browser and nothing is fetched from outside, so the pages work on a closed hospital network
under a Content-Security-Policy that forbids scripts. Every value is escaped by Jinja's autoescape (plots escape
their own text). The patient's name is never stored, so it is never shown: clinical pages show our patient id and
the MRN; the dashboard shows keyed pseudonyms only.

Authentication is the app's (``service.api.app``) and ``service.api.signin``'s: a bearer token, the signed session
cookie of a sign-in (API token form or SMART App Launch), or ``?token=``, which opens a session and is dropped from
the address (history, logs, Referer).

The patient page reads the stored assessment (``Assessment.result`` = ``to_jsonable(PatientAssessment)``) of the
version asked for (latest by default), so what it shows is exactly what was stored and reported.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import html.parser
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from flask import (
    Blueprint,
    abort,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from fhir_mappings import codes
from fhir_mappings.codes import LocalSystems
from fhir_mappings.prefill import lesion_cell_text, site_display
from rules.kinetics import FERTE_MONTH_DAYS
from service.api.context import ctx
from service.api.pages import page_error, security_headers
from service.assessment import signoff
from service.dashboard import concordance, plots, quality
from service.features.signature_store import signature_rows
from service.persistence.models import Alert, Assessment, OutboxMessage, Patient, Report
from service.persistence.store import audit, pending_inputs
from service.publish import acknowledge

blueprint = Blueprint(
    "ui",
    __name__,
    url_prefix="/ui",
    template_folder="../templates",
    static_folder="../static",
    static_url_path="/static",
)

SPIDER_CRITERION = "RECIST-1.1"
"""The spider plot's reference lines are RECIST 1.1's (PR −30 % from baseline, PD +20 % from the nadir)."""
BURDEN_CRITERIA = ("iRECIST", "RECIST-1.1")
"""Whose sum of target diameters the curve draws: iRECIST's first, as it keeps counting after a RECIST 1.1 PD."""


# ---------------------------------------------------------------------------------------------------------------
# Request plumbing: token → cookie, security headers, HTML errors
# ---------------------------------------------------------------------------------------------------------------
@blueprint.before_request
def _token_to_session():
    """``?token=`` has authenticated this request (``app._authenticate``): open a session, drop it from the URL."""
    if request.args.get("token") is None or request.headers.get("Authorization"):
        return None
    from service.api.signin import session_from_token_url

    return session_from_token_url()


blueprint.after_request(security_headers)
blueprint.register_error_handler(HTTPException, page_error)


@blueprint.app_template_filter("category_words")
def _category_words(category: str | None) -> str:
    return codes.category_words(category) if category else "—"


@blueprint.app_template_filter("criterion_name")
def _criterion_name(criterion: str) -> str:
    return codes.criterion_display(criterion)


@blueprint.app_template_filter("alert_name")
def _alert_name(code: str) -> str:
    return codes.alert_display(code)


@blueprint.app_template_filter("duration")
def _duration(seconds: float | None) -> str:
    return quality.format_duration(seconds)


@blueprint.app_template_filter("when")
def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


# ---------------------------------------------------------------------------------------------------------------
# Number wording for the pages
# ---------------------------------------------------------------------------------------------------------------
def percent_text(value: Fraction | float | None) -> str:
    return "n/a" if value is None else plots.signed(float(value))


def mm_text(value: Any, unit: str = "mm") -> str:
    number = quality.as_fraction(value)
    if number is None:
        return "—"
    text = f"{float(number):g}".replace("-", plots.MINUS)
    return f"{text} {'mm²' if unit in ('mm2', 'mm²') else unit}"


def rate_text(value: float | None, unit: str) -> str:
    return "not evaluable" if value is None else plots.signed(value, 2, f" {unit}")


# ---------------------------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------------------------
@blueprint.get("/")
def index():
    return redirect(url_for("ui.patients"))


@blueprint.get("/patients")
def patients():
    """Every patient with their latest assessment at a glance (clinical page: MRN shown)."""
    with ctx().db.read() as session:
        latest = (
            select(Assessment.patient_id, func.max(Assessment.version).label("version"))
            .group_by(Assessment.patient_id)
            .subquery()
        )
        rows = session.execute(
            select(Patient, Assessment)
            .outerjoin(latest, latest.c.patient_id == Patient.id)
            .outerjoin(
                Assessment, (Assessment.patient_id == latest.c.patient_id) & (Assessment.version == latest.c.version)
            )
            .order_by(Patient.mrn, Patient.id)
        )
        active = dict(
            session.execute(
                select(Alert.patient_id, func.count()).where(Alert.status == "active").group_by(Alert.patient_id)
            ).all()
        )
        items = []
        for patient, assessment in rows:
            result = assessment.result if assessment else {}
            latest_categories = []
            for criterion in (result.get("criteria") or [])[:2]:
                tps = criterion.get("timepoints") or []
                if tps:
                    latest_categories.append(
                        (
                            criterion["criterion"],
                            tps[-1]["category"],
                            quality.response_class(tps[-1]["category"], tps[-1].get("confirmed")),
                        )
                    )
            items.append(
                {
                    "id": patient.id,
                    "mrn": patient.mrn,
                    "version": assessment.version if assessment else None,
                    "baseline": result.get("baseline_date"),
                    "followups": len(result.get("followup_dates") or []),
                    "latest": latest_categories,
                    "active_alerts": active.get(patient.id, 0),
                }
            )
    return render_template("patients.html", patients=items)


@blueprint.get("/patients/<patient_id>")
def patient_page(patient_id: str):
    """Lesion table, spider plot, sum-of-diameters curve with growth-rate slopes, criteria side by side, kinetics,
    alerts with their rule trace, reports and assessment versions with what changed."""
    wanted = request.args.get("version")
    if wanted is not None and not wanted.isdigit():
        abort(400, description="version must be a whole number")
    with ctx().db.read() as session:
        patient = _patient(session, patient_id)
        versions = list(
            session.scalars(select(Assessment).where(Assessment.patient_id == patient.id).order_by(Assessment.version))
        )
        shown = versions[-1] if versions else None
        if wanted is not None:
            shown = next((a for a in versions if a.version == int(wanted)), None)
            if shown is None:
                abort(404, description=f"no assessment version {wanted} for this patient")
        alerts = list(
            session.scalars(
                select(Alert).where(Alert.patient_id == patient.id).order_by(Alert.scan_date, Alert.code, Alert.key)
            )
        )
        reports = _report_rows(session, patient.id)
        view = PatientView.build(shown.result) if shown else None
        history = version_history(versions)
        context = dict(
            patient={"id": patient.id, "mrn": patient.mrn, "sex": patient.sex, "cancer_type": patient.cancer_type},
            assessment=shown,
            latest_version=versions[-1].version if versions else None,
            view=view,
            alerts=[_alert_row(a) for a in alerts],
            reports=reports,
            history=history,
            pending=pending_inputs(session, patient.id),
            markers=_marker_rows(shown.result if shown else {}),
            signatures=signature_rows(session, patient.id, ctx().settings.fhir_canonical),
        )
    return render_template("patient.html", **context)


def _marker_rows(result: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """The clinical and imaging prognostic biomarkers of the assessment (LIPI, dNLR, SMI, ...): name, value,
    interpretation, method — shown beside the imaging signatures (the multilevel integration, issue 20 item 8)."""
    rows = []
    for b in result.get("biomarkers") or []:
        value = "not evaluable" if b.get("value") is None else f"{b['value']}{' ' + b['unit'] if b.get('unit') else ''}"
        rows.append((str(b.get("name", "")), value, str(b.get("interpretation") or ""), str(b.get("method") or "")))
    return rows


@blueprint.get("/reports/<report_id>")
def report_page(report_id: str):
    """The pre-filled "Response assessment" of one DiagnosticReport, as stored and sent (presentedForm)."""
    from service.persistence.fhir_store import get_resource

    with ctx().db.write() as session:
        row = get_resource(session, "DiagnosticReport", report_id)
        if row is None or row.origin != "immunorad":
            abort(404, description="unknown report")
        from service.api.signin import check_patient_allowed

        check_patient_allowed(row.patient_id)
        report = session.scalars(select(Report).where(Report.fhir_id == report_id)).first()
        forms = {
            f.get("contentType", "").split(";")[0]: base64.b64decode(f.get("data", "")).decode("utf-8", "replace")
            for f in row.content.get("presentedForm", [])
        }
        audit(
            session,
            agent=g.get("agent"),
            action="R",
            kind="prefill-read",
            source="ui",
            entity_type="DiagnosticReport",
            entity_ref=report_id,
            patient_id=row.patient_id,
        )
        context = dict(
            report_id=report_id,
            patient_id=row.patient_id,
            status=row.content.get("status"),
            scan_date=(row.content.get("effectiveDateTime") or "")[:10],
            version=report.version if report else row.version_id,
            conclusion=row.content.get("conclusion"),
            fragment=Markup(sanitise_fragment(forms.get("text/html", ""))),  # noqa: S704 -- sanitise_fragment keeps an allow-list of tags and attributes
            plain=forms.get("text/plain", ""),
        )
    return render_template("report.html", **context)


@blueprint.get("/quality")
def quality_page():
    """The quality dashboard: waterfall, discordance, hyperprogression, irAE alerts, turnaround, deliveries."""
    try:
        filters = quality.Filters.from_args(request.args)
    except quality.FilterError as error:
        abort(400, description=str(error))
    with ctx().db.read() as session:
        cohort = quality.load_cohort(session, filters)
        labels = {p.patient_id: p.label for p in cohort.patients}
        follow_up = acknowledge.follow_up(session, labels, filters.start, filters.end)
        systems = LocalSystems.from_canonical(ctx().settings.fhir_canonical)
        signed = concordance.concordance(
            concordance.signed_timepoints(session, systems, labels, filters.start, filters.end)
        )
        from service.api.quality_api import cohort_end_points

        end_points = cohort_end_points(session, request.args)
    km = {
        row["criterion"]: Markup(  # noqa: S704 -- plots.km_curves escapes every text it writes
            plots.km_curves(
                row["criterion"],
                [
                    (source, [(p["months"], p["survival"]) for p in row[source]["pfs"]["curve"]])
                    for source in ("engine", "signed")
                    if source in row and row[source]["pfs"]
                ],
            )
        )
        for row in end_points
    }
    return render_template(
        "quality.html",
        follow_up=follow_up,
        concordance=signed,
        end_points=end_points,
        km=km,
        all_criteria=list(codes.RESPONSE_CRITERIA),
        concordance_method=concordance.METHOD,
        **dashboard_context(cohort, request.args),
    )


@blueprint.get("/sdtm")
def sdtm_dictionary():
    """The data dictionary of the SDTM RS and TR exports (variables, labels, core, what immunorad puts there)."""
    from service.dashboard import sdtm

    return render_template(
        "sdtm.html",
        domains=[("RS", "Disease Response", sdtm.RS_VARIABLES), ("TR", "Tumor/Lesion Results", sdtm.TR_VARIABLES)],
        tests=sdtm.RS_TESTS,
        doc=sdtm.__doc__,
    )


@blueprint.get("/quality/export.csv")
def quality_export():
    """The dashboard's rows as CSV (the same as ``GET /api/quality/export.csv``, for the page's download link)."""
    from service.api.quality_api import export_response

    return export_response(request.args, source="ui")


# ---------------------------------------------------------------------------------------------------------------
# Patient page: view model built from the stored assessment
# ---------------------------------------------------------------------------------------------------------------
def _patient(session, patient_id: str) -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None:
        patient = session.scalars(select(Patient).where(Patient.mrn == patient_id)).first()
    if patient is None:
        abort(404, description="unknown patient")
    return patient


@dataclass(frozen=True)
class Column:
    day: dt.date
    label: str
    """``Baseline`` or ``FU1``, ``FU2``…"""
    treatment_day: int | None
    """Days since the therapy start (C1D1)."""


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""
    lines: tuple[str, ...] = ()
    trace: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    name: str
    role: str
    site: str
    cells: tuple[Cell, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KineticsView:
    e0: str | None
    e1: str | None
    e2: str | None
    rows: tuple[tuple[str, str, str, str], ...]
    """(measure, before treatment, on treatment, ratio/difference)."""
    definitions: tuple[tuple[str, str, str, str], ...]
    """(code, name, status, reason)."""
    notes: tuple[str, ...]


@dataclass(frozen=True)
class PatientView:
    baseline: dt.date | None
    treatment_start: dt.date | None
    columns: tuple[Column, ...]
    lesion_rows: tuple[Row, ...]
    criteria_rows: tuple[Row, ...]
    spider_svg: Markup
    spider_series: tuple[plots.SpiderSeries, ...]
    untracked_lesions: tuple[str, ...]
    """New or non-target lesions: no baseline diameter, so no percent change."""
    burden_svg: Markup
    kinetics: KineticsView | None
    warnings: tuple[str, ...]
    rulebase_version: str | None

    @classmethod
    def build(cls, result: Mapping[str, Any]) -> PatientView:
        baseline = quality.as_date(result.get("baseline_date"))
        start = quality.as_date(result.get("treatment_start"))
        followups = [quality.as_date(d) for d in result.get("followup_dates") or []]
        days = ([baseline] if baseline else []) + [d for d in followups if d]
        columns = tuple(
            Column(d, "Baseline" if d == baseline else f"FU{i}", (d - start).days if start else None)
            for i, d in enumerate(days, start=0 if baseline else 1)
        )
        series, untracked = spider_series(result, baseline)
        if baseline is None:
            spider = plots.spider_plot((), reference_date=dt.date.today(), reference_label="baseline")
        else:
            reference, label = (
                (start, f"therapy start (C1D1 {start})") if start else (baseline, f"baseline ({baseline})")
            )
            spider = plots.spider_plot(
                series, reference_date=reference, reference_label=label, lines=reference_lines(SPIDER_CRITERION)
            )
        warnings = list(result.get("warnings") or [])
        for criterion in result.get("criteria") or []:
            name = codes.criterion_display(criterion["criterion"])
            warnings += [f"{name}: {w}" for w in criterion.get("warnings") or []]
            for tp in criterion.get("timepoints") or []:
                warnings += [f"{name} {tp['scan_date']}: {w}" for w in tp.get("warnings") or []]
        return cls(
            baseline,
            start,
            columns,
            lesion_rows(result, columns),
            criteria_rows(result, columns),
            Markup(spider),  # noqa: S704 -- SVG drawn by service.dashboard.plots, which escapes every text it writes
            tuple(series),
            tuple(untracked),
            Markup(burden_svg(result)),  # noqa: S704 -- SVG drawn by service.dashboard.plots, which escapes every text it writes
            kinetics_view(result.get("kinetics")),
            tuple(dict.fromkeys(warnings)),
            result.get("rulebase_version"),
        )


def lesion_rows(result: Mapping[str, Any], columns: Sequence[Column]) -> tuple[Row, ...]:
    rows = []
    for lesion in result.get("lesion_table") or []:
        cells = lesion.get("cells") or {}
        role = str(lesion.get("role") or "")
        if lesion.get("nodal"):
            role += " (node)"
        row_cells = []
        for column in columns:
            cell = cells.get(column.day.isoformat())
            status = (cell or {}).get("status") or "none"
            row_cells.append(Cell(lesion_cell_text(cell), css=f"lesion-{status}"))
        rows.append(
            Row(
                str(lesion.get("lesion") or "?"),
                role,
                site_display(lesion.get("organ")),
                tuple(row_cells),
                {"role": lesion.get("role"), "identity": lesion.get("identity")},
            )
        )
    return tuple(rows)


def criteria_rows(result: Mapping[str, Any], columns: Sequence[Column]) -> tuple[Row, ...]:
    """Every criterion side by side: one row per criterion, one cell per follow-up."""
    rows = []
    for criterion in result.get("criteria") or []:
        by_day = {tp["scan_date"]: tp for tp in criterion.get("timepoints") or []}
        progression = quality.as_date(criterion.get("progression_date"))
        cells = []
        for column in columns:
            if column.label == "Baseline":
                continue
            tp = by_day.get(column.day.isoformat())
            if tp is None:
                after = progression is not None and column.day > progression
                cells.append(Cell("—", "not-graded", ("after progression",) if after else ()))
                continue
            unit = tp.get("sum_unit") or "mm"
            lines = [
                f"{'SPD' if unit in ('mm2', 'mm²') else 'Sum'} {mm_text(tp.get('sum_mm'), unit)}",
                f"{percent_text(quality.as_fraction(tp.get('percent_from_baseline')))} from baseline",
                f"{percent_text(quality.as_fraction(tp.get('percent_from_nadir')))} from nadir",
            ]
            if tp.get("confirmed") is not None:
                lines.append("confirmed" if tp["confirmed"] else "unconfirmed")
            window = (tp.get("extra") or {}).get("confirmation_window")
            if isinstance(window, Mapping) and tp.get("category") in codes.UNCONFIRMED_PROGRESSION_CATEGORIES:
                lines.append(f"confirm {window.get('start')} to {window.get('end')}")
            cells.append(
                Cell(
                    tp["category"],
                    quality.response_class(tp["category"], tp.get("confirmed")),
                    tuple(lines),
                    tuple(tp.get("trace") or ()),
                )
            )
        best = criterion.get("best_response") or {}
        confirmed = criterion.get("best_response_confirmed") or {}
        rows.append(
            Row(
                criterion["criterion"],
                criterion.get("version") or "",
                "",
                tuple(cells),
                {
                    "best": best.get("category"),
                    "best_because": best.get("because"),
                    "best_class": quality.response_class(best.get("category")),
                    "confirmed": confirmed.get("category"),
                    "confirmed_because": confirmed.get("because"),
                    "progression_date": criterion.get("progression_date"),
                    "provisional": criterion.get("provisional"),
                    "source": criterion.get("source"),
                },
            )
        )
    return tuple(rows)


def recist_diameter(cell: Mapping[str, Any] | None) -> Fraction | None:
    """The lesion's RECIST diameter at one scan as the core chose it (``recist_axis_mm``: short axis for nodes,
    rules.facts.recist_axis_mm), 0 when it disappeared, else None."""
    if not cell:
        return None
    if cell.get("status") == "absent":
        return Fraction(0)
    if cell.get("status") != "present":
        return None  # too small to measure / not assessed: not plotted
    return quality.as_fraction(cell.get("recist_axis_mm"))


def spider_series(result: Mapping[str, Any], baseline: dt.date | None) -> tuple[list[plots.SpiderSeries], list[str]]:
    """Percent change of each target lesion's diameter from its baseline diameter, at every scan it was measured."""
    series: list[plots.SpiderSeries] = []
    untracked: list[str] = []
    if baseline is None:
        return series, untracked
    days = [baseline] + [d for d in (quality.as_date(x) for x in result.get("followup_dates") or []) if d]
    for lesion in result.get("lesion_table") or []:
        name = str(lesion.get("lesion") or "?")
        cells = lesion.get("cells") or {}
        start = recist_diameter(cells.get(baseline.isoformat()))
        if lesion.get("role") != "target" or not start:
            untracked.append(name)
            continue
        points = []
        for day in days:
            value = recist_diameter(cells.get(day.isoformat()))
            if value is not None:
                points.append((day, float((value - start) / start * 100)))
        series.append(plots.SpiderSeries(name, tuple(points)))
    return series, untracked


def warm(app) -> None:
    """Read the rule files and compile the page templates once, when a gunicorn worker starts and before it takes
    requests, so that no person's first page pays for them (the quality dashboard's first load stays under 1 s)."""
    _rulebase()
    for name in ("base.html", "signin.html", "patients.html", "patient.html", "report.html", "quality.html"):
        app.jinja_env.get_template(name)


@functools.cache
def _rulebase():
    """The rule files, read once per process (the plots need a few thresholds from them)."""
    from rules.engine import load_rulebase

    return load_rulebase()


@functools.cache
def reference_lines(criterion: str) -> tuple[tuple[float, str], ...]:
    """A criterion's response and progression thresholds as reference lines (RECIST 1.1: PR −30 %, PD +20 %;
    irRC: −50 %, +25 %), read from its rule file, never restated here. None for criteria without them."""
    from rules.engine import RuleFileError

    try:
        ruleset = _rulebase()[criterion]
    except KeyError:
        return ()
    lines = []
    for name, label, note in (
        ("partial_response_fraction_of_baseline", "PR", ""),
        ("progression_fraction_of_nadir", "PD", " (from nadir)"),
    ):
        try:
            value = float((ruleset.threshold(name).value - 1) * 100)
        except RuleFileError:
            continue
        lines.append((value, f"{label} {plots.signed(value, 0)}{note}"))
    return tuple(lines)


def _burden_points(criterion: Mapping[str, Any]) -> list[tuple[dt.date, float]]:
    return [
        (day, float(total))
        for tp in criterion.get("timepoints") or []
        if (total := quality.as_fraction(tp.get("sum_mm"))) is not None
        and (day := quality.as_date(tp["scan_date"])) is not None
    ]


def burden_svg(result: Mapping[str, Any]) -> str:
    """Sum of target diameters over time (iRECIST's, which continues after a RECIST 1.1 PD; else RECIST 1.1's),
    irRECIST's burden with new lesions when it differs, the therapy start, and the growth-rate slopes."""
    by_name = {c["criterion"]: c for c in result.get("criteria") or []}
    baseline = quality.as_date(result.get("baseline_date"))
    primary = next((by_name[name] for name in BURDEN_CRITERIA if name in by_name), None)
    series = []
    points: list[tuple[dt.date, float]] = []
    if primary is not None and baseline is not None:
        tps = primary.get("timepoints") or []
        first_baseline = next(
            (
                quality.as_fraction(tp.get("baseline_sum"))
                for tp in tps
                if quality.as_fraction(tp.get("baseline_sum")) is not None
            ),
            None,
        )
        points = ([(baseline, float(first_baseline))] if first_baseline is not None else []) + _burden_points(primary)
        series.append(plots.CurveSeries("Sum of diameters, target lesions", tuple(points)))
    burden = by_name.get("irRECIST")
    if burden is not None and points:
        other = _burden_points(burden)
        mine = dict(points)
        if any(mine.get(day) != value for day, value in other):
            series.append(
                plots.CurveSeries(
                    "irRECIST tumour burden (with new measurable lesions)", tuple(points[:1] + other), primary=False
                )
            )
    slopes, extra = growth_slopes(result.get("kinetics") or {}, dict(points))
    return plots.burden_curve(
        series, therapy_start=quality.as_date(result.get("treatment_start")), slopes=slopes, extra_points=extra
    )


def growth_slopes(kinetics: Mapping[str, Any], sums: Mapping[dt.date, float]) -> tuple[list[plots.Slope], list]:
    """The pre-treatment (E0→E1) and on-treatment (E1→E2) segments, labelled with their tumour growth rates.

    The rule base keeps the E0 sum in its notes only; it is recovered from TGK, which is linear in it:
    S0 = S1 − TGK_ref × months(E0→E1), months = days × 12/365.25 (Ferté), the value plotted at E0.
    """
    e0, e1, e2 = (quality.as_date(kinetics.get(k)) for k in ("e0_date", "e1_date", "e2_date"))
    slopes: list[plots.Slope] = []
    extra: list[tuple[dt.date, float, str]] = []
    if e1 is None or e1 not in sums:
        return slopes, extra
    s1 = sums[e1]
    if e0 is not None and kinetics.get("tgk_reference") is not None:
        s0 = round(s1 - kinetics["tgk_reference"] * (e1 - e0).days / FERTE_MONTH_DAYS, 1)
        extra.append((e0, s0, f"E0 {e0.isoformat()} (pre-baseline scan): sum {s0:g} mm"))
        slopes.append(
            plots.Slope(
                "pre-treatment",
                (e0, s0),
                (e1, s1),
                f"Before treatment (E0→E1): TGR {rate_text(kinetics.get('tgr_reference'), '%/month')}",
            )
        )
    if e2 is not None and e2 in sums:
        slopes.append(
            plots.Slope(
                "on-treatment",
                (e1, s1),
                (e2, sums[e2]),
                f"On treatment (E1→E2): TGR {rate_text(kinetics.get('tgr_experimental'), '%/month')}",
            )
        )
    return slopes, extra


def kinetics_view(kinetics: Mapping[str, Any] | None) -> KineticsView | None:
    if not kinetics:
        return None

    def plain(value: float | None) -> str:
        return "not evaluable" if value is None else f"{value:.2f}"

    rows = (
        (
            "Tumour growth rate (TGR)",
            rate_text(kinetics.get("tgr_reference"), "%/month"),
            rate_text(kinetics.get("tgr_experimental"), "%/month"),
            f"ratio {plain(kinetics.get('tgr_ratio'))}; difference {rate_text(kinetics.get('tgr_difference'), '%/month')}",
        ),
        (
            "Tumour growth kinetics (TGK)",
            rate_text(kinetics.get("tgk_reference"), "mm/month"),
            rate_text(kinetics.get("tgk_experimental"), "mm/month"),
            f"ratio {plain(kinetics.get('tgk_ratio'))}",
        ),
    )
    definitions = tuple(
        (
            d["code"],
            codes.definition_display(d["code"]),
            d["status"],
            d.get("reason", "") + (" (borderline)" if d.get("borderline") else ""),
        )
        for d in kinetics.get("definitions") or []
    )
    notes = tuple(kinetics.get("notes") or ()) + tuple(f"flag {f}" for f in kinetics.get("flags") or ())
    return KineticsView(
        kinetics.get("e0_date"), kinetics.get("e1_date"), kinetics.get("e2_date"), rows, definitions, notes
    )


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "code": alert.code,
        "key": alert.key,
        "status": alert.status,
        "severity": alert.severity,
        "indicator": codes.alert_indicator(alert.code, alert.severity),
        "scan_date": alert.scan_date,
        "first_raised": alert.first_raised,
        "summary": alert.summary,
        "detail": [line for line in (alert.detail or "").splitlines() if line.strip()],
        "rule": alert.rule,
        "source": alert.source,
        "identifier": alert.identifier,
        "window_end": (alert.finding or {}).get("window_end"),
    }


def _report_rows(session, patient_id: str) -> list[dict[str, Any]]:
    reports = list(session.scalars(select(Report).where(Report.patient_id == patient_id).order_by(Report.scan_date)))
    latest_delivery: dict[int, OutboxMessage] = {}
    for message in session.scalars(
        select(OutboxMessage).where(OutboxMessage.patient_id == patient_id).order_by(OutboxMessage.id)
    ):
        if message.report_id is not None:
            latest_delivery[message.report_id] = message
    rows = []
    for r in reports:
        message = latest_delivery.get(r.id)
        rows.append(
            {
                "fhir_id": r.fhir_id,
                "sign_offs": [
                    signoff.as_json(row, current=True)
                    for row in sorted(signoff.current_for_report(session, r.id).values(), key=lambda row: row.criterion)
                ],
                "scan_date": r.scan_date,
                "version": r.version,
                "status": r.status,
                "delivery": None
                if message is None
                else {
                    "status": message.status,
                    "attempts": message.attempts,
                    "version": message.report_version,
                    "delivered_at": message.delivered_at,
                    "last_error": message.last_error,
                },
            }
        )
    return rows


@dataclass(frozen=True)
class VersionRow:
    version: int
    created_at: dt.datetime | None
    trigger: str
    rulebase_version: str
    inputs_hash: str
    inputs_changed: bool | None
    rulebase_changed: bool | None
    changes: tuple[str, ...]


def version_history(versions: Sequence[Assessment]) -> list[VersionRow]:
    """Each stored version with what changed from the one before (categories, alerts, inputs, rule base)."""
    rows = []
    previous: Assessment | None = None
    for a in versions:
        rows.append(
            VersionRow(
                a.version,
                a.created_at,
                a.trigger,
                a.rulebase_version,
                a.inputs_hash,
                None if previous is None else previous.inputs_hash != a.inputs_hash,
                None if previous is None else previous.rulebase_version != a.rulebase_version,
                tuple(change_text(c) for c in a.changes or []),
            )
        )
        previous = a
    return list(reversed(rows))


def change_text(change: Mapping[str, Any]) -> str:
    """``{"what": "RECIST-1.1", "when": "2024-03-11", "before": None, "after": "PR"}`` → ``RECIST 1.1, 2024-03-11:
    — → PR``."""
    what = str(change.get("what") or "")
    name = "rule base" if what == "rule-base" else ("alert" if what == "alert" else codes.criterion_display(what))
    when = change.get("when")
    when_text = {"best-overall-response": "best overall response"}.get(str(when), when)
    before, after = change.get("before") or "—", change.get("after") or "—"
    return f"{name}{', ' + str(when_text) if when_text else ''}: {before} → {after}"


# ---------------------------------------------------------------------------------------------------------------
# Quality dashboard
# ---------------------------------------------------------------------------------------------------------------
def dashboard_context(cohort: quality.Cohort, args: Mapping[str, str]) -> dict[str, Any]:
    names = quality.criteria_names(cohort)
    panels = []
    for criterion, entries in quality.waterfall(cohort).items():
        bars = [
            plots.WaterfallBar(
                e.label,
                float(e.percent),
                e.category,
                quality.response_class(e.category, e.confirmed),
                url_for("ui.patient_page", patient_id=e.patient_id),
            )
            for e in entries
        ]
        panels.append(
            {
                "criterion": criterion,
                "svg": Markup(  # noqa: S704 -- SVG drawn by service.dashboard.plots, which escapes every text it writes
                    plots.waterfall(
                        bars,
                        criterion=criterion,
                        criterion_name=codes.criterion_display(criterion),
                        lines=reference_lines(criterion),
                    )
                ),
                "entries": entries,
            }
        )
    pair_a = args.get("a") if args.get("a") in names else (SPIDER_CRITERION if SPIDER_CRITERION in names else None)
    pair_b = args.get("b") if args.get("b") in names else ("iRECIST" if "iRECIST" in names else None)
    crosstab = quality.category_crosstab(cohort, pair_a, pair_b) if pair_a and pair_b and pair_a != pair_b else None
    incidence = quality.hyperprogression_incidence(cohort)
    # The chart names each definition by author and year; the table below it gives the full definition.
    incidence_svg = plots.incidence_bars(
        [
            plots.IncidenceRow(i.code, short_definition_name(i.label), len(i.met), i.evaluable, i.not_evaluable)
            for i in incidence
        ]
    )
    filters = cohort.filters
    return dict(
        cohort=cohort,
        filters=filters,
        filter_args=filters.as_args(),
        criteria=names,
        panels=panels,
        discordance=quality.discordance(cohort),
        crosstab=crosstab,
        pair=(pair_a, pair_b),
        incidence=incidence,
        incidence_svg=Markup(incidence_svg),  # noqa: S704 -- SVG drawn by service.dashboard.plots, which escapes every text it writes
        irae=quality.irae_alerts(cohort),
        turnaround=quality.turnaround(cohort),
        failures=quality.delivery_failures(cohort),
        response_class=quality.response_class,
        error_summary=quality.error_summary,
        export_url=url_for("ui.quality_export", **filters.as_args()),
    )


def short_definition_name(label: str) -> str:
    """``Kato 2017 (TTF < 2 months, …)`` → ``Kato 2017``; ``Early death (Ferrara 2020)`` stays whole."""
    head = label.split(" (")[0]
    return head if any(ch.isdigit() for ch in head) else label


# ---------------------------------------------------------------------------------------------------------------
# Stored HTML, re-escaped
# ---------------------------------------------------------------------------------------------------------------
_ALLOWED_TAGS = frozenset(
    {"section", "h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "details", "summary"}
)


class _Sanitiser(html.parser.HTMLParser):
    """Rebuilds a pre-fill fragment from its text and the few tags ``render_prefill`` writes, attribute-free
    (``scope`` kept on table headers). Anything else is dropped, its text kept escaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _ALLOWED_TAGS:
            scope = dict(attrs).get("scope") if tag == "th" else None
            self.out.append(f'<{tag} scope="{html.escape(scope)}">' if scope in ("row", "col") else f"<{tag}>")
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _ALLOWED_TAGS and tag in self.open:
            while self.open:
                last = self.open.pop()
                self.out.append(f"</{last}>")
                if last == tag:
                    break

    def handle_data(self, data: str) -> None:
        self.out.append(html.escape(data))


def sanitise_fragment(fragment: str) -> str:
    parser = _Sanitiser()
    parser.feed(fragment)
    parser.close()
    return "".join(parser.out) + "".join(f"</{t}>" for t in reversed(parser.open))
