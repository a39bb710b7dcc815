"""A backfill through the real roles (issue 18 item 4): N TID 1500 SRs for N/5 patients over 4 concurrent C-STORE
associations to ``immunorad dicom``, evaluated by ``immunorad worker`` and delivered to an HTTP EHR stand-in;
then a reassess after a rule-base version change, timed the same way.

Phases (wall seconds from the first C-STORE): intake (last C-STORE answered), evaluation (job queue drained),
delivery (outbox drained; the last report's arrival at the EHR). The reassess: ``immunorad reassess --all
--workers 2`` run from a copy of the source whose rule files differ by a comment (a new rule-base version, the
same decisions), until the command ends and anything it queued is at the EHR. The rule-base version is in the
assessment and in each Flag's Device, not in the reports: with the same decisions every patient gets a new
assessment version and every report is recomputed, but none is re-issued. The roles run with production settings
on PostgreSQL (127.0.0.1).

Per patient: CPU of each role's process tree, of the reassess command (and its pool), of the PostgreSQL server
processes; the bytes stored (``octet_length`` of each JSON or packed column, per table). Anchors of the same run:
``bench.common.cpu_check`` (a fixed pure-Python loop: CPU figures are also given as a multiple of it, so that
hosts compare) and the computing alone (the evaluation, the report resources and the hashes for the same
patients in this process, no database): what storing and delivering add is the rest.

    python -m bench.backfill --srs 250            # development size
    python -m bench.backfill --srs 10000          # the goal's size: 2 000 patients
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import (
    REPO,
    Goal,
    Role,
    Section,
    cpu_check,
    fmt,
    free_port,
    postgres_cpu_seconds,
    postgres_database,
    rmtree,
    role_env,
    tmpdir,
    tree_cpu,
    wait_port,
)

SCANS = 5
ASSOCIATIONS = 4
TOKEN = "8642097531"
"""Stands for the patient number in every UID and identifier of a template SR (replaced byte for byte)."""
ROOT = "1.2.826.0.1.3680043.10.1338"
SYSTEM = "urn:immunorad:mrn"
GOAL_PATIENTS, GOAL_SECONDS = 10_000, 180.0


# -- the cohort ------------------------------------------------------------------------------------------


def five_scans(case):
    """The case with scans added (8 weeks apart, each lesion as at the last scan) up to ``SCANS``."""
    from rules.scenario import Case

    scans, lesions = dict(case.scans), list(case.lesions)
    while len(scans) < SCANS:
        last_label, last_day = max(scans.items(), key=lambda item: item[1])
        label = f"TPX{len(scans)}"
        scans[label] = last_day + dt.timedelta(weeks=8)
        lesions = [
            dataclasses.replace(lesion, cells={**lesion.cells, label: lesion.cells[last_label]})
            if last_label in lesion.cells
            else lesion
            for lesion in lesions
        ]
    return Case(case.name, case.c1d1, scans, tuple(lesions), case.agent, case.therapy_stop)


def templates() -> list[tuple[object, list[bytes]]]:
    """Per case: the case and its SRs (scan order), encoded, with ``TOKEN`` where the patient number goes."""
    from pydicom import dcmwrite

    from service.demo.cohort import lesion_spec
    from service.demo.sr_writer import build_ct_image, build_measurement_report
    from tests.faults.harness import CASES

    out = []
    for n, base in enumerate(CASES):
        case = five_scans(base)
        mrn = f"BF{n}-{TOKEN}"
        srs = []
        for s, (label, day) in enumerate(sorted(case.scans.items(), key=lambda item: item[1])):
            image = build_ct_image(
                patient_id=mrn,
                patient_name="BACKFILL^PATIENT",
                study_instance_uid=f"{ROOT}.{n}.1.{TOKEN}.{s + 1}",
                study_date=day,
                series_instance_uid=f"{ROOT}.{n}.2.{TOKEN}.{s + 1}",
                sop_instance_uid=f"{ROOT}.{n}.3.{TOKEN}.{s + 1}",
                accession_number=f"A{TOKEN}",
            )
            specs = []
            for k, lesion in enumerate(case.lesions):
                spec = lesion_spec(case, mrn, lesion, label)
                if spec is not None:
                    specs.append(dataclasses.replace(spec, tracking_uid=f"{ROOT}.{n}.5.{TOKEN}.{k + 1}"))
            assert specs, f"{case.name} {label}: no lesion reported"
            ds = build_measurement_report(
                evidence=[image],
                lesions=specs,
                sop_instance_uid=f"{ROOT}.{n}.4.{TOKEN}.{s + 1}",
                series_instance_uid=f"{ROOT}.{n}.6.{TOKEN}.{s + 1}",
            )
            buffer = io.BytesIO()
            dcmwrite(buffer, ds, enforce_file_format=True)
            srs.append(buffer.getvalue())
        out.append((case, srs))
    return out


@dataclasses.dataclass
class Patient:
    mrn: str
    case: object
    files: list[Path]


def write_cohort(folder: Path, patients: int) -> list[Patient]:
    folder.mkdir(parents=True, exist_ok=True)
    cases = templates()
    out = []
    for p in range(patients):
        number = f"{10**9 + p}"
        case, srs = cases[p % len(cases)]
        files = []
        for s, data in enumerate(srs):
            path = folder / f"{p:06d}-{s}.dcm"
            path.write_bytes(data.replace(TOKEN.encode(), number.encode()))
            files.append(path)
        out.append(Patient(f"BF{p % len(cases)}-{number}", case, files))
    return out


# -- sending -------------------------------------------------------------------------------------------


def send(port: int, files: list[Path]) -> tuple[int, list[int | None]]:
    """C-STORE ``files`` in one association (pynetdicom, TCP_NODELAY): (instances answered 0x0000, failures)."""
    import socket

    from pynetdicom import AE
    from pynetdicom.sop_class import Comprehensive3DSRStorage

    ae = AE(ae_title="BACKFILL")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_requested_context(Comprehensive3DSRStorage)
    ok, failed = 0, []
    remaining = list(files)
    while remaining:
        association = ae.associate("127.0.0.1", port, ae_title="IMMUNORAD")
        if not association.is_established:
            raise RuntimeError("association refused")
        association.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = 0
        for path in remaining:
            answer = association.send_c_store(path)
            status = int(answer.Status) if answer is not None and "Status" in answer else None
            sent += 1
            if status == 0:
                ok += 1
            elif status is None and not association.is_established:
                failed.append(None)  # pynetdicom lost the answer (harness.store explains): resend the rest
                break
            else:
                failed.append(status)
        if association.is_established:
            association.release()
        remaining = remaining[sent:]
    return ok, failed


# -- measuring -----------------------------------------------------------------------------------------


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


PACKED = {"content", "bundle", "result"}
"""Columns stored as ``service.persistence.packed_json`` bytes (migration 0011): their stored size is
``octet_length`` of the bytes, and the JSON they hold is measured apart (``served_json``)."""

JSON_COLUMNS = (
    ("fhir_resources", "content", "origin = 'immunorad'", "FHIR resources we produced"),
    ("fhir_resources", "content", "origin <> 'immunorad'", "FHIR resources received (therapy)"),
    ("outbox", "bundle", "true", "outbox Bundles"),
    ("assessments", "result", "true", "assessment results"),
    ("assessments", "changes", "true", "assessment changes"),
    ("alerts", "finding", "true", "alert findings"),
    ("audit_events", "detail", "true", "audit details"),
)


def stored_json(engine) -> dict[str, int]:
    from sqlalchemy import text

    out = {}
    with engine.connect() as conn:
        for table, column, where, label in JSON_COLUMNS:
            stored = column if column in PACKED else f"{column}::text"
            text_bytes, disk_bytes = conn.execute(
                text(
                    f"SELECT coalesce(sum(octet_length({stored})), 0), coalesce(sum(pg_column_size({column})), 0)"
                    f" FROM {table} WHERE {where}"
                )
            ).one()
            out[label] = int(text_bytes)
            out[f"{label} (on disk, TOAST-compressed)"] = int(disk_bytes)
        out["database size"] = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar())
    return out


def served_json(engine) -> int:
    """Bytes of JSON text (compact) of the FHIR resources we produced and the assessments: what the packed
    columns hold, for comparison with what they take."""
    from sqlalchemy import text

    from service.persistence.packed_json import unpack

    total = 0
    with engine.connect() as conn:
        for query in (
            "SELECT content FROM fhir_resources WHERE origin = 'immunorad'",
            "SELECT result FROM assessments",
        ):
            for (value,) in conn.execution_options(yield_per=2000).execute(text(query)):
                total += len(json.dumps(unpack(bytes(value)), separators=(",", ":")).encode())
    return total


def counts(engine) -> dict[str, int]:
    from sqlalchemy import text

    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')),"
                " (SELECT count(*) FROM outbox WHERE status = 'pending'),"
                " (SELECT count(*) FROM outbox),"
                " (SELECT count(*) FROM assessments),"
                " (SELECT count(*) FROM reports),"
                " (SELECT count(*) FROM measurements),"
                " (SELECT count(*) FROM fhir_resources WHERE origin = 'immunorad')"
            )
        ).one()
    keys = ("jobs", "pending", "outbox", "assessments", "reports", "measurements", "resources")
    return dict(zip(keys, (int(v) for v in row), strict=True))


class Probe:
    """Polls the database every ``every`` s and notes when the job queue and the outbox were first seen empty."""

    def __init__(self, engine, started: float, every: float = 0.25) -> None:
        self.engine, self.started, self.every = engine, started, every
        self.jobs_empty: float | None = None
        self.outbox_empty: float | None = None
        self.intake_done = threading.Event()

    def wait(self, expected_outbox: int | None = None, timeout: float = 7200) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = counts(self.engine)
            now = time.monotonic() - self.started
            if self.intake_done.is_set() and seen["jobs"] == 0:
                self.jobs_empty = self.jobs_empty or now
            else:
                self.jobs_empty = None
            done = self.jobs_empty is not None and seen["pending"] == 0
            if expected_outbox is not None:
                done = done and seen["outbox"] >= expected_outbox
            if done:
                self.outbox_empty = now
                return seen
            time.sleep(self.every)
        raise TimeoutError(f"not drained: {counts(self.engine)}")


# -- the computing alone (anchor) ---------------------------------------------------------------------


def compute_only(patients: list[Patient], limit: int = 40) -> float:
    """CPU ms per patient of what a first evaluation computes without a database: every as-of evaluation, the
    report resources and the hashes, for up to ``limit`` of the cohort's patients (same cases), in this process."""
    from fhir_mappings.outbound import PatientRef, ReportContext, build_report, ehr_transaction_bundle
    from rules.evaluate import evaluate_patient, facts_as_of, inputs_hash, to_jsonable
    from service.assessment.evaluation import _digest, _strip_volatile

    sample = patients[:limit]
    facts = [p.case.facts(p.mrn) for p in sample]
    for f in facts[:3]:
        evaluate_patient(f)  # warm-up: rule base, memo
    started = time.thread_time()
    for p, f in zip(sample, facts, strict=True):
        assessment = evaluate_patient(f)
        to_jsonable(assessment)
        ref = PatientRef(fhir_id=p.mrn, key=p.mrn, identifier_system=SYSTEM, identifier_value=p.mrn)
        memo: dict = {}
        inputs_hash(f, None, memo)
        for day in assessment.followup_dates:
            first = assessment.kinetics is not None and assessment.kinetics.e2_date == day
            known = facts_as_of(f, day, keep_treatment_outcomes=first)
            as_of = evaluate_patient(known) if day != assessment.followup_dates[-1] else assessment
            _digest([inputs_hash(known, None, memo), "v"])
            ctx = ReportContext(
                canonical="http://immunorad.org/fhir",
                patient=ref,
                scan_date=day,
                status="preliminary",
                issued=dt.datetime.now(dt.UTC),
                imaging_study_uids=(),
                primary_criterion="iRECIST",
            )
            resources = build_report(as_of, ctx, [])
            _digest(
                [_strip_volatile(resources.diagnostic_report), [_strip_volatile(o) for o in resources.observations]]
            )
            ehr_transaction_bundle(resources, ctx)
    return 1000 * (time.thread_time() - started) / len(sample)


