"""FHIR R4 resources in → domain records (contract §4). No clinical logic: shapes and codes only.

A resource that is valid FHIR but does not say what we need (a tumour measurement without a lesion
identity, a medication that is not a checkpoint inhibitor…) raises ``MappingError`` (HTTP 422) with the
FHIRPath of the problem; resources we store without using (e.g. an unrelated lab) map to no record.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fhir_mappings.measurement_input import MeasurementInput, MeasurementSource, source_label
from rules.facts import (
    LesionMeasurement,
    LesionRole,
    LesionStatus,
    NonTargetChange,
    NonTargetStatus,
    ReferenceMeasurement,
    ReferenceRegion,
    to_mm,
    to_suv,
)
from rules.plausibility import (
    DEFAULT_LIMITS,
    PlausibilityLimits,
    as_number,
    birth_date_problem,
    length_problem,
    scan_date_problem,
    suv_problem,
    volume_problem,
)
from rules.therapy_classes import CONCOMITANT, classify

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
DICOM_UID = "urn:dicom:uid"
PROCEDURE_TARGET_EXTENSION = "http://hl7.org/fhir/StructureDefinition/procedure-targetBodyStructure"

TUMOUR_SIZE = "21889-1"
"""LOINC Size Tumor (mCODE TumorSize)."""
LONGEST_DIMENSION = "33728-7"
OTHER_DIMENSION = "33729-5"
ECOG = "89247-1"
ECOG_ANSWERS = {"LA9622-7": 0, "LA9623-5": 1, "LA9624-3": 2, "LA9625-0": 3, "LA9626-8": 4, "LA9627-6": 5}
"""LOINC answer list LL529-9 (ECOG performance status grades 0–5), the answers mCODE's ECOG Observation uses."""
LYMPH_NODE = "59441001"
RADIOTHERAPY = "108290001"
REFERENCE_REGION = "126040"

LAB_CODES = {
    # LOINC codes of the labs and vitals the prognostic scores read (kinetics spec §6).
    "2532-0": "ldh",
    "14804-9": "ldh",
    "6690-2": "leukocytes",
    "26464-8": "leukocytes",
    "751-8": "neutrophils",
    "26499-4": "neutrophils",
    "8302-2": "height",
    "29463-7": "weight",
    "3141-9": "weight",
    "1751-7": "albumin",
    "61151-7": "albumin",
    ECOG: "ecog",
}

LOCAL_OBSERVATION_CODES = {
    # {C}/CodeSystem/immunorad codes for values posted as Observations (valueQuantity, or valueBoolean for the
    # yes/no ones): imaging biomarkers, the Deauville score (Lugano), RANO's non-measurable inputs, biopsy
    # results that resolve a LYRIC indeterminate response, and the CTCAE inputs of irAE grading.
    "tmtv",
    "skeletal-muscle-area-l3",
    "suvmax-liver",
    "suvmax-spleen",
    "suvmax-bone-marrow",
    "subcutaneous-fat-area-l3",
    "visceral-fat-area-l3",
    "deauville",
    "t2-flair-progression",
    "steroid-dose",
    "clinical-deterioration",
    "biopsy-progression",
    "irae-symptomatic",
    "ctcae-grade",
}

MCODE_CANCER_CONDITIONS = (
    "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-primary-cancer-condition",
    "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-secondary-cancer-condition",
)
CANCER_WORDS = (
    "cancer",
    "carcinoma",
    "melanoma",
    "lymphoma",
    "glioma",
    "glioblastoma",
    "neoplasm",
    "sarcoma",
    "tumour",
    "tumor",
    "mesothelioma",
    "malignant",
)
"""A Condition is the cancer diagnosis (not an irAE finding) when it has an mCODE cancer-condition profile or one
of these words in its code's text or display."""


class MappingError(ValueError):
    """The resource is valid FHIR but cannot be used as the contract describes (HTTP 422)."""

    def __init__(self, message: str, expression: str | None = None) -> None:
        super().__init__(message)
        self.expression = expression


