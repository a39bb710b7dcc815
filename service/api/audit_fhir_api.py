"""``/fhir/AuditEvent`` and ``/fhir/Provenance``: the audit trail and assessment provenance, read-only (contract §7).

Register with ``app.register_blueprint(service.api.audit_fhir_api.blueprint)``. These static routes take
precedence over the generic ``/fhir/<kind>`` ones of ``service.api.fhir`` (werkzeug ranks static rules first);
writes still reach the generic routes, which answer 405 for these produced-only types.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, g, request

from service.api.bodies import fhir_response
from service.api.context import ctx
from service.api.fhir import _check_format
from service.ingest.fhir_ingest import FhirError
from service.persistence.fhir_store import SearchError
from service.persistence.store import audit
from service.security.audit_fhir import (
    AUDIT_SEARCH_PARAMS,
    PAGING_PARAMS,
    PROVENANCE_SEARCH_PARAMS,
    Page,
    read_audit_event,
    read_provenance,
    search_audit_events,
    search_provenance,
)

blueprint = Blueprint("audit_fhir", __name__, url_prefix="/fhir")


@blueprint.before_request
def _format_guard():
    _check_format()


def _agent() -> str:
    return getattr(g, "agent", "anonymous")


def _params(supported: tuple[str, ...]) -> dict[str, list[str]]:
    """The search parameters; unknown ones are ignored (R4 search.html) unless ``Prefer: handling=strict``."""
    source = request.form if request.method == "POST" else request.args
    params = {key: source.getlist(key) for key in source}
    if "handling=strict" in request.headers.get("Prefer", "").replace(" ", ""):
        return params
    return {key: values for key, values in params.items() if key in supported or key in PAGING_PARAMS}


def _searchset(kind: str, page: Page, params: dict[str, list[str]]) -> dict:
    root = ctx().settings.base_url
    base = f"{root}/fhir/{kind}"

    def link(offset: int) -> str:
        query = [(k, v) for k, values in params.items() if k != "_offset" for v in values] + [("_offset", str(offset))]
        if "_count" not in params:
            query.append(("_count", str(page.count)))
        return f"{base}?{urlencode(query)}"

    links = [{"relation": "self", "url": link(page.offset)}]
    if page.offset + page.count < page.total and page.count > 0:
        links.append({"relation": "next", "url": link(page.offset + page.count)})
    if page.offset > 0:
        links.append({"relation": "previous", "url": link(max(page.offset - page.count, 0))})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": links,
        "entry": [
            {"fullUrl": f"{root}/fhir/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in page.resources
        ],
    }


def _search(kind: str, searcher, supported: tuple[str, ...]):
    params = _params(supported)
    settings = ctx().settings
    with ctx().db.write() as session:
        try:
            page = searcher(session, settings, params)
        except SearchError as exc:
            raise FhirError(400, str(exc), code="not-supported") from exc
        audit(
            session,
            action="R",
            kind="fhir-search",
            source="api",
            agent=_agent(),
            entity_type=kind,
            detail={"parameters": sorted(params), "matches": page.total},
        )
    return fhir_response(_searchset(kind, page, params))


def _read(kind: str, fhir_id: str, reader):
    settings = ctx().settings
    with ctx().db.write() as session:
        resource = reader(session, settings, fhir_id)
        if resource is None:
            raise FhirError(404, f"{kind}/{fhir_id} is not known", code="not-found")
        audit(
            session,
            action="R",
            kind="fhir-read",
            source="api",
            agent=_agent(),
            entity_type=kind,
            entity_ref=f"{kind}/{fhir_id}",
        )
    return fhir_response(resource, headers={"ETag": 'W/"1"', "Last-Modified": resource["meta"]["lastUpdated"]})


@blueprint.get("/AuditEvent")
@blueprint.post("/AuditEvent/_search")
def audit_event_search():
    return _search("AuditEvent", search_audit_events, AUDIT_SEARCH_PARAMS)


@blueprint.get("/AuditEvent/<fhir_id>")
def audit_event_read(fhir_id: str):
    return _read("AuditEvent", fhir_id, read_audit_event)


@blueprint.get("/Provenance")
@blueprint.post("/Provenance/_search")
def provenance_search():
    return _search("Provenance", search_provenance, PROVENANCE_SEARCH_PARAMS)


@blueprint.get("/Provenance/<fhir_id>")
def provenance_read(fhir_id: str):
    return _read("Provenance", fhir_id, read_provenance)
