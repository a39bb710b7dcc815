"""Contract §9.3 content written by sr_writer and read back by the parser and the header reader: 99IMMRAD
merged-into (UIDREF for a Tracking UID, TEXT for a label), fragment = Yes, the symptom-driven reason in the
Request Attributes Sequence (SR or image), and the PET tracer in the Radiopharmaceutical Code Sequence."""

from __future__ import annotations

import datetime as dt
import io

from pydicom.sr.codedict import codes

from dicom_listener.headers import read_header
from dicom_listener.tid1500.reader import parse_measurement_report
from service.demo.sr_writer import LesionSpec, build_ct_image, build_measurement_report, build_pet_image

DAY = dt.date(2024, 3, 4)


def image():
    return build_ct_image(
        patient_id="P-V2", patient_name="V2^TEST", study_instance_uid="1.2.826.0.1.3680043.10.511.77", study_date=DAY
    )


def header_of(ds):
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return read_header(buffer.getvalue())[1]


def test_merged_into_and_fragments_round_trip():
    ct = image()
    report = build_measurement_report(
        evidence=[ct],
        lesions=[
            LesionSpec(tracking_uid="1.2.3.4.1", label="T2", long_axis_mm=0, short_axis_mm=0, merged_into="1.2.3.4.9"),
            LesionSpec(tracking_uid="1.2.3.4.2", label="T3", long_axis_mm=0, short_axis_mm=0, merged_into="T1 liver"),
            LesionSpec(tracking_uid="1.2.3.4.9", label="T1", long_axis_mm=30, short_axis_mm=20, fragment=True),
            LesionSpec(tracking_uid="1.2.3.4.9", label="T1", long_axis_mm=22, short_axis_mm=10, fragment=True),
        ],
    )
    items = [
        i for i in report.ContentSequence[-1].ContentSequence[0].ContentSequence if i.ValueType in ("UIDREF", "TEXT")
    ]
    assert any(i.ValueType == "UIDREF" and i.ConceptNameCodeSequence[0].CodeValue == "merged-into" for i in items)
    parsed = parse_measurement_report(report)
    got = [(g.identity_key, g.merged_into, g.fragment, str(g.long_axis_mm)) for g in parsed.groups]
    assert got == [
        ("1.2.3.4.1", "1.2.3.4.9", False, "0.0"),
        ("1.2.3.4.2", "label:T1 liver", False, "0.0"),
        ("1.2.3.4.9", None, True, "30.0"),
        ("1.2.3.4.9", None, True, "22.0"),
    ]
    # Fragments share their lesion's identity by design: no "share the identity" note.
    assert not any("share the identity" in n for n in parsed.notes)


def test_unmarked_groups_of_one_identity_are_noted():
    report = build_measurement_report(
        evidence=[image()],
        lesions=[
            LesionSpec(tracking_uid="1.2.3.4.9", label="T1", long_axis_mm=30, short_axis_mm=20, fragment=True),
            LesionSpec(tracking_uid="1.2.3.4.9", label="T1", long_axis_mm=22, short_axis_mm=10),
        ],
    )
    assert "2 groups share the identity '1.2.3.4.9'" in parse_measurement_report(report).notes


def test_symptom_driven_reason_in_the_sr_or_the_image_header():
    ct = image()
    assert header_of(ct).symptom_driven is False
    lesions = [LesionSpec(tracking_uid="1.2.3.4.9", label="T1", long_axis_mm=30, short_axis_mm=20)]
    assert header_of(build_measurement_report(evidence=[ct], lesions=lesions, symptom_driven=True)).symptom_driven
    assert not header_of(build_measurement_report(evidence=[ct], lesions=lesions)).symptom_driven
    pet = build_pet_image(
        patient_id="P-V2",
        patient_name="V2^TEST",
        study_instance_uid="1.2.826.0.1.3680043.10.511.78",
        study_date=DAY,
        symptom_driven=True,
    )
    assert header_of(pet).symptom_driven


def test_pet_tracer_from_the_radiopharmaceutical_code_sequence_or_text():
    def pet(**kw):
        return header_of(
            build_pet_image(
                patient_id="P-V2",
                patient_name="V2^TEST",
                study_instance_uid="1.2.826.0.1.3680043.10.511.79",
                study_date=DAY,
                **kw,
            )
        ).pet

    fdg = pet()
    assert (fdg["tracer_code"], fdg["tracer_scheme"], fdg["radiopharmaceutical"]) == (
        "35321007",
        "SCT",
        "Fluorodeoxyglucose",
    )
    psma = pet(radiopharmaceutical=codes.DCM.PSMA1007F18, radiopharmaceutical_text=None)
    assert (psma["tracer_code"], psma["tracer_scheme"]) == ("126758", "DCM") and "radiopharmaceutical" not in psma
    neither = pet(radiopharmaceutical=None, radiopharmaceutical_text=None)
    assert "tracer_code" not in neither and "radiopharmaceutical" not in neither