# -- the run -------------------------------------------------------------------------------------------


def changed_rules_copy(folder: Path) -> Path:
    """A copy of the source whose rule files differ by one comment: a new rule-base version, the same rules."""
    copy = folder / "src"
    for package in ("rules", "service", "fhir_mappings", "dicom_listener"):
        shutil.copytree(REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    first = sorted((copy / "rules" / "rulesets").glob("*.yaml"))[0]
    first.write_text(first.read_text() + "\n# bench.backfill: a new rule-base version, same rules\n")
    return copy


def fhir_bundles(patients: list[Patient], per_bundle: int = 50) -> list[dict]:
    from service.demo.cohort import case_bundle

    out = []
    for i in range(0, len(patients), per_bundle):
        entries = []
        for p in patients[i : i + per_bundle]:
            entries += case_bundle(p.case, p.mrn, SYSTEM)["entry"]
        out.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return out


def run(srs: int, workers: int, log=print) -> dict:
    from sqlalchemy import create_engine

    from bench.e2e import Api
    from tests.faults.harness import RecordingEhr

    patients_n = srs // SCANS
    folder = tmpdir("backfill")
    result: dict = {"srs": patients_n * SCANS, "patients": patients_n, "workers": workers, "associations": ASSOCIATIONS}
    result["cpu_check_ms_before"] = cpu_check()
    result["load_before"] = os.getloadavg()[0]
    ehr = RecordingEhr()
    ehr.start()
    roles: list[Role] = []
    try:
        started = time.perf_counter()
        patients = write_cohort(folder / "srs", patients_n)
        log(f"wrote {patients_n * SCANS} SRs for {patients_n} patients in {time.perf_counter() - started:.0f} s")
        result["compute_only_ms"] = compute_only(patients)
        log(f"anchor: the computing alone {result['compute_only_ms']:.1f} ms CPU per patient")
        with postgres_database("immunorad_bench_bf") as url:
            engine = create_engine(url)
            http, dicom = free_port(), free_port()
            env = role_env(
                url,
                folder,
                IMMUNORAD_HTTP_PORT=str(http),
                IMMUNORAD_DICOM_PORT=str(dicom),
                IMMUNORAD_EHR_FHIR_URL=ehr.base_url,
                # A history load: coalesce each patient's evaluations (the default, 0, evaluates at once).
                IMMUNORAD_EVALUATE_COALESCE_SECONDS="2",
            )
            roles = [Role("api", env, folder), Role("dicom", env, folder)]
            roles += [Role("worker", env, folder / f"w{i}") for i in range(workers)]
            wait_port(http)
            wait_port(dicom)
            api = Api(f"http://127.0.0.1:{http}")
            started = time.perf_counter()
            for bundle in fhir_bundles(patients):
                status, body, _ = api.request("POST", "/fhir", bundle)
                assert status == 200, (status, str(body)[:500])
            probe = Probe(engine, time.monotonic())
            probe.intake_done.set()
            probe.wait()
            result["fhir_setup_s"] = time.perf_counter() - started
            log(f"therapy Bundles posted and their evaluations done in {result['fhir_setup_s']:.0f} s (not timed)")
            base_json = stored_json(engine)
            base_served = served_json(engine)
            base_counts = counts(engine)

            # -- the backfill ------------------------------------------------------------------------
            cpu_before = {r.role + str(i): tree_cpu(r.pid) for i, r in enumerate(roles)}
            pg_before = postgres_cpu_seconds()
            arrivals_before = len(ehr.arrivals)
            lanes = [[f for p in patients[i::ASSOCIATIONS] for f in p.files] for i in range(ASSOCIATIONS)]
            t0 = time.monotonic()
            probe = Probe(engine, t0)
            answers: list[tuple[int, list]] = []

            def lane(files):
                answers.append(send(dicom, files))

            threads = [threading.Thread(target=lane, args=(files,)) for files in lanes]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            intake_s = time.monotonic() - t0
            probe.intake_done.set()
            ok = sum(a[0] for a in answers)
            failed = [f for a in answers for f in a[1]]
            log(f"intake: {ok} SRs acknowledged in {intake_s:.0f} s ({len(failed)} not: {failed[:5]})")
            probe.wait()
            time.sleep(1.0)  # a delivery answered just now is noted by the EHR before the worker marks it
            with ehr.lock:
                new = ehr.arrivals[arrivals_before:]
            last_arrival = max(at for at, _ in new) - t0 if new else None
            cpu_after = {r.role + str(i): tree_cpu(r.pid) for i, r in enumerate(roles)}
            pg_after = postgres_cpu_seconds()
            stored = stored_json(engine)
            after_counts = counts(engine)
            result["backfill"] = phase(
                intake_s=intake_s,
                evaluated_s=probe.jobs_empty,
                delivered_s=last_arrival,
                cpu={k: cpu_after[k] - cpu_before[k] for k in cpu_after},
                pg=None if pg_before is None else pg_after - pg_before,
                patients=patients_n,
                counts={k: after_counts[k] - base_counts.get(k, 0) for k in after_counts},
                bundles=len(new),
                stored={k: stored[k] - base_json[k] for k in stored},
                served_json_bytes_per_patient=round((served_json(engine) - base_served) / patients_n),
                acknowledged=ok,
                refused=len(failed),
            )
            log(json.dumps(result["backfill"], indent=1))

            # -- reassess after a rule-base version change ------------------------------------------
            copy = changed_rules_copy(folder)
            cpu_before = {r.role + str(i): tree_cpu(r.pid) for i, r in enumerate(roles)}
            pg_before = postgres_cpu_seconds()
            children_before = children_cpu()
            arrivals_before = len(ehr.arrivals)
            outbox_before = counts(engine)["outbox"]
            base_json = stored
            t0 = time.monotonic()
            out = subprocess.run(
                [sys.executable, "-m", "service.cli", "reassess", "--all", "--workers", "2"],
                cwd=copy,
                env=dict(env, IMMUNORAD_LOG_LEVEL="WARNING"),
                capture_output=True,
                text=True,
                timeout=7200,
            )
            reassess_s = time.monotonic() - t0
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-2000:])
            summary = out.stdout.strip().splitlines()[-1]
            log(f"reassess: {summary} ({reassess_s:.0f} s wall)")
            probe = Probe(engine, t0)
            probe.intake_done.set()
            after_counts = probe.wait()
            time.sleep(1.0)
            with ehr.lock:
                new = ehr.arrivals[arrivals_before:]
            last_arrival = max(at for at, _ in new) - t0 if new else None
            cpu_after = {r.role + str(i): tree_cpu(r.pid) for i, r in enumerate(roles)}
            cpu_after_reassess = children_cpu() - children_before
            pg_after = postgres_cpu_seconds()
            stored = stored_json(engine)
            cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
            cpu["reassess"] = cpu_after_reassess
            result["reassess"] = phase(
                intake_s=None,
                evaluated_s=reassess_s,
                delivered_s=last_arrival,
                cpu=cpu,
                pg=None if pg_before is None else pg_after - pg_before,
                patients=patients_n,
                counts={"outbox": after_counts["outbox"] - outbox_before},
                bundles=len(new),
                stored={k: stored[k] - base_json[k] for k in stored},
                summary=summary,
            )
            log(json.dumps(result["reassess"], indent=1))
            engine.dispose()
    finally:
        for role in roles:
            role.stop()
        ehr.stop()
        rmtree(folder)
    result["cpu_check_ms_after"] = cpu_check()
    result["load_after"] = os.getloadavg()[0]
    return result


