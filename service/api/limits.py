"""Request size limits (contract §9.1): a body over IMMUNORAD_MAX_REQUEST_BYTES is answered 413, a request target
over IMMUNORAD_MAX_URL_BYTES 414, both as an OperationOutcome.

Bodies: Flask's ``MAX_CONTENT_LENGTH`` refuses a too large ``Content-Length`` before anything is read. A chunked
body has no length: gunicorn decodes it, and Werkzeug would stop reading at the limit and hand the application the
first ``limit`` bytes as if they were the whole body. ``ChunkedBodyLimit`` reads such a body first, at most one byte
past the limit, and answers 413 when it is longer, so no more than the limit is ever buffered and nothing truncated
reaches the application.

URLs: gunicorn reads the request line before the application sees anything, and answers a line over its
``limit_request_line`` itself with an HTML page. So gunicorn's limit is set just above ours (``request_line_limit``):
targets between the two are refused by the application (``check_url``), and ``answer_limits_as_operation_outcome``
(a ``post_worker_init`` hook, for any worker class) makes gunicorn's own 414 and 431 answers OperationOutcomes too.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import request

from service.ingest.fhir_ingest import FhirError, operation_outcome
from service.ops.config import Settings

logger = logging.getLogger(__name__)

GUNICORN_MAX_REQUEST_LINE = 8190
"""gunicorn's ceiling for ``limit_request_line`` (a larger setting is lowered to it)."""
REQUEST_LINE_SLACK = 32
"""The request line's bytes around its target: the method, two spaces and ``HTTP/1.1``."""


READ_SIZE = 64 * 1024


class ChunkedBodyLimit:
    """WSGI middleware: a ``Transfer-Encoding: chunked`` body is read here up to IMMUNORAD_MAX_REQUEST_BYTES and
    passed on with its ``Content-Length``; one byte more and the answer is 413 (an OperationOutcome on ``/fhir``).
    After a refusal up to another ``limit`` bytes are read and dropped, so that a client still sending gets the
    answer rather than a reset connection; the connection is then closed."""

    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self.app(environ, start_response)
        stream = environ["wsgi.input"]
        body = bytearray()
        while len(body) <= self.max_bytes:
            piece = stream.read(min(READ_SIZE, self.max_bytes + 1 - len(body)))
            if not piece:
                break
            body += piece
        if len(body) > self.max_bytes:
            dropped = 0
            while dropped < self.max_bytes and (piece := stream.read(READ_SIZE)):
                dropped += len(piece)
            return self._too_large(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(bytes(body))
        environ["CONTENT_LENGTH"] = str(len(body))
        del environ["HTTP_TRANSFER_ENCODING"]
        return self.app(environ, start_response)

    def _too_large(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        diagnostics = f"request larger than {self.max_bytes} bytes"
        if environ.get("PATH_INFO", "").startswith("/fhir"):
            content_type = "application/fhir+json; charset=utf-8"
            answer = operation_outcome(code="too-costly", diagnostics=diagnostics)
        else:
            content_type, answer = "application/json", {"error": diagnostics, "status": 413}
        body = json.dumps(answer).encode()
        start_response(
            "413 Content Too Large",
            [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Connection", "close")],
        )
        return [body]


def request_line_limit(settings: Settings) -> int:
    """gunicorn's ``limit_request_line`` for IMMUNORAD_MAX_URL_BYTES."""
    return min(settings.max_url_bytes + REQUEST_LINE_SLACK, GUNICORN_MAX_REQUEST_LINE)


def check_url(settings: Settings) -> None:
    """414 when the request target (path and query, as sent) is longer than IMMUNORAD_MAX_URL_BYTES."""
    target = request.environ.get("RAW_URI") or request.full_path
    if len(target.encode("latin-1", errors="replace")) > settings.max_url_bytes:
        raise FhirError(
            414,
            f"the URL is longer than {settings.max_url_bytes} bytes: for a long search use POST {{type}}/_search",
            code="too-long",
        )


def answer_limits_as_operation_outcome(worker: Any) -> None:
    """gunicorn ``post_worker_init`` hook: the worker answers a request line or headers over gunicorn's limits with
    an OperationOutcome (status 414 or 431) instead of gunicorn's HTML page; every other error is gunicorn's."""
    from gunicorn import util
    from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine

    original = worker.handle_error
    answers = {
        LimitRequestLine: (
            414,
            "URI Too Long",
            f"the request line is longer than {worker.cfg.limit_request_line} bytes",
        ),
        LimitRequestHeaders: (431, "Request Header Fields Too Large", "the request headers are too large"),
    }

    def handle_error(req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        answer = next((value for kind, value in answers.items() if isinstance(exc, kind)), None)
        if answer is None:
            original(req, client, addr, exc)
            return
        status, reason, diagnostics = answer
        body = json.dumps(operation_outcome(code="too-long", diagnostics=diagnostics)).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/fhir+json; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        logger.warning("request refused by the HTTP server", extra={"fields": {"status": status}})
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except OSError:
            pass  # the client has gone

    worker.handle_error = handle_error
