"""The coded vocabulary of a TID 1500 Measurement Report as this project reads and writes it.

TID 1500 / 1501 / 1410 / 1411 / 1502 / 300 / 4019 concepts, the values of CIDs 6145, 6144, 6146, 7464 and 7466 we
use, and the project's private ``99IMMRAD`` codes (contract §3). Unless marked otherwise every code is in pydicom
3.0.2's DICOM 2024c concept dictionary (``pydicom.sr.codedict.codes``); the pydicom keyword is given where it is not
obvious. Concepts are compared **by code** (``Code`` equality maps legacy SNOMED-RT (SRT) codes to SNOMED CT (SCT)),
never by Code Meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from dicom_listener.tid1500.model import Coded

IMAGING_MEASUREMENT_REPORT = codes.DCM.ImagingMeasurementReport
"""(126000, DCM) TID 1500 root, CID 7021."""
IMAGING_MEASUREMENTS = codes.DCM.ImagingMeasurements
"""(126010, DCM)."""
MEASUREMENT_GROUP = codes.DCM.MeasurementGroup
"""(125007, DCM)."""
TRACKING_IDENTIFIER = codes.DCM.TrackingIdentifier
"""(112039, DCM) human-readable lesion name; OHIF puts its tool name here."""
TRACKING_UNIQUE_IDENTIFIER = codes.DCM.TrackingUniqueIdentifier
"""(112040, DCM) the lesion's persistent identity, except where the producer regenerates it (OHIF)."""
FINDING = codes.DCM.Finding
"""(121071, DCM)."""
FINDING_SITE = codes.SCT.FindingSite
"""(363698007, SCT); legacy (G-C0E3, SRT) compares equal through pydicom's SRT→SCT mapping."""
COMMENT = codes.DCM.Comment
"""(121106, DCM) TEXT; current OHIF (@cornerstonejs/adapters) writes the lesion label here."""
DERIVATION = codes.DCM.Derivation
"""(121401, DCM) NUM modifier, CID 7464."""
TIME_POINT = Code("C2348792", "UMLS", "Time Point")
"""TID 1502 row 1. Not in pydicom's dictionary; the code is the one highdicom's ``TimePointContext``
and DCMTK write (interop-notes §1.1)."""
TIME_POINT_TYPE = codes.DCM.TimePointType
"""(126072, DCM), value from CID 6146."""
TIME_POINT_ORDER = codes.DCM.TimePointOrder
"""(126073, DCM) NUM; highdicom's ``get_measurements()`` without ``name=`` returns it too."""

# TID 4019 Algorithm Identification (DICOM PS3.16): Algorithm Name, Version, Parameters (DCM 111001, 111003, 111002).
ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
ALGORITHM_PARAMETERS = Code("111002", "DCM", "Algorithm Parameters")

LONG_AXIS = codes.SCT.LongAxis
"""(103339001, SCT); legacy G-A185 (SRT)."""
SHORT_AXIS = codes.SCT.ShortAxis
"""(103340004, SCT); legacy G-A186 (SRT)."""
DIAMETER = codes.SCT.Diameter
"""(81827009, SCT); legacy M-02550 (SRT)."""
LENGTH = codes.SCT.Length
"""(410668003, SCT); legacy G-D7FE (SRT). OHIF's Length tool; read as the long axis when there is none."""

SUVBW = codes.DCM.Suvbw
"""(126401, DCM) SUVbw (pydicom keyword ``Suvbw``)."""
SUVLBM = codes.DCM.Suvlbm
"""(126402, DCM) SUVlbm, PERCIST's SUL."""
METABOLIC_VOLUME = codes.DCM.MetabolicVolume
"""(126032, DCM)."""
TOTAL_LESION_GLYCOLYSIS = codes.DCM.TotalLesionGlycolysis
"""(126033, DCM)."""
BACKGROUND_FOR_SUV_RATIO = codes.DCM.BackgroundForLesionToBackgroundSUVRatio
"""(126040, DCM) as the Finding: the group is a reference region, never a lesion."""
MAXIMUM = codes.SCT.Maximum
"""(56851009, SCT) Derivation value, CID 7464."""
PEAK_VALUE_WITHIN_ROI = codes.DCM.PeakValueWithinROI
"""(126031, DCM) Derivation value, CID 7464."""
MEAN = codes.SCT.Mean
"""(373098007, SCT) Derivation value, CID 7464 (pydicom also names it ``Averaged``)."""
STANDARD_DEVIATION = codes.SCT.StandardDeviation
"""(386136009, SCT) Derivation value, CID 7464."""

BASELINE_CATEGORY = codes.DCM.BaselineCategory
"""(112016, DCM), value from CID 6145."""
TARGET_LESION_AT_BASELINE = codes.DCM.TargetLesionAtBaseline
"""(112074, DCM)."""
NON_TARGET_LESION_AT_BASELINE = codes.DCM.NonTargetLesionAtBaseline
"""(112075, DCM)."""
NON_LESION_AT_BASELINE = codes.DCM.NonLesionAtBaseline
"""(112076, DCM)."""
CURRENT_RESPONSE = codes.DCM.CurrentResponse
"""(112048, DCM), value from CID 6144."""
NON_TARGET_LESION_COMPLETE_RESPONSE = codes.DCM.NonTargetLesionCompleteResponse
"""(112045, DCM) → ``absent``."""
NON_TARGET_LESION_INCOMPLETE_RESPONSE_OR_SD = codes.DCM.NonTargetLesionIncompleteResponseOrStableDisease
"""(112046, DCM) → ``present``."""
NON_TARGET_LESION_PROGRESSIVE_DISEASE = codes.DCM.NonTargetLesionProgressiveDisease
"""(112047, DCM) → ``unequivocal-progression``."""

