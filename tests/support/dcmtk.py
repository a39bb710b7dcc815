"""DCMTK's command-line peers (Debian package ``dcmtk``): storescu and echoscu."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found: install Debian's dcmtk (.ci/run does)")
    return path


def storescu(
    host: str,
    port: int,
    files: Sequence[Path],
    *,
    aec: str = "IMMUNORAD",
    aet: str = "STORESCU",
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """Send files with storescu; TCP_NODELAY=1 so Nagle's algorithm does not throttle DCMTK."""
    env = dict(os.environ, TCP_NODELAY="1")
    # -R: propose exactly the SOP classes of the files (DCMTK 3.6.7 does not propose Comprehensive 3D SR by default).
    return subprocess.run(
        [require("storescu"), "-R", "-aec", aec, "-aet", aet, *extra, host, str(port), *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def echoscu(
    host: str, port: int, *, aec: str = "IMMUNORAD", aet: str = "ECHOSCU", extra: Sequence[str] = ()
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require("echoscu"), "-aec", aec, "-aet", aet, *extra, host, str(port)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TCP_NODELAY="1"),
        timeout=60,
    )
