"""``immunorad serve [--demo]``: every role on one machine, and what a person at the terminal needs to read.

The roles (HTTP API under gunicorn, DICOM listener, worker) run as child processes, restarted when one dies.
Before any starts, the HTTP and DICOM addresses are tried: a busy port (or one we may not bind) stops ``serve``
with one clear line and exit status 1, and so does a role that stops during start or keeps stopping afterwards —
never "serving" while a role restarts in a loop. Only when the API answers ``/healthz`` and the listener accepts
connections does the terminal get its short summary: what runs where, the token's file, how to sign in, where
the JSON log is. With ``--demo`` the synthetic cohort goes through the real interfaces and the terminal follows it
with counts; when no EHR is configured, a loopback EHR stand-in (``service.demo.ehr``) receives the deliveries
and makes the CDS Hooks calls, so reports, Flags and cards are visible end to end on a fresh machine.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from service.ops.config import Settings, ensure_api_token
from service.ops.logs import TO_FILE_ONLY, log_file

logger = logging.getLogger("immunorad")

ROLES = ("api", "dicom", "worker")
START_TIMEOUT_SECONDS = 90
RESTART_LIMIT = 5
"""A role that stops this many times within ``RESTART_WINDOW_SECONDS`` stops ``serve`` (exit status 1)."""
RESTART_WINDOW_SECONDS = 60
DEMO_SETTLE_SECONDS = 120


class ServeError(Exception):
    """``serve`` cannot go on; the message is the one line a person reads (``see_log``: the log says more)."""

    def __init__(self, message: str, *, see_log: bool = True) -> None:
        super().__init__(message)
        self.see_log = see_log


def say(line: str = "") -> None:
    print(line, flush=True)


def bind_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, not permitted), or ``None`` when it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as error:
            return "in use by another program" if error.errno == 98 else (error.strerror or str(error)).lower()
    return None


def check_ports(settings: Settings) -> None:
    for what, host, port, variable in (
        ("HTTP", settings.http_host, settings.http_port, "IMMUNORAD_HTTP_PORT"),
        ("DICOM", settings.dicom_host, settings.dicom_port, "IMMUNORAD_DICOM_PORT"),
    ):
        problem = bind_problem(host, port)
        if problem:
            raise ServeError(
                f"cannot start: the {what} port {host}:{port} is {problem} (choose another with {variable})",
                see_log=False,
            )


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 -- comparing, not binding


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 -- the service's own address
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class Supervisor:
    """The role processes: start, wait until ready, restart, stop."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.settings = settings
        self.env = env
        self.children: dict[str, subprocess.Popen] = {}
        self.exits: dict[str, list[float]] = {role: [] for role in ROLES}

    def spawn(self, role: str) -> None:
        self.children[role] = subprocess.Popen([sys.executable, "-m", "service.cli", role], env=self.env)  # noqa: S603 -- this interpreter and a role name from a fixed tuple

    def start(self) -> None:
        for role in ROLES:
            self.spawn(role)
        http = f"http://{_local(self.settings.http_host)}:{self.settings.http_port}/healthz"
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for role, child in self.children.items():
                if child.poll() is not None:
                    raise ServeError(f"the {role} role stopped during start (exit status {child.returncode})")
            if _http_ok(http) and _accepts(_local(self.settings.dicom_host), self.settings.dicom_port):
                return
            time.sleep(0.2)
        raise ServeError(f"the roles were not ready within {START_TIMEOUT_SECONDS} s")

    def keep_running(self, stop: threading.Event) -> None:
        """Restart a role that stops; ``ServeError`` when one keeps stopping."""
        while not stop.is_set():
            for role, child in list(self.children.items()):
                if child.poll() is None or stop.is_set():
                    continue
                now = time.monotonic()
                recent = [t for t in self.exits[role] if now - t < RESTART_WINDOW_SECONDS] + [now]
                self.exits[role] = recent
                if len(recent) >= RESTART_LIMIT:
                    raise ServeError(f"the {role} role keeps stopping ({len(recent)} times in a minute)")
                logger.warning("role exited: restarting", extra={"fields": {"role": role, "code": child.returncode}})
                self.spawn(role)
            stop.wait(0.5)

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()
        for child in self.children.values():
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def _database(settings: Settings) -> str:
    if settings.is_sqlite:
        return f"SQLite {settings.database_url.split(':///', 1)[-1]}"
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    return f"PostgreSQL {url.database} on {url.host}:{url.port or 5432}"  # never the password


def summary(settings: Settings, ehr_line: str | None) -> list[str]:
    base = settings.base_url.rstrip("/")
    token = "IMMUNORAD_API_TOKEN (set in the environment)" if settings.api_token else str(settings.api_token_file)
    lines = [
        "immunorad is up:",
        f"  HTTP API   {base}  (FHIR {base}/fhir, pages {base}/ui, CDS Hooks {base}/cds-services)",
        f"  DICOM      {settings.ae_title}@{settings.dicom_host}:{settings.dicom_port}  (C-STORE)",
        f"  worker     evaluates new scans{'; ' + ehr_line if ehr_line else ''}",
        f"  database   {_database(settings)}",
        f"  API token  {token}",
        f"  sign in    open {base}/ui and paste the API token",
    ]
    if settings.log_format == "human":
        lines.append(f"  logs       {log_file(settings.var_dir)} (JSON lines)")
    return lines


# -- the demo ---------------------------------------------------------------------------------------------------
def _get(base: str, token: str, path: str) -> Any:
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})  # noqa: S310 -- the service's own address
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- as above
        return json.loads(response.read())


