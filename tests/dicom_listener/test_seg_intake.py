"""DICOM SEG intake end to end (contract §9.6): C-STORE (DCMTK storescu and pynetdicom) to the real listener,
the worker measuring the SEG from the retained pixel data, the segments in ``/api``.

The phantom: a synthetic CT series (sr_writer's CT images, 64 × 64, pixel spacing 0.8 mm, 24 slices 2.5 mm
apart) holding an ellipsoid of semi-axes a = 12 mm (columns), b = 9 mm (rows), c = 15 mm (slices) at 60 HU, and
its highdicom SEG (binary or fractional, as highdicom writes both). Analytic volume:
4/3 · π · a · b · c = 4/3 · π · 12 · 9 · 15 = 4/3 · π · 1620 = 6785.84 mm³ = 6.786 cm³.
Voxel counting with voxels of 0.8 × 0.8 × 2.5 = 1.6 mm³ counts the voxels whose centre lies inside: the count
is computed here independently (numpy, from the phantom's own definition: 4268 voxels → 4268 × 1.6 = 6828.8 mm³
= 6.829 cm³ at this placement, +0.63 %) and must be exact; against the analytic volume the tolerance is 3 % (the
discretisation error of a 0.8 × 0.8 × 2.5 mm grid on a ~2 cm object).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from decimal import Decimal
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.sr.codedict import codes
from sqlalchemy import select, update

from service.assessment.worker import Worker
from service.demo.sr_writer import build_ct_image
from service.persistence.models import Instance, PixelData, Segment
from tests.dicom_listener.test_scp import listener, pynetdicom_store, save  # noqa: F401 - fixture
from tests.support.dcmtk import storescu

ROWS = COLS = 64
PIXEL_MM = 0.8
SLICE_MM = 2.5
SLICES = 24
A_MM, B_MM, C_MM = 12.0, 9.0, 15.0
CENTRE = (11.5 * SLICE_MM, 31.5 * PIXEL_MM + 0.3, 31.5 * PIXEL_MM - 0.2)
"""(z, y, x) in mm from the first voxel centre: off the grid's symmetry so the count is not a lucky one."""
ANALYTIC_MM3 = 4 / 3 * math.pi * A_MM * B_MM * C_MM
UCUM = "http://unitsofmeasure.org"
TRACKING_UID = "1.2.826.0.1.3680043.8.498.777001"


def ellipsoid_mask(scale: float = 1.0) -> np.ndarray:
    z, y, x = np.mgrid[0:SLICES, 0:ROWS, 0:COLS]
    zc, yc, xc = CENTRE
    a, b, c = A_MM * scale, B_MM * scale, C_MM * scale
    return (((x * PIXEL_MM - xc) / a) ** 2 + ((y * PIXEL_MM - yc) / b) ** 2 + ((z * SLICE_MM - zc) / c) ** 2) <= 1.0


def ct_series(
    patient_id: str, study_uid: str, series_uid: str, *, day: dt.date = dt.date(2026, 3, 2), scale: float = 1.0
) -> list:
    mask = ellipsoid_mask(scale)
    images = []
    for index in range(SLICES):
        ds = build_ct_image(
            patient_id=patient_id,
            patient_name="Seg^Phantom",
            study_instance_uid=study_uid,
            study_date=day,
            series_instance_uid=series_uid,
            rows=ROWS,
            columns=COLS,
            pixel_spacing_mm=PIXEL_MM,
            slice_thickness_mm=SLICE_MM,
            instance_number=index + 1,
            birth_date=dt.date(1960, 1, 1),
            sex="F",
        )
        ds.PixelData = np.where(mask[index], 60, 0).astype(np.int16).tobytes()
        images.append(ds)
    return images


