"""Every code system URL and code that immunorad emits in FHIR, in one place, each with its source.

Sources (contract §5, ``docs/interop-notes.md`` §4–§5; versions as read there):

* **LOINC** — codes as bound by US Core 6.1.0 (``us-core-diagnosticreport-category``,
  ``us-core-diagnosticreport-note``) and mCODE 4.0.0 (CancerDiseaseStatus, TumorSize). The LOINC release that
  introduced each code was not checked; the codes were read in those IG sources.
* **DICOM** PS3.16 **2024c** (pydicom concept dictionary, DCMTK ``cid6147.cc``): CID 6147 Response Criteria.
* **NCIt** — C114879 "RANO", as listed in DICOM CID 6147 (2024c); system URI as used by mCODE 4.0.0 aliases.
* **SNOMED CT** — mCODE 4.0.0 ``ConditionStatusTrendVS`` / ``CancerDiseaseStatusEvidenceTypeVS``
  (International edition concepts, except 550991000124107 which is a US extension concept of the max VS and is
  therefore *not* emitted).
* **HL7 terminology** (THO, R4 4.0.1 core): v2-0074, observation-category, flag-category, flag-priority,
  data-absent-reason, v3-ObservationInterpretation.
* **UCUM** — ``http://unitsofmeasure.org``; the unit codes below are valid UCUM expressions (``/mo`` = month).
* **CDISC** SDTM RS test code ``OVRLRESP`` (pharmaversesdtm ``rs_onco_irecist.R``). FHIR registers no system URI
  for CDISC SDTM test codes (``terminologies-systems.html`` lists none) and the NCIt C-codes of the codelist are
  unverified (interop-notes §7), so we follow FHIR's rule "use the publishing organisation's URL" and name the
  RSTESTCD codelist under cdisc.org: :data:`CDISC_RSTESTCD`. Check it against the site's terminology server
  before production.
* **immunorad's own** code systems live under the configurable canonical ``{C}`` =
  ``IMMUNORAD_FHIR_CANONICAL`` (default ``http://immunorad.org/fhir``), built by :class:`LocalSystems`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

CODE_TABLES_VERSION = "2025.1"
"""Version of these tables; bump it when a code or a display changes (recorded in the Device of every Flag)."""

# What the mappings were built from (style.md: record the profile and version a module is built from).
FHIR_VERSION = "4.0.1"
"""FHIR R4 on the wire (models: fhir.resources 8.3.0 ``R4B``; emitted resources checked against the R4 JSON schema)."""
US_CORE_VERSION = "6.1.0"
"""US Core ``us-core-diagnosticreport-note`` (the DiagnosticReport profile we declare)."""
MCODE_VERSION = "4.0.0"
"""mCODE CancerDiseaseStatus (97509-4, value set and evidence-type extension)."""
DICOM_VERSION = "2024c"
"""DICOM PS3.16 CID 6147 Response Criteria (126081 RECIST 1.1, C114879 RANO)."""
CDS_HOOKS_VERSION = "2.0"
"""CDS Hooks card and discovery fields (interop-notes §5.1)."""

DEFAULT_CANONICAL = "http://immunorad.org/fhir"
"""Default of ``IMMUNORAD_FHIR_CANONICAL`` (contract §2)."""


def canonical_from_env() -> str:
    """``IMMUNORAD_FHIR_CANONICAL`` without a trailing slash, or :data:`DEFAULT_CANONICAL`."""
    value = os.environ.get("IMMUNORAD_FHIR_CANONICAL") or DEFAULT_CANONICAL
    return value.rstrip("/")


# ---------------------------------------------------------------------------------------------------------------
# External code systems (FHIR R4 4.0.1 ``terminologies-systems.html`` URIs)
# ---------------------------------------------------------------------------------------------------------------
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
"""DICOM Controlled Terminology (PS3.16 2024c)."""
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
UCUM = "http://unitsofmeasure.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
"""HL7 v2 table 0074 Diagnostic Service Section ID (THO)."""
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
FLAG_PRIORITY = "http://hl7.org/fhir/flag-priority-code"
"""Value system of the R4 core extension ``flag-priority`` (PH, PM, PL, PN)."""
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
OBSERVATION_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CDISC_RSTESTCD = "http://www.cdisc.org/sdtm/ct/RSTESTCD"
"""Our choice (see module docstring): CDISC SDTM "Oncology Response Assessment Test Code" codelist RSTESTCD."""
DICOM_UID = "urn:dicom:uid"
"""Identifier.system for DICOM UIDs (value ``urn:oid:<uid>``), as in the HL7 DICOM SR IG and contract §4."""

# Extensions and profiles
EXT_FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
EXT_FLAG_PRIORITY = "http://hl7.org/fhir/StructureDefinition/flag-priority"
EXT_MCODE_EVIDENCE_TYPE = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-cancer-disease-status-evidence-type"
PROFILE_MCODE_CANCER_DISEASE_STATUS = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-cancer-disease-status"
"""mCODE 4.0.0."""
PROFILE_US_CORE_DIAGNOSTIC_REPORT_NOTE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-diagnosticreport-note"
"""US Core 6.1.0 (FHIR 4.0.1)."""


@dataclass(frozen=True)
class Code:
    """One coding: system, code and display, with where we read it."""

    system: str
    code: str
    display: str
    source: str = ""

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


# LOINC
LOINC_RADIOLOGY = Code(LOINC, "LP29684-5", "Radiology", "US Core 6.1.0 VS us-core-diagnosticreport-category")
LOINC_DIAGNOSTIC_IMAGING_STUDY = Code(LOINC, "18748-4", "Diagnostic imaging study", "interop-notes §4.2")
LOINC_CANCER_DISEASE_STATUS = Code(LOINC, "97509-4", "Cancer disease progression", "mCODE 4.0.0 CancerDiseaseStatus")
LOINC_TUMOR_SIZE = Code(LOINC, "21889-1", "Size Tumor", "mCODE 4.0.0 TumorSize")
LOINC_TUMOR_LONGEST_DIMENSION = Code(LOINC, "33728-7", "Size.maximum dimension in Tumor", "mCODE 4.0.0 TumorSize")
LOINC_TUMOR_OTHER_DIMENSION = Code(LOINC, "33729-5", "Size additional dimension in Tumor", "mCODE 4.0.0 TumorSize")

# HL7 terminology
V2_RADIOLOGY = Code(V2_0074, "RAD", "Radiology", "HL7 v2 table 0074")
OBSERVATION_CATEGORY_IMAGING = Code(OBSERVATION_CATEGORY, "imaging", "Imaging", "FHIR R4 observation-category")
FLAG_CATEGORY_CLINICAL = Code(FLAG_CATEGORY, "clinical", "Clinical", "FHIR R4 flag-category")
DATA_ABSENT_UNKNOWN = Code(DATA_ABSENT_REASON, "unknown", "Unknown", "FHIR R4 data-absent-reason")
INTERPRETATION_HIGH = Code(OBSERVATION_INTERPRETATION, "H", "High", "THO v3-ObservationInterpretation")
INTERPRETATION_LOW = Code(OBSERVATION_INTERPRETATION, "L", "Low", "THO v3-ObservationInterpretation")

FLAG_PRIORITY_BY_SEVERITY: Mapping[str, Code] = MappingProxyType(
    {
        "critical": Code(FLAG_PRIORITY, "PH", "High priority", "FHIR R4 flag-priority-code"),
        "warning": Code(FLAG_PRIORITY, "PM", "Medium priority", "FHIR R4 flag-priority-code"),
        "info": Code(FLAG_PRIORITY, "PL", "Low priority", "FHIR R4 flag-priority-code"),
    }
)
"""CDS Hooks indicator → Flag priority (the IPS example uses PH/PM/PL; interop-notes §5.2)."""

# DICOM / NCIt: the only criteria with a standard code (DICOM CID 6147, 2024c)
DCM_RECIST_11 = Code(DCM, "126081", "RECIST 1.1", "DICOM PS3.16 2024c CID 6147")
NCIT_RANO = Code(NCIT, "C114879", "RANO", "DICOM PS3.16 2024c CID 6147")
STANDARD_CRITERION_CODES: Mapping[str, Code] = MappingProxyType({"RECIST-1.1": DCM_RECIST_11, "RANO": NCIT_RANO})
"""Second ``method`` coding for criteria that DICOM CID 6147 codes (contract §5)."""

# CDISC
CDISC_OVRLRESP = Code(CDISC_RSTESTCD, "OVRLRESP", "Overall Response", "CDISC SDTM RSTESTCD (pharmaversesdtm)")

# SNOMED CT: mCODE CancerDiseaseStatus values and evidence type
SCT_IMPROVED = Code(SNOMED, "268910001", "Patient's condition improved (finding)", "mCODE 4.0.0 ConditionStatusTrendVS")
SCT_STABLE = Code(SNOMED, "359746009", "Patient's condition stable (finding)", "mCODE 4.0.0 ConditionStatusTrendVS")
SCT_WORSENED = Code(SNOMED, "271299001", "Patient's condition worsened (finding)", "mCODE 4.0.0 ConditionStatusTrendVS")
SCT_UNDETERMINED = Code(
    SNOMED, "709137006", "Patient condition undetermined (finding)", "mCODE 4.0.0 ConditionStatusTrendVS"
)
SCT_IMAGING = Code(SNOMED, "363679005", "Imaging", "mCODE 4.0.0 CancerDiseaseStatusEvidenceTypeVS")

# UCUM units (code, human unit)
UCUM_UNITS: Mapping[str, str] = MappingProxyType(
    {
        "mm": "mm",
        "mm2": "mm²",
        "cm": "cm",
        "mL": "mL",
        "%": "%",
        "%/mo": "%/month",
        "mm/mo": "mm/month",
        "1": "1",
        "g/ml{SUVbw}": "g/ml (SUVbw)",
        "g/ml{SUVlbm}": "g/ml (SUL)",
        "cm2/m2": "cm²/m²",
    }
)
"""UCUM codes we emit with ``system`` UCUM; a unit not listed is sent as ``unit`` text only."""
UCUM_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "mm^2": "mm2",
        "mm²": "mm2",
        "ml": "mL",
        "g/mL{SUVbw}": "g/ml{SUVbw}",
        "g/mL{SUVlbm}": "g/ml{SUVlbm}",
        "{SUVbw}g/ml": "g/ml{SUVbw}",
        "{SUVlbm}g/ml": "g/ml{SUVlbm}",
        "%/month": "%/mo",
        "mm/month": "mm/mo",
        "": "1",
    }
)


def ucum(unit: str | None) -> str | None:
    """The UCUM code for a unit as the rules spell it, or ``None`` when it is not one we know to be UCUM."""
    if unit is None:
        return None
    unit = UCUM_ALIASES.get(unit, unit)
    return unit if unit in UCUM_UNITS else None


# ---------------------------------------------------------------------------------------------------------------
# immunorad's own code systems ({C} = IMMUNORAD_FHIR_CANONICAL)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalSystems:
    """The project's CodeSystem and identifier-system URLs under one canonical base."""

    canonical: str

    @classmethod
    def from_canonical(cls, canonical: str | None = None) -> LocalSystems:
        canonical = (canonical or canonical_from_env()).rstrip("/")
        if not canonical:
            raise ValueError("canonical must be a non-empty URL")
        return cls(canonical)

    @property
    def response_criteria(self) -> str:
        """``{C}/CodeSystem/response-criteria``: which criterion (contract §5 ``method``)."""
        return f"{self.canonical}/CodeSystem/response-criteria"

    @property
    def response(self) -> str:
        """``{C}/CodeSystem/response``: categories as the criteria name them (CDISC submission values)."""
        return f"{self.canonical}/CodeSystem/response"

    @property
    def immunorad(self) -> str:
        """``{C}/CodeSystem/immunorad``: observation, component and attribute codes."""
        return f"{self.canonical}/CodeSystem/immunorad"

    @property
    def hyperprogression(self) -> str:
        """``{C}/CodeSystem/hyperprogression``: hyperprogression / fast-progression definitions."""
        return f"{self.canonical}/CodeSystem/hyperprogression"

    @property
    def alert(self) -> str:
        """``{C}/CodeSystem/alert``: Flag and CDS Hooks card codes."""
        return f"{self.canonical}/CodeSystem/alert"

    def identifier(self, kind: str) -> str:
        """``{C}/identifier/<kind>``: business identifiers (``diagnostic-report``, ``observation``, ``flag``)."""
        return f"{self.canonical}/identifier/{kind}"

    @property
    def diagnostic_report_identifier(self) -> str:
        return self.identifier("diagnostic-report")

    @property
    def observation_identifier(self) -> str:
        return self.identifier("observation")

    @property
    def flag_identifier(self) -> str:
        return self.identifier("flag")


