"""The README's first command: ``immunorad serve --demo`` brings every role up and the demo cohort through the
real interfaces; ``immunorad reassess`` then re-runs the rule base for audits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.processes import REPO, free_port

pytestmark = pytest.mark.slow


def get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_serve_with_demo_cohort_then_reassess(db_url, tmp_path):
    http_port, dicom_port = free_port(), free_port()
    env = dict(
        os.environ,
        IMMUNORAD_DATABASE_URL=db_url,
        IMMUNORAD_VAR_DIR=str(tmp_path / "var"),
        IMMUNORAD_HTTP_PORT=str(http_port),
        IMMUNORAD_DICOM_PORT=str(dicom_port),
        IMMUNORAD_STUDY_SETTLE_SECONDS="1",
        IMMUNORAD_WORKER_POLL_SECONDS="0.1",
        IMMUNORAD_API_TOKEN="",
        IMMUNORAD_GUNICORN_WORKERS="1",
    )
    env.pop("IMMUNORAD_API_TOKEN")
    serve = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--demo"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = serve.stdout.readline()
            if not line:
                break
            output.append(line)
            if "immunorad is serving" in line:
                break
        text = "".join(output)
        assert "Demo cohort sent" in text and "immunorad is serving" in text, text[-3000:]
        token = (tmp_path / "var" / "api-token").read_text().strip()  # generated on first start (contract §2)
        base = f"http://127.0.0.1:{http_port}"

        def all_reported():
            patients = get(f"{base}/api/patients", token)["patients"]
            return len(patients) == 4 and all(p["followups"] and p["assessment_version"] for p in patients)

        deadline = time.monotonic() + 60
        while not all_reported():
            assert time.monotonic() < deadline, "demo cohort not evaluated in time"
            time.sleep(0.5)
        pseudo = get(f"{base}/api/patients/DEMO-0002", token)["assessment"]
        by_criterion = {c["criterion"]: [tp["category"] for tp in c["timepoints"]] for c in pseudo["criteria"]}
        assert by_criterion["RECIST-1.1"] == ["PD"] and by_criterion["iRECIST"] == ["iUPD", "iPR", "iPR"]
        alerts = {(a["patient"], a["code"]) for a in get(f"{base}/api/alerts", token)["alerts"]}
        codes = {code for _, code in alerts}
        assert {"pseudoprogression", "dissociated-response", "hyperprogression", "fast-progression"} <= codes

        reassess = subprocess.run(
            [sys.executable, "-m", "service.cli", "reassess", "--all"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert reassess.returncode == 0, reassess.stderr
        assert "reassessed 4 patient(s)" in reassess.stdout
        assert "0 new assessment version(s)" in reassess.stdout  # same inputs, same rule base: nothing changes
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
    assert serve.returncode == 0
