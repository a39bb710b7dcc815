"""The shape of an SR content tree, checked, and its TID 1500 Measurement Groups, found, on the received dataset.

Until issue 18, highdicom's ``from_dataset`` converted the whole tree into its own content item classes and
``MeasurementReport`` picked the groups; that conversion was half of the listener's CPU per SR (``bench/RESULTS.md``),
spent before the acknowledgement, where contract §3 keeps the parse (a report that cannot be read is refused with
``0xC000``). The reader only ever looks at the items as pydicom datasets, so this module makes the same checks and
the same selection without converting, copying or modifying anything:

- every content item: a known Value Type; a known Relationship Type (every item below the root); a Concept Name
  unless its Value Type may go without one (IMAGE, COMPOSITE, SCOORD, SCOORD3D, TCOORD, WAVEFORM); the attributes
  its Value Type requires (PS3.3 C.17.3, as highdicom's ``_assert_value_type`` lists them); every coded concept
  it carries (concept name, coded value, units, qualifier) with exactly one Code Value (short, long or URN), a
  Coding Scheme Designator and a Code Meaning (highdicom's ``CodedConcept.from_dataset``);
- the groups: the CONTAINERs named Measurement Group (125007, DCM) directly under the first Imaging Measurements
  (126010, DCM) below the root, ordered as highdicom's ``get_planar_roi_measurement_groups() +
  get_volumetric_roi_measurement_groups() + get_image_measurement_groups()`` return them (TID 1410, 1411, 1501 by
  the template identifier, else by the ROI items the group holds).

``tests/dicom_listener/test_sr_structure.py`` holds highdicom as the oracle: where highdicom reads a report, the
groups and everything parsed from them are the same. Deliberate differences, each where highdicom refuses a tree
the standard allows: an empty Measured Value Sequence (Type 2: a NUM without a value, which the reader notes and
ignores) and an empty Numeric Value Qualifier Code Sequence (Type 3) are read, not refused; a WAVEFORM item
(highdicom 0.28 checks it as an IMAGE and always refuses it) is read; concept names match by code value and
scheme, whatever scheme version a producer writes (as everywhere else in the reader, ``codes.plain``).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from dicom_listener.tid1500.codes import IMAGING_MEASUREMENTS, MEASUREMENT_GROUP, plain
from dicom_listener.tid1500.model import SRParseError

__all__ = ["check_content_tree", "measurement_groups"]

REQUIRED = {
    "CODE": ("ConceptCodeSequence",),
    "COMPOSITE": ("ReferencedSOPSequence",),
    "CONTAINER": ("ContinuityOfContent",),
    "DATE": ("Date",),
    "DATETIME": ("DateTime",),
    "IMAGE": ("ReferencedSOPSequence",),
    "NUM": ("MeasuredValueSequence",),
    "PNAME": ("PersonName",),
    "SCOORD": ("GraphicType", "GraphicData"),
    "SCOORD3D": ("GraphicType", "GraphicData"),
    "TCOORD": ("TemporalRangeType",),
    "TIME": ("Time",),
    "TEXT": ("TextValue",),
    "UIDREF": ("UID",),
    "WAVEFORM": ("ReferencedSOPSequence",),
}
"""What each Value Type must carry (PS3.3 C.17.3.2, as highdicom checks it): presence; an empty Type 2 value is allowed."""

NAME_OPTIONAL = frozenset({"COMPOSITE", "IMAGE", "SCOORD", "SCOORD3D", "TCOORD", "WAVEFORM"})
"""Value Types whose Concept Name may be absent (highdicom then names them Source, 260753009 SCT)."""

RELATIONSHIP_TYPES = frozenset(
    {
        "CONTAINS",
        "HAS PROPERTIES",
        "HAS OBS CONTEXT",
        "HAS ACQ CONTEXT",
        "INFERRED FROM",
        "SELECTED FROM",
        "HAS CONCEPT MOD",
    }
)
"""PS3.3 C.17.3.2.4, the values highdicom's ``RelationshipTypeValues`` knows."""

CODE_VALUE_KEYWORDS = ("CodeValue", "LongCodeValue", "URNCodeValue")

IMAGE_REGION = Code("111030", "DCM", "Image Region")
VOLUME_SURFACE = Code("121231", "DCM", "Volume Surface")
REFERENCED_SEGMENT = Code("121191", "DCM", "Referenced Segment")
REFERENCED_SEGMENTATION_FRAME = Code("121214", "DCM", "Referenced Segmentation Frame")
REGION_IN_SPACE = Code("130488", "DCM", "Region in Space")


def check_content_tree(root: Dataset) -> None:
    """Raise ``SRParseError`` naming the first content item (by its position, e.g. ``1.3.2``) whose shape is not an
    SR content item's; the root is the document's own CONTAINER (no Relationship Type)."""
    for path, item, is_root in _walk(root):
        problem = _problem(item, is_root)
        if problem is not None:
            where = "the root" if is_root else f"content item {path}"
            raise SRParseError(f"the TID 1500 content tree cannot be read: {where} {problem}")


