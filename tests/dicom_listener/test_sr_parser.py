"""TID 1500 parsing against real OHIF/dcmjs output (``tests/fixtures/ohif-dcmjs``) and malformed input.

The fixtures' ground truth is in their README: three lesions, T1 liver 30/25 → 21/18 mm, T2 lung
40/30 → 28/21 mm, N1 node 25/20 → 20/14 mm; RECIST sums 90 → 63 mm (exactly −30 %).
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import struct
from decimal import Decimal
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_listener.tid1500.model import Coded, ParsedReport, SRParseError
from dicom_listener.tid1500.reader import parse_measurement_report, parse_measurement_report_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ohif-dcmjs"
LABELS = ("label:T1 liver", "label:T2 lung", "label:N1 node")


def _read(name: str) -> pydicom.FileDataset:
    return pydicom.dcmread(FIXTURES / "sr" / name)


@pytest.fixture(scope="module")
def images() -> dict[str, Dataset]:
    found = {}
    for path in sorted((FIXTURES / "images").glob("*.dcm")):
        image = pydicom.dcmread(path, stop_before_pixels=True)
        found[image.SOPInstanceUID] = image
    assert len(found) == 6
    return found


@pytest.fixture(scope="module")
def parsed(images) -> dict[str, ParsedReport]:
    """All four fixture reports, flavour A given the CT headers (its lengths are in px)."""
    return {
        path.stem: parse_measurement_report(pydicom.dcmread(path), images)
        for path in sorted((FIXTURES / "sr").glob("*.dcm"))
    }


def _by_identity(report: ParsedReport) -> dict[str, object]:
    return {g.identity_key: g for g in report.groups}


def recist_sum(report: ParsedReport) -> Decimal:
    """RECIST 1.1 sum of diameters: long axis for non-nodal lesions, short axis for nodes."""
    return sum((g.short_axis_mm if g.nodal else g.long_axis_mm) for g in report.groups)


# ---------------------------------------------------------------------------------------------
# Flavour A: dcmjs 0.52.2 in-package adapter (label in a free-text Finding, lengths in "px")


def test_flavour_a_identity_is_the_free_text_finding_label(parsed):
    report = parsed["baseline_dcmjs-adapter"]
    assert [g.identity_key for g in report.groups] == list(LABELS)
    assert {g.identity_source for g in report.groups} == {"finding-label"}
    assert [g.label for g in report.groups] == ["T1 liver", "T2 lung", "N1 node"]
    # The tracking UID is kept for the record but is not the identity (regenerated at every export).
    assert report.groups[0].tracking_uid == "2.25.755841775663420468846734077087510679516"
    assert report.groups[0].tracking_identifier == "Cornerstone3DTools@^0.1.0:Bidirectional"
    # The free-text code is a label, not a clinical finding.
    assert report.groups[0].finding is None


def test_flavour_a_header_is_empty_and_never_falls_back_to_export_dates(parsed):
    report = parsed["baseline_dcmjs-adapter"]
    raw = _read("baseline_dcmjs-adapter.dcm")
    assert raw.ContentDate == "20261124" and raw.SeriesDate == "20261124"  # export time, must be ignored
    assert report.patient_id is None
    assert report.study_date is None
    assert report.study_instance_uid == raw.StudyInstanceUID
    assert report.sop_instance_uid == raw.SOPInstanceUID
    assert report.series_instance_uid == raw.SeriesInstanceUID
    assert report.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.22"
    assert report.producer == "dcmjs"


def test_flavour_a_px_lengths_are_recomputed_from_scoord_and_pixel_spacing(parsed):
    # T1: end points (14.5456, 34.9791)–(20.4544, 36.0209) px × 5 mm = √(29.544² + 5.209²) = 30.000 mm.
    groups = _by_identity(parsed["baseline_dcmjs-adapter"])
    t1, t2, n1 = (groups[key] for key in LABELS)
    assert (t1.long_axis_mm, t1.short_axis_mm) == (Decimal("30.0"), Decimal("25.0"))
    assert (t2.long_axis_mm, t2.short_axis_mm) == (Decimal("40.0"), Decimal("30.0"))
    assert (n1.long_axis_mm, n1.short_axis_mm) == (Decimal("25.0"), Decimal("20.0"))
    assert t1.rejected_reason is None
    assert any("pixels" in note and "recomputed" in note for note in t1.notes)
    assert t1.referenced_sop_instance_uids == ("2.25.282984228962231949868025928279466475725",)


def test_flavour_a_without_images_is_rejected_never_taken_as_mm():
    report = parse_measurement_report(_read("baseline_dcmjs-adapter.dcm"))
    for group in report.groups:
        assert group.long_axis_mm is None and group.short_axis_mm is None
        assert group.rejected_reason is not None and "not available" in group.rejected_reason
        assert group.identity_key in LABELS  # identity survives for the audit trail


def test_px_with_only_unrelated_images_is_rejected(images):
    unrelated = {uid: image for uid, image in images.items() if image.StudyDate == "20240311"}
    report = parse_measurement_report(_read("baseline_dcmjs-adapter.dcm"), unrelated)
    assert all(g.rejected_reason and g.long_axis_mm is None for g in report.groups)


# ---------------------------------------------------------------------------------------------
# Flavour B: @cornerstonejs/adapters 5.14.0 (label in a TEXT Comment, lengths in mm)


def test_flavour_b_identity_is_the_comment_label(parsed):
    report = parsed["followup_cornerstone-adapters"]
    assert [g.identity_key for g in report.groups] == list(LABELS)
    assert {g.identity_source for g in report.groups} == {"comment-label"}
    assert report.producer == "cornerstone-adapters"


def test_flavour_b_header_and_float_noise(parsed):
    baseline, followup = parsed["baseline_cornerstone-adapters"], parsed["followup_cornerstone-adapters"]
    assert baseline.patient_id == "FIXT-001" and followup.patient_id == "FIXT-001"
    assert baseline.study_date == dt.date(2024, 1, 8)
    assert followup.study_date == dt.date(2024, 3, 11)
    t1 = _by_identity(baseline)["label:T1 liver"]
    # Stored DS "24.9999999999999" (dcmjs cuts to 16 characters) → 25.0 at 0.1 mm.
    assert t1.short_axis_mm == Decimal("25.0") and t1.long_axis_mm == Decimal("30.0")
    followup_t1 = _by_identity(followup)["label:T1 liver"]
    assert (followup_t1.long_axis_mm, followup_t1.short_axis_mm) == (Decimal("21.0"), Decimal("18.0"))
    assert all(g.rejected_reason is None for g in baseline.groups + followup.groups)


@pytest.mark.parametrize("flavour", ["dcmjs-adapter", "cornerstone-adapters"])
def test_node_is_nodal_from_its_contains_finding_site(parsed, flavour):
    groups = _by_identity(parsed[f"baseline_{flavour}"])
    node = groups["label:N1 node"]
    assert node.nodal is True
    assert node.finding_sites == (Coded("59441001", "SCT", "Lymph node"),)
    assert groups["label:T1 liver"].nodal is False and groups["label:T1 liver"].finding_sites == ()


@pytest.mark.parametrize("flavour", ["dcmjs-adapter", "cornerstone-adapters"])
def test_recist_sums_are_90_and_63_mm_an_exact_30_percent_decrease(parsed, flavour):
    baseline, followup = parsed[f"baseline_{flavour}"], parsed[f"followup_{flavour}"]
    # Baseline 30 (T1 long) + 40 (T2 long) + 20 (N1 short) = 90; follow-up 21 + 28 + 14 = 63.
    assert recist_sum(baseline) == Decimal("90.0")
    assert recist_sum(followup) == Decimal("63.0")
    assert (recist_sum(followup) - recist_sum(baseline)) * 100 / recist_sum(baseline) == Decimal("-30")


@pytest.mark.parametrize("flavour", ["dcmjs-adapter", "cornerstone-adapters"])
def test_lesions_match_across_timepoints_by_label_not_by_tracking_uid(parsed, flavour):
    baseline, followup = parsed[f"baseline_{flavour}"], parsed[f"followup_{flavour}"]
    assert {g.identity_key for g in baseline.groups} == {g.identity_key for g in followup.groups} == set(LABELS)
    assert not {g.tracking_uid for g in baseline.groups} & {g.tracking_uid for g in followup.groups}


# ---------------------------------------------------------------------------------------------
# Variants of the real files (one item changed each)


def _group_items(ds: Dataset, index: int) -> list[Dataset]:
    measurements = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    return measurements.ContentSequence[index].ContentSequence


def _item(items, code_value: str) -> Dataset:
    return next(i for i in items if i.ConceptNameCodeSequence[0].CodeValue == code_value)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


@pytest.mark.filterwarnings("ignore:The value length .* exceeds the maximum length of 16")
def test_free_text_finding_site_is_a_label_not_anatomy():
    # OHIF's CORNERSTONEFREETEXT is 19 characters, longer than SH allows: real files carry it anyway.
    ds = _read("baseline_cornerstone-adapters.dcm")
    items = _group_items(ds, 2)  # N1 node: already has the Lymph node site
    items.remove(_item(items, "121106"))  # no Comment: the label is only in the "site"
    site = Dataset()
    site.RelationshipType, site.ValueType = "CONTAINS", "CODE"
    site.ConceptNameCodeSequence = [_code("363698007", "SCT", "Finding Site")]
    site.ConceptCodeSequence = [_code("CORNERSTONEFREETEXT", "CORNERSTONEJS", "N1 node")]
    items.insert(2, site)  # before the anatomic site, as OHIF orders them
    group = parse_measurement_report(ds).groups[2]
    assert (group.identity_key, group.identity_source) == ("label:N1 node", "finding-site-label")
    assert group.finding_sites == (Coded("59441001", "SCT", "Lymph node"),)
    assert group.nodal is True


def test_legacy_cornerstone_tool_name_and_length_tool():
    ds = _read("baseline_cornerstone-adapters.dcm")
    items = _group_items(ds, 1)
    _item(items, "112039").TextValue = "cornerstoneTools@^4.0.0:Length"
    _item(items, "103339001").ConceptNameCodeSequence = [_code("410668003", "SCT", "Length")]
    items.remove(_item(items, "103340004"))
    group = parse_measurement_report(ds).groups[1]
    assert group.identity_key == "label:T2 lung"
    assert group.long_axis_mm == Decimal("40.0")  # a Length is the long axis when there is no Long Axis
    assert group.short_axis_mm is None


def test_no_label_anywhere_gives_no_identity():
    ds = _read("baseline_cornerstone-adapters.dcm")
    items = _group_items(ds, 0)
    items.remove(_item(items, "121106"))
    group = parse_measurement_report(ds).groups[0]
    assert (group.identity_key, group.identity_source, group.label) == (None, "none", None)
    assert group.long_axis_mm == Decimal("30.0")  # measured, but never matched by position or size


def test_stable_tracking_uid_is_the_identity_for_other_producers():
    ds = _read("baseline_cornerstone-adapters.dcm")
    items = _group_items(ds, 0)
    _item(items, "112039").TextValue = "Target lesion 1"
    group = parse_measurement_report(ds).groups[0]
    assert group.identity_key == "2.25.520875145784135369163911109401397388543"
    assert group.identity_source == "tracking-uid"
    assert group.label == "Target lesion 1"


def test_an_invalid_tracking_uid_is_never_an_identity():
    ds = _read("baseline_cornerstone-adapters.dcm")
    items = _group_items(ds, 0)
    _item(items, "112039").TextValue = "Target lesion 1"
    _item(items, "112040").UID = "2.25." + "1" * 70  # 75 characters: a UI value holds at most 64
    group = parse_measurement_report(ds).groups[0]
    assert (group.identity_key, group.identity_source) == ("label:Target lesion 1", "tracking-identifier")
    assert "Tracking UID is not a valid UID: not used as identity" in group.notes


@pytest.mark.parametrize("label", ["x" * 129, "Target\x00lesion 1"])
def test_an_overlong_or_binary_label_is_never_an_identity(label):
    ds = _read("baseline_cornerstone-adapters.dcm")
    items = _group_items(ds, 0)
    _item(items, "112039").TextValue = label
    items.remove(_item(items, "112040"))
    group = parse_measurement_report(ds).groups[0]
    # The next label source of contract §3 takes over (this report also has a Comment, "T1 liver").
    assert (group.identity_key, group.identity_source, group.label) == ("label:T1 liver", "comment-label", "T1 liver")
    assert any("not used as a lesion label" in note for note in group.notes)


@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [("cm", "3.05", Decimal("30.5")), ("um", "30449.9", Decimal("30.4")), ("mm", "30.04", Decimal("30.0"))],
)
def test_length_units_are_converted_to_mm(unit, value, expected):
    ds = _read("baseline_cornerstone-adapters.dcm")
    measured = _item(_group_items(ds, 0), "103339001").MeasuredValueSequence[0]
    measured.MeasurementUnitsCodeSequence[0].CodeValue = unit
    measured.NumericValue = value
    assert parse_measurement_report(ds).groups[0].long_axis_mm == expected


def test_unknown_length_unit_rejects_the_group():
    ds = _read("baseline_cornerstone-adapters.dcm")
    _item(_group_items(ds, 0), "103339001").MeasuredValueSequence[0].MeasurementUnitsCodeSequence[
        0
    ].CodeValue = "[in_i]"
    group = parse_measurement_report(ds).groups[0]
    assert group.long_axis_mm is None
    assert group.rejected_reason == "Long Axis in unknown unit '[in_i]'"
    assert group.short_axis_mm == Decimal("25.0")


def test_root_without_template_is_read_and_the_callers_dataset_is_untouched(images):
    ds = _read("followup_dcmjs-adapter.dcm")
    del ds.ContentTemplateSequence
    before = copy.deepcopy(ds)
    report = parse_measurement_report(ds, images)
    assert [g.long_axis_mm for g in report.groups] == [Decimal("21.0"), Decimal("28.0"), Decimal("20.0")]
    assert any("ContentTemplateSequence" in note for note in report.notes)
    assert ds == before and "ContentTemplateSequence" not in ds
    assert type(ds) is pydicom.FileDataset and type(ds.ContentSequence[0]) is Dataset


def test_big_endian_report_is_read_from_its_decoded_values():
    ds = _read("followup_cornerstone-adapters.dcm")
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    report = parse_measurement_report_file(io.BytesIO(buffer.getvalue()))
    assert recist_sum(report) == Decimal("63.0")
    assert "big endian transfer syntax: read from the decoded values" in report.notes


def test_shared_label_in_one_report_is_noted():
    ds = _read("baseline_cornerstone-adapters.dcm")
    _item(_group_items(ds, 1), "121106").TextValue = "T1 liver"
    report = parse_measurement_report(ds)
    assert "2 groups share the identity 'label:T1 liver'" in report.notes


# ---------------------------------------------------------------------------------------------
# Malformed input


def test_a_ct_image_is_not_a_measurement_report():
    ct = pydicom.dcmread(FIXTURES / "images" / "baseline_ct_1.dcm")
    with pytest.raises(SRParseError, match="CT Image Storage"):
        parse_measurement_report(ct)


def test_garbage_content_sequence_raises_sr_parse_error():
    ds = _read("baseline_dcmjs-adapter.dcm")
    junk = Dataset()
    junk.PatientName = "not^an^item"
    ds.ContentSequence = [junk]
    with pytest.raises(SRParseError, match="content tree cannot be read"):
        parse_measurement_report(ds)


def test_num_without_measured_value_raises_sr_parse_error():
    ds = _read("baseline_dcmjs-adapter.dcm")
    del _item(_group_items(ds, 0), "103339001").MeasuredValueSequence
    with pytest.raises(SRParseError):
        parse_measurement_report(ds)


def test_another_document_title_is_not_tid_1500():
    ds = _read("baseline_dcmjs-adapter.dcm")
    ds.ConceptNameCodeSequence[0].CodeValue = "18748-4"
    with pytest.raises(SRParseError, match="not TID 1500"):
        parse_measurement_report(ds)


def test_not_a_dataset_raises_sr_parse_error():
    with pytest.raises(SRParseError):
        parse_measurement_report(b"DICM")  # type: ignore[arg-type]  # deliberately the wrong type: it must be refused


@pytest.mark.parametrize("keep", [3000, 6000, 9000])
def test_truncated_file_raises_sr_parse_error(keep):
    raw = (FIXTURES / "sr" / "baseline_dcmjs-adapter.dcm").read_bytes()
    with pytest.raises((OSError, EOFError, ValueError, struct.error)):
        pydicom.dcmread(io.BytesIO(raw[:keep]))  # pydicom itself cannot read it...
    with pytest.raises(SRParseError, match="not a readable DICOM file"):
        parse_measurement_report_file(io.BytesIO(raw[:keep]))  # ...and we say so in our own terms


def test_file_cut_inside_the_file_meta_has_no_sop_class():
    raw = (FIXTURES / "sr" / "baseline_dcmjs-adapter.dcm").read_bytes()
    assert "SOPClassUID" not in pydicom.dcmread(io.BytesIO(raw[:200]))  # pydicom reads what is there
    with pytest.raises(SRParseError, match="no SOP Class UID"):
        parse_measurement_report_file(io.BytesIO(raw[:200]))


def test_file_reader_parses_a_whole_file():
    report = parse_measurement_report_file(FIXTURES / "sr" / "followup_cornerstone-adapters.dcm")
    assert recist_sum(report) == Decimal("63.0")


def test_invalid_study_date_is_none_with_a_note():
    ds = _read("baseline_cornerstone-adapters.dcm")
    ds.StudyDate = "20240230"
    report = parse_measurement_report(ds)
    assert report.study_date is None
    assert any("20240230" in note for note in report.notes)
