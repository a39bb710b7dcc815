"""Fuzzing the DICOM listener over its socket (issue 8 §6), on both backends.

A real association (pynetdicom storing a CT image and a TID 1500 report, through a recording proxy) gives
the client's PDUs: A-ASSOCIATE-RQ, the P-DATA-TF of each C-STORE (command and data set) and A-RELEASE-RQ.
Each case replays them with one or more mutated — cut, flipped, re-lengthed, dropped, duplicated, swapped —
or replaced by random bytes, then half-closes the socket and reads what the listener answers. Checks:

- the listener never answers a C-STORE with 0xA700 (it only means "storage unavailable" or an unexpected
  exception, and the sender would retry forever); a C-STORE it acknowledges is stored;
- whatever it answered, nothing was partially written (data tables change only with a 0x0000);
- afterwards it still answers C-ECHO and stores a good instance (no thread or association leak blocks it).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicom_listener.scp import ListenerConfig, start_listener
from service.ingest.dicom_ingest import DicomIngest
from tests.faults.harness import counts, store
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.dicom_cases import seed_datasets, with_fresh_uid
from tests.support.dcmtk import echoscu

STATUS_TAG = b"\x00\x00\x00\x09\x02\x00\x00\x00"
"""(0000,0900) Status, implicit VR little endian, length 2: the command set of a C-STORE-RSP."""


@pytest.fixture
def listener(settings, db):
    # The default 16 association slots: a connection the fuzz cases close early frees its slot at once
    # (test_closed_probe_connections_do_not_hold_association_slots), so they cannot lock each other out.
    config = ListenerConfig(ae_title=settings.ae_title, host="127.0.0.1", port=settings.dicom_port)
    server = start_listener(config, DicomIngest(db, settings))
    yield config
    server.shutdown()


def split_pdus(stream: bytes) -> list[bytes]:
    pdus, at = [], 0
    while at + 6 <= len(stream):
        length = struct.unpack(">I", stream[at + 2 : at + 6])[0]
        pdus.append(stream[at : at + 6 + length])
        at += 6 + length
    return pdus


def record_client_pdus(port: int) -> list[bytes]:
    """What a pynetdicom sender writes for one association storing a CT image and a TID 1500 report."""
    proxy = socket.create_server(("127.0.0.1", 0))
    recorded = bytearray()

    def pump(src, dst, record):
        try:
            while chunk := src.recv(65536):
                if record:
                    recorded.extend(chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        client, _ = proxy.accept()
        upstream = socket.create_connection(("127.0.0.1", port))
        a = threading.Thread(target=pump, args=(client, upstream, True))
        b = threading.Thread(target=pump, args=(upstream, client, False))
        a.start(), b.start(), a.join(30), b.join(30)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    seeds = seed_datasets()
    results = store("127.0.0.1", proxy.getsockname()[1], [seeds["ct"], seeds["sr-comprehensive-3d"]])
    thread.join(30)
    proxy.close()
    assert [r.status for r in results] == [0, 0], "the recording association must succeed"
    pdus = split_pdus(bytes(recorded))
    assert pdus[0][0] == 0x01 and pdus[-1][0] == 0x05, "expected A-ASSOCIATE-RQ … A-RELEASE-RQ"
    return pdus


def replay(port: int, pdus: list[bytes]) -> list[int]:
    """Send the PDUs, half-close, read the answer until the listener closes; the C-STORE statuses seen."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            for pdu in pdus:
                sock.sendall(pdu)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the listener aborted the association early: fine
        answer = bytearray()
        try:
            while chunk := sock.recv(65536):
                answer.extend(chunk)
        except (TimeoutError, OSError):
            pass
    statuses, at = [], answer.find(STATUS_TAG)
    while at != -1:
        statuses.append(struct.unpack("<H", answer[at + 8 : at + 10])[0])
        at = answer.find(STATUS_TAG, at + 1)
    return statuses


