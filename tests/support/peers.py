"""pynetdicom as a sending peer, including for malformed data sets that DCMTK refuses to read."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE, _config


def send_raw(host: str, port: int, path: Path, *, aec: str = "IMMUNORAD", aet: str = "PYNETDICOM") -> int:
    """C-STORE a Part 10 file byte for byte after its File Meta (even a truncated data set); the status."""
    meta = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"], force=True)
    sop_class = meta.file_meta.MediaStorageSOPClassUID
    ae = AE(ae_title=aet)
    ae.add_requested_context(sop_class, meta.file_meta.TransferSyntaxUID)
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # stream the file's data set as is, no decode/re-encode
    try:
        association = ae.associate(host, port, ae_title=aec)
        assert association.is_established, "association refused"
        try:
            status = association.send_c_store(path)
        finally:
            association.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    return int(status.Status) if status else -1
