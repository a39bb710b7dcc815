"""Results out (contract §5): one follow-up timepoint of a :class:`PatientAssessment` as FHIR R4 resources.

For the timepoint ``ctx.scan_date`` :func:`build_report` returns

* one **DiagnosticReport** (US Core "Report and Note", interop-notes §4.2) with a stable business identifier
  ``{C}/identifier/diagnostic-report`` | ``<patient key>/<YYYY-MM-DD>``, the pre-filled "Response assessment"
  section as ``presentedForm`` and its impression as ``conclusion``;
* one **criterion Observation** per criterion graded at that timepoint (driven by
  ``CriterionAssessment.criterion``; a criterion with no :class:`TimepointResponse` for the date, e.g. RECIST 1.1
  after PD, gets none), the **mCODE CancerDiseaseStatus** Observation of the primary criterion, the **kinetics**
  Observation when the assessment has kinetics, and one Observation per prognostic biomarker (kinetics spec §6.8);
* one **Flag** per alert (contract §5), linked to its timepoint's DiagnosticReport by the ``flag-detail`` extension.

Every resource carries a stable business identifier, and its ``id`` is :func:`resource_id` of that identifier,
so a re-evaluation produces the same ids (status ``amended``) and never a duplicate. :func:`ehr_transaction_bundle`
wraps the resources in a ``transaction`` Bundle of conditional PUTs for delivery to the EHR.

Built from FHIR R4 4.0.1, US Core 6.1.0 (DiagnosticReport note), mCODE 4.0.0 (CancerDiseaseStatus) and DICOM
PS3.16 2024c (see the version constants of :mod:`fhir_mappings.codes`).

Numbers are JSON-native (``int``/``float``, percentages rounded to 2 decimals), so the dicts can be stored and
sent with :func:`json.dumps` as they are. Codes and systems come from :mod:`fhir_mappings.codes`.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any
from urllib.parse import quote

from fhir_mappings import codes
from fhir_mappings.alerts import AlertState
from fhir_mappings.codes import LocalSystems
from fhir_mappings.inbound import TRACER_SYSTEMS
from fhir_mappings.prefill import impression_of, is_latest_timepoint, render_prefill
from rules.results import (
    BiomarkerResult,
    CriterionAssessment,
    DefinitionResult,
    KineticsResult,
    PatientAssessment,
    TimepointResponse,
    round2,
)
from rules.tracer_uptake import TracerUptake

REPORT_STATUSES = frozenset({"preliminary", "final", "amended", "corrected"})
"""Statuses an evaluated report version may have; each is valid for DiagnosticReport and Observation alike (FHIR R4)."""
WITHDRAWN = "entered-in-error"
"""The status of a withdrawn report and of its own Observations (:func:`withdrawn_report`)."""
DEVICE_ID = "immunorad"
"""Local id of the contained Device that authors every Flag."""


# ---------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatientRef:
    """The patient as the EHR knows it and as we key it."""

    fhir_id: str
    """Our ``Patient`` resource id (local references ``Patient/<fhir_id>``)."""
    key: str
    """Pseudonymous patient key used in business identifiers (never the MRN)."""
    identifier_system: str
    """``IMMUNORAD_PATIENT_ID_SYSTEM`` (contract §2)."""
    identifier_value: str

    def __post_init__(self) -> None:
        for name in ("fhir_id", "key", "identifier_system", "identifier_value"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"PatientRef.{name} must be a non-empty string")


@dataclass(frozen=True)
class ReportContext:
    """Everything about one report version that is not in the assessment."""

    canonical: str
    """``IMMUNORAD_FHIR_CANONICAL``."""
    patient: PatientRef
    scan_date: dt.date
    """The follow-up timepoint this report is for (one of ``PatientAssessment.followup_dates``)."""
    status: str
    """``preliminary`` for the first version, ``amended`` after a re-evaluation (also ``final``/``corrected``)."""
    issued: dt.datetime
    """When this version was produced; timezone-aware."""
    imaging_study_uids: tuple[str, ...]
    """StudyInstanceUIDs of the timepoint's studies (logical ImagingStudy references)."""
    primary_criterion: str = "iRECIST"
    """The criterion the mCODE CancerDiseaseStatus summarises (falls back to iRECIST, then RECIST 1.1)."""
    signatures: tuple[str, ...] = ()
    """Imaging signatures known at this scan (radiomic scores, AI results; contract §9.6), one line each, shown in
    the HTML details beside the baseline prognostic biomarkers (the multilevel integration)."""

    def __post_init__(self) -> None:
        if self.status not in REPORT_STATUSES:
            raise ValueError(f"ReportContext.status must be one of {sorted(REPORT_STATUSES)}, not {self.status!r}")
        if not isinstance(self.issued, dt.datetime) or self.issued.utcoffset() is None:
            raise ValueError("ReportContext.issued must be a timezone-aware datetime")
        if isinstance(self.scan_date, dt.datetime) or not isinstance(self.scan_date, dt.date):
            raise ValueError("ReportContext.scan_date must be a datetime.date")
        if not self.canonical or not self.canonical.strip():
            raise ValueError("ReportContext.canonical must be a non-empty URL")


