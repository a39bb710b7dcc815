"""A throw-away PostgreSQL cluster of our own, to restart under load without disturbing anyone else.

The machine's shared server (127.0.0.1:5432) serves every other test and every other session on this
machine, so the restart test does not restart it: it runs the same PostgreSQL binaries (Debian's
``/usr/lib/postgresql/<version>/bin``) on a private data directory and port, as the ``postgres`` user when
we are root. ``IMMUNORAD_FAULT_PG=shared`` makes the test restart the shared cluster instead, with
``pg_ctlcluster --skip-systemctl-redirect <version> main stop|start`` (only where nothing else runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql (Debian's postgresql package)"
        )
    return found[-1].parent


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=120, **kwargs)


class PrivateCluster:
    def __init__(self, port: int) -> None:
        self.port = port
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="immunorad-pg-"))
        self.data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/immunorad"

    def init(self) -> None:
        _as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"])
        self.start()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE immunorad")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=100"
        _as_postgres(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start"]
        )

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash as far as the data is concerned: recovery replays the WAL on start."""
        _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class SharedCluster:
    """The machine's cluster (IMMUNORAD_FAULT_PG=shared): stopped and started with pg_ctlcluster."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.version = sorted(os.listdir("/etc/postgresql"))[-1]

    def stop(self, mode: str = "immediate") -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", "stop", "-m", mode],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        for _ in range(60):
            if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0:
                return
            time.sleep(0.5)