def measurement_groups(root: Dataset) -> list[Dataset]:
    """The Measurement Group CONTAINERs of a checked tree, in highdicom's order (planar, volumetric, image); a group
    with one Region in Space item counts as both planar and volumetric, as highdicom returns it from both getters."""
    imaging_measurements = next(
        (item for item in root.ContentSequence if _is(item, "CONTAINER", IMAGING_MEASUREMENTS)), None
    )
    if imaging_measurements is None:
        return []
    planar: list[Dataset] = []
    volumetric: list[Dataset] = []
    image: list[Dataset] = []
    for group in imaging_measurements.get("ContentSequence", []):
        if not _is(group, "CONTAINER", MEASUREMENT_GROUP):
            continue
        templates = group.get("ContentTemplateSequence") or []
        if templates and "TemplateIdentifier" in templates[0]:
            # By the template alone, as highdicom: another identifier (even "") is no group of these three.
            {"1410": planar, "1411": volumetric, "1501": image}.get(str(templates[0].TemplateIdentifier), []).append(
                group
            )
            continue
        is_planar, is_volumetric = _roi_kinds(group)
        if is_planar:
            planar.append(group)
        if is_volumetric:
            volumetric.append(group)
        if not is_planar and not is_volumetric:
            image.append(group)
    return planar + volumetric + image


def _walk(root: Dataset) -> Iterator[tuple[str, Dataset, bool]]:
    """Every content item of the tree, depth first, with its position; without recursion (a fuzzer's deep tree)."""
    yield "", root, True
    stack: list[tuple[str, Dataset]] = [("", root)]
    while stack:
        path, parent = stack.pop()
        children = parent.get("ContentSequence") or []
        for number, child in reversed(list(enumerate(children, 1))):
            stack.append((f"{path}.{number}" if path else str(number), child))
        if parent is not root:
            yield path, parent, False


def _problem(item: Dataset, is_root: bool) -> str | None:
    if not isinstance(item, Dataset):
        return "is not a dataset"
    if "ValueType" not in item:
        return "has no Value Type"
    value_type = str(item.ValueType)
    if value_type not in REQUIRED:
        return f"has an unknown Value Type {value_type[:16]!r}"
    if is_root:
        if value_type != "CONTAINER":
            return "is not a CONTAINER"
    elif "RelationshipType" not in item:
        return "has no Relationship Type"
    elif str(item.RelationshipType) not in RELATIONSHIP_TYPES:
        return f"has an unknown Relationship Type {str(item.RelationshipType)[:20]!r}"
    for keyword in REQUIRED[value_type] if not is_root else ():
        if keyword not in item:
            return f"({value_type}) lacks {keyword}"
    if "ConceptNameCodeSequence" in item:
        problem = _code_problem(item.ConceptNameCodeSequence, "Concept Name")
        if problem is not None:
            return problem
    elif value_type not in NAME_OPTIONAL:
        return f"({value_type}) has no Concept Name"
    if value_type == "CODE":
        return _code_problem(item.ConceptCodeSequence, "coded value")
    if value_type == "NUM":
        measured = item.MeasuredValueSequence
        if measured and "MeasurementUnitsCodeSequence" not in measured[0]:
            return "(NUM) has a measured value without units"
        if measured:
            problem = _code_problem(measured[0].MeasurementUnitsCodeSequence, "units")
            if problem is not None:
                return problem
        qualifier = item.get("NumericValueQualifierCodeSequence")
        if qualifier:
            return _code_problem(qualifier, "numeric value qualifier")
    return None


def _code_problem(sequence: object, what: str) -> str | None:
    """highdicom's ``CodedConcept.from_dataset`` on the sequence's first item."""
    if not sequence:
        return f"has an empty {what} code sequence"
    code = sequence[0]  # type: ignore[index]  # a pydicom Sequence, checked non-empty
    if sum(keyword in code for keyword in CODE_VALUE_KEYWORDS) != 1:
        return f"has a {what} code without exactly one Code Value"
    for keyword in ("CodeMeaning", "CodingSchemeDesignator"):
        if keyword not in code:
            return f"has a {what} code without {keyword}"
    return None


def _is(item: Dataset, value_type: str, name: Code) -> bool:
    return (
        str(item.get("ValueType", "")) == value_type
        and bool(item.get("ConceptNameCodeSequence"))
        and plain(item.ConceptNameCodeSequence[0]) == name
    )


def _roi_kinds(group: Dataset) -> tuple[bool, bool]:
    """highdicom's ``_contains_planar_rois`` and ``_contains_volumetric_rois``, from its ``_count_roi_items``."""
    region = region_3d = surface = segment = segmentation_frame = region_in_space = 0
    for item in group.get("ContentSequence", []):
        value_type = str(item.get("ValueType", ""))
        if not item.get("ConceptNameCodeSequence"):
            continue  # highdicom names it Source: none of the ROI concepts
        name = plain(item.ConceptNameCodeSequence[0])
        if name == IMAGE_REGION:
            region += value_type == "SCOORD"
            region_3d += value_type == "SCOORD3D"
        elif name == VOLUME_SURFACE:
            surface += value_type == "SCOORD3D"
        elif name == REFERENCED_SEGMENT:
            segment += value_type == "IMAGE"
        elif name == REFERENCED_SEGMENTATION_FRAME:
            segmentation_frame += value_type == "IMAGE"
        elif name == REGION_IN_SPACE:
            region_in_space += value_type == "COMPOSITE"
    planar = (region + region_3d == 1 or segmentation_frame > 0 or region_in_space == 1) and (
        surface == 0 and segment == 0
    )
    volumetric = (region > 1 or segment > 0 or surface > 0 or region_in_space > 0) and (
        segmentation_frame == 0 and region_3d == 0
    )
    return planar, volumetric