@dataclass(frozen=True)
class ReportResources:
    """The resources of one report version, with local references (``Observation/<id>``)."""

    diagnostic_report: dict
    observations: tuple[dict, ...]
    flags: tuple[dict, ...]

    def all(self) -> tuple[dict, ...]:
        return (self.diagnostic_report, *self.observations, *self.flags)


# ---------------------------------------------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------------------------------------------
def resource_id(identifier_system: str, identifier_value: str) -> str:
    """The resource id for a business identifier: a UUID v5 of ``system|value`` (RFC 4122 URL namespace), so the
    same identifier always gives the same id, across re-evaluations and processes."""
    if not identifier_system or not identifier_value:
        raise ValueError("identifier_system and identifier_value must be non-empty")
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{identifier_system}|{identifier_value}"))


def report_identifier_value(patient_key: str, scan_date: dt.date) -> str:
    """``<patient key>/<YYYY-MM-DD>``: the DiagnosticReport business identifier value (contract §5)."""
    return f"{patient_key}/{scan_date.isoformat()}"


def _escape_token(text: str) -> str:
    # FHIR search escaping for token parts ("\", "|", ",", "$"), then percent-encoding for the URL query.
    for char in ("\\", "|", ",", "$"):
        text = text.replace(char, "\\" + char)
    return quote(text, safe=":/@")


def conditional_url(resource_type: str, identifier_system: str, identifier_value: str) -> str:
    """``<Type>?identifier=<system>|<value>``, escaped for a FHIR search URL."""
    return f"{resource_type}?identifier={_escape_token(identifier_system)}|{_escape_token(identifier_value)}"


# ---------------------------------------------------------------------------------------------------------------
# Small builders
# ---------------------------------------------------------------------------------------------------------------
def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code.strip()}
    if display:
        coding["display"] = display
    return coding


def _concept(*codings: Mapping[str, str], text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [dict(c) for c in codings]}
    if text:
        concept["text"] = text
    return concept


def _number(value: Decimal | Fraction | float | int, places: int | None = None) -> int | float | None:
    """A JSON-native number; Fractions are rounded to 2 decimals (display rounding, the categories were decided
    exactly). ``None`` for NaN and infinities (sent as dataAbsentReason instead)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, Fraction):
        value = round2(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = round(value, places) if places is not None else value
        return int(value) if value.is_integer() and places is None else value
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        if places is not None:
            value = value.quantize(Decimal(1).scaleb(-places))
        return int(value) if value == value.to_integral_value() and places is None else float(value)
    raise TypeError(f"not a number: {type(value).__name__}")


def _quantity(value: Decimal | Fraction | float | int, unit: str | None, places: int | None = None) -> dict | None:
    number = _number(value, places)
    if number is None:
        return None
    quantity: dict[str, Any] = {"value": number}
    code = codes.ucum(unit)
    if code is not None:
        quantity.update(unit=codes.UCUM_UNITS[code], system=codes.UCUM, code=code)
    elif unit:
        quantity["unit"] = unit
    return quantity


def _absent(reason: str | None = None) -> dict[str, Any]:
    return _concept(codes.DATA_ABSENT_UNKNOWN.coding(), text=reason)


def _prune(value: Any) -> Any:
    """Drop ``None``, empty strings, lists and objects (FHIR JSON forbids empty values).

    The dict and list branches repeat the same test on purpose: a shared generator was 38 % slower, and this runs
    over every resource of every report (reassess of a cohort)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, (dict, list, tuple)):
                item = _prune(item)
                if not item:
                    continue
            elif item is None or item == "":
                continue
            out[key] = item
        return out
    if isinstance(value, (list, tuple)):
        out_items = []
        for item in value:
            if isinstance(item, (dict, list, tuple)):
                item = _prune(item)
                if not item:
                    continue
            elif item is None or item == "":
                continue
            out_items.append(item)
        return out_items
    return value


