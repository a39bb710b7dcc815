"""The C-STORE SCP (pynetdicom): Verification and every Storage SOP Class with every transfer syntax.

The listener only moves bytes: it hands each received instance (its Part 10 encoding, undecoded) to a
``store`` callable supplied by the service, and maps that call's outcome to a DIMSE status in one place
(``store_status``), as pynetdicom's own ``attempt`` helper does:

- ``0x0000`` Success — only after ``store`` returned, i.e. the instance is durably committed;
- ``0xA700`` Refused: Out of Resources — storage unavailable (database down or locked): the sender retries;
- ``0xA900`` Data Set Does Not Match SOP Class — the instance contradicts its identity (``IdentityConflict``);
- ``0xC000``–``0xCFFF`` Cannot Understand — the object cannot be parsed or is refused, with an Error Comment.

The service says why it refuses an instance with the exceptions of ``dicom_listener.errors``; ``REFUSAL_STATUS``
is the one table from those to status codes.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import time
from pynetdicom.transport import ThreadedAssociationServer

from dicom_listener.errors import (
    CannotUnderstand,
    IdentityConflict,
    Implausible,
    InstanceRefused,
    NoPatient,
    NotTID1500,
    StorageUnavailable,
)

logger = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700

REFUSAL_STATUS: dict[type[InstanceRefused], int] = {
    StorageUnavailable: STATUS_OUT_OF_RESOURCES,
    IdentityConflict: 0xA900,
    CannotUnderstand: 0xC000,
    NoPatient: 0xC001,
    NotTID1500: 0xC002,
    Implausible: 0xC003,
}
"""Each refusal's C-STORE status (PS3.4 Table B.2-1: 0xA7xx out of resources, 0xA9xx data set does not match,
0xCxxx cannot understand)."""


@dataclass(frozen=True)
class ReceivedInstance:
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    calling_ae: str
    encoded: bytes
    """Preamble + File Meta + data set exactly as received (``event.encoded_dataset()``)."""


StoreCallback = Callable[[ReceivedInstance], None]


@dataclass(frozen=True)
class RefusedAssociation:
    """An association the listener refused before any DIMSE exchange (no patient data involved)."""

    reason: str
    """``calling-ae-not-allowed`` | ``called-ae-wrong`` | ``association-limit`` | ``rejected`` | ``tls-failed``."""
    peer: str
    """The peer's IP address."""
    calling_ae: str | None = None
    called_ae: str | None = None
    detail: str | None = None
    """For TLS: the handshake error's reason (e.g. ``CERTIFICATE_VERIFY_FAILED``)."""


RefusalCallback = Callable[[RefusedAssociation], None]

REJECT_REASONS: dict[tuple[object, object], str] = {
    (0x01, 0x03): "calling-ae-not-allowed",
    (0x01, 0x07): "called-ae-wrong",
    (0x03, 0x02): "association-limit",
}
"""(Result Source, Diagnostic) of an A-ASSOCIATE-RJ (PS3.8 §9.3.4) → our reason."""


