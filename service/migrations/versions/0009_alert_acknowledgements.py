"""Alert acknowledgements (contract §9.7 "Alert follow-up")

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

Who acknowledged an alert, when and how (REST call, CDS Hooks feedback, or the Flag read back inactive from the
EHR). Append-only; the first row per alert gives the time to acknowledgement.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_acknowledgements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("patient_id", sa.String(64), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("route", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("by", sa.String(255), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_alert_acknowledgements_alert_id", "alert_acknowledgements", ["alert_id"])
    op.create_index("ix_alert_acknowledgements_patient_id", "alert_acknowledgements", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_alert_acknowledgements_patient_id", table_name="alert_acknowledgements")
    op.drop_index("ix_alert_acknowledgements_alert_id", table_name="alert_acknowledgements")
    op.drop_table("alert_acknowledgements")