def _instant(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")


def _subject(patient: PatientRef) -> dict[str, Any]:
    return {
        "reference": f"Patient/{patient.fhir_id}",
        "identifier": {"system": patient.identifier_system, "value": patient.identifier_value},
    }


def _identifier(system: str, value: str) -> dict[str, str]:
    return {"use": "official", "system": system, "value": value}


# ---------------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    """What every builder needs: systems, subject, the report's identity."""

    ctx: ReportContext
    systems: LocalSystems
    assessment: PatientAssessment

    @property
    def date(self) -> str:
        return self.ctx.scan_date.isoformat()

    @property
    def key(self) -> str:
        return self.ctx.patient.key

    def observation_identity(self, suffix: str) -> tuple[str, str, str]:
        """(system, value, id) of an Observation whose identifier value is ``<key>/<suffix>``."""
        value = f"{self.key}/{suffix}"
        system = self.systems.observation_identifier
        return system, value, resource_id(system, value)

    def observation_base(self, suffix: str, code: dict[str, Any]) -> dict[str, Any]:
        system, value, rid = self.observation_identity(suffix)
        return {
            "resourceType": "Observation",
            "id": rid,
            "identifier": [_identifier(system, value)],
            "status": self.ctx.status,
            "category": [_concept(codes.OBSERVATION_CATEGORY_IMAGING.coding())],
            "code": code,
            "subject": _subject(self.ctx.patient),
            "effectiveDateTime": self.date,
            "issued": _instant(self.ctx.issued),
        }

    def local(self, code: str) -> dict[str, str]:
        return _coding(self.systems.immunorad, code, codes.IMMUNORAD_CODES.get(code))

    def response(self, category: str) -> dict[str, str]:
        return _coding(self.systems.response, category, codes.RESPONSE_CATEGORIES.get(category))

    def criterion_method(self, criterion: str, version: str | None = None) -> dict[str, Any]:
        codings = [_coding(self.systems.response_criteria, criterion, codes.RESPONSE_CRITERIA.get(criterion))]
        standard = codes.STANDARD_CRITERION_CODES.get(criterion)
        if standard is not None:
            codings.append(standard.coding())
        name = codes.criterion_display(criterion)
        text = name if not version or version in name else f"{name} (version {version})"
        return _concept(*codings, text=text)


def build_report(
    assessment: PatientAssessment, ctx: ReportContext, alerts: Sequence[AlertState] = ()
) -> ReportResources:
    """The DiagnosticReport, its Observations and the Flags for the follow-up at ``ctx.scan_date``.

    ``alerts`` are the alerts to send with this report (the service chooses them); a finding with
    ``alert=False`` never becomes a Flag.
    """
    if ctx.scan_date not in assessment.followup_dates:
        raise ValueError(
            f"ctx.scan_date {ctx.scan_date.isoformat()} is not a follow-up timepoint of the assessment "
            f"({', '.join(d.isoformat() for d in assessment.followup_dates) or 'none'})"
        )
    c = _Context(ctx, LocalSystems.from_canonical(ctx.canonical), assessment)

    criterion_observations: list[dict] = []
    for criterion in assessment.criteria:
        tp = criterion.at(ctx.scan_date)
        if tp is not None:
            criterion_observations.append(_criterion_observation(c, criterion, tp))
    observations = list(criterion_observations)
    status = _disease_status_observation(c, criterion_observations)
    if status is not None:
        observations.append(status)
    kinetics = assessment.kinetics
    if kinetics is not None and (kinetics.e2_date is None or kinetics.e2_date <= ctx.scan_date):
        observations.append(_kinetics_observation(c, kinetics))
    observations += [_biomarker_observation(c, b) for b in assessment.biomarkers]
    observations += [_tracer_uptake_observation(c, u) for u in assessment.tracer_uptake if u.scan_date <= ctx.scan_date]

    report = _diagnostic_report(c, observations, alerts)
    flags = [_flag(c, alert) for alert in alerts if alert.finding.alert]
    return ReportResources(
        diagnostic_report=_prune(report),
        observations=tuple(_prune(o) for o in observations),
        flags=tuple(_prune(f) for f in flags),
    )


def findings_as_of(assessment: PatientAssessment, scan_date: dt.date, alerts: Sequence[AlertState]) -> list[AlertState]:
    """The alerts the report text states: those its own (as-of) assessment holds at this timepoint (raised here
    or at an earlier scan and still holding: contract §9.4 "active alerts").

    The report is a document of what was known at its date, so its text does not change when an alert is
    later resolved (the Flag resources carry the current status); an alert a person marked entered-in-error
    is left out.
    """
    rejected = {a.finding.identity for a in alerts if a.status == "entered-in-error"}
    return [
        AlertState(
            finding=f,
            identifier=f.identity,
            status="active",
            first_raised=f.scan_date,
            report_date=scan_date,
        )
        for f in assessment.findings
        if f.alert and f.scan_date <= scan_date and f.identity not in rejected
    ]


def _diagnostic_report(c: _Context, observations: Sequence[dict], alerts: Sequence[AlertState]) -> dict:
    ctx, systems = c.ctx, c.systems
    value = report_identifier_value(ctx.patient.key, ctx.scan_date)
    plain, html_text = render_prefill(
        c.assessment,
        ctx.scan_date,
        findings_as_of(c.assessment, ctx.scan_date, alerts),
        primary=ctx.primary_criterion,
        signatures=ctx.signatures,
    )
    conclusion, conclusion_codes = impression_of(plain), _conclusion_codes(c)
    return {
        "resourceType": "DiagnosticReport",
        "id": resource_id(systems.diagnostic_report_identifier, value),
        "meta": {"profile": [codes.PROFILE_US_CORE_DIAGNOSTIC_REPORT_NOTE]},
        "identifier": [_identifier(systems.diagnostic_report_identifier, value)],
        "status": ctx.status,
        "category": [_concept(codes.LOINC_RADIOLOGY.coding()), _concept(codes.V2_RADIOLOGY.coding())],
        "code": _concept(
            codes.LOINC_DIAGNOSTIC_IMAGING_STUDY.coding(),
            c.local("response-assessment"),
            text="Immunotherapy imaging response assessment",
        ),
        "subject": _subject(ctx.patient),
        "effectiveDateTime": c.date,
        "issued": _instant(ctx.issued),
        "imagingStudy": [
            {"type": "ImagingStudy", "identifier": {"system": codes.DICOM_UID, "value": f"urn:oid:{uid.strip()}"}}
            for uid in dict.fromkeys(u for u in ctx.imaging_study_uids if u and u.strip())
        ],
        "result": [{"reference": f"Observation/{o['id']}", "display": o["code"].get("text")} for o in observations],
        "conclusion": conclusion,
        "conclusionCode": conclusion_codes,
        "presentedForm": [_attachment(plain, "text/plain", ctx), _attachment(html_text, "text/html", ctx)],
    }


def _attachment(text: str, media_type: str, ctx: ReportContext) -> dict[str, Any]:
    return {
        "contentType": f"{media_type}; charset=utf-8",
        "language": "en",
        "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
        "title": "Response assessment",
        "creation": _instant(ctx.issued),
    }


def _conclusion_codes(c: _Context) -> list[dict]:
    """One ``conclusionCode`` per criterion graded at this timepoint (``{C}/CodeSystem/response``); the
    ``conclusion`` text is the pre-fill's impression (contract §9.4)."""
    concepts = []
    for criterion in c.assessment.criteria:
        tp = criterion.at(c.ctx.scan_date)
        if tp is not None:
            name = codes.criterion_display(criterion.criterion)
            concepts.append(_concept(c.response(tp.category), text=f"{name}: {tp.category}"))
    return concepts


# -- criterion Observation ---------------------------------------------------------------------------------------
def _criterion_observation(c: _Context, criterion: CriterionAssessment, tp: TimepointResponse) -> dict:
    name = codes.criterion_display(criterion.criterion)
    code = _concept(c.local("overall-response"), codes.CDISC_OVRLRESP.coding(), text=f"{name} overall response")
    observation = c.observation_base(f"{c.date}/{criterion.criterion}", code)
    observation["valueCodeableConcept"] = _concept(c.response(tp.category), text=tp.category)
    observation["method"] = c.criterion_method(criterion.criterion, criterion.version)
    notes = list(tp.trace)
    if criterion.provisional:
        notes.append("Provisional: this criterion rests on rules the specification marks unverified.")
    notes += [f"Warning: {w}" for w in tp.warnings]
    if notes:
        observation["note"] = [{"text": "\n".join(notes)}]
    observation["component"] = _criterion_components(c, criterion, tp)
    return observation


def _response_value(c: _Context, value: str) -> dict[str, Any]:
    if value in codes.RESPONSE_NON_CATEGORY_WORDS:
        return {"text": codes.RESPONSE_NON_CATEGORY_WORDS[value]}
    return _concept(c.response(value), text=value)


def _criterion_components(c: _Context, criterion: CriterionAssessment, tp: TimepointResponse) -> list[dict]:
    components: list[dict] = []

    def add(code: str, **value: Any) -> None:
        value = {k: v for k, v in value.items() if v is not None}
        if value:
            components.append({"code": _concept(c.local(code)), **value})

    if tp.target_response:
        add("target-response", valueCodeableConcept=_response_value(c, tp.target_response))
    if tp.nontarget_response:
        add("non-target-response", valueCodeableConcept=_response_value(c, tp.nontarget_response))
    if tp.new_lesions:
        words = tp.new_lesions.strip()
        add(
            "new-lesions",
            valueCodeableConcept=(
                _concept(c.local(words), text=words) if words in codes.NEW_LESION_WORDS else {"text": words}
            ),
        )
    unit = tp.sum_unit or "mm"
    if tp.sum_mm is not None:
        add("sum-of-diameters", valueQuantity=_quantity(tp.sum_mm, unit))
    if tp.baseline_sum is not None:
        add("baseline-sum", valueQuantity=_quantity(tp.baseline_sum, unit))
    if tp.nadir_sum is not None:
        add("nadir-sum", valueQuantity=_quantity(tp.nadir_sum, unit))
    if tp.percent_from_baseline is not None:
        add("percent-change-from-baseline", valueQuantity=_quantity(tp.percent_from_baseline, "%", 2))
    if tp.percent_from_nadir is not None:
        add("percent-change-from-nadir", valueQuantity=_quantity(tp.percent_from_nadir, "%", 2))
    if tp.absolute_from_nadir is not None:
        add("absolute-change-from-nadir", valueQuantity=_quantity(tp.absolute_from_nadir, unit))
    if tp.confirmed is not None:
        add("confirmed", valueBoolean=bool(tp.confirmed))
    if tp.progression_date is not None:
        add("progression-date", valueDateTime=tp.progression_date.isoformat())
    if is_latest_timepoint(criterion, tp.scan_date):
        # The best response is over the whole course so far: it belongs to the criterion's latest timepoint.
        for code, best in (
            ("best-overall-response", criterion.best_response),
            ("best-overall-response-confirmed", criterion.best_response_confirmed),
        ):
            if best is not None:
                add(
                    code,
                    valueCodeableConcept=_concept(c.response(best.category), text=f"{best.category}: {best.because}"),
                )
    if criterion.provisional:
        add("provisional", valueBoolean=True)
    for key, value in sorted(tp.extra.items()):
        component = _extra_value(value)
        if component is not None:
            components.append(
                {
                    "code": _concept(
                        _coding(c.systems.immunorad, codes.extra_component_code(key)), text=key.replace("_", " ")
                    ),
                    **component,
                }
            )
    return components


def _extra_value(value: Any) -> dict[str, Any] | None:
    """A criterion-specific scalar as a component value; non-scalars are left to the rule trace."""
    if value is None:
        return None
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, dt.datetime):
        return {"valueDateTime": value.isoformat()} if value.utcoffset() is not None else None
    if isinstance(value, dt.date):
        return {"valueDateTime": value.isoformat()}
    if isinstance(value, int):
        return {"valueInteger": value} if -(2**31) <= value < 2**31 else {"valueQuantity": {"value": value}}
    if isinstance(value, (Decimal, Fraction, float)):
        quantity = _quantity(value, None, 2 if isinstance(value, Fraction) else None)
        return {"valueQuantity": quantity} if quantity else None
    if isinstance(value, str):
        return {"valueString": value} if value.strip() else None
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, dt.date) for v in value):
        start, end = sorted(value)
        return {"valuePeriod": {"start": start.isoformat(), "end": end.isoformat()}}
    return None