# {C}/CodeSystem/response-criteria (contract §5): code → display
RESPONSE_CRITERIA: Mapping[str, str] = MappingProxyType(
    {
        "RECIST-1.1": "RECIST 1.1",
        "iRECIST": "iRECIST",
        "irRECIST": "irRECIST",
        "irRC": "irRC",
        "imRECIST": "imRECIST",
        "itRECIST": "itRECIST",
        "PERCIST-1.0": "PERCIST 1.0",
        "imPERCIST5": "imPERCIST5",
        "PERCIMT": "PERCIMT",
        "iPERCIST": "iPERCIST",
        "EORTC-PET": "EORTC PET",
        "Lugano-2014": "Lugano 2014",
        "LYRIC": "LYRIC",
        "RANO": "RANO",
        "iRANO": "iRANO",
    }
)


def criterion_display(criterion: str) -> str:
    """How a criterion is named to people (``RECIST-1.1`` → ``RECIST 1.1``)."""
    return RESPONSE_CRITERIA.get(criterion, criterion)


# {C}/CodeSystem/response (contract §5): the categories as the criteria name them, CDISC submission values where
# they exist (pharmaversesdtm rs_onco_irecist.R), with a radiologist's wording. A category the rules return that
# is not listed here is still emitted (as the criterion names it) with no display.
RESPONSE_CATEGORIES: Mapping[str, str] = MappingProxyType(
    {
        # RECIST 1.1 (Eisenhauer 2009) and the shared non-target / lesion-level values
        "CR": "complete response",
        "PR": "partial response",
        "SD": "stable disease",
        "PD": "progressive disease",
        "NE": "not evaluable",
        "NON-CR/NON-PD": "non-CR/non-PD",
        # iRECIST (Seymour 2017)
        "iCR": "complete response",
        "iPR": "partial response",
        "iSD": "stable disease",
        "iUPD": "unconfirmed progressive disease",
        "iCPD": "confirmed progressive disease",
        "NON-iCR/NON-iUPD": "non-iCR/non-iUPD",
        # irRC / irRECIST
        "irCR": "immune-related complete response",
        "irPR": "immune-related partial response",
        "irSD": "immune-related stable disease",
        "irPD": "immune-related progressive disease",
        "irNE": "immune-related not evaluable",
        "irNN": "immune-related non-CR/non-PD",
        # PET (PERCIST, EORTC, Lugano PET-CT)
        "CMR": "complete metabolic response",
        "PMR": "partial metabolic response",
        "SMD": "stable metabolic disease",
        "NMR": "no metabolic response",
        "PMD": "progressive metabolic disease",
        "UPMD": "unconfirmed progressive metabolic disease",
        "CPMD": "confirmed progressive metabolic disease",
        # LYRIC indeterminate response (Cheson 2016)
        "IR": "indeterminate response",
        "IR1": "indeterminate response IR1",
        "IR2": "indeterminate response IR2",
        "IR2a": "indeterminate response IR2a",
        "IR2b": "indeterminate response IR2b",
        "IR3": "indeterminate response IR3",
    }
)

