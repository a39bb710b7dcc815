"""Run immunorad's roles as real processes for end-to-end tests (gunicorn API, DICOM listener, worker)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]


class ServiceProcesses:
    ROLES = ("api", "dicom", "worker")

    def __init__(
        self,
        *,
        db_url: str,
        var_dir: Path,
        ehr_url: str | None = None,
        extra_env: dict | None = None,
        token: str = "e2e-token",
        roles: tuple[str, ...] = ROLES,
    ) -> None:
        self.var_dir = var_dir
        self.token = token
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.roles = roles
        self.env = dict(os.environ)
        self.env.update(
            {
                "IMMUNORAD_DATABASE_URL": db_url,
                "IMMUNORAD_VAR_DIR": str(var_dir),
                "IMMUNORAD_HTTP_PORT": str(self.http_port),
                "IMMUNORAD_DICOM_PORT": str(self.dicom_port),
                "IMMUNORAD_API_TOKEN": token,
                # Long enough that an SR sent right after its images (even on a loaded CI machine) arrives before
                # the image-only study settles into a not-evaluable timepoint.
                "IMMUNORAD_STUDY_SETTLE_SECONDS": "3",
                "IMMUNORAD_WORKER_POLL_SECONDS": "0.1",
                "IMMUNORAD_GUNICORN_WORKERS": "2",
                "IMMUNORAD_PSEUDONYM_KEY": "e2e-pseudonym-key",
                "IMMUNORAD_LOG_LEVEL": "INFO",
                "IMMUNORAD_LOG_FORMAT": "json",  # as in a container: JSON lines on stderr, into the role's log file
                "IMMUNORAD_EHR_TIMEOUT_SECONDS": "5",
            }
        )
        if ehr_url:
            self.env["IMMUNORAD_EHR_FHIR_URL"] = ehr_url
        self.env.update(extra_env or {})
        self.processes: dict[str, subprocess.Popen] = {}
        var_dir.mkdir(parents=True, exist_ok=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log_path(self, role: str) -> Path:
        return self.var_dir / f"{role}.log"

    def start_role(self, role: str) -> None:
        log = open(self.log_path(role), "ab")
        self.processes[role] = subprocess.Popen(
            [sys.executable, "-m", "service.cli", role],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> None:
        for role in self.roles:
            self.start_role(role)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = True
            if "api" in self.processes:
                try:
                    with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1):
                        pass
                except OSError:
                    ok = False
            if "dicom" in self.processes:
                try:
                    with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1):
                        pass
                except OSError:
                    ok = False
            for role, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{role} exited with {proc.returncode}: {self.log_path(role).read_text()[-3000:]}"
                    )
            if ok:
                return
            time.sleep(0.2)
        raise TimeoutError(
            "service did not become ready: "
            + "; ".join(f"{r}: {self.log_path(r).read_text()[-1500:]}" for r in self.processes)
        )

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        proc = self.processes.pop(role)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def restart(self, role: str) -> None:
        self.start_role(role)
        self.wait_ready()

    def stop(self) -> None:
        for proc in list(self.processes.values()):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.var_dir.glob("*.log")))

    # -- HTTP helpers -----------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: dict | bytes | None = None,
        *,
        token: str | None = "default",
        headers: dict | None = None,
    ) -> tuple[int, dict | str, dict]:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if token == "default":
            token = self.token
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                status, reply_headers = response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw, status, reply_headers = exc.read(), exc.code, dict(exc.headers)
        try:
            return status, json.loads(raw), reply_headers
        except ValueError:
            return status, raw.decode(errors="replace"), reply_headers

    def wait_for(self, predicate, timeout: float = 60, interval: float = 0.2, message: str = "condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise TimeoutError(f"timed out waiting for {message}; logs:\n{self.logs()[-4000:]}")
