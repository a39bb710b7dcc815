"""Patient ids up to 64 characters, as FHIR R4 allows

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

A FHIR ``id`` is 1 to 64 characters of ``[A-Za-z0-9-.]`` (R4 datatypes.html#id), and a client may choose it with
``PUT Patient/{id}``. Our Patient row takes the FHIR Patient's id, but ``patients.id`` and the ``patient_id``
columns referring to it were 36 characters (a UUID): on PostgreSQL a longer valid id failed the write (a 500).
They become 64 characters. On PostgreSQL widening a varchar rewrites nothing; SQLite does not enforce lengths.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _columns(bind, length: int) -> list[tuple[str, str]]:
    rows = bind.execute(
        sa.text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND character_maximum_length = :length "
            "AND ((table_name = 'patients' AND column_name = 'id') OR column_name = 'patient_id')"
        ),
        {"length": length},
    )
    return [(table, column) for table, column in rows]


def _resize(old: int, new: int) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, column in _columns(bind, old):
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE VARCHAR({new})')


def upgrade() -> None:
    _resize(36, 64)


def downgrade() -> None:
    _resize(64, 36)
