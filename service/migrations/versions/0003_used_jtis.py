"""CDS Hooks JWT replay protection: the jti of every accepted token, until it expires

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

CDS Hooks 2.0 security asks the service to refuse a JWT whose ``jti`` it has seen before. The check must hold
across every API worker process and pod, and two concurrent uses of one token must not both pass: a table whose
primary key is a digest of (issuer, jti) gives exactly that (the second INSERT fails). Rows are deleted once the
token has expired (it would be refused for its ``exp`` anyway).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_jtis",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_used_jtis_expires_at", "used_jtis", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_jtis_expires_at", table_name="used_jtis")
    op.drop_table("used_jtis")
