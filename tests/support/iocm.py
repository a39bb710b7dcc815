"""IHE IOCM rejection notes for the tests, written by highdicom (a Key Object Selection document whose title
rejects the instances it references)."""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code


def rejection_note(title: Code, *objects: Dataset) -> hd.ko.KeyObjectSelectionDocument:
    """A KOS titled ``title`` referencing ``objects`` (also its evidence), in a series of its own."""
    content = hd.ko.KeyObjectSelection(document_title=title, referenced_objects=list(objects))
    return hd.ko.KeyObjectSelectionDocument(
        evidence=list(objects),
        content=content,
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="PACS",
    )
