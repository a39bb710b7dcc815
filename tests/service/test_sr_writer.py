"""Builders (real highdicom objects) and the builder → wire → parser round trip."""

from __future__ import annotations

import datetime as dt
import io
import socket
from decimal import Decimal

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from dicom_listener.tid1500.model import Coded, ParsedGroup, ParsedReport
from dicom_listener.tid1500.reader import parse_measurement_report, parse_measurement_report_file
from rules.facts import to_mm, to_suv
from service.demo.sr_writer import (
    LesionSpec,
    ReferenceRegionSpec,
    TimePointSpec,
    build_ct_image,
    build_measurement_report,
    build_pet_image,
)

STUDY_UID = "2.25.111111111111111111111111111111111111"
STUDY_DATE = dt.date(2024, 1, 8)
CT = build_ct_image(
    patient_id="IMM-001",
    patient_name="Test^Patient",
    study_instance_uid=STUDY_UID,
    study_date=STUDY_DATE,
    accession_number="ACC0001",
    birth_date=dt.date(1960, 1, 1),
    sex="F",
    pixel_spacing_mm=0.8,
)
PET = build_pet_image(
    patient_id="IMM-001",
    patient_name="Test^Patient",
    study_instance_uid=STUDY_UID,
    study_date=STUDY_DATE,
    accession_number="ACC0001",
    birth_date=dt.date(1960, 1, 1),
    sex="F",
    patient_weight_kg=82.5,
)


