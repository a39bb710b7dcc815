"""Pending inputs: acknowledged objects that wait for another one (contract §9.3 "SR order")

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

A TID 1500 SR whose lengths are in pixels can only be used once its referenced images (their Pixel Spacing) are
stored. Its groups are recorded here as *pending* until then; the generic "waits for instance/series X" shape is
meant for SEG objects as well.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_inputs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=True),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("source_ref", sa.String(128), nullable=False),
        sa.Column("group_index", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("waits_for_kind", sa.String(16), nullable=False),
        sa.Column("waits_for_uid", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source_ref", "group_index", "waits_for_uid"),
    )
    op.create_index("ix_pending_inputs_study_id", "pending_inputs", ["study_id"])
    op.create_index("ix_pending_waits_for", "pending_inputs", ["waits_for_uid", "status"])


def downgrade() -> None:
    op.drop_index("ix_pending_waits_for", table_name="pending_inputs")
    op.drop_index("ix_pending_inputs_study_id", table_name="pending_inputs")
    op.drop_table("pending_inputs")
