"""FHIR writes: create, update, conditional create/update on identifier, and batch/transaction Bundles.

Every accepted resource is validated (fhir.resources R4B plus our binding and reference checks), stored
as received in the FHIR store, and mapped to domain rows (measurements, clinical facts, patient fields) in
the same database transaction as the evaluation job it triggers. A transaction Bundle is all or nothing.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_mappings.codes import LocalSystems
from fhir_mappings.inbound import (
    ClinicalRecord,
    DeathRecord,
    MappingError,
    PatientRecord,
    Plausibility,
    StudyRecord,
    imaging_study_uid,
    is_withdrawn,
    map_resource,
    withdrawn_death_cause,
)
from fhir_mappings.measurement_input import MeasurementInput
from fhir_mappings.validation import InvalidResource, validate_resource
from rules.plausibility import birth_date_problem
from service.assessment import signoff
from service.ops.config import Settings, today
from service.persistence.fhir_store import (
    find_by_identifier,
    get_resource,
    patient_ids_for_identifier,
    save_resource_reporting,
    split_token,
)
from service.persistence.measurements import row_for
from service.persistence.models import (
    IMAGING_STUDIES,
    ClinicalFact,
    FhirResource,
    Instance,
    Measurement,
    Patient,
    Study,
)
from service.persistence.store import (
    LesionCache,
    attach_measurements,
    audit,
    evaluate_soon,
    link_study,
    settle_later,
    upsert_patient,
)

ACCEPTED_TYPES = (
    "Patient",
    "Observation",
    "BodyStructure",
    "ImagingStudy",
    "MedicationAdministration",
    "MedicationStatement",
    "MedicationRequest",
    "Procedure",
    "Condition",
)
READ_ONLY_TYPES = ("DiagnosticReport", "Flag", "AuditEvent", "Provenance")
PLACEHOLDER_PREFIXES = ("urn:uuid:", "urn:oid:")
"""A Bundle entry's ``fullUrl`` with one of these prefixes is a placeholder the server replaces by the entry's
resolved identity in every reference of the transaction (FHIR R4 http.html#trules)."""
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class FhirError(Exception):
    """A request the FHIR endpoint refuses, with the HTTP status and OperationOutcome issue to send."""

    def __init__(
        self,
        status: int,
        diagnostics: str,
        *,
        code: str = "invalid",
        expression: str | None = None,
        issues: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression
        self.issues = issues


def check_id(value: Any, where: str) -> str:
    """400 unless ``value`` is a FHIR R4 ``id``: 1 to 64 characters of ``[A-Za-z0-9\\-.]`` (datatypes.html#id)."""
    if not isinstance(value, str) or not _FHIR_ID.fullmatch(value):
        raise FhirError(
            400,
            f"{where}: an id is 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'",
            code="value",
            expression=where,
        )
    return value


def parse_condition(kind: str, text: str, where: str) -> list[str]:
    """The ``system|value`` tokens of a condition (``identifier=…``, ``Type?identifier=…``; several are ANDed).

    400 when it is empty or malformed (no ``=``, an empty value, ``system|`` without a value, another resource
    type) or uses another parameter: conditional operations are supported on ``identifier`` only.
    """
    query = text
    if "?" in text:
        prefix, _, query = text.partition("?")
        if prefix.strip("/") != kind:
            raise FhirError(400, f"the condition {text!r} is not on {kind}", code="invalid", expression=where)
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise FhirError(400, f"malformed condition {text!r}", code="invalid", expression=where) from exc
    if set(params) - {"identifier"}:
        raise FhirError(
            400, "conditional operations are supported on identifier only", code="not-supported", expression=where
        )
    tokens = params.get("identifier") or []
    if not tokens or any(not split_token(token)[1].strip() for token in tokens):
        raise FhirError(400, f"the condition {text!r} has an empty identifier", code="invalid", expression=where)
    return tokens


@dataclass
class WriteResult:
    status: int
    resource: dict[str, Any]
    patient_id: str | None = None
    created: bool = False


@dataclass
class TransactionState:
    """One unit of work that commits or rolls back whole (a transaction Bundle, a batch entry, a single request):
    urn:uuid → resolved reference, the BodyStructures visible in it, and the patients and lesions it has already
    looked up (held here, so that the session's weak identity map cannot drop them between entries)."""

    references: dict[str, str] = field(default_factory=dict)
    body_structures: dict[str, dict[str, Any]] = field(default_factory=dict)
    patients_touched: set[str] = field(default_factory=set)
    patients: dict[str, Patient] = field(default_factory=dict)
    lesions: LesionCache = field(default_factory=dict)
    pending_patients: dict[str, str] = field(default_factory=dict)
    """Patients this transaction creates, by ``system|value`` of each of their identifiers → their planned id.
    Entries run in the R4 order (POST before PUT), so an Observation may be stored before the conditional PUT that
    creates its Patient: the patient row is then made under the planned id, and the Patient entry fills it."""

    def patient(self, session: Session, patient_id: str) -> Patient | None:
        found = self.patients.get(patient_id)
        if found is None:
            found = session.get(Patient, patient_id)
            if found is None and patient_id in self.pending_patients.values():
                found = Patient(id=patient_id)
                session.add(found)
                session.flush()
            if found is not None:
                self.patients[patient_id] = found
        return found


@dataclass
class PlannedEntry:
    """One transaction/batch entry after planning: what it does and the identity it writes, fixed before any
    entry executes (conditions are resolved against the database as it was when the Bundle arrived)."""

    index: int
    entry: dict[str, Any]
    method: str
    kind: str
    target: str | None = None
    """The id the entry creates or updates (None for GET)."""
    match: FhirResource | None = None
    """The stored resource its condition (ifNoneExist or a conditional PUT) matched."""
    id_is_ours: bool = False


def _walk_references(value: Any, mapping: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item in mapping:
                out[key] = mapping[item]
            else:
                out[key] = _walk_references(item, mapping)
        return out
    if isinstance(value, list):
        return [_walk_references(v, mapping) for v in value]
    return value


class FhirIngest:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- single interactions ------------------------------------------------------------------------
    def validate(self, resource: Any, expected_type: str | None = None) -> dict[str, Any]:
        if not isinstance(resource, dict) or "resourceType" not in resource:
            raise FhirError(400, "the body is not a FHIR resource (resourceType missing)", code="structure")
        kind = resource["resourceType"]
        if expected_type and kind != expected_type:
            raise FhirError(400, f"resourceType {kind} does not match the URL ({expected_type})", code="invalid")
        if kind in READ_ONLY_TYPES:
            raise FhirError(
                405,
                f"{kind} resources are produced by immunorad and cannot be written"
                + (
                    " (a DiagnosticReport is accepted only as a sign-off: status final, our report's identifier, "
                    "the signed category in conclusionCode)"
                    if kind == "DiagnosticReport"
                    else ""
                ),
                code="not-supported",
            )
        if kind not in ACCEPTED_TYPES:
            raise FhirError(
                404 if expected_type else 422, f"resource type {kind} is not supported", code="not-supported"
            )
        if "id" in resource:
            check_id(resource["id"], f"{kind}.id")
        try:
            validate_resource(resource)
        except InvalidResource as exc:
            raise FhirError(422, str(exc), code="invalid", issues=exc.issues) from exc
        return resource

    def create(
        self,
        session: Session,
        resource: dict[str, Any],
        *,
        if_none_exist: str | None = None,
        agent: str | None = None,
        state: TransactionState | None = None,
        fhir_id: str | None = None,
        expected_type: str | None = None,
        id_is_ours: bool = False,
    ) -> WriteResult:
        """``id_is_ours``: ``fhir_id`` is one we generated (a transaction's POST entry), so nothing is stored under it."""
        state = state or TransactionState()
        if _is_sign_off(resource, expected_type):
            return self.sign_off(session, resource, agent=agent)
        self.validate(resource, expected_type)
        kind = resource["resourceType"]
        if if_none_exist is not None:
            matches = self._conditional_matches(session, kind, parse_condition(kind, if_none_exist, "If-None-Exist"))
            if len(matches) > 1:
                raise FhirError(412, f"If-None-Exist matched {len(matches)} {kind} resources", code="duplicate")
            if len(matches) == 1:
                return WriteResult(200, matches[0].content, matches[0].patient_id)
        if kind == "Patient":
            record = self._map(resource, state)
            if isinstance(record, PatientRecord) and record.mrn:
                existing = session.scalars(select(Patient).where(Patient.mrn == record.mrn)).first()
                if existing is not None:
                    # The identifier already names a patient (e.g. from DICOM): this is that patient.
                    return self._store(session, resource, existing.id, state, agent=agent, created=False)
            new_id = fhir_id or str(uuid.uuid4())
            return self._store(
                session, resource, new_id, state, agent=agent, created=True, fresh_id=fhir_id is None or id_is_ours
            )
        return self._store(
            session,
            resource,
            fhir_id or str(uuid.uuid4()),
            state,
            agent=agent,
            created=True,
            fresh_id=fhir_id is None or id_is_ours,
        )

    def update(
        self,
        session: Session,
        kind: str,
        fhir_id: str,
        resource: dict[str, Any],
        *,
        agent: str | None = None,
        if_match: str | None = None,
        state: TransactionState | None = None,
    ) -> WriteResult:
        state = state or TransactionState()
        check_id(fhir_id, f"{kind}.id")
        if _is_sign_off(resource, kind):
            return self.sign_off(session, resource, agent=agent)
        self.validate(resource, kind)
        if resource.get("id") not in (None, fhir_id):
            raise FhirError(400, "the resource id does not match the URL", code="invalid", expression=f"{kind}.id")
        existing = get_resource(session, kind, fhir_id)
        if if_match is not None:
            expected = if_match.strip().removeprefix("W/").strip('"')
            if existing is None or str(existing.version_id) != expected:
                raise FhirError(412, "If-Match does not match the current version", code="conflict")
        return self._store(session, resource, fhir_id, state, agent=agent, created=existing is None)

    def conditional_update(
        self,
        session: Session,
        kind: str,
        query: str,
        resource: dict[str, Any],
        *,
        agent: str | None = None,
        state: TransactionState | None = None,
    ) -> WriteResult:
        matches = self._conditional_matches(session, kind, parse_condition(kind, query, f"{kind}?"))
        if len(matches) > 1:
            raise FhirError(412, f"the condition matched {len(matches)} {kind} resources", code="duplicate")
        if matches:
            return self.update(session, kind, matches[0].fhir_id, resource, agent=agent, state=state)
        return self.create(session, resource, agent=agent, state=state, fhir_id=resource.get("id"), expected_type=kind)

    def sign_off(self, session: Session, resource: dict[str, Any], *, agent: str | None) -> WriteResult:
        """A DiagnosticReport written to us is the reporting system's sign-off of one of our reports (contract §9.7):
        recorded as a sign-off (service/assessment/signoff.py), never stored over the engine's DiagnosticReport. The answer
        echoes it with the id ``sign-off-<n>`` of the sign-off row (it is not kept in the FHIR store)."""
        if "id" in resource:
            check_id(resource["id"], "DiagnosticReport.id")
        try:
            validate_resource(resource)
        except InvalidResource as exc:
            raise FhirError(422, str(exc), code="invalid", issues=exc.issues) from exc
        systems = LocalSystems.from_canonical(self.settings.fhir_canonical)
        try:
            report, wanted = signoff.from_diagnostic_report(session, systems, resource)
            row = signoff.record(session, systems, report, wanted, route="fhir", agent=agent)
        except signoff.SignOffError as exc:
            raise FhirError(exc.status, exc.message, code=exc.code, expression=exc.expression) from exc
        body = copy.deepcopy(resource)
        body["id"] = f"sign-off-{row.id}"
        body["meta"] = {"versionId": "1", "lastUpdated": row.created_at.isoformat(timespec="milliseconds")}
        return WriteResult(201, body, report.patient_id, created=True)

    def _conditional_matches(self, session: Session, kind: str, tokens: list[str]) -> list[FhirResource]:
        """The stored resources of ``kind`` carrying every identifier token (a Patient also by its MRN)."""
        matches: dict[int, FhirResource] | None = None
        for token in tokens:
            found = {r.id: r for r in find_by_identifier(session, kind, token)}
            if kind == "Patient":
                for pid in patient_ids_for_identifier(session, token, self.settings.patient_id_system):
                    row = get_resource(session, "Patient", pid)
                    if row is not None:
                        found[row.id] = row
            matches = found if matches is None else {k: v for k, v in matches.items() if k in found}
        return list((matches or {}).values())

    # -- mapping and storage ------------------------------------------------------------------------
    def _map(self, resource: Mapping[str, Any], state: TransactionState):
        try:
            return map_resource(
                resource,
                canonical=self.settings.fhir_canonical,
                patient_id_system=self.settings.patient_id_system,
                body_structures=state.body_structures,
                plausibility=Plausibility(self.settings.plausibility, today()),
            )
        except MappingError as exc:
            raise FhirError(422, str(exc), code="invalid", expression=exc.expression) from exc

    def _resolve_patient(
        self, session: Session, resource: Mapping[str, Any], state: TransactionState
    ) -> Patient | None:
        reference = None
        for key in ("subject", "patient"):
            if isinstance(resource.get(key), Mapping):
                reference = resource[key]
                break
        if reference is None:
            return None
        where = f"{resource['resourceType']}.subject"
        ref = reference.get("reference")
        if ref:
            ref = state.references.get(ref, ref)
            if ref.startswith("Patient?"):
                token = parse_condition("Patient", ref, where)[0]
                return self._patient_for_token(session, token, where, state)
            if ref.startswith("Patient/"):
                patient = state.patient(session, ref.split("/")[1])
                if patient is None:
                    raise FhirError(422, f"unknown patient {ref}", code="not-found", expression=where)
                return patient
            raise FhirError(422, "the subject must reference a Patient", expression=where)
        identifier = reference.get("identifier")
        if isinstance(identifier, Mapping) and identifier.get("value"):
            token = f"{identifier.get('system', '')}|{identifier['value']}"
            return self._patient_for_token(session, token, where, state)
        raise FhirError(422, "the subject reference is empty", expression=where)

    def _patient_for_token(self, session: Session, token: str, where: str, state: TransactionState) -> Patient | None:
        ids = patient_ids_for_identifier(session, token, self.settings.patient_id_system)
        if len(ids) > 1:
            raise FhirError(412, "the patient identifier matches several patients", code="duplicate", expression=where)
        if ids:
            return state.patient(session, ids[0])
        if token in state.pending_patients:  # the Patient entry of this transaction that creates it
            return state.patient(session, state.pending_patients[token])
        system, _, value = token.partition("|")
        if system == self.settings.patient_id_system and value:
            # The MRN is the join key with DICOM PatientID: a patient known only by it so far is created.
            patient = upsert_patient(session, value)
            state.patients[patient.id] = patient
            return patient
        raise FhirError(422, "no patient with this identifier", code="not-found", expression=where)

    def _store(
        self,
        session: Session,
        resource: dict[str, Any],
        fhir_id: str,
        state: TransactionState,
        *,
        agent: str | None,
        created: bool,
        fresh_id: bool = False,
    ) -> WriteResult:
        """``fresh_id``: a random id we just generated, under which nothing can be stored yet (no lookup)."""
        kind = resource["resourceType"]
        body = copy.deepcopy(resource)
        body["id"] = fhir_id
        if kind == "BodyStructure":
            state.body_structures[f"BodyStructure/{fhir_id}"] = body
        record = self._map(body, state)
        patient: Patient | None = None
        if isinstance(record, PatientRecord):
            patient = session.get(Patient, fhir_id)
            if record.mrn and (patient is None or patient.mrn != record.mrn):
                _check_mrn_free(session, record.mrn, fhir_id)
            if patient is None:
                patient = Patient(id=fhir_id, mrn=record.mrn)
                session.add(patient)
            elif record.mrn and patient.mrn is None:
                patient.mrn = record.mrn
            patient.birth_date = record.birth_date or patient.birth_date
            patient.sex = record.sex or patient.sex
            patient.deceased_date = record.deceased_date or patient.deceased_date
            try:
                session.flush()
            except IntegrityError as exc:  # a concurrent request took the identifier (or id) since the check
                raise FhirError(
                    409,
                    "another Patient with this identifier was stored at the same time; retry",
                    code="conflict",
                    expression="Patient.identifier",
                ) from exc
        else:
            patient = self._resolve_patient(session, body, state)
        source_ref = f"{kind}/{fhir_id}"
        if patient is not None:
            _check_birth_date(session, patient, record, source_ref)
        if patient is None and record is not None and not isinstance(record, StudyRecord):
            raise FhirError(422, f"{kind} must reference its patient (subject)", expression=f"{kind}.subject")
        row, existed = save_resource_reporting(
            session, body, patient_id=patient.id if patient else None, origin="inbound", known_new=fresh_id
        )
        if kind == "ImagingStudy" and is_withdrawn(body):
            previous = self._withdraw_imaging_study(session, body, source_ref)
            if previous is not None:
                state.patients_touched.add(previous)
                evaluate_soon(session, previous, "fhir-ImagingStudy", self.settings)
        # Domain rows come only from stored resources: a resource stored for the first time replaces none.
        if patient is not None:
            if existed and withdrawn_death_cause(body, self.settings.fhir_canonical):
                patient.death_from_progression = None
            self._replace_domain_rows(session, source_ref, record, patient, state, replacing=existed)
            state.patients_touched.add(patient.id)
            evaluate_soon(session, patient.id, f"fhir-{kind}", self.settings)
        elif isinstance(record, StudyRecord):
            self._replace_domain_rows(session, source_ref, record, None, state, replacing=existed)
        audit(
            session,
            action="C" if created else "U",
            kind=f"fhir-{'create' if created else 'update'}",
            source="api",
            agent=agent,
            entity_type=kind,
            entity_ref=source_ref,
            patient_id=patient.id if patient else None,
        )
        return WriteResult(201 if created else 200, row.content, patient.id if patient else None, created)

    def _replace_domain_rows(
        self,
        session: Session,
        source_ref: str,
        record: Any,
        patient: Patient | None,
        state: TransactionState,
        *,
        replacing: bool,
    ) -> None:
        if replacing:
            session.execute(delete(Measurement).where(Measurement.source_ref == source_ref))
            session.execute(delete(ClinicalFact).where(ClinicalFact.source_ref == source_ref))
        # The caller refuses every record but a study without its patient (422), so patient is set for these.
        if isinstance(record, MeasurementInput) and patient is not None:
            study_id = None
            if record.source.study_uid:
                study = session.scalars(select(Study).where(Study.study_uid == record.source.study_uid)).first()
                study_id = study.id if study else None
            # The resource is stored under source_ref (a created resource had no id when it was mapped).
            row = row_for(MeasurementInput(record.fact, replace(record.source, ref=source_ref)), study_id=study_id)
            # Patient and lesion first: the row is then inserted once, complete.
            attach_measurements(session, patient.id, [row], state.lesions)
            session.add(row)
        elif isinstance(record, ClinicalRecord) and patient is not None:
            if record.kind == "death-cause":
                patient.death_from_progression = bool(record.payload.get("from_progression"))
                if record.effective_date and patient.deceased_date is None:
                    patient.deceased_date = record.effective_date
            else:
                session.add(
                    ClinicalFact(
                        patient_id=patient.id,
                        kind=record.kind,
                        effective_date=record.effective_date,
                        payload=record.payload,
                        source_ref=source_ref,
                        origin="inbound",
                    )
                )
        elif isinstance(record, DeathRecord) and patient is not None:
            patient.deceased_date = record.deceased_date
            patient.death_from_progression = record.from_progression
        elif isinstance(record, StudyRecord):
            study = session.scalars(select(Study).where(Study.study_uid == record.study_uid)).first()
            if study is None:
                study = Study(study_uid=record.study_uid, study_date=record.started, modalities="", header={})
                session.add(study)
                session.flush()
            elif study.study_date is None:
                study.study_date = record.started
            header = study.header or {}
            said = {**(header.get(IMAGING_STUDIES) or {}), source_ref: {"symptom_driven": record.symptom_driven}}
            study.header = {**header, IMAGING_STUDIES: said}
            if patient is not None:
                link_study(session, study, patient)
                settle_later(session, study.id, self.settings)  # a scan without measurements yet, as for images

    @staticmethod
    def _withdraw_imaging_study(session: Session, body: Mapping[str, Any], source_ref: str) -> str | None:
        """An ImagingStudy taken back (``is_withdrawn``) takes back what it gave its study: its symptom-driven reason,
        and, for a study we know from FHIR alone (no instance received), the study itself: no date, no patient, so
        no scan. Images received for the study stay (an IOCM rejection note is how DICOM takes them back). Returns
        the patient whose evaluation changes."""
        uid = imaging_study_uid(body)
        study = session.scalars(select(Study).where(Study.study_uid == uid)).first() if uid else None
        if study is None:
            return None
        header = dict(study.header or {})
        said = {ref: value for ref, value in (header.get(IMAGING_STUDIES) or {}).items() if ref != source_ref}
        header[IMAGING_STUDIES] = said
        imaged = session.scalar(select(exists().where(Instance.study_id == study.id)))
        if not imaged:
            header.pop("symptom_driven", None)  # where ImagingStudies said it before they were kept by reference
        study.header = header
        patient_id = study.patient_id
        if not imaged and not said:
            study.patient_id = None
            study.study_date = None
        return patient_id

    def _resolve_conditional_references(self, session: Session, resource: Any, state: TransactionState) -> Any:
        """Replace ``Type?identifier=…`` references by the one resource they match (FHIR transaction rules).

        A Patient identified in IMMUNORAD_PATIENT_ID_SYSTEM that we do not know yet is created (the MRN is
        the join key with DICOM PatientID); any other reference must match exactly one resource.
        """
        if isinstance(resource, dict):
            out = {}
            for key, value in resource.items():
                if (
                    key == "reference"
                    and isinstance(value, str)
                    and "?" in value
                    and not value.startswith(("#", "urn:"))
                ):
                    out[key] = self._resolve_one(session, value, state)
                else:
                    out[key] = self._resolve_conditional_references(session, value, state)
            return out
        if isinstance(resource, list):
            return [self._resolve_conditional_references(session, v, state) for v in resource]
        return resource

    def _resolve_one(self, session: Session, reference: str, state: TransactionState) -> str:
        if reference in state.references:
            return state.references[reference]
        kind = reference.partition("?")[0]
        tokens = parse_condition(kind, reference, "reference")
        if kind == "Patient":
            patient = self._patient_for_token(session, tokens[0], "reference", state)
            if patient is None:  # only if the matched row vanished since the identifier lookup
                raise FhirError(409, f"the patient {reference} names changed meanwhile; retry", code="conflict")
            resolved = f"Patient/{patient.id}"
        else:
            matches = self._conditional_matches(session, kind, tokens)
            if len(matches) != 1:
                raise FhirError(
                    422 if not matches else 412,
                    f"conditional reference {reference!r} matched {len(matches)} resources",
                    code="not-found" if not matches else "duplicate",
                )
            resolved = f"{kind}/{matches[0].fhir_id}"
        state.references[reference] = resolved
        return resolved

    # -- Bundles ------------------------------------------------------------------------------------
    def check_bundle(self, bundle: Any) -> None:
        """Refuse a Bundle larger than IMMUNORAD_FHIR_MAX_BUNDLE_ENTRIES (413) before any transaction is opened.

        A Bundle is written in one database transaction; on SQLite that holds the only write lock for its whole
        duration, and every C-STORE waits behind it (measured: a 10 000-entry transaction held it ~20 s, C-STOREs
        waited 17 s). The cap keeps that wait well inside the listener's lock-wait limit; senders split larger
        sets into several Bundles.
        """
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        limit = self.settings.fhir_max_bundle_entries
        if isinstance(entries, list) and len(entries) > limit:
            raise FhirError(
                413,
                f"the Bundle has {len(entries)} entries; at most {limit} are accepted in one Bundle "
                "(IMMUNORAD_FHIR_MAX_BUNDLE_ENTRIES): send them in several",
                code="too-costly",
                expression="Bundle.entry",
            )

    def bundle(self, session: Session, bundle: Any, *, agent: str | None = None) -> dict[str, Any]:
        self.check_bundle(bundle)
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise FhirError(400, "POST to the base needs a Bundle", code="structure")
        kind = bundle.get("type")
        if kind not in ("transaction", "batch"):
            raise FhirError(
                400, "only transaction and batch Bundles are accepted", code="not-supported", expression="Bundle.type"
            )
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise FhirError(400, "Bundle.entry must be a list", code="structure")
        _check_unique_full_urls(entries)
        if kind == "transaction":
            return self._transaction(session, entries, agent)
        return self._batch(session, entries, agent)

    def _entries(self, entries: list[Any]) -> list[PlannedEntry]:
        """Each entry's shape checked (400) before the database is read."""
        planned = []
        for index, entry in enumerate(entries):
            where = f"Bundle.entry[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
                raise FhirError(
                    400,
                    "each entry needs request.method and request.url",
                    code="structure",
                    expression=f"{where}.request",
                )
            request = entry["request"]
            method, url, full_url = request.get("method"), request.get("url"), entry.get("fullUrl")
            if not isinstance(url, str) or not url or not isinstance(full_url, (str, type(None))):
                raise FhirError(
                    400,
                    f"entry {index}: request.url must be a non-empty string, fullUrl a string",
                    code="structure",
                    expression=where,
                )
            for name in ("ifNoneExist", "ifMatch"):
                if not isinstance(request.get(name, ""), str):
                    raise FhirError(
                        400,
                        f"entry {index}: request.{name} must be a string",
                        code="structure",
                        expression=f"{where}.request.{name}",
                    )
            if method not in ("POST", "PUT", "GET"):
                raise FhirError(
                    400 if method not in ("DELETE", "PATCH", "HEAD") else 405,
                    f"entry {index}: method {method} is not supported",
                    code="not-supported",
                    expression=f"{where}.request.method",
                )
            if method != "GET" and not isinstance(entry.get("resource"), dict):
                raise FhirError(400, f"entry {index}: POST and PUT entries need a resource", code="structure")
            path = url.lstrip("/").partition("?")[0]
            kind = path.split("/")[0]
            planned.append(PlannedEntry(index, entry, method, kind))
        return planned

    def _plan(self, session: Session, entries: list[Any]) -> tuple[list[PlannedEntry], TransactionState]:
        """The FHIR R4 transaction rules (http.html#trules) before anything is written: every condition
        (``ifNoneExist``, a conditional PUT) is resolved against the stored resources, every entry gets the identity
        it will write (the match, or a new id), and every ``urn:uuid``/``urn:oid`` fullUrl maps to that identity,
        whatever the entry's method and wherever it stands in the Bundle. Two entries writing one identity fail
        the Bundle (400). Entries then run in the R4 order: POST, then PUT, then GET (DELETE/PATCH are refused)."""
        state = TransactionState()
        planned = self._entries(entries)
        written: dict[str, int] = {}
        for item in planned:
            request = item.entry["request"]
            where = f"Bundle.entry[{item.index}].request"
            if item.method == "GET":
                continue
            resource = item.entry["resource"]  # _entries refused a POST or PUT without one
            path, _, query = request["url"].lstrip("/").partition("?")
            resource_id = resource.get("id")
            if resource_id is not None:
                check_id(resource_id, f"Bundle.entry[{item.index}].resource.id")
            identity: str | None = None
            if item.method == "POST":
                if path != resource.get("resourceType"):
                    raise FhirError(
                        400,
                        f"entry {item.index}: POST url {path!r} does not match {resource.get('resourceType')}",
                        code="invalid",
                        expression=f"{where}.url",
                    )
                condition = request.get("ifNoneExist")
                if condition is not None:
                    tokens = parse_condition(item.kind, condition, f"{where}.ifNoneExist")
                    item.match = self._single_match(session, item.kind, tokens, item.index)
                    identity = f"{item.kind}?{'&'.join(sorted(tokens))}"
                if item.match is None:
                    item.target, item.id_is_ours = self._new_identity(session, resource, None), True
            else:
                parts = path.split("/")
                if query and len(parts) == 1:
                    tokens = parse_condition(item.kind, query, f"{where}.url")
                    item.match = self._single_match(session, item.kind, tokens, item.index)
                    identity = f"{item.kind}?{'&'.join(sorted(tokens))}"
                    if item.match is None:
                        item.target = self._new_identity(session, resource, resource_id)
                        item.id_is_ours = resource_id is None
                elif len(parts) == 2 and not query:
                    item.target = check_id(parts[1], f"{where}.url")
                else:
                    raise FhirError(
                        400,
                        f"entry {item.index}: PUT url {request['url']!r} must be Type/id or Type?identifier=…",
                        code="invalid",
                        expression=f"{where}.url",
                    )
            if item.match is not None:
                item.target = item.match.fhir_id
            for key in filter(None, (identity, f"{item.kind}/{item.target}")):
                if key in written:
                    raise FhirError(
                        400,
                        f"entries {written[key]} and {item.index} both write {key} (a resource appears once in a "
                        "transaction)",
                        code="invariant",
                        expression=f"Bundle.entry[{item.index}]",
                    )
                written[key] = item.index
            full_url = item.entry.get("fullUrl") or ""
            if full_url.startswith(PLACEHOLDER_PREFIXES):
                state.references[full_url] = f"{item.kind}/{item.target}"
            if item.kind == "Patient" and item.match is None and item.target is not None:
                for identifier in resource.get("identifier") or []:
                    if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
                        state.pending_patients[f"{identifier['system']}|{identifier['value']}"] = item.target
        order = {"POST": 0, "PUT": 1, "GET": 2}
        planned.sort(key=lambda item: (order[item.method], item.index))
        return planned, state

    def _single_match(self, session: Session, kind: str, tokens: list[str], index: int) -> FhirResource | None:
        matches = self._conditional_matches(session, kind, tokens)
        if len(matches) > 1:
            raise FhirError(
                412,
                f"entry {index}: the condition matched {len(matches)} {kind} resources",
                code="duplicate",
                expression=f"Bundle.entry[{index}].request",
            )
        return matches[0] if matches else None

    def _new_identity(self, session: Session, resource: dict[str, Any], proposed: str | None) -> str:
        """The id a create will use: a Patient whose MRN names a patient already known (from DICOM) is that
        patient (as ``create`` stores it); otherwise ``proposed`` (a client-chosen id) or a new UUID."""
        if resource.get("resourceType") == "Patient":
            for identifier in resource.get("identifier") or []:
                if isinstance(identifier, dict) and identifier.get("system") == self.settings.patient_id_system:
                    value = identifier.get("value")
                    known = session.scalars(select(Patient.id).where(Patient.mrn == str(value))).first()
                    if value and known is not None:
                        return known
        return proposed or str(uuid.uuid4())

    def _execute(self, session: Session, item: PlannedEntry, state: TransactionState, agent: str | None) -> WriteResult:
        request = item.entry["request"]
        if item.method == "GET":
            raise FhirError(400, "GET entries are not supported in Bundles", code="not-supported")
        if item.target is None:
            raise RuntimeError(f"entry {item.index} was executed without the identity _plan gives it")
        resource = _walk_references(item.entry["resource"], state.references)
        resource = self._resolve_conditional_references(session, resource, state)
        if item.match is not None and item.method == "POST":
            return WriteResult(200, item.match.content, item.match.patient_id)  # ifNoneExist matched: no action
        if item.match is not None:
            return self.update(session, item.kind, item.target, resource, agent=agent, state=state)
        if item.method == "POST" or item.id_is_ours or "?" in request["url"]:
            return self.create(
                session,
                resource,
                agent=agent,
                state=state,
                fhir_id=item.target,
                expected_type=None if item.method == "POST" else item.kind,
                id_is_ours=item.id_is_ours,
            )
        return self.update(
            session, item.kind, item.target, resource, agent=agent, if_match=request.get("ifMatch"), state=state
        )

    def _transaction(self, session: Session, entries: list[Any], agent: str | None) -> dict[str, Any]:
        planned, state = self._plan(session, entries)
        responses: dict[int, dict[str, Any]] = {}
        for item in planned:
            index = item.index
            try:
                result = self._execute(session, item, state, agent)
            except FhirError as exc:
                exc.diagnostics = f"entry {index}: {exc.diagnostics}"
                if exc.issues:
                    exc.issues = [
                        dict(
                            issue,
                            diagnostics=f"entry {index}: {issue.get('diagnostics', '')}",
                            expression=[
                                f"Bundle.entry[{index}].resource.{e.split('.', 1)[-1]}"
                                for e in issue.get("expression", [])
                            ]
                            or issue.get("expression"),
                        )
                        for issue in exc.issues
                    ]
                    exc.issues = [{k: v for k, v in issue.items() if v is not None} for issue in exc.issues]
                raise
            responses[index] = self._entry_response(result)
        return {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "id": str(uuid.uuid4()),
            "entry": [responses[i] for i in range(len(entries))],
        }

    def _batch(self, session: Session, entries: list[Any], agent: str | None) -> dict[str, Any]:
        out = []
        for entry in entries:
            try:
                with session.begin_nested():
                    planned, state = self._plan(session, [entry])
                    result = self._execute(session, planned[0], state, agent)
                out.append(self._entry_response(result))
            except FhirError as exc:
                out.append({"response": {"status": f"{exc.status}", "outcome": operation_outcome(exc)}})
        return {"resourceType": "Bundle", "type": "batch-response", "id": str(uuid.uuid4()), "entry": out}

    def _entry_response(self, result: WriteResult) -> dict[str, Any]:
        meta = result.resource.get("meta") or {}
        version = meta.get("versionId", "1")
        kind, rid = result.resource["resourceType"], result.resource["id"]
        return {
            "fullUrl": f"{self.settings.fhir_base_url}/{kind}/{rid}",
            "resource": result.resource,
            "response": {
                "status": "201 Created" if result.status == 201 else "200 OK",
                "location": f"{self.settings.fhir_base_url}/{kind}/{rid}/_history/{version}",
                "etag": f'W/"{version}"',
                "lastModified": meta.get("lastUpdated"),
            },
        }


def _is_sign_off(resource: Any, expected_type: str | None) -> bool:
    """A DiagnosticReport body (written to ``DiagnosticReport`` or in a Bundle) that carries a business identifier or
    a ``conclusionCode`` is a sign-off attempt (checked, 422 with the reason when it is not a valid one); any other
    DiagnosticReport is refused as before (405: the reports are immunorad's)."""
    return (
        isinstance(resource, dict)
        and resource.get("resourceType") == "DiagnosticReport"
        and expected_type in (None, "DiagnosticReport")
        and bool(resource.get("identifier") or resource.get("conclusionCode"))
    )


def _check_unique_full_urls(entries: list[Any]) -> None:
    """bdl-7: ``fullUrl`` is unique in a Bundle, unless the entries are versions of it (different meta.versionId);
    two entries with one fullUrl make the whole Bundle invalid (400)."""
    seen: dict[tuple[str, Any], int] = {}
    for index, entry in enumerate(entries):
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if not isinstance(full_url, str) or not full_url:
            continue
        # Read before any entry is validated: a resource or a meta that is not an object states no version.
        resource = entry.get("resource")
        meta = resource.get("meta") if isinstance(resource, dict) else None
        version = meta.get("versionId") if isinstance(meta, dict) else None
        key = (full_url, version if isinstance(version, str) else None)
        if key in seen:
            raise FhirError(
                400,
                f"entries {seen[key]} and {index} have one fullUrl (bdl-7: fullUrl must be unique in a Bundle)",
                code="invariant",
                expression=f"Bundle.entry[{index}].fullUrl",
            )
        seen[key] = index


def _check_birth_date(session: Session, patient: Patient, record: Any, source_ref: str) -> None:
    """Contract §9.2: a birth date after a scan of the patient is refused, whichever of the two arrives last
    (the rest of the plausibility gate runs in the mapping, ``fhir_mappings.inbound``)."""
    if patient.birth_date is None:
        return
    scans: list[dt.date | None]
    if isinstance(record, MeasurementInput):
        scans, where = [record.fact.scan_date], "Observation.effectiveDateTime"
    elif isinstance(record, StudyRecord):
        scans, where = [record.started], "ImagingStudy.started"
    elif isinstance(record, PatientRecord):
        session.flush()
        measured = session.scalar(
            select(func.min(Measurement.scan_date)).where(
                Measurement.patient_id == patient.id, Measurement.source_ref != source_ref
            )
        )
        imaged = session.scalar(select(func.min(Study.study_date)).where(Study.patient_id == patient.id))
        scans, where = [measured, imaged], "Patient.birthDate"
    else:
        return
    problem = birth_date_problem(patient.birth_date, today(), scans)
    if problem:
        raise FhirError(422, f"implausible value refused: {problem}", code="invalid", expression=where)


def _check_mrn_free(session: Session, mrn: str, fhir_id: str) -> None:
    """409 when another patient already has this MRN: patients.mrn is unique (the join key with DICOM
    PatientID), so giving it to a second patient is refused before anything is written."""
    other = session.scalars(select(Patient.id).where(Patient.mrn == mrn, Patient.id != fhir_id)).first()
    if other is not None:
        raise FhirError(
            409, "another Patient already has this identifier", code="duplicate", expression="Patient.identifier"
        )


def operation_outcome(
    error: FhirError | None = None,
    *,
    severity: str = "error",
    code: str = "invalid",
    diagnostics: str = "",
    expression: str | None = None,
) -> dict[str, Any]:
    if error is not None and error.issues:
        return {"resourceType": "OperationOutcome", "issue": error.issues}
    if error is not None:
        code, diagnostics, expression = error.code, error.diagnostics, error.expression
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}
