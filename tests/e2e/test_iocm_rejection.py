"""IHE IOCM rejection notes over C-STORE (DCMTK storescu → listener → worker → EHR stand-in).

Size spec worked example E1 (RECIST 1.1): target sums BL 40 + 30 + 20 = 90 mm, TP1 28 + 21 + 14 = 63 mm (exactly
−30 %: PR), TP2 26 + 20 + 12 = 58 mm (PR), TP3 27 + 21 + 13 = 61 mm (PR: 61 × 10 = 610 ≤ 630, and 61 < 1.2 × 58).
- The TP1 measurement report rejected for quality reasons (113001): its CT stays, no target is measured, so TP1 is
  NE (size spec §1.2, as example E9); the report is amended. Sent again afterwards, the rejected SR is
  acknowledged and still not used.
- TP3's image and report rejected for patient safety reasons (113037, e.g. the wrong patient): nothing of TP3 is
  left, so its report is withdrawn (entered-in-error) at the EHR.
- A note that comes before the instance it rejects (113038): the instance is acknowledged when it arrives and never
  used; a copy that is not rejected measures TP1 again (PR).
"""

from __future__ import annotations

import copy

import highdicom as hd
import pytest
from pydicom.sr.codedict import codes
from sqlalchemy import select

from service.demo.cohort import case_datasets
from service.persistence.db import Database
from service.persistence.models import AuditEvent, Measurement, RejectedInstance
from tests.e2e.test_walking_skeleton import recist_by_date, send_case, wait_idle, write_files
from tests.rules import cases
from tests.support.dcmtk import storescu
from tests.support.iocm import rejection_note

pytestmark = pytest.mark.slow

MRN = "MRN-IOCM"


def again(report):
    """The same measurement report under a new SOP Instance UID (a re-export)."""
    out = copy.deepcopy(report)
    out.SOPInstanceUID = out.file_meta.MediaStorageSOPInstanceUID = hd.UID()
    return out


def send(service, datasets, folder) -> None:
    result = storescu("127.0.0.1", service.dicom_port, write_files(datasets, folder))
    assert result.returncode == 0, result.stderr


def at_ehr(ehr, day: str) -> dict:
    [report] = [r for r in ehr.reports() if MRN in str(r["subject"]) and r["effectiveDateTime"][:10] == day]
    return report


def test_rejected_instances_are_no_longer_used(service, ehr, db_url, tmp_path):
    files = send_case(service, cases.E1, MRN, tmp_path / "case")
    wait_idle(service)
    assert recist_by_date(ehr, MRN) == {"2024-03-11": "PR", "2024-05-06": "PR", "2024-07-01": "PR"}
    datasets = case_datasets(cases.E1, MRN)  # per scan: the CT image, then its SR
    tp1_sr, tp3_image, tp3_sr = datasets[3], datasets[6], datasets[7]
    assert (tp1_sr.StudyDate, tp3_image.StudyDate, tp3_sr.StudyDate) == ("20240311", "20240701", "20240701")

    send(service, [rejection_note(codes.DCM.RejectedForQualityReasons, tp1_sr)], tmp_path / "kos1")
    wait_idle(service)
    assert recist_by_date(ehr, MRN) == {"2024-03-11": "NE", "2024-05-06": "PR", "2024-07-01": "PR"}
    assert at_ehr(ehr, "2024-03-11")["status"] == "amended"

    send(service, [rejection_note(codes.DCM.RejectedForPatientSafetyReasons, tp3_image, tp3_sr)], tmp_path / "kos2")
    wait_idle(service)
    withdrawn = at_ehr(ehr, "2024-07-01")
    assert withdrawn["status"] == "entered-in-error"
    assert "nothing imaged or measured on 2024-07-01 is left" in withdrawn["conclusion"]

    # The rejected SR sent again: acknowledged (storescu succeeds) as the duplicate it is; nothing changes.
    sent = len(ehr.bundles)
    result = storescu("127.0.0.1", service.dicom_port, [files[3]])
    assert result.returncode == 0, result.stderr
    wait_idle(service)
    assert len(ehr.bundles) == sent

    # A note may come before what it rejects: a copy of TP1's SR (a new SOP Instance UID) rejected first, then
    # received: acknowledged, never used. Another copy, not rejected, measures TP1 again: PR.
    early, late = again(tp1_sr), again(tp1_sr)
    send(service, [rejection_note(codes.DCM.IncorrectModalityWorklistEntry, early)], tmp_path / "kos3")
    send(service, [early], tmp_path / "early")
    wait_idle(service)
    assert len(ehr.bundles) == sent
    send(service, [late], tmp_path / "late")
    wait_idle(service)
    assert recist_by_date(ehr, MRN)["2024-03-11"] == "PR"

    db = Database(db_url)
    try:
        with db.read() as session:
            rejected = {r.sop_uid: r.reason for r in session.scalars(select(RejectedInstance))}
            assert rejected == {
                tp1_sr.SOPInstanceUID: "113001",
                tp3_image.SOPInstanceUID: "113037",
                tp3_sr.SOPInstanceUID: "113037",
                early.SOPInstanceUID: "113038",
            }
            sources = set(session.scalars(select(Measurement.source_ref)))
            assert not sources & set(rejected)
            kinds = [e.kind for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
            assert kinds.count("dicom-rejection") == 3 and kinds.count("dicom-store-rejected") == 1
    finally:
        db.dispose()