_RECIST_LIKE = frozenset({"CR", "PR", "SD", "PD", "NE", "NON-CR/NON-PD"})
_IR = frozenset({"irCR", "irPR", "irSD", "irPD", "irNE", "irNN", "NE"})
_PET = frozenset({"CMR", "PMR", "SMD", "PMD", "NE"})
CRITERION_CATEGORIES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "RECIST-1.1": _RECIST_LIKE,
        "iRECIST": frozenset({"iCR", "iPR", "iSD", "iUPD", "iCPD", "NON-iCR/NON-iUPD", "NE"}),
        "irRECIST": _IR,
        "irRC": _IR,
        "imRECIST": _RECIST_LIKE,
        "itRECIST": _RECIST_LIKE,
        "PERCIST-1.0": _PET,
        "imPERCIST5": _PET,
        "PERCIMT": _PET,
        "iPERCIST": _PET | {"UPMD", "CPMD"},
        "EORTC-PET": _PET,
        "Lugano-2014": _PET | {"NMR"} | _RECIST_LIKE,
        "LYRIC": _PET | {"NMR"} | _RECIST_LIKE | {"IR", "IR1", "IR2", "IR2a", "IR2b", "IR3"},
        "RANO": _RECIST_LIKE,
        "iRANO": _RECIST_LIKE,
    }
)
"""The overall categories a radiologist may sign for each criterion (contract §5 and §9.7): the values the
criterion's module in ``rules/criteria/`` returns, as listed in ``RESPONSE_CATEGORIES``. A sign-off naming a
category outside its criterion's set is refused (422)."""

