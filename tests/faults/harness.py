"""What the fault, scale-out and fuzz tests share (issue 8): a cohort, a DICOM sender that records every
status, /metrics readings, database counts, and an EHR stand-in that timestamps and can hold a delivery.

Everything goes through the real interfaces (C-STORE, HTTP); the database is only read, to check.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy import text

from rules.evaluate import evaluate_patient
from rules.scenario import Case
from service.demo.cohort import case_bundle, case_datasets, demo_cohort
from tests.rules import cases
from tests.support.ehr import FakeEhr
from tests.support.processes import ServiceProcesses

SYSTEM = "urn:immunorad:mrn"

CASES: tuple[Case, ...] = (cases.E1, cases.E3, cases.E5, cases.E7, cases.E9, *(case for _, _, case in demo_cohort()))
"""Worked examples and the demo cohort: responses, pseudoprogression, new lesions, NE, hyperprogression."""


@dataclasses.dataclass
class CohortPatient:
    mrn: str
    case: Case
    bundle: dict
    """FHIR transaction: the Patient and the therapy start (and stop)."""
    datasets: list[Dataset]
    """CT image then TID 1500 SR, per scan in date order."""

    @property
    def expected_followups(self) -> list[str]:
        """Scan dates that must each get exactly one DiagnosticReport (the rule engine on the same facts)."""
        return [d.isoformat() for d in evaluate_patient(self.case.facts(self.mrn)).followup_dates]

    @property
    def sop_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]


def cohort(size: int, prefix: str, *, offset: int = 0) -> list[CohortPatient]:
    out = []
    for index in range(size):
        case = CASES[(index + offset) % len(CASES)]
        mrn = f"{prefix}-{index:03d}"
        out.append(CohortPatient(mrn, case, case_bundle(case, mrn, SYSTEM), case_datasets(case, mrn)))
    return out


# -- DICOM sending ------------------------------------------------------------------------------------


@dataclasses.dataclass
class StoreResult:
    sop_uid: str
    status: int | None
    """DIMSE status, or None when the association broke before an answer came."""
    started: float
    ended: float


def _nodelay(association) -> None:
    """Nagle's algorithm costs pynetdicom ~40 ms per C-STORE on loopback (issue 8: senders set TCP_NODELAY)."""
    try:
        association.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


def store(
    host: str,
    port: int,
    datasets: Sequence[Dataset],
    *,
    ae_title: str = "IMMUNORAD",
    calling: str = "FAULTS",
    after_each: Callable[[StoreResult], None] | None = None,
) -> list[StoreResult]:
    """C-STORE ``datasets`` in one association (pynetdicom), recording each status. Never raises for the
    peer going away: the instances not answered get ``status=None``.

    The status recorded is the listener's answer as it arrived on the wire. pynetdicom 3.0's requestor can lose an
    answer that arrives quickly while the machine is loaded: its association thread (``Association._run_reactor``)
    may take the C-STORE-RSP off the message queue before ``send_c_store`` does (it logs "Received unexpected C-STORE
    service message"), and ``send_c_store`` then waits out the DIMSE timeout and aborts. Such an answer is still
    counted (it came, in time), and the instances after it go in a new association, as a PACS would send them."""
    results: list[StoreResult] = []
    remaining = list(datasets)
    while remaining:
        done, resume = _store_in_one_association(host, port, remaining, ae_title, calling, after_each)
        results += done
        if resume is None:
            break
        remaining = remaining[resume:]
    return results


def _store_in_one_association(
    host: str,
    port: int,
    datasets: Sequence[Dataset],
    ae_title: str,
    calling: str,
    after_each: Callable[[StoreResult], None] | None,
) -> tuple[list[StoreResult], int | None]:
    """The results of the instances this association handled, and where a new association should resume when this
    one ended only because pynetdicom lost an answer the listener had sent (``None``: nothing to resume)."""
    from pynetdicom import AE, evt

    answered: dict[int, int] = {}

    def on_message(event) -> None:
        command = event.message.command_set
        if "MessageIDBeingRespondedTo" in command and "Status" in command:
            answered[int(command.MessageIDBeingRespondedTo)] = int(command.Status)

    closed = threading.Event()

    def on_close(event) -> None:
        # The listener went away (killed mid-stream). A PACS notices the closed connection at once; pynetdicom's
        # requestor does not always: a ``send_c_store`` begun just after the close (the association not yet marked
        # aborted) or waiting when it came waits out the whole DIMSE timeout. So no C-STORE starts once the
        # connection is closed, and one waiting is woken with pynetdicom's own "no message" item.
        closed.set()
        event.assoc.dimse.msg_queue.put((None, None))

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for uid in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(uid)
    results: list[StoreResult] = []
    resume: int | None = None
    now = time.monotonic()
    try:
        association = ae.associate(
            host,
            port,
            ae_title=ae_title,
            evt_handlers=[(evt.EVT_DIMSE_RECV, on_message), (evt.EVT_CONN_CLOSE, on_close)],
        )
    except Exception:  # noqa: BLE001 - a refused connection is "no answer"
        association = None
    if association is None or not association.is_established:
        return [StoreResult(str(ds.SOPInstanceUID), None, now, now) for ds in datasets], None
    _nodelay(association)
    try:
        for index, ds in enumerate(datasets):
            started = time.monotonic()
            status = None
            message_id = index % 0xFFFF + 1
            if association.is_established and not closed.is_set():
                answered.pop(message_id, None)
                try:
                    answer = association.send_c_store(ds, msg_id=message_id)
                    status = int(answer.Status) if answer is not None and "Status" in answer else None
                except Exception:  # noqa: BLE001 - the listener died mid-message
                    status = None
                if status is None and message_id in answered:
                    status, resume = answered[message_id], index + 1
            result = StoreResult(str(ds.SOPInstanceUID), status, started, time.monotonic())
            results.append(result)
            if after_each:
                after_each(result)
            if resume is not None:
                break
    finally:
        try:
            if association.is_established:
                association.release()
            else:
                association.abort()
        except Exception:  # noqa: BLE001, S110 -- closing is best effort: the listener may have died mid-message
            pass
    return results, resume if resume is not None and resume < len(datasets) else None


