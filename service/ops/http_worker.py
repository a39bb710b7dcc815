"""The API's gunicorn worker: ``gthread`` whose request threads never wait for a slow or silent client.

gunicorn's ``gthread`` hands every new connection to a request thread, which then waits up to 5 s for a first
byte and reads the request head with blocking reads: 48 connections that send nothing kept a 2 × 8-thread API
from answering ``/healthz`` for ~15 s, and clients that trickle their request a byte at a time hold a thread for
as long as they like (contract §9.5: slow clients must not starve the API). This worker:

- keeps a connection in the worker's event loop (no thread) until its whole request — head and a body of known
  length — has arrived, for new and kept-alive connections alike, reading without blocking; a head not complete
  within ``HEAD_SECONDS`` of the first wait, or a body slower than ``MIN_BODY_RATE`` after a
  ``BODY_GRACE_SECONDS`` start, closes the connection;
- a chunked body (no Content-Length) is read on the request thread before the application runs, at the same
  minimum rate; the application then reads the body from memory.

A request thread is therefore only ever busy with a request that has fully arrived, or one arriving at a useful
rate. TLS is terminated in front of gunicorn (the Ingress), so the head is read from plain sockets; with
gunicorn's own TLS configured the parent behaviour is kept.
"""

from __future__ import annotations

import io
import re
import selectors
import socket
import time
from functools import partial

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import TConn, ThreadWorker

HEAD_SECONDS = 10.0
"""Longest wait for a complete request head (request line and header fields) once a connection waits for one."""
MAX_HEAD_BYTES = 64 * 1024
"""A head larger than this is handed to gunicorn's parser as is, which refuses it (limit_request_* settings)."""
BODY_GRACE_SECONDS = 5.0
MIN_BODY_RATE = 64 * 1024
"""Bytes per second a request body must keep up after the grace period (a 10 MB body: at least 64 KB/s)."""
MAX_BUFFERED_BYTES = 128 * 1024 * 1024
"""Most request bytes one worker process holds in its event loop at once; a body that would exceed it is read on
a request thread instead (paced as a chunked body is), so many large uploads cannot exhaust memory (checked at
each read of at most 256 KB)."""


def _request_length(buffer: bytes) -> int | None:
    """Bytes the request in ``buffer`` takes (head + Content-Length body), once its head is complete; ``None``
    before. A chunked body (no Content-Length) is read on the request thread, paced (``_PacedSocket``)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].decode("latin-1").lower()
    match = re.search(r"\r\ncontent-length:[ \t]*([0-9]{1,12})[ \t]*(?:\r\n|$)", head)
    if match is None or "\r\ntransfer-encoding:" in head:
        return end + 4
    return end + 4 + int(match.group(1))


class ApiWorker(ThreadWorker):
    max_body_bytes = 10 * 1024 * 1024
    """Set from IMMUNORAD_MAX_REQUEST_BYTES by ``immunorad api``; a longer body is left to the app's 413."""

    # -- the event loop (main thread) --------------------------------------------------------------------------
    def accept(self, listener) -> None:
        if self.cfg.is_ssl:
            return super().accept(listener)
        try:
            client_sock, client_addr = listener.accept()
        except BlockingIOError:
            return
        except OSError:
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
        self._wait_for_head(conn)

    def on_client_socket_readable(self, conn, client) -> None:
        """A kept-alive connection has data: its next head is awaited in the event loop too."""
        if self.cfg.is_ssl:
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._wait_for_head(conn)
        self._on_head_bytes(conn, client)

    buffered = 0
    """Bytes of requests waiting in this worker's event loop (``MAX_BUFFERED_BYTES``)."""

    def _wait_for_head(self, conn) -> None:
        conn.head_buffer = b""
        conn.waiting_since = time.monotonic()
        conn.timeout = conn.waiting_since + HEAD_SECONDS
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_bytes, conn))

    def _on_head_bytes(self, conn, client) -> None:
        try:
            data = conn.sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._forget_pending(conn)
            self.nr_conns -= 1
            conn.close()
            return
        conn.head_buffer += data
        self.buffered += len(data)
        wanted = _request_length(conn.head_buffer)
        if wanted is None:
            if len(conn.head_buffer) >= MAX_HEAD_BYTES:
                wanted = len(conn.head_buffer)  # gunicorn's parser refuses it
            else:
                return
        elif (
            wanted > len(conn.head_buffer)
            and wanted <= self.max_body_bytes + MAX_HEAD_BYTES
            and self.buffered <= MAX_BUFFERED_BYTES
        ):
            # The body arrives here too, at no less than MIN_BODY_RATE after the grace period.
            received = len(conn.head_buffer)
            conn.timeout = conn.waiting_since + HEAD_SECONDS + BODY_GRACE_SECONDS + received / MIN_BODY_RATE
            return
        self._forget_pending(conn)
        conn.data_ready = True
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        """Close every waiting connection past its deadline (deadlines grow with the bytes received, so the
        queue is not in deadline order: all are checked)."""
        now = time.monotonic()
        for conn in [c for c in self.pending_conns if c.timeout <= now]:
            self._forget_pending(conn)
            self.nr_conns -= 1
            conn.close()

    def _forget_pending(self, conn) -> None:
        self.buffered -= len(getattr(conn, "head_buffer", b""))
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            self.pending_conns.remove(conn)
        except ValueError:
            pass

    # -- a request thread ----------------------------------------------------------------------------------------
    def handle(self, conn):
        head = getattr(conn, "head_buffer", b"")
        if head:
            conn.head_buffer = b""  # already subtracted from ``buffered`` by _forget_pending
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(head)
        return super().handle(conn)

    def handle_request(self, req, conn):
        if req.body is not None and not self.cfg.is_ssl:
            req.body = io.BytesIO(self._read_body(req, conn))
        return super().handle_request(req, conn)

    def _read_body(self, req, conn) -> bytes:
        """The whole body, or ``NoMoreData`` (the connection closes) when it arrives too slowly."""
        unreader = conn.parser.unreader
        paced = _PacedSocket(unreader.sock)
        unreader.sock = paced
        parts, received = [], 0
        try:
            while received <= self.max_body_bytes:
                chunk = req.body.read(64 * 1024)
                if not chunk:
                    break
                parts.append(chunk)
                received += len(chunk)
        except TimeoutError as exc:
            raise NoMoreData(b"request body too slow") from exc
        finally:
            unreader.sock = paced.sock
            paced.sock.settimeout(None)
        if received > self.max_body_bytes:
            req.must_close = True  # the rest is never read: the connection cannot carry another request
        return b"".join(parts)


class _PacedSocket:
    """A socket whose ``recv`` fails (``TimeoutError``) once the bytes received fall behind ``MIN_BODY_RATE``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.started = time.monotonic()
        self.received = 0

    def recv(self, size: int) -> bytes:
        remaining = self.started + BODY_GRACE_SECONDS + self.received / MIN_BODY_RATE - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request body too slow")
        self.sock.settimeout(remaining)
        data = self.sock.recv(size)
        self.received += len(data)
        return data

    def __getattr__(self, name: str):
        return getattr(self.sock, name)