RESPONSE_NON_CATEGORY_WORDS: Mapping[str, str] = MappingProxyType(
    {
        "NONE": "no non-target lesions",
        "NA": "not applicable",
    }
)
"""Values of ``target_response``/``nontarget_response`` that are not categories: sent as text only."""


def category_words(category: str) -> str:
    """``PR`` → ``partial response (PR)``; an unknown category as it is."""
    words = RESPONSE_CATEGORIES.get(category) or RESPONSE_NON_CATEGORY_WORDS.get(category)
    return f"{words} ({category})" if words and words.lower() != category.lower() else category


# mCODE CancerDiseaseStatus value mapping (interop-notes §4.5; contract §5). The primary criterion's category →
# SNOMED CT trend. CR → "improved" (268910001, preferred ConditionStatusTrendVS) rather than the US-extension
# "full remission" concept of the max VS. iUPD → undetermined with an "unconfirmed progression" note.
DISEASE_STATUS_BY_CATEGORY: Mapping[str, Code] = MappingProxyType(
    {
        **{c: SCT_IMPROVED for c in ("CR", "PR", "iCR", "iPR", "irCR", "irPR", "CMR", "PMR")},
        **{c: SCT_STABLE for c in ("SD", "NON-CR/NON-PD", "iSD", "NON-iCR/NON-iUPD", "irSD", "irNN", "SMD", "NMR")},
        **{c: SCT_WORSENED for c in ("PD", "iCPD", "irPD", "PMD", "CPMD")},
        **{c: SCT_UNDETERMINED for c in ("NE", "irNE", "iUPD", "UPMD", "IR", "IR1", "IR2", "IR2a", "IR2b", "IR3")},
    }
)
UNCONFIRMED_PROGRESSION_CATEGORIES = frozenset({"iUPD", "UPMD", "IR", "IR1", "IR2", "IR2a", "IR2b", "IR3"})
"""Categories that mean "progression not yet confirmed": the status note says so."""