def seg_of(
    images: list, *, fractional: bool = False, scale: float = 1.0, tracking_uid: str = TRACKING_UID
) -> hd.seg.Segmentation:
    """The SEG as highdicom writes it: the lesion (Neoplasm, tracked) and a liver segment (an "other" segment)."""
    by_position = sorted(images, key=lambda d: float(d.ImagePositionPatient[2]))
    # build_ct_image puts instance 1 at z = 0 and later ones below it: masks follow the images' order given.
    mask = ellipsoid_mask(scale)
    lesion = np.stack([mask[int(d.InstanceNumber) - 1] for d in by_position])
    liver = np.zeros_like(lesion)
    liver[:4, 5:20, 5:20] = True
    pixels = np.stack([lesion, liver], axis=-1).astype(np.float32 if fractional else np.uint8)
    if fractional:
        pixels = pixels * 0.8  # 0.8 ≥ 0.5: inside
        pixels[..., 0][~np.stack([mask[int(d.InstanceNumber) - 1] for d in by_position])] = 0.0
    algorithm = hd.AlgorithmIdentificationSequence(name="test", version="1", family=codes.DCM.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=1,
            segment_label="T1 liver lesion",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=tracking_uid,
            tracking_id="T1",
        ),
        hd.seg.SegmentDescription(
            segment_number=2,
            segment_label="Liver",
            segmented_property_category=codes.SCT.Organ,
            segmented_property_type=codes.SCT.Liver,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        ),
    ]
    return hd.seg.Segmentation(
        source_images=by_position,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL
        if fractional
        else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=90,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="immunorad tests",
        manufacturer_model_name="phantom",
        software_versions="1",
        device_serial_number="1",
    )


def test_voxel_count_of_the_phantom_matches_the_analytic_volume():
    # The reference the end-to-end test uses: 4268 voxels × 1.6 mm³ = 6828.8 mm³ vs 4/3·π·12·9·15 = 6785.84 mm³
    # (+0.63 %, inside the 3 % tolerance).
    count = int(ellipsoid_mask().sum())
    assert count == 4268
    assert count * PIXEL_MM * PIXEL_MM * SLICE_MM == pytest.approx(ANALYTIC_MM3, rel=0.03)


def _send(port: int, paths: list[Path]) -> None:
    result = storescu("127.0.0.1", port, paths)
    assert result.returncode == 0, result.stderr


def _segments(db) -> list[Segment]:
    with db.read() as session:
        return list(session.scalars(select(Segment).order_by(Segment.segment_number)))


@pytest.mark.parametrize("fractional", [False, True], ids=["binary", "fractional"])
def test_seg_after_its_series_gives_the_lesion_volume(fractional, listener, settings, db, app_client, tmp_path):
    study_uid, series_uid = hd.UID(), hd.UID()
    images = ct_series("SEG-001", study_uid, series_uid)
    paths = [save(ds, tmp_path / "ct", f"{i:03d}.dcm") for i, ds in enumerate(images)]
    _send(listener.port, paths)
    with db.read() as session:
        kept = list(session.scalars(select(PixelData)))
        assert len(kept) == SLICES and all(p.data for p in kept)
        raw = sum(i.size_bytes for i in session.scalars(select(Instance)))
        stored = sum(len(p.data) for p in kept)
    assert stored < raw / 2  # zlib level 1 on these slices: compact (measured ~0.05 of the raw bytes)
    seg = seg_of(images, fractional=fractional)
    assert pynetdicom_store(listener.port, seg).Status == 0x0000
    with db.read() as session:  # acknowledged before any decoding: only stored and queued
        assert session.scalars(select(Segment)).first() is None
    Worker(settings, db).drain()

    lesion, liver = _segments(db)
    assert lesion.kind == "lesion" and lesion.status == "computed", lesion.reason
    assert lesion.identity_key == TRACKING_UID and lesion.lesion_id is not None
    assert lesion.voxel_count == int(ellipsoid_mask().sum())
    # voxel count × (2.5 × 0.8 × 0.8 mm³) / 1000 → cm³, within 3 % of 4/3·π·12·9·15 mm³ = 6.786 cm³
    assert float(lesion.volume_cm3) == pytest.approx(ANALYTIC_MM3 / 1000, rel=0.03)
    assert lesion.volume_cm3 == (Decimal(lesion.voxel_count) * Decimal("1.6") / 1000).quantize(Decimal("0.001"))
    assert lesion.scan_date == dt.date(2026, 3, 2) and lesion.modality == "CT"
    assert liver.kind == "other" and liver.voxel_count == 4 * 15 * 15

    listed = app_client.get(f"/api/patients/{lesion.patient_id}/segments").get_json()["segments"]
    assert [(s["kind"], s["status"]) for s in listed] == [("lesion", "computed"), ("other", "computed")]
    assert listed[0]["lesion"] == TRACKING_UID and listed[0]["volume_cm3"] == str(lesion.volume_cm3)

    # Contract §9.6: the feature Observation is on /fhir as soon as computed (this is the baseline scan).
    code = f"{settings.fhir_canonical}/CodeSystem/immunorad|radiomic-features"
    bundle = app_client.get(f"/fhir/Observation?code={code}&patient={lesion.patient_id}").get_json()
    (observation,) = [e["resource"] for e in bundle["entry"]]
    assert observation["effectiveDateTime"] == "2026-03-02"
    assert observation["contained"][0]["identifier"][0] == {
        "system": "urn:dicom:uid",
        "value": f"urn:oid:{TRACKING_UID}",
    }
    assert observation["focus"] == [{"reference": "#lesion"}] and "voxel counting" in observation["method"]["text"]
    # the radiomic features (service/features/radiomics_job.py) join YEKZ in this same Observation: one YEKZ component
    (component,) = [c for c in observation["component"] if c["code"]["coding"][0]["code"] == "YEKZ"]
    assert component["code"]["coding"][0]["system"] == "https://theibsi.github.io/ibsi"
    assert component["code"]["coding"][0]["code"] == "YEKZ"
    assert component["valueQuantity"]["code"] == "cm3"
    assert component["valueQuantity"]["value"] == pytest.approx(float(lesion.volume_cm3))


