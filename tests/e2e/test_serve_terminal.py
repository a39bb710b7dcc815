"""What a person at the terminal sees when ``immunorad serve`` cannot start (issue 15 item 4): a busy port or a
role that stops during start ends ``serve`` with exit status 1 and one clear line — never "serving" while a
role restarts in a loop. Real processes; the summary of a good start is checked in ``test_cli.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.support.ports import free_port
from tests.support.processes import REPO

pytestmark = pytest.mark.slow


def environment(db_url: str, tmp_path, http_port: int, dicom_port: int, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ,
        IMMUNORAD_DATABASE_URL=db_url,
        IMMUNORAD_VAR_DIR=str(tmp_path / "var"),
        IMMUNORAD_HTTP_PORT=str(http_port),
        IMMUNORAD_DICOM_PORT=str(dicom_port),
        IMMUNORAD_API_TOKEN="terminal-token",
        IMMUNORAD_GUNICORN_WORKERS="1",
        **extra,
    )
    env.pop("IMMUNORAD_LOG_FORMAT", None)  # the default a person gets: human
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def listening():
    """A port some other program already listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.parametrize("busy", ["HTTP", "DICOM"])
def test_a_busy_port_stops_serve_with_one_clear_line(busy, listening, db_url, tmp_path):
    http_port, dicom_port = (listening, free_port()) if busy == "HTTP" else (free_port(), listening)
    result = run(["serve", "--demo"], environment(db_url, tmp_path, http_port, dicom_port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"immunorad: cannot start: the {busy} port 127.0.0.1:{listening} is in use by another program "
        f"(choose another with IMMUNORAD_{busy}_PORT)"
    ], result.stderr
    assert "serving" not in result.stdout and "immunorad is up" not in result.stdout


@pytest.mark.parametrize("role,port_of", [("api", "HTTP"), ("dicom", "DICOM")])
def test_a_single_role_on_a_busy_port_exits_non_zero(role, port_of, listening, db_url, tmp_path):
    ports = (listening, free_port()) if port_of == "HTTP" else (free_port(), listening)
    result = run([role], environment(db_url, tmp_path, *ports), timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"immunorad: cannot start: the {port_of} port 127.0.0.1:{listening} is in use by another program"
    ]


def test_a_role_that_cannot_start_stops_serve(db_url, tmp_path):
    # The DICOM listener's TLS certificate does not exist: that role stops at once; serve must not go on.
    env = environment(
        db_url,
        tmp_path,
        free_port(),
        free_port(),
        IMMUNORAD_DICOM_TLS_CERT=str(tmp_path / "missing.pem"),
        IMMUNORAD_DICOM_TLS_KEY=str(tmp_path / "missing.key"),
    )
    result = run(["serve"], env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("immunorad: ")]
    assert "immunorad: dicom failed: No such file or directory" in ours  # the role's own line, with the reason
    assert ours[-1].startswith("immunorad: the dicom role stopped during start (exit status ")
    assert ours[-1].endswith(f"see {tmp_path / 'var' / 'log' / 'immunorad.log'}")
    assert "serving" not in result.stdout and "immunorad is up" not in result.stdout
    assert '{"ts"' not in result.stderr  # the JSON log went to the file