# {C}/CodeSystem/immunorad: observation, component and attribute codes (contract §4–§5) → display
IMMUNORAD_CODES: Mapping[str, str] = MappingProxyType(
    {
        # report and observation codes
        "response-assessment": "Immunotherapy imaging response assessment",
        "overall-response": "Overall response",
        "tumour-kinetics": "Tumour growth kinetics",
        # criterion observation components
        "target-response": "Target lesion response",
        "non-target-response": "Non-target lesion response",
        "new-lesions": "New lesions",
        "sum-of-diameters": "Sum of diameters",
        "baseline-sum": "Baseline sum of diameters",
        "nadir-sum": "Nadir sum of diameters",
        "percent-change-from-baseline": "Percent change from baseline",
        "percent-change-from-nadir": "Percent change from nadir",
        "absolute-change-from-nadir": "Absolute change from nadir",
        "confirmed": "Confirmed",
        "progression-date": "Date of progression",
        "best-overall-response": "Best overall response (without confirmation)",
        "best-overall-response-confirmed": "Best overall response (confirmed)",
        "provisional": "Provisional (rests on unverified rules)",
        # kinetics components (kinetics spec §2)
        "tgr-reference": "Tumour growth rate, reference period (before treatment)",
        "tgr-experimental": "Tumour growth rate, experimental period (on treatment)",
        "tgr-ratio": "Tumour growth rate ratio (experimental / reference)",
        "tgr-difference": "Tumour growth rate difference (experimental - reference)",
        "tgk-reference": "Tumour growth kinetics, reference period",
        "tgk-experimental": "Tumour growth kinetics, experimental period",
        "tgk-ratio": "Tumour growth kinetics ratio",
        # definition verdicts
        "met": "Met",
        "not-met": "Not met",
        "not-evaluable": "Not evaluable",
        # lesion attributes (contract §4, inbound)
        "lesion-role": "Lesion role",
        "target": "Target lesion",
        "non-target": "Non-target lesion",
        "new": "New lesion",
        "non-target-status": "Non-target lesion status",
        "present": "Present",
        "absent": "Absent",
        "unequivocal-progression": "Unequivocal progression",
        "non-target-change": "Non-target change (iRECIST working group grade)",
        "NC": "No change from baseline or nadir",
        "INC": "Increased from baseline or nadir",
        "NCLA": "No change from the last assessment",
        "INCLA": "Further increase from the last assessment",
        "UNE": "Unequivocal increase",
        "injected": "Injected (intratumoral therapy)",
        "irradiated": "Irradiated",
        "equivocal": "Equivocal",
        "nodal": "Nodal",
        "too-small": "Too small to measure",
        "merged-into": "Merged into",
        "fragment": "Fragment",
        "symptom-driven": "Symptom-driven unscheduled assessment",
        "radiopharmaceutical": "Radiopharmaceutical (PET tracer)",
        # tracer-specific uptake (contract §9.6), informational
        "tracer-uptake": "Tracer-specific uptake across lesions",
        "lesion-uptake": "Uptake of one lesion",
        "lesion-count": "Number of lesions with an uptake value",
        "uptake-min": "Lowest lesion uptake",
        "uptake-median": "Median lesion uptake",
        "uptake-max": "Highest lesion uptake",
        "uptake-max-min-ratio": "Highest / lowest lesion uptake",
        "uptake-cv": "Coefficient of variation of lesion uptake",
        "intratumoral-injection": "Intratumoral injection",
    }
)
NEW_LESION_WORDS = frozenset({"present", "absent", "equivocal", "unequivocal-progression"})
"""``TimepointResponse.new_lesions`` values sent as codes; other criterion-specific wordings go as text."""


