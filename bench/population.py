"""Patients for the benchmarks: the 10-timepoint × 10-lesion case, in-process ingestion through the real
ingest code (DicomIngest, FhirIngest), and SQL cloning of ingested patients (for the 10 000-patient cohort).
"""

from __future__ import annotations

import datetime as dt
import io

from rules.facts import NonTargetStatus
from rules.scenario import NEW, NT, Case, Cell, Lesion, T, c

D = dt.date.fromisoformat
SYSTEM = "urn:immunorad:mrn"


def big_case() -> Case:
    """One patient, 10 timepoints (baseline + 9 follow-ups), 10 lesions: 5 targets (2 nodes), 3 non-targets,
    2 new lesions; response to a nadir, then new lesions, growth and unequivocal non-target progression —
    so that every criterion, the confirmation logic, kinetics and the alert rules have work to do."""
    labels = ["BL"] + [f"TP{i}" for i in range(1, 10)]
    start = D("2024-01-08")
    scans = {label: start + dt.timedelta(days=(0 if i == 0 else 63 + 56 * (i - 1))) for i, label in enumerate(labels)}
    factors = [1.0, 0.8, 0.68, 0.62, 0.6, 0.66, 0.78, 0.9, 1.05, 1.2]

    def sized(ld: float, sa: float) -> dict:
        return {label: c(round(ld * f, 1), round(sa * f, 1)) for label, f in zip(labels, factors, strict=True)}

    present = {label: Cell(nontarget_status=NonTargetStatus.PRESENT) for label in labels}
    progressing = dict(present, TP9=Cell(nontarget_status=NonTargetStatus.UNEQUIVOCAL_PROGRESSION))
    lesions = (
        Lesion("T1 lung", T, "lung", cells=sized(42, 30)),
        Lesion("T2 liver", T, "liver", cells=sized(35, 26)),
        Lesion("T3 node", T, "lymph node", nodal=True, cells=sized(24, 18)),
        Lesion("T4 adrenal", T, "adrenal", cells=sized(28, 20)),
        Lesion("T5 lung", T, "lung", cells=sized(19, 15)),
        Lesion("NT1 bone", NT, "bone", cells=progressing),
        Lesion("NT2 pleura", NT, "pleura", cells=present),
        Lesion("NT3 node", NT, "lymph node", nodal=True, cells=present),
        Lesion("N1 liver", NEW, "liver", cells={label: c(8 + 3 * i, 6 + 2 * i) for i, label in enumerate(labels[5:])}),
        Lesion("N2 lung", NEW, "lung", cells={label: c(11 + 2 * i, 9 + i) for i, label in enumerate(labels[7:])}),
    )
    return Case("bench-10x10", D("2024-01-15"), scans, lesions, therapy_stop=None)


def wide_case(lesions: int = 20, timepoints: int = 10) -> Case:
    """For the FHIR ingest: ``lesions`` × ``timepoints`` tumour-measurement Observations (200 by default)."""
    labels = ["BL"] + [f"TP{i}" for i in range(1, timepoints)]
    scans = {label: D("2024-01-08") + dt.timedelta(days=56 * i) for i, label in enumerate(labels)}
    rows = []
    for n in range(lesions):
        if n < 5:
            rows.append(
                Lesion(f"T{n + 1}", T, "lung", cells={label: c(20 + n - i * 0.5, 15) for i, label in enumerate(labels)})
            )
        else:
            rows.append(
                Lesion(
                    f"NT{n + 1}",
                    NT,
                    "bone",
                    cells={label: Cell(nontarget_status=NonTargetStatus.PRESENT) for label in labels},
                )
            )
    return Case("bench-wide", D("2024-01-15"), scans, tuple(rows))


def ingest_fhir(db, settings, bundle: dict) -> dict:
    from service.ingest.fhir_ingest import FhirIngest

    with db.write() as session:
        return FhirIngest(settings).bundle(session, bundle, agent="bench")