# -- mCODE CancerDiseaseStatus -----------------------------------------------------------------------------------
def _primary_candidates(c: _Context) -> list[CriterionAssessment]:
    # Configured primary first, then the immunotherapy criterion of each disease family (solid, lymphoma, glioma).
    names = list(
        dict.fromkeys((c.ctx.primary_criterion, "iRECIST", "RECIST-1.1", "LYRIC", "Lugano-2014", "iRANO", "RANO"))
    )
    return [a for a in (c.assessment.criterion(n) for n in names) if a is not None]


def _disease_status_observation(c: _Context, criterion_observations: Sequence[dict]) -> dict | None:
    """mCODE 4.0.0 CancerDiseaseStatus from the primary criterion (interop-notes §4.5 value mapping)."""
    chosen: CriterionAssessment | None = None
    tp: TimepointResponse | None = None
    for candidate in _primary_candidates(c):
        tp = candidate.at(c.ctx.scan_date)
        if tp is not None or (candidate.progression_date is not None and candidate.progression_date <= c.ctx.scan_date):
            chosen = candidate
            break
    if chosen is None:
        return None
    name = codes.criterion_display(chosen.criterion)
    notes = []
    if tp is not None:
        value = codes.DISEASE_STATUS_BY_CATEGORY.get(tp.category, codes.SCT_UNDETERMINED)
        notes.append(f"Summarises {name}: {codes.category_words(tp.category)} at this scan.")
        if tp.category in codes.UNCONFIRMED_PROGRESSION_CATEGORIES:
            notes.append(
                f"Unconfirmed progression ({tp.category}): progression is not confirmed until the next "
                "assessment; treatment may continue while the patient is clinically stable."
            )
        elif tp.category not in codes.DISEASE_STATUS_BY_CATEGORY:
            notes.append(f"Category {tp.category} has no disease-status mapping: undetermined.")
    else:
        value = codes.SCT_WORSENED
        notes.append(
            f"{name} is not graded at this scan: progression was recorded on "
            f"{chosen.progression_date.isoformat() if chosen.progression_date else 'an earlier scan'} "
            "and the criterion ends there."
        )
    code = _concept(codes.LOINC_CANCER_DISEASE_STATUS.coding(), text="Cancer disease status")
    observation = c.observation_base(f"{c.date}/cancer-disease-status", code)
    observation["meta"] = {"profile": [codes.PROFILE_MCODE_CANCER_DISEASE_STATUS]}
    observation["extension"] = [
        {"url": codes.EXT_MCODE_EVIDENCE_TYPE, "valueCodeableConcept": _concept(codes.SCT_IMAGING.coding())}
    ]
    observation["valueCodeableConcept"] = _concept(value.coding(), text=(tp.category if tp else "progressed"))
    observation["method"] = c.criterion_method(chosen.criterion, chosen.version)
    observation["note"] = [{"text": "\n".join(notes)}]
    source = next((o for o in criterion_observations if o["method"]["coding"][0]["code"] == chosen.criterion), None)
    if source is not None:
        observation["derivedFrom"] = [{"reference": f"Observation/{source['id']}"}]
    return observation


