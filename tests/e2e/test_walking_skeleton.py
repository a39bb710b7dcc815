"""Issue 2, end to end through the real interfaces: DCMTK storescu → listener → worker → EHR (a real HTTP server).

Worked examples E1, E3 and E9 of clinical/criteria-size-pet.md §11 are sent as highdicom TID 1500 SRs with
storescu; the therapy start comes in as a FHIR transaction Bundle; the EHR stand-in receives one
DiagnosticReport per follow-up with the RECIST 1.1 category the spec gives.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from service.demo.cohort import case_bundle, case_datasets
from tests.rules import cases
from tests.support.dcmtk import echoscu, storescu

pytestmark = pytest.mark.slow

SYSTEM = "urn:immunorad:mrn"
RECIST = "RECIST-1.1"


def write_files(datasets, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets):
        path = folder / f"{index:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def send_case(service, case, mrn: str, folder: Path) -> list[Path]:
    status, body, _ = service.request("POST", "/fhir", case_bundle(case, mrn, SYSTEM))
    assert status == 200, body
    files = write_files(case_datasets(case, mrn), folder)
    result = storescu("127.0.0.1", service.dicom_port, files)
    assert result.returncode == 0, result.stderr
    return files


def metrics(service) -> str:
    status, body, _ = service.request("GET", "/metrics", token=None)
    assert status == 200
    return body if isinstance(body, str) else str(body)


def idle(service) -> bool:
    text = metrics(service)
    queued = sum(float(v) for v in re.findall(r'immunorad_queue_depth\{[^}]*status="(?:queued)"[^}]*\} (\S+)', text))
    pending = sum(float(v) for v in re.findall(r'immunorad_outbox\{status="pending"\} (\S+)', text))
    return queued == 0 and pending == 0


def wait_idle(service, timeout: float = 60) -> None:
    # Idle twice in a row, 1.5 s apart: queued settle timers count as work, so this also waits for them.
    def stable():
        if not idle(service):
            return False
        time.sleep(1.5)
        return idle(service)

    service.wait_for(stable, timeout=timeout, message="queue and outbox to drain")


def recist_by_date(ehr, mrn: str) -> dict[str, str | None]:
    out = {}
    for report in ehr.reports():
        if mrn not in str(report.get("subject")) and not any(mrn in str(i) for i in [report.get("subject")]):
            continue
        obs = ehr.observation_for(report, RECIST)
        out[report["effectiveDateTime"][:10]] = obs["valueCodeableConcept"]["coding"][0]["code"] if obs else None
    return out


def test_e1_e3_e9_recist_reports_reach_the_ehr(service, ehr, tmp_path):
    for case, mrn in ((cases.E1, "MRN-E1"), (cases.E3, "MRN-E3"), (cases.E9, "MRN-E9")):
        send_case(service, case, mrn, tmp_path / mrn)
    wait_idle(service)
    # E1: SoD 90 → 63 (63×10 = 630 ≤ 90×7 = 630: PR at exactly −30 %) → 58 → 61: PR, PR, PR.
    assert recist_by_date(ehr, "MRN-E1") == {"2024-03-11": "PR", "2024-05-06": "PR", "2024-07-01": "PR"}
    # E3: 20 → 24 (+20 % but +4 mm: SD) → 25 (+25 %, +5 mm: PD) → TP3 post-PD: no RECIST result.
    assert recist_by_date(ehr, "MRN-E3") == {"2024-04-29": "SD", "2024-06-24": "PD", "2024-07-22": None}
    # E9: 75 → 60 (SD) → T3 not imaged, partial 41 < 72: NE → 72 = 1.2 × nadir 60 and +12 mm: PD.
    assert recist_by_date(ehr, "MRN-E9") == {"2024-04-08": "SD", "2024-06-03": "NE", "2024-07-29": "PD"}
    # Every delivered report is readable locally too.
    status, bundle, _ = service.request("GET", f"/fhir/DiagnosticReport?subject:identifier={SYSTEM}|MRN-E1")
    assert status == 200 and bundle["total"] == 3


def test_resending_changes_nothing_and_sigkill_loses_nothing(service, ehr, tmp_path):
    files = send_case(service, cases.E1, "MRN-RESEND", tmp_path / "first")
    wait_idle(service)
    delivered = len(ehr.bundles)
    assert delivered == 3
    # Same SOP Instance UIDs again: every C-STORE succeeds, nothing changes at the EHR.
    result = storescu("127.0.0.1", service.dicom_port, files)
    assert result.returncode == 0, result.stderr
    wait_idle(service)
    assert len(ehr.bundles) == delivered

    # A second patient: SIGKILL every role right after the acknowledgements, then restart.
    send_case(service, cases.E9, "MRN-KILL", tmp_path / "kill")
    for role in ("worker", "dicom", "api"):
        service.kill(role, signal.SIGKILL)
    for role in ("api", "dicom", "worker"):
        service.start_role(role)
    service.wait_ready()
    wait_idle(service)
    e9 = recist_by_date(ehr, "MRN-KILL")
    assert e9 == {"2024-04-08": "SD", "2024-06-03": "NE", "2024-07-29": "PD"}
    # One report per timepoint at the EHR, one version each. A delivery cut by SIGKILL after the EHR answered
    # may be sent again; its conditional PUTs land on the same resources, so nothing is duplicated.
    identifiers = [r["identifier"][0]["value"] for r in ehr.reports() if "MRN-KILL" in str(r.get("subject"))]
    assert len(identifiers) == len(set(identifiers)) == 3
    assert {r["status"] for r in ehr.reports()} == {"preliminary"}
    assert len(ehr.bundles) >= delivered + 3


def test_bad_input_gets_protocol_errors_and_the_service_keeps_serving(service, tmp_path):
    import datetime as dt

    from service.demo.sr_writer import build_ct_image

    good = build_ct_image(
        patient_id="MRN-BAD",
        patient_name="BAD^INPUT",
        study_instance_uid="1.2.826.0.1.3680043.10.511.9.1",
        study_date=dt.date(2024, 1, 1),
    )
    ok_path = tmp_path / "ok.dcm"
    good.save_as(ok_path, enforce_file_format=True)
    # A truncated file: storescu itself cannot parse it, so send the truncated data set bytes with pynetdicom.
    truncated = ok_path.read_bytes()[:900]
    truncated_path = tmp_path / "truncated.dcm"
    truncated_path.write_bytes(truncated)
    from tests.support.peers import send_raw

    status = send_raw("127.0.0.1", service.dicom_port, truncated_path)
    assert 0xC000 <= status <= 0xCFFF, hex(status)

    no_patient = build_ct_image(
        patient_id="",
        patient_name="",
        study_instance_uid="1.2.826.0.1.3680043.10.511.9.2",
        study_date=dt.date(2024, 1, 1),
    )
    path = tmp_path / "nopatient.dcm"
    no_patient.save_as(path, enforce_file_format=True)
    result = storescu("127.0.0.1", service.dicom_port, [path])
    assert "0xc001" in (result.stdout + result.stderr).lower() or result.returncode != 0

    status, body, _ = service.request("POST", "/fhir", b'{"resourceType": "Bundle", "type": ')
    assert status == 400 and body["resourceType"] == "OperationOutcome"
    status, body, _ = service.request(
        "POST", "/fhir/Observation", {"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}}
    )
    assert status == 422 and body["resourceType"] == "OperationOutcome"

    # Still serving: C-ECHO, a good image, health.
    assert echoscu("127.0.0.1", service.dicom_port).returncode == 0
    assert storescu("127.0.0.1", service.dicom_port, [ok_path]).returncode == 0
    assert service.request("GET", "/healthz", token=None)[0] == 200