def test_seg_before_its_images_is_pending_then_measured(listener, settings, db, app_client, tmp_path):
    study_uid, series_uid = hd.UID(), hd.UID()
    images = ct_series("SEG-002", study_uid, series_uid)
    seg = seg_of(images)
    assert pynetdicom_store(listener.port, seg).Status == 0x0000
    # Half the series arrives: still waiting (the worker checks every referenced image).
    first = [save(ds, tmp_path / "ct", f"{i:03d}.dcm") for i, ds in enumerate(images[:10])]
    _send(listener.port, first)
    Worker(settings, db).drain()
    waiting = app_client.get("/api/pending").get_json()["pending"]
    assert len(waiting) == 1 and waiting[0]["source_kind"] == "dicom-seg" and waiting[0]["status"] == "waiting"
    assert waiting[0]["waits_for"] == [{"kind": "series", "uid": series_uid}]
    assert "10 of 24 images stored" in waiting[0]["reason"]
    assert _segments(db) == []

    rest = [save(ds, tmp_path / "ct", f"{i:03d}.dcm") for i, ds in enumerate(images) if i >= 10]
    _send(listener.port, rest)
    time.sleep(settings.study_settle_seconds + 0.1)  # the SEG's job waits for the series to settle
    Worker(settings, db).drain()
    assert app_client.get("/api/pending").get_json()["pending"] == []
    lesion = _segments(db)[0]
    assert lesion.status == "computed" and lesion.voxel_count == int(ellipsoid_mask().sum())


