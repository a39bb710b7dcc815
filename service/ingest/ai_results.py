"""AI results received in a TID 1500 SR, kept with their Algorithm Identification (contract §9.6 "Signatures").

A measurement group's NUM that carries TID 4019 (Algorithm Name, Version, Parameters) is parsed by
``dicom_listener/tid1500/reader.py`` into an ``AlgorithmResult``; here, in the listener's transaction, each becomes a
signature Observation (``{C}/CodeSystem/immunorad#signature``) on the lesion at the scan date: ``method`` names the
algorithm, its version and parameters and the measured concept; component ``signature-output`` keeps the concept as
received. immunorad cannot verify how a received algorithm was validated, so these are marked provisional.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from dicom_listener.tid1500.model import AlgorithmResult, ParsedReport
from fhir_mappings.codes import LocalSystems
from fhir_mappings.features import _lesion_body_structure
from fhir_mappings.signatures import signature_observation
from service.assessment.evaluation import patient_ref
from service.ops.config import Settings
from service.persistence.fhir_store import save_resource
from service.persistence.models import Patient, Study, utcnow

_SCHEMES = {
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "SCT": "http://snomed.info/sct",
    "LN": "http://loinc.org",
}


def method_text(result: AlgorithmResult) -> str:
    parameters = f"; parameters: {', '.join(result.algorithm_parameters)}" if result.algorithm_parameters else ""
    what = result.concept.meaning or result.concept.value
    return (
        f"AI result {what!r} by algorithm {result.algorithm_name} version {result.algorithm_version}{parameters}; "
        "received as a DICOM SR TID 1500 measurement with TID 4019 Algorithm Identification "
        "[PROVISIONAL: validation of the algorithm not verified by immunorad]"
    )


def publish_algorithm_results(
    session: Session, settings: Settings, patient: Patient, study: Study, parsed: ParsedReport
) -> int:
    """Save one signature Observation per AI result of an identified lesion; returns how many."""
    if study.study_date is None:
        return 0
    ref = patient_ref(settings, patient)
    systems = LocalSystems.from_canonical(settings.fhir_canonical)
    saved = 0
    for group in parsed.groups:
        if group.identity_key is None or group.rejected_reason:
            continue
        for result in group.algorithm_results:
            output = {
                "system": _SCHEMES.get(result.concept.scheme, result.concept.scheme),
                "code": result.concept.value,
                "display": result.concept.meaning,
            }
            resource = signature_observation(
                systems,
                ref,
                name=result.algorithm_name,
                version=result.algorithm_version,
                method_text=method_text(result),
                provisional=True,
                score=float(result.value),
                scan_date=study.study_date,
                lesion_key=group.identity_key,
                derived_from=[],
                issued=utcnow(),
                lesion=_lesion_body_structure(ref, group.identity_key, group.label),
                output=output,
                unit=result.unit if result.unit not in ("1", "") else None,
            )
            save_resource(session, resource, patient_id=patient.id, origin="dicom")
            saved += 1
    return saved
