"""What every page blueprint (``ui``, ``signin``) answers with: the security headers and the HTML error page."""

from __future__ import annotations

from flask import Response, render_template
from werkzeug.exceptions import HTTPException

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"  # no Referer leaves us; our forms keep their Origin
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


def page_error(error: HTTPException):
    return render_template("error.html", status=error.code, message=error.description), error.code or 500
