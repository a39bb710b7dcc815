"""IHE IOCM rejection notes: a Key Object Selection (KOS) document whose title rejects the instances it lists.

IHE Radiology TF, Imaging Object Change Management (RAD-66 Rejection Note Stored): a PACS or modality that takes
back instances (a wrong patient, a bad acquisition, a measurement report in error) sends a KOS whose Concept Name
(the document title, CID 7011) is one of the four codes below and whose Current Requested Procedure Evidence
Sequence lists every rejected instance. A receiver must stop using them. The codes are DICOM PS3.16 DCM codes
(checked against pydicom's code dictionary, `pydicom.sr.codedict.codes.DCM`).

A KOS with any other title (key images "Of Interest", a manifest) is no rejection note: ``read_rejection_note``
returns None and the instance is stored like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicom_listener.errors import CannotUnderstand

KEY_OBJECT_SELECTION_STORAGE = "1.2.840.10008.5.1.4.1.1.88.59"
REJECTION_TITLES: Mapping[str, str] = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}
"""DCM code → meaning of the KOS document titles that reject instances (IOCM)."""


@dataclass(frozen=True)
class RejectionNote:
    reason: str
    """The title's DCM code (a key of ``REJECTION_TITLES``)."""
    rejected: tuple[str, ...]
    """SOP Instance UIDs of the rejected instances, in the note's order, without repeats."""

    @property
    def meaning(self) -> str:
        return REJECTION_TITLES[self.reason]


def read_rejection_note(ds: Dataset) -> RejectionNote | None:
    """The rejection note ``ds`` is, or None when it is not one (not a KOS, or a KOS with another title).

    A rejection note that lists no instance cannot be acted on: ``CannotUnderstand`` (a 0xC000-range status)."""
    if str(ds.get("SOPClassUID", "") or "") != KEY_OBJECT_SELECTION_STORAGE:
        return None
    titles = ds.get("ConceptNameCodeSequence") or []
    if not titles:
        return None
    title = titles[0]
    code = str(title.get("CodeValue", "") or "").strip()
    if str(title.get("CodingSchemeDesignator", "") or "").strip() != "DCM" or code not in REJECTION_TITLES:
        return None
    rejected: dict[str, None] = {}
    for study in ds.get("CurrentRequestedProcedureEvidenceSequence") or []:
        for series in study.get("ReferencedSeriesSequence") or []:
            for item in series.get("ReferencedSOPSequence") or []:
                uid = str(item.get("ReferencedSOPInstanceUID", "") or "").strip()
                if uid:
                    rejected[uid] = None
    if not rejected:
        raise CannotUnderstand(
            f"rejection note ({code}, DCM, {REJECTION_TITLES[code]!r}) lists no instance in its "
            "Current Requested Procedure Evidence Sequence"
        )
    return RejectionNote(code, tuple(rejected))
