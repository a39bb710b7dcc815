"""The content tree checked and its Measurement Groups found on the received dataset (``dicom_listener.tid1500.structure``),
against highdicom as the oracle: what the reader did before issue 18's change (highdicom's ``from_dataset`` on a
copy, then ``MeasurementReport``'s own group selection).

On every seed report (ours from highdicom: Comprehensive, Comprehensive 3D, Enhanced, PET; the four OHIF/dcmjs
files) and on Hypothesis mutations of their content trees:
- where highdicom reads the tree, we read it too, and every group parses to the same ``ParsedGroup``, in the same
  order;
- where highdicom refuses it, we refuse it too, except the differences ``structure`` documents (a tree the standard
  allows that highdicom cannot convert), each checked here by what was mutated.
"""

from __future__ import annotations

import copy
import io
import itertools

import highdicom as hd
import pydicom
import pytest
from highdicom.sr.templates import _contains_planar_rois, _contains_volumetric_rois
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_listener.tid1500.codes import IMAGING_MEASUREMENTS, plain
from dicom_listener.tid1500.model import SRParseError
from dicom_listener.tid1500.reader import _parse_group, parse_measurement_report
from dicom_listener.tid1500.structure import check_content_tree, measurement_groups
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.dicom_cases import ODD_VALUES, TREE_KEYWORDS, lenient_writing, seeds

SR_SEEDS = tuple(name for name, _ in seeds() if name.startswith(("sr-", "ohif-sr-")))
DOCUMENTS = {
    "1.2.840.10008.5.1.4.1.1.88.22": hd.sr.EnhancedSR,
    "1.2.840.10008.5.1.4.1.1.88.33": hd.sr.ComprehensiveSR,
    "1.2.840.10008.5.1.4.1.1.88.34": hd.sr.Comprehensive3DSR,
}


def highdicom_groups(ds: Dataset) -> list[Dataset]:
    """The groups as the reader found them before (main at 2fa9663): highdicom converts a copy of the tree, its
    ``MeasurementReport`` selects the groups, planar then volumetric then image."""
    work = Dataset()
    work.SOPClassUID = ds.SOPClassUID
    work.ValueType = ds.ValueType
    work.ConceptNameCodeSequence = copy.deepcopy(ds.ConceptNameCodeSequence)
    work.ContinuityOfContent = ds.get("ContinuityOfContent", "SEPARATE")
    work.ContentSequence = copy.deepcopy(ds.ContentSequence)
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "1500"
    work.ContentTemplateSequence = [template]
    work.file_meta = pydicom.dataset.FileMetaDataset()
    work.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report = DOCUMENTS[str(ds.SOPClassUID)].from_dataset(work, copy=False).content
    assert isinstance(report, hd.sr.MeasurementReport)
    planar, volumetric, image = [], [], []
    for item in report._find_measurement_groups():
        if item.template_id is not None:
            {"1410": planar, "1411": volumetric, "1501": image}.get(item.template_id, []).append(item)
            continue
        is_planar, is_volumetric = _contains_planar_rois(item), _contains_volumetric_rois(item)
        if is_planar:
            planar.append(item)
        if is_volumetric:
            volumetric.append(item)
        if not is_planar and not is_volumetric:
            image.append(item)
    return planar + volumetric + image


def outcome(groups: list[Dataset]) -> list[object]:
    """Each group parsed (no images: a length in px is rejected alike), or the exception it raised."""
    out: list[object] = []
    for group in groups:
        try:
            out.append(_parse_group(group, {}))
        except Exception as exc:  # noqa: BLE001 - compared, not handled: both sides must raise alike
            out.append(type(exc).__name__)
    return out


def allowed_leniency(ds: Dataset) -> str | None:
    """Why ``structure`` reads a tree highdicom refuses, when it is one of the documented differences."""
    for item in _items(ds):
        value_type = str(item.get("ValueType", ""))
        if value_type == "NUM" and "MeasuredValueSequence" in item and not item.MeasuredValueSequence:
            return "an empty Measured Value Sequence (Type 2)"
        if value_type == "NUM" and "NumericValueQualifierCodeSequence" in item:
            if not item.NumericValueQualifierCodeSequence:
                return "an empty Numeric Value Qualifier Code Sequence (Type 3)"
        if value_type == "WAVEFORM":
            return "a WAVEFORM item"
    return None


def _items(ds: Dataset):
    for item in ds.get("ContentSequence") or []:
        yield item
        yield from _items(item)


def compare(ds: Dataset) -> str:
    """'read' or 'refused' (both sides agree), or 'lenient: …' (a documented difference); fails otherwise."""
    try:
        expected = outcome(highdicom_groups(ds))
        oracle_error = None
    except Exception as exc:  # noqa: BLE001 - highdicom raises many kinds: any is a refusal
        oracle_error = exc
    try:
        check_content_tree(ds)
        actual = outcome(measurement_groups(ds))
        ours_error = None
    except SRParseError as exc:
        ours_error = exc
    if oracle_error is None:
        assert ours_error is None, f"highdicom reads it, we refused: {ours_error}"
        assert actual == expected
        return "read"
    if ours_error is not None:
        return "refused"
    reason = allowed_leniency(ds)
    assert reason is not None, (
        f"highdicom refused it ({type(oracle_error).__name__}: {oracle_error!s:.200}), we read it"
    )
    return f"lenient: {reason}"


