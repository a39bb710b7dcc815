"""Validate a FHIR R4 resource (JSON as a dict) before we accept or emit it.

Two layers (interop-notes §4.1):

1. **Structure** — ``fhir.resources.R4B`` (8.3.0): unknown elements, missing required elements, datatypes,
   choice types. R4B models are used for R4 on the wire (the resources we handle are element-for-element the
   same, interop-notes §4.1).
2. **What fhir.resources does not check**, done here from the FHIR **R4 4.0.1** definitions:

   * required code bindings of the elements we take in or emit (``status`` of Observation, DiagnosticReport,
     Flag, Procedure, Medication*, ImagingStudy, Device; MedicationRequest ``intent``/``priority``; Condition
     ``clinicalStatus``/``verificationStatus``; Bundle ``type``, ``entry.request.method``, ``entry.search.mode``;
     Patient ``gender``; OperationOutcome issue ``severity``/``code``; the datatypes' ``Identifier.use``,
     ``Quantity.comparator``, ``HumanName.use``, ``ContactPoint``, ``Address``, ``Narrative.status``), plus the
     value types and codes of the Observation components contract §4/§5 defines (mCODE TumorSize dimensions in
     mm or cm, our lesion attributes, our result components);
   * reference **target types**, from R4 (:data:`R4_REFERENCE_TARGETS`; R4B widened some, e.g.
     ``Observation.subject`` accepts a Practitioner in R4B but not in R4), falling back to the model's own list;
   * reference **form**: ``#id`` must name a contained resource; ``urn:uuid:``/``urn:oid:`` only inside a Bundle
     and resolved by an entry's ``fullUrl``; conditional references ``Type?query`` only inside a ``transaction``
     Bundle (R4 http.html "Conditional references"); otherwise ``Type/id`` (optionally ``_history``), relative or
     absolute;
   * Bundle rules: ``request`` present exactly for batch/transaction entries (bdl-3/bdl-4), unique ``fullUrl``,
     ``request.url`` of a PUT/POST naming the entry's resource type.

:func:`validate_resource` raises :class:`InvalidResource` whose ``issues`` are OperationOutcome issues
(``severity``, ``code``, ``diagnostics``, ``expression``). Diagnostics never echo element values (no PHI).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel, ValidationError

FHIR_VERSION = "4.0.1"
"""The FHIR release the tables below are taken from (R4 resource definitions, ``valuesets.html``)."""

# The walker reads the fields of whichever fhir.resources model it is handed (Bundle.entry, Observation.component,
# Reference.reference, ...): the element types are only known at run time, so they are typed as Any here.
FhirModel = Any


class InvalidResource(ValueError):
    """A resource that is not valid FHIR R4 (or breaks a required binding / reference rule)."""

    def __init__(self, issues: list[dict[str, Any]]):
        self.issues = issues
        first = issues[0] if issues else {"diagnostics": "invalid resource"}
        where = f" at {first['expression'][0]}" if first.get("expression") else ""
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(f"{first.get('diagnostics', 'invalid')}{where}{more}")

    def operation_outcome(self) -> dict[str, Any]:
        """The issues as an R4 ``OperationOutcome``."""
        return {"resourceType": "OperationOutcome", "issue": [dict(i) for i in self.issues]}


def _issue(code: str, diagnostics: str, expression: str | None, severity: str = "error") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return issue


# ---------------------------------------------------------------------------------------------------------------
# FHIR R4 4.0.1 required bindings (code values)
# ---------------------------------------------------------------------------------------------------------------
_OBSERVATION_STATUS = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
)
_DIAGNOSTIC_REPORT_STATUS = frozenset(
    {
        "registered",
        "partial",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "appended",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
_FLAG_STATUS = frozenset({"active", "inactive", "entered-in-error"})
_PROCEDURE_STATUS = frozenset(
    {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}
)
_MEDICATION_ADMINISTRATION_STATUS = frozenset(
    {"in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"}
)
_MEDICATION_STATEMENT_STATUS = frozenset(
    {"active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown", "not-taken"}
)
_MEDICATION_REQUEST_STATUS = frozenset(
    {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}
)
_MEDICATION_REQUEST_INTENT = frozenset(
    {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"}
)
_REQUEST_PRIORITY = frozenset({"routine", "urgent", "asap", "stat"})
_BUNDLE_TYPE = frozenset(
    {
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
    }
)
_HTTP_VERB = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})
_SEARCH_MODE = frozenset({"match", "include", "outcome"})
_GENDER = frozenset({"male", "female", "other", "unknown"})
_LINK_TYPE = frozenset({"replaced-by", "replaces", "refer", "seealso"})
_IMAGING_STUDY_STATUS = frozenset({"registered", "available", "cancelled", "entered-in-error", "unknown"})
_DEVICE_STATUS = frozenset({"active", "inactive", "entered-in-error", "unknown"})
_DEVICE_NAME_TYPE = frozenset(
    {"udi-label-name", "user-friendly-name", "patient-reported-name", "manufacturer-name", "model-name", "other"}
)
_ISSUE_SEVERITY = frozenset({"fatal", "error", "warning", "information"})
_ISSUE_TYPE = frozenset(
    {
        "invalid",
        "structure",
        "required",
        "value",
        "invariant",
        "security",
        "login",
        "unknown",
        "expired",
        "forbidden",
        "suppressed",
        "processing",
        "not-supported",
        "duplicate",
        "multiple-matches",
        "not-found",
        "deleted",
        "too-long",
        "code-invalid",
        "extension",
        "too-costly",
        "business-rule",
        "conflict",
        "transient",
        "lock-error",
        "no-store",
        "exception",
        "timeout",
        "incomplete",
        "throttled",
        "informational",
    }
)
_PROVENANCE_ENTITY_ROLE = frozenset({"derivation", "revision", "quotation", "source", "removal"})

RESOURCE_CODE_BINDINGS: Mapping[str, Mapping[str, frozenset[str]]] = {
    "Observation": {"status": _OBSERVATION_STATUS},
    "DiagnosticReport": {"status": _DIAGNOSTIC_REPORT_STATUS},
    "Flag": {"status": _FLAG_STATUS},
    "Procedure": {"status": _PROCEDURE_STATUS},
    "MedicationAdministration": {"status": _MEDICATION_ADMINISTRATION_STATUS},
    "MedicationStatement": {"status": _MEDICATION_STATEMENT_STATUS},
    "MedicationRequest": {
        "status": _MEDICATION_REQUEST_STATUS,
        "intent": _MEDICATION_REQUEST_INTENT,
        "priority": _REQUEST_PRIORITY,
    },
    "Bundle": {"type": _BUNDLE_TYPE, "entry.request.method": _HTTP_VERB, "entry.search.mode": _SEARCH_MODE},
    "Patient": {"gender": _GENDER, "contact.gender": _GENDER, "link.type": _LINK_TYPE},
    "ImagingStudy": {"status": _IMAGING_STUDY_STATUS},
    "Device": {"status": _DEVICE_STATUS, "deviceName.type": _DEVICE_NAME_TYPE},
    "OperationOutcome": {"issue.severity": _ISSUE_SEVERITY, "issue.code": _ISSUE_TYPE},
    "Provenance": {"entity.role": _PROVENANCE_ENTITY_ROLE},
}
"""(resource type, element path) → the codes an R4 required binding allows."""

CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
RESOURCE_CONCEPT_BINDINGS: Mapping[str, Mapping[str, tuple[str, frozenset[str]]]] = {
    "Condition": {
        "clinicalStatus": (
            CONDITION_CLINICAL,
            frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
        ),
        "verificationStatus": (
            CONDITION_VERIFICATION,
            frozenset({"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}),
        ),
    },
}
"""(resource type, CodeableConcept element) → (system, codes) of an R4 required binding."""

DATATYPE_CODE_BINDINGS: Mapping[str, Mapping[str, frozenset[str]]] = {
    "Identifier": {"use": frozenset({"usual", "official", "temp", "secondary", "old"})},
    "Quantity": {"comparator": frozenset({"<", "<=", ">=", ">"})},
    "Narrative": {"status": frozenset({"generated", "extensions", "additional", "empty"})},
    "HumanName": {"use": frozenset({"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"})},
    "ContactPoint": {
        "system": frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"}),
        "use": frozenset({"home", "work", "temp", "old", "mobile"}),
    },
    "Address": {
        "use": frozenset({"home", "work", "temp", "old", "billing"}),
        "type": frozenset({"postal", "physical", "both"}),
    },
}
"""Datatype (or a subtype, e.g. Age for Quantity) → element → codes."""

_MIME_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"]*\"|[A-Za-z0-9!#$&^_.+-]+))*$"
)
"""Attachment.contentType: required binding to BCP 13 (RFC 2045/6838) media types."""

OBSERVATION_VALUE_TYPES = frozenset(
    {
        "valueQuantity",
        "valueCodeableConcept",
        "valueString",
        "valueBoolean",
        "valueInteger",
        "valueRange",
        "valueRatio",
        "valueSampledData",
        "valueTime",
        "valueDateTime",
        "valuePeriod",
    }
)
"""R4 ``Observation.value[x]`` and ``Observation.component.value[x]`` types."""

# ---------------------------------------------------------------------------------------------------------------
# FHIR R4 4.0.1 reference targets (resource definitions); "*" = Reference(Any)
# ---------------------------------------------------------------------------------------------------------------
_ANY = frozenset({"*"})
_PRACTITIONERS = ("Practitioner", "PractitionerRole")
R4_REFERENCE_TARGETS: Mapping[str, Mapping[str, frozenset[str]]] = {
    "DiagnosticReport": {
        "basedOn": frozenset(
            {"CarePlan", "ImmunizationRecommendation", "MedicationRequest", "NutritionOrder", "ServiceRequest"}
        ),
        "subject": frozenset({"Patient", "Group", "Device", "Location"}),
        "encounter": frozenset({"Encounter"}),
        "performer": frozenset({*_PRACTITIONERS, "Organization", "CareTeam"}),
        "resultsInterpreter": frozenset({*_PRACTITIONERS, "Organization", "CareTeam"}),
        "specimen": frozenset({"Specimen"}),
        "result": frozenset({"Observation"}),
        "imagingStudy": frozenset({"ImagingStudy"}),
        "media.link": frozenset({"Media"}),
    },
    "Observation": {
        "basedOn": frozenset(
            {
                "CarePlan",
                "DeviceRequest",
                "ImmunizationRecommendation",
                "MedicationRequest",
                "NutritionOrder",
                "ServiceRequest",
            }
        ),
        "partOf": frozenset(
            {
                "MedicationAdministration",
                "MedicationDispense",
                "MedicationStatement",
                "Procedure",
                "Immunization",
                "ImagingStudy",
            }
        ),
        "subject": frozenset({"Patient", "Group", "Device", "Location"}),
        "focus": _ANY,
        "encounter": frozenset({"Encounter"}),
        "performer": frozenset({*_PRACTITIONERS, "Organization", "CareTeam", "Patient", "RelatedPerson"}),
        "specimen": frozenset({"Specimen"}),
        "device": frozenset({"Device", "DeviceMetric"}),
        "hasMember": frozenset({"Observation", "QuestionnaireResponse", "MolecularSequence"}),
        "derivedFrom": frozenset(
            {"DocumentReference", "ImagingStudy", "Media", "QuestionnaireResponse", "Observation", "MolecularSequence"}
        ),
    },
    "Flag": {
        "subject": frozenset(
            {
                "Patient",
                "Location",
                "Group",
                "Organization",
                "Practitioner",
                "PlanDefinition",
                "Medication",
                "Procedure",
            }
        ),
        "encounter": frozenset({"Encounter"}),
        "author": frozenset({"Device", "Organization", "Patient", *_PRACTITIONERS}),
    },
    "Procedure": {
        "basedOn": frozenset({"CarePlan", "ServiceRequest"}),
        "partOf": frozenset({"Procedure", "Observation", "MedicationAdministration"}),
        "subject": frozenset({"Patient", "Group"}),
        "encounter": frozenset({"Encounter"}),
        "recorder": frozenset({"Patient", "RelatedPerson", *_PRACTITIONERS}),
        "asserter": frozenset({"Patient", "RelatedPerson", *_PRACTITIONERS}),
        "performer.actor": frozenset({*_PRACTITIONERS, "Organization", "Patient", "RelatedPerson", "Device"}),
        "performer.onBehalfOf": frozenset({"Organization"}),
        "location": frozenset({"Location"}),
        "reasonReference": frozenset(
            {"Condition", "Observation", "Procedure", "DiagnosticReport", "DocumentReference"}
        ),
        "report": frozenset({"DiagnosticReport", "DocumentReference", "Composition"}),
        "complicationDetail": frozenset({"Condition"}),
        "usedReference": frozenset({"Device", "Medication", "Substance"}),
    },
    "MedicationAdministration": {
        "partOf": frozenset({"MedicationAdministration", "Procedure"}),
        "medicationReference": frozenset({"Medication"}),
        "subject": frozenset({"Patient", "Group"}),
        "context": frozenset({"Encounter", "EpisodeOfCare"}),
        "supportingInformation": _ANY,
        "performer.actor": frozenset({*_PRACTITIONERS, "Patient", "RelatedPerson", "Device"}),
        "reasonReference": frozenset({"Condition", "Observation", "DiagnosticReport"}),
        "request": frozenset({"MedicationRequest"}),
        "device": frozenset({"Device"}),
        "eventHistory": frozenset({"Provenance"}),
    },
    "MedicationStatement": {
        "basedOn": frozenset({"MedicationRequest", "CarePlan", "ServiceRequest"}),
        "partOf": frozenset(
            {"MedicationAdministration", "MedicationDispense", "MedicationStatement", "Procedure", "Observation"}
        ),
        "medicationReference": frozenset({"Medication"}),
        "subject": frozenset({"Patient", "Group"}),
        "context": frozenset({"Encounter", "EpisodeOfCare"}),
        "informationSource": frozenset({"Patient", *_PRACTITIONERS, "RelatedPerson", "Organization"}),
        "derivedFrom": _ANY,
        "reasonReference": frozenset({"Condition", "Observation", "DiagnosticReport"}),
    },
    "MedicationRequest": {
        "reportedReference": frozenset({"Patient", *_PRACTITIONERS, "RelatedPerson", "Organization"}),
        "medicationReference": frozenset({"Medication"}),
        "subject": frozenset({"Patient", "Group"}),
        "encounter": frozenset({"Encounter"}),
        "supportingInformation": _ANY,
        "requester": frozenset({*_PRACTITIONERS, "Organization", "Patient", "RelatedPerson", "Device"}),
        "performer": frozenset({*_PRACTITIONERS, "Organization", "Patient", "Device", "RelatedPerson", "CareTeam"}),
        "recorder": frozenset(_PRACTITIONERS),
        "reasonReference": frozenset({"Condition", "Observation"}),
        "basedOn": frozenset({"CarePlan", "MedicationRequest", "ServiceRequest", "ImmunizationRecommendation"}),
        "insurance": frozenset({"Coverage", "ClaimResponse"}),
        "priorPrescription": frozenset({"MedicationRequest"}),
        "detectedIssue": frozenset({"DetectedIssue"}),
        "eventHistory": frozenset({"Provenance"}),
        "dispenseRequest.performer": frozenset({"Organization"}),
    },
    "Condition": {
        "subject": frozenset({"Patient", "Group"}),
        "encounter": frozenset({"Encounter"}),
        "recorder": frozenset({*_PRACTITIONERS, "Patient", "RelatedPerson"}),
        "asserter": frozenset({*_PRACTITIONERS, "Patient", "RelatedPerson"}),
        "stage.assessment": frozenset({"ClinicalImpression", "DiagnosticReport", "Observation"}),
        "evidence.detail": _ANY,
    },
    "ImagingStudy": {
        "subject": frozenset({"Patient", "Device", "Group"}),
        "encounter": frozenset({"Encounter"}),
        "basedOn": frozenset({"CarePlan", "ServiceRequest", "Appointment", "AppointmentResponse", "Task"}),
        "referrer": frozenset(_PRACTITIONERS),
        "interpreter": frozenset(_PRACTITIONERS),
        "endpoint": frozenset({"Endpoint"}),
        "procedureReference": frozenset({"Procedure"}),
        "location": frozenset({"Location"}),
        "reasonReference": frozenset({"Condition", "Observation", "Media", "DiagnosticReport", "DocumentReference"}),
        "series.endpoint": frozenset({"Endpoint"}),
        "series.specimen": frozenset({"Specimen"}),
        "series.performer.actor": frozenset(
            {*_PRACTITIONERS, "Organization", "CareTeam", "Patient", "Device", "RelatedPerson"}
        ),
    },
    "BodyStructure": {"patient": frozenset({"Patient"})},
    "Patient": {
        "generalPractitioner": frozenset({"Organization", *_PRACTITIONERS}),
        "managingOrganization": frozenset({"Organization"}),
        "link.other": frozenset({"Patient", "RelatedPerson"}),
        "contact.organization": frozenset({"Organization"}),
    },
    "Device": {
        "patient": frozenset({"Patient"}),
        "owner": frozenset({"Organization"}),
        "location": frozenset({"Location"}),
        "parent": frozenset({"Device"}),
    },
    "Provenance": {
        "target": _ANY,
        "location": frozenset({"Location"}),
        "agent.who": frozenset({*_PRACTITIONERS, "RelatedPerson", "Patient", "Device", "Organization"}),
        "agent.onBehalfOf": frozenset({*_PRACTITIONERS, "RelatedPerson", "Patient", "Device", "Organization"}),
        "entity.what": _ANY,
    },
}
"""(resource type, element path) → allowed target types in R4. Elements not listed use the R4B model's list."""