def acknowledged(results: Iterable[StoreResult]) -> set[str]:
    return {r.sop_uid for r in results if r.status == 0x0000}


# -- metrics, idleness --------------------------------------------------------------------------------

METRIC = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def parse_metrics(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for line in body.splitlines():
        match = METRIC.match(line.strip())
        if not match or line.startswith("#"):
            continue
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', match["labels"] or "")))
        out[(match["name"], labels)] = float(match["value"])
    return out


def metric_sum(metrics: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in metrics.items() if n == name and all((k, val) in lab for k, val in labels.items()))


def read_metrics(service: ServiceProcesses) -> dict:
    status, body, _ = service.request("GET", "/metrics", token=None)
    assert status == 200, f"/metrics answered {status}: {body}"
    return parse_metrics(body if isinstance(body, str) else str(body))


def is_idle(service: ServiceProcesses, *, outbox: bool = True) -> bool:
    values = read_metrics(service)
    if metric_sum(values, "immunorad_database_up") != 1:
        return False
    queued = metric_sum(values, "immunorad_queue_depth", status="queued")
    pending = metric_sum(values, "immunorad_outbox", status="pending") if outbox else 0
    return queued == 0 and pending == 0


def wait_idle(service: ServiceProcesses, timeout: float = 90, *, quiet: float = 1.5, outbox: bool = True) -> None:
    """Queue and outbox empty twice, ``quiet`` seconds apart (settle timers are 1 s in these tests)."""

    def stable():
        if not is_idle(service, outbox=outbox):
            return False
        time.sleep(quiet)
        return is_idle(service, outbox=outbox)

    service.wait_for(stable, timeout=timeout, message="queue and outbox to drain")


# -- database reads -----------------------------------------------------------------------------------

TABLES = (
    "patients",
    "studies",
    "instances",
    "lesions",
    "measurements",
    "clinical_facts",
    "fhir_resources",
    "fhir_identifiers",
    "assessments",
    "reports",
    "alerts",
    "jobs",
    "outbox",
)
"""Every table that holds data (audit_events is left out: a refusal is audited by design)."""


def counts(engine, tables: Sequence[str] = TABLES) -> dict[str, int]:
    """Row counts of ``tables`` in one round trip."""
    query = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in tables)
    with engine.connect() as conn:
        row = conn.execute(text(query)).one()
    return dict(zip(tables, row, strict=True))


def scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


# -- the EHR stand-in, timestamped and holdable ----------------------------------------------------------


class RecordingEhr(FakeEhr):
    """FakeEhr that notes when each bundle arrived and can hold the next delivery (to kill the worker
    while the EHR has applied a bundle but not answered yet)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, dict]] = []
        self._hold = threading.Event()
        self._release = threading.Event()
        self.held = threading.Event()

    def hold_next(self) -> None:
        self._release.clear()
        self.held.clear()
        self._hold.set()

    def release(self) -> None:
        self._release.set()

    def _apply(self, bundle: dict) -> dict:
        answer = super()._apply(bundle)
        with self.lock:
            self.arrivals.append((time.monotonic(), bundle))
        if self._hold.is_set():
            self._hold.clear()
            self.held.set()
            self._release.wait(60)
        return answer

    def report_puts(self) -> list[tuple[str, int | None]]:
        """(DiagnosticReport identifier value, position) for every DiagnosticReport PUT, in arrival order."""
        out = []
        with self.lock:
            for _, bundle in self.arrivals:
                for entry in bundle["entry"]:
                    if entry["request"]["url"].startswith("DiagnosticReport?"):
                        out.append(entry["resource"]["identifier"][0]["value"])
        return out

    def reports_for(self, mrn: str) -> list[dict]:
        return [r for r in self.reports() if mrn in str(r.get("subject"))]


# -- processes -----------------------------------------------------------------------------------------


class Roles(ServiceProcesses):
    """ServiceProcesses whose roles can be checked for life and killed by process id."""

    def alive(self, role: str) -> bool:
        proc = self.processes.get(role)
        return proc is not None and proc.poll() is None

    def pid(self, role: str) -> int:
        return self.processes[role].pid


def post_fhir(service: ServiceProcesses, body: dict) -> int | None:
    """POST a Bundle; the HTTP status, or None when the connection failed (the API was down)."""
    try:
        status, _, _ = service.request("POST", "/fhir", body)
    except OSError:
        return None
    return status


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def write_files(datasets: Sequence[Dataset], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets):
        path = folder / f"{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def measurement_groups(ds: Dataset) -> int:
    """TID 1500 Measurement Groups (125007, DCM) under Imaging Measurements (126010, DCM); 0 for an image."""

    def code(item) -> str | None:
        seq = item.get("ConceptNameCodeSequence")
        return str(seq[0].CodeValue) if seq else None

    for item in ds.get("ContentSequence", []) or []:
        if code(item) == "126010":
            return sum(1 for child in item.get("ContentSequence", []) if code(child) == "125007")
    return 0
