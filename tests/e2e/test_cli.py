"""The README's first command: ``immunorad serve --demo`` brings every role up and the demo cohort through the
real interfaces; ``immunorad reassess`` then re-runs the rule base for audits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.ports import free_port
from tests.support.processes import REPO

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
        # What a person reads (issue 15): a short summary — where, the token's file, how to sign in, the demo's
        # progress with counts — and no JSON log line, no library chatter (highdicom, pynetdicom) on the terminal.
        assert len(output) <= 25, text
        assert '{"ts"' not in text and "highdicom" not in text and "pynetdicom" not in text, text
        assert f"HTTP API   {base}" in text and f"DICOM      IMMUNORAD@127.0.0.1:{dicom_port}" in text
        assert f"API token  {tmp_path / 'var' / 'api-token'}" in text
        assert f"sign in    open {base}/ui and paste the API token" in text
        log = tmp_path / "var" / "log" / "immunorad.log"
        assert f"logs       {log} (JSON lines)" in text
        assert all(json.loads(line)["msg"] for line in log.read_text().splitlines())  # the JSON log, in the file
        evaluated = re.search(r"Demo: 4 patients evaluated: (\d+) reports, (\d+) active alerts\.", text)
        assert evaluated and int(evaluated[1]) > 0, text
        # The EHR stand-in (no EHR configured): deliveries, Flags and CDS cards visible end to end.
        assert "delivers to the demo EHR stand-in at http://127.0.0.1:" in text
        received = re.search(r"the EHR stand-in received (\d+) reports, (\d+) observations and (\d+) Flags", text)
        assert received and int(received[1]) == int(evaluated[1]) and int(received[3]) >= int(evaluated[2]), text
        cards = re.search(r"CDS Hooks patient-view: (\d+) cards for (\d+) of 4 patients", text)
        assert cards and int(cards[1]) >= 1, text

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