EXTENSION_REFERENCE_TARGETS: Mapping[str, frozenset[str]] = {
    "http://hl7.org/fhir/StructureDefinition/flag-detail": _ANY,
    "http://hl7.org/fhir/StructureDefinition/procedure-targetBodyStructure": frozenset({"BodyStructure"}),
}

# Contract §4/§5 components: (system suffix or URL, code) → (allowed value[x], allowed codes or UCUM units)
_TUMOUR_SIZE_UNITS = frozenset({"mm", "cm"})
"""mCODE 4.0.0 TumorSizeUnitsVS (required)."""
_LESION_ATTRIBUTE_CODES: Mapping[str, frozenset[str]] = {
    "lesion-role": frozenset({"target", "non-target", "new"}),
    "non-target-status": frozenset({"present", "absent", "unequivocal-progression"}),
    "non-target-change": frozenset({"NC", "INC", "NCLA", "INCLA", "UNE"}),
}
_BOOLEAN_COMPONENTS = frozenset(
    {
        "injected",
        "irradiated",
        "equivocal",
        "nodal",
        "too-small",
        "confirmed",
        "provisional",
        "fragment",
        "symptom-driven",
    }
)
_QUANTITY_COMPONENTS = frozenset(
    {
        "sum-of-diameters",
        "baseline-sum",
        "nadir-sum",
        "percent-change-from-baseline",
        "percent-change-from-nadir",
        "absolute-change-from-nadir",
        "tgr-reference",
        "tgr-experimental",
        "tgr-ratio",
        "tgr-difference",
        "tgk-reference",
        "tgk-experimental",
        "tgk-ratio",
    }
)
_DEFINITION_VERDICTS = frozenset({"met", "not-met", "not-evaluable"})
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------
def validate_resource(resource: dict) -> None:
    """Raise :class:`InvalidResource` unless ``resource`` is a valid FHIR R4 resource for us (see module doc)."""
    if not isinstance(resource, Mapping):
        raise InvalidResource([_issue("structure", "a resource must be a JSON object", None)])
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise InvalidResource([_issue("required", "resourceType is missing", "resourceType")])
    try:
        model_class = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        raise InvalidResource(
            [_issue("not-supported", f"unknown resource type {resource_type!r}", "resourceType")]
        ) from None
    try:
        model = model_class.model_validate(dict(resource))
    except ValidationError as error:
        raise InvalidResource(_pydantic_issues(resource_type, error)) from None
    except (TypeError, ValueError) as error:  # fhir_core raises plain ValueErrors for some primitives
        raise InvalidResource([_issue("structure", f"{type(error).__name__} while parsing", resource_type)]) from None
    issues = _Walker().resource(model, resource_type, container=None, bundle=None)
    if issues:
        raise InvalidResource(issues)


