"""How large JSON is stored on PostgreSQL (migration 0002): LZ4, not pglz, for what every evaluation writes."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from service.assessment.worker import Worker
from tests.e2e import kinetics_cases as kc


def test_reports_and_assessments_are_stored_lz4_compressed_on_postgresql(app_client, settings, db, backend):
    if backend != "postgresql":
        pytest.skip("column compression is a PostgreSQL setting")
    with db.read() as session:
        methods = session.execute(
            text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
        ).scalar()
    if "lz4" not in methods:
        pytest.skip("this PostgreSQL server is built without LZ4")
    mrn = kc.submit(app_client, kc.K1)
    Worker(settings, db).drain()
    assert kc.reports(app_client, mrn)
    with db.read() as session:
        # Values over about 2 KB are compressed; pg_column_compression names the method each was stored with.
        stored = session.execute(
            text(
                "SELECT resource_type, pg_column_compression(content) FROM fhir_resources "
                "WHERE origin = 'immunorad' AND octet_length(content::text) > 4096"
            )
        ).all()
        assessments = (
            session.execute(text("SELECT DISTINCT pg_column_compression(result) FROM assessments")).scalars().all()
        )
    assert {kind for kind, _ in stored} >= {"DiagnosticReport"}
    assert {method for _, method in stored} == {"lz4"}
    assert assessments == ["lz4"]
