"""Issue 5 over C-STORE: PET images (radiopharmaceutical, dose, weight, uptake time) plus their TID 1500 reports
(SULpeak per lesion, liver reference mean/SD) give a PERCIST 1.0 assessment whose trace explains the SUL values.

Worked example P1 (clinical/criteria-size-pet.md §11), baseline and FU1:
- baseline liver SULmean 2.0, SD 0.25 → measurable above 1.5 × 2.0 + 2 × 0.25 = 3.5; hottest lesion A 8.0;
- FU1 liver 2.1 (+5 %, +0.1: comparable); hottest is now B 5.5: (5.5 − 8.0) / 8.0 = −31.25 %, Δ −2.5 ≥ 0.8 → PMR.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from dicom_listener.scp import ListenerConfig, start_listener
from service.assessment.facts_loader import load_facts
from service.assessment.worker import Worker
from service.demo.sr_writer import LesionSpec, ReferenceRegionSpec, build_measurement_report, build_pet_image
from service.ingest.dicom_ingest import DicomIngest
from service.persistence.models import Assessment, Patient
from tests.support.dcmtk import storescu

MRN = "MRN-PET-P1"
LESIONS = {  # label: (organ code, SULpeak at baseline, at FU1), P1 table
    "A lung": ("39607008", 8.0, 5.0),
    "B node": ("59441001", 5.0, 5.5),
    "C bone": ("3138006", 4.2, 3.0),
}


def pet_scan(day: dt.date, index: int, liver_mean: float, liver_sd: float, uptake_minutes: int, folder):
    from pydicom.sr.coding import Code

    image = build_pet_image(
        patient_id=MRN,
        patient_name="PET^PATIENT",
        study_instance_uid=f"1.2.826.0.1.3680043.10.511.8.{index}",
        study_date=day,
        patient_weight_kg=72.0,
        injected_dose_bq=3.5e8,
        uptake_minutes=uptake_minutes,
    )
    lesions = []
    for position, (label, (site, baseline, followup)) in enumerate(LESIONS.items()):
        lesions.append(
            LesionSpec(
                tracking_uid=f"1.2.826.0.1.3680043.10.511.8.9{position}",
                label=label,
                site=Code(site, "SCT", label.split()[1]),
                nodal=label.endswith("node"),
                long_axis_mm=20.0,
                short_axis_mm=16.0,
                baseline_category="target" if index == 0 else None,
                sul_peak=baseline if index == 0 else followup,
            )
        )
    report = build_measurement_report(
        evidence=[image],
        lesions=lesions,
        references=[ReferenceRegionSpec(region="liver", mean=liver_mean, sd=liver_sd)],
    )
    paths = []
    for name, ds in (("pet.dcm", image), ("sr.dcm", report)):
        path = folder / f"{index}-{name}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture
def listener(settings, db):
    server = start_listener(
        ListenerConfig(ae_title=settings.ae_title, host="127.0.0.1", port=settings.dicom_port),
        DicomIngest(db, settings),
    )
    yield settings.dicom_port
    server.shutdown()


def test_percist_from_pet_studies_sent_over_c_store(listener, app_client, settings, db, tmp_path):
    from rules.scenario import Case
    from service.demo.cohort import case_bundle

    app_client.post("/fhir", json=case_bundle(Case("p1", dt.date(2024, 2, 5), {}, ()), MRN, settings.patient_id_system))
    files = pet_scan(dt.date(2024, 2, 1), 0, 2.0, 0.25, 60, tmp_path) + pet_scan(
        dt.date(2024, 4, 1), 1, 2.1, 0.25, 62, tmp_path
    )
    result = storescu("127.0.0.1", listener, files)
    assert result.returncode == 0, result.stderr
    Worker(settings, db).drain()
    with db.read() as session:
        patient = session.scalars(select(Patient).where(Patient.mrn == MRN)).one()
        facts = load_facts(session, patient)
        assessment = session.scalars(
            select(Assessment).where(Assessment.patient_id == patient.id).order_by(Assessment.version.desc())
        ).first()
    # The PET headers reached the facts: uptake 60 and 62 minutes, weight 72 kg, 350 MBq.
    assert [
        (str(s.pet_uptake_minutes), str(s.patient_weight_kg), str(s.pet_injected_dose_mbq)) for s in facts.scans
    ] == [("60.0", "72.0", "350.0"), ("62.0", "72.0", "350.0")]
    percist = next(c for c in assessment.result["criteria"] if c["criterion"] == "PERCIST-1.0")
    tp = percist["timepoints"][0]
    assert tp["scan_date"] == "2024-04-01" and tp["category"] == "PMR"
    trace = "\n".join(tp["trace"])
    # The trace names the SUL values behind the category.
    assert "8.0" in trace and "5.5" in trace and "B node" in trace
    assert "−31.25 %" in trace or "-31.25 %" in trace
    # And the FHIR Observation carries it.
    report = app_client.get(f"/fhir/DiagnosticReport?subject:identifier={settings.patient_id_system}|{MRN}").get_json()[
        "entry"
    ][0]["resource"]
    methods = []
    for ref in report["result"]:
        obs = app_client.get(f"/fhir/{ref['reference']}").get_json()
        methods += [
            (c["code"], obs.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code"))
            for c in obs.get("method", {}).get("coding", [])
        ]
    assert ("PERCIST-1.0", "PMR") in methods
