"""The plain tumour findings (rules/codes.py) and a reported lesion's status (rules/facts.py), used by the SR ingest."""

from __future__ import annotations

import pytest
from pydicom.sr import _cid_dict
from pydicom.sr.codedict import codes as dicom_codes

from rules.codes import DICOM_DCM, PLAIN_TUMOUR_FINDINGS, SNOMED_CT, SOURCES, specific_finding_code
from rules.facts import LesionStatus, reported_status


def _cid_codes(cid: int) -> set[str]:
    found = set()
    for scheme, keywords in _cid_dict.cid_concepts[cid].items():
        for keyword in keywords:
            found.add(getattr(getattr(dicom_codes, scheme), keyword).value)
    return found


def test_each_plain_tumour_finding_is_in_the_dicom_context_group_its_source_names() -> None:
    for coding in PLAIN_TUMOUR_FINDINGS:
        assert coding.usable and coding.sources and all(s in SOURCES for s in coding.sources)
        if coding.system == SNOMED_CT:
            assert coding.code in _cid_codes(7151) and coding.code in _cid_codes(7159), coding
        else:
            assert coding.system == DICOM_DCM and coding.code in _cid_codes(7466), coding


@pytest.mark.parametrize(
    ("code", "kept"),
    [
        (None, None),
        ("52988006", None),  # Lesion
        ("4147007", None),  # Mass
        ("108369006", None),  # Neoplasm
        ("27925004", None),  # Nodule
        ("126040", None),  # reference region
        ("31541009", "31541009"),  # an irAE pattern's code is kept
    ],
)
def test_only_a_specific_finding_code_is_kept(code: str | None, kept: str | None) -> None:
    assert specific_finding_code(code) == kept


@pytest.mark.parametrize(
    ("too_small", "disappeared", "nontarget", "status"),
    [
        (True, True, "absent", LesionStatus.TOO_SMALL),
        (False, True, None, LesionStatus.ABSENT),
        (False, False, "absent", LesionStatus.ABSENT),
        (False, False, "present", LesionStatus.PRESENT),
        (False, False, "unequivocal-progression", LesionStatus.PRESENT),
        (False, False, None, LesionStatus.PRESENT),
    ],
)
def test_reported_status(too_small: bool, disappeared: bool, nontarget: str | None, status: LesionStatus) -> None:
    assert reported_status(too_small=too_small, disappeared=disappeared, nontarget_status=nontarget) is status