def ingest_dicom(db, settings, datasets) -> None:
    """Each data set through DicomIngest, exactly as the listener would hand it over."""
    import pydicom

    from dicom_listener.scp import ReceivedInstance
    from service.ingest.dicom_ingest import DicomIngest

    ingest = DicomIngest(db, settings)
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        ingest(
            ReceivedInstance(
                str(ds.SOPInstanceUID),
                str(ds.SOPClassUID),
                pydicom.uid.ExplicitVRLittleEndian,
                "BENCH",
                buffer.getvalue(),
            )
        )


def ingest_case(db, settings, case: Case, mrn: str, *, via: str = "dicom") -> str:
    """The case's FHIR therapy Bundle, then its images and reports (``dicom``) or Observations (``fhir``)."""
    from sqlalchemy import select

    from service.demo.cohort import case_bundle, case_datasets, case_measurements_bundle
    from service.persistence.models import Patient

    ingest_fhir(db, settings, case_bundle(case, mrn, SYSTEM))
    if via == "dicom":
        ingest_dicom(db, settings, case_datasets(case, mrn))
    else:
        ingest_fhir(db, settings, case_measurements_bundle(case, mrn, SYSTEM))
    with db.read() as session:
        return session.scalars(select(Patient.id).where(Patient.mrn == mrn)).one()


# -- cloning -----------------------------------------------------------------------------------------------

CLONED = ("patients", "studies", "instances", "lesions", "measurements", "clinical_facts")
"""What an evaluation reads. FHIR copies of the inputs, jobs and audit rows are not cloned."""


def clone_patients(url: str, copies: int) -> int:
    """Every patient in the database copied ``copies`` times (PostgreSQL, one INSERT … SELECT per table):
    new patient ids and MRNs, new study/instance/SOP UIDs, same measurements. Returns the patient count."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            stride = {
                t: int(conn.execute(text(f"SELECT coalesce(max(id), 0) + 1 FROM {t}")).scalar())
                for t in CLONED
                if t != "patients"
            }
            columns = {t: [c["name"] for c in inspect(conn).get_columns(t)] for t in CLONED}
            exprs = {
                "patients": {"id": "md5(t.id || '#' || n)::uuid::text", "mrn": "t.mrn || '#' || n"},
                "studies": {
                    "id": f"t.id + n * {stride['studies']}",
                    "study_uid": "t.study_uid || '.' || n",
                    "patient_id": "md5(t.patient_id || '#' || n)::uuid::text",
                },
                "instances": {
                    "id": f"t.id + n * {stride['instances']}",
                    "sop_uid": "t.sop_uid || '.' || n",
                    "study_id": f"t.study_id + n * {stride['studies']}",
                },
                "lesions": {
                    "id": f"t.id + n * {stride['lesions']}",
                    "patient_id": "md5(t.patient_id || '#' || n)::uuid::text",
                },
                "measurements": {
                    "id": f"t.id + n * {stride['measurements']}",
                    "patient_id": "md5(t.patient_id || '#' || n)::uuid::text",
                    "lesion_id": f"t.lesion_id + n * {stride['lesions']}",
                    "study_id": f"t.study_id + n * {stride['studies']}",
                    "source_ref": "t.source_ref || '#' || n",
                },
                "clinical_facts": {
                    "id": f"t.id + n * {stride['clinical_facts']}",
                    "patient_id": "md5(t.patient_id || '#' || n)::uuid::text",
                    "source_ref": "t.source_ref || '#' || n",
                },
            }
            for table in CLONED:
                cols = columns[table]
                select_list = ", ".join(exprs[table].get(col, f"t.{col}") for col in cols)
                conn.execute(
                    text(
                        f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select_list} "
                        f"FROM {table} t CROSS JOIN generate_series(1, :copies) AS n"
                    ),
                    {"copies": copies},
                )
                if table != "patients":
                    conn.execute(
                        text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                    )
            total = int(conn.execute(text("SELECT count(*) FROM patients")).scalar())
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        return total
    finally:
        engine.dispose()