@pytest.mark.parametrize("name", SR_SEEDS)
def test_every_seed_report_reads_as_highdicom_reads_it(name):
    ds = pydicom.dcmread(io.BytesIO(dict(seeds())[name]))
    before = copy.deepcopy(ds)
    assert compare(ds) == "read"
    groups = measurement_groups(ds)
    assert groups, "a seed without groups would compare nothing"
    assert parse_measurement_report(ds).groups == tuple(outcome(groups))
    assert ds == before, "the received dataset was modified"


@st.composite
def content_mutations(draw) -> Dataset:
    """A seed report with one to three of its content items (or their code and value items) changed: an attribute
    deleted, emptied or given an odd value, or a Value or Relationship Type swapped for another or for junk."""
    ds = pydicom.dcmread(io.BytesIO(dict(seeds())[draw(st.sampled_from(SR_SEEDS))]))
    for _ in range(draw(st.integers(1, 3))):
        nodes = [node for item in _items(ds) for node in _nodes(item)]
        node = nodes[draw(st.integers(0, len(nodes) - 1))]
        keyword = draw(st.sampled_from([k for k in KEYWORDS if k in node] or KEYWORDS))
        if keyword not in node:
            continue
        op = draw(st.sampled_from(["delete", "swap", "swap"] if keyword in SWAPPED else ["delete", "empty", "odd"]))
        with lenient_writing():
            try:
                if op == "delete":
                    del node[keyword]
                elif op == "swap":
                    node[keyword].value = draw(st.sampled_from(TYPES))
                elif op == "empty":
                    node[keyword].value = [] if node[keyword].VR == "SQ" else ""
                elif node[keyword].VR != "SQ":
                    node[keyword].value = draw(st.sampled_from(ODD_VALUES))
            except (TypeError, ValueError, AttributeError, OverflowError):
                pass
    return ds


KEYWORDS = [*TREE_KEYWORDS, "ContinuityOfContent", "LongCodeValue", "NumericValueQualifierCodeSequence"]
SWAPPED = ("ValueType", "RelationshipType")
TYPES = [
    *("CONTAINER", "NUM", "CODE", "TEXT", "UIDREF", "SCOORD", "SCOORD3D", "IMAGE", "COMPOSITE", "WAVEFORM", "DATE"),
    *("CONTAINS", "HAS PROPERTIES", "INFERRED FROM", "SELECTED FROM", "HAS CONCEPT MOD", "HAS OBS CONTEXT"),
    *("?", "OWNS", ""),
]


def _nodes(ds: Dataset) -> list[Dataset]:
    """A content item and the datasets in its sequences other than its children (codes, measured values)."""
    out = [ds]
    for element in ds:
        if element.VR == "SQ" and element.keyword != "ContentSequence":
            for item in element.value:
                out += _nodes(item)
    return out


def test_mutated_trees_are_read_or_refused_as_highdicom_does():
    seen: dict[str, int] = {}

    @fuzz_settings(300)
    @given(ds=content_mutations())
    def run(ds):
        result = compare(ds)
        seen[result.split(":")[0]] = seen.get(result.split(":")[0], 0) + 1

    run()
    # A comparison that never meets a refusal would prove nothing about the checks.
    assert seen.get("read", 0) >= 30 and seen.get("refused", 0) >= 30, seen


@pytest.mark.parametrize(
    ("mutation", "problem"),
    [
        (lambda item: item.__delattr__("RelationshipType"), "content item 1 has no Relationship Type"),
        (lambda item: setattr(item, "RelationshipType", "OWNS"), "unknown Relationship Type 'OWNS'"),
        (lambda item: setattr(item, "ValueType", "BLOB"), "unknown Value Type 'BLOB'"),
        (lambda item: item.__delattr__("ConceptNameCodeSequence"), "(CODE) has no Concept Name"),
        (lambda item: item.ConceptNameCodeSequence[0].__delattr__("CodeMeaning"), "code without CodeMeaning"),
        (lambda item: item.__delattr__("ConceptCodeSequence"), "(CODE) lacks ConceptCodeSequence"),
        (lambda item: setattr(item, "ConceptCodeSequence", []), "empty coded value code sequence"),
    ],
)
def test_each_check_names_the_item_and_its_problem(mutation, problem):
    """The first item of the OHIF/dcmjs report is Language of Content (a CODE, HAS CONCEPT MOD)."""
    ds = pydicom.dcmread(io.BytesIO(dict(seeds())["ohif-sr-baseline_dcmjs-adapter"]))
    item = ds.ContentSequence[0]
    assert str(item.ValueType) == "CODE"
    mutation(item)
    with pytest.raises(SRParseError, match="content tree cannot be read") as refused:
        check_content_tree(ds)
    assert problem in str(refused.value)
    with pytest.raises(Exception):  # noqa: B017 - highdicom refuses it too, with its own exception types
        highdicom_groups(ds)


