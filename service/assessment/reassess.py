"""``immunorad reassess``: re-run the current rule base over one patient or the whole cohort, for audits.

Each patient is evaluated in its own transaction; a new assessment version is stored when the inputs or
the rule base changed (or with ``--force``), and what changed is printed per patient.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time

from sqlalchemy import select

from service.assessment.evaluation import evaluate_and_publish
from service.ops.config import Settings
from service.persistence.db import Database
from service.persistence.models import Patient


def _run(settings: Settings, patient_ids: list[str], force: bool) -> list[dict]:
    db = Database(settings.database_url)
    results = []
    for patient_id in patient_ids:
        with db.write() as session:
            patient = session.get_one(Patient, patient_id)
            outcome = evaluate_and_publish(session, settings, patient, trigger="reassess", force=force)
        results.append(
            {
                "patient": patient_id,
                "version": outcome.version,
                "changes": outcome.changes,
                "reports_issued": outcome.reports_issued,
            }
        )
    db.dispose()
    return results


def _chunk(args) -> list[dict]:
    settings, ids, force = args
    return _run(settings, ids, force)


def reassess(
    settings: Settings, *, patient: str | None, everyone: bool, force: bool, workers: int = 1, out=sys.stdout
) -> int:
    db = Database(settings.database_url)
    with db.read() as session:
        if everyone:
            ids = list(session.scalars(select(Patient.id).order_by(Patient.id)))
        else:
            found = (
                session.get(Patient, patient) or session.scalars(select(Patient).where(Patient.mrn == patient)).first()
            )
            if found is None:
                print(f"unknown patient {patient}", file=sys.stderr)
                return 2
            ids = [found.id]
    db.dispose()
    started = time.monotonic()
    if workers > 1 and len(ids) > 1 and not settings.is_sqlite:
        chunks = [ids[i::workers] for i in range(workers)]
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = [r for part in pool.map(_chunk, [(settings, c, force) for c in chunks]) for r in part]
    else:
        results = _run(settings, ids, force)
    changed = [r for r in results if r["version"] is not None]
    for result in changed:
        print(json.dumps(result, default=str), file=out)
    print(
        f"reassessed {len(results)} patient(s) in {time.monotonic() - started:.1f} s: "
        f"{len(changed)} new assessment version(s)",
        file=out,
    )
    return 0