@dataclass(frozen=True)
class Plausibility:
    """The plausibility gate's limits and "today" (contract §9.2, ``rules.plausibility``)."""

    limits: PlausibilityLimits = DEFAULT_LIMITS
    today: dt.date | None = None
    """``None``: the UTC date when the check runs."""

    def day(self) -> dt.date:
        return self.today or dt.datetime.now(dt.UTC).date()

    @staticmethod
    def refuse(problem: str | None, expression: str) -> None:
        """An implausible value is refused with the element it is in (HTTP 422, never stored)."""
        if problem:
            raise MappingError(f"implausible value refused: {problem}", expression)

    def scan_date(self, value: dt.date | None, expression: str) -> None:
        self.refuse(scan_date_problem(value, self.day(), self.limits), expression)


DEFAULT_PLAUSIBILITY = Plausibility()


@dataclass
class PatientRecord:
    identifiers: list[tuple[str | None, str]]
    mrn: str | None
    birth_date: dt.date | None = None
    sex: str | None = None
    deceased_date: dt.date | None = None


@dataclass
class ClinicalRecord:
    kind: str
    effective_date: dt.date | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeathRecord:
    deceased_date: dt.date
    from_progression: bool | None


@dataclass
class StudyRecord:
    study_uid: str
    started: dt.date | None
    symptom_driven: bool = False
    """``ImagingStudy.reasonCode`` holds ``symptom-driven`` (contract §9.3)."""


Record = PatientRecord | MeasurementInput | ClinicalRecord | DeathRecord | StudyRecord


def codings(concept: Any) -> list[Mapping[str, Any]]:
    if not isinstance(concept, Mapping):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]


def has_code(concept: Any, system: str, code: str) -> bool:
    return any(c.get("system") == system and c.get("code") == code for c in codings(concept))


def code_in(concept: Any, system: str) -> str | None:
    return next((str(c.get("code")) for c in codings(concept) if c.get("system") == system and c.get("code")), None)


def parse_date(value: Any) -> dt.date | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def _quantity_mm(
    quantity: Mapping[str, Any] | None, where: str, gate: Plausibility = DEFAULT_PLAUSIBILITY
) -> Decimal | None:
    if not quantity:
        return None
    value = as_number(quantity.get("value"))
    if value is None:
        raise MappingError("a size needs a finite numeric value", f"{where}.valueQuantity.value")
    unit = (quantity.get("code") or quantity.get("unit") or "").strip()
    if unit not in ("mm", "cm"):
        raise MappingError(f"size unit {unit!r} is not mm or cm", where)
    mm = value * 10 if unit == "cm" else value
    gate.refuse(length_problem(mm, "the size", gate.limits), f"{where}.valueQuantity.value")
    return to_mm(mm)


def _decimal(quantity: Mapping[str, Any] | None, where: str | None = None) -> Decimal | None:
    """The quantity's value; one that is present but not a finite number is refused when ``where`` names it."""
    if not quantity or quantity.get("value") is None:
        return None
    value = as_number(quantity["value"])
    if value is None and where is not None:
        raise MappingError("the value is not a finite number", f"{where}.valueQuantity.value")
    return value


def _coded_value(component: Mapping[str, Any]) -> str | None:
    concept = component.get("valueCodeableConcept")
    first = next(iter(codings(concept)), None)
    return str(first.get("code")) if first else None


def _contained(resource: Mapping[str, Any], reference: str) -> Mapping[str, Any] | None:
    if not reference.startswith("#"):
        return None
    return next((c for c in resource.get("contained") or [] if c.get("id") == reference[1:]), None)


