"""The toolkit floor for the C-STORE benchmark: a pynetdicom SCP configured like ours (every storage class
and transfer syntax, unlimited PDU) whose handler only takes the received bytes (``encoded_dataset()``, as
our listener does) and answers 0x0000. No parsing, no database: what pynetdicom itself costs per instance.

    python -m bench._bare_scp PORT
"""

from __future__ import annotations

import sys

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification


def handle(event):
    event.encoded_dataset()
    return 0x0000


def main() -> None:
    ae = AE(ae_title="IMMUNORAD")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.maximum_pdu_size = 0
    ae.maximum_associations = 16
    ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True, evt_handlers=[(evt.EVT_C_STORE, handle)])


if __name__ == "__main__":
    main()
