"""The large JSON columns stored packed: deflate with a preset dictionary (service.persistence.packed_json)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

``fhir_resources.content``, ``assessments.result`` and ``outbox.bundle`` were JSON text: about 300 KB per
patient once evaluated, 130 KB of it on disk after PostgreSQL's own compression (issue 18 asks for 60 KB). They
become bytes in the format of ``service.persistence.packed_json`` (format 1: deflate primed with a dictionary of
our resources' typical text; the pre-fill's base64 stored decoded). Nothing queries inside these documents in SQL,
so only their type changes for the code (``PackedJSON``).

Every stored value is converted here, in batches of 500 rows: a large database takes a while (measured in
bench/RESULTS.md's reading). On PostgreSQL the new columns are ``STORAGE EXTERNAL``: the bytes are compressed
already, so the server does not try again (the LZ4 setting of migration 0002 went with the old columns;
``downgrade`` sets it again). SQLite keeps the new columns nullable (it cannot add NOT NULL to an existing table
without rebuilding it, and a rebuild would cascade-delete the identifiers that refer to ``fhir_resources``); the
code never writes NULL where the column was NOT NULL.
"""

import sqlalchemy as sa
from alembic import op

from service.persistence.packed_json import pack, unpack

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = (("fhir_resources", "content", False), ("assessments", "result", False), ("outbox", "bundle", True))
BATCH = 500


def _convert(table: str, source: str, target: str, target_type, change) -> None:
    """Copy ``source`` into ``target`` row by row (by primary key, in batches), through ``change``."""
    bind = op.get_bind()
    read_type = sa.LargeBinary() if target_type is sa.JSON else sa.JSON()
    rows = sa.table(
        table, sa.column("id", sa.Integer()), sa.column(source, read_type), sa.column(target, target_type())
    )
    write = sa.update(rows).where(rows.c.id == sa.bindparam("pk")).values({target: sa.bindparam("value")})
    last = 0
    while True:
        batch = bind.execute(
            sa.select(rows.c.id, rows.c[source])
            .where(rows.c.id > last, rows.c[source].is_not(None))
            .order_by(rows.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        bind.execute(write, [{"pk": pk, "value": change(value)} for pk, value in batch])
        last = batch[-1][0]


def _swap(table: str, column: str, new: str, nullable: bool) -> None:
    bind = op.get_bind()
    op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {column}")
    if bind.dialect.name == "postgresql" and not nullable:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL")


def upgrade() -> None:
    bind = op.get_bind()
    for table, column, nullable in COLUMNS:
        new = f"{column}_packed"
        op.add_column(table, sa.Column(new, sa.LargeBinary(), nullable=True))
        if bind.dialect.name == "postgresql":
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {new} SET STORAGE EXTERNAL")
        _convert(table, column, new, sa.LargeBinary, pack)
        _swap(table, column, new, nullable)


def _lz4_available(bind) -> bool:
    if bind.dialect.name != "postgresql":
        return False
    methods = bind.execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    return bool(methods) and "lz4" in methods


def downgrade() -> None:
    bind = op.get_bind()
    for table, column, nullable in COLUMNS:
        new = f"{column}_json"
        op.add_column(table, sa.Column(new, sa.JSON(), nullable=True))
        if _lz4_available(bind):
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {new} SET COMPRESSION lz4")
        _convert(table, column, new, sa.JSON, lambda stored: unpack(bytes(stored)))
        _swap(table, column, new, nullable)