@st.composite
def conversations(draw, pdus: list[bytes]) -> list[bytes]:
    out = list(pdus)
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(out) - 1)) if out else 0
        op = draw(st.sampled_from(["cut", "flip", "length", "drop", "duplicate", "swap", "garbage", "type"]))
        if not out:
            out = [draw(st.binary(min_size=1, max_size=512))]
            continue
        pdu = bytearray(out[index])
        if not pdu and op in ("flip", "length", "type"):
            op = "garbage"
        if op == "cut":
            out[index] = bytes(pdu[: draw(st.integers(0, len(pdu)))])
        elif op == "flip":
            for _ in range(draw(st.integers(1, 6))):
                pdu[draw(st.integers(0, len(pdu) - 1))] = draw(st.integers(0, 255))
            out[index] = bytes(pdu)
        elif op == "length":
            # the PDU length, or the first PDV item's length inside a P-DATA-TF
            at = draw(st.sampled_from([2, 6] if pdu[0] == 0x04 and len(pdu) > 10 else [2]))
            pdu.extend(b"\x00" * max(0, at + 4 - len(pdu)))
            pdu[at : at + 4] = struct.pack(
                ">I",
                draw(st.sampled_from([0, 1, 2, 6, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, max(len(pdu) - 7, 0), len(pdu) * 2])),
            )
            out[index] = bytes(pdu)
        elif op == "drop":
            del out[index]
        elif op == "duplicate":
            out.insert(index, out[index])
        elif op == "swap" and len(out) > 1:
            other = draw(st.integers(0, len(out) - 1))
            out[index], out[other] = out[other], out[index]
        elif op == "garbage":
            out[index] = draw(st.binary(min_size=0, max_size=2048))
        elif op == "type":
            pdu[0] = draw(st.integers(0, 255))
            out[index] = bytes(pdu)
    return out


def still_serving(config, n: int) -> None:
    assert echoscu("127.0.0.1", config.port).returncode == 0
    ct = seed_datasets()["ct"].copy()
    ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.10.511.89.{n}"
    assert [r.status for r in store("127.0.0.1", config.port, [ct])] == [0]


def test_mutated_associations(listener, db, tally):
    pdus = record_client_pdus(listener.port)
    still_serving(listener, 1)
    number = [0]

    @fuzz_settings(80)
    @given(conversation=conversations(pdus))
    def run(conversation):
        number[0] += 1
        # Fresh SOP Instance UIDs (same length) so that an accepted case is a new instance, not a duplicate.
        conversation = [with_fresh_uid(p, 500000 + number[0]) if b"999999999999" in p else p for p in conversation]
        before = counts(db.engine)
        statuses = replay(listener.port, conversation)
        assert 0xA700 not in statuses, f"the listener answered 0xA700 to a malformed C-STORE: {statuses}"
        if 0x0000 not in statuses:
            assert counts(db.engine) == before, "nothing acknowledged, yet stored data changed"
        tally("acknowledged" if 0x0000 in statuses else ("refused" if statuses else "no-c-store-answer"))

    run()
    still_serving(listener, 2)


def test_raw_garbage_and_slow_half_open_connections(listener, tally, backend):
    if backend != "sqlite":
        pytest.skip("transport level: the database plays no part (run once, on SQLite)")

    @fuzz_settings(60)
    @given(
        data=st.one_of(
            st.binary(max_size=4096),
            st.builds(
                lambda t, n, body: bytes([t, 0]) + struct.pack(">I", n) + body,
                st.integers(0, 255),
                st.integers(0, 2**32 - 1),
                st.binary(max_size=256),
            ),
        )
    )
    def run(data):
        replay(listener.port, [data])
        tally("sent")

    run()
    idle = socket.create_connection(("127.0.0.1", listener.port))  # open, silent: waits for the ACSE timeout
    still_serving(listener, 3)
    idle.close()


def test_closed_probe_connections_do_not_hold_association_slots(settings, db, backend):
    """TCP connects that close at once (what /readyz's dicom check, a TCP liveness probe or a port scan does),
    more of them than there are association slots, and a sender is still accepted straight away: each one's
    acceptor ends when its connection closes, not at the 30 s ACSE timeout (which refused every sender with
    'Local Limit Exceeded' for 30 s after 16 probes)."""
    if backend != "sqlite":
        pytest.skip("transport level: the database plays no part (run once, on SQLite)")
    config = ListenerConfig(ae_title=settings.ae_title, host="127.0.0.1", port=settings.dicom_port)  # defaults
    server = start_listener(config, DicomIngest(db, settings))
    try:
        for _ in range(2 * config.maximum_associations):
            socket.create_connection(("127.0.0.1", config.port)).close()
        # Each probe's acceptor ends once its DUL has seen the close (milliseconds), far within the ACSE timeout.
        deadline = time.monotonic() + 5
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.active_associations == [], "closed probe connections still hold association slots"
        assert echoscu("127.0.0.1", config.port).returncode == 0
    finally:
        server.shutdown()
