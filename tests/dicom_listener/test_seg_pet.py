"""PET lesion segments (contract §9.6, issue 20 item 7): MTV, SUVmean (body weight) and TLG from a SEG over a
stored PET series, end to end through C-STORE; and the MTV/TLG growth arithmetic.

Phantom: 8 PET slices (sr_writer's PET: 64 × 64, 4.0 mm pixels, 4.0 mm apart; 370 MBq FDG at 08:00, series at
09:00, 75 kg, Units BQML, decay-corrected to START, F-18 T½ 6586.2 s). Lesion: a 3 × 3 × 3 voxel cube at
20 000 Bq/mL → MTV = 27 × 64 mm³ = 1728 mm³ = 1.728 cm³.
SUVbw factor = 75 000 g / (3.7e8 Bq × 2^(−3600/6586.2)) = 75 000 / 2.5331e8 = 2.96075e-4 mL/Bq·g;
SUVmean = 20 000 × 2.96075e-4 = 5.9215 → 5.92; TLG = 1.728 × 5.9215 = 10.23 g.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from sqlalchemy import select

from rules.facts import LesionVolume
from rules.volumetric import pet_growth
from service.assessment.worker import Worker
from service.demo.sr_writer import build_pet_image
from service.persistence.models import Segment
from tests.dicom_listener.test_scp import listener, pynetdicom_store, save  # noqa: F401 - fixture
from tests.support.dcmtk import storescu


def test_pet_lesion_segment_gives_mtv_suvmean_and_tlg(listener, settings, db, tmp_path):
    study, series = hd.UID(), hd.UID()
    images = []
    for number in range(1, 9):
        ds = build_pet_image(
            patient_id="SEG-PET-001",
            patient_name="Pet^Phantom",
            study_instance_uid=study,
            study_date=dt.date(2026, 3, 2),
            series_instance_uid=series,
            instance_number=number,
        )
        values = np.full((64, 64), 1000, dtype=np.uint16)
        if number in (3, 4, 5):
            values[30:33, 30:33] = 20000
        ds.PixelData = values.tobytes()
        images.append(ds)
    result = storescu("127.0.0.1", listener.port, [save(ds, tmp_path, f"{i}.dcm") for i, ds in enumerate(images)])
    assert result.returncode == 0, result.stderr
    ordered = sorted(images, key=lambda d: float(d.ImagePositionPatient[2]))
    mask = np.zeros((8, 64, 64), dtype=np.uint8)
    for index, ds in enumerate(ordered):
        if int(ds.InstanceNumber) in (3, 4, 5):
            mask[index, 30:33, 30:33] = 1
    seg = hd.seg.Segmentation(
        source_images=ordered,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            hd.seg.SegmentDescription(
                segment_number=1,
                segment_label="T1",
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Neoplasm,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
                tracking_uid="1.2.826.0.1.3680043.8.498.777009",
                tracking_id="T1",
            )
        ],
        series_instance_uid=hd.UID(),
        series_number=92,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="immunorad tests",
        manufacturer_model_name="phantom",
        software_versions="1",
        device_serial_number="1",
    )
    assert pynetdicom_store(listener.port, seg).Status == 0x0000
    Worker(settings, db).drain()
    with db.read() as session:
        (row,) = session.scalars(select(Segment))
    assert row.modality == "PT" and row.voxel_count == 27 and row.volume_cm3 == Decimal("1.728")
    assert (row.stats["mtv_cm3"], row.stats["suv_mean"], row.stats["tlg"]) == (1.728, 5.92, 10.23)


def test_mtv_and_tlg_growth_before_and_on_treatment():
    # Baseline PET 2026-03-02 (treatment 2026-03-09): MTV 10 cm3, TLG 50 g; before it 2026-01-05 (56 days =
    # 1.8398 months): MTV 5, TLG 25 → reference 100·(exp(ln 2 / 1.8398) − 1) = 45.75 %/month for both; after it
    # 2026-05-04 (63 days = 2.0698 months): MTV 3.43, TLG 17.15 → 100·(exp(ln 0.343 / 2.0698) − 1) = −40.37 %/month.
    def pet(day, mtv, tlg):
        return LesionVolume("uid.a", day, Decimal(mtv), modality="PT", tlg=Decimal(tlg))

    volumes = (
        pet(dt.date(2026, 1, 5), "5", "25"),
        pet(dt.date(2026, 3, 2), "10", "50"),
        pet(dt.date(2026, 5, 4), "3.43", "17.15"),
        LesionVolume("uid.a", dt.date(2026, 5, 4), Decimal("99")),  # a CT volume: not metabolic
    )
    results = {r.code: r.value for r in pet_growth(volumes, dt.date(2026, 3, 9))}
    assert results == {
        "mtv-growth-reference": 45.75,
        "mtv-growth-experimental": -40.37,
        "tlg-growth-reference": 45.75,
        "tlg-growth-experimental": -40.37,
    }
