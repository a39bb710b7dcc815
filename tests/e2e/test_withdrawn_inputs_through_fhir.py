"""A sender takes a record back the FHIR way, by sending it again as ``entered-in-error`` (we answer DELETE with
405), and the evaluation forgets it; sent again as ``final`` it counts again.

Size spec worked example E1 (RECIST 1.1): sums of target diameters BL 40 + 30 + 20 (node, short axis) = 90 mm,
TP1 28 + 21 + 14 = 63 mm: 63 × 10 = 630 ≤ 90 × 7 = 630, a decrease of exactly 30 %: PR. Without T1's TP1
measurement a target is not assessed and the other two (21 + 14 = 35 mm) cannot show progression: NE
(RECIST 1.1, size spec §1.2 NE row and §1.6; as worked example E9).
When every record of a scan is withdrawn, so is its report.
A C1D1 dose recorded ``not-done`` starts no therapy line.
An ImagingStudy withdrawn takes back what it gave: its symptom-driven reason, and a scan known from it alone.
"""

from __future__ import annotations

import copy
import time

from sqlalchemy import select

from service.assessment.facts_loader import load_facts
from service.assessment.worker import Worker
from service.persistence.models import Patient
from tests.e2e import kinetics_cases as kc
from tests.rules.cases import E1

MRN = "MRN-E1-RETRACT"
TP1, TP3 = "2024-03-11", "2024-07-01"


def _recist_at(client, day: str, mrn: str = MRN) -> tuple[str, str]:
    report = kc.report_at(client, mrn, kc.D(day))
    [observation] = [
        o
        for o in kc.results(client, report)
        if any(c.get("code") == "RECIST-1.1" for c in (o.get("method") or {}).get("coding", []))
    ]
    return report["status"], observation["valueCodeableConcept"]["coding"][0]["code"]


def _resend(client, entry: dict, status: str) -> None:
    entry = copy.deepcopy(entry)
    entry["resource"]["status"] = status
    kc.post_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})


def _assessment(client) -> dict:
    patients = client.get("/api/patients").get_json()["patients"]
    [patient] = [p for p in patients if p["identifier"] == MRN]
    return client.get(f"/api/patients/{patient['id']}").get_json()["assessment"]


def test_a_measurement_entered_in_error_is_forgotten_and_counts_again_when_final(app_client, settings, db):
    worker = Worker(settings, db)
    clinical = kc.clinical_bundle(kc.KExample("E1", E1), mrn=MRN)
    measurements = kc.measurements_bundle(E1, MRN)
    kc.post_bundle(app_client, clinical)
    kc.post_bundle(app_client, measurements)
    worker.drain()
    assert _recist_at(app_client, TP1) == ("preliminary", "PR")  # 63 vs 90 mm: exactly −30 %

    [t1_tp1] = [e for e in measurements["entry"] if e["resource"]["identifier"][0]["value"] == f"{MRN}/T1 lung/{TP1}"]
    _resend(app_client, t1_tp1, "entered-in-error")
    worker.drain()
    assert _recist_at(app_client, TP1) == ("amended", "NE")  # T1 not assessed; 35 mm of the others: no PD
    # The resource is kept as sent (the FHIR store answers what it was given).
    [stored] = [
        o
        for o in kc.search(app_client, "Observation", MRN)
        if o.get("identifier", [{}])[0].get("value") == f"{MRN}/T1 lung/{TP1}"
    ]
    assert stored["status"] == "entered-in-error"

    _resend(app_client, t1_tp1, "final")
    worker.drain()
    assert _recist_at(app_client, TP1) == ("amended", "PR")

    # Every record of TP3 withdrawn (T1 27, T2 21, T3 19 mm and the bone non-target): no scan is left on that day, so
    # its report is withdrawn too, saying why.
    tp3 = [e for e in measurements["entry"] if e["resource"]["effectiveDateTime"] == TP3]
    assert len(tp3) == 4
    for entry in tp3:
        _resend(app_client, entry, "entered-in-error")
    worker.drain()
    report = kc.report_at(app_client, MRN, kc.D(TP3))
    assert report["status"] == "entered-in-error"
    assert report["conclusion"].startswith(
        f"Withdrawn (entered in error): nothing imaged or measured on {TP3} is left (its records were withdrawn)."
    )
    assert _recist_at(app_client, "2024-05-06")[1] == "PR"  # TP2 (58 mm) untouched

    # The C1D1 dose, recorded as not given: no therapy line starts; the first measured scan is the baseline.
    assert _assessment(app_client)["treatment_start"] == "2024-01-15"
    [dose] = [e for e in clinical["entry"] if e["resource"]["resourceType"] == "MedicationAdministration"]
    _resend(app_client, dose, "not-done")
    worker.drain()
    assessment = _assessment(app_client)
    assert assessment["treatment_start"] is None
    assert any("immunotherapy start unknown" in w for w in assessment["warnings"])


