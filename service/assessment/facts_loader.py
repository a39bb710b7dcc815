"""Read one patient's stored inputs as ``rules.facts.PatientFacts``.

The order of the facts is made deterministic (by date, identity, arrival) so that evaluation does not depend
on the order in which inputs arrived, except where a later report of the same lesion on the same day is
meant to correct an earlier one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from sqlalchemy import exists, false, or_, select
from sqlalchemy.orm import Session

from rules.engine import get_engine
from rules.facts import (
    ClinicalObservation,
    FindingReport,
    LesionMeasurement,
    LesionVolume,
    LocalTherapy,
    LocalTherapyKind,
    PatientFacts,
    ReferenceMeasurement,
    Scan,
    TherapyLine,
)
from rules.pet_tracers import FDG, PetTracer, default_tracer, first_stated, identify
from rules.segment_codes import BODY_COMPOSITION_KINDS, LESION, SKELETAL_MUSCLE, SUBCUTANEOUS_FAT, VISCERAL_FAT
from rules.therapy_classes import ICI
from service.ops.logs import pseudonym
from service.persistence.measurements import fact_from
from service.persistence.models import (
    IMAGING_STUDIES,
    ClinicalFact,
    Instance,
    Measurement,
    Patient,
    RejectedInstance,
    Segment,
    Study,
    utcnow,
)


def _date(value) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _dec(value) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def _not_rejected(sop_uid_column):
    """A SEG rejected by an IOCM note while its job ran (so that the job wrote its segments after the note) is
    still never used."""
    return ~exists().where(RejectedInstance.sop_uid == sop_uid_column)


def _rejected_studies(session: Session, study_ids: list[int]) -> set[int]:
    """Studies that have received instances, every one of them rejected by an IOCM rejection note (the notes
    themselves aside). A study known only from FHIR (an ImagingStudy, no instance) is not one."""
    if not study_ids:
        return set()
    rows = session.execute(
        select(Instance.study_id, RejectedInstance.sop_uid)
        .outerjoin(RejectedInstance, RejectedInstance.sop_uid == Instance.sop_uid)
        .where(Instance.study_id.in_(study_ids), Instance.kind != "rejection")
    )
    live: set[int] = set()
    seen: set[int] = set()
    for study_id, rejected in rows:
        seen.add(study_id)
        if rejected is None:
            live.add(study_id)
    return seen - live


def load_facts(
    session: Session,
    patient: Patient,
    *,
    settle_seconds: float = 0.0,
    default_cancer_type: str | None = None,
    default_pet_tracer: str = FDG,
) -> PatientFacts:
    """The patient's facts. A study with images but no measurements yet becomes a (not evaluable) timepoint
    only once it has settled (no instance for ``settle_seconds``, contract §2 IMMUNORAD_STUDY_SETTLE_SECONDS),
    so that a report is not issued for images whose measurement report is still on its way."""
    notes: list[str] = []
    studies = {s.id: s for s in session.scalars(select(Study).where(Study.patient_id == patient.id))}
    study_ids = list(studies)
    query = select(Measurement).where(
        or_(Measurement.patient_id == patient.id, Measurement.study_id.in_(study_ids) if study_ids else false())
    )
    rows = list(session.scalars(query))
    for study_id in {r.study_id for r in rows if r.study_id is not None and r.study_id not in studies}:
        studies[study_id] = session.get_one(Study, study_id)  # a foreign key: the study exists

    measurements: list[tuple[tuple, LesionMeasurement]] = []
    references: list[ReferenceMeasurement] = []
    stated_tracers: dict[dt.date, list[PetTracer]] = {}
    pet_dates: set[dt.date] = set()
    symptom_dates: set[dt.date] = set()
    for row in rows:
        study = studies.get(row.study_id) if row.study_id else None
        scan_date = row.scan_date or (study.study_date if study else None)
        if scan_date is None:
            notes.append("a measurement waits for its study date (images of its study not received yet)")
            continue
        if row.symptom_driven:
            symptom_dates.add(scan_date)
        if row.tracer:
            tracer = identify(
                code=row.tracer.get("code"), scheme=row.tracer.get("scheme"), text=row.tracer.get("text"), source="fhir"
            )
            if tracer is not None:
                stated_tracers.setdefault(scan_date, []).append(tracer)
        if row.sul_peak is not None or row.suv_max is not None or row.reference_region:
            pet_dates.add(scan_date)
        stored = fact_from(row, scan_date, notes)
        if isinstance(stored, ReferenceMeasurement):
            references.append(stored)
        elif stored is not None:
            measurements.append(((scan_date, stored.lesion_id, row.received_at, row.id), stored))
    measurements.sort(key=lambda item: item[0])

    scans: dict[dt.date, Scan] = {}
    measured_dates = {m.scan_date for _, m in measurements}
    settled_before = utcnow() - dt.timedelta(seconds=settle_seconds)
    withdrawn = _rejected_studies(session, list(studies))
    for study in studies.values():
        if study is None or study.study_date is None:
            continue
        if study.id in withdrawn and study.study_date not in measured_dates:
            continue  # every instance of the study was rejected (IOCM rejection note): no scan
        if study.study_date not in measured_dates and study.last_instance_at > settled_before:
            continue  # images whose measurement report may still be on its way (settle timer pending)
        header = study.header or {}
        existing = scans.get(study.study_date)
        modalities = tuple(
            sorted(
                set(
                    (existing.modalities if existing else ()) + tuple(filter(None, (study.modalities or "").split(",")))
                )
            )
        )
        scans[study.study_date] = Scan(
            scan_date=study.study_date,
            modalities=modalities,
            study_uids=tuple(sorted(set((existing.study_uids if existing else ()) + (study.study_uid,)))),
            slice_thickness_mm=_dec(header.get("slice_thickness_mm"))
            or (existing.slice_thickness_mm if existing else None),
            pet_uptake_minutes=_dec(header.get("uptake_minutes"))
            or (existing.pet_uptake_minutes if existing else None),
            pet_injected_dose_mbq=_dec(header.get("injected_dose_mbq"))
            or (existing.pet_injected_dose_mbq if existing else None),
            patient_weight_kg=_dec(header.get("patient_weight_kg"))
            or (existing.patient_weight_kg if existing else None),
            symptom_driven=bool(header.get("symptom_driven"))
            or any(said.get("symptom_driven") for said in (header.get(IMAGING_STUDIES) or {}).values())
            or (existing.symptom_driven if existing else False),
        )
        if "PT" in modalities:
            pet_dates.add(study.study_date)
        header_tracer = identify(
            code=header.get("tracer_code"),
            scheme=header.get("tracer_scheme"),
            text=header.get("radiopharmaceutical") or header.get("tracer_meaning"),
            source="dicom",
        )
        if header_tracer is not None:
            stated_tracers.setdefault(study.study_date, []).insert(0, header_tracer)
    # Contract §9.3: the tracer of each PET timepoint (the images first, else the Observations), else the
    # configured default, said to be assumed; a scan flagged symptom-driven by an Observation is so as a whole.
    for day in sorted(pet_dates | set(stated_tracers) | symptom_dates):
        scan = scans.get(day) or Scan(scan_date=day)
        tracer = first_stated(stated_tracers.get(day, ()))
        if tracer is None and day in pet_dates:
            tracer = default_tracer(default_pet_tracer)
        if len({t.key for t in stated_tracers.get(day, ())}) > 1:
            notes.append(f"PET on {day}: the images and the Observations name different tracers; the first is used")
        scans[day] = dataclasses.replace(
            scan, pet_tracer=tracer or scan.pet_tracer, symptom_driven=scan.symptom_driven or day in symptom_dates
        )

    therapy, local, observations, findings = [], [], [], []
    diagnoses: list[tuple] = []
    facts = list(
        session.scalars(
            select(ClinicalFact)
            .where(ClinicalFact.patient_id == patient.id)
            .order_by(ClinicalFact.effective_date, ClinicalFact.source_ref)
        )
    )
    for fact in facts:
        p = fact.payload or {}
        source = f"{fact.origin}:{fact.kind}"
        try:
            if fact.kind == "therapy-line" and (start_date := _date(p.get("start_date"))):
                therapy.append(
                    TherapyLine(
                        agent=p.get("agent", "immune checkpoint inhibitor"),
                        start_date=start_date,
                        drug_class=p.get("drug_class"),
                        stop_date=_date(p.get("stop_date")),
                        stop_reason=p.get("stop_reason"),
                        source=source,
                        therapy_class=p.get("therapy_class") or ICI,
                    )
                )
            elif fact.kind == "local-therapy" and (performed_date := _date(p.get("date"))):
                local.append(
                    LocalTherapy(
                        kind=LocalTherapyKind(p["kind"]),
                        performed_date=performed_date,
                        lesion_ids=tuple(p.get("lesion_ids") or ()),
                        body_site=p.get("body_site"),
                        source=source,
                    )
                )
            elif fact.kind == "observation" and fact.effective_date:
                observations.append(
                    ClinicalObservation(
                        code=p["code"],
                        effective_date=fact.effective_date,
                        value=_dec(p.get("value")),
                        unit=p.get("unit"),
                        reference_high=_dec(p.get("reference_high")),
                        source=source,
                    )
                )
            elif fact.kind == "diagnosis":
                diagnoses.append((fact.effective_date or dt.date.min, p.get("code"), p.get("text")))
            elif fact.kind == "finding" and fact.effective_date:
                findings.append(
                    FindingReport(
                        finding_code=p["code"],
                        effective_date=fact.effective_date,
                        body_site=p.get("body_site"),
                        lesion_id=p.get("lesion_id"),
                        text=p.get("text"),
                        source=source,
                    )
                )
        except (KeyError, ValueError) as exc:
            notes.append(f"a {fact.kind} fact could not be used ({type(exc).__name__})")
    therapy = _merge_therapy_lines(therapy)
    # A coded finding about a named lesion (FHIR Observation.focus) qualifies that lesion from its date on,
    # as a Finding on the SR measurement group does (e.g. a sarcoid-like node is not counted as a new lesion).
    qualified = {f.lesion_id: f for f in findings if f.lesion_id}
    if qualified:
        measurements = [
            (
                key,
                dataclasses.replace(m, finding_code=qualified[m.lesion_id].finding_code)
                if m.lesion_id in qualified
                and m.finding_code is None
                and m.scan_date >= qualified[m.lesion_id].effective_date
                else m,
            )
            for key, m in measurements
        ]
    observations.extend(l3_area_observations(session, patient.id))
    volumes = lesion_volumes(session, patient.id)
    return PatientFacts(
        patient_ref=pseudonym(patient.id) or patient.id,
        sex=patient.sex,
        birth_date=patient.birth_date,
        deceased_date=patient.deceased_date,
        death_from_progression=patient.death_from_progression,
        cancer_type=patient.cancer_type or _diagnosis(diagnoses) or default_cancer_type,
        therapy_lines=tuple(therapy),
        local_therapies=tuple(sorted(local, key=lambda t: (t.performed_date, t.kind.value, t.lesion_ids))),
        scans=tuple(scans[d] for d in sorted(scans)),
        measurements=tuple(m for _, m in measurements),
        references=tuple(sorted(references, key=lambda r: (r.scan_date, r.region.value))),
        observations=tuple(observations),
        findings=tuple(findings),
        volumes=volumes,
        notes=tuple(sorted(set(notes))),
    )


TISSUE_OBSERVATION = {SKELETAL_MUSCLE: "muscle_area", SUBCUTANEOUS_FAT: "sat_area", VISCERAL_FAT: "vat_area"}
"""Body-composition segment kind → key of ``observation_codes`` in rules/rulesets/biomarkers.yaml (the codes the
SMI/sarcopenia and SAT/VAT rules read)."""


def l3_area_observations(session: Session, patient_id: str) -> list[ClinicalObservation]:
    """The L3 areas measured from body-composition SEG segments (contract §9.6; ``service/ingest/segmentation.py`` chose
    the L3 slice), as the observations the biomarker rules read — at every scan, so they are known over time."""
    codes = get_engine().rulebase["imaging-biomarkers"].parameters["observation_codes"]
    found = []
    rows = session.scalars(
        select(Segment)
        .where(
            Segment.patient_id == patient_id,
            Segment.kind.in_(BODY_COMPOSITION_KINDS),
            Segment.status == "computed",
            _not_rejected(Segment.seg_sop_uid),
        )
        .order_by(Segment.scan_date, Segment.id)
    )
    for row in rows:
        area = (row.stats or {}).get("l3_area_cm2")
        if area is None or row.scan_date is None:
            continue
        found.append(
            ClinicalObservation(
                code=codes[TISSUE_OBSERVATION[row.kind]],
                effective_date=row.scan_date,
                value=Decimal(str(area)),
                unit="cm2",
                source=f"dicom-seg:{row.kind} at L3 ({(row.stats or {}).get('l3_rule')})",
            )
        )
    return found


def lesion_volumes(session: Session, patient_id: str) -> tuple[LesionVolume, ...]:
    """Segmented volumes of tracked lesions (contract §9.6), one per lesion and scan date (the latest SEG wins)."""
    found: dict[tuple[str, dt.date, str], LesionVolume] = {}
    rows = session.scalars(
        select(Segment)
        .where(
            Segment.patient_id == patient_id,
            Segment.kind == LESION,
            Segment.status == "computed",
            Segment.identity_key.is_not(None),
            Segment.volume_cm3.is_not(None),
            _not_rejected(Segment.seg_sop_uid),
        )
        .order_by(Segment.computed_at, Segment.id)
    )
    for row in rows:
        if row.scan_date is None or row.identity_key is None or row.volume_cm3 is None:
            continue
        tlg = (row.stats or {}).get("tlg")
        found[(row.identity_key, row.scan_date, row.modality or "")] = LesionVolume(
            lesion_id=row.identity_key,
            scan_date=row.scan_date,
            volume_cm3=row.volume_cm3,
            source=f"dicom-seg:segment {row.segment_number}",
            modality=row.modality,
            tlg=Decimal(str(tlg)) if tlg is not None else None,
        )
    return tuple(sorted(found.values(), key=lambda v: (v.scan_date, v.lesion_id, v.modality or "")))


def _diagnosis(diagnoses: list[tuple]) -> str | None:
    """The latest cancer diagnosis: its display text when it names the disease, else its SNOMED CT code."""
    if not diagnoses:
        return None
    _, code, text = sorted(diagnoses, key=lambda d: d[0])[-1]
    return text or (f"http://snomed.info/sct|{code}" if code else None)


def _merge_therapy_lines(lines: list[TherapyLine]) -> list[TherapyLine]:
    """Administrations of the same agent make one line: its start is the first dose, its stop the latest stop."""
    by_agent: dict[str, TherapyLine] = {}
    for line in sorted(lines, key=lambda therapy: (therapy.start_date, therapy.agent)):
        key = line.agent.lower()
        current = by_agent.get(key)
        if current is None:
            by_agent[key] = line
            continue
        stop = max(filter(None, (current.stop_date, line.stop_date)), default=None)
        by_agent[key] = TherapyLine(
            agent=current.agent,
            start_date=min(current.start_date, line.start_date),
            drug_class=current.drug_class or line.drug_class,
            stop_date=stop,
            stop_reason=line.stop_reason or current.stop_reason,
            source=current.source,
            therapy_class=current.therapy_class,
        )
    return sorted(by_agent.values(), key=lambda therapy: (therapy.start_date, therapy.agent))
