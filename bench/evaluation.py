"""Evaluation: one patient with 10 timepoints and 10 lesions through every criterion, kinetics and alert rule.

- ``evaluate_patient`` on the patient's facts (what the worker runs per evaluation): p50/p99 latency and
  patients/s per core (evaluations per CPU second of one thread);
- anchors, same run: RECIST 1.1 alone on the same timeline, and the same full evaluation with every decision
  taken by durable-rules (Engine(durable=True): the index and durable-rules, checked to agree);
- the persisted path: ``evaluate_and_publish`` of a newly ingested copy of the patient (load facts, evaluate,
  one DiagnosticReport per follow-up each evaluated as of its date, FHIR store, alerts, audit), on SQLite and
  PostgreSQL.
"""

from __future__ import annotations

import time

from bench.common import Goal, Section, Series, database, fmt, percentile, rmtree, tmpdir
from bench.population import big_case, ingest_case


def timed(fn, n: int) -> tuple[list[float], float]:
    """Per-call wall times (ms) and the CPU seconds of the whole loop (this thread)."""
    samples = []
    cpu = time.thread_time()
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, time.thread_time() - cpu


def run(ctx) -> Section:
    from rules.criteria import recist11
    from rules.engine import Engine, get_engine, load_rulebase
    from rules.evaluate import evaluate_patient, make_timeline

    case = big_case()
    facts = case.facts("BENCH-10x10")
    engine = get_engine()
    durable = Engine(load_rulebase(), durable=True)
    assessment = evaluate_patient(facts)
    repeats = 2 if ctx.quick else ctx.repeats
    n = 50 if ctx.quick else 400
    section = Section("evaluation", "Evaluation of one patient (10 timepoints × 10 lesions)")
    section.setup += [
        f"Facts: {len(facts.measurements)} lesion measurements, {len(case.scans)} scans; the evaluation yields "
        f"{len(assessment.criteria)} criteria × {len(assessment.followup_dates)} follow-ups, kinetics, "
        f"{len(assessment.findings)} findings/alerts.",
        f"{n} evaluations per run after 20 warm-up ones, {repeats} runs; p50/p99 per run; per core = evaluations per CPU "
        "second of the evaluating thread. Production engine (decisions by the tables' index).",
    ]
    for _ in range(20):
        evaluate_patient(facts)
    full = {"p50": [], "p99": [], "per_core": []}
    anchors = {"recist": [], "durable": []}
    for _ in range(repeats):
        samples, cpu = timed(lambda: evaluate_patient(facts), n)
        full["p50"].append(percentile(samples, 50))
        full["p99"].append(percentile(samples, 99))
        full["per_core"].append(n / cpu)
        samples, _ = timed(lambda: recist11.assess(engine, make_timeline(facts, engine)), n)
        anchors["recist"].append(percentile(samples, 50))
        samples, _ = timed(lambda: evaluate_patient(facts, engine=durable), max(10, n // 10))
        anchors["durable"].append(percentile(samples, 50))
    p50 = section.add(Series("evaluate_patient p50", "ms", full["p50"], higher_is_better=False))
    p99 = section.add(Series("evaluate_patient p99", "ms", full["p99"], higher_is_better=False))
    per_core = section.add(Series("patients/s per core", "patients/s", full["per_core"]))
    recist = section.add(Series("anchor: RECIST 1.1 alone p50", "ms", anchors["recist"], higher_is_better=False))
    durable_s = section.add(
        Series("anchor: every decision also by durable-rules p50", "ms", anchors["durable"], higher_is_better=False)
    )

    # The persisted path, on both backends: each evaluation is the first of a freshly ingested copy.
    persisted = {}
    copies = 3 if ctx.quick else 12
    for backend in ("sqlite", "postgresql"):
        folder = tmpdir(f"eval-{backend}")
        try:
            with database(backend, folder) as url:
                from service.assessment.evaluation import evaluate_and_publish
                from service.ops.config import Settings
                from service.persistence.db import Database
                from service.persistence.models import Patient

                settings = Settings(var_dir=folder, database_url=url, pseudonym_key="bench", study_settle_seconds=0)
                db = Database(url)
                ids = [ingest_case(db, settings, case, f"BENCH-EVAL-{i}") for i in range(copies + 1)]
                samples = []
                for i, patient_id in enumerate(ids):
                    started = time.perf_counter()
                    with db.write() as session:
                        outcome = evaluate_and_publish(
                            session, settings, session.get(Patient, patient_id), trigger="bench"
                        )
                    if i:  # the first one warms caches
                        samples.append((time.perf_counter() - started) * 1000)
                    assert outcome.reports_issued == len(assessment.followup_dates), outcome
                db.dispose()
                persisted[backend] = samples
        finally:
            rmtree(folder)
    rows = [
        [
            "evaluate_patient (all criteria, kinetics, alerts)",
            fmt(p50.min),
            fmt(p50.median),
            fmt(p50.max),
            fmt(p99.median),
            fmt(per_core.median),
        ],
        [
            "anchor: RECIST 1.1 alone (timeline + criterion)",
            fmt(recist.min),
            fmt(recist.median),
            fmt(recist.max),
            "",
            "",
        ],
        [
            "anchor: all, every decision also through durable-rules",
            fmt(durable_s.min),
            fmt(durable_s.median),
            fmt(durable_s.max),
            "",
            "",
        ],
    ]
    for backend, samples in persisted.items():
        s = section.add(Series(f"first evaluate_and_publish on {backend}", "ms", samples, higher_is_better=False))
        rows.append(
            [
                f"first `evaluate_and_publish` incl. {len(assessment.followup_dates)} reports, {backend} "
                f"({len(samples)} patients)",
                fmt(s.min),
                fmt(percentile(samples, 50)),
                fmt(s.max),
                fmt(percentile(samples, 99)),
                fmt(1000 / s.median),
            ]
        )
    section.tables.append(
        (["what", "p50 ms min", "p50 ms median", "p50 ms max", "p99 ms (median run)", "patients/s per core"], rows)
    )
    section.notes.append(
        "For the persisted rows min/median/max are over patients (one evaluation each), p99 is of the "
        "same sample; 'patients/s' there is 1000 / median ms, one thread, database included."
    )
    section.goals.append(
        Goal(
            "evaluation p99 ≤ 20 ms (one patient, 10 × 10)",
            f"{p99.median:.1f} ms (p50 {p50.median:.1f} ms)",
            "≤ 20 ms",
            p99.median <= 20,
        )
    )
    section.goals.append(
        Goal(
            "evaluation throughput ≥ 100 patients/s per core",
            f"{per_core.median:.0f} patients/s",
            "≥ 100",
            per_core.median >= 100,
        )
    )
    return section
