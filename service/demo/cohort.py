"""``immunorad demo``: a synthetic cohort sent through the real interfaces (FHIR Bundles, then C-STORE).

Each patient is a ``rules.scenario.Case``; every scan becomes a small CT image plus a TID 1500 report built
with highdicom, with one stable Tracking UID per lesion. The therapy start goes in as a FHIR
MedicationAdministration. Nothing is written to the database directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from rules.facts import LesionRole, LesionStatus
from rules.scenario import ABSENT, NEW, NT, Case, Lesion, T, c, nt_present
from service.demo.sr_writer import LesionSpec, build_ct_image, build_measurement_report

logger = logging.getLogger(__name__)

D = dt.date.fromisoformat

SITES = {"lung": codes.SCT.Lung, "liver": codes.SCT.Liver, "lymph node": codes.SCT.LymphNode}


def stable_uid(*parts: str) -> str:
    """A deterministic ``2.25`` UID (so that a re-run of the demo re-sends the same instances)."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return UID(f"2.25.{int.from_bytes(digest[:16], 'big')}")


def lesion_spec(case: Case, mrn: str, lesion: Lesion, label: str) -> LesionSpec | None:
    cell = lesion.cells.get(label)
    if cell is None or cell.status is LesionStatus.NOT_ASSESSED:
        return None  # not reported = not assessed
    site = SITES.get(lesion.organ)
    kwargs: dict[str, Any] = dict(
        tracking_uid=stable_uid(mrn, "lesion", lesion.key), label=lesion.key, site=site, nodal=lesion.nodal
    )
    if label == "BL" and lesion.role in (LesionRole.TARGET, LesionRole.NON_TARGET):
        kwargs["baseline_category"] = lesion.role.value
    if lesion.role is LesionRole.NON_TARGET:
        status = (
            "absent"
            if cell.status is LesionStatus.ABSENT
            else (cell.nontarget_status.value if cell.nontarget_status else "present")
        )
        return LesionSpec(
            nontarget_status=status,
            nontarget_change=cell.nontarget_change.value if cell.nontarget_change else None,
            **kwargs,
        )
    if cell.status is LesionStatus.ABSENT:
        return LesionSpec(long_axis_mm=0.0, short_axis_mm=0.0, **kwargs)
    if cell.status is LesionStatus.TOO_SMALL:
        return LesionSpec(too_small=True, **kwargs)
    return LesionSpec(
        long_axis_mm=cell.ld,
        short_axis_mm=cell.sa,
        equivocal=cell.equivocal or None,
        nontarget_change=cell.nontarget_change.value if cell.nontarget_change else None,
        **kwargs,
    )


def case_datasets(case: Case, mrn: str, patient_name: str = "DEMO^PATIENT") -> list[Dataset]:
    """For each scan (date order): a CT image, then its TID 1500 measurement report."""
    out: list[Dataset] = []
    for label, day in sorted(case.scans.items(), key=lambda item: item[1]):
        study_uid = stable_uid(mrn, "study", label)
        image = build_ct_image(
            patient_id=mrn,
            patient_name=patient_name,
            study_instance_uid=study_uid,
            study_date=day,
            series_instance_uid=stable_uid(mrn, "series", label),
            sop_instance_uid=stable_uid(mrn, "image", label),
            accession_number=f"A{abs(hash(study_uid)) % 10**8}",
        )
        specs = [spec for lesion in case.lesions if (spec := lesion_spec(case, mrn, lesion, label)) is not None]
        out.append(image)
        if specs:
            out.append(
                build_measurement_report(
                    evidence=[image],
                    lesions=specs,
                    sop_instance_uid=stable_uid(mrn, "sr", label),
                    series_instance_uid=stable_uid(mrn, "sr-series", label),
                )
            )
    return out