# -- kinetics ----------------------------------------------------------------------------------------------------
_KINETIC_VALUES = (
    ("tgr-reference", "tgr_reference", "%/mo"),
    ("tgr-experimental", "tgr_experimental", "%/mo"),
    ("tgr-ratio", "tgr_ratio", "1"),
    ("tgr-difference", "tgr_difference", "%/mo"),
    ("tgk-reference", "tgk_reference", "mm/mo"),
    ("tgk-experimental", "tgk_experimental", "mm/mo"),
    ("tgk-ratio", "tgk_ratio", "1"),
)


def _kinetics_observation(c: _Context, kinetics: KineticsResult) -> dict:
    """Tumour growth kinetics and hyperprogression definitions (contract §5; kinetics spec §2–§3)."""
    code = _concept(c.local("tumour-kinetics"), text="Tumour growth kinetics and hyperprogression")
    observation = c.observation_base(f"{c.date}/tumour-kinetics", code)
    start = kinetics.e0_date or kinetics.e1_date
    if start is not None and kinetics.e2_date is not None and start <= kinetics.e2_date:
        del observation["effectiveDateTime"]
        observation["effectivePeriod"] = {"start": start.isoformat(), "end": kinetics.e2_date.isoformat()}
    why_absent = f"not evaluable (kinetics flags: {', '.join(kinetics.flags)})" if kinetics.flags else "not evaluable"
    components = []
    for code_name, attribute, unit in _KINETIC_VALUES:
        raw = getattr(kinetics, attribute)
        quantity = None if raw is None else _quantity(float(raw), unit, 2)
        component: dict[str, Any] = {"code": _concept(c.local(code_name))}
        if quantity is not None:
            component["valueQuantity"] = quantity
        else:
            component["dataAbsentReason"] = _absent(why_absent)
        components.append(component)
    components += [_definition_component(c, d) for d in kinetics.definitions]
    observation["component"] = components
    notes = [*kinetics.notes, *(f"flag: {f}" for f in kinetics.flags)]
    if notes:
        observation["note"] = [{"text": "\n".join(notes)}]
    return observation