def lesion_identity(
    resource: Mapping[str, Any], body_structures: Mapping[str, Mapping[str, Any]]
) -> tuple[str, str, str | None]:
    """(identity key, identity source, label) from the focus BodyStructure (contract §4).

    The tracking UID (``urn:dicom:uid`` / ``urn:oid:<uid>``) is the identity; failing that, the lesion
    label. Nothing else (never location or size).
    """
    focus = resource.get("focus") or []
    if not focus:
        raise MappingError("a tumour measurement needs focus → the lesion's BodyStructure", "Observation.focus")
    ref = focus[0]
    body = None
    if isinstance(ref, Mapping) and ref.get("reference"):
        body = _contained(resource, ref["reference"]) or body_structures.get(ref["reference"])
    identifiers = list((body or {}).get("identifier") or [])
    if isinstance(ref, Mapping) and ref.get("identifier"):
        identifiers.append(ref["identifier"])
    label = None
    for identifier in identifiers:
        if identifier.get("system") == DICOM_UID and str(identifier.get("value", "")).startswith("urn:oid:"):
            uid = identifier["value"][len("urn:oid:") :]
            label = next((str(i.get("value")) for i in identifiers if i is not identifier and i.get("value")), None)
            return uid, "tracking-uid", label
    for identifier in identifiers:
        if identifier.get("value"):
            label = str(identifier["value"])
            return f"label:{label.strip()}", "fhir-label", label
    if isinstance(ref, Mapping) and ref.get("display"):
        label = str(ref["display"])
        return f"label:{label.strip()}", "fhir-label", label
    raise MappingError("the lesion's BodyStructure carries neither a tracking UID nor a label", "Observation.focus")


def map_tumour_observation(
    resource: Mapping[str, Any],
    canonical: str,
    body_structures: Mapping[str, Mapping[str, Any]],
    gate: Plausibility = DEFAULT_PLAUSIBILITY,
) -> MeasurementInput:
    """A tumour measurement Observation → the core's ``LesionMeasurement`` plus its provenance (contract §4)."""
    scan_date = parse_date(resource.get("effectiveDateTime")) or parse_date(
        (resource.get("effectivePeriod") or {}).get("start")
    )
    if scan_date is None:
        raise MappingError(
            "a tumour measurement needs effectiveDateTime (the scan date)", "Observation.effectiveDateTime"
        )
    gate.scan_date(
        scan_date,
        "Observation.effectiveDateTime" if resource.get("effectiveDateTime") else "Observation.effectivePeriod.start",
    )
    key, identity_source, label = lesion_identity(resource, body_structures)
    fact: dict[str, Any] = {"lesion_id": key, "scan_date": scan_date, "identity_source": identity_source}
    fact["label"] = label
    stated: dict[str, Any] = {}
    sites = [c for c in codings(resource.get("bodySite")) if c.get("system") == SNOMED]
    if sites:
        fact["organ"] = str(sites[0].get("code"))
        fact["nodal"] = any(c.get("code") == LYMPH_NODE for c in sites)
    own = f"{canonical}/CodeSystem/immunorad"
    for index, component in enumerate(resource.get("component") or []):
        where = f"Observation.component[{index}]"
        concept = component.get("code")
        if has_code(concept, LOINC, LONGEST_DIMENSION):
            fact["long_axis_mm"] = _quantity_mm(component.get("valueQuantity"), where, gate)
        elif has_code(concept, LOINC, OTHER_DIMENSION):
            value = _quantity_mm(component.get("valueQuantity"), where, gate)
            if fact.get("short_axis_mm") is None:
                fact["short_axis_mm"] = value
        elif code_in(concept, own):
            name = code_in(concept, own)
            if name == "lesion-role":
                role = _coded_value(component)
                if role not in ("target", "non-target", "new"):
                    raise MappingError("lesion-role must be target, non-target or new", where)
                fact["role"] = LesionRole(role)
            elif name == "non-target-status":
                status = _coded_value(component)
                if status not in ("present", "absent", "unequivocal-progression"):
                    raise MappingError("non-target-status must be present, absent or unequivocal-progression", where)
                fact["nontarget_status"] = NonTargetStatus(status)
            elif name == "non-target-change":
                change = _coded_value(component)
                if change not in ("NC", "INC", "NCLA", "INCLA", "UNE"):
                    raise MappingError("non-target-change must be NC, INC, NCLA, INCLA or UNE", where)
                fact["nontarget_change"] = NonTargetChange(change)
            elif name == "merged-into":
                fact["merged_into"] = _merged_into(component, where)
            elif name == "radiopharmaceutical":
                stated["tracer"] = map_radiopharmaceutical(component, where)
            elif name in ("injected", "irradiated", "equivocal", "nodal", "too-small", "fragment", "symptom-driven"):
                value = component.get("valueBoolean")
                if not isinstance(value, bool):
                    raise MappingError(f"{name} needs valueBoolean", where)
                if name == "symptom-driven":
                    stated["symptom_driven"] = value
                elif name == "too-small":
                    if value:
                        fact["status"] = LesionStatus.TOO_SMALL
                elif name == "nodal":
                    fact["nodal"] = fact.get("nodal", False) or value
                else:
                    fact[name] = value
        elif code_in(concept, DCM):
            _pet_component(fact, component, where, gate)
    if fact.get("nontarget_status") is NonTargetStatus.ABSENT:
        fact["status"] = LesionStatus.ABSENT
    if fact.get("long_axis_mm") == 0 and (fact.get("short_axis_mm") in (None, 0)):
        fact["status"] = LesionStatus.ABSENT
    for derived in resource.get("derivedFrom") or []:
        for identifier in [derived.get("identifier")] if isinstance(derived, Mapping) else []:
            if identifier and identifier.get("system") == DICOM_UID:
                stated["study_uid"] = str(identifier.get("value", "")).removeprefix("urn:oid:")
    if (
        fact.get("role") is not LesionRole.NON_TARGET
        and fact.get("status", LesionStatus.PRESENT) is LesionStatus.PRESENT
        and all(fact.get(name) is None for name in ("long_axis_mm", "short_axis_mm", "sul_peak", "suv_max"))
        and fact.get("nontarget_status") is None
    ):
        raise MappingError("a measured lesion needs a longest-dimension component (33728-7)", "Observation.component")
    source = _observation_source(resource, scan_date, **stated)
    return MeasurementInput(LesionMeasurement(**fact, source=source_label(source.kind, source.ref)), source)