def _pydantic_issues(resource_type: str, error: ValidationError) -> list[dict[str, Any]]:
    issues = []
    for err in error.errors(include_input=False, include_url=False):
        path = resource_type
        for part in err.get("loc", ()):
            if isinstance(part, int):
                path += f"[{part}]"
            elif part == "__root__":
                continue
            elif str(part).endswith("__ext"):
                path += f"._{str(part)[:-5]}"
            else:
                path += f".{part}"
        kind = err.get("type", "")
        code = "required" if kind == "missing" else "structure" if kind == "extra_forbidden" else "value"
        message = "unknown element" if kind == "extra_forbidden" else err.get("msg", "invalid value")
        issues.append(_issue(code, message, path))
    return issues or [_issue("structure", "invalid resource", resource_type)]


# ---------------------------------------------------------------------------------------------------------------
# The walk over the validated model
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _BundleScope:
    full_urls: Mapping[str, str]
    """fullUrl → resource type of every entry with a resource."""
    transaction: bool


_REFERENCE = re.compile(
    r"^(?:(?P<base>https?://[^?#]+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)
_CONDITIONAL = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)\?(?P<query>\S+)$")
_URN_UUID = re.compile(r"^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_URN_OID = re.compile(r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$")


def _is_resource_type(name: str) -> bool:
    """True for a concrete FHIR resource type name (``Patient``), false for datatypes and unknown names."""
    if name in ("Resource", "DomainResource"):
        return False
    try:
        model = get_fhir_model_class(name)
    except (KeyError, ValueError, AttributeError, ImportError):
        return False
    return "FHIRResourceModel" in {cls.__name__ for cls in model.__mro__}


