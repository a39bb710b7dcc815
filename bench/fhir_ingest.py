"""FHIR ingest: a 200-entry transaction Bundle of tumour-measurement Observations (20 lesions × 10 scans, mCODE
TumorSize shape with contained BodyStructures and conditional PUTs), for a new patient each run.

- in process (``FhirIngest.bundle`` in one transaction): entries per CPU second of one thread = per core;
- over HTTP to ``immunorad api`` with one gunicorn worker: entries/s of wall time, and per CPU second of the
  worker process (the database server's CPU is not counted in either);
- anchor, same run: validating the same 200 resources alone (``fhir_mappings.validation.validate_resource``),
  the floor of any ingest that validates what it accepts.
"""

from __future__ import annotations

import json
import time
import urllib.request

from bench.common import Goal, Role, Section, Series, database, fmt, free_port, rmtree, role_env, tmpdir, wait_port
from bench.population import SYSTEM, ingest_fhir, wide_case


def bundles(n: int, prefix: str):
    from service.demo.cohort import case_bundle, case_measurements_bundle

    case = wide_case()
    for i in range(n):
        mrn = f"{prefix}-{i:04d}"
        yield case_bundle(case, mrn, SYSTEM), case_measurements_bundle(case, mrn, SYSTEM)


def post(base: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + "/fhir",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/fhir+json", "Authorization": "Bearer bench-token"},
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def run(ctx) -> Section:
    from fhir_mappings.validation import validate_resource
    from service.ops.config import Settings
    from service.persistence.db import Database

    repeats = 2 if ctx.quick else ctx.repeats
    section = Section("fhir", "FHIR ingest: 200-entry transaction Bundle")
    sample = next(bundles(1, "X"))[1]
    entries = len(sample["entry"])
    assert entries == 200, entries
    section.setup += [
        f"Bundle of {entries} Observation entries ({len(json.dumps(sample)) / 1024:.0f} KiB JSON), each a "
        "conditional PUT on its identifier, for a patient created just before (not timed). A new patient "
        f"every run (creates, not updates); {repeats} runs after one warm-up per configuration."
    ]
    results: dict[str, dict[str, list[float]]] = {}

    # Anchor: validation alone (conditional references made literal: outside a transaction they are refused).
    literal = json.loads(json.dumps(sample).replace('"Patient?identifier=' + SYSTEM + "|X-0000", '"Patient/bench'))
    values = []
    for _ in range(repeats + 1):
        cpu = time.thread_time()
        for entry in literal["entry"]:
            validate_resource(entry["resource"])
        values.append(entries / (time.thread_time() - cpu))
    results["anchor"] = {"cpu": values[1:]}

    for backend in ("sqlite", "postgresql"):
        folder = tmpdir(f"fhir-{backend}")
        try:
            with database(backend, folder) as url:
                settings = Settings(var_dir=folder, database_url=url, pseudonym_key="bench")
                db = Database(url)
                wall, cpu_rates = [], []
                for i, (patient, measurements) in enumerate(bundles(repeats + 1, f"BENCH-FHIR-{backend}")):
                    ingest_fhir(db, settings, patient)
                    started, cpu = time.perf_counter(), time.thread_time()
                    answer = ingest_fhir(db, settings, measurements)
                    elapsed, used = time.perf_counter() - started, time.thread_time() - cpu
                    assert len(answer["entry"]) == entries
                    if i:
                        wall.append(entries / elapsed)
                        cpu_rates.append(entries / used)
                db.dispose()
                results[f"inproc-{backend}"] = {"wall": wall, "cpu": cpu_rates}

                port = free_port()
                api = Role(
                    "api",
                    role_env(
                        url,
                        folder / "api",
                        IMMUNORAD_HTTP_PORT=str(port),
                        IMMUNORAD_GUNICORN_WORKERS="1",
                        IMMUNORAD_LOG_LEVEL="WARNING",
                    ),
                    folder / "api",
                )
                try:
                    wait_port(port)
                    time.sleep(1.0)
                    worker_pid = _gunicorn_worker(api.pid)
                    wall, cpu_rates = [], []
                    for i, (patient, measurements) in enumerate(bundles(repeats + 1, f"BENCH-HTTP-{backend}")):
                        post(f"http://127.0.0.1:{port}", patient)
                        before = _cpu(worker_pid)
                        started = time.perf_counter()
                        answer = post(f"http://127.0.0.1:{port}", measurements)
                        elapsed = time.perf_counter() - started
                        used = _cpu(worker_pid) - before
                        assert len(answer["entry"]) == entries
                        if i:
                            wall.append(entries / elapsed)
                            cpu_rates.append(entries / used if used > 0 else float("nan"))
                    results[f"http-{backend}"] = {"wall": wall, "cpu": cpu_rates}
                finally:
                    api.stop()
        finally:
            rmtree(folder)

    labels = {
        "anchor": "anchor: validate the 200 resources only (no mapping, no storage)",
        "inproc-sqlite": "FhirIngest in process, SQLite",
        "inproc-postgresql": "FhirIngest in process, PostgreSQL",
        "http-sqlite": "POST /fhir, gunicorn 1 worker, SQLite",
        "http-postgresql": "POST /fhir, gunicorn 1 worker, PostgreSQL",
    }
    rows = []
    for key, label in labels.items():
        per_core = section.add(Series(f"{label}: entries per CPU second", "entries/s", results[key]["cpu"]))
        wall = results[key].get("wall")
        wall_s = section.add(Series(f"{label}: entries/s wall", "entries/s", wall)) if wall else None
        rows.append(
            [
                label,
                fmt(per_core.min),
                fmt(per_core.median),
                fmt(per_core.max),
                fmt(wall_s.median) if wall_s else "",
                f"{entries / wall_s.median:.2f}" if wall_s else "",
            ]
        )
    section.tables.append(
        (
            [
                "configuration",
                "entries/s per core min",
                "median",
                "max",
                "entries/s wall (median)",
                "s per Bundle (median)",
            ],
            rows,
        )
    )
    worst = min(Series("", "", results[k]["cpu"]).median for k in ("inproc-sqlite", "inproc-postgresql"))
    section.goals.append(
        Goal(
            "FHIR ingest ≥ 300 entries/s per core (200-entry transaction)",
            f"{worst:.0f} entries/s per core (slower backend, in process)",
            "≥ 300",
            worst >= 300,
        )
    )
    return section


def _gunicorn_worker(master: int) -> int:
    from pathlib import Path

    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("no gunicorn worker")


def _cpu(pid: int) -> float:
    import os
    from pathlib import Path

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