def extra_component_code(key: str) -> str:
    """Component code for a criterion-specific ``TimepointResponse.extra`` scalar: the key in kebab case, same
    ``{C}/CodeSystem/immunorad`` system (``iupd_confirm_by`` → ``iupd-confirm-by``)."""
    return key.strip().replace("_", "-").replace(" ", "-")


def biomarker_code(code: str) -> str:
    """Observation code for a prognostic biomarker (kinetics spec §6.8), in ``{C}/CodeSystem/immunorad``."""
    return f"biomarker-{code}"


# {C}/CodeSystem/hyperprogression (contract §5; kinetics spec §3.1): definition code → display
HYPERPROGRESSION_DEFINITIONS: Mapping[str, str] = MappingProxyType(
    {
        "champiat-2017": "Champiat 2017 (TGR ratio ≥ 2 with RECIST PD)",
        "saada-bouzid-2017": "Saada-Bouzid 2017 (TGK ratio ≥ 2)",
        "kato-2017": "Kato 2017 (TTF < 2 months, > 50 % increase, pace ratio > 2)",
        "ferrara-2018": "Ferrara 2018 (ΔTGR > 50 with RECIST PD)",
        "kanjanapan-2019": "Kanjanapan 2019 (TGR ratio ≥ 2 with RECIST PD)",
        "lo-russo-2019": "Lo Russo 2019 (clinical-radiological, ≥ 3 of 5)",
        "matos-2020": "Matos 2020 (early tumour burden increase > 40 %)",
        "kim-2019": "Kim 2019 (TGK/TGR ratios and TTF)",
        "kas-2020": "Kas 2020 (RECIST PD and ΔTGR > 100)",
        "fast-progression-oak": "Fast progression, OAK (Gandara 2021)",
        "fast-progression-ferrara-2020": "Fast progression (Ferrara 2020)",
        "early-death": "Early death (Ferrara 2020)",
    }
)
DEFINITION_STATUSES = frozenset({"met", "not-met", "not-evaluable"})


