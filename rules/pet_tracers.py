"""PET tracers (radiopharmaceuticals) and the FDG-only criteria (contract §9.3 "PET tracer").

The tracer of a PET timepoint comes from the PET images' Radiopharmaceutical Information Sequence (0054,0016) >
Radiopharmaceutical Code Sequence (0054,0304) or its Radiopharmaceutical (0018,0031) text, or from the FHIR
component ``radiopharmaceutical`` of the scan's PET Observations. When nothing states it, the configured default
(``IMMUNORAD_DEFAULT_PET_TRACER``, ``fdg``) applies and the report says it was *assumed*.

PERCIST 1.0 (Wahl 2009), imPERCIST5 (Ito 2019), PERCIMT (Anwar 2018), iPERCIST (Goldfarb 2019), EORTC 1999
(Young 1999) and the Deauville-based reads of Lugano 2014 / LYRIC 2016 are defined on 18F-FDG uptake
(docs/clinical/criteria-size-pet.md §7, §9: "FDG-avid", SUL normalised to the liver's FDG uptake, the Deauville
5-point scale). For any other tracer they are not evaluable, with the reason naming the tracer; the uptake
values stay in the facts (lesion table, Observations) as values of that tracer.

Codes: DICOM CID 4021 "PET Radiopharmaceutical" as shipped in pydicom 3.0.2's concept dictionary (generated
from DICOM PS3.16 2024c), which is where each code below was checked: SNOMED CT concept ids (scheme SCT) with
the legacy SNOMED-RT ids (scheme SRT) pydicom's ``_snomed_dict`` maps to them, and the DCM / NCIt / UMLS codes
CID 4021 uses where SNOMED CT has none. FDG is SNOMED CT 35321007 "Fluorodeoxyglucose (18-F)" (legacy SRT
C-B1031). The SNOMED CT ids are those of the International Edition as carried by DICOM 2024c; they were not
re-checked in a SNOMED CT browser in this change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

FDG = "fdg"


@dataclass(frozen=True)
class TracerEntry:
    key: str
    name: str
    codes: tuple[tuple[str, str], ...]
    """(scheme designator, code value) pairs; SCT/SRT as DICOM writes them."""
    text: str
    """Regular expression matched (case-insensitive) against the Radiopharmaceutical text."""
    source: str = ""
    """Where the tracer is described (primary source), for tracers recognised by name only."""
    refines: str | None = None
    """The key of a broader, coded entry this one names more precisely (its text wins over that entry's code)."""


TRACERS: tuple[TracerEntry, ...] = (
    TracerEntry(
        FDG, "18F-FDG", (("SCT", "35321007"), ("SRT", "C-B1031")), r"\bfdg\b|fluorodeoxyglucose|fludeoxyglucose"
    ),
    TracerEntry("naf", "18F-sodium fluoride", (("SCT", "129501009"), ("SRT", "C-B1032")), r"sodium fluoride|\bnaf\b"),
    TracerEntry("flt", "18F-FLT (thymidine)", (("SCT", "129502002"), ("SRT", "C-B1036")), r"\bflt\b|fluorothymidine"),
    TracerEntry("fet", "18F-FET", (("SCT", "424708001"), ("SRT", "C-B07E0")), r"\bfet\b|fluoroethyl-?\s*tyrosine"),
    TracerEntry("fmiso", "18F-FMISO", (("SCT", "422598008"), ("SRT", "C-B07E1")), r"fmiso|fluoromisonidazole"),
    TracerEntry("fluorocholine", "18F-fluorocholine", (("SCT", "456992002"), ("SRT", "C-E0273")), r"fluorocholine"),
    TracerEntry("fluciclovine", "18F-fluciclovine", (("SCT", "457000009"), ("SRT", "C-E026A")), r"fluciclovine"),
    TracerEntry("fdopa", "18F-FDOPA", (("SCT", "5811000122108"), ("SRT", "C-E0241")), r"f-?dopa|fluoro-?l?-?dopa"),
    TracerEntry("fes", "18F-fluoroestradiol", (("SCT", "926372005"),), r"\bfes\b|fluoroestradiol"),
    TracerEntry("methionine", "11C-methionine", (("SCT", "129510001"), ("SRT", "C-B103E")), r"methionine"),
    TracerEntry("acetate", "11C-acetate", (("SCT", "129513004"), ("SRT", "C-B1043")), r"acetate"),
    TracerEntry("choline-c11", "11C-choline", (("DCM", "126703"),), r"c-?11.{0,3}choline|choline.{0,3}c-?11"),
    TracerEntry("dotatate", "68Ga-DOTATATE", (("SCT", "724025002"),), r"dotatate"),
    TracerEntry("dotatoc", "68Ga-DOTATOC (edotreotide)", (("UMLS", "C2713594"),), r"dotatoc|edotreotide"),
    TracerEntry("psma-11", "68Ga-PSMA-11", (("NCIt", "C118961"),), r"psma-?11|gozetotide"),
    TracerEntry("psma-1007", "18F-PSMA-1007", (("DCM", "126758"),), r"psma-?1007"),
    TracerEntry("psma-617", "68Ga-PSMA-617", (("DCM", "126759"),), r"psma-?617"),
    TracerEntry("piflufolastat", "18F-piflufolastat (DCFPyL)", (("NCIt", "C116352"),), r"piflufolastat|dcfpyl"),
    TracerEntry("psma", "PSMA ligand", (), r"psma"),
    # Immuno-PET tracers, by name only: neither has a code in DICOM CID 4021 (2024c) nor a SNOMED CT concept that
    # was verified here, so none is given; a header coded DCM 126511 with one of these names is refined to it.
    TracerEntry(
        "zr89-atezolizumab",
        "89Zr-atezolizumab (PD-L1)",
        (),
        r"atezolizumab",
        source="Bensch F et al., 89Zr-atezolizumab imaging as a non-invasive approach to assess clinical response "
        "to PD-L1 blockade in cancer, Nat Med 2018;24:1852-1858",
        refines="zr89-antibody",
    ),
    TracerEntry(
        "zr89-iab22m2c",
        "89Zr-Df-IAB22M2C (CD8)",
        (),
        r"iab22m2c|crefmirlimab",
        source="Farwell MD et al., CD8-targeted PET imaging of tumor-infiltrating T cells in patients with cancer: "
        "a phase I first-in-humans study of 89Zr-Df-IAB22M2C, J Nucl Med 2022;63:720-726",
        refines="zr89-antibody",
    ),
    TracerEntry(
        "zr89-antibody",
        "89Zr-labelled monoclonal antibody (immuno-PET)",
        (("DCM", "126511"),),
        r"89\s*zr|zr-?89|zirconium",
    ),
    TracerEntry("fapi", "FAPI", (), r"fapi"),
)
"""Recognised tracers (DICOM CID 4021 subset); FDG first. A stated tracer outside the list is kept as stated."""

_TEXT = tuple((re.compile(entry.text, re.IGNORECASE), entry) for entry in TRACERS)


@dataclass(frozen=True)
class PetTracer:
    """The tracer of one PET timepoint."""

    key: str
    """``fdg``, another key of ``TRACERS``, or ``other``."""
    name: str
    code: str | None = None
    scheme: str | None = None
    assumed: bool = False
    """Stated nowhere: the configured default was applied (the report says so)."""
    source: str = ""

    @property
    def is_fdg(self) -> bool:
        return self.key == FDG

    def describe(self) -> str:
        coded = f" ({self.scheme} {self.code})" if self.code else ""
        return f"{self.name}{coded}" + (" — assumed: no tracer stated" if self.assumed else "")


def identify(
    *, code: str | None = None, scheme: str | None = None, text: str | None = None, source: str = ""
) -> PetTracer | None:
    """The tracer a coded value or a text names; ``None`` when neither says anything."""
    scheme_key = {"SNM3": "SRT", "SNOMED": "SCT", "http://snomed.info/sct": "SCT"}.get(scheme or "", scheme or "")
    if code:
        for entry in TRACERS:
            if (scheme_key, code) in entry.codes or (not scheme_key and any(code == c for _, c in entry.codes)):
                named = _named(text)
                if named is not None and named.refines == entry.key:
                    entry = named  # e.g. DCM 126511 (89Zr antibody) with the text "89Zr-atezolizumab"
                return PetTracer(entry.key, entry.name, code, scheme_key or None, source=source)
    named = _named(text)
    if named is not None:
        return PetTracer(named.key, named.name, code or None, scheme_key or None, source=source)
    if code or (text and text.strip()):
        return PetTracer(
            "other", (text or "").strip() or f"{scheme_key} {code}", code, scheme_key or None, source=source
        )
    return None


def _named(text: str | None) -> TracerEntry | None:
    """The first entry whose text pattern the Radiopharmaceutical text matches."""
    if not text or not text.strip():
        return None
    return next((entry for pattern, entry in _TEXT if pattern.search(text)), None)


def reference_of(key: str) -> str:
    """The primary source recorded for a tracer key ('' for the DICOM-coded ones and unknown keys)."""
    return next((entry.source for entry in TRACERS if entry.key == key), "")


def default_tracer(key: str) -> PetTracer:
    """The configured default (``IMMUNORAD_DEFAULT_PET_TRACER``) for a PET scan that states no tracer."""
    entry = next((e for e in TRACERS if e.key == key.lower()), None)
    name = entry.name if entry else key
    return PetTracer(entry.key if entry else key.lower(), name, assumed=True, source="default")


def first_stated(tracers: Iterable[PetTracer | None]) -> PetTracer | None:
    return next((t for t in tracers if t is not None), None)


FDG_CRITERIA = ("PERCIST-1.0", "imPERCIST5", "PERCIMT", "iPERCIST", "EORTC-PET", "Lugano-2014", "LYRIC")
"""Criteria defined on 18F-FDG uptake (docs/clinical/criteria-size-pet.md §7.1–§7.3 and §9: PERCIST's SUL and
liver reference, "new FDG-avid lesions", the Deauville scale of Lugano/LYRIC)."""
