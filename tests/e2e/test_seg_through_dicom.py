"""DICOM SEG with every role a real process (contract §9.6): DCMTK storescu sends the SEG first, then its CT series,
to the running listener; the worker process measures it once the series has settled; the volume is on /fhir and
the segment in /api over HTTP to gunicorn. Phantom and arithmetic: tests/dicom_listener/test_seg_intake.py
(4268 voxels × 1.6 mm³ = 6.829 cm³; analytic 4/3·π·12·9·15 mm³ = 6.786 cm³, within 3 %)."""

from __future__ import annotations

import math
import urllib.parse

import highdicom as hd

from tests.dicom_listener.test_scp import save
from tests.dicom_listener.test_seg_intake import A_MM, B_MM, C_MM, TRACKING_UID, ct_series, seg_of
from tests.e2e.test_walking_skeleton import wait_idle
from tests.support.dcmtk import storescu
from tests.ui.test_pages_in_chromium import api


def test_seg_before_its_series_through_the_running_service(service, tmp_path):
    mrn = "SEG-E2E-001"
    images = ct_series(mrn, hd.UID(), hd.UID())
    seg_path = save(seg_of(images), tmp_path / "seg", "seg.dcm")
    assert storescu("127.0.0.1", service.dicom_port, [seg_path]).returncode == 0
    wait_idle(service)
    pending = api(service, "/api/pending")["pending"]
    assert [(p["source_kind"], p["status"]) for p in pending] == [("dicom-seg", "waiting")]

    paths = [save(ds, tmp_path / "ct", f"{i:03d}.dcm") for i, ds in enumerate(images)]
    assert storescu("127.0.0.1", service.dicom_port, paths).returncode == 0
    wait_idle(service)
    assert api(service, "/api/pending")["pending"] == []
    (segment, other) = api(service, f"/api/patients/{mrn}/segments")["segments"]
    assert (segment["kind"], segment["status"], segment["lesion"]) == ("lesion", "computed", TRACKING_UID)
    analytic_cm3 = 4 / 3 * math.pi * A_MM * B_MM * C_MM / 1000
    assert abs(float(segment["volume_cm3"]) - analytic_cm3) <= 0.03 * analytic_cm3

    patient_id = api(service, f"/api/patients/{mrn}")["patient"]["id"]
    code = urllib.parse.quote("http://immunorad.org/fhir/CodeSystem/immunorad|radiomic-features", safe="")
    bundle = api(service, f"/fhir/Observation?code={code}&patient={patient_id}")
    (observation,) = [e["resource"] for e in bundle["entry"]]
    volume = next(c for c in observation["component"] if c["code"]["coding"][0]["code"] == "YEKZ")
    assert volume["valueQuantity"]["value"] == float(segment["volume_cm3"])
