"""Radiologist sign-offs (contract §9.7)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

One row per sign-off of a timepoint's category for one criterion, by a final DiagnosticReport from the reporting
system or by ``POST /api/reports/{id}/sign-off``. Append-only: an amendment is a new row, the latest is current.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_offs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("report_id", sa.Integer(), sa.ForeignKey("reports.id"), nullable=False),
        sa.Column("patient_id", sa.String(64), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("scan_date", sa.Date(), nullable=False),
        sa.Column("criterion", sa.String(32), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("engine_category", sa.String(32), nullable=True),
        sa.Column("reader", sa.String(255), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("route", sa.String(16), nullable=False),
        sa.Column("source_ref", sa.String(255), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sign_offs_report", "sign_offs", ["report_id", "criterion"])
    op.create_index("ix_sign_offs_patient_id", "sign_offs", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_sign_offs_patient_id", table_name="sign_offs")
    op.drop_index("ix_sign_offs_report", table_name="sign_offs")
    op.drop_table("sign_offs")
