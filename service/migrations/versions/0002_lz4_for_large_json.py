"""PostgreSQL: compress the large JSON columns with LZ4 instead of pglz

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Every evaluation writes about 290 KB of JSON per patient (a DiagnosticReport with its pre-fill, some thirty
Observations, the assessment and, with an EHR, the outbox Bundle), and every value over 2 KB is compressed
before it is stored. PostgreSQL's default compressor (pglz) is slow; LZ4 (PostgreSQL 14 and later, when the
server is built with it: Debian's and the official images are) does the same job faster, both ways. Measured
on the reassess benchmark's cohort (bench/RESULTS.md): the server's CPU time per evaluation went down by about
a fifth, and reads of stored reports decompress faster.

Only values written from now on use LZ4; stored ones stay readable as they are (PostgreSQL records the method
per value). On SQLite, or a server without LZ4, nothing changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LARGE_JSON = (("fhir_resources", "content"), ("assessments", "result"), ("outbox", "bundle"))


def _lz4_available(bind) -> bool:
    if bind.dialect.name != "postgresql":
        return False
    methods = bind.execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    return bool(methods) and "lz4" in methods


def _set(method: str) -> None:
    bind = op.get_bind()
    if not _lz4_available(bind):
        return
    for table, column in LARGE_JSON:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")


def upgrade() -> None:
    _set("lz4")


def downgrade() -> None:
    _set("default")
