"""Query parameters of ``/api``: each route declares what it takes; anything else is a 400, never a 500.

A parameter the route does not know, one given twice, or a value out of its type or range is refused with the
reason (contract §9.5: input validation on every query parameter). Parsers raise ``ValueError``; ``parse``
turns that into ``abort(400)``, which the app translates into the JSON error body in one place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from flask import abort, request
from werkzeug.datastructures import MultiDict

Parser = Callable[[str], Any]


def integer(low: int, high: int) -> Parser:
    """A decimal integer from ``low`` to ``high`` inclusive."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,9}", text.strip()):
            raise ValueError(f"must be a whole number from {low} to {high}")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return parse


def choice(*values: str) -> Parser:
    def parse(text: str) -> str:
        if text not in values:
            raise ValueError("must be one of " + ", ".join(values))
        return text

    return parse


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("must be true or false")


def identifier(text: str) -> str:
    """An id or MRN as we store them: printable, no spaces, at most 64 characters."""
    if not re.fullmatch(r"[A-Za-z0-9\-._:|/]{1,64}", text):
        raise ValueError("must be an identifier (letters, digits, - . _ : | /, at most 64 characters)")
    return text


def text(max_length: int) -> Parser:
    def parse(value: str) -> str:
        if len(value) > max_length or any(ord(c) < 32 for c in value):
            raise ValueError(f"must be printable text of at most {max_length} characters")
        return value

    return parse


def parse(spec: Mapping[str, Parser], args: MultiDict | None = None) -> dict[str, Any]:
    """The request's query parameters checked against ``spec`` (name → parser); absent ones are left out."""
    args = request.args if args is None else args
    unknown = sorted(set(args) - set(spec))
    if unknown:
        allowed = ", ".join(sorted(spec)) or "none"
        abort(400, description=f"unknown query parameter {unknown[0][:40]!r} (this route takes: {allowed})")
    values: dict[str, Any] = {}
    for name, parser in spec.items():
        given = args.getlist(name)
        if not given:
            continue
        if len(given) > 1:
            abort(400, description=f"query parameter {name!r} is given more than once")
        try:
            values[name] = parser(given[0])
        except ValueError as exc:
            abort(400, description=f"query parameter {name!r} {exc}")
    return values