def _observation_source(resource: Mapping[str, Any], scan_date: dt.date, **stated: Any) -> MeasurementSource:
    return MeasurementSource(kind="fhir", ref=f"Observation/{resource.get('id') or ''}", scan_date=scan_date, **stated)


TRACER_SYSTEMS = {
    SNOMED: "SCT",
    DCM: "DCM",
    "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl": "NCIt",
    "http://www.nlm.nih.gov/research/umls": "UMLS",
}
"""FHIR code systems of the DICOM CID 4021 tracer codes → DICOM coding scheme designators."""


def map_radiopharmaceutical(component: Mapping[str, Any], where: str) -> dict[str, str]:
    """Component ``radiopharmaceutical`` (valueCodeableConcept, SNOMED CT or text; contract §9.3)."""
    concept = component.get("valueCodeableConcept")
    if not isinstance(concept, Mapping):
        raise MappingError("radiopharmaceutical needs valueCodeableConcept (SNOMED CT or text)", where)
    coding = next((c for c in codings(concept) if c.get("system") in TRACER_SYSTEMS and c.get("code")), None)
    text = str(concept.get("text") or (coding or {}).get("display") or "").strip()
    if coding is None and not text:
        raise MappingError("radiopharmaceutical needs a coding (SNOMED CT) or a text", where)
    tracer = {"text": text[:64]} if text else {}
    if coding is not None:
        tracer.update(code=str(coding["code"])[:64], scheme=TRACER_SYSTEMS[coding["system"]])
    return tracer


def _merged_into(component: Mapping[str, Any], where: str) -> str:
    """Component ``merged-into`` (valueString ``urn:oid:<Tracking UID>`` or the lesion's label) → the identity key
    of the lesion it joined, as ``lesion_identity`` forms it."""
    value = component.get("valueString")
    if not isinstance(value, str) or not value.strip():
        raise MappingError("merged-into needs valueString (urn:oid:<tracking UID> or the lesion label)", where)
    value = value.strip()
    if value.startswith("urn:oid:"):
        return value[len("urn:oid:") :]
    return f"label:{value}"


def _derivation(component: Mapping[str, Any]) -> str | None:
    names = {"56851009": "max", "126031": "peak", "373098007": "mean", "386136009": "sd"}
    for coding in codings(component.get("code")):
        if coding.get("code") in names:
            return names[str(coding["code"])]
    return None


