"""``/fhir``: the FHIR R4 endpoint (contract §4): metadata, Bundles, create/update/conditional, read, search."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, g, request

from service.api.bodies import fhir_response, load_json_body
from service.api.context import ctx
from service.ingest.fhir_ingest import ACCEPTED_TYPES, READ_ONLY_TYPES, FhirError, FhirIngest
from service.persistence.fhir_store import (
    SORT_COLUMNS,
    SearchError,
    applied_parameters,
    get_resource,
    search,
    sort_keys,
)
from service.persistence.store import audit

blueprint = Blueprint("fhir", __name__, url_prefix="/fhir")

READABLE_TYPES = tuple(sorted(set(ACCEPTED_TYPES) | set(READ_ONLY_TYPES)))
SEARCH_PARAMS = (
    "patient",
    "subject",
    "subject:identifier",
    "patient:identifier",
    "identifier",
    "date",
    "_lastUpdated",
    "_id",
    "status",
    "code",
    "category",
)


def _body() -> dict:
    if request.content_length and request.content_length > ctx().settings.max_request_bytes:
        raise FhirError(413, "request too large", code="too-costly")
    content_type = (request.mimetype or "").lower()
    if content_type and content_type not in ("application/fhir+json", "application/json", "text/json"):
        raise FhirError(
            415, f"unsupported content type {content_type}: send application/fhir+json", code="not-supported"
        )
    return load_json_body(request.get_data(cache=False))


def _check_format() -> None:
    wanted = request.args.get("_format")
    if wanted and wanted not in ("json", "application/json", "application/fhir+json"):
        raise FhirError(406, f"_format {wanted} is not supported: this server speaks JSON only", code="not-supported")
    accept = request.headers.get("Accept", "")
    if not wanted and accept and "json" not in accept and "*/*" not in accept:
        raise FhirError(406, "this server returns application/fhir+json only", code="not-supported")


@blueprint.before_request
def _format_guard():
    _check_format()


def _agent() -> str:
    return getattr(g, "agent", "anonymous")


def _version_headers(resource: dict, status: int) -> dict:
    meta = resource.get("meta") or {}
    version = meta.get("versionId", "1")
    headers = {"ETag": f'W/"{version}"'}
    if meta.get("lastUpdated"):
        headers["Last-Modified"] = meta["lastUpdated"]
    if status == 201:
        base = ctx().settings.fhir_base_url
        headers["Location"] = f"{base}/{resource['resourceType']}/{resource['id']}/_history/{version}"
    return headers


SEARCH_DOCUMENTATION = (
    "subject and patient also take the :identifier modifier (system|value). "
    f"_sort on {', '.join(SORT_COLUMNS)} (prefix - for descending; other keys are ignored, or refused with "
    "Prefer: handling=strict); without _sort the most recently stored come first. _count (at most 500; 0 gives the "
    "total only) and _offset page the results through Bundle.link next/previous. Parameters not listed are ignored "
    "and left out of the self link, or refused with Prefer: handling=strict."
)
CONDITIONAL_DOCUMENTATION = (
    "Conditional create (If-None-Exist) and conditional update (PUT [type]?identifier=system|value) on identifier "
    "only; a condition matching several resources is refused with 412, an empty or malformed one with 400."
)
TRANSACTION_DOCUMENTATION = (
    "All or nothing, by the R4 transaction rules: every condition (ifNoneExist, conditional PUT, conditional "
    "reference) is resolved before any entry runs, and every urn:uuid/urn:oid fullUrl resolves to the resource its "
    "entry created or matched, whatever the entry's method and order. Entries run POST, then PUT; DELETE and PATCH "
    "are not supported. Refused: duplicate fullUrls (bdl-7), two entries writing one resource, ids over 64 "
    "characters or outside [A-Za-z0-9-.] (400)."
)


SIGN_OFF_DOCUMENTATION = (
    "create/update (also in transactions, conditional PUT on identifier) accept only a radiologist's sign-off: "
    "status final, the identifier of one of our reports, the signed category in conclusionCode (system "
    "{C}/CodeSystem/response) with the criterion in its text or a response-criteria extension, the reader in "
    "resultsInterpreter. It is recorded as a sign-off (GET /api/patients/{id}/sign-offs), answered with the id "
    "sign-off-<n>, and never replaces the engine's DiagnosticReport or Observations; anything else is refused."
)


def _param_type(name: str) -> str:
    return {
        "patient": "reference",
        "subject": "reference",
        "target": "reference",
        "agent": "reference",
        "entity": "reference",
        "date": "date",
        "recorded": "date",
        "_lastUpdated": "date",
    }.get(name, "token")


def capability_statement() -> dict:
    settings = ctx().settings
    writable = {
        "Patient",
        "Observation",
        "BodyStructure",
        "ImagingStudy",
        "MedicationAdministration",
        "MedicationStatement",
        "MedicationRequest",
        "Procedure",
        "Condition",
    }
    resources = []
    for kind in READABLE_TYPES:
        interactions = [{"code": "read"}, {"code": "search-type"}]
        if kind in writable:
            interactions += [{"code": "create"}, {"code": "update"}]
        entry: dict[str, Any] = {
            "type": kind,
            "interaction": interactions,
            "versioning": "versioned-update" if kind in writable else "versioned",
            "readHistory": False,
            "updateCreate": kind in writable,
            "conditionalCreate": kind in writable,
            "conditionalRead": "not-supported",
            "conditionalUpdate": kind in writable,
            "conditionalDelete": "not-supported",
            "referencePolicy": ["literal", "logical", "local"],
            "searchParam": [{"name": n, "type": _param_type(n)} for n in AUDIT_SEARCH[kind]]
            if kind in AUDIT_SEARCH
            else [{"name": name, "type": _param_type(name)} for name in SEARCH_PARAMS if ":" not in name],
        }
        if kind not in AUDIT_SEARCH:
            entry["documentation"] = SEARCH_DOCUMENTATION
        if kind in writable:
            entry["documentation"] += " " + CONDITIONAL_DOCUMENTATION
        if kind == "DiagnosticReport":
            # A reporting system's final DiagnosticReport is its radiologist's sign-off of one of our reports
            # (contract §9.7): recorded beside the engine's result, never stored over it.
            entry["interaction"] += [{"code": "create"}, {"code": "update"}]
            entry["documentation"] += " " + SIGN_OFF_DOCUMENTATION
            entry["supportedProfile"] = [
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-diagnosticreport-note"
            ]
        if kind == "Observation":
            entry["supportedProfile"] = [
                "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-tumor-size",
                "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-cancer-disease-status",
            ]
        resources.append(entry)
    body = {
        "resourceType": "CapabilityStatement",
        "id": "immunorad",
        "url": f"{settings.fhir_canonical}/CapabilityStatement/immunorad",
        "name": "ImmunoradCapabilityStatement",
        "title": "immunorad FHIR endpoint",
        "status": "active",
        "date": "2026-11-24",
        "kind": "instance",
        "software": {"name": "immunorad", "version": __import__("rules").__version__},
        "implementation": {
            "description": "immunorad: imaging response assessment for cancer immunotherapy",
            "url": settings.fhir_base_url,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "description": _security_description(settings),
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                },
                "resource": resources,
                "interaction": [
                    {"code": "transaction", "documentation": TRANSACTION_DOCUMENTATION},
                    {
                        "code": "batch",
                        "documentation": "Each entry succeeds or fails alone; bdl-7 applies to the Bundle.",
                    },
                ],
            }
        ],
    }
    return body


def _security_description(settings) -> str:
    modes = {
        "token": "the static API token (IMMUNORAD_API_TOKEN)",
        "jwt": "an OAuth 2.0 access token (JWT) from the configured issuer, with SMART system scopes",
    }
    return "Bearer token required: " + " or ".join(modes[m] for m in settings.api_auth if m in modes)


AUDIT_SEARCH = {
    "AuditEvent": (
        "patient",
        "date",
        "_lastUpdated",
        "_id",
        "action",
        "outcome",
        "type",
        "subtype",
        "agent",
        "entity-type",
        "entity",
    ),
    "Provenance": ("patient", "target", "recorded", "_lastUpdated", "_id"),
}


@blueprint.get("/metadata")
def metadata():
    body = capability_statement()
    etag = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return fhir_response(body, headers={"ETag": f'W/"{etag}"'})


@blueprint.post("")
@blueprint.post("/")
def post_bundle():
    body = _body()
    ingest = FhirIngest(ctx().settings)
    ingest.check_bundle(body)  # before the write transaction (and SQLite's write lock) is taken
    with ctx().db.write() as session:
        result = ingest.bundle(session, body, agent=_agent())
    return fhir_response(result)


def _known_type(kind: str) -> None:
    if kind not in READABLE_TYPES:
        raise FhirError(404, f"resource type {kind} is not supported here", code="not-supported")


@blueprint.post("/<kind>")
def create(kind: str):
    _known_type(kind)
    body = _body()
    if isinstance(body, dict) and body.get("resourceType") != kind:
        raise FhirError(400, f"resourceType must be {kind}", code="invalid")
    ingest = FhirIngest(ctx().settings)
    with ctx().db.write() as session:
        result = ingest.create(session, body, if_none_exist=request.headers.get("If-None-Exist"), agent=_agent())
    return fhir_response(result.resource, result.status, _version_headers(result.resource, result.status))


@blueprint.put("/<kind>")
def conditional_update(kind: str):
    _known_type(kind)
    query = request.query_string.decode()
    if not query:
        raise FhirError(400, "PUT needs an id or a condition (?identifier=…)", code="invalid")
    body = _body()
    ingest = FhirIngest(ctx().settings)
    with ctx().db.write() as session:
        result = ingest.conditional_update(session, kind, query, body, agent=_agent())
    return fhir_response(result.resource, result.status, _version_headers(result.resource, result.status))


@blueprint.put("/<kind>/<fhir_id>")
def update(kind: str, fhir_id: str):
    _known_type(kind)
    body = _body()
    ingest = FhirIngest(ctx().settings)
    with ctx().db.write() as session:
        result = ingest.update(session, kind, fhir_id, body, agent=_agent(), if_match=request.headers.get("If-Match"))
    return fhir_response(result.resource, result.status, _version_headers(result.resource, result.status))


@blueprint.get("/<kind>/<fhir_id>")
def read(kind: str, fhir_id: str):
    _known_type(kind)
    with ctx().db.write() as session:
        row = get_resource(session, kind, fhir_id)
        if row is None:
            raise FhirError(404, f"{kind}/{fhir_id} is not known", code="not-found")
        audit(
            session,
            action="R",
            kind="fhir-read",
            source="api",
            agent=_agent(),
            entity_type=kind,
            entity_ref=f"{kind}/{fhir_id}",
            patient_id=row.patient_id,
        )
        content = row.content
    return fhir_response(content, headers=_version_headers(content, 200))


@blueprint.route("/<kind>/<fhir_id>", methods=["DELETE", "PATCH"])
@blueprint.route("/<kind>", methods=["DELETE", "PATCH"])
def not_allowed(kind: str, fhir_id: str | None = None):
    raise FhirError(405, f"{request.method} is not supported", code="not-supported")


@blueprint.get("/<kind>")
def search_type(kind: str):
    _known_type(kind)
    strict = "handling=strict" in request.headers.get("Prefer", "").replace(" ", "")
    settings = ctx().settings
    try:
        params = applied_parameters(
            {key: request.args.getlist(key) for key in request.args}, SEARCH_PARAMS, strict=strict
        )
    except SearchError as exc:
        raise FhirError(400, str(exc), code="not-supported") from exc
    try:
        sort = sort_keys(params.get("_sort", []), strict=strict)
    except SearchError as exc:
        raise FhirError(400, str(exc), code="not-supported") from exc
    with ctx().db.write() as session:
        try:
            page = search(session, kind, params, patient_id_system=settings.patient_id_system, supported=SEARCH_PARAMS)
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
    base = f"{settings.fhir_base_url}/{kind}"

    # Links carry only what the search applied (R4 search.html#conformance: parameters the server ignored are not
    # in the self link), so that a client can tell what was honoured.
    honoured = [(k, v) for k, values in params.items() if k in SEARCH_PARAMS for v in values]
    honoured += [("_sort", ",".join(sort))] if sort else []

    def link(offset: int) -> str:
        query = honoured + [("_count", str(page.count)), ("_offset", str(offset))]
        return f"{base}?{urlencode(query)}"

    links = [{"relation": "self", "url": link(page.offset)}]
    if page.count > 0 and page.offset + page.count < page.total:
        links.append({"relation": "next", "url": link(page.offset + page.count)})
    if page.offset > 0:
        links.append({"relation": "previous", "url": link(max(page.offset - page.count, 0))})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{settings.fhir_base_url}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in page.resources
        ],
    }
    return fhir_response(bundle)