def test_seg_over_dropped_pixels_is_listed_with_the_reason(listener, settings, db, app_client, tmp_path):
    study_uid, series_uid = hd.UID(), hd.UID()
    images = ct_series("SEG-003", study_uid, series_uid)
    _send(listener.port, [save(ds, tmp_path / "ct", f"{i:03d}.dcm") for i, ds in enumerate(images)])
    worker = Worker(settings, db)
    assert worker.purge_pixels() == 0  # within the window: kept
    with db.write() as session:
        session.execute(update(PixelData).values(expires_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
    assert worker.purge_pixels() == SLICES
    with db.read() as session:
        assert all(p.data is None and p.dropped_at for p in session.scalars(select(PixelData)))
    assert pynetdicom_store(listener.port, seg_of(images)).Status == 0x0000
    worker.drain()
    listed = app_client.get("/api/pending").get_json()["pending"]
    assert [p["status"] for p in listed] == ["unresolvable"]
    assert "dropped" in listed[0]["reason"] and "IMMUNORAD_PIXEL_RETENTION_DAYS=30" in listed[0]["reason"]
    segments = _segments(db)
    assert [(s.kind, s.status) for s in segments] == [("lesion", "not-computed"), ("other", "not-computed")]
    assert all("dropped" in s.reason for s in segments)


def test_the_listener_accepts_segmentation_storage():
    from pynetdicom import AllStoragePresentationContexts

    assert "1.2.840.10008.5.1.4.1.1.66.4" in {c.abstract_syntax for c in AllStoragePresentationContexts}


def test_feature_extractor_reads_image_mask_and_spacing(listener, settings, db, tmp_path):
    from service.ingest.segmentation import load_segment_volume

    images = ct_series("SEG-004", hd.UID(), hd.UID())
    _send(listener.port, [save(ds, tmp_path / "ct", f"{i:03d}.dcm") for i, ds in enumerate(images)])
    assert pynetdicom_store(listener.port, seg_of(images)).Status == 0x0000
    Worker(settings, db).drain()
    lesion = _segments(db)[0]
    with db.read() as session:
        volume = load_segment_volume(session, lesion.id)
    assert volume.spacing_mm == pytest.approx((SLICE_MM, PIXEL_MM, PIXEL_MM))
    assert volume.image.shape == volume.mask.shape and int(volume.mask.sum()) == lesion.voxel_count
    assert set(np.unique(volume.image[volume.mask])) == {60.0}  # HU inside the lesion
    assert set(np.unique(volume.image[~volume.mask])) == {0.0}


def test_volumetric_response_beside_recist_in_the_follow_up_report(listener, settings, db, app_client, tmp_path):
    """Baseline SEG (scale 1) and a follow-up SEG with the ellipsoid's semi-axes × 0.6 (volume × 0.216): voxel
    counts 4268 → N; the volumetric reading is PR when N ≤ 0.343 × 4268 (≥ 65.7 % decrease), shown in the
    follow-up DiagnosticReport beside RECIST 1.1 (whose diameters, 30 → 18 mm = −40 %, give PR too)."""
    from rules.scenario import Case, Lesion, T, c
    from service.demo.cohort import stable_uid
    from tests.e2e.kinetics_cases import measurements_bundle, patient_entry, post_bundle, therapy_entries

    mrn = "SEG-VOL-001"
    bl, start, fu = dt.date(2026, 3, 2), dt.date(2026, 3, 9), dt.date(2026, 5, 4)
    uid = stable_uid(mrn, "lesion", "T1 liver")  # the lesion's Tracking UID in the FHIR measurements
    case = Case("VOL", start, {"BL": bl, "FU": fu}, (Lesion("T1 liver", T, "liver", cells={"BL": c(30), "FU": c(18)}),))
    post_bundle(
        app_client,
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [patient_entry(mrn), *therapy_entries(mrn, "pembrolizumab", start, None)],
        },
    )
    post_bundle(app_client, measurements_bundle(case, mrn))
    for day, scale in ((bl, 1.0), (fu, 0.6)):
        images = ct_series(mrn, hd.UID(), hd.UID(), day=day, scale=scale)
        _send(listener.port, [save(ds, tmp_path / day.isoformat(), f"{i:03d}.dcm") for i, ds in enumerate(images)])
        assert pynetdicom_store(listener.port, seg_of(images, scale=scale, tracking_uid=uid)).Status == 0x0000
    Worker(settings, db).drain()

    counts = [int(ellipsoid_mask(s).sum()) for s in (1.0, 0.6)]
    assert counts[1] * 1000 <= 343 * counts[0]  # the phantom is a volumetric PR by construction
    patient_id = app_client.get(f"/api/patients/{mrn}").get_json()["patient"]["id"]
    reports = app_client.get(f"/fhir/DiagnosticReport?patient={patient_id}").get_json().get("entry", [])
    (report,) = [e["resource"] for e in reports if e["resource"]["effectiveDateTime"].startswith(fu.isoformat())]
    observations = [app_client.get(f"/fhir/{r['reference']}").get_json() for r in report["result"]]
    by_method = {o["method"]["coding"][0]["code"]: o for o in observations if "method" in o and "coding" in o["method"]}
    assert by_method["RECIST-1.1"]["valueCodeableConcept"]["text"] == "PR"
    volumetric = by_method["volumetric-RECIST-equivalent"]
    assert volumetric["valueCodeableConcept"]["text"] == "PR"
    assert "Provisional" in volumetric["note"][0]["text"]
    sums = {comp["code"]["coding"][0]["code"]: comp.get("valueQuantity") for comp in volumetric["component"]}
    assert sums["sum-of-diameters"]["unit"] == "cm3"
    assert sums["sum-of-diameters"]["value"] == pytest.approx(counts[1] * 1.6 / 1000, abs=0.001)


def adc_series(patient_id: str, day: dt.date, inside: int) -> list:
    """The phantom as an MR ADC map (Image Type DERIVED\\PRIMARY\\ADC, values in 10^-6 mm2/s): ``inside`` in the
    lesion except one voxel at 500 (its minimum), 2000 outside."""
    images = ct_series(patient_id, hd.UID(), hd.UID(), day=day)
    mask = ellipsoid_mask()
    first = tuple(int(v) for v in np.argwhere(mask)[0])
    for index, ds in enumerate(images):
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
        ds.Modality = "MR"
        ds.ImageType = ["DERIVED", "PRIMARY", "ADC"]
        for keyword in ("KVP", "RescaleIntercept", "RescaleSlope", "RescaleType"):
            delattr(ds, keyword)
        values = np.where(mask[index], inside, 2000).astype(np.int16)
        if index == first[0]:
            values[first[1], first[2]] = 500
        ds.PixelData = values.tobytes()
    return images


def test_adc_mean_and_minimum_per_lesion_and_their_change(listener, settings, db, app_client, tmp_path):
    # 4268 lesion voxels: baseline 4267 × 800 + 500 → mean (3413600 + 500) / 4268 = 799.93 → 799.9, minimum 500;
    # follow-up 4267 × 1100 + 500 → (4693700 + 500) / 4268 = 1099.93 → 1099.9; change (1099.9 − 799.9) / 799.9
    # × 100 = 37.5 %.
    mrn = "SEG-ADC-001"
    for day, inside in ((dt.date(2026, 3, 2), 800), (dt.date(2026, 5, 4), 1100)):
        images = adc_series(mrn, day, inside)
        _send(listener.port, [save(ds, tmp_path / day.isoformat(), f"{i:03d}.dcm") for i, ds in enumerate(images)])
        assert pynetdicom_store(listener.port, seg_of(images)).Status == 0x0000
        Worker(settings, db).drain()
    lesions = [s for s in _segments(db) if s.kind == "lesion"]
    assert [(s.stats["adc_mean"], s.stats["adc_min"]) for s in sorted(lesions, key=lambda s: s.scan_date)] == [
        (799.9, 500.0),
        (1099.9, 500.0),
    ]
    patient_id = lesions[0].patient_id
    code = f"{settings.fhir_canonical}/CodeSystem/immunorad|radiomic-features"
    bundle = app_client.get(f"/fhir/Observation?code={code}&patient={patient_id}").get_json()
    later = next(e["resource"] for e in bundle["entry"] if e["resource"]["effectiveDateTime"] == "2026-05-04")
    values = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in later["component"]}
    assert values["adc-mean"] == {"value": 1099.9, "unit": "10*-6.mm2/s", "system": UCUM, "code": "10*-6.mm2/s"}
    assert values["adc-min"]["value"] == 500.0
    assert values["adc-mean-change"]["value"] == 37.5 and values["adc-mean-change"]["unit"] == "%"
    assert "YEKZ" in values  # the volume stays beside them
