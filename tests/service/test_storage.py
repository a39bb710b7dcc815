"""How the large JSON documents are stored (migration 0011, ``service.persistence.packed_json``): packed bytes,
read back exactly as served, and converted both ways by the migration on stored data."""

from __future__ import annotations

import base64
import json

import pytest
import sqlalchemy as sa
from alembic import command

from service.assessment.worker import Worker
from service.persistence.db import alembic_config
from service.persistence.packed_json import unpack
from tests.e2e import kinetics_cases as kc


def _served(app_client, mrn: str) -> dict[tuple[str, str], dict]:
    """Every resource the evaluation produced for the patient, as ``/fhir`` serves it."""
    out = {}
    for kind in ("DiagnosticReport", "Observation"):
        for resource in kc.search(app_client, kind, mrn):
            out[(kind, resource["id"])] = resource
    return out


def _evaluated(app_client, settings, db) -> tuple[str, dict[tuple[str, str], dict]]:
    mrn = kc.submit(app_client, kc.K1)
    Worker(settings, db).drain()
    served = _served(app_client, mrn)
    assert any(kind == "DiagnosticReport" for kind, _ in served)
    return mrn, served


def test_reports_and_assessments_are_stored_packed_and_read_back_as_served(app_client, settings, db, backend):
    _, served = _evaluated(app_client, settings, db)
    with db.read() as session:
        rows = session.execute(sa.text("SELECT resource_type, fhir_id, content FROM fhir_resources")).all()
        results = session.execute(sa.text("SELECT result FROM assessments")).scalars().all()
    stored = {(kind, fhir_id): bytes(content) for kind, fhir_id, content in rows}
    assert set(served) <= set(stored)
    for key, resource in served.items():
        assert stored[key][0] == 1  # format 1: deflate with dictionary 1
        assert unpack(stored[key]) == resource
    report_key = next(key for key in served if key[0] == "DiagnosticReport")
    report = served[report_key]
    # The pre-fill's HTML is kept decoded, so that it compresses as text: the report takes under a sixth of its
    # JSON.
    assert any(form["contentType"].startswith("text/html") and form["data"] for form in report["presentedForm"])
    assert base64.b64decode(report["presentedForm"][0]["data"])
    assert len(stored[report_key]) * 6 < len(json.dumps(report).encode())
    assert results and all(unpack(bytes(value))["criteria"] for value in results)


def test_the_server_does_not_compress_the_packed_bytes_again_on_postgresql(app_client, settings, db, backend):
    if backend != "postgresql":
        pytest.skip("column storage is a PostgreSQL setting")
    _evaluated(app_client, settings, db)
    with db.read() as session:
        storage = dict(
            session.execute(
                sa.text(
                    "SELECT attrelid::regclass::text || '.' || attname, attstorage FROM pg_attribute "
                    "WHERE (attrelid, attname) IN (('fhir_resources'::regclass, 'content'), "
                    "('assessments'::regclass, 'result'), ('outbox'::regclass, 'bundle'))"
                )
            ).all()
        )
        methods = session.execute(
            sa.text("SELECT DISTINCT pg_column_compression(content) FROM fhir_resources WHERE origin = 'immunorad'")
        ).scalars()
        compressed = [method for method in methods if method is not None]
    assert storage == {"fhir_resources.content": "e", "assessments.result": "e", "outbox.bundle": "e"}
    assert compressed == []


def test_the_migration_converts_stored_documents_both_ways(app_client, settings, db, backend):
    """Down to 0010 (JSON text) and up again (packed): every document the same, and served the same."""
    mrn, served = _evaluated(app_client, settings, db)
    with db.read() as session:
        results = [
            unpack(bytes(value)) for value in session.execute(sa.text("SELECT result FROM assessments")).scalars()
        ]
    assert results
    db.dispose()
    config = alembic_config(settings.database_url)
    command.downgrade(config, "0010")
    engine = sa.create_engine(settings.database_url)
    try:
        table = sa.table(
            "fhir_resources", sa.column("resource_type"), sa.column("fhir_id"), sa.column("content", sa.JSON())
        )
        with engine.connect() as conn:
            as_json = {
                (kind, fhir_id): content
                for kind, fhir_id, content in conn.execute(
                    sa.select(table.c.resource_type, table.c.fhir_id, table.c.content)
                )
            }
            assessments = sa.table("assessments", sa.column("result", sa.JSON()))
            old_results = conn.execute(sa.select(assessments.c.result)).scalars().all()
    finally:
        engine.dispose()
    for key, resource in served.items():
        assert as_json[key] == resource
    assert sorted(map(repr, old_results)) == sorted(map(repr, results))
    command.upgrade(config, "head")
    assert _served(app_client, mrn) == served
