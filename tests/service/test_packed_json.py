"""The packed JSON format (``service.persistence.packed_json``): what is read is exactly what was written."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib

import pytest

from service.persistence.packed_json import DICTIONARY_1, DICTIONARY_1_SHA256, PackedJSONError, pack, unpack

HTML = "<section><h2>Response assessment</h2><p>iRECIST iUPD — sum 57 mm (+14 % from nadir)</p></section>" * 20


def _report(*forms: dict) -> dict:
    return {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "preliminary",
        "presentedForm": list(forms),
        "conclusion": "Progression (iUPD) — Lésion cible № 1",
    }


@pytest.mark.parametrize(
    "document",
    [
        {"resourceType": "Observation", "id": "o1", "valueQuantity": {"value": 12.5, "unit": "mm"}, "note": []},
        _report({"contentType": "text/html; charset=utf-8", "data": base64.b64encode(HTML.encode()).decode()}),
        # Not exactly as base64 writes it (no padding, a line break, invalid): kept verbatim, not decoded.
        _report({"contentType": "text/plain", "data": "aGVsbG8"}),
        _report({"contentType": "text/plain", "data": "aGVs\nbG8="}),
        _report({"contentType": "text/plain", "data": "not base64 at all!"}),
        _report({"contentType": "text/plain", "data": ""}, {"contentType": "text/plain", "url": "http://x/y"}),
        # Binary attachment bytes, NUL bytes included, after a text one.
        _report(
            {"contentType": "text/plain", "data": base64.b64encode(b"plain").decode()},
            {"contentType": "application/pdf", "data": base64.b64encode(bytes(range(256)) * 3).decode()},
        ),
        {"resourceType": "Bundle", "presentedForm": "not a list", "entry": [None, 1, True, "\u0000"]},
        [1, 2, {"a": None}],
        "text",
        None,
    ],
)
def test_what_is_read_is_what_was_written(document):
    stored = pack(document)
    assert stored[0] == 1
    assert unpack(stored) == document
    assert json.dumps(unpack(stored)) == json.dumps(document)  # key order too


def test_the_pre_fill_is_stored_decoded_so_it_compresses_as_text():
    encoded = base64.b64encode(HTML.encode()).decode()
    report = _report({"contentType": "text/html; charset=utf-8", "data": encoded})
    stored = pack(report)
    inner = zlib.decompressobj(15, zdict=DICTIONARY_1.read_bytes())
    plain = inner.decompress(stored[1:]) + inner.flush()
    assert HTML.encode() in plain and encoded.encode() not in plain
    # Smaller than the same deflate (same dictionary) of the JSON with its base64 left in.
    with_base64 = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_1.read_bytes())
    text = json.dumps(report, separators=(",", ":")).encode()
    assert len(stored) < len(with_base64.compress(text) + with_base64.flush())


def test_a_typical_observation_packs_to_a_fraction_of_its_text():
    """The dictionary pays for itself on a small document: an Observation shaped as we produce them packs to
    less than a quarter of its JSON (zlib without the dictionary: over a half)."""
    observation = {
        "resourceType": "Observation",
        "id": "4b0f6b7e-2a1e-4c1e-9a53-0d8a2f2c6d11",
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "imaging",
                        "display": "Imaging",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://immunorad.org/fhir/CodeSystem/immunorad", "code": "irecist"}]},
        "effectiveDateTime": "2026-03-02",
    }
    text = json.dumps(observation, separators=(",", ":")).encode()
    assert len(pack(observation)) * 4 < len(text)
    assert len(zlib.compress(text, 6)) * 2 > len(text)


@pytest.mark.parametrize("stored", [b"", b"\x00abc", b"{}", b"\x02" + b"x" * 10])
def test_an_unknown_format_is_refused(stored):
    with pytest.raises(PackedJSONError, match="unknown packed JSON format"):
        unpack(stored)


def test_a_damaged_value_is_refused_not_misread():
    stored = pack({"resourceType": "Observation", "id": "o1", "note": [{"text": "x" * 500}]})
    with pytest.raises(PackedJSONError, match="damaged"):
        unpack(stored[:-6])
    with pytest.raises(PackedJSONError, match="damaged"):
        unpack(stored[:5] + bytes([stored[5] ^ 0xFF]) + stored[6:])


def test_the_dictionary_is_the_one_format_1_was_written_with():
    """Stored values need it byte for byte: it may never change (a new one is a new format)."""
    assert hashlib.sha256(DICTIONARY_1.read_bytes()).hexdigest() == DICTIONARY_1_SHA256
    assert len(DICTIONARY_1.read_bytes()) == 32 * 1024
