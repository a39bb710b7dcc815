"""IHE IOCM rejection notes: the SOP Instances they rejected

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

A Key Object Selection document titled Rejected for Quality Reasons (113001, DCM), Rejected for Patient Safety
Reasons (113037), Incorrect Modality Worklist Entry (113038) or Data Retention Policy Expired (113039) rejects the
instances it lists. One row per rejected instance, also for one not received yet (a note may come first).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rejected_instances",
        sa.Column("sop_uid", sa.String(64), primary_key=True),
        sa.Column("note_uid", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rejected_instances")