def _status(code: int, comment: str | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        # Error Comment (0000,0902) is LO: at most 64 characters.
        ds.ErrorComment = comment[:64]
    return ds


def refusal_status(refused: InstanceRefused) -> int:
    """The C-STORE status of a refusal (its most specific kind in ``REFUSAL_STATUS``)."""
    for kind in type(refused).__mro__:
        if kind in REFUSAL_STATUS:
            return REFUSAL_STATUS[kind]
    return 0xC000  # an InstanceRefused of no listed kind: the object was not understood


def store_status(store: StoreCallback, instance: ReceivedInstance) -> Dataset:
    """Run ``store`` and translate its outcome to a C-STORE response status."""
    try:
        store(instance)
    except StorageUnavailable as exc:
        logger.warning("C-STORE refused: storage unavailable", extra={"fields": {"reason": exc.comment[:120]}})
        return _status(refusal_status(exc), "storage temporarily unavailable, retry later")
    except InstanceRefused as exc:
        status = refusal_status(exc)
        logger.info("C-STORE rejected", extra={"fields": {"status": hex(status), "reason": exc.comment[:120]}})
        return _status(status, exc.comment)
    except Exception:  # never let pynetdicom answer 0xC211 for us
        logger.exception("C-STORE failed unexpectedly")
        return _status(STATUS_OUT_OF_RESOURCES, "internal error, retry later")
    return _status(STATUS_SUCCESS)


def _handle_store(event, store: StoreCallback) -> Dataset:
    request = event.request
    try:
        encoded = event.encoded_dataset()
    except Exception as exc:  # noqa: BLE001 - a dataset pynetdicom cannot even re-encode
        return _status(REFUSAL_STATUS[CannotUnderstand], f"unreadable dataset: {type(exc).__name__}")
    instance = ReceivedInstance(
        sop_instance_uid=str(request.AffectedSOPInstanceUID),
        sop_class_uid=str(request.AffectedSOPClassUID),
        transfer_syntax=str(event.context.transfer_syntax),
        calling_ae=str(event.assoc.requestor.ae_title).strip(),
        encoded=encoded,
    )
    return store_status(store, instance)


PRE_ASSOCIATION_STATES = ("Sta2", "Sta13")
"""States (PS3.8 Table 9-1) in which an acceptor's DUL has not indicated an A-ASSOCIATE to the ACSE: Sta2 "transport
connection open, awaiting A-ASSOCIATE-RQ PDU" and Sta13 "awaiting transport close" (after an invalid first PDU)."""


def _end_unrequested_association(event) -> None:
    """End the acceptor of a connection that closed before sending its A-ASSOCIATE-RQ, freeing its slot at once.

    pynetdicom counts one acceptor thread per connection against ``maximum_associations``; the thread waits up to
    ``acse_timeout`` (30 s) on its DUL's queue for the A-ASSOCIATE indication. When the peer closes first — a port
    probe, /readyz's DICOM check, a TCP liveness probe, a port scan — the DUL stops (PS3.8 §9.2 actions AA-5,
    AR-5, AA-2) without queueing anything, and the idle thread would keep its slot for the whole timeout. ``None`` on
    that queue is what the acceptor reads on timeout: it closes the connection and ends now instead.
    """
    assoc = event.assoc
    dul = assoc.dul
    # EVT_CONN_CLOSE fires inside the state machine's action, so current_state is still the state it closed in.
    if (
        assoc.is_acceptor
        and dul.state_machine.current_state in PRE_ASSOCIATION_STATES
        and assoc.requestor.primitive is None
        and dul.to_user_queue.empty()
    ):
        dul.to_user_queue.put(None)


def _text(value) -> str | None:
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return text.strip()[:16]


def _report_refusal(on_refused: RefusalCallback, refused: RefusedAssociation) -> None:
    """Log the refusal (JSON, no PHI) and hand it to the service; a failure to record never breaks the listener."""
    logger.warning(
        "DICOM association refused",
        extra={
            "fields": {
                "reason": refused.reason,
                "calling_ae": refused.calling_ae,
                "called_ae": refused.called_ae,
                "peer": refused.peer,
                **({"detail": refused.detail} if refused.detail else {}),
            }
        },
    )
    try:
        on_refused(refused)
    except Exception:
        logger.exception("DICOM association refusal not recorded")


def _handle_rejected(event, on_refused: RefusalCallback) -> None:
    """EVT_REJECTED: we sent an A-ASSOCIATE-RJ (calling or called AE title, association limit)."""
    assoc = event.assoc
    request = assoc.requestor.primitive
    answer = assoc.acceptor.primitive
    key = (getattr(answer, "result_source", None), getattr(answer, "diagnostic", None))
    _report_refusal(
        on_refused,
        RefusedAssociation(
            reason=REJECT_REASONS.get(key, "rejected"),
            peer=str(assoc.requestor.address),
            calling_ae=_text(getattr(request, "calling_ae_title", None)),
            called_ae=_text(getattr(request, "called_ae_title", None)),
        ),
    )


TLS_HANDSHAKE_SECONDS = 10.0
"""Longest TLS handshake: pynetdicom performs it on the thread that accepts every connection, so a peer that
opens a connection and stays silent would otherwise stop the listener from accepting anyone else."""


def _audit_tls_failures(server, on_refused: RefusalCallback) -> None:
    """Accept connections as pynetdicom's ``get_request`` does, reporting TLS handshakes that fail (no client
    certificate, an untrusted one, plain TCP to the TLS port) and bounding the handshake's duration.

    pynetdicom drops a failed handshake silently (an ``OSError`` to socketserver). A peer that connects and
    closes without a word (a port probe, /readyz's check) is not a refusal and is not reported.
    """

    def get_request():
        client, address = server.socket.accept()
        client.settimeout(TLS_HANDSHAKE_SECONDS)
        try:
            wrapped = server.ssl_context.wrap_socket(client, server_side=True)
        except OSError as exc:
            client.close()
            if isinstance(exc, ssl.SSLError) and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                reason = str(exc.reason or type(exc).__name__)[:80]
            elif isinstance(exc, TimeoutError):
                reason = "handshake timed out"
            else:
                raise
            _report_refusal(on_refused, RefusedAssociation(reason="tls-failed", peer=str(address[0]), detail=reason))
            raise
        wrapped.settimeout(None)
        return wrapped, address

    server.get_request = get_request


@dataclass
class ListenerConfig:
    ae_title: str = "IMMUNORAD"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_calling_aets: tuple[str, ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    maximum_associations: int = 16
    reuse_port: bool = False
    """Bind with ``SO_REUSEPORT``: several listener processes share the port (``SharedPortServer``)."""


def tls_context(config: ListenerConfig) -> ssl.SSLContext | None:
    """DICOM over TLS when a certificate is configured; mutual TLS when a CA is configured too."""
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=config.tls_ca)
    return context


def build_ae(config: ListenerConfig) -> AE:
    ae = AE(ae_title=config.ae_title)
    for context in AllStoragePresentationContexts:
        # pynetdicom's defaults are uncompressed only; PACS send JPEG/JPEG 2000/JPEG-LS/HTJ2K too (contract §3).
        if context.abstract_syntax is not None:  # always set in pynetdicom's storage list
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.maximum_pdu_size = 0
    ae.maximum_associations = config.maximum_associations
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 30, 60, 60
    ae.require_called_aet = True
    ae.require_calling_aet = list(config.allowed_calling_aets)
    return ae


class SharedPortServer(ThreadedAssociationServer):
    """pynetdicom's threaded server bound with ``SO_REUSEPORT``, through ``AE.make_server``'s ``server_class``:
    several processes listen on one port and the kernel spreads the incoming connections among them, each
    association served whole by the process that accepted it. (pynetdicom's ``server_bind`` sets its own options
    and binds, without socketserver's ``allow_reuse_port``: the option is set here, before it.)"""

    def server_bind(self) -> None:
        if self.socket is not None:  # socketserver created it before binding; pynetdicom types it as optional
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def start_listener(config: ListenerConfig, store: StoreCallback, *, on_refused: RefusalCallback | None = None):
    """Start the SCP; returns pynetdicom's server so the caller can shut it down.

    ``on_refused`` is told of every association refused before any DIMSE exchange (AE titles, association
    limit, TLS handshake); each is logged here in any case.
    """
    ae = build_ae(config)
    report = on_refused or (lambda _refused: None)
    handlers: list[tuple[Any, ...]] = [
        (evt.EVT_C_STORE, _handle_store, [store]),
        (evt.EVT_CONN_CLOSE, _end_unrequested_association),
        (evt.EVT_REJECTED, _handle_rejected, [report]),
    ]
    server: ThreadedAssociationServer | None
    if config.reuse_port:
        # What ``AE.start_server(block=False)`` does, with our server class.
        server = ae.make_server(
            (config.host, config.port),
            evt_handlers=handlers,
            ssl_context=tls_context(config),
            server_class=SharedPortServer,
        )
        threading.Thread(target=server.serve_forever, name="AcceptorServer", daemon=True).start()
    else:
        server = ae.start_server(
            (config.host, config.port), block=False, evt_handlers=handlers, ssl_context=tls_context(config)
        )
    if config.tls_cert:
        _audit_tls_failures(server, report)
    return server
