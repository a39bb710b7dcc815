"""A fresh copy of the repository — the files git would commit, nothing beside it — stands on its own (issue 19).

- The tests that read committed fixtures and docs pass when run from the copy: nothing is read from a sibling folder
  or any other path outside the repository.
- ``make run`` (the README's first command) installs only what running needs into the copy's own ``.venv`` — no
  pytest, no Playwright, no npm schema — and starts the service with the demo cohort: /healthz answers and the demo
  is reported sent. This takes a minute or two (pip builds durable-rules); it needs python3.11, a C compiler and the
  package index, as ``make test`` itself does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.fail("needs git and a git checkout: the copy is made of the tracked files (git ls-files)")
    listed = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    copy = tmp_path_factory.mktemp("fresh") / "immunorad"
    for name in filter(None, (item.decode() for item in listed)):
        source = REPO / name
        if source.is_file():
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    assert not (copy.parent / "shared").exists()
    return copy


def test_fixture_and_docs_tests_pass_in_a_fresh_copy(fresh_copy):
    tests = ["tests/docs", "tests/fuzz/test_seeds.py", "tests/dicom_listener/test_sr_parser.py"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--db=sqlite", *tests],
        cwd=fresh_copy,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    # python -m pytest puts the copy first on sys.path: the code under test is the copy's, not this checkout's.
    assert "passed" in result.stdout


@pytest.mark.slow
def test_make_run_in_a_fresh_copy_installs_only_what_running_needs(fresh_copy):
    make = shutil.which("make")
    assert make, "make is a prerequisite (README: Start here)"
    http_port, dicom_port = free_port(), free_port()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("IMMUNORAD_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(IMMUNORAD_HTTP_PORT=str(http_port), IMMUNORAD_DICOM_PORT=str(dicom_port))
    log = fresh_copy / "make-run.log"
    with log.open("w") as out:
        make_run = subprocess.Popen(
            [make, "run"], cwd=fresh_copy, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 900
        while "immunorad is serving" not in log.read_text(errors="replace"):
            assert make_run.poll() is None, "make run stopped:\n" + log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "make run did not start in 15 min:\n" + log.read_text()[-4000:]
            time.sleep(2)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=10) as answer:
            assert answer.status == 200
        text = log.read_text(errors="replace")
        assert "Demo cohort sent" in text
    finally:
        os.killpg(make_run.pid, signal.SIGTERM)  # the process group this test started: make, serve and its roles
        try:
            make_run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(make_run.pid, signal.SIGKILL)
            make_run.wait(timeout=10)
    venv = fresh_copy / ".venv"
    assert (venv / "bin" / "immunorad").exists()
    # What running needs only: no test extras, no Node-installed schema.
    for test_only in ("pytest", "playwright", "ruff", "mypy"):
        assert not (venv / "bin" / test_only).exists(), f"make run installed {test_only}"
    assert not (venv / "fhir-r4-schema").exists()
