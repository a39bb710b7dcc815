"""IOCM rejection notes as highdicom writes them (Key Object Selection documents): the four rejecting titles are
read with the instances they list; a KOS with another title is no rejection note; one that lists nothing is
refused (0xC000 range)."""

from __future__ import annotations

import pytest
from pydicom.sr.codedict import codes

from dicom_listener.errors import CannotUnderstand
from dicom_listener.rejection import REJECTION_TITLES, read_rejection_note
from service.demo.cohort import case_datasets
from tests.rules.cases import E1
from tests.support.iocm import rejection_note


@pytest.fixture(scope="module")
def tp1():
    """E1's TP1: the CT image and its TID 1500 SR."""
    image, report = case_datasets(E1, "MRN-KOS")[2:4]
    assert report.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34" and image.StudyDate == report.StudyDate == "20240311"
    return image, report


@pytest.mark.parametrize(
    "title",
    [
        codes.DCM.RejectedForQualityReasons,
        codes.DCM.RejectedForPatientSafetyReasons,
        codes.DCM.IncorrectModalityWorklistEntry,
        codes.DCM.DataRetentionPolicyExpired,
    ],
    ids=lambda c: c.value,
)
def test_the_rejecting_titles(tp1, title):
    image, report = tp1
    note = read_rejection_note(rejection_note(title, report, image))
    assert note is not None
    assert note.reason == title.value and note.meaning == REJECTION_TITLES[title.value] == title.meaning
    assert set(note.rejected) == {report.SOPInstanceUID, image.SOPInstanceUID}


def test_other_titles_and_other_objects_are_no_rejection(tp1):
    image, report = tp1
    assert read_rejection_note(rejection_note(codes.DCM.OfInterest, image)) is None  # key images (113000)
    assert read_rejection_note(report) is None and read_rejection_note(image) is None


def test_a_rejection_listing_nothing_is_refused(tp1):
    image, _ = tp1
    note = rejection_note(codes.DCM.RejectedForQualityReasons, image)
    del note.CurrentRequestedProcedureEvidenceSequence
    with pytest.raises(CannotUnderstand, match="lists no instance"):
        read_rejection_note(note)