YES = codes.SCT.Yes
"""(373066001, SCT) value of the 99IMMRAD booleans."""
NO = codes.SCT.No
"""(373067005, SCT) value of the 99IMMRAD booleans."""
LYMPH_NODE = codes.SCT.LymphNode
"""(59441001, SCT); legacy T-C4000 (SRT). As a site or finding it makes the lesion nodal."""
LIVER = codes.SCT.Liver
"""(10200004, SCT) PERCIST reference."""
SPLEEN = codes.SCT.Spleen
"""(78961009, SCT) SLR reference."""
BONE_MARROW = codes.SCT.BoneMarrow
"""(14016003, SCT) BLR reference."""
AORTA = codes.SCT.Aorta

UID_TEXT = re.compile(r"[0-9]+(\.[0-9]+)+")
"""A UID written as text (e.g. a merged-into TEXT item naming a Tracking UID)."""

IMMRAD_SCHEME = "99IMMRAD"
"""The project's private coding scheme (contract §3); declared in the SR's Coding Scheme
Identification Sequence by whoever writes it."""
IMMRAD_NON_TARGET_CHANGE = Code("non-target-change", IMMRAD_SCHEME, "Non-target change")
"""iRECIST working group change grade of a non-target lesion or a non-measurable new lesion."""
IMMRAD_INJECTED = Code("injected", IMMRAD_SCHEME, "Injected (intratumoral therapy)")
IMMRAD_IRRADIATED = Code("irradiated", IMMRAD_SCHEME, "Irradiated")
IMMRAD_EQUIVOCAL = Code("equivocal", IMMRAD_SCHEME, "Equivocal new lesion")
IMMRAD_TOO_SMALL = Code("too-small", IMMRAD_SCHEME, "Present but too small to measure")
IMMRAD_NODAL = Code("nodal", IMMRAD_SCHEME, "Nodal lesion")
IMMRAD_MERGED_INTO = Code("merged-into", IMMRAD_SCHEME, "Merged into")
"""Contract §9.3: UIDREF or TEXT naming the lesion (Tracking UID, or label) a lesion coalesced with."""
IMMRAD_FRAGMENT = Code("fragment", IMMRAD_SCHEME, "Fragment")
"""Contract §9.3: Yes (SCT 373066001) on each group of a lesion that split into fragments."""
NON_TARGET_CHANGE_VALUES: Mapping[str, Code] = {
    "NC": Code("NC", IMMRAD_SCHEME, "No change from baseline or nadir"),
    "INC": Code("INC", IMMRAD_SCHEME, "Increased from baseline or nadir"),
    "NCLA": Code("NCLA", IMMRAD_SCHEME, "No change from last assessment"),
    "INCLA": Code("INCLA", IMMRAD_SCHEME, "Further increase from last assessment"),
    "UNE": Code("UNE", IMMRAD_SCHEME, "Unequivocal increase"),
}
"""Values of ``(non-target-change, 99IMMRAD)`` (``clinical/criteria-size-pet.md`` §2.2)."""

# Lookup tables: coded value -> what the reader keeps.
BASELINE_CATEGORIES = (
    (TARGET_LESION_AT_BASELINE, "target"),
    (NON_TARGET_LESION_AT_BASELINE, "non-target"),
    (NON_LESION_AT_BASELINE, "non-lesion"),
)
NONTARGET_STATUSES = (
    (NON_TARGET_LESION_COMPLETE_RESPONSE, "absent"),
    (NON_TARGET_LESION_INCOMPLETE_RESPONSE_OR_SD, "present"),
    (NON_TARGET_LESION_PROGRESSIVE_DISEASE, "unequivocal-progression"),
)
REFERENCE_REGIONS = (
    (LIVER, "liver"),
    (SPLEEN, "spleen"),
    (BONE_MARROW, "bone-marrow"),
    (AORTA, "blood-pool"),
)
SUV_DERIVATIONS = ((MAXIMUM, "max"), (PEAK_VALUE_WITHIN_ROI, "peak"), (MEAN, "mean"), (STANDARD_DEVIATION, "sd"))
SUV_DERIVATION_NAMES = {"max": "Maximum", "peak": "Peak", "mean": "Mean", "sd": "Standard Deviation"}
SIZE_CONCEPTS = ((LONG_AXIS, "long"), (SHORT_AXIS, "short"), (DIAMETER, "diameter"), (LENGTH, "length"))
SIZE_NAMES = {"long": "Long Axis", "short": "Short Axis", "diameter": "Diameter", "length": "Length"}

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f]")
MAX_CODE_VALUE = 64
"""Long Code Value (UC) may be longer, but no code we read or store is: longer values are invalid here."""


def plain(concept: Dataset) -> Code:
    """A coded concept as a pydicom ``Code`` without scheme version, so that ``==`` compares value and
    scheme only (``Code.__eq__`` also compares versions, which producers fill inconsistently)."""
    value = concept.get("CodeValue") or concept.get("LongCodeValue") or concept.get("URNCodeValue") or ""
    return Code(str(value), str(concept.get("CodingSchemeDesignator", "")), str(concept.get("CodeMeaning", "")))


def usable_code(code: Code) -> bool:
    return (
        0 < len(code.value) <= MAX_CODE_VALUE
        and len(code.scheme_designator) <= MAX_CODE_VALUE
        and not CONTROL_CHARACTERS.search(code.value + code.scheme_designator)
    )


def coded(code: Code) -> Coded:
    return Coded(value=code.value, scheme=code.scheme_designator, meaning=code.meaning)


def lookup(code: Code, table: Iterable[tuple[Code, str]]) -> str | None:
    for candidate, result in table:
        if code == candidate:
            return result
    return None
