"""Ports for the processes a test starts, chosen so that two tests never race for one.

A port found by binding port 0 and closing the socket is free only until something else takes it: with several
pytest-xdist workers, or with the outgoing connections every test makes, the kernel can hand the same number out again
(from its ephemeral range, ``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default) before our process
binds it. So ports are taken below that range, from a block of its own for each xdist worker (``PYTEST_XDIST_WORKER``
gw0, gw1, ...), never twice in one process, and only after a bind shows nobody listens there.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import socket
import threading

FIRST_PORT = 20000
BLOCK = 3000
"""Ports per xdist worker: gw0 takes 20000-22999, gw1 23000-25999, ... (four workers stay below 32768)."""

_lock = threading.Lock()
_worker = int(re.sub(r"\D", "", os.environ.get("PYTEST_XDIST_WORKER", "")) or 0)
_base = FIRST_PORT + BLOCK * _worker
# A random starting point within the block, so that two separate pytest runs on one machine rarely meet.
_start = _base + random.randrange(BLOCK)
_next = itertools.cycle([*range(_start, _base + BLOCK), *range(_base, _start)])
_given: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on and that this process has not handed out before."""
    with _lock:
        for _ in range(BLOCK):
            port = next(_next)
            if port in _given:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _given.add(port)
            return port
    raise RuntimeError(f"no free port left in {_base}-{_base + BLOCK - 1}")