def test_a_num_deep_in_a_group_is_named_by_its_position():
    ds = pydicom.dcmread(io.BytesIO(dict(seeds())["sr-comprehensive"]))
    paths = [
        (f"{i}.{j}.{k}", num)
        for ((i, container),) in zip(enumerate(ds.ContentSequence, 1))
        for j, group in enumerate(container.get("ContentSequence") or [], 1)
        for k, num in enumerate(group.get("ContentSequence") or [], 1)
        if str(num.get("ValueType", "")) == "NUM"
    ]
    path, num = paths[0]
    num.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodingSchemeDesignator = None
    del num.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodingSchemeDesignator
    with pytest.raises(SRParseError, match=rf"content item {path} has a units code without CodingSchemeDesignator"):
        parse_measurement_report(ds)


def test_an_empty_measured_value_is_a_num_without_a_value_not_a_refusal():
    """PS3.3 C.18.1: Measured Value Sequence is Type 2 (zero items: no value). highdicom cannot convert it; the
    reader notes the NUM and reads the rest of the group."""
    ds = pydicom.dcmread(io.BytesIO(dict(seeds())["sr-comprehensive"]))
    groups = measurement_groups(ds)
    nums = [item for item in groups[0].ContentSequence if str(item.ValueType) == "NUM"]
    name = plain(nums[0].ConceptNameCodeSequence[0])
    nums[0].MeasuredValueSequence = []
    assert compare(ds) == "lenient: an empty Measured Value Sequence (Type 2)"
    report = parse_measurement_report(ds)
    assert f"NUM ({name.value}, {name.scheme_designator}) has no numeric value: ignored" in report.groups[0].notes


def test_groups_keep_highdicoms_order_planar_volumetric_image():
    """Groups written image (TID 1501), volumetric (1411), then planar (1410) come back planar, volumetric, image,
    as highdicom's three getters return them one after another."""
    ds = pydicom.dcmread(io.BytesIO(dict(seeds())["sr-comprehensive"]))
    container = next(
        item for item in ds.ContentSequence if plain(item.ConceptNameCodeSequence[0]) == IMAGING_MEASUREMENTS
    )
    groups = [item for item in container.ContentSequence if str(item.ValueType) == "CONTAINER"]
    assert len(groups) >= 3
    for group, template in itertools.zip_longest(groups, ("1501", "1411"), fillvalue="1410"):
        group.ContentTemplateSequence[0].TemplateIdentifier = template
    assert measurement_groups(ds) == [*groups[2:], groups[1], groups[0]]
    assert compare(ds) == "read"


@pytest.mark.parametrize("name", SR_SEEDS)
def test_groups_without_a_template_identifier_are_told_apart_by_their_roi_items(name):
    """Without ContentTemplateSequence, highdicom classifies a group by its ROI items: one Image Region is planar,
    several (or a Volume Surface, a Referenced Segment) volumetric, none an image group; so do we, in its order."""
    ds = pydicom.dcmread(io.BytesIO(dict(seeds())[name]))
    groups = measurement_groups(ds)
    for group in groups:
        if "ContentTemplateSequence" in group:
            del group.ContentTemplateSequence
    assert compare(ds) == "read"
    planar = [g for g in groups if _image_regions(g) == 1]
    volumetric = [g for g in groups if _image_regions(g) > 1]
    rest = [g for g in groups if _image_regions(g) == 0]
    assert measurement_groups(ds) == planar + volumetric + rest


def test_a_group_with_two_image_regions_is_volumetric():
    ds = pydicom.dcmread(io.BytesIO(dict(seeds())["sr-comprehensive"]))
    first, second, *others = measurement_groups(ds)
    region = next(item for item in first.ContentSequence if str(item.ValueType) == "SCOORD")
    first.ContentSequence.append(copy.deepcopy(region))
    for group in (first, second, *others):
        del group.ContentTemplateSequence
    assert _image_regions(first) == 2
    found = measurement_groups(ds)
    planar = [g for g in found if _image_regions(g) == 1]
    assert planar and found[len(planar)] is first  # after every planar group, before the image groups
    assert compare(ds) == "read"


def _image_regions(group: Dataset) -> int:
    return sum(
        1
        for item in group.ContentSequence
        if str(item.ValueType) == "SCOORD" and plain(item.ConceptNameCodeSequence[0]).value == "111030"
    )


def test_the_root_must_be_a_container():
    ds = pydicom.dcmread(io.BytesIO(dict(seeds())["sr-enhanced"]))
    ds.ValueType = "TEXT"
    with pytest.raises(SRParseError, match="the root is not a CONTAINER"):
        check_content_tree(ds)