def test_a_cause_of_death_entered_in_error_is_no_longer_known(app_client, db):
    """The cause of death is kept on the patient (it completes the early-death definitions of hyperprogression):
    withdrawn, it is unknown again; the death itself (Patient.deceasedDateTime) stays."""
    mrn, day = "MRN-DEATH-RETRACT", kc.D("2024-04-02")
    cause = kc.death_cause_entry(mrn, day, True)
    kc.post_bundle(
        app_client,
        {"resourceType": "Bundle", "type": "transaction", "entry": [kc.patient_entry(mrn, deceased=day), cause]},
    )

    def known() -> tuple[object, object]:
        with db.read() as session:
            patient = session.scalars(select(Patient).where(Patient.mrn == mrn)).one()
            return patient.death_from_progression, patient.deceased_date

    assert known() == (True, day)
    _resend(app_client, cause, "entered-in-error")
    assert known() == (None, day)
    _resend(app_client, cause, "final")
    assert known() == (True, day)


def _imaging_study(mrn: str, uid: str, day: str, *, symptom_driven: bool = False) -> dict:
    study = {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": {"reference": f"Patient?identifier={kc.SYSTEM}|{mrn}"},
        "started": day,
    }
    if symptom_driven:
        study["reasonCode"] = [
            {"coding": [{"system": "http://immunorad.org/fhir/CodeSystem/immunorad", "code": "symptom-driven"}]}
        ]
    return kc.put_entry(study, "urn:dicom:uid", f"urn:oid:{uid}")


def _studies_of(report: dict) -> list[str]:
    return [study["identifier"]["value"] for study in report.get("imagingStudy", [])]


def _settle(settings, worker) -> None:
    """Past IMMUNORAD_STUDY_SETTLE_SECONDS (0.5 s in tests): the settle job evaluates the patient (a scan without
    measurements becomes a timepoint then, as for images whose SR did not come)."""
    time.sleep(settings.study_settle_seconds + 0.1)
    worker.drain()


def _symptom_driven_days(db, mrn: str) -> set[str]:
    with db.read() as session:
        patient = session.scalars(select(Patient).where(Patient.mrn == mrn)).one()
        return {scan.scan_date.isoformat() for scan in load_facts(session, patient).scans if scan.symptom_driven}


def test_an_imaging_study_entered_in_error_takes_back_its_reason_and_its_scan(app_client, settings, db):
    """E1, and two ImagingStudies: one on TP1's day giving the reason ``symptom-driven``, one on a day nothing was
    measured (a scan without measurements: a timepoint, not evaluable, once its study settled). Withdrawn, the first
    takes back its reason and its study (TP1 stays: its measurements are records of their own, still PR at 63
    against 90 mm) and the second its scan, whose report is withdrawn; sent ``available`` again, the scan and its
    report come back."""
    mrn, tp4 = "MRN-E1-STUDY-RETRACT", "2024-09-02"
    worker = Worker(settings, db)
    kc.post_bundle(app_client, kc.clinical_bundle(kc.KExample("E1", E1), mrn=mrn))
    kc.post_bundle(app_client, kc.measurements_bundle(E1, mrn))
    reason = _imaging_study(mrn, "2.25.7101", TP1, symptom_driven=True)
    unmeasured = _imaging_study(mrn, "2.25.7102", tp4)
    kc.post_bundle(app_client, {"resourceType": "Bundle", "type": "transaction", "entry": [reason, unmeasured]})
    worker.drain()
    assert kc.reports(app_client, mrn)[-1]["effectiveDateTime"][:10] == TP3  # tp4 waits until its study settles
    _settle(settings, worker)
    assert _symptom_driven_days(db, mrn) == {TP1}
    assert _recist_at(app_client, TP1, mrn) == ("preliminary", "PR")
    assert _studies_of(kc.report_at(app_client, mrn, kc.D(TP1))) == ["urn:oid:2.25.7101"]
    assert _recist_at(app_client, tp4, mrn) == ("preliminary", "NE")

    _resend(app_client, reason, "entered-in-error")
    _resend(app_client, unmeasured, "cancelled")  # FHIR R4: not started or not completed
    worker.drain()
    assert _symptom_driven_days(db, mrn) == set()
    # TP1 stays, on its measurements; its report no longer names the study known only from the withdrawn record.
    assert _recist_at(app_client, TP1, mrn) == ("amended", "PR")
    assert _studies_of(kc.report_at(app_client, mrn, kc.D(TP1))) == []
    report = kc.report_at(app_client, mrn, kc.D(tp4))
    assert report["status"] == "entered-in-error"
    assert f"nothing imaged or measured on {tp4} is left" in report["conclusion"]

    _resend(app_client, unmeasured, "available")
    _settle(settings, worker)
    assert _recist_at(app_client, tp4, mrn) == ("amended", "NE")
    assert _symptom_driven_days(db, mrn) == set()