def _pet_component(
    fact: dict[str, Any], component: Mapping[str, Any], where: str, gate: Plausibility = DEFAULT_PLAUSIBILITY
) -> None:
    """A PET value of a tumour measurement into ``fact`` (the ``LesionMeasurement`` fields being read)."""
    code = code_in(component.get("code"), DCM)
    value = _decimal(component.get("valueQuantity"), where)
    derivation = _derivation(component)
    if code in ("126401", "126402"):
        gate.refuse(suv_problem(value, "the SUV", gate.limits), f"{where}.valueQuantity.value")
    elif code in ("126032", "126033"):
        gate.refuse(volume_problem(value, "the volume"), f"{where}.valueQuantity.value")
    if code == "126401" and derivation == "max":
        fact["suv_max"] = to_suv(value)
    elif code == "126402" and derivation == "peak":
        fact["sul_peak"] = to_suv(value)
    elif code == "126032":
        fact["metabolic_volume_ml"] = value
    elif code == "126033":
        fact["tlg"] = value


REFERENCE_SITES = {"10200004": "liver", "78961009": "spleen", "14016003": "bone-marrow", "15825003": "blood-pool"}


def map_reference_region(
    resource: Mapping[str, Any], canonical: str, gate: Plausibility = DEFAULT_PLAUSIBILITY
) -> MeasurementInput:
    """A PET reference region Observation → the core's ``ReferenceMeasurement`` plus its provenance."""
    scan_date = parse_date(resource.get("effectiveDateTime"))
    if scan_date is None:
        raise MappingError("a reference region needs effectiveDateTime", "Observation.effectiveDateTime")
    gate.scan_date(scan_date, "Observation.effectiveDateTime")
    site = code_in(resource.get("bodySite"), SNOMED)
    region = REFERENCE_SITES.get(site or "")
    if region is None:
        raise MappingError(
            "a reference region needs bodySite liver, spleen, bone marrow or aorta (SNOMED CT)", "Observation.bodySite"
        )
    values: dict[str, Decimal | None] = {}
    tracer = None
    own = f"{canonical}/CodeSystem/immunorad"
    for index, component in enumerate(resource.get("component") or []):
        where = f"Observation.component[{index}]"
        if code_in(component.get("code"), own) == "radiopharmaceutical":
            tracer = map_radiopharmaceutical(component, f"Observation.component[{index}]")
            continue
        derivation = _derivation(component)
        raw = _decimal(component.get("valueQuantity"), where)
        gate.refuse(suv_problem(raw, "the reference SUV", gate.limits), f"{where}.valueQuantity.value")
        value = to_suv(raw)
        if derivation == "mean":
            values["sul_mean"] = value
        elif derivation == "sd":
            values["sul_sd"] = value
        elif derivation == "max":
            values["suv_max"] = value
    source = _observation_source(resource, scan_date, tracer=tracer)
    reference = ReferenceMeasurement(
        region=ReferenceRegion(region), scan_date=scan_date, source=source_label(source.kind, source.ref), **values
    )
    return MeasurementInput(reference, source)