def _mro_names(value: Any) -> set[str]:
    return {cls.__name__ for cls in type(value).__mro__}


class _Walker:
    def __init__(self) -> None:
        self.issues: list[dict[str, Any]] = []

    # -- resources -------------------------------------------------------------------------------------------------
    def resource(
        self, model: FhirModel, expr: str, container: FhirModel | None, bundle: _BundleScope | None
    ) -> list[dict[str, Any]]:
        resource_type = model.get_resource_type()
        container = container or model
        if resource_type == "Bundle":
            bundle = self._bundle(model, expr)
        self._fields(model, expr, "", resource_type, container, bundle)
        self._resource_rules(model, expr, resource_type)
        return self.issues

    def _bundle(self, bundle: FhirModel, expr: str) -> _BundleScope:
        kind = bundle.type
        transactional = kind in ("transaction", "batch")
        full_urls: dict[str, str] = {}
        for i, entry in enumerate(bundle.entry or ()):
            where = f"{expr}.entry[{i}]"
            if entry.fullUrl is not None:
                if not (
                    _URN_UUID.match(entry.fullUrl)
                    or _URN_OID.match(entry.fullUrl)
                    or re.match(r"^https?://\S+$", entry.fullUrl)
                ):
                    self.issues.append(
                        _issue("value", "fullUrl must be an absolute URL, urn:uuid or urn:oid", f"{where}.fullUrl")
                    )
                if entry.fullUrl in full_urls:
                    self.issues.append(_issue("duplicate", "fullUrl is not unique in the Bundle", f"{where}.fullUrl"))
                if entry.resource is not None:
                    full_urls[entry.fullUrl] = entry.resource.get_resource_type()
            if transactional and entry.request is None:
                self.issues.append(_issue("required", f"a {kind} entry needs request (bdl-3)", f"{where}.request"))
            if not transactional and entry.request is not None and kind not in ("history",):
                self.issues.append(_issue("invariant", f"a {kind} entry has no request (bdl-3)", f"{where}.request"))
            if entry.request is not None and entry.resource is not None and entry.request.method in ("PUT", "POST"):
                target = re.split(r"[/?]", entry.request.url or "", maxsplit=1)[0]
                if target != entry.resource.get_resource_type():
                    self.issues.append(
                        _issue("value", "request.url does not name the entry's resource type", f"{where}.request.url")
                    )
        return _BundleScope(full_urls, kind == "transaction")

    def _resource_rules(self, model: FhirModel, expr: str, resource_type: str) -> None:
        if resource_type == "Observation":
            self._observation_values(model, expr)
            for i, component in enumerate(model.component or ()):
                self._observation_values(component, f"{expr}.component[{i}]")
                self._component_contract(component, f"{expr}.component[{i}]")
        for element, (system, allowed) in RESOURCE_CONCEPT_BINDINGS.get(resource_type, {}).items():
            concept = getattr(model, element, None)
            if concept is None:
                continue
            codes = [c.code for c in (concept.coding or ()) if c.system == system]
            if not codes:
                self.issues.append(
                    _issue("code-invalid", f"{element} needs a coding from {system}", f"{expr}.{element}")
                )
            for code in codes:
                if code not in allowed:
                    self.issues.append(
                        _issue(
                            "code-invalid",
                            f"{element} code is not in the required value set ({', '.join(sorted(allowed))})",
                            f"{expr}.{element}",
                        )
                    )

    def _observation_values(self, element: FhirModel, expr: str) -> None:
        present = [
            name
            for name in type(element).model_fields
            if name.startswith("value") and not name.endswith("__ext") and getattr(element, name) is not None
        ]
        for name in present:
            if name not in OBSERVATION_VALUE_TYPES:
                self.issues.append(_issue("structure", f"{name} is not an R4 Observation value type", f"{expr}.{name}"))
        if len(present) > 1:
            self.issues.append(_issue("structure", "only one value[x] is allowed", expr))
        if present and getattr(element, "dataAbsentReason", None) is not None:
            self.issues.append(_issue("invariant", "dataAbsentReason only when there is no value (obs-6)", expr))

    def _component_contract(self, component: FhirModel, expr: str) -> None:
        """Value types and codes of the components contract §4/§5 defines."""
        for coding in (component.code.coding or ()) if component.code else ():
            system, code = coding.system or "", coding.code or ""
            if system == LOINC and code in ("33728-7", "33729-5"):
                q = component.valueQuantity
                if q is None:
                    self._component_issue(expr, code, "valueQuantity")
                elif q.code not in _TUMOUR_SIZE_UNITS or (q.system not in (None, UCUM)):
                    self.issues.append(
                        _issue("code-invalid", f"{code} must be in mm or cm (UCUM)", f"{expr}.valueQuantity")
                    )
            elif system.endswith("/CodeSystem/immunorad"):
                if code in _LESION_ATTRIBUTE_CODES:
                    self._coded_component(component, expr, code, "/CodeSystem/immunorad", _LESION_ATTRIBUTE_CODES[code])
                elif code in _BOOLEAN_COMPONENTS and component.valueBoolean is None:
                    self._component_issue(expr, code, "valueBoolean")
                elif (
                    code in _QUANTITY_COMPONENTS
                    and component.valueQuantity is None
                    and component.dataAbsentReason is None
                ):
                    self._component_issue(expr, code, "valueQuantity")
            elif system.endswith("/CodeSystem/hyperprogression"):
                self._coded_component(component, expr, code, "/CodeSystem/immunorad", _DEFINITION_VERDICTS)

    def _coded_component(
        self, component: FhirModel, expr: str, code: str, suffix: str, allowed: frozenset[str]
    ) -> None:
        concept = component.valueCodeableConcept
        if concept is None:
            self._component_issue(expr, code, "valueCodeableConcept")
            return
        values = [c.code for c in (concept.coding or ()) if (c.system or "").endswith(suffix)]
        if not values or any(v not in allowed for v in values):
            self.issues.append(
                _issue(
                    "code-invalid",
                    f"component {code} value must be one of {', '.join(sorted(allowed))}",
                    f"{expr}.valueCodeableConcept",
                )
            )

    def _component_issue(self, expr: str, code: str, expected: str) -> None:
        self.issues.append(_issue("structure", f"component {code} needs {expected}", expr))

    # -- elements --------------------------------------------------------------------------------------------------
    def _fields(
        self,
        model: FhirModel,
        expr: str,
        rel: str,
        resource_type: str,
        container: FhirModel,
        bundle: _BundleScope | None,
    ) -> None:
        names = _mro_names(model)
        datatype_bindings: dict[str, frozenset[str]] = {}
        for datatype, bindings in DATATYPE_CODE_BINDINGS.items():
            if datatype in names:
                datatype_bindings.update(bindings)
        extension_targets = None
        if "Extension" in names and getattr(model, "url", None) in EXTENSION_REFERENCE_TARGETS:
            extension_targets = EXTENSION_REFERENCE_TARGETS[model.url]
        for name, field in type(model).model_fields.items():
            if name in ("resource_type", "fhir_comments"):
                continue
            value = getattr(model, name)
            if value is None:
                continue
            json_name = field.alias or name
            is_ext = name.endswith("__ext")
            child_expr = f"{expr}.{json_name}"
            child_rel = json_name if not rel else f"{rel}.{json_name}"
            if not is_ext:
                allowed = RESOURCE_CODE_BINDINGS.get(resource_type, {}).get(child_rel) or datatype_bindings.get(
                    json_name
                )
                if allowed is not None:
                    self._check_codes(value, allowed, child_expr, json_name)
                if "Attachment" in names and json_name == "contentType" and not _MIME_TYPE.match(value):
                    self.issues.append(_issue("code-invalid", "contentType is not a media type (BCP 13)", child_expr))
            targets = self._targets(
                resource_type, child_rel, field, extension_targets if name == "valueReference" else None
            )
            self._value(
                value,
                child_expr,
                child_rel,
                resource_type,
                container,
                bundle,
                targets,
                contained=(json_name == "contained"),
            )

    def _value(
        self,
        value: Any,
        expr: str,
        rel: str,
        resource_type: str,
        container: FhirModel,
        bundle: _BundleScope | None,
        targets: frozenset[str] | None,
        contained: bool = False,
    ) -> None:
        if isinstance(value, list):
            for i, item in enumerate(value):
                self._value(item, f"{expr}[{i}]", rel, resource_type, container, bundle, targets, contained)
            return
        if not isinstance(value, BaseModel):
            return
        if "FHIRResourceModel" in _mro_names(value):
            # contained resources resolve "#id" in their container; others (Bundle entries) are their own container
            self.resource(value, expr, container if contained else None, bundle)
            return
        if "Reference" in _mro_names(value) and type(value).__name__ == "Reference":
            self._reference(value, expr, container, bundle, targets)
        self._fields(value, expr, rel, resource_type, container, bundle)

    @staticmethod
    def _targets(
        resource_type: str, rel: str, field: Any, extension_targets: frozenset[str] | None
    ) -> frozenset[str] | None:
        if extension_targets is not None:
            return extension_targets
        explicit = R4_REFERENCE_TARGETS.get(resource_type, {}).get(rel)
        if explicit is not None:
            return explicit
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        types = extra.get("enum_reference_types")
        if not types:
            return None
        return _ANY if "Resource" in types else frozenset(types)

    def _check_codes(self, value: Any, allowed: frozenset[str], expr: str, name: str) -> None:
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            where = f"{expr}[{i}]" if isinstance(value, list) else expr
            if not isinstance(v, str) or v not in allowed:
                self.issues.append(
                    _issue(
                        "code-invalid", f"{name} is not one of the required codes ({', '.join(sorted(allowed))})", where
                    )
                )

    # -- references ------------------------------------------------------------------------------------------------
    def _reference(
        self,
        ref: FhirModel,
        expr: str,
        container: FhirModel,
        bundle: _BundleScope | None,
        targets: frozenset[str] | None,
    ) -> None:
        literal: str | None = ref.reference
        declared: str | None = ref.type
        target: str | None = None
        if declared is not None and "/" not in declared and not _is_resource_type(declared):
            self.issues.append(_issue("value", "Reference.type is not a resource type", f"{expr}.type"))
        if literal is not None:
            target = self._resolve(literal, expr, container, bundle)
            if target is None:
                return
        if target is not None and declared is not None and "/" not in declared and declared != target:
            self.issues.append(_issue("value", "Reference.type does not match the reference", f"{expr}.type"))
        kind = target or (declared if declared and "/" not in declared else None)
        if kind is None or targets is None or "*" in targets:
            return
        if kind not in targets:
            self.issues.append(
                _issue(
                    "value",
                    f"reference to a {kind} is not allowed here (R4 allows {', '.join(sorted(targets))})",
                    f"{expr}.reference" if literal else expr,
                )
            )

    def _resolve(self, literal: str, expr: str, container: FhirModel, bundle: _BundleScope | None) -> str | None:
        where = f"{expr}.reference"
        if literal.startswith("#"):
            if literal == "#":
                return container.get_resource_type()
            for resource in getattr(container, "contained", None) or ():
                if resource.id == literal[1:]:
                    return resource.get_resource_type()
            self.issues.append(_issue("not-found", "no contained resource has this id", where))
            return None
        if literal.startswith("urn:"):
            if not (_URN_UUID.match(literal) or _URN_OID.match(literal)):
                self.issues.append(_issue("value", "malformed urn reference", where))
                return None
            if bundle is None:
                self.issues.append(
                    _issue("value", "urn:uuid/urn:oid references are only allowed inside a Bundle", where)
                )
                return None
            if literal not in bundle.full_urls:
                self.issues.append(_issue("not-found", "no Bundle entry has this fullUrl", where))
                return None
            return bundle.full_urls[literal]
        conditional = _CONDITIONAL.match(literal)
        if conditional:
            if bundle is None or not bundle.transaction:
                self.issues.append(
                    _issue("value", "conditional references are only allowed in a transaction Bundle", where)
                )
                return None
            kind = conditional.group("type")
        else:
            match = _REFERENCE.match(literal)
            if match is None:
                self.issues.append(
                    _issue(
                        "value",
                        "reference is not Type/id, an absolute URL, #id, urn:uuid or a conditional reference",
                        where,
                    )
                )
                return None
            kind = match.group("type")
            if bundle is not None and match.group("base") is None:
                pass  # resolved by the server against its base; nothing more to check here
        if not _is_resource_type(kind):
            self.issues.append(_issue("value", f"{kind} is not a resource type", where))
            return None
        return kind
