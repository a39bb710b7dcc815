"""A full run of the real processes against the SMART test EHR: context pulled, reports delivered with SMART
tokens, and not one log line carrying a patient's name, MRN, our patient id or a study UID (style.md: logs
are structured and PHI-free; patient and study keys are pseudonymised).

The roles run as in production (gunicorn API, DICOM listener, worker) at log level DEBUG. The demo cohort goes
in through the real interfaces (FHIR Bundles, C-STORE), plus one patient known only through DICOM whose therapy
the worker pulls from the EHR; a CDS Hooks call and some refused requests exercise the error paths.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from service.assessment.worker import pending_work
from service.demo.cohort import case_datasets, demo_cohort, run_demo, send_datasets
from service.persistence.db import Database
from service.persistence.models import AuditEvent, ClinicalFact, Patient, Study
from tests.security.conftest import CLIENT_ID, KID
from tests.support.processes import ServiceProcesses

SYSTEM = "urn:immunorad:mrn"
PULLED_MRN = "DEMO-PULL-0005"
PULLED_NAME = ("Pulledsurname", "Patriciagiven")
DEMO_NAME = "DEMO^PATIENT"


def ehr_context() -> list[dict]:
    return [
        {
            "resourceType": "Patient",
            "id": "ehr-777",
            "identifier": [{"system": SYSTEM, "value": PULLED_MRN}],
            "name": [{"family": PULLED_NAME[0], "given": [PULLED_NAME[1]]}],
            "gender": "male",
            "birthDate": "1949-11-23",
        },
        *[
            {
                "resourceType": "MedicationAdministration",
                "id": f"ma-{n}",
                "status": "completed",
                "medicationCodeableConcept": {"text": "nivolumab"},
                "subject": {"reference": "Patient/ehr-777"},
                "effectiveDateTime": day,
            }
            for n, day in enumerate(("2024-01-15", "2024-01-29", "2024-02-12"))
        ],
    ]


def test_full_run_with_a_smart_ehr_keeps_logs_free_of_phi(db_url, tmp_path, smart_ehr, key_file):
    smart_ehr.add(*ehr_context())
    processes = ServiceProcesses(
        db_url=db_url,
        var_dir=tmp_path / "var",
        ehr_url=smart_ehr.base_url,
        extra_env={
            "IMMUNORAD_EHR_CLIENT_ID": CLIENT_ID,
            "IMMUNORAD_EHR_PRIVATE_KEY": str(key_file),
            "IMMUNORAD_EHR_KEY_ID": KID,
            "IMMUNORAD_EHR_SCOPE": "system/DiagnosticReport.write system/Observation.write system/Flag.write system/*.read",
            "IMMUNORAD_LOG_LEVEL": "DEBUG",
            "IMMUNORAD_CDS_ISSUERS": f"{smart_ehr.cds_issuer}|{smart_ehr.cds_jwks_url}",
        },
    )
    cohort = demo_cohort()
    db = Database(db_url)
    try:
        processes.start()
        run_demo(
            base_url=processes.base_url,
            token=processes.token,
            dicom_host="127.0.0.1",
            dicom_port=processes.dicom_port,
            ae_title="IMMUNORAD",
        )
        # A patient known only through DICOM (the first demo timeline under another MRN and name).
        statuses = send_datasets(
            case_datasets(cohort[0][2], PULLED_MRN, patient_name=f"{PULLED_NAME[0]}^{PULLED_NAME[1]}"),
            host="127.0.0.1",
            port=processes.dicom_port,
            ae_title="IMMUNORAD",
        )
        assert set(statuses) == {0}
        # Error paths: a refused token, an invalid resource that names the patient, a signed CDS Hooks call.
        assert processes.request("GET", "/fhir/Patient", token="wrong")[0] == 401
        bad = {
            "resourceType": "Patient",
            "identifier": [{"system": SYSTEM, "value": "DEMO-0001"}],
            "name": [{"text": DEMO_NAME}],
            "gender": "not-a-gender",
        }
        assert processes.request("POST", "/fhir/Patient", bad)[0] == 422
        hook = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "ehr-777"},
            "prefetch": {"patient": ehr_context()[0]},
        }
        jwt = smart_ehr.cds_jwt(f"{processes.base_url}/cds-services/immunorad-alerts")
        status, _, _ = processes.request("POST", "/cds-services/immunorad-alerts", hook, token=jwt)
        assert status == 200

        def settled():
            with db.read() as session:
                pulled = session.scalars(select(ClinicalFact).where(ClinicalFact.origin == "ehr-pull")).all()
            reported = {
                r["subject"]["identifier"]["value"] if "identifier" in r["subject"] else r["subject"].get("reference")
                for r in smart_ehr.reports()
            }
            return pending_work(db) == {"jobs": 0, "outbox": 0} and len(pulled) == 3 and len(reported) >= 5

        processes.wait_for(settled, timeout=120, message="all patients evaluated and delivered")
    finally:
        processes.stop()

    # Delivered and pulled with SMART Backend Services only.
    assert smart_ehr.token_requests and not smart_ehr.token_failures and not smart_ehr.refused
    fhir_calls = [(m, p, a) for m, p, a in smart_ehr.requests if p.startswith("/fhir/") and ".well-known" not in p]
    assert fhir_calls and all(a and a.startswith("Bearer ") for _, _, a in fhir_calls)
    assert any(p.startswith("/fhir/MedicationAdministration") for _, p, _ in fhir_calls)

    with db.read() as session:
        patients = session.scalars(select(Patient)).all()
        studies = session.scalars(select(Study)).all()
        assert session.scalars(
            select(AuditEvent).where(AuditEvent.kind == "ehr-pull", AuditEvent.outcome == "0")
        ).first()
    db.dispose()
    needles = {DEMO_NAME, DEMO_NAME.replace("^", " "), *PULLED_NAME, PULLED_MRN, "1949-11-23"}
    needles |= {mrn for mrn, _, _ in cohort}
    needles |= {p.id for p in patients} | {s.study_uid for s in studies}
    lines = processes.logs().splitlines()
    assert len(lines) > 20, "the roles log their work"
    leaks = [(needle, line[:200]) for line in lines for needle in needles if needle.lower() in line.lower()]
    assert not leaks, leaks[:5]
    structured = 0
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        structured += 1
        assert {"ts", "level", "logger", "msg"} <= set(entry)
    assert structured >= 0.9 * len(lines), "logs are JSON lines"
