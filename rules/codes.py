"""Code tables the rules need, each entry recording where the code comes from.

Like ``fhir.resources`` records the profile version a module was built from, every code here names the
release or artefact it was checked in and its verification tag from
``clinical/criteria-kinetics-irae.md`` §5.5 (``V`` verified, ``S`` secondary only, ``U`` unverified).
Only ``V`` codes are *used*: recognised in input facts and written to outputs. ``S``/``U`` codes are kept
in the tables so that nobody re-adds them by accident, and so that the clinical lead can promote them
after checking (``Coding.usable`` is the one switch).

Tables:

- ``IRAE_PATTERNS``: the irAE imaging patterns of §5.1/§5.5 with their SNOMED CT, MedDRA (CTCAE term),
  ICD-10 (WHO) and OIFM codes; ``pattern_for_code`` maps a reported finding code to its pattern.
- ``SITES``: anatomic sites (SNOMED CT body structures) the rules look for: liver, spleen, bone marrow,
  lymph node, mediastinum, hilum…, with free-text synonyms and whether they are visceral (PS3-CT NPVM).
- ``LOCAL_CODES``: the project's own codes where no standard concept exists (§5.5 "Use local codes in an
  immunorad CodeSystem"; contract §3 private scheme ``99IMMRAD``).

Licences: SNOMED CT needs an affiliate licence outside member countries and MedDRA needs a licence
(§5.5 notes [D/U]); this module only stores identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

# --- code systems --------------------------------------------------------------------------------------

SNOMED_CT = "http://snomed.info/sct"
"""FHIR system URI of SNOMED CT (interop-notes.md §4, e.g. the mCODE location example)."""
MEDDRA = "https://www.meddra.org"
"""Canonical URL of MedDRA in HL7 Terminology (THO CodeSystem ``mdr`` 3.0.0, OID 2.16.840.1.113883.6.163)."""
ICD_10_WHO = "http://hl7.org/fhir/sid/icd-10"
"""FHIR system URI of WHO ICD-10 (HL7 FHIR R4 terminology list)."""
OIFM = "https://github.com/openimagingdata/findingmodels"
"""Open Imaging Finding Models (GAMUTS-based ids, ``defs/*.fm.json``, commit of 2026-04-28) [V:OIFM]."""
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
"""FHIR system URI of the DICOM Controlled Terminology (PS3.16 Annex D, scheme designator ``DCM``)."""
IMMUNORAD_LOCAL = "{C}/CodeSystem/immunorad"
"""The project's CodeSystem. ``{C}`` is ``IMMUNORAD_FHIR_CANONICAL`` (contract §2): the rules are pure and do
not read configuration, so the FHIR mapping substitutes it when it writes a coding."""
DICOM_PRIVATE = "99IMMRAD"
"""Coding scheme designator of the same local codes inside a DICOM SR (contract §3)."""


class Verification(str, Enum):
    """Evidence tag of a code (kinetics spec §0)."""

    VERIFIED = "V"
    """Checked in the primary artefact named in ``sources``."""
    SECONDARY = "S"
    """Seen only in a secondary artefact (e.g. one FHIR value set with a disputed label)."""
    UNVERIFIED = "U"
    """Recollection, not retrieved: kept for reference, never used."""


SOURCES: Mapping[str, str] = {
    "MII-CM": "Medizininformatik-Initiative FHIR ConceptMap 'MII CM Onko Nebenwirkung MedDRA zu SNOMED CT "
    "(CTCAE v4.03)', version 2026.0.3 (automated, spot-curated mapping)",
    "BHF-CL": "BHF Data Science Centre CCU004_03 codelist notebook (ILD and sarcoid codes)",
    "FSH-VS": "public FHIR Shorthand value sets listing 31541009, 30746006, 52324001, 408335007, 50920009, 128241005",
    "SNOMED-CSV": "public SNOMED CT code table listing 37471005",
    "DOID-MAP": "Disease Ontology mapping DOID:841 → SNOMED CT 37471005",
    "MEDDRA-PT-TABLE": "public MedDRA preferred-term table listing 10062767",
    "DRUG-ICD": "CDC NVSR 74-04 drug-induced ICD-10 code list (README of tlcaputi/territories-mortality-stats)",
    "CODELIST-MYO": "public myocarditis codelist (ICD-10 I51.4)",
    "OIFM": "openimagingdata/findingmodels defs/*.fm.json, commit of 2026-04-28",
    "DICOM-2024c": "DICOM PS3.16 2024c as generated into pydicom 3.0.2 sr/_concepts_dict.py — the source "
    "interop-notes.md uses; checked by the rules engineer, not listed in the clinical spec",
    "INTEROP": "interop-notes.md §1.2 'Finding and site examples' (DICOM 2024c via pydicom)",
    "SPEC": "clinical/criteria-kinetics-irae.md §5.5 (no standard concept: local code)",
    "CID-7151": "DICOM PS3.16 2024c CID 7151 Segmentation Property Type and CID 7159 Lesion Segmentation Type, as "
    "generated into pydicom 3.0.2 sr/_cid_dict.py (the four lesion concepts are members of both)",
    "CID-7466": "DICOM PS3.16 2024c CID 7466 PET Region of Interest Measurement, as generated into pydicom 3.0.2 "
    "sr/_cid_dict.py; contract §3 (a group whose Finding is this code is a reference region)",
}


@dataclass(frozen=True)
class Coding:
    """One code with its provenance."""

    system: str
    code: str
    display: str
    verification: Verification
    sources: tuple[str, ...] = ()
    note: str = ""

    @property
    def usable(self) -> bool:
        """Only verified codes are recognised in facts and written to outputs (§5.5, brief)."""
        return self.verification is Verification.VERIFIED

    def as_fhir(self) -> dict[str, str]:
        """A FHIR ``Coding`` as plain data (``Finding.codings`` entries)."""
        return {"system": self.system, "code": self.code, "display": self.display}


def _sct(code: str, display: str, tag: str, *sources: str, note: str = "") -> Coding:
    return Coding(SNOMED_CT, code, display, Verification(tag), tuple(sources), note)


def _mdr(code: str, display: str, tag: str, *sources: str) -> Coding:
    return Coding(MEDDRA, code, display, Verification(tag), tuple(sources))


def _icd(code: str, display: str, tag: str, *sources: str) -> Coding:
    return Coding(ICD_10_WHO, code, display, Verification(tag), tuple(sources))


def _oifm(code: str, display: str) -> Coding:
    return Coding(OIFM, code, display, Verification.VERIFIED, ("OIFM",))


def _local(code: str, display: str) -> Coding:
    return Coding(
        IMMUNORAD_LOCAL,
        code,
        display,
        Verification.VERIFIED,
        ("SPEC",),
        "project code; no standard concept found (§5.5)",
    )


# --- anatomic sites ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """An anatomic site the rules look for, matched by SNOMED CT code or by free-text synonym."""

    key: str
    coding: Coding
    synonyms: tuple[str, ...]
    visceral: bool | None = None
    """Non-pulmonary visceral organ (Dercle 2016 PS3-CT item 3, NPVM)? ``None`` for structures that are not
    a metastatic site on their own. Which organs are 'visceral' is not defined in the spec [D]: solid and
    hollow abdominal organs and the brain are; lung and pleura are pulmonary; nodes, bone, skin, soft
    tissue and muscle are not visceral."""
    thoracic_nodal_station: bool = False
    """Hilar or mediastinal: the stations of a sarcoid-like reaction (§5.1, §5.3 Q1)."""


def _site(
    key: str,
    code: str,
    display: str,
    synonyms: Iterable[str],
    *,
    visceral: bool | None,
    thoracic: bool = False,
    source: str = "DICOM-2024c",
) -> Site:
    return Site(key, _sct(code, display, "V", source), tuple(synonyms), visceral, thoracic)


SITES: tuple[Site, ...] = (
    _site("liver", "10200004", "Liver", ("liver", "hepatic"), visceral=True, source="INTEROP"),
    _site("lung", "39607008", "Lung", ("lung", "pulmonary"), visceral=False, source="INTEROP"),
    _site(
        "lymph-node",
        "59441001",
        "Lymph node",
        ("lymph node", "node", "nodal", "lymph nodes"),
        visceral=False,
        source="INTEROP",
    ),
    _site(
        "hilar-lymph-node",
        "53074004",
        "Hilar lymph node",
        ("hilar lymph node", "hilar node", "hilar"),
        visceral=False,
        thoracic=True,
    ),
    _site(
        "hilum-of-lung",
        "46750007",
        "Hilum of lung",
        ("hilum of lung", "hilum", "pulmonary hilum"),
        visceral=False,
        thoracic=True,
    ),
    _site(
        "mediastinal-lymph-node",
        "62683002",
        "Mediastinal lymph node",
        ("mediastinal lymph node", "mediastinal node", "mediastinal"),
        visceral=False,
        thoracic=True,
    ),
    _site("mediastinum", "72410000", "Mediastinum", ("mediastinum",), visceral=False, thoracic=True),
    _site("spleen", "78961009", "Spleen", ("spleen", "splenic"), visceral=True),
    _site("bone-marrow", "14016003", "Bone marrow", ("bone marrow", "marrow"), visceral=False),
    _site("bone", "272673000", "Bone", ("bone", "osseous", "skeletal"), visceral=False),
    _site("pleura", "3120008", "Pleura", ("pleura", "pleural"), visceral=False),
    _site("adrenal-gland", "23451007", "Adrenal gland", ("adrenal gland", "adrenal"), visceral=True),
    _site("kidney", "64033007", "Kidney", ("kidney", "renal"), visceral=True),
    _site("pancreas", "15776009", "Pancreas", ("pancreas", "pancreatic"), visceral=True),
    _site("brain", "12738006", "Brain", ("brain", "cerebral"), visceral=True),
    _site("peritoneum", "15425007", "Peritoneum", ("peritoneum", "peritoneal"), visceral=True),
    _site("stomach", "69695003", "Stomach", ("stomach", "gastric"), visceral=True),
    _site("colon", "71854001", "Colon", ("colon", "colonic", "large intestine", "bowel"), visceral=True),
    _site("thyroid", "69748006", "Thyroid", ("thyroid",), visceral=True),
    _site("pituitary", "56329008", "Pituitary", ("pituitary", "hypophysis", "sella"), visceral=True),
    _site("heart", "80891009", "Heart", ("heart", "myocardium", "cardiac"), visceral=True),
    _site("skeletal-muscle", "127954009", "Skeletal muscle", ("skeletal muscle", "muscle"), visceral=False),
    _site("joint", "39352004", "Joint", ("joint", "synovium", "periarticular"), visceral=False),
    _site("spinal-cord", "2748008", "Spinal cord", ("spinal cord",), visceral=True),
    _site("skin", "39937001", "Skin", ("skin", "cutaneous", "subcutaneous", "soft tissue"), visceral=False),
)
SITES_BY_KEY: Mapping[str, Site] = {site.key: site for site in SITES}
_SITES_BY_CODE: Mapping[str, Site] = {site.coding.code: site for site in SITES}
_SYNONYMS: tuple[tuple[str, Site], ...] = tuple(
    sorted(((syn, site) for site in SITES for syn in site.synonyms), key=lambda pair: -len(pair[0]))
)


def normalise_code(code: str | None) -> str | None:
    """A bare code from what adapters may pass: ``"31541009"``, ``"SCT:31541009"``,
    ``"http://snomed.info/sct|31541009"``, ``"99IMMRAD:hypophysitis"``."""
    if code is None:
        return None
    text = str(code).strip()
    if "|" in text:
        text = text.rsplit("|", 1)[1]
    elif re.match(r"^(SCT|SNOMED|SRT|99IMMRAD|IMMUNORAD|immunorad|OIFM)[:#]", text, flags=re.IGNORECASE):
        text = re.split(r"[:#]", text, maxsplit=1)[1]
    elif "#" in text:
        text = text.rsplit("#", 1)[1]
    return text.strip() or None


def site_for(organ: str | None) -> Site | None:
    """The site an organ fact names: its SNOMED CT code, else the most specific free-text synonym
    (``"right hilar lymph node"`` → hilar lymph node, not lymph node)."""
    if not organ:
        return None
    code = normalise_code(organ)
    if code is not None and code in _SITES_BY_CODE and _SITES_BY_CODE[code].coding.usable:
        return _SITES_BY_CODE[code]
    text = " " + re.sub(r"[^a-z]+", " ", organ.lower()).strip() + " "
    for synonym, site in _SYNONYMS:
        if f" {synonym} " in text:
            return site
    return None


# --- plain tumour findings (contract §3) ---------------------------------------------------------------

PLAIN_TUMOUR_FINDINGS: tuple[Coding, ...] = (
    _sct("52988006", "Lesion", "V", "INTEROP", "CID-7151"),
    _sct("4147007", "Mass", "V", "INTEROP", "CID-7151"),
    _sct("108369006", "Neoplasm", "V", "INTEROP", "CID-7151", note="'Tumor' in some other CIDs (e.g. CID 8134)"),
    _sct("27925004", "Nodule", "V", "INTEROP", "CID-7151"),
    Coding(DICOM_DCM, "126040", "Background for Lesion to Background SUV Ratio", Verification.VERIFIED, ("CID-7466",)),
)
"""The SR Finding (121071, DCM) values that only say "a lesion" (SNOMED CT Lesion, Mass, Neoplasm, Nodule) or
mark a PET reference region (DCM 126040): they carry no finding of their own. Any other coded Finding is kept
with the measurement (e.g. an irAE pattern, ``pattern_for_code``)."""
_PLAIN_TUMOUR_FINDING_CODES = frozenset(c.code for c in PLAIN_TUMOUR_FINDINGS)


def specific_finding_code(code: str | None) -> str | None:
    """The finding code worth keeping with a measurement: ``None`` for no code and for a plain tumour finding or a
    reference region (``PLAIN_TUMOUR_FINDINGS``), else the code as given."""
    return None if code is None or code in _PLAIN_TUMOUR_FINDING_CODES else code


# --- irAE patterns (§5.1, §5.5) ------------------------------------------------------------------------


@dataclass(frozen=True)
class IraePattern:
    """One irAE imaging pattern (or immune 'flare' confounder) with its codes and organ."""

    key: str
    """The pattern as the rule file names it (domain of ``irAE-imaging`` tables)."""
    term: str
    snomed: tuple[Coding, ...] = ()
    meddra: tuple[Coding, ...] = ()
    icd10: tuple[Coding, ...] = ()
    other: tuple[Coding, ...] = ()
    local: Coding | None = None
    organ: str | None = None
    """Key into ``SITES``: the organ the pattern affects (pattern → organ)."""
    is_irae: bool = True
    """False for immune flare confounders that are not adverse events (§4.5: draining nodes, marrow uptake)."""

    @property
    def input_codes(self) -> tuple[Coding, ...]:
        """Every usable code by which a reader may report this pattern."""
        codes = [c for c in (*self.snomed, *self.other) if c.usable]
        if self.local is not None:
            codes.append(self.local)
        return tuple(codes)

    @property
    def primary_coding(self) -> Coding:
        """The coding an irAE Flag carries as its second coding (contract §5: SNOMED CT where the spec has one)."""
        for coding in self.snomed:
            if coding.usable:
                return coding
        if self.local is None:
            raise LookupError(f"{self.key} has neither a verified SNOMED CT code nor a local code")
        return self.local


IRAE_PATTERNS: tuple[IraePattern, ...] = (
    IraePattern(
        "sarcoid-like",
        "Sarcoid-like reaction (granulomatosis, hilar/mediastinal lymphadenopathy)",
        snomed=(
            _sct("31541009", "Sarcoidosis", "V", "FSH-VS"),
            _sct("24369008", "Pulmonary sarcoidosis", "V", "BHF-CL"),
            _sct("52324001", "Mediastinal lymphadenopathy", "V", "FSH-VS"),
        ),
        icd10=(_icd("D86", "Sarcoidosis", "U"),),
        other=(
            _oifm("OIFM_GMTS_015734", "Mediastinal and/or hilar lymph node enlargement"),
            _oifm("OIFM_GMTS_015759", "Bilateral hilar enlargement"),
        ),
        organ="hilar-lymph-node",
    ),
    IraePattern(
        "lymphadenopathy",
        "Lymphadenopathy (sarcoid-like when hilar/mediastinal)",
        snomed=(_sct("30746006", "Lymphadenopathy", "V", "FSH-VS"),),
        organ="lymph-node",
    ),
    IraePattern(
        "pneumonitis",
        "Pneumonitis",
        snomed=(
            _sct("205237003", "Pneumonitis", "V", "MII-CM"),
            _sct("427046006", "Drug-induced pneumonitis", "V", "BHF-CL"),
        ),
        meddra=(_mdr("10035742", "Pneumonitis", "V", "MII-CM"),),
        icd10=(
            _icd("J70.2", "Acute drug-induced interstitial lung disorders", "V", "DRUG-ICD"),
            _icd("J70.3", "Chronic drug-induced interstitial lung disorders", "V", "DRUG-ICD"),
            _icd("J70.4", "Drug-induced interstitial lung disorders, unspecified", "V", "DRUG-ICD"),
        ),
        organ="lung",
    ),
    IraePattern(
        "organising-pneumonia",
        "Organising pneumonia (COP-like pneumonitis)",
        snomed=(
            _sct("719218000", "Cryptogenic organizing pneumonia", "V", "BHF-CL"),
            _sct("129458007", "Bronchiolitis obliterans organizing pneumonia", "V", "BHF-CL"),
        ),
        organ="lung",
    ),
    IraePattern(
        "nsip",
        "Nonspecific interstitial pneumonia (NSIP-like pneumonitis)",
        snomed=(_sct("129452008", "Nonspecific interstitial pneumonia", "V", "BHF-CL"),),
        organ="lung",
    ),
    IraePattern(
        "hp-like",
        "Hypersensitivity-pneumonitis-like pneumonitis",
        snomed=(_sct("37471005", "Extrinsic allergic alveolitis", "V", "SNOMED-CSV", "DOID-MAP"),),
        other=(_oifm("OIFM_GMTS_015054", "Hypersensitivity pneumonitis"),),
        organ="lung",
    ),
    IraePattern(
        "aip-ards",
        "Acute interstitial pneumonia / ARDS pattern",
        snomed=(
            _sct("236302005", "Acute interstitial pneumonia", "V", "BHF-CL"),
            _sct("67782005", "Acute respiratory distress syndrome", "V", "MII-CM"),
        ),
        meddra=(_mdr("10001409", "Adult respiratory distress syndrome", "V", "MII-CM"),),
        organ="lung",
    ),
    IraePattern(
        "drug-induced-ild",
        "Drug-induced interstitial lung disorder (umbrella)",
        snomed=(
            _sct("196051003", "Drug-induced interstitial lung disorder", "V", "BHF-CL"),
            _sct("233703007", "Interstitial lung disease", "V", "BHF-CL"),
        ),
        icd10=(_icd("J70.4", "Drug-induced interstitial lung disorders, unspecified", "V", "DRUG-ICD"),),
        organ="lung",
    ),
    IraePattern(
        "colitis",
        "Colitis / enterocolitis",
        snomed=(_sct("64226004", "Colitis", "V", "MII-CM"),),
        meddra=(_mdr("10009887", "Colitis", "V", "MII-CM"),),
        icd10=(_icd("K52.1", "Toxic gastroenteritis and colitis", "U"),),
        other=(_oifm("OIFM_GMTS_022473", "Colitis"),),
        organ="colon",
    ),
    IraePattern(
        "hepatitis",
        "Hepatitis",
        snomed=(
            _sct(
                "128241005",
                "Hepatitis",
                "S",
                "FSH-VS",
                note="public repositories disagree on its label (spec §5.5, ledger §9: not verified); "
                "DICOM 2024c CID 12325 lists it as 'Hepatitis' with FSN 'Inflammatory disease of "
                "liver' — clinical lead to decide before it is used",
            ),
            _sct("408335007", "Autoimmune hepatitis", "V", "FSH-VS"),
        ),
        icd10=(_icd("K71", "Toxic liver disease", "U"),),
        organ="liver",
    ),
    IraePattern(
        "pancreatitis",
        "Pancreatitis",
        snomed=(_sct("75694006", "Pancreatitis", "V", "MII-CM"),),
        meddra=(_mdr("10033645", "Pancreatitis", "V", "MII-CM"),),
        icd10=(_icd("K85.3", "Drug-induced acute pancreatitis", "V", "DRUG-ICD"),),
        other=(_oifm("OIFM_GMTS_022466", "Acute pancreatitis"),),
        organ="pancreas",
    ),
    IraePattern(
        "thyroiditis",
        "Thyroiditis / thyroid dysfunction",
        snomed=(
            _sct("82119001", "Thyroiditis", "U", note="spec §5.5 [U]; ledger §9: not verified"),
            _sct("40930008", "Hypothyroidism", "V", "MII-CM"),
        ),
        meddra=(_mdr("10021114", "Hypothyroidism", "V", "MII-CM"),),
        icd10=(_icd("E06.4", "Drug-induced thyroiditis", "V", "DRUG-ICD"),),
        other=(_oifm("OIFM_GMTS_022574", "Thyroid dysfunction"),),
        local=_local("thyroiditis", "Thyroiditis (imaging pattern)"),
        organ="thyroid",
    ),
    IraePattern(
        "hypophysitis",
        "Hypophysitis",
        meddra=(_mdr("10062767", "Hypophysitis", "V", "MEDDRA-PT-TABLE"),),
        icd10=(_icd("E23.1", "Drug-induced hypopituitarism", "V", "DRUG-ICD"),),
        other=(_oifm("OIFM_GMTS_022572", "Hypopituitarism"),),
        local=_local("hypophysitis", "Hypophysitis (no SNOMED CT concept found, §5.5)"),
        organ="pituitary",
    ),
    IraePattern(
        "adrenal-insufficiency",
        "Adrenal insufficiency",
        snomed=(_sct("386584007", "Adrenal cortical hypofunction", "V", "MII-CM"),),
        meddra=(_mdr("10001367", "Adrenal insufficiency", "V", "MII-CM"),),
        icd10=(_icd("E27.3", "Drug-induced adrenocortical insufficiency", "V", "DRUG-ICD"),),
        organ="adrenal-gland",
    ),
    IraePattern(
        "myositis",
        "Myositis",
        snomed=(_sct("26889001", "Myositis", "V", "MII-CM"),),
        meddra=(_mdr("10028653", "Myositis", "V", "MII-CM"),),
        icd10=(_icd("M60.8", "Other myositis", "U"), _icd("M60.9", "Myositis, unspecified", "U")),
        organ="skeletal-muscle",
    ),
    IraePattern(
        "arthritis",
        "Arthritis / synovitis",
        snomed=(_sct("3723001", "Arthritis", "V", "MII-CM"),),
        meddra=(_mdr("10003246", "Arthritis", "V", "MII-CM"),),
        icd10=(_icd("M13", "Other arthritis", "U"),),
        other=(_oifm("OIFM_GMTS_031479", "Arthritis"),),
        organ="joint",
    ),
    IraePattern(
        "myocarditis",
        "Myocarditis",
        snomed=(_sct("50920009", "Myocarditis", "V", "MII-CM", "FSH-VS"),),
        meddra=(_mdr("10028606", "Myocarditis", "V", "MII-CM"),),
        icd10=(_icd("I51.4", "Myocarditis, unspecified", "V", "CODELIST-MYO"), _icd("I40", "Acute myocarditis", "U")),
        organ="heart",
    ),
    IraePattern(
        "myelitis",
        "Myelitis",
        snomed=(_sct("41370002", "Myelitis", "V", "MII-CM"),),
        meddra=(_mdr("10028524", "Myelitis", "V", "MII-CM"),),
        icd10=(
            _icd("G37.3", "Acute transverse myelitis", "U"),
            _icd("G04.9", "Encephalitis, myelitis, unspecified", "U"),
        ),
        organ="spinal-cord",
    ),
    IraePattern(
        "draining-node",
        "Node in the drainage basin of an injected or irradiated lesion (flare, §4.5/Q9)",
        local=_local("draining-node", "Reactive node in the drainage basin of a locally treated lesion"),
        organ="lymph-node",
        is_irae=False,
    ),
    IraePattern(
        "marrow-spleen-uptake",
        "Diffuse bone-marrow or splenic FDG uptake (immune activation, §4.5/Q8)",
        local=_local("marrow-spleen-uptake", "Diffuse bone-marrow or splenic FDG uptake"),
        organ="bone-marrow",
        is_irae=False,
    ),
)
IRAE_PATTERNS_BY_KEY: Mapping[str, IraePattern] = {p.key: p for p in IRAE_PATTERNS}
PATTERN_KEYS: tuple[str, ...] = tuple(p.key for p in IRAE_PATTERNS)
NO_PATTERN = "none"
"""The pattern of an ordinary finding (no irAE code): §5.3 Q10."""

_PATTERN_BY_CODE: dict[str, IraePattern] = {}
for _pattern in IRAE_PATTERNS:
    for _coding in _pattern.input_codes:
        if _coding.code in _PATTERN_BY_CODE:  # pragma: no cover - table integrity, checked by tests
            raise ValueError(f"code {_coding.code} is listed for two irAE patterns")
        _PATTERN_BY_CODE[_coding.code] = _pattern

LOCAL_CODES: Mapping[str, Coding] = {p.local.code: p.local for p in IRAE_PATTERNS if p.local is not None}
"""Local finding codes a reader may send (``(code, 99IMMRAD, meaning)`` in SR, ``{C}/CodeSystem/immunorad``
in FHIR) for patterns with no verified standard concept."""


def pattern_for_code(code: str | None) -> IraePattern | None:
    """The irAE pattern a reported finding code names, or ``None`` (a tumour, or a code we do not use).

    Unverified codes (thyroiditis 82119001, hepatitis 128241005, ICD-10 [U]) are deliberately not
    recognised: an unrecognised finding counts as an ordinary lesion (§5.3 Q10), the safe default.
    """
    bare = normalise_code(code)
    if bare is None:
        return None
    return _PATTERN_BY_CODE.get(bare) or _PATTERN_BY_CODE.get(bare.lower())


def unusable_codes() -> tuple[Coding, ...]:
    """Codes kept for reference only (S/U): the list the clinical lead should check."""
    out: list[Coding] = []
    for pattern in IRAE_PATTERNS:
        out.extend(c for c in (*pattern.snomed, *pattern.meddra, *pattern.icd10, *pattern.other) if not c.usable)
    return tuple(out)


ICD10_ADVERSE_EFFECT_ANTINEOPLASTIC = Coding(
    "http://hl7.org/fhir/sid/icd-10-cm",
    "T45.1X5A",
    "Adverse effect of antineoplastic and immunosuppressive drugs",
    Verification.UNVERIFIED,
    (),
    "ICD-10-CM, spec §5.5 [U]: not used",
)


@dataclass(frozen=True)
class CodeTableInfo:
    """Where the tables come from, for the assessment's provenance."""

    spec: str = (
        "clinical/criteria-kinetics-irae.md §5.5 (verification sources MII-CM 2026.0.3, BHF-CL, FSH-VS, DRUG-ICD, OIFM)"
    )
    sites: str = "DICOM PS3.16 2024c (pydicom 3.0.2) body-structure codes"
    sources: Mapping[str, str] = field(default_factory=lambda: dict(SOURCES))


CODE_TABLES = CodeTableInfo()