def _definition_component(c: _Context, definition: DefinitionResult) -> dict:
    if definition.status not in codes.DEFINITION_STATUSES:
        raise ValueError(
            f"DefinitionResult.status must be one of {sorted(codes.DEFINITION_STATUSES)}, "
            f"not {definition.status!r} ({definition.code})"
        )
    reason = definition.reason + (" (borderline)" if definition.borderline else "")
    return {
        "code": _concept(
            _coding(
                c.systems.hyperprogression, definition.code, codes.HYPERPROGRESSION_DEFINITIONS.get(definition.code)
            )
        ),
        "valueCodeableConcept": _concept(c.local(definition.status), text=reason),
    }


# -- biomarkers --------------------------------------------------------------------------------------------------
def _biomarker_observation(c: _Context, biomarker: BiomarkerResult) -> dict:
    """A baseline prognostic biomarker (kinetics spec §6.8): value, interpretation against a named cut-off."""
    effective = biomarker.scan_date or c.assessment.baseline_date or c.ctx.scan_date
    code = _concept(_coding(c.systems.immunorad, codes.biomarker_code(biomarker.code)), text=biomarker.name)
    observation = c.observation_base(f"biomarker/{biomarker.code}/{effective.isoformat()}", code)
    observation["effectiveDateTime"] = effective.isoformat()
    value = biomarker.value
    if value is None:
        missing = ", ".join(biomarker.missing)
        observation["dataAbsentReason"] = _absent(f"missing: {missing}" if missing else "not evaluable")
    elif isinstance(value, str):
        observation["valueString"] = value
    else:
        quantity = _quantity(value, biomarker.unit)
        if quantity is None:
            observation["dataAbsentReason"] = _absent("not a finite number")
        else:
            observation["valueQuantity"] = quantity
    if biomarker.interpretation:
        flag = {"high": codes.INTERPRETATION_HIGH, "low": codes.INTERPRETATION_LOW}.get(
            biomarker.interpretation.lower()
        )
        observation["interpretation"] = [_concept(*([flag.coding()] if flag else []), text=biomarker.interpretation)]
    observation["method"] = {"text": biomarker.method}
    observation["note"] = [
        {"text": f"Source: {biomarker.source}. The cut-off is cohort-derived; informative only, never an alert."}
    ]
    return observation


# -- tracer-specific uptake -------------------------------------------------------------------------------------
_FHIR_SYSTEM_OF_SCHEME = {scheme: system for system, scheme in TRACER_SYSTEMS.items()}
_UPTAKE_UNITS = {"SUVmax": "g/ml{SUVbw}", "SULpeak": "g/ml{SUVlbm}"}


