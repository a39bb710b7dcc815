"""Request bodies in, FHIR JSON out: the parsing and answering the blueprints share (kept out of ``app``, which
imports the blueprints)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response

from service.ingest.fhir_ingest import FhirError

FHIR_JSON = "application/fhir+json; charset=utf-8"
MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects accepted in a request body (default 100). FHIR resources and Bundles
are a few tens of levels deep at most; anything deeper is refused before it reaches code that recurses
(json, fhir.resources/pydantic validation, our reference walkers) and could exhaust the stack."""


def load_json_body(data: bytes) -> Any:
    """Parse a request body; ``FhirError`` 400 when it is not JSON or nests deeper than ``MAX_JSON_DEPTH``."""
    try:
        value = json.loads(data or b"null")
    except RecursionError as exc:  # nesting beyond the interpreter's recursion limit, raised cleanly by json
        raise FhirError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", code="structure") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhirError(400, f"malformed JSON: {exc}"[:200], code="structure") from exc
    if _nesting_exceeds(value, MAX_JSON_DEPTH):
        raise FhirError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", code="structure")
    return value


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays/objects in ``value`` nest deeper than ``limit`` (the outermost counts 1); iterative, so
    it cannot itself run out of stack."""
    pending = [(value, 1)] if isinstance(value, (dict, list)) else []
    while pending:
        container, depth = pending.pop()
        if depth > limit:
            return True
        children = container.values() if isinstance(container, dict) else container
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def fhir_response(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    response = Response(json.dumps(body, default=str), status=status, mimetype="application/fhir+json")
    response.headers["Content-Type"] = FHIR_JSON
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
