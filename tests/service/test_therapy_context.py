"""Contract §9.3: an unclassified drug posted to us does not stand for the therapy start, so the EHR context pull
(service.ingest.context_pull) still runs for such a patient; a classified line of any immunotherapy class stops it."""

from __future__ import annotations

from service.ingest.context_pull import has_posted_therapy
from service.persistence.models import ClinicalFact
from service.persistence.store import upsert_patient


def _line(patient_id: str, ref: str, therapy_class: str | None, origin: str = "inbound") -> ClinicalFact:
    payload = {"agent": ref, "start_date": "2024-01-08"}
    if therapy_class is not None:
        payload["therapy_class"] = therapy_class
    return ClinicalFact(patient_id=patient_id, kind="therapy-line", payload=payload, source_ref=ref, origin=origin)


def test_only_a_classified_posted_line_stops_the_pull(db):
    with db.write() as session:
        patient = upsert_patient(session, "MRN-CTX")
        session.flush()
        session.add(_line(patient.id, "MedicationAdministration/x", "unclassified"))
        session.add(_line(patient.id, "ehr:MedicationAdministration/y", "cell-therapy", origin="ehr-pull"))
        session.flush()
        assert has_posted_therapy(session, patient.id) is False
        session.add(_line(patient.id, "MedicationAdministration/car-t", "cell-therapy"))
        session.flush()
        assert has_posted_therapy(session, patient.id) is True


def test_a_line_stored_before_therapy_classes_counts_as_a_checkpoint_inhibitor(db):
    with db.write() as session:
        patient = upsert_patient(session, "MRN-CTX-V1")
        session.flush()
        session.add(_line(patient.id, "MedicationAdministration/v1", None))
        session.flush()
        assert has_posted_therapy(session, patient.id) is True
