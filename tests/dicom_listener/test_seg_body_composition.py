"""Body composition at L3 from a DICOM SEG (contract §9.6; docs/clinical/criteria-kinetics-irae.md §6.3, §6.4),
end to end: height and the therapy start from FHIR, the CT and its SEG through C-STORE, the worker measuring.

Phantom: 5 axial CT slices (64 × 64, pixel spacing 4.0 mm → 16 mm² per pixel, 5 mm apart). The SEG has an L3
vertebra segment on the middle three slices, so the L3 slice is the middle one (``rules.body_composition``
rule 1). On it:
- skeletal muscle: a 25 × 35 block = 875 pixels, of which 25 are at −100 HU (outside the −29…+150 HU muscle
  window of biomarkers.yaml) → 850 × 16 mm² = 13 600 mm² = 136.0 cm² (unwindowed 875 × 16 = 140.0 cm²);
- subcutaneous tissue 300 pixels → 48.0 cm²; visceral adipose tissue 200 pixels → 32.0 cm².
On the other slices the muscle block is 10 × 35 (56.0 cm²): choosing any other slice gives another SMI.
Male, height 175 cm (FHIR): SMI = 136.0 / 1.75² = 136.0 / 3.0625 = 44.41 → 44.4 cm²/m²;
Prado 2008 (men < 52.4): low; Dercle 2016 (< 53): low; Martin 2013 needs BMI (no weight): not evaluable.
"""

from __future__ import annotations

import datetime as dt

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from sqlalchemy import select

from service.assessment.worker import Worker
from service.demo.sr_writer import build_ct_image
from service.persistence.models import Segment
from tests.dicom_listener.test_scp import listener, pynetdicom_store, save  # noqa: F401 - fixture
from tests.e2e.kinetics_cases import Lab, lab_entry, patient_entry, post_bundle, therapy_entries
from tests.support.dcmtk import storescu

MRN = "BODYCOMP-001"
SCAN = dt.date(2026, 3, 2)
C1D1 = dt.date(2026, 3, 9)
VISCERAL = hd.sr.CodedConcept("visceral-adipose-tissue", "99IMMRAD", "Visceral adipose tissue")


def phantom(study_uid: str, series_uid: str):
    images, masks = [], {"muscle": [], "sat": [], "vat": [], "l3": []}
    for number in range(1, 6):
        ds = build_ct_image(
            patient_id=MRN,
            patient_name="Body^Composition",
            study_instance_uid=study_uid,
            study_date=SCAN,
            series_instance_uid=series_uid,
            pixel_spacing_mm=4.0,
            slice_thickness_mm=5.0,
            instance_number=number,
            birth_date=dt.date(1955, 5, 5),
            sex="M",
        )
        at_l3 = number == 3
        hu = np.full((64, 64), -1000, dtype=np.int16)
        muscle = np.zeros((64, 64), dtype=bool)
        muscle[10 : 35 if at_l3 else 20, 10:45] = True
        hu[muscle] = 40
        if at_l3:
            hu[10:15, 10:15] = -100  # 25 muscle-mask pixels of fat attenuation: outside the window
        sat = np.zeros((64, 64), dtype=bool)
        sat[40:50, 10:40] = True  # 300 pixels
        vat = np.zeros((64, 64), dtype=bool)
        vat[52:62, 20:40] = True  # 200 pixels
        hu[sat | vat] = -100
        l3 = np.zeros((64, 64), dtype=bool)
        if number in (2, 3, 4):
            l3[36:39, 50:53] = True
        ds.PixelData = hu.tobytes()
        images.append(ds)
        for key, mask in (("muscle", muscle), ("sat", sat), ("vat", vat), ("l3", l3)):
            masks[key].append(mask)
    return images, {k: np.stack(v) for k, v in masks.items()}


def body_composition_seg(images, masks) -> hd.seg.Segmentation:
    algorithm = hd.AlgorithmIdentificationSequence(name="l3-tool", version="1", family=codes.DCM.ArtificialIntelligence)

    def describe(number, label, category, kind):
        return hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )

    return hd.seg.Segmentation(
        source_images=images,
        pixel_array=np.stack([masks["muscle"], masks["sat"], masks["vat"], masks["l3"]], axis=-1).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            describe(1, "Skeletal muscle", codes.SCT.Tissue, codes.SCT.SkeletalMuscle),
            describe(2, "Subcutaneous fat", codes.SCT.Tissue, codes.SCT.SubcutaneousTissue),
            describe(3, "Visceral fat", codes.SCT.Tissue, VISCERAL),
            describe(4, "L3", codes.SCT.AnatomicalStructure, codes.SCT.L3Vertebra),
        ],
        series_instance_uid=hd.UID(),
        series_number=91,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="immunorad tests",
        manufacturer_model_name="phantom",
        software_versions="1",
        device_serial_number="1",
    )


def test_l3_body_composition_seg_gives_smi_and_sarcopenia(listener, settings, db, app_client, tmp_path):
    height = Lab("8302-2", "Body height", 175, "cm", dt.date(2026, 3, 1))
    post_bundle(
        app_client,
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                patient_entry(MRN, sex="male", birth_date="1955-05-05"),
                *therapy_entries(MRN, "pembrolizumab", C1D1, None),
                lab_entry(MRN, height),
            ],
        },
    )
    images, masks = phantom(hd.UID(), hd.UID())
    result = storescu(
        "127.0.0.1", listener.port, [save(ds, tmp_path / "ct", f"{i}.dcm") for i, ds in enumerate(images)]
    )
    assert result.returncode == 0, result.stderr
    assert pynetdicom_store(listener.port, body_composition_seg(images, masks)).Status == 0x0000
    Worker(settings, db).drain()

    with db.read() as session:
        rows = {r.kind: r for r in session.scalars(select(Segment))}
    assert set(rows) == {"skeletal-muscle", "subcutaneous-adipose-tissue", "visceral-adipose-tissue", "l3-vertebra"}
    muscle = rows["skeletal-muscle"].stats
    assert muscle["l3_slice"] == 2 and "L3 vertebra" in muscle["l3_rule"]
    assert (muscle["l3_area_cm2"], muscle["l3_area_unwindowed_cm2"]) == (136.0, 140.0)
    assert rows["subcutaneous-adipose-tissue"].stats["l3_area_cm2"] == 48.0
    assert rows["visceral-adipose-tissue"].stats["l3_area_cm2"] == 32.0

    body = app_client.get(f"/api/patients/{MRN}").get_json()
    markers = {b["code"]: b for b in body["assessment"]["biomarkers"]}
    assert markers["smi"]["value"] == "44.4"  # 136.0 / 1.75² = 44.41
    assert markers["sarcopenia-prado"]["interpretation"] == "low"  # men: 44.4 < 52.4
    assert markers["sarcopenia-dercle-53"]["interpretation"] == "low"  # 44.4 < 53
