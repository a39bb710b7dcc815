"""Producer quirks absorbed by the TID 1500 reader (``docs/interop-notes.md`` §1.4, ``tests/fixtures/ohif-dcmjs/README.md``).

- dcmjs / OHIF: free-text codes carrying the lesion label (quirk 3), the tool name as Tracking Identifier (quirk 2),
  a default Tracking Identifier naming no lesion; lengths in pixels are recomputed in ``geometry``;
- a root without the TID 1500 Content Template Sequence, and a (retired) big endian SR;
- which producer wrote a report (highdicom, dcmjs, @cornerstonejs/adapters, dcmqi), as the report's notes say.
"""

from __future__ import annotations

import pydicom
from pydicom.dataset import Dataset

from dicom_listener.tid1500.model import ParsedGroup

DCMJS_FREE_TEXT_CODE_VALUES = frozenset({"CS3DTEXT", "CORNERSTONEFREETEXT"})
"""dcmjs / OHIF free-text codes (scheme ``99dcmjs`` or ``CORNERSTONEJS``): their meaning is a lesion
label, not a concept (fixtures README quirk 3). Recognised by code value in any scheme."""
TOOL_NAME_PREFIXES = ("Cornerstone3DTools@", "cornerstoneTools@")
"""OHIF writes the measuring tool's name as the Tracking Identifier (fixtures README quirk 2)."""
DCMJS_DEFAULT_IDENTIFIERS = frozenset({"web annotation"})


def producer_notes(ds: Dataset) -> list[str]:
    """What a report's root says of its writer that the reader works around (interop-notes §2.2):
    - no TID 1500 Content Template Sequence on the root (some producers leave it out): read as TID 1500 all the same;
    - a (retired) big endian transfer syntax: pydicom has decoded the values, which are read as they are."""
    notes: list[str] = []
    templates = ds.get("ContentTemplateSequence") or []
    if not templates or str(templates[0].get("TemplateIdentifier", "")) != "1500":
        notes.append("root (126000, DCM) had no TID 1500 ContentTemplateSequence: read as TID 1500")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and not pydicom.uid.UID(syntax).is_little_endian:
        notes.append("big endian transfer syntax: read from the decoded values")
    return notes


def guess_producer(ds: Dataset, groups: tuple[ParsedGroup, ...]) -> str:
    """``highdicom``, ``dcmjs``, ``cornerstone-adapters``, ``dcmqi`` or ``other`` from the file meta's
    Implementation Version Name, the equipment attributes and the tracking identifiers' shape."""
    meta = getattr(ds, "file_meta", None)
    implementation = str(meta.get("ImplementationVersionName", "") if meta is not None else "").lower()
    equipment = " ".join(
        str(ds.get(keyword, "") or "") for keyword in ("Manufacturer", "ManufacturerModelName", "SoftwareVersions")
    ).lower()
    if implementation.startswith("highdicom"):
        return "highdicom"
    tool_named = any(g.tracking_identifier and is_tool_name(g.tracking_identifier) for g in groups)
    if implementation.startswith("dcmjs") or tool_named:
        # @cornerstonejs/adapters (current OHIF) moves the label into a TEXT Comment (quirk 3).
        if any(g.identity_source == "comment-label" for g in groups):
            return "cornerstone-adapters"
        return "dcmjs"
    if "dcmqi" in equipment or "qiicr" in equipment:
        return "dcmqi"
    return "other"


def is_tool_name(text: str) -> bool:
    """A Tracking Identifier that names the dcmjs/OHIF tool (or dcmjs's default), not a lesion."""
    text = text.strip()
    return text.startswith(TOOL_NAME_PREFIXES) or "@^" in text or text in DCMJS_DEFAULT_IDENTIFIERS