def _tracer_uptake_observation(c: _Context, uptake: TracerUptake) -> dict:
    """The uptake of one non-FDG tracer's lesions at one PET timepoint and its spread (contract §9.6, §9.3):
    the tracer in ``method`` and in the ``radiopharmaceutical`` component (as the inbound component), one
    ``lesion-uptake`` component per lesion, then n, min, median, max, max/min and CV. Informational only."""
    day = uptake.scan_date.isoformat()
    code = _concept(c.local("tracer-uptake"), text=f"Tracer-specific uptake ({uptake.tracer_name})")
    observation = c.observation_base(f"tracer-uptake/{uptake.tracer}/{day}", code)
    observation["effectiveDateTime"] = day
    system = _FHIR_SYSTEM_OF_SCHEME.get(uptake.tracer_scheme or "")
    tracer_codings = [_coding(system, uptake.tracer_code)] if system and uptake.tracer_code else []
    assumed = " (assumed: no tracer stated)" if uptake.assumed else ""
    observation["method"] = {"text": f"{uptake.metric} per lesion on {uptake.tracer_name} PET{assumed}"}
    unit = _UPTAKE_UNITS[uptake.metric]
    value = "suv_max" if uptake.metric == "SUVmax" else "sul_peak"
    components: list[dict[str, Any]] = [
        {
            "code": _concept(c.local("radiopharmaceutical")),
            "valueCodeableConcept": _concept(*tracer_codings, text=uptake.tracer_name),
        },
        *(
            {"code": _concept(c.local("lesion-uptake"), text=row.lesion), "valueQuantity": _quantity(raw, unit)}
            for row in uptake.lesions
            if (raw := getattr(row, value)) is not None
        ),
        {"code": _concept(c.local("lesion-count")), "valueInteger": uptake.count},
        {"code": _concept(c.local("uptake-min")), "valueQuantity": _quantity(uptake.minimum, unit)},
        {"code": _concept(c.local("uptake-median")), "valueQuantity": _quantity(uptake.median, unit)},
        {"code": _concept(c.local("uptake-max")), "valueQuantity": _quantity(uptake.maximum, unit)},
    ]
    for code_name, ratio, ratio_unit, absent in (
        ("uptake-max-min-ratio", uptake.max_min_ratio, "1", "lowest uptake is 0"),
        ("uptake-cv", uptake.cv_percent, "%", "a single lesion"),
    ):
        component: dict[str, Any] = {"code": _concept(c.local(code_name))}
        if ratio is not None:
            component["valueQuantity"] = _quantity(ratio, ratio_unit)
        else:
            component["dataAbsentReason"] = _absent(absent)
        components.append(component)
    observation["component"] = components
    source = f" Tracer: {uptake.source}." if uptake.source else ""
    observation["note"] = [
        {
            "text": "Informational: heterogeneity of uptake across lesions; no validated cut-off exists and no "
            f"FDG criterion reads these values.{source}"
        }
    ]
    return observation


# -- Flags -------------------------------------------------------------------------------------------------------
def _device(rulebase_version: str) -> dict[str, Any]:
    """The contained Device that authors our Flags (no dangling ``Device/immunorad`` reference)."""
    return {
        "resourceType": "Device",
        "id": DEVICE_ID,
        "deviceName": [{"name": "immunorad", "type": "user-friendly-name"}],
        "version": [
            {"type": {"text": "rule base"}, "value": rulebase_version},
            {"type": {"text": "code tables"}, "value": codes.CODE_TABLES_VERSION},
        ],
    }


def _flag(c: _Context, alert: AlertState, *, with_report: bool = True) -> dict:
    finding, systems, patient = alert.finding, c.systems, c.ctx.patient
    report_value = report_identifier_value(patient.key, alert.report_date)
    indicator = codes.alert_indicator(finding.code, finding.severity)
    extra = [_clean_coding(coding) for coding in finding.codings]
    start = min(alert.first_raised, alert.report_date)
    period = {"start": start.isoformat()}
    if alert.status == "inactive":
        end = alert.ended or finding.window_end or alert.report_date
        period["end"] = max(end, start).isoformat()
    return {
        "resourceType": "Flag",
        "id": resource_id(systems.flag_identifier, alert.identifier),
        "contained": [_device(c.assessment.rulebase_version)],
        "extension": [
            *(
                [
                    {
                        "url": codes.EXT_FLAG_DETAIL,
                        "valueReference": {
                            "reference": f"DiagnosticReport/{resource_id(systems.diagnostic_report_identifier, report_value)}",
                            "type": "DiagnosticReport",
                            "identifier": {"system": systems.diagnostic_report_identifier, "value": report_value},
                        },
                    }
                ]
                if with_report
                else []
            ),
            {
                "url": codes.EXT_FLAG_PRIORITY,
                "valueCodeableConcept": _concept(codes.FLAG_PRIORITY_BY_SEVERITY[indicator].coding()),
            },
        ],
        "identifier": [_identifier(systems.flag_identifier, alert.identifier)],
        "status": alert.status,
        "category": [_concept(codes.FLAG_CATEGORY_CLINICAL.coding())],
        "code": _concept(
            _coding(systems.alert, finding.code, codes.ALERT_CODES.get(finding.code)),
            *[e for e in extra if e is not None],
            text=finding.summary,
        ),
        "subject": _subject(patient),
        "period": period,
        "author": {"reference": f"#{DEVICE_ID}", "display": "immunorad"},
    }


def _clean_coding(coding: Mapping[str, Any]) -> dict[str, str] | None:
    cleaned = {
        k: str(coding[k]).strip() for k in ("system", "version", "code", "display") if coding.get(k) not in (None, "")
    }
    return cleaned if cleaned.get("code") else None


# ---------------------------------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------------------------------
def belongs_to_report(observation: Mapping[str, Any], report_identifier: str) -> bool:
    """Whether an Observation is one of that report's own (identifier value ``<report identifier>/<suffix>``), not
    one shared with other reports (a biomarker, a tracer uptake)."""
    values = [i.get("value") for i in observation.get("identifier") or [] if isinstance(i, Mapping)]
    return any(isinstance(v, str) and v.startswith(f"{report_identifier}/") for v in values)