def _wait(condition: Callable[[], bool], seconds: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if condition():
                return True
        except (OSError, ValueError):
            pass
        stop.wait(1)
    return False


def run_demo_with_progress(settings: Settings, token: str, demo_ehr: Any, stop: threading.Event) -> None:
    """Send the demo cohort, then say what came of it, with counts."""
    from service.demo.cohort import demo_cohort, run_demo

    base = f"http://{_local(settings.http_host)}:{settings.http_port}"
    cohort = demo_cohort()
    say(f"Demo: sending {len(cohort)} synthetic patients through FHIR (therapy) and DICOM (images, TID 1500 SRs)…")
    run_demo(
        base_url=base,
        token=token,
        dicom_host=_local(settings.dicom_host),
        dicom_port=settings.dicom_port,
        ae_title=settings.ae_title,
        patient_id_system=settings.patient_id_system,
        cohort=cohort,
    )
    expected = {mrn: sum(1 for day in case.scans.values() if day > case.scans["BL"]) for mrn, _, case in cohort}

    def evaluated() -> bool:
        seen = {p["identifier"]: p.get("followups") for p in _get(base, token, "/api/patients")["patients"]}
        return all(seen.get(mrn) == count for mrn, count in expected.items())

    if not _wait(evaluated, DEMO_SETTLE_SECONDS, stop):
        say(f"Demo: not every patient was evaluated within {DEMO_SETTLE_SECONDS} s; see the log.")
        return
    patients = {p["identifier"]: p["id"] for p in _get(base, token, "/api/patients")["patients"]}
    reports = sum(len(_get(base, token, f"/api/patients/{patients[mrn]}").get("reports") or []) for mrn in expected)
    alerts = [a for a in _get(base, token, "/api/alerts")["alerts"] if a.get("status") == "active"]
    say(f"Demo: {len(expected)} patients evaluated: {reports} reports, {len(alerts)} active alerts.")
    if demo_ehr is not None:

        def delivered() -> bool:
            deliveries = _get(base, token, "/api/deliveries")["deliveries"]
            return bool(deliveries) and all(d.get("status") == "delivered" for d in deliveries)

        _wait(delivered, 60, stop)
        counts = demo_ehr.counts()
        say(
            f"Demo: the EHR stand-in received {counts.get('DiagnosticReport', 0)} reports, "
            f"{counts.get('Observation', 0)} observations and {counts.get('Flag', 0)} Flags "
            f"({demo_ehr.active_flags()} active)."
        )
        cards = {mrn: demo_ehr.cds_cards(base, settings.patient_id_system, mrn) for mrn in expected}
        shown = sum(len(c) for c in cards.values())
        say(
            f"Demo: CDS Hooks patient-view: {shown} cards for {sum(1 for c in cards.values() if c)} of {len(cards)} patients."
        )
    say(f"Demo cohort sent. Open {settings.base_url.rstrip('/')}/ui/patients to see it.")


def serve(settings: Settings, demo: bool, stop: threading.Event) -> int:
    """Run everything until ``stop`` is set; 0, or 1 after one line on stderr saying why not."""
    from service.persistence.db import migrate

    supervisor = None
    demo_ehr = None
    try:
        check_ports(settings)
        try:
            migrate(settings.database_url)
        except Exception as error:
            logger.exception("migrations failed", extra=TO_FILE_ONLY)
            raise ServeError(f"cannot start: the database could not be migrated ({type(error).__name__})") from error
        token = ensure_api_token(settings)
        env = dict(os.environ, IMMUNORAD_READY_CHECK_DICOM="1")
        env.setdefault("IMMUNORAD_ROLE_HTTP_PORT", "0")
        ehr_line = f"delivers to the EHR at {settings.ehr_fhir_url}" if settings.ehr_fhir_url else None
        if demo and not settings.ehr_fhir_url:
            from service.demo.ehr import DemoEhr

            demo_ehr = DemoEhr()
            demo_ehr.start()
            stand_in = demo_ehr.env()
            if settings.cds_issuers:  # keep the site's CDS clients; the stand-in's key is one more
                stand_in["IMMUNORAD_CDS_ISSUERS"] = (
                    os.environ.get("IMMUNORAD_CDS_ISSUERS", "") + "," + stand_in["IMMUNORAD_CDS_ISSUERS"]
                )
            env.update(stand_in)
            ehr_line = f"delivers to the demo EHR stand-in at {demo_ehr.fhir_base}"
        supervisor = Supervisor(settings, env)
        supervisor.start()
        for line in summary(settings, ehr_line):
            say(line)
        if demo:
            try:
                run_demo_with_progress(settings, token, demo_ehr, stop)
            except Exception as error:
                logger.exception("demo cohort could not be sent", extra=TO_FILE_ONLY)
                say(f"Demo: could not be sent ({type(error).__name__}); see the log.")
        say("immunorad is serving. Ctrl-C stops it.")
        supervisor.keep_running(stop)
        return 0
    except ServeError as error:
        print(f"immunorad: {error}" + (_see_log(settings) if error.see_log else ""), file=sys.stderr, flush=True)
        return 1
    finally:
        if supervisor is not None:
            supervisor.stop()
        if demo_ehr is not None:
            demo_ehr.stop()


def _see_log(settings: Settings) -> str:
    where = log_file(settings.var_dir) if settings.log_format == "human" else "the log (stderr)"
    return f"; see {where}"