def on_the_wire(ds: Dataset) -> pydicom.FileDataset:
    """Serialise as a Part-10 file and read it back, as the listener will."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def roundtrip(lesions=(), references=(), **kwargs) -> ParsedReport:
    evidence = kwargs.pop("evidence", [CT, PET])
    sr = build_measurement_report(evidence=evidence, lesions=lesions, references=references, **kwargs)
    return parse_measurement_report(on_the_wire(sr))


def by_uid(report: ParsedReport) -> dict[str, ParsedGroup]:
    return {g.tracking_uid: g for g in report.groups}


# ---------------------------------------------------------------------------------------------
# Images


def test_ct_image_is_a_valid_part10_ct():
    ct = on_the_wire(CT)
    assert ct.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ct.SOPClassUID == pydicom.uid.CTImageStorage and ct.Modality == "CT"
    assert (ct.PatientID, ct.StudyInstanceUID, ct.StudyDate) == ("IMM-001", STUDY_UID, "20240108")
    assert (ct.PatientBirthDate, ct.PatientSex, ct.AccessionNumber) == ("19600101", "F", "ACC0001")
    assert [float(v) for v in ct.PixelSpacing] == [0.8, 0.8] and float(ct.SliceThickness) == 5.0
    assert ct.pixel_array.shape == (64, 64) and ct.pixel_array.min() == -1000


def test_pet_image_carries_what_suv_needs():
    pet = on_the_wire(PET)
    assert pet.SOPClassUID == pydicom.uid.PositronEmissionTomographyImageStorage and pet.Modality == "PT"
    drug = pet.RadiopharmaceuticalInformationSequence[0]
    assert drug.Radiopharmaceutical == "Fluorodeoxyglucose"
    assert float(drug.RadionuclideTotalDose) == 3.7e8 and float(drug.RadionuclideHalfLife) == 6586.2
    assert (drug.RadiopharmaceuticalStartTime, drug.RadiopharmaceuticalStartDateTime) == ("080000", "20240108080000")
    # 60 min uptake: series and acquisition start at 09:00.
    assert (pet.SeriesTime, pet.AcquisitionTime) == ("090000", "090000")
    assert float(pet.PatientWeight) == 82.5 and float(pet.PatientSize) == 1.75
    assert (pet.Units, pet.DecayCorrection, list(pet.CorrectedImage)) == ("BQML", "START", ["ATTN", "DECY"])


def test_image_arguments_are_checked():
    with pytest.raises(ValueError, match='"pixel_spacing_mm"'):
        build_ct_image(
            patient_id="X", patient_name="X", study_instance_uid=STUDY_UID, study_date=STUDY_DATE, pixel_spacing_mm=0
        )


# ---------------------------------------------------------------------------------------------
# Report header


def test_report_takes_patient_and_study_from_the_evidence_and_declares_99immrad():
    sr = on_the_wire(build_measurement_report(evidence=[CT], lesions=[LesionSpec(label="T1", long_axis_mm=10)]))
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    assert (sr.PatientID, sr.StudyInstanceUID, sr.StudyDate) == ("IMM-001", STUDY_UID, "20240108")
    assert "99IMMRAD" in [item.CodingSchemeDesignator for item in sr.CodingSchemeIdentificationSequence]
    report = parse_measurement_report(sr)
    assert (report.patient_id, report.study_date, report.producer) == ("IMM-001", STUDY_DATE, "highdicom")
    assert report.groups[0].referenced_sop_instance_uids == (CT.SOPInstanceUID,)


@pytest.mark.parametrize(
    ("document_class", "sop_class_uid"),
    [
        ("enhanced", pydicom.uid.EnhancedSRStorage),
        ("comprehensive", pydicom.uid.ComprehensiveSRStorage),
        ("comprehensive-3d", pydicom.uid.Comprehensive3DSRStorage),
    ],
)
def test_all_three_sr_classes_are_read(document_class, sop_class_uid):
    report = roundtrip(
        [LesionSpec(tracking_uid="2.25.1", long_axis_mm=36.1, short_axis_mm=21.0)], document_class=document_class
    )
    assert report.sop_class_uid == sop_class_uid
    assert (report.groups[0].long_axis_mm, report.groups[0].short_axis_mm) == (Decimal("36.1"), Decimal("21.0"))


# ---------------------------------------------------------------------------------------------
# Lesions


def test_targets_and_nodes():
    report = roundtrip(
        [
            LesionSpec(
                tracking_uid="2.25.10",
                label="T1 liver",
                site=codes.SCT.Liver,
                long_axis_mm=36.1,
                short_axis_mm=21.0,
                baseline_category="target",
            ),
            LesionSpec(
                tracking_uid="2.25.11",
                label="N1",
                nodal=True,
                long_axis_mm=25.0,
                short_axis_mm=15.2,
                baseline_category="target",
            ),
            LesionSpec(tracking_uid="2.25.12", label="T2", diameter_mm=18.44, baseline_category="target"),
        ]
    )
    groups = by_uid(report)
    t1, n1, t2 = groups["2.25.10"], groups["2.25.11"], groups["2.25.12"]
    assert (t1.identity_key, t1.identity_source, t1.label) == ("2.25.10", "tracking-uid", "T1 liver")
    assert t1.finding == Coded("52988006", "SCT", "Lesion")
    assert t1.finding_sites == (Coded("10200004", "SCT", "Liver"),) and t1.nodal is False
    assert (t1.long_axis_mm, t1.short_axis_mm, t1.baseline_category) == (Decimal("36.1"), Decimal("21.0"), "target")
    assert n1.nodal is True and n1.finding_sites[0].value == "59441001"
    assert n1.short_axis_mm == Decimal("15.2")
    assert (t2.diameter_mm, t2.long_axis_mm) == (Decimal("18.4"), None)
    assert all(g.rejected_reason is None and g.notes == () for g in report.groups)


def test_nodal_flag_is_kept_when_the_site_is_not_lymph_node():
    mediastinal = codes.SCT.MediastinalLymphNode  # 62683002: a node, but not the code 59441001
    report = roundtrip(
        [
            LesionSpec(tracking_uid="2.25.20", site=mediastinal, nodal=True, short_axis_mm=12.0),
            LesionSpec(tracking_uid="2.25.21", site=mediastinal, nodal=False, short_axis_mm=12.0),
            LesionSpec(tracking_uid="2.25.22", site=codes.SCT.LymphNode, long_axis_mm=9.0),
        ]
    )
    groups = by_uid(report)
    assert groups["2.25.20"].nodal is True and groups["2.25.20"].finding_sites[0].value == "62683002"
    assert groups["2.25.21"].nodal is False  # the parser does not read anatomy from code meanings
    assert groups["2.25.22"].nodal is True  # a Lymph node site is nodal whatever the flag says


def test_decimal_values_are_accepted():
    # rules.facts holds Decimal millimetres; highdicom's NUM takes floats only.
    group = roundtrip(
        [LesionSpec(tracking_uid="2.25.25", long_axis_mm=Decimal("31.7"), sul_peak=Decimal("4.25"))]
    ).groups[0]
    assert (group.long_axis_mm, group.sul_peak) == (Decimal("31.7"), Decimal("4.25"))


def test_unlabelled_lesion_gets_a_generated_tracking_identifier():
    group = roundtrip([LesionSpec(tracking_uid="2.25.30", long_axis_mm=10.0)]).groups[0]
    assert (group.tracking_identifier, group.identity_key) == ("Lesion 1", "2.25.30")


@pytest.mark.parametrize(
    ("status", "code_value"),
    [("absent", "112045"), ("present", "112046"), ("unequivocal-progression", "112047")],
)
def test_non_target_current_response(status, code_value):
    sr = on_the_wire(
        build_measurement_report(
            evidence=[CT],
            lesions=[
                LesionSpec(tracking_uid="2.25.40", label="NT1", baseline_category="non-target", nontarget_status=status)
            ],
        )
    )
    group = parse_measurement_report(sr).groups[0]
    assert (group.baseline_category, group.nontarget_status) == ("non-target", status)
    # A lesion with no measurement is a valid TID 1501 group with no sizes and nothing rejected.
    assert (group.long_axis_mm, group.short_axis_mm, group.disappeared, group.rejected_reason) == (
        None,
        None,
        False,
        None,
    )
    assert group.referenced_sop_instance_uids == (CT.SOPInstanceUID,)
    written = [
        i
        for i in sr.ContentSequence[-1].ContentSequence[0].ContentSequence
        if i.ConceptNameCodeSequence[0].CodeValue == "112048"
    ]
    assert written[0].ConceptCodeSequence[0].CodeValue == code_value


@pytest.mark.parametrize("change", ["NC", "INC", "NCLA", "INCLA", "UNE"])
def test_non_target_change_grades(change):
    group = roundtrip([LesionSpec(tracking_uid="2.25.50", nontarget_change=change)]).groups[0]
    assert group.nontarget_change == change


def test_99immrad_booleans():
    report = roundtrip(
        [
            LesionSpec(tracking_uid="2.25.60", injected=True, irradiated=False, equivocal=True, too_small=True),
            LesionSpec(tracking_uid="2.25.61", injected=False, irradiated=True, equivocal=False, too_small=False),
            LesionSpec(tracking_uid="2.25.62"),
        ]
    )
    yes, no, unset = (by_uid(report)[uid] for uid in ("2.25.60", "2.25.61", "2.25.62"))
    assert (yes.injected, yes.irradiated, yes.equivocal, yes.too_small) == (True, False, True, True)
    assert (no.injected, no.irradiated, no.equivocal, no.too_small) == (False, True, False, False)
    assert (unset.injected, unset.irradiated, unset.equivocal, unset.too_small) == (None, None, False, False)


def test_too_small_and_absent():
    report = roundtrip(
        [
            LesionSpec(tracking_uid="2.25.70", too_small=True, baseline_category="target"),
            LesionSpec(tracking_uid="2.25.71", long_axis_mm=0.0, short_axis_mm=0.0),
            LesionSpec(tracking_uid="2.25.72", long_axis_mm=0.0, short_axis_mm=4.0),
        ]
    )
    small, gone, shrunk = (by_uid(report)[uid] for uid in ("2.25.70", "2.25.71", "2.25.72"))
    assert (small.too_small, small.disappeared, small.long_axis_mm) == (True, False, None)
    assert (gone.disappeared, gone.long_axis_mm, gone.short_axis_mm) == (True, Decimal("0.0"), Decimal("0.0"))
    assert shrunk.disappeared is False


def test_coded_finding_other_than_lesion():
    # 205237003 is not in pydicom's dictionary; clinical/criteria-kinetics-irae.md §5.5 lists it.
    pneumonitis = Code("205237003", "SCT", "Pneumonitis")
    group = roundtrip([LesionSpec(tracking_uid="2.25.80", finding=pneumonitis, site=codes.SCT.Lung)]).groups[0]
    assert group.finding == Coded("205237003", "SCT", "Pneumonitis")


def test_lymph_node_finding_makes_the_lesion_nodal():
    group = roundtrip([LesionSpec(tracking_uid="2.25.85", finding=codes.SCT.LymphNode, short_axis_mm=11.0)]).groups[0]
    assert (group.nodal, group.finding_sites, group.finding.value) == (True, (), "59441001")


def test_legacy_srt_finding_site_concept_and_values():
    sr = on_the_wire(
        build_measurement_report(
            evidence=[CT],
            lesions=[
                LesionSpec(tracking_uid="2.25.90", site=Code("T-62000", "SRT", "Liver"), long_axis_mm=20.0),
                LesionSpec(
                    tracking_uid="2.25.91", site=Code("T-C4000", "SRT", "Lymph node"), nodal=True, short_axis_mm=16.0
                ),
            ],
        )
    )
    # Rewrite every Finding Site concept name to the legacy (G-C0E3, SRT), as older producers write it.
    rewritten = 0
    for group in sr.ContentSequence[-1].ContentSequence:
        for item in group.ContentSequence:
            name = item.ConceptNameCodeSequence[0]
            if name.CodeValue == "363698007":
                name.CodeValue, name.CodingSchemeDesignator = "G-C0E3", "SRT"
                rewritten += 1
    assert rewritten == 2
    groups = by_uid(parse_measurement_report(sr))
    assert groups["2.25.90"].finding_sites == (Coded("T-62000", "SRT", "Liver"),)
    assert groups["2.25.90"].nodal is False
    assert groups["2.25.91"].nodal is True  # T-C4000 (SRT) = 59441001 (SCT) Lymph node


# ---------------------------------------------------------------------------------------------
# PET


@pytest.mark.parametrize(("legacy", "bw_unit"), [(False, "g/ml{SUVbw}"), (True, "{SUVbw}g/ml")])
def test_pet_values_in_both_unit_spellings(legacy, bw_unit):
    lesion = LesionSpec(
        tracking_uid="2.25.100",
        suv_max=12.34,
        suv_peak=9.8,
        sul_max=8.05,
        sul_peak=7.1,
        metabolic_volume_ml=14.2,
        tlg=98.0,
        legacy_suv_units=legacy,
        image_index=1,
    )
    sr = on_the_wire(build_measurement_report(evidence=[CT, PET], lesions=[lesion]))
    units = {
        i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue
        for i in sr.ContentSequence[-1].ContentSequence[0].ContentSequence
        if i.ValueType == "NUM"
    }
    assert bw_unit in units
    group = parse_measurement_report(sr).groups[0]
    assert (group.suv_max, group.suv_peak) == (Decimal("12.34"), Decimal("9.80"))
    assert (group.sul_max, group.sul_peak) == (Decimal("8.05"), Decimal("7.10"))
    assert (group.metabolic_volume_ml, group.tlg) == (Decimal("14.20"), Decimal("98.00"))
    assert group.referenced_sop_instance_uids == (PET.SOPInstanceUID,)
    assert group.rejected_reason is None


@pytest.mark.parametrize(
    ("region", "unit"),
    [("liver", "SUVlbm"), ("spleen", "SUVbw"), ("bone-marrow", "SUVlbm"), ("blood-pool", "SUVbw")],
)
def test_reference_regions(region, unit):
    report = roundtrip(
        [LesionSpec(tracking_uid="2.25.110", sul_peak=5.5)],
        [
            ReferenceRegionSpec(
                region=region,
                mean=2.13,
                sd=0.31,
                unit=unit,
                tracking_uid="2.25.111",
                legacy_suv_units=(region == "spleen"),
            )
        ],
    )
    reference, lesion = by_uid(report)["2.25.111"], by_uid(report)["2.25.110"]
    assert reference.finding == Coded("126040", "DCM", "Background for Lesion to Background SUV Ratio")
    assert (reference.reference_region, reference.reference_unit) == (region, unit)
    assert (reference.reference_mean, reference.reference_sd) == (Decimal("2.13"), Decimal("0.31"))
    assert reference.rejected_reason is None and reference.sul_peak is None
    assert (lesion.reference_region, lesion.sul_peak) == (None, Decimal("5.50"))


# ---------------------------------------------------------------------------------------------
# Time Point Context, file reading, transport


def test_time_point_context():
    report = roundtrip(
        [LesionSpec(tracking_uid="2.25.120", long_axis_mm=20), LesionSpec(tracking_uid="2.25.121")],
        [ReferenceRegionSpec(region="liver", mean=2.0)],
        time_point=TimePointSpec("FU1", codes.DCM.Posttreatment, 2),
    )
    assert len(report.groups) == 3
    for group in report.groups:
        assert (group.time_point, group.time_point_order) == ("FU1", 2)
        assert group.time_point_type == Coded("126074", "DCM", "Posttreatment")


def test_no_time_point_context():
    group = roundtrip([LesionSpec(tracking_uid="2.25.130", long_axis_mm=20)]).groups[0]
    assert (group.time_point, group.time_point_type, group.time_point_order) == (None, None, None)


def test_report_file_round_trip(tmp_path):
    path = tmp_path / "sr.dcm"
    sr = build_measurement_report(evidence=[CT], lesions=[LesionSpec(tracking_uid="2.25.140", long_axis_mm=55.55)])
    pydicom.dcmwrite(path, sr, enforce_file_format=True)
    # 55.55 rounds half up to 55.6 at 0.1 mm.
    assert parse_measurement_report_file(path).groups[0].long_axis_mm == Decimal("55.6")


def test_builder_does_not_touch_its_evidence():
    before = pydicom.dcmread(io.BytesIO(_bytes(CT)))
    build_measurement_report(evidence=[CT], lesions=[LesionSpec(long_axis_mm=10)])
    assert pydicom.dcmread(io.BytesIO(_bytes(CT))) == before


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_images_and_report_go_through_c_store():
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (
        Comprehensive3DSRStorage,
        CTImageStorage,
        PositronEmissionTomographyImageStorage,
    )

    received: dict[str, Dataset] = {}

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        received[ds.SOPInstanceUID] = ds
        return 0x0000

    contexts = (CTImageStorage, PositronEmissionTomographyImageStorage, Comprehensive3DSRStorage)
    scp = AE(ae_title="IMMUNORAD")
    for context in contexts:
        scp.add_supported_context(context)
    port = _free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        scu = AE(ae_title="TESTSCU")
        for context in contexts:
            scu.add_requested_context(context)
        sr = build_measurement_report(evidence=[CT], lesions=[LesionSpec(tracking_uid="2.25.150", long_axis_mm=42.0)])
        assoc = scu.associate("127.0.0.1", port, ae_title="IMMUNORAD")
        assert assoc.is_established
        statuses = [assoc.send_c_store(ds).Status for ds in (CT, PET, sr)]
        assoc.release()
    finally:
        server.shutdown()
    assert statuses == [0x0000, 0x0000, 0x0000]
    report = parse_measurement_report(received[sr.SOPInstanceUID])
    assert report.groups[0].long_axis_mm == Decimal("42.0")
    assert received[PET.SOPInstanceUID].RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife == 6586.2


def test_spec_arguments_are_checked():
    with pytest.raises(ValueError, match='"baseline_category"'):
        LesionSpec(baseline_category="new")
    with pytest.raises(ValueError, match='"nontarget_change"'):
        LesionSpec(nontarget_change="PD")
    with pytest.raises(ValueError, match='"long_axis_mm"'):
        LesionSpec(long_axis_mm=-1.0)
    with pytest.raises(ValueError, match='"region"'):
        ReferenceRegionSpec(region="lung", mean=1.0)
    with pytest.raises(ValueError, match='"image_index"'):
        build_measurement_report(evidence=[CT], lesions=[LesionSpec(image_index=3)])


# ---------------------------------------------------------------------------------------------
# Property: any valid lesion spec survives builder → wire → parser


SITES = [None, codes.SCT.Liver, codes.SCT.Lung, codes.SCT.LymphNode, Code("T-62000", "SRT", "Liver")]
millimetres = st.none() | st.integers(0, 3000).map(lambda n: float(Decimal(n) / 10))
suv_values = st.none() | st.integers(0, 5000).map(lambda n: float(Decimal(n) / 100))
maybe_bool = st.none() | st.booleans()
lesion_specs = st.builds(
    LesionSpec,
    tracking_uid=st.integers(1, 10**30).map(lambda n: f"2.25.{n}"),
    # Not dcmjs's default "web annotation", which names no lesion.
    label=st.none()
    | st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,20}[A-Za-z0-9]", fullmatch=True).filter(
        lambda text: text != "web annotation"
    ),
    site=st.sampled_from(SITES),
    nodal=st.booleans(),
    long_axis_mm=millimetres,
    short_axis_mm=millimetres,
    diameter_mm=millimetres,
    baseline_category=st.sampled_from([None, "target", "non-target", "non-lesion"]),
    nontarget_status=st.sampled_from([None, "absent", "present", "unequivocal-progression"]),
    nontarget_change=st.sampled_from([None, "NC", "INC", "NCLA", "INCLA", "UNE"]),
    injected=maybe_bool,
    irradiated=maybe_bool,
    equivocal=maybe_bool,
    too_small=maybe_bool,
    suv_max=suv_values,
    suv_peak=suv_values,
    sul_peak=suv_values,
    sul_max=suv_values,
    metabolic_volume_ml=suv_values,
    tlg=suv_values,
    legacy_suv_units=st.booleans(),
    image_index=st.integers(0, 1),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lesion_specs, min_size=1, max_size=4, unique_by=lambda spec: spec.tracking_uid))
def test_random_lesion_specs_round_trip(specs):
    report = roundtrip(specs)
    groups = by_uid(report)
    assert len(groups) == len(specs)
    for position, spec in enumerate(specs, 1):
        group = groups[spec.tracking_uid]
        assert (group.identity_key, group.identity_source) == (spec.tracking_uid, "tracking-uid")
        assert group.label == (spec.label if spec.label is not None else f"Lesion {position}")
        sizes = (to_mm(spec.long_axis_mm), to_mm(spec.short_axis_mm), to_mm(spec.diameter_mm))
        assert (group.long_axis_mm, group.short_axis_mm, group.diameter_mm) == sizes
        present = [s for s in sizes if s is not None]
        assert group.disappeared == (bool(present) and all(s == 0 for s in present))
        site = spec.site if spec.site is not None else (codes.SCT.LymphNode if spec.nodal else None)
        expected_sites = () if site is None else ((site.value, site.scheme_designator),)
        assert tuple((s.value, s.scheme) for s in group.finding_sites) == expected_sites
        assert group.nodal == (spec.nodal or (site is not None and site == codes.SCT.LymphNode))
        assert (group.baseline_category, group.nontarget_status, group.nontarget_change) == (
            spec.baseline_category,
            spec.nontarget_status,
            spec.nontarget_change,
        )
        assert (group.injected, group.irradiated) == (spec.injected, spec.irradiated)
        assert (group.equivocal, group.too_small) == (bool(spec.equivocal), bool(spec.too_small))
        assert (group.suv_max, group.suv_peak, group.sul_max, group.sul_peak) == (
            to_suv(spec.suv_max),
            to_suv(spec.suv_peak),
            to_suv(spec.sul_max),
            to_suv(spec.sul_peak),
        )
        assert (group.metabolic_volume_ml, group.tlg) == (to_suv(spec.metabolic_volume_ml), to_suv(spec.tlg))
        assert group.referenced_sop_instance_uids == ((CT, PET)[spec.image_index].SOPInstanceUID,)
        assert group.rejected_reason is None


def test_demo_files_encoding_matches_their_file_meta_so_senders_do_not_warn():
    """Issue 15: pynetdicom warned about every demo CT image ("encoded as implicit VR little endian but the file
    meta has … Explicit VR Little Endian"): the dataset's own encoding must be the file meta's transfer syntax."""
    from service.demo.cohort import case_datasets, demo_cohort

    mrn, _, case = demo_cohort()[0]
    for ds in case_datasets(case, mrn):
        syntax = ds.file_meta.TransferSyntaxUID
        encoding = ds.original_encoding
        assert encoding in ((None, None), (syntax.is_implicit_VR, syntax.is_little_endian)), (ds.SOPClassUID, encoding)
