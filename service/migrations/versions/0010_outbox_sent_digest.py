"""Outbox: a delivered Bundle is kept as the SHA-256 and length of the bytes sent, not as a second copy

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Each outbox Bundle repeats its report's resources, which the FHIR store already keeps. Once the EHR has accepted
a Bundle, the message keeps the SHA-256 and the length of exactly the bytes sent (for audits) and drops the Bundle.
Pending and failed messages keep theirs until delivered; messages delivered before this revision keep theirs.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_sha256", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("sent_bytes", sa.Integer(), nullable=True))
        batch_op.alter_column("bundle", existing_type=sa.JSON(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE outbox SET bundle = '{}' WHERE bundle IS NULL")  # the bytes sent are gone; the digest was all
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("bundle", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column("sent_bytes")
        batch_op.drop_column("sent_sha256")
