"""End to end (contract §9.6): a synthetic CT and its highdicom SEG through C-STORE -> the lesion's IBSI features
and the (provisional example) signature on /fhir, computed by the worker off the DICOM path.

The phantom is the SEG intake's (tests/dicom_listener/test_seg_intake.py): an ellipsoid of semi-axes 12 x 9 x
15 mm at 60 HU in 0 HU, voxels 0.8 x 0.8 x 2.5 mm (4268 voxels, 6.829 cm3; analytic 4/3 pi 12 9 15 = 6.786 cm3).
"""

from __future__ import annotations

import dataclasses

import highdicom as hd
import pytest
from sqlalchemy import select

from service.assessment.worker import Worker
from service.persistence.models import Segment
from tests.dicom_listener.test_scp import listener, pynetdicom_store, save  # noqa: F401 - fixture
from tests.dicom_listener.test_seg_intake import ANALYTIC_MM3, TRACKING_UID, _send, ct_series, seg_of

pytest.importorskip("radiomics", reason="the optional 'imaging' extra (pyradiomics-bhklab) is not installed")


def _components(observation: dict) -> dict[str, dict]:
    return {c["code"]["coding"][0]["code"]: c for c in observation["component"]}


def test_seg_gives_ibsi_features_and_signature_on_fhir(listener, settings, db, app_client, tmp_path):
    images = ct_series("RAD-001", hd.UID(), hd.UID())
    _send(listener.port, [save(ds, tmp_path / "ct", f"{i:03d}.dcm") for i, ds in enumerate(images)])
    assert pynetdicom_store(listener.port, seg_of(images)).Status == 0x0000
    Worker(settings, db).drain(timeout=120)

    with db.read() as session:
        lesion = session.scalars(select(Segment).where(Segment.kind == "lesion")).one()
    assert lesion.stats["radiomics"] == {"status": "computed"}

    code = f"{settings.fhir_canonical}/CodeSystem/immunorad|radiomic-features"
    bundle = app_client.get(f"/fhir/Observation?code={code}&patient={lesion.patient_id}").get_json()
    (features,) = [e["resource"] for e in bundle["entry"]]  # ONE Observation per lesion and timepoint
    assert features["effectiveDateTime"] == "2026-03-02"
    assert features["contained"][0]["identifier"][0]["value"] == f"urn:oid:{TRACKING_UID}"
    method = features["method"]["text"]
    assert "voxel counting" in method and "pyradiomics-bhklab 3.1.4" in method and "fixed bin size 25" in method
    by_id = _components(features)
    assert all(c["code"]["coding"][0]["system"] == "https://theibsi.github.io/ibsi" for c in features["component"])
    # the SEG volume (YEKZ) stays, the library's features join it in the same Observation
    assert {"YEKZ", "RNU0", "QCFX", "Q4LE", "C0JK", "TU9B"} <= set(by_id)
    # mesh volume (RNU0) in cm3 within 5 % of the analytic 6.786 cm3 (the mesh cuts the voxel corners: smaller
    # than the voxel count's 6.829 cm3)
    assert by_id["RNU0"]["valueQuantity"]["code"] == "cm3"
    assert by_id["RNU0"]["valueQuantity"]["value"] == pytest.approx(ANALYTIC_MM3 / 1000, rel=0.05)
    assert by_id["RNU0"]["valueQuantity"]["value"] < by_id["YEKZ"]["valueQuantity"]["value"]
    # every voxel inside is 60 HU: mean intensity 60 [hnsf'U]
    assert by_id["Q4LE"]["valueQuantity"] == {
        "value": 60.0,
        "unit": "[hnsf'U]",
        "system": "http://unitsofmeasure.org",
        "code": "[hnsf'U]",
    }
    # an ellipsoid is nearly a sphere: sphericity between 0.8 and 1 (1 = sphere)
    assert 0.8 < by_id["QCFX"]["valueQuantity"]["value"] <= 1.0

    code = f"{settings.fhir_canonical}/CodeSystem/immunorad|signature"
    bundle = app_client.get(f"/fhir/Observation?code={code}&patient={lesion.patient_id}").get_json()
    (signature,) = [e["resource"] for e in bundle["entry"]]
    assert signature["derivedFrom"] == [{"reference": f"Observation/{features['id']}"}]
    assert "example-glcm-heterogeneity version 0.1" in signature["method"]["text"]
    assert "PROVISIONAL" in signature["method"]["text"] and signature["status"] == "preliminary"
    assert 0.0 < signature["valueQuantity"]["value"] < 1.0  # logistic output

    listed = app_client.get(f"/api/patients/{lesion.patient_id}/segments").get_json()["segments"]
    assert listed[0]["radiomics"] == {"status": "computed"}
    assert listed[0]["signatures"] == {"example-glcm-heterogeneity 0.1": "computed"}

    # The patient page shows the signature (provisional) beside the prognostic biomarkers (issue 20 item 8).
    page = app_client.get(f"/ui/patients/{lesion.patient_id}").get_data(as_text=True)
    section = page[page.index('id="signatures"') :]
    assert "Biomarkers and imaging signatures" in section and 'id="signatures-table"' in section
    assert (
        "example-glcm-heterogeneity 0.1" in section and "provisional" in section and "<td>T1</td>" in section
    )  # Tracking Identifier
    assert f"{signature['valueQuantity']['value']}" in section


def test_an_roi_above_the_bound_keeps_the_volume_and_says_why(listener, settings, db, tmp_path):
    images = ct_series("RAD-002", hd.UID(), hd.UID())
    _send(listener.port, [save(ds, tmp_path / "ct", f"{i:03d}.dcm") for i, ds in enumerate(images)])
    assert pynetdicom_store(listener.port, seg_of(images)).Status == 0x0000
    bounded = dataclasses.replace(settings, radiomics_max_voxels=4267)  # the lesion has 4268 voxels (inclusive bound)
    Worker(bounded, db).drain(timeout=120)
    with db.read() as session:
        lesion = session.scalars(select(Segment).where(Segment.kind == "lesion")).one()
    assert lesion.stats["radiomics"] == {
        "status": "not-computed",
        "reason": "the segment has 4268 voxels, more than the configured bound of 4267",
    }
    assert lesion.volume_cm3 is not None
