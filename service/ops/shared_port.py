"""The other listener processes of ``immunorad dicom`` when IMMUNORAD_DICOM_PROCESSES > 1.

The first process (the one the operator or ``immunorad serve`` started) binds the DICOM port with ``SO_REUSEPORT``
(``dicom_listener.scp.SharedPortServer``) and starts the others as ``immunorad dicom --sibling``, which bind the
same port the same way; the kernel hands each new connection to one of them. The first process restarts a sibling
that stops (and gives up, stopping everything with exit status 1, when one keeps stopping), and stops them all on
SIGTERM. A sibling ends on SIGTERM, or by itself as soon as the first process is gone (even after a SIGKILL), so
that no listener outlives its role. Every process acknowledges an instance only after its own commit, as one does.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

logger = logging.getLogger("immunorad")

RESTART_LIMIT = 5
"""A sibling that stops this many times within ``RESTART_WINDOW_SECONDS`` stops the listener (exit status 1)."""
RESTART_WINDOW_SECONDS = 60
POLL_SECONDS = 0.5


class Siblings:
    """The ``count`` sibling processes of this listener: started at once, restarted, stopped with it."""

    def __init__(self, count: int) -> None:
        self.children: list[subprocess.Popen] = []
        self.exits: list[float] = []
        for _ in range(count):
            self.children.append(self._spawn())

    @staticmethod
    def _spawn() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "service.cli", "dicom", "--sibling"])

    def supervise(self, stop: threading.Event) -> bool:
        """Until ``stop``: restart a sibling that stopped. Returns ``True`` when one kept stopping (given up)."""
        failed = False
        while not stop.wait(POLL_SECONDS if self.children else None):
            for index, child in enumerate(self.children):
                if child.poll() is None:
                    continue
                now = time.monotonic()
                self.exits = [t for t in self.exits if now - t < RESTART_WINDOW_SECONDS] + [now]
                if len(self.exits) >= RESTART_LIMIT:
                    logger.error(
                        "DICOM listener process keeps stopping: giving up", extra={"fields": {"stops": len(self.exits)}}
                    )
                    failed = True
                    break
                logger.warning(
                    "DICOM listener process exited: restarting", extra={"fields": {"code": child.returncode}}
                )
                self.children[index] = self._spawn()
            if failed:
                break
        self.stop()
        return failed

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    @staticmethod
    def follow_parent(stop: threading.Event) -> None:
        """A sibling's wait: until SIGTERM, or until the process that started it is gone (its parent changes)."""
        parent = os.getppid()
        while not stop.wait(POLL_SECONDS):
            if os.getppid() != parent:
                logger.warning("DICOM listener's first process is gone: this one stops")
                return