def definition_display(code: str) -> str:
    return HYPERPROGRESSION_DEFINITIONS.get(code, code)


# {C}/CodeSystem/alert (contract §5): Flag / card code → display
ALERT_CODES: Mapping[str, str] = MappingProxyType(
    {
        "hyperprogression": "Hyperprogression",
        "fast-progression": "Fast progression",
        "early-death": "Early death",
        "kinetics-acceleration": "Tumour growth acceleration",
        "hpd-not-evaluable": "Hyperprogression not evaluable",
        "confirmation-due": "Confirmation scan due",
        "pseudoprogression": "Pseudoprogression",
        "dissociated-response": "Dissociated response",
        "abscopal-response": "Abscopal response",
        "irae": "Immune-related adverse event",
        "sarcoid-like-reaction": "Sarcoid-like reaction",
    }
)

# CDS Hooks card indicator per alert code (interop-notes §5.1; the brief of this module): critical for
# hyperprogression and fast progression, warning for irAE, sarcoid-like reaction and a due confirmation scan,
# info for the rest. A code not in the contract's list keeps the severity the rules gave it.
CRITICAL_ALERTS = frozenset({"hyperprogression", "fast-progression"})
WARNING_ALERTS = frozenset({"irae", "sarcoid-like-reaction", "confirmation-due"})
INDICATORS = ("info", "warning", "critical")


def alert_indicator(code: str, severity: str | None = None) -> str:
    """``critical`` | ``warning`` | ``info`` for an alert code (same for the card and the Flag priority)."""
    if code in CRITICAL_ALERTS:
        return "critical"
    if code in WARNING_ALERTS:
        return "warning"
    if code in ALERT_CODES:
        return "info"
    return severity if severity in INDICATORS else "info"


def alert_display(code: str) -> str:
    return ALERT_CODES.get(code, code)
