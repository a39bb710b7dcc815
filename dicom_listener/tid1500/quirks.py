"""Producer quirks absorbed by the TID 1500 reader (``docs/interop-notes.md`` §1.4, ``tests/fixtures/ohif-dcmjs/README.md``).

- dcmjs / OHIF: free-text codes carrying the lesion label (quirk 3), the tool name as Tracking Identifier (quirk 2),
  a default Tracking Identifier naming no lesion; lengths in pixels are recomputed in ``geometry``;
- a root without the TID 1500 Content Template Sequence highdicom needs, and a (retired) big endian SR;
- which producer wrote a report (highdicom, dcmjs, @cornerstonejs/adapters, dcmqi), as the report's notes say.
"""

from __future__ import annotations

import pickle
from typing import TypeVar

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_listener.tid1500.model import ParsedGroup

DCMJS_FREE_TEXT_CODE_VALUES = frozenset({"CS3DTEXT", "CORNERSTONEFREETEXT"})
"""dcmjs / OHIF free-text codes (scheme ``99dcmjs`` or ``CORNERSTONEJS``): their meaning is a lesion
label, not a concept (fixtures README quirk 3). Recognised by code value in any scheme."""
TOOL_NAME_PREFIXES = ("Cornerstone3DTools@", "cornerstoneTools@")
"""OHIF writes the measuring tool's name as the Tracking Identifier (fixtures README quirk 2)."""
DCMJS_DEFAULT_IDENTIFIERS = frozenset({"web annotation"})

_Cloned = TypeVar("_Cloned")


def _clone(sequence: _Cloned) -> _Cloned:
    """A deep copy of an in-memory sequence. A pickle round trip of our own object (never of received
    bytes) is about three times faster than ``copy.deepcopy`` on pydicom datasets."""
    return pickle.loads(pickle.dumps(sequence, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 -- a round trip of our own in-memory object, never of received bytes


def content_copy(ds: Dataset, notes: list[str]) -> Dataset:
    """What highdicom's ``from_dataset`` reads (SOP class, root item, transfer syntax), with the content
    tree deep-copied: highdicom converts it in place and the caller's dataset must stay intact. The
    header (whose evidence sequences may list hundreds of instances) is not copied."""
    work = Dataset()
    work.SOPClassUID = ds.SOPClassUID
    work.ValueType = ds.ValueType
    work.ConceptNameCodeSequence = _clone(ds.ConceptNameCodeSequence)
    work.ContinuityOfContent = ds.get("ContinuityOfContent", "SEPARATE")
    work.ContentSequence = _clone(ds.ContentSequence)
    templates = ds.get("ContentTemplateSequence") or []
    if templates and str(templates[0].get("TemplateIdentifier", "")) == "1500":
        work.ContentTemplateSequence = _clone(templates)
    else:
        # interop-notes §2.2: highdicom builds a MeasurementReport only for a root with TID "1500".
        template = Dataset()
        template.MappingResource = "DCMR"
        template.TemplateIdentifier = "1500"
        work.ContentTemplateSequence = [template]
        notes.append("root (126000, DCM) had no TID 1500 ContentTemplateSequence: read as TID 1500")
    # Values are decoded in memory already; highdicom only checks that the declared syntax is little
    # endian, so a (retired) big endian SR is read from its decoded values.
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and not pydicom.uid.UID(syntax).is_little_endian:
        notes.append("big endian transfer syntax: read from the decoded values")
    work.file_meta = FileMetaDataset()
    work.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return work


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
