"""Large JSON documents stored packed: deflate with a preset dictionary, pre-fill attachments as raw bytes.

Every evaluation stores about three hundred kilobytes of JSON per patient: some thirty Observations of a few
kilobytes each, a DiagnosticReport per follow-up whose pre-fill (``presentedForm``) is base64, and the assessment.
Compressed one by one, small documents shrink little (about 3×): each starts with an empty history. Deflate's
*preset dictionary* (RFC 1950 §2.2, ``FDICT``) gives every one the same 32 KB history to refer back to: text
typical of our resources (the code systems, the criteria's codes, the pre-fill's markup), so an Observation
costs mostly what is particular to it. Base64 hides the text it encodes from the compressor, so the pre-fill's
``data`` is stored decoded (after the JSON, in the same deflate stream) and encoded again when read; only a value
that encodes back to exactly the same text is taken out, so what is read is what was written.

Format (the first byte says which; a stored value is never rewritten when a newer format comes):

- ``0x01``: deflate (zlib stream) primed with dictionary 1 (``dictionary-1.bin``, below), of
  ``document JSON (UTF-8, compact)`` + ``NUL`` + the raw attachments one after another. The JSON is
  ``{"d": document, "a": [[index, length], ...]}`` where ``index`` is the position in ``document["presentedForm"]``
  whose ``data`` was taken out. JSON text never holds a raw NUL byte (``json.dumps`` escapes it), so the first
  NUL ends it.

A dictionary, once a format names it, never changes: values written with it must stay readable. Its digest is
checked when it is loaded. A better dictionary is a new file and a new format byte. ``bench/fhir_dictionary.py``
builds one from the worked examples that the benchmarks do not use.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

FORMAT_DICTIONARY_1 = 1
DICTIONARY_1 = Path(__file__).with_name("dictionary-1.bin")
DICTIONARY_1_SHA256 = "1c8aa1e17e3be11f51fe3fc2390783f8f6e969cfd053bd82a9594580eff9dd22"
LEVEL = 4
"""Measured on 371 of our resources (10 patients of the benchmark cohort), JSON encoding included: level 4 packs
them to 278 KB in 0.108 ms each; level 1 to 330 KB in 0.090 ms; level 6 (zlib's default) to 259 KB in 0.153 ms.
The format does not depend on the level (a reader needs only the dictionary)."""


class PackedJSONError(ValueError):
    """A stored value that is not in a known format (or is damaged)."""


@functools.cache
def _dictionary_1() -> bytes:
    data = DICTIONARY_1.read_bytes()
    if hashlib.sha256(data).hexdigest() != DICTIONARY_1_SHA256:
        raise PackedJSONError(f"{DICTIONARY_1.name} is not the dictionary format 1 was written with")
    return data


@functools.cache
def _primed_compressor() -> Any:
    """A compressor that has read the dictionary; each value is packed by a copy of it (priming costs more than
    packing a small document)."""
    return zlib.compressobj(LEVEL, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, _dictionary_1())


def _take_attachments(document: Any) -> tuple[Any, list[list[int]], list[bytes]]:
    forms = document.get("presentedForm") if isinstance(document, dict) else None
    if not isinstance(forms, list):
        return document, [], []
    taken: list[list[int]] = []
    raw: list[bytes] = []
    kept = []
    for index, form in enumerate(forms):
        data = form.get("data") if isinstance(form, dict) else None
        if isinstance(data, str) and data:
            try:
                decoded = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                decoded = None
            if decoded is not None and base64.b64encode(decoded).decode("ascii") == data:
                form = {**form, "data": ""}
                taken.append([index, len(decoded)])
                raw.append(decoded)
        kept.append(form)
    if not taken:
        return document, [], []
    return {**document, "presentedForm": kept}, taken, raw


def pack(document: Any) -> bytes:
    """The stored bytes of a JSON-compatible value."""
    body, taken, raw = _take_attachments(document)
    text = json.dumps({"d": body, "a": taken}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    compressor = _primed_compressor().copy()
    return bytes([FORMAT_DICTIONARY_1]) + compressor.compress(text + b"\0" + b"".join(raw)) + compressor.flush()


def unpack(stored: bytes) -> Any:
    """The value ``pack`` was given."""
    if not stored or stored[0] != FORMAT_DICTIONARY_1:
        raise PackedJSONError(f"unknown packed JSON format {stored[:1]!r}")
    try:
        decompressor = zlib.decompressobj(15, zdict=_dictionary_1())
        plain = decompressor.decompress(stored[1:]) + decompressor.flush()
    except zlib.error as exc:
        raise PackedJSONError(f"damaged packed JSON: {exc}") from exc
    if not decompressor.eof:
        raise PackedJSONError("damaged packed JSON: the stream is cut short")
    end = plain.index(b"\0")
    envelope = json.loads(plain[:end])
    document = envelope["d"]
    if envelope["a"]:
        forms = list(document["presentedForm"])
        offset = end + 1
        for index, length in envelope["a"]:
            forms[index] = {
                **forms[index],
                "data": base64.b64encode(plain[offset : offset + length]).decode("ascii"),
            }
            offset += length
        document = {**document, "presentedForm": forms}
    return document


class PackedJSON(TypeDecorator):
    """A JSON column stored as ``pack``'s bytes (``bytea`` on PostgreSQL, ``BLOB`` on SQLite).

    Reads and writes in Python only: nothing queries inside these documents in SQL (searches filter the
    decoded content)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        return None if value is None else pack(value)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else unpack(bytes(value))