def map_medication(resource: Mapping[str, Any]) -> ClinicalRecord | None:
    """An immunotherapy administration/statement/request → a therapy line with its class (contract §9.3).

    Classified by ``rules.therapy_classes`` (name, ATC, RxNorm display); an unrecognised drug is kept as an
    *unclassified* therapy line (warned about, never day 0); a drug whose ATC code is outside group L is a
    concomitant medication and maps to no record.
    """
    concept = resource.get("medicationCodeableConcept")
    if concept is None and resource.get("medicationReference"):
        contained = _contained(resource, resource["medicationReference"].get("reference", ""))
        concept = (contained or {}).get("code")
    names = [str((concept or {}).get("text") or "")] + [str(c.get("display") or "") for c in codings(concept)]
    atc = [str(c.get("code")) for c in codings(concept) if c.get("system") == ATC and c.get("code")]
    found = classify(names, atc)
    if found.therapy_class == CONCOMITANT:
        return None
    period = resource.get("effectivePeriod") or {}
    start = parse_date(resource.get("effectiveDateTime")) or parse_date(period.get("start"))
    if start is None and resource.get("resourceType") == "MedicationRequest":
        start = parse_date(resource.get("authoredOn"))
    if start is None:
        raise MappingError(
            "a therapy record needs its date (effective[x] or authoredOn)", f"{resource['resourceType']}.effective"
        )
    stop = parse_date(period.get("end")) if resource.get("status") in ("stopped", "completed") else None
    reason = None
    if resource.get("statusReason"):
        reason = (
            codings(
                resource["statusReason"][0] if isinstance(resource["statusReason"], list) else resource["statusReason"]
            )
            or [{}]
        )[0].get("display")
    return ClinicalRecord(
        "therapy-line",
        start,
        {
            "agent": found.agent[:120],
            "drug_class": found.detail,
            "therapy_class": found.therapy_class,
            "recognised_by": found.recognised_by,
            "start_date": start.isoformat(),
            "stop_date": stop.isoformat() if stop else None,
            "stop_reason": reason,
            "status": resource.get("status"),
        },
    )


def map_procedure(
    resource: Mapping[str, Any], canonical: str, body_structures: Mapping[str, Mapping[str, Any]]
) -> ClinicalRecord | None:
    code = resource.get("code")
    if has_code(code, SNOMED, RADIOTHERAPY):
        kind = "radiotherapy"
    elif has_code(code, f"{canonical}/CodeSystem/immunorad", "intratumoral-injection"):
        kind = "intratumoral-injection"
    else:
        return None
    performed = parse_date(resource.get("performedDateTime")) or parse_date(
        (resource.get("performedPeriod") or {}).get("start")
    )
    if performed is None:
        raise MappingError(
            "a radiotherapy or injection Procedure needs performedDateTime", "Procedure.performedDateTime"
        )
    lesions = []
    for extension in resource.get("extension") or []:
        if extension.get("url") != PROCEDURE_TARGET_EXTENSION:
            continue
        fake = {"focus": [extension.get("valueReference") or {}], "contained": resource.get("contained") or []}
        key, _, _ = lesion_identity(fake, body_structures)
        lesions.append(key)
    return ClinicalRecord(
        "local-therapy",
        performed,
        {
            "kind": kind,
            "date": performed.isoformat(),
            "lesion_ids": lesions,
            "body_site": code_in(resource.get("bodySite", [{}])[0] if resource.get("bodySite") else None, SNOMED),
        },
    )


def map_clinical_observation(
    resource: Mapping[str, Any], canonical: str, body_structures: Mapping[str, Mapping[str, Any]] | None = None
) -> ClinicalRecord | None:
    code = resource.get("code")
    loinc = code_in(code, LOINC)
    own = code_in(code, f"{canonical}/CodeSystem/immunorad")
    name = LAB_CODES.get(loinc or "") or (own if own in LOCAL_OBSERVATION_CODES else None)
    effective = parse_date(resource.get("effectiveDateTime")) or parse_date(
        (resource.get("effectivePeriod") or {}).get("start")
    )
    if own == "death-from-progression" and isinstance(resource.get("valueBoolean"), bool):
        return ClinicalRecord("death-cause", effective, {"from_progression": resource["valueBoolean"]})
    if name is None:
        finding = (
            code_in(resource.get("valueCodeableConcept"), SNOMED) if resource.get("valueCodeableConcept") else None
        )
        if finding and effective:
            lesion = None
            if resource.get("focus"):
                # A finding about a measured lesion (e.g. a node read as sarcoid-like): it qualifies that lesion.
                lesion = lesion_identity(resource, body_structures or {})[0]
            return ClinicalRecord(
                "finding",
                effective,
                {
                    "code": finding,
                    "body_site": code_in((resource.get("bodySite") or {}), SNOMED),
                    "text": None,
                    "lesion_id": lesion,
                },
            )
        return None
    if effective is None:
        raise MappingError("an observation needs effectiveDateTime", "Observation.effectiveDateTime")
    if name == "ecog":
        value = None
        if "valueInteger" in resource:
            value = Decimal(resource["valueInteger"])
        elif resource.get("valueQuantity"):
            value = _decimal(resource.get("valueQuantity"))
        else:
            answer = code_in(resource.get("valueCodeableConcept"), LOINC)
            if answer is not None:
                if answer not in ECOG_ANSWERS:
                    raise MappingError(
                        f"ECOG answer {answer} is not in LOINC answer list LL529-9", "Observation.valueCodeableConcept"
                    )
                value = Decimal(ECOG_ANSWERS[answer])
        if value is None:
            raise MappingError(
                "an ECOG performance status needs valueInteger, valueQuantity or a LOINC answer code",
                "Observation.value[x]",
            )
    elif isinstance(resource.get("valueBoolean"), bool):
        value = Decimal(1 if resource["valueBoolean"] else 0)
    elif "valueInteger" in resource:
        value = Decimal(resource["valueInteger"])
    else:
        value = _decimal(resource.get("valueQuantity"))
    unit = (resource.get("valueQuantity") or {}).get("code") or (resource.get("valueQuantity") or {}).get("unit")
    if name == "height" and unit == "cm" and value is not None:
        value, unit = value / 100, "m"
    high = None
    for reference in resource.get("referenceRange") or []:
        high = _decimal(reference.get("high")) or high
    return ClinicalRecord(
        "observation",
        effective,
        {
            "code": name,
            "value": str(value) if value is not None else None,
            "unit": unit,
            "reference_high": str(high) if high is not None else None,
        },
    )


