"""``/api/quality``: the quality dashboard as JSON, and its rows as CSV (RFC 4180, pseudonymised by default).

Filters (query parameters, as on ``/ui/quality``): ``from`` and ``to`` (ISO dates, applied to scan dates) and
``cancer_type`` (exact, or ``(not recorded)``). ``pseudonymise=false`` adds our patient id and the MRN to the CSV;
no name is stored, so none can be exported. Every export is audited.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Response, abort, g, jsonify, request

from service.api import params
from service.api.context import ctx
from service.dashboard import quality
from service.persistence.store import audit

blueprint = Blueprint("quality_api", __name__, url_prefix="/api")
FILTER_PARAMS = {"from": params.text(40), "to": params.text(40), "cancer_type": params.text(100)}
"""What the filters take (their meaning is checked by ``quality.Filters.from_args``); unknown names are a 400."""


def _filters(args: Mapping[str, str]) -> quality.Filters:
    try:
        return quality.Filters.from_args(args)
    except quality.FilterError as error:
        abort(400, description=str(error))


def _audit_read(session, kind: str, detail: dict) -> None:
    """Every quality read or export is audited the same way (contract §7): who, which panel or export, which filters."""
    audit(session, agent=g.get("agent"), action="R", kind=kind, source="api", detail=detail)


@blueprint.get("/quality")
def quality_summary():
    params.parse(FILTER_PARAMS)
    filters = _filters(request.args)
    with ctx().db.write() as session:
        cohort = quality.load_cohort(session, filters)
        _audit_read(session, "quality-read", filters.as_args())
    return jsonify(quality.summary(cohort))


@blueprint.get("/quality/export.csv")
def quality_export():
    params.parse({**FILTER_PARAMS, "pseudonymise": params.boolean})
    return export_response(request.args, source="api")


def export_response(args: Mapping[str, str], *, source: str) -> Response:
    """The CSV download, shared by ``/api/quality/export.csv`` and the dashboard's link under ``/ui``."""
    filters = _filters(args)
    pseudonymise = (args.get("pseudonymise") or "true").strip().lower() != "false"
    with ctx().db.write() as session:
        cohort = quality.load_cohort(session, filters)
        rows = quality.export_rows(cohort, pseudonymise=pseudonymise)
        audit(
            session,
            agent=g.get("agent"),
            action="R",
            kind="quality-export",
            source=source,
            detail={"pseudonymised": pseudonymise, "rows": len(rows), **filters.as_args()},
        )
    body = quality.export_csv(rows, pseudonymise=pseudonymise)
    return Response(
        body,
        mimetype="text/csv",
        headers={
            "Content-Type": "text/csv; charset=utf-8; header=present",
            "Content-Disposition": "attachment; filename=immunorad-quality.csv",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@blueprint.get("/quality/alert-follow-up")
def alert_follow_up():
    """Time to acknowledgement per alert type and the unacknowledged critical alerts (contract §9.7), with the
    dashboard's filters; patients by their pseudonym."""
    from service.publish import acknowledge

    params.parse(FILTER_PARAMS)
    filters = _filters(request.args)
    with ctx().db.write() as session:
        cohort = quality.load_cohort(session, filters)
        _audit_read(session, "quality-read", {**filters.as_args(), "panel": "alert-follow-up"})
        out = acknowledge.follow_up(
            session, {p.patient_id: p.label for p in cohort.patients}, filters.start, filters.end
        )
    for row in out["unacknowledged_critical"]:
        del row["patient_id"]
    return jsonify(out)


def _concordance_timepoints(session, filters: quality.Filters) -> list:
    from fhir_mappings.codes import LocalSystems
    from service.dashboard import concordance

    cohort = quality.load_cohort(session, filters)
    systems = LocalSystems.from_canonical(ctx().settings.fhir_canonical)
    labels = {p.patient_id: p.label for p in cohort.patients}
    return concordance.signed_timepoints(session, systems, labels, filters.start, filters.end)


@blueprint.get("/quality/concordance")
def concordance_summary():
    """Engine versus signed categories per criterion (contract §9.7): confusion table, agreement, Cohen's kappa
    with its 95 % CI (method in each row), discordant timepoints; the dashboard's filters; patients pseudonymised."""
    from service.dashboard import concordance

    params.parse(FILTER_PARAMS)
    filters = _filters(request.args)
    with ctx().db.write() as session:
        timepoints = _concordance_timepoints(session, filters)
        _audit_read(session, "quality-read", {**filters.as_args(), "panel": "concordance"})
    rows = concordance.concordance(timepoints)
    for row in rows:
        for item in row["discordant"]:
            del item["patient_id"]
    return jsonify({"filters": filters.as_args(), "method": concordance.METHOD, "criteria": rows})


@blueprint.get("/quality/concordance.csv")
def concordance_csv():
    """One row per signed timepoint and criterion (RFC 4180), patients by their pseudonym."""
    import csv
    import io

    from service.dashboard import concordance

    params.parse(FILTER_PARAMS)
    filters = _filters(request.args)
    with ctx().db.write() as session:
        timepoints = _concordance_timepoints(session, filters)
        _audit_read(session, "quality-export", {**filters.as_args(), "panel": "concordance"})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(concordance.CSV_COLUMNS)
    writer.writerows(concordance.csv_rows(timepoints))
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="concordance.csv"'},
    )


ENDPOINT_PARAMS = {**FILTER_PARAMS, "therapy_class": params.text(64), "criterion": params.text(32)}


def cohort_end_points(session, args: Mapping[str, str]) -> list[dict]:
    """ORR/DCR (Wilson), BOR and PFS/iPFS (Kaplan–Meier) per criterion for the dashboard's filters plus
    ``therapy_class`` and ``criterion`` (service/dashboard/endpoints.py)."""
    from service.dashboard import endpoints

    filters = _filters(args)
    cohort = quality.load_cohort(session, filters)
    cohort, signed, deaths = endpoints.load_inputs(session, cohort, args.get("therapy_class") or None)
    return endpoints.end_points(cohort, signed, deaths, criterion_filter=args.get("criterion") or None)


@blueprint.get("/quality/endpoints")
def end_points_summary():
    """Cohort end points (contract §9.7), from the engine's categories and, beside them, the signed ones."""
    args = params.parse(ENDPOINT_PARAMS)
    with ctx().db.write() as session:
        rows = cohort_end_points(session, request.args)
        _audit_read(session, "quality-read", {**{k: str(v) for k, v in args.items()}, "panel": "endpoints"})
    return jsonify({"criteria": rows})


SDTM_PARAMS = {**FILTER_PARAMS, "pseudonymise": params.boolean, "studyid": params.text(40)}


@blueprint.get("/export/sdtm/<domain>.csv")
def sdtm_export(domain: str):
    """CDISC SDTM ``RS`` or ``TR`` (contract §9.7) for the dashboard's selection; ``USUBJID`` pseudonymised unless
    ``pseudonymise=false``; ``studyid`` names the study (default IMMUNORAD). Audited."""
    from service.dashboard import sdtm
    from service.ops.logs import pseudonym

    if domain not in ("rs", "tr"):
        abort(404, description="SDTM domains exported: rs, tr")
    args = params.parse(SDTM_PARAMS)
    filters = _filters(request.args)
    pseudonymise = args.get("pseudonymise", True)
    study = args.get("studyid") or "IMMUNORAD"

    def subject(patient_id: str, mrn: str | None) -> str:
        return (pseudonym(patient_id) or "") if pseudonymise else (mrn or patient_id)

    with ctx().db.write() as session:
        cohort = quality.load_cohort(session, filters)
        _audit_read(
            session, "sdtm-export", {**filters.as_args(), "domain": domain.upper(), "pseudonymised": pseudonymise}
        )
    if domain == "rs":
        body = sdtm.to_csv(sdtm.RS_VARIABLES, sdtm.rs_rows(cohort, subject, study))
    else:
        body = sdtm.to_csv(sdtm.TR_VARIABLES, sdtm.tr_rows(cohort, subject, study))
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{domain}.csv"'})