def case_bundle(
    case: Case, mrn: str, patient_id_system: str, *, sex: str = "female", birth_date: str = "1960-01-01"
) -> dict:
    """A transaction Bundle: the Patient and the first checkpoint-inhibitor administration (C1D1)."""
    patient_url = f"urn:uuid:{stable_uid(mrn, 'fhir-patient')}"
    identifier = f"{patient_id_system}|{mrn}"
    entries = [
        {
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": patient_id_system, "value": mrn}],
                "gender": sex,
                "birthDate": birth_date,
            },
            "request": {"method": "PUT", "url": f"Patient?identifier={identifier}"},
        },
        {
            "resource": {
                "resourceType": "MedicationAdministration",
                "identifier": [{"system": "urn:immunorad:demo:administration", "value": f"{mrn}-c1d1"}],
                "status": "completed",
                "medicationCodeableConcept": {"text": case.agent},
                "subject": {"reference": patient_url},
                "effectiveDateTime": case.c1d1.isoformat(),
            },
            "request": {
                "method": "PUT",
                "url": f"MedicationAdministration?identifier=urn:immunorad:demo:administration|{mrn}-c1d1",
            },
        },
    ]
    if case.therapy_stop:
        entries.append(
            {
                "resource": {
                    "resourceType": "MedicationStatement",
                    "identifier": [{"system": "urn:immunorad:demo:statement", "value": f"{mrn}-stop"}],
                    "status": "stopped",
                    "medicationCodeableConcept": {"text": case.agent},
                    "subject": {"reference": patient_url},
                    "effectivePeriod": {"start": case.c1d1.isoformat(), "end": case.therapy_stop.isoformat()},
                },
                "request": {
                    "method": "PUT",
                    "url": f"MedicationStatement?identifier=urn:immunorad:demo:statement|{mrn}-stop",
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


SNOMED_SITES = {"lung": "39607008", "liver": "10200004", "lymph node": "59441001"}


def case_measurements_bundle(
    case: Case, mrn: str, patient_id_system: str, canonical: str = "http://immunorad.org/fhir"
) -> dict:
    """The same timeline as FHIR tumour-measurement Observations (contract §4, mCODE TumorSize shape).

    Each lesion is a contained BodyStructure identified by its tracking UID (``urn:dicom:uid``); lesion
    attributes are components in ``{canonical}/CodeSystem/immunorad``. One conditional PUT per observation.
    """
    own = f"{canonical}/CodeSystem/immunorad"
    loinc = "http://loinc.org"
    subject = {"reference": f"Patient?identifier={patient_id_system}|{mrn}"}
    entries = []
    for lesion in case.lesions:
        for label, cell in lesion.cells.items():
            if cell.status is LesionStatus.NOT_ASSESSED:
                continue
            day = case.scans[label]
            components = []

            def coded(code: str, value: str) -> dict:
                return {
                    "code": {"coding": [{"system": own, "code": code}]},
                    "valueCodeableConcept": {"coding": [{"system": own, "code": value}]},
                }

            if label == "BL" and lesion.role in (LesionRole.TARGET, LesionRole.NON_TARGET):
                components.append(coded("lesion-role", lesion.role.value))
            elif lesion.role is LesionRole.NEW:
                components.append(coded("lesion-role", "new"))
            if lesion.role is LesionRole.NON_TARGET:
                status = (
                    "absent"
                    if cell.status is LesionStatus.ABSENT
                    else (cell.nontarget_status.value if cell.nontarget_status else "present")
                )
                components.append(coded("non-target-status", status))
            elif cell.status is LesionStatus.TOO_SMALL:
                components.append({"code": {"coding": [{"system": own, "code": "too-small"}]}, "valueBoolean": True})
            else:
                long_axis, short_axis = (0, 0) if cell.status is LesionStatus.ABSENT else (cell.ld, cell.sa)
                components.append(
                    {
                        "code": {"coding": [{"system": loinc, "code": "33728-7"}]},
                        "valueQuantity": {
                            "value": long_axis,
                            "unit": "mm",
                            "system": "http://unitsofmeasure.org",
                            "code": "mm",
                        },
                    }
                )
                if short_axis is not None:
                    components.append(
                        {
                            "code": {"coding": [{"system": loinc, "code": "33729-5"}]},
                            "valueQuantity": {
                                "value": short_axis,
                                "unit": "mm",
                                "system": "http://unitsofmeasure.org",
                                "code": "mm",
                            },
                        }
                    )
            if cell.nontarget_change is not None:
                components.append(coded("non-target-change", cell.nontarget_change.value))
            if cell.equivocal:
                components.append({"code": {"coding": [{"system": own, "code": "equivocal"}]}, "valueBoolean": True})
            if lesion.nodal:
                components.append({"code": {"coding": [{"system": own, "code": "nodal"}]}, "valueBoolean": True})
            identifier = f"{mrn}/{lesion.key}/{day.isoformat()}"
            observation = {
                "resourceType": "Observation",
                "identifier": [{"system": "urn:immunorad:demo:measurement", "value": identifier}],
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}
                        ]
                    }
                ],
                "code": {"coding": [{"system": loinc, "code": "21889-1", "display": "Size Tumor"}]},
                "subject": subject,
                "effectiveDateTime": day.isoformat(),
                "contained": [
                    {
                        "resourceType": "BodyStructure",
                        "id": "lesion",
                        "identifier": [
                            {"system": "urn:dicom:uid", "value": f"urn:oid:{stable_uid(mrn, 'lesion', lesion.key)}"},
                            {"value": lesion.key},
                        ],
                        "patient": subject,
                    }
                ],
                "focus": [{"reference": "#lesion"}],
                "component": components,
            }
            site = SNOMED_SITES.get(lesion.organ)
            if site:
                observation["bodySite"] = {"coding": [{"system": "http://snomed.info/sct", "code": site}]}
            entries.append(
                {
                    "resource": observation,
                    "request": {
                        "method": "PUT",
                        "url": f"Observation?identifier=urn:immunorad:demo:measurement|{identifier}",
                    },
                }
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def post_json(url: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(  # noqa: S310 -- the URL is the service's own http base URL from configuration
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 -- the request built above targets the service's own base URL
        return json.loads(response.read() or b"{}")


def send_datasets(
    datasets: Sequence[Dataset], *, host: str, port: int, ae_title: str, calling_ae: str = "IMMUNORAD-DEMO"
) -> list[int]:
    """C-STORE every dataset in one association (pynetdicom as the sending peer); the statuses."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    for context_uid in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(context_uid)
    association = ae.associate(host, port, ae_title=ae_title)
    if not association.is_established:
        raise ConnectionError(f"association with {ae_title}@{host}:{port} was not accepted")
    statuses = []
    try:
        for ds in datasets:
            status = association.send_c_store(ds)
            statuses.append(int(status.Status) if status else -1)
    finally:
        association.release()
    return statuses


def demo_cohort() -> list[tuple[str, str, Case]]:
    """(identifier, what it shows, case) for every demo patient."""
    e1 = Case(
        "demo-partial-response",
        D("2024-01-15"),
        {"BL": D("2024-01-08"), "TP1": D("2024-03-11"), "TP2": D("2024-05-06"), "TP3": D("2024-07-01")},
        (
            Lesion("T1 lung", T, "lung", cells={"BL": c(40, 30), "TP1": c(28, 21), "TP2": c(26, 20), "TP3": c(27, 20)}),
            Lesion(
                "T2 liver", T, "liver", cells={"BL": c(30, 25), "TP1": c(21, 18), "TP2": c(20, 16), "TP3": c(21, 17)}
            ),
            Lesion(
                "T3 node",
                T,
                "lymph node",
                nodal=True,
                cells={"BL": c(25, 20), "TP1": c(20, 14), "TP2": c(18, 12), "TP3": c(19, 13)},
            ),
            Lesion("NT bone", NT, "bone", cells=nt_present(["BL", "TP1", "TP2", "TP3"])),
        ),
    )
    pseudo = Case(
        "demo-pseudoprogression",
        D("2024-05-06"),
        {"BL": D("2024-04-29"), "TP1": D("2024-07-01"), "TP2": D("2024-08-26"), "TP3": D("2024-10-21")},
        (
            Lesion("T1 lung", T, "lung", cells={"BL": c(30, 25), "TP1": c(18, 15), "TP2": c(14, 12), "TP3": c(12, 10)}),
            Lesion(
                "T2 liver", T, "liver", cells={"BL": c(30, 26), "TP1": c(20, 16), "TP2": c(15, 12), "TP3": c(12, 10)}
            ),
            Lesion(
                "T3 node",
                T,
                "lymph node",
                nodal=True,
                cells={"BL": c(28, 20), "TP1": c(20, 14), "TP2": c(16, 11), "TP3": c(13, 9)},
            ),
            Lesion("NT bone", NT, "bone", cells=nt_present(["BL", "TP1", "TP2", "TP3"])),
            Lesion("N1 lung", NEW, "lung", cells={"TP1": c(6, 4), "TP2": c(6, 4), "TP3": ABSENT}),
        ),
    )
    dissociated = Case(
        "demo-dissociated-response",
        D("2024-01-12"),
        {"BL": D("2024-01-10"), "TP1": D("2024-03-06")},
        (
            Lesion("L1 liver", T, "liver", cells={"BL": c(30, 22), "TP1": c(15, 11)}),
            Lesion("L2 lung", T, "lung", cells={"BL": c(20, 15), "TP1": c(27, 20)}),
            Lesion("L3 node", T, "lymph node", nodal=True, cells={"BL": c(24, 18), "TP1": c(18, 12)}),
        ),
    )
    hyper = Case(
        "demo-hyperprogression",
        D("2024-02-05"),
        {"E0": D("2024-01-02"), "BL": D("2024-02-01"), "TP1": D("2024-03-18")},
        (
            Lesion("T1 lung", T, "lung", cells={"E0": c(20, 15), "BL": c(22, 16), "TP1": c(40, 30)}),
            Lesion("T2 liver", T, "liver", cells={"E0": c(20, 15), "BL": c(22, 16), "TP1": c(40, 30)}),
            Lesion("N1 liver", NEW, "liver", cells={"TP1": c(12, 10)}),
            Lesion("N2 liver", NEW, "liver", cells={"TP1": c(14, 11)}),
        ),
        therapy_stop=D("2024-03-20"),
    )
    return [
        ("DEMO-0001", "partial response at exactly −30 % (RECIST 1.1 E1)", e1),
        ("DEMO-0002", "pseudoprogression: RECIST PD, iRECIST iUPD then iPR (E7)", pseudo),
        ("DEMO-0003", "dissociated response (K9)", dissociated),
        ("DEMO-0004", "hyperprogression with a pre-baseline scan (K1)", hyper),
    ]


def run_demo(
    *,
    base_url: str,
    token: str,
    dicom_host: str,
    dicom_port: int,
    ae_title: str,
    patient_id_system: str | None = None,
    cohort: Iterable[tuple[str, str, Case]] | None = None,
) -> None:
    import os

    system = patient_id_system or os.environ.get("IMMUNORAD_PATIENT_ID_SYSTEM", "urn:immunorad:mrn")
    base_url = base_url.rstrip("/")
    for mrn, what, case in cohort or demo_cohort():
        post_json(f"{base_url}/fhir", token, case_bundle(case, mrn, system))
        statuses = send_datasets(case_datasets(case, mrn), host=dicom_host, port=dicom_port, ae_title=ae_title)
        failed = [hex(s) for s in statuses if s != 0]
        print(
            f"  {mrn}: {what} — {len(statuses)} instances sent{' (failures: ' + ', '.join(failed) + ')' if failed else ''}",
            flush=True,
        )