def withdrawn_report(
    stored_report: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    issued: dt.datetime,
    reason: str,
) -> ReportResources:
    """The withdrawal of a report whose timepoint is no longer an on-treatment follow-up (e.g. the immunotherapy
    start arrived after the scan's report and dates the scan on or before C1D1).

    FHIR R4 DiagnosticReport.status ``entered-in-error``: "The report has been withdrawn following a previous final
    release. This electronic record should never have existed, though it is possible that real-world decisions
    were based on it." The report keeps the content that was sent, since decisions may rest on it; its
    ``conclusion`` says it was withdrawn and why. ``results`` are its stored result Observations: its own
    (criterion, disease status, kinetics: :func:`belongs_to_report`) are withdrawn with it; those shared with other
    reports (biomarkers, tracer uptake) are carried unchanged, so every reference of the Bundle resolves inside it.
    """
    stamp = _instant(issued)
    identifier = (stored_report.get("identifier") or [{}])[0].get("value", "")

    def as_sent(resource: Mapping[str, Any], *, withdraw: bool) -> dict:
        body = copy.deepcopy(dict(resource))
        meta = {k: v for k, v in (body.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
        if meta:
            body["meta"] = meta
        else:
            body.pop("meta", None)
        if withdraw:
            body["status"] = WITHDRAWN
            body["issued"] = stamp
        return body

    report = as_sent(stored_report, withdraw=True)
    previous = report.get("conclusion")
    report["conclusion"] = f"Withdrawn (entered in error): {reason}." + (
        f" The withdrawn impression was: {previous}" if previous else ""
    )
    return ReportResources(
        diagnostic_report=report,
        observations=tuple(as_sent(o, withdraw=belongs_to_report(o, identifier)) for o in results),
        flags=(),
    )


def build_flags(assessment: PatientAssessment, ctx: ReportContext, alerts: Sequence[AlertState]) -> tuple[dict, ...]:
    """Flags of alerts raised at a date that has no follow-up report (e.g. an early death without a
    post-baseline scan): the same Flag shape without the ``flag-detail`` link. ``ctx.scan_date`` is unused."""
    c = _Context(ctx, LocalSystems.from_canonical(ctx.canonical), assessment)
    return tuple(_prune(_flag(c, alert, with_report=False)) for alert in alerts if alert.finding.alert)


def ehr_transaction_bundle(resources: ReportResources, ctx: ReportContext) -> dict:
    """One ``transaction`` Bundle of conditional PUTs (``<Type>?identifier=<system>|<value>``) for the EHR.

    Every entry has ``fullUrl`` ``urn:uuid:<id>``; references between the entries are rewritten to those
    urn:uuids, the subject becomes ``Patient?identifier=<system>|<value>`` (the EHR does not know our Patient
    ids), and any other reference to one of our resources that is not in the Bundle (a Flag's report of an
    earlier timepoint) becomes a conditional reference on its business identifier. Resource ids are dropped:
    the EHR assigns its own.
    """
    return transaction_bundle(resources.all(), ctx)


def transaction_bundle(members: Sequence[dict], ctx: ReportContext) -> dict:
    """A ``transaction`` Bundle of conditional PUTs for any of our resources (see ``ehr_transaction_bundle``)."""
    urns = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{r['id']}" for r in members}
    patient = ctx.patient
    patient_ref = conditional_url("Patient", patient.identifier_system, patient.identifier_value)
    entries = []
    for resource in members:
        identifier = resource["identifier"][0]
        body = copy.deepcopy(resource)
        body.pop("id", None)
        _rewrite_references(body, urns, f"Patient/{patient.fhir_id}", patient_ref)
        entries.append(
            {
                "fullUrl": urns[f"{resource['resourceType']}/{resource['id']}"],
                "resource": body,
                "request": {
                    "method": "PUT",
                    "url": conditional_url(resource["resourceType"], identifier["system"], identifier["value"]),
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


_REFERENCE_KEYS = frozenset({"id", "extension", "reference", "type", "identifier", "display"})


def _rewrite_references(node: Any, urns: Mapping[str, str], patient_local: str, patient_conditional: str) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite_references(item, urns, patient_local, patient_conditional)
        return
    if not isinstance(node, dict):
        return
    reference = node.get("reference")
    if isinstance(reference, str) and "resourceType" not in node and set(node) <= _REFERENCE_KEYS:
        if reference in urns:
            node["reference"] = urns[reference]
        elif reference == patient_local:
            node["reference"] = patient_conditional
        elif "/" in reference and not reference.startswith("#") and "://" not in reference:
            identifier = node.get("identifier") or {}
            if identifier.get("system") and identifier.get("value"):
                node["reference"] = conditional_url(
                    reference.split("/", 1)[0], identifier["system"], identifier["value"]
                )
    for key, value in node.items():
        if key != "reference":
            _rewrite_references(value, urns, patient_local, patient_conditional)