def map_condition(resource: Mapping[str, Any]) -> ClinicalRecord | None:
    """A cancer diagnosis (its code decides which criteria apply) or a coded finding such as an irAE."""
    finding = code_in(resource.get("code"), SNOMED)
    onset = parse_date(resource.get("onsetDateTime")) or parse_date(resource.get("recordedDate"))
    words = " ".join(
        [str((resource.get("code") or {}).get("text") or "")]
        + [str(c.get("display") or "") for c in codings(resource.get("code"))]
    ).lower()
    profiles = (resource.get("meta") or {}).get("profile") or []
    if any(p in MCODE_CANCER_CONDITIONS for p in profiles) or any(re.search(rf"\b{w}\b", words) for w in CANCER_WORDS):
        return ClinicalRecord("diagnosis", onset, {"code": finding, "text": words.strip() or None})
    if finding is None or onset is None:
        return None
    site = code_in((resource.get("bodySite") or [None])[0], SNOMED) if resource.get("bodySite") else None
    return ClinicalRecord("finding", onset, {"code": finding, "body_site": site, "text": None})


def map_patient(
    resource: Mapping[str, Any], patient_id_system: str, gate: Plausibility = DEFAULT_PLAUSIBILITY
) -> PatientRecord:
    identifiers = [(i.get("system"), str(i.get("value"))) for i in resource.get("identifier") or [] if i.get("value")]
    mrn = next((value for system, value in identifiers if system == patient_id_system), None)
    deceased = parse_date(resource.get("deceasedDateTime"))
    birth_date = parse_date(resource.get("birthDate"))
    gate.refuse(birth_date_problem(birth_date, gate.day()), "Patient.birthDate")
    return PatientRecord(
        identifiers=identifiers,
        mrn=mrn,
        birth_date=birth_date,
        sex=resource.get("gender"),
        deceased_date=deceased,
    )


WITHDRAWN_STATUSES: Mapping[str, frozenset[str]] = {
    "Observation": frozenset({"entered-in-error", "cancelled"}),
    "MedicationAdministration": frozenset({"entered-in-error", "not-done"}),
    "MedicationStatement": frozenset({"entered-in-error", "not-taken"}),
    "MedicationRequest": frozenset({"entered-in-error", "cancelled"}),
    "Procedure": frozenset({"entered-in-error", "not-done"}),
    "ImagingStudy": frozenset({"entered-in-error", "cancelled"}),
}
"""``status`` values (FHIR R4 required bindings) that say the event did not happen or the record should never have
existed: ``entered-in-error`` ("withdrawn following previous final release"), an Observation ``cancelled`` (not
started or not completed), a dose ``not-done`` / ``not-taken``, an order ``cancelled``, an ImagingStudy ``cancelled`` (not started or not
completed). FHIR has no other way for
a sender to take a record back (we answer DELETE with 405), so such a resource is stored and contributes no fact;
sent as an update, it removes the fact its earlier version gave."""
WITHDRAWN_VERIFICATION = frozenset({"entered-in-error", "refuted"})
"""Condition.verificationStatus codes (terminology.hl7.org condition-ver-status) that take a Condition back."""


