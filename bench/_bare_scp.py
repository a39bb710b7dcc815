"""The toolkit floor for the C-STORE benchmarks: a pynetdicom SCP configured like ours (every storage class
and transfer syntax, unlimited PDU) whose handler only takes the received bytes (``encoded_dataset()``, as
our listener does) and answers 0x0000. No parsing, no database: what pynetdicom itself costs per instance.
With ``--write DIR`` it also writes each instance to a file in DIR (no fsync, as DCMTK storescp).

    python -m bench._bare_scp PORT [--write DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification


def handle(event, folder: Path | None):
    data = event.encoded_dataset()
    if folder is not None:
        with open(folder / f"{event.request.AffectedSOPInstanceUID}.dcm", "wb") as handle:
            handle.write(data)
    return 0x0000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--write", type=Path, help="write each instance to a file in this folder")
    args = parser.parse_args()
    ae = AE(ae_title="IMMUNORAD")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.maximum_pdu_size = 0
    ae.maximum_associations = 16
    ae.start_server(("127.0.0.1", args.port), block=True, evt_handlers=[(evt.EVT_C_STORE, handle, [args.write])])


if __name__ == "__main__":
    main()