def phase(*, cpu: dict[str, float], pg: float | None, patients: int, stored: dict[str, int], **rest) -> dict:
    worker = sum(v for k, v in cpu.items() if k.startswith("worker") or k == "reassess")
    out = dict(rest)
    out["cpu_ms_per_patient"] = {k: round(1000 * v / patients, 2) for k, v in cpu.items()}
    out["cpu_ms_per_patient"]["workers (evaluation + delivery)"] = round(1000 * worker / patients, 2)
    if pg is not None:
        out["cpu_ms_per_patient"]["postgresql"] = round(1000 * pg / patients, 2)
    out["stored_bytes_per_patient"] = {k: round(v / patients) for k, v in stored.items()}
    text_json = sum(v for k, v in stored.items() if k != "database size" and "on disk" not in k)
    disk_json = sum(v for k, v in stored.items() if "on disk" in k)
    out["stored_json_bytes_per_patient"] = round(text_json / patients)
    out["stored_json_bytes_on_disk_per_patient"] = round(disk_json / patients)
    return out


STORED_GOAL_BYTES = 60_000
"""Issue 18: stored bytes per patient."""


def section(result: dict) -> Section:
    """``run``'s figures as a RESULTS.md section (``bench.run_all --only backfill``)."""
    bf, ra = result["backfill"], result["reassess"]
    n, patients = result["srs"], result["patients"]
    out = Section("backfill", f"Backfill of {n:,} SRs through the real roles, then a reassess after a rule-base change")
    out.setup += [
        f"{n:,} TID 1500 SRs (our writer, 5 measurement groups) for {patients:,} patients, {SCANS} scans each, sent by "
        f"{result['associations']} concurrent pynetdicom associations to `immunorad dicom`; {result['workers']} "
        "`immunorad worker` processes; `immunorad api` (the therapy Bundles, posted and evaluated before the clock "
        "starts); an HTTP EHR stand-in. PostgreSQL on 127.0.0.1; production settings but "
        "IMMUNORAD_EVALUATE_COALESCE_SECONDS=2 (a history load: one evaluation per patient once its SRs are in).",
        "Then `immunorad reassess --all --workers 2` from a copy of the source whose rule files differ by one comment "
        "(a new rule-base version, the same decisions).",
        f"Anchors of the same run: the computing alone (evaluation, report resources, hashes; no database) "
        f"{result['compute_only_ms']:.1f} ms CPU per patient; `cpu_check` {result['cpu_check_ms_before']:.0f} ms "
        f"before, {result['cpu_check_ms_after']:.0f} ms after.",
    ]

    def seconds(value) -> str:
        return "" if value is None else f"{value:,.0f}"

    out.tables.append(
        (
            ["phase (s from the first C-STORE)", "backfill", "reassess (from its start)"],
            [
                [
                    f"intake: last of {n:,} C-STOREs answered ({bf['acknowledged']:,} acknowledged, "
                    f"{bf['refused']} not; {bf['acknowledged'] / bf['intake_s']:.1f} SRs/s)",
                    seconds(bf["intake_s"]),
                    "",
                ],
                [
                    "evaluation: job queue drained (reassess: the command's wall time)",
                    seconds(bf["evaluated_s"]),
                    seconds(ra["evaluated_s"]),
                ],
                [
                    f"delivery: last Bundle at the EHR ({bf['bundles']:,} Bundles; reassess: {ra['bundles']:,})",
                    seconds(bf["delivered_s"]),
                    seconds(ra["delivered_s"]),
                ],
            ],
        )
    )
    names = {
        "api0": "`immunorad api`",
        "dicom1": "`immunorad dicom` (the listener)",
        "worker2": "`immunorad worker` 1",
        "worker3": "`immunorad worker` 2",
        "reassess": "`immunorad reassess` and its pool",
        "workers (evaluation + delivery)": "all evaluating processes (workers, reassess)",
        "postgresql": "PostgreSQL server processes",
    }
    keys = list(dict.fromkeys([*bf["cpu_ms_per_patient"], *ra["cpu_ms_per_patient"]]))
    cpu_rows = [
        [
            names.get(key, key),
            fmt(bf["cpu_ms_per_patient"].get(key, 0.0)),
            fmt(ra["cpu_ms_per_patient"].get(key, 0.0)),
        ]
        for key in keys
    ]
    out.tables.append((["CPU ms per patient", "backfill", "reassess"], cpu_rows))
    stored_rows = [
        [key, f"{value / 1000:,.1f}", f"{ra['stored_bytes_per_patient'].get(key, 0) / 1000:,.1f}"]
        for key, value in bf["stored_bytes_per_patient"].items()
    ]
    stored_rows.append(
        [
            "all columns above, as stored (packed bytes; JSON text for the others)",
            f"{bf['stored_json_bytes_per_patient'] / 1000:,.1f}",
            f"{ra['stored_json_bytes_per_patient'] / 1000:,.1f}",
        ]
    )
    stored_rows.append(
        [
            "all columns above, on disk (pg_column_size)",
            f"{bf['stored_json_bytes_on_disk_per_patient'] / 1000:,.1f}",
            f"{ra['stored_json_bytes_on_disk_per_patient'] / 1000:,.1f}",
        ]
    )
    stored_rows.append(
        [
            "the JSON the packed FHIR resources we produced and assessment results hold (compact text)",
            f"{bf['served_json_bytes_per_patient'] / 1000:,.1f}",
            "",
        ]
    )
    out.tables.append((["stored KB per patient", "backfill", "reassess"], stored_rows))
    out.goals.append(
        Goal(
            f"backfill of {n:,} SRs ({patients:,} patients, 4 associations): first C-STORE → last report at the EHR",
            f"{bf['delivered_s'] / 60:.1f} min (intake {bf['intake_s'] / 60:.1f} min)",
            "reported",
            None,
        )
    )
    out.goals.append(
        Goal(
            "stored bytes per patient ≤ 60 KB (as stored: FHIR resources and assessments packed, migration 0011)",
            f"{bf['stored_json_bytes_per_patient'] / 1000:,.0f} KB ({bf['stored_json_bytes_on_disk_per_patient'] / 1000:,.0f} KB on disk)",
            "≤ 60 KB",
            bf["stored_json_bytes_per_patient"] <= STORED_GOAL_BYTES,
        )
    )
    return out


def run_section(ctx) -> Section:
    """For ``bench.run_all --only backfill``: the goal's size (10 000 SRs), 250 with ``--quick``."""
    srs = 250 if ctx.quick else int(os.environ.get("IMMUNORAD_BENCH_BACKFILL_SRS", "10000"))
    return section(run(srs, 2, log=ctx.log))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--srs", type=int, default=250, help="SRs to send (5 per patient); the goal is 10 000")
    parser.add_argument("--workers", type=int, default=2, help="immunorad worker processes")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    result = run(args.srs, args.workers)
    text = json.dumps(result, indent=1, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