def is_withdrawn(resource: Mapping[str, Any]) -> bool:
    """Whether the resource says its event did not happen or it was entered in error (see ``WITHDRAWN_STATUSES``)."""
    kind = str(resource.get("resourceType"))
    if resource.get("status") in WITHDRAWN_STATUSES.get(kind, ()):
        return True
    if kind == "Condition":
        return any(c.get("code") in WITHDRAWN_VERIFICATION for c in codings(resource.get("verificationStatus")))
    return False


def withdrawn_death_cause(resource: Mapping[str, Any], canonical: str) -> bool:
    """A withdrawn ``death-from-progression`` Observation: the cause of death it gave is no longer known (the cause is
    kept on the patient, not as a fact of its own, so the caller clears it)."""
    return (
        resource.get("resourceType") == "Observation"
        and is_withdrawn(resource)
        and code_in(resource.get("code"), f"{canonical}/CodeSystem/immunorad") == "death-from-progression"
    )


def imaging_study_uid(resource: Mapping[str, Any]) -> str | None:
    """The StudyInstanceUID an ImagingStudy names (``identifier`` in ``urn:dicom:uid``, ``urn:oid:`` prefixed)."""
    identifiers = resource.get("identifier")
    return next(
        (
            str(i.get("value", "")).removeprefix("urn:oid:")
            for i in (identifiers if isinstance(identifiers, list) else [])
            if isinstance(i, Mapping) and i.get("system") == DICOM_UID
        ),
        None,
    )


def map_resource(
    resource: Mapping[str, Any],
    *,
    canonical: str,
    patient_id_system: str,
    body_structures: Mapping[str, Mapping[str, Any]] | None = None,
    plausibility: Plausibility = DEFAULT_PLAUSIBILITY,
) -> Record | None:
    """The record a resource contributes, or None when we keep it without using it (also when it is withdrawn:
    ``is_withdrawn``). An implausible value (contract §9.2) raises ``MappingError`` naming its element."""
    body_structures = body_structures or {}
    kind = resource.get("resourceType")
    if kind == "Patient":
        return map_patient(resource, patient_id_system, plausibility)
    if is_withdrawn(resource):
        return None
    if kind == "Observation":
        code = resource.get("code")
        if has_code(code, LOINC, TUMOUR_SIZE):
            return map_tumour_observation(resource, canonical, body_structures, plausibility)
        if has_code(code, DCM, REFERENCE_REGION):
            return map_reference_region(resource, canonical, plausibility)
        return map_clinical_observation(resource, canonical, body_structures)
    if kind in ("MedicationAdministration", "MedicationStatement", "MedicationRequest"):
        return map_medication(resource)
    if kind == "Procedure":
        return map_procedure(resource, canonical, body_structures)
    if kind == "Condition":
        return map_condition(resource)
    if kind == "ImagingStudy":
        uid = imaging_study_uid(resource)
        if uid is None:
            raise MappingError(
                "an ImagingStudy needs its StudyInstanceUID identifier (urn:dicom:uid)", "ImagingStudy.identifier"
            )
        reasons = resource.get("reasonCode") or []
        symptom = any(
            code_in(reason, f"{canonical}/CodeSystem/immunorad") == "symptom-driven"
            or any(c.get("code") == "symptom-driven" and "99IMMRAD" in str(c.get("system")) for c in codings(reason))
            for reason in (reasons if isinstance(reasons, list) else [])
        )
        started = parse_date(resource.get("started"))
        plausibility.scan_date(started, "ImagingStudy.started")
        return StudyRecord(uid, started, symptom_driven=symptom)
    return None
